//! `wasi:config/store`: a guest reads its function's variables and secrets
//! through the standard interface (the wasi-config proposal's
//! `0.2.0-rc.1`, which wasmtime implements), so no Eddy world change is
//! needed and components built against that version for other hosts read
//! theirs the same way.
//!
//! They are loaded when the guest first asks, once per invocation, from the
//! [`VariableSource`] the caller gives (the worker's reads Redis and opens
//! the secrets): a function that never asks costs nothing. Secret values the
//! guest was given are remembered and replaced by `[redacted]` in what the
//! invocation reports (logs, error messages, outbound records).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};
use eddy_protocol::variables::{Unopened, Variable};
use wasmtime::component::{ComponentType, Lift, Linker, Lower};

use crate::capture::LogLevel;
use crate::host::HostState;

/// The interface versions linked: the one wasmtime's own implementation and
/// the proposal's current release candidate use.
const INTERFACES: [&str; 1] = ["wasi:config/store@0.2.0-rc.1"];

/// What replaces a secret's value in reports.
pub const REDACTED: &str = "[redacted]";

/// What a source gives: every variable, or for a secret that could not be
/// opened, its name and why (the others still work).
pub type Entry = Result<Variable, Unopened>;

/// Loads one function's variables for one invocation.
pub trait VariableSource: Send + Sync + fmt::Debug {
    /// Every variable the function sees (the tenant's, overridden by the
    /// function's own), secrets opened; or why none can be had now.
    fn load(&self) -> Pin<Box<dyn Future<Output = Result<Vec<Entry>, String>> + Send + 'static>>;
}

/// Variables known up front (`eddy run --var`, tests, benchmarks).
#[derive(Debug, Clone, Default)]
pub struct FixedVariables(pub Vec<Variable>);

impl VariableSource for FixedVariables {
    fn load(&self) -> Pin<Box<dyn Future<Output = Result<Vec<Entry>, String>> + Send + 'static>> {
        let vars = self.0.iter().cloned().map(Ok).collect();
        Box::pin(async move { Ok(vars) })
    }
}

/// `wasi:config/store`'s `error`.
#[derive(ComponentType, Lift, Lower, Debug, Clone)]
#[component(variant)]
enum ConfigError {
    #[component(name = "upstream")]
    Upstream(String),
    #[allow(dead_code)]
    #[component(name = "io")]
    Io(String),
}

type Loaded = Result<Arc<Vec<Entry>>, String>;

/// One invocation's view of its variables.
#[derive(Default)]
pub(crate) struct Vars {
    source: Option<Arc<dyn VariableSource>>,
    loaded: Option<Loaded>,
    /// Which entries the guest was given (index-aligned with `loaded`).
    revealed: Vec<bool>,
    /// `get-all` gave it everything.
    revealed_all: bool,
}

impl fmt::Debug for Vars {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vars")
            .field(
                "loaded",
                &self.loaded.as_ref().map(|l| l.as_ref().map(|v| v.len())),
            )
            .finish_non_exhaustive()
    }
}

impl Vars {
    pub(crate) fn new(source: Option<Arc<dyn VariableSource>>) -> Self {
        Vars {
            source,
            ..Vars::default()
        }
    }

    /// The values of the secrets the guest was given.
    pub(crate) fn revealed(&self) -> Vec<String> {
        let Some(Ok(entries)) = &self.loaded else {
            return Vec::new();
        };
        entries
            .iter()
            .zip(&self.revealed)
            .filter_map(|(e, shown)| match e {
                Ok(v) if *shown && v.secret && !v.value.is_empty() => Some(v.value.clone()),
                _ => None,
            })
            .collect()
    }
}

/// Loads the variables on first use; the result, failure included, is kept
/// for the rest of the invocation.
async fn loaded(store: &mut wasmtime::StoreContextMut<'_, HostState>) -> Loaded {
    if let Some(loaded) = &store.data().vars.loaded {
        return loaded.clone();
    }
    let result = match store.data().vars.source.clone() {
        None => Ok(Arc::new(Vec::new())),
        Some(source) => source.load().await.map(Arc::new),
    };
    let capture = &store.data().capture;
    match &result {
        Err(e) => capture.note(LogLevel::Warn, format!("variables: {e}")),
        Ok(entries) => {
            for u in entries.iter().filter_map(|e| e.as_ref().err()) {
                capture.note(LogLevel::Warn, unopened(u));
            }
        }
    }
    let vars = &mut store.data_mut().vars;
    vars.revealed = vec![false; result.as_ref().map_or(0, |e| e.len())];
    vars.loaded = Some(result.clone());
    result
}

fn unopened(u: &Unopened) -> String {
    format!("secret `{}` cannot be opened: {}", u.name, u.reason)
}

fn upstream(e: String) -> ConfigError {
    ConfigError::Upstream(format!("variables are unavailable: {e}"))
}

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    for name in INTERFACES {
        let mut store = linker.instance(name)?;
        store.func_wrap_async("get", |mut store, (key,): (String,)| {
            Box::new(async move {
                let entries = match loaded(&mut store).await {
                    Err(e) => return Ok((Err(upstream(e)),)),
                    Ok(entries) => entries,
                };
                let found = entries.iter().position(|e| match e {
                    Ok(v) => v.name == key,
                    Err(u) => u.name == key,
                });
                let answer = match found {
                    None => Ok(None),
                    Some(i) => match &entries[i] {
                        Ok(v) => {
                            store.data_mut().vars.revealed[i] = true;
                            Ok(Some(v.value.clone()))
                        }
                        Err(u) => Err(ConfigError::Upstream(unopened(u))),
                    },
                };
                Ok((answer,))
            })
        })?;
        store.func_wrap_async("get-all", |mut store, (): ()| {
            Box::new(async move {
                let entries = match loaded(&mut store).await {
                    Err(e) => return Ok((Err(upstream(e)),)),
                    Ok(entries) => entries,
                };
                if let Some(u) = entries.iter().find_map(|e| e.as_ref().err()) {
                    return Ok((Err(ConfigError::Upstream(unopened(u))),));
                }
                let vars = &mut store.data_mut().vars;
                if !vars.revealed_all {
                    vars.revealed.iter_mut().for_each(|r| *r = true);
                    vars.revealed_all = true;
                }
                let all: Vec<(String, String)> = entries
                    .iter()
                    .filter_map(|e| e.as_ref().ok())
                    .map(|v| (v.name.clone(), v.value.clone()))
                    .collect();
                Ok((Ok(all),))
            })
        })?;
    }
    Ok(())
}

/// Lines of a multi-line secret shorter than this are not redacted on their
/// own (a `-----` or a blank would hit everything); nor are more than
/// [`MAX_LINES`] lines of one secret.
const MIN_LINE: usize = 8;
const MAX_LINES: usize = 64;
/// How much of a secret's start a cut-off line is checked for.
const HEAD: usize = 32;

/// Replaces the secrets a guest read wherever the report quotes them, in
/// one pass per text (leftmost-longest, so a secret inside another goes
/// with it, and `[redacted]` is never searched again).
pub(crate) struct Redactor {
    matcher: AhoCorasick,
    patterns: usize,
    secrets: Vec<String>,
}

impl Redactor {
    /// `None` when the guest read no secret.
    pub(crate) fn new(secrets: Vec<String>) -> Option<Self> {
        let mut patterns: Vec<&str> = Vec::new();
        for s in &secrets {
            patterns.push(s);
            if s.contains('\n') {
                let lines = s
                    .lines()
                    .map(|l| l.trim_end_matches('\r'))
                    .filter(|l| l.trim().len() >= MIN_LINE);
                patterns.extend(lines.take(MAX_LINES));
            }
        }
        patterns.sort_unstable();
        patterns.dedup();
        patterns.retain(|p| !p.is_empty());
        if patterns.is_empty() {
            return None;
        }
        let matcher = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&patterns)
            .ok()?;
        let patterns = patterns.len();
        Some(Redactor {
            matcher,
            patterns,
            secrets,
        })
    }

    pub(crate) fn redact(&self, text: &mut String) {
        if self.matcher.is_match(text.as_str()) {
            *text = self
                .matcher
                .replace_all(text, &vec![REDACTED; self.patterns]);
        }
    }

    /// For a line that may have been cut off (the last of stdout or
    /// stderr): a tail that is the start of a secret goes too.
    pub(crate) fn redact_tail(&self, text: &mut String) {
        self.redact(text);
        for s in &self.secrets {
            if let Some(at) = cut_secret(text, s) {
                text.truncate(at);
                text.push_str(REDACTED);
            }
        }
    }
}

/// Where `text` ends with the start of `secret` (at least [`MIN_LINE`]
/// bytes of it), if it does.
fn cut_secret(text: &str, secret: &str) -> Option<usize> {
    // A few bytes of a short secret could be anything.
    if secret.len() <= MIN_LINE {
        return None;
    }
    let least = MIN_LINE;
    let head = floor(secret, HEAD.min(secret.len()));
    // A long start: find the head, check the rest of the text against it.
    if head.len() >= least {
        for (at, _) in text.match_indices(head) {
            if secret.starts_with(&text[at..]) {
                return Some(at);
            }
        }
    }
    // A short one: the text ends with fewer bytes than the head.
    (least..head.len())
        .rev()
        .filter(|k| secret.is_char_boundary(*k))
        .find(|k| text.ends_with(&secret[..*k]))
        .map(|k| text.len() - k)
}

/// `s` cut to at most `max` bytes on a character boundary.
fn floor(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redacted(secrets: &[&str], text: &str) -> String {
        let r = Redactor::new(secrets.iter().map(|s| s.to_string()).collect()).unwrap();
        let mut t = text.to_string();
        r.redact(&mut t);
        t
    }

    #[test]
    fn every_occurrence_and_every_line_is_redacted() {
        assert_eq!(
            redacted(
                &["tok3n", "-----BEGIN-----\nabc123456\n"],
                "a tok3n, tok3ntok3n; key -----BEGIN-----\nabc123456\n; line abc123456"
            ),
            "a [redacted], [redacted][redacted]; key [redacted]; line [redacted]"
        );
    }

    #[test]
    fn one_pass_leftmost_longest() {
        // A secret inside another goes with it; `[redacted]` itself is not
        // searched again, whatever the secrets are.
        assert_eq!(
            redacted(&["abc", "xxabcxx"], "1 xxabcxx 2 abc"),
            "1 [redacted] 2 [redacted]"
        );
        assert_eq!(redacted(&["e", "d", "[r"], "ed"), "[redacted][redacted]");
        // Short lines of a multi-line secret are not patterns of their own.
        assert_eq!(
            redacted(&["-----\nsecretline\n"], "----- secretline"),
            "----- [redacted]"
        );
    }

    #[test]
    fn a_cut_off_start_of_a_secret_is_redacted_at_the_end_of_a_line() {
        let long = format!("BEGIN{}", "k".repeat(100));
        let r = Redactor::new(vec![long.clone(), "short-secret".into(), "ab".into()]).unwrap();
        for (text, want) in [
            (format!("key={}", &long[..60]), "key=[redacted]".to_string()),
            (
                "token short-sec".to_string(),
                "token [redacted]".to_string(),
            ),
            // Under 8 bytes of it: left (it could be anything).
            ("token short".to_string(), "token short".to_string()),
            ("a".to_string(), "a".to_string()),
            (format!("x {long} y"), "x [redacted] y".to_string()),
        ] {
            let mut t = text.clone();
            r.redact_tail(&mut t);
            assert_eq!(t, want, "{text}");
        }
    }
}
