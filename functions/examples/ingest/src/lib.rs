//! `ingest`: the document-pipeline use case. One function, two steps of a
//! run:
//!
//! 1. **A document** (`{"url": "https://files.example.com/report.md"}`):
//!    fetches it (the origin must be in the function's `allowed_hosts`),
//!    splits it into sections at Markdown headings (`#`, `##`, ...; text
//!    before the first heading is a section titled by the document's name),
//!    sends the sections to the classification API (`POST` to the variable
//!    `CLASSIFIER_URL` with `{"sections": [text, ...]}` and
//!    `Authorization: Bearer` the secret `CLASSIFIER_TOKEN`; it answers
//!    `{"labels": [label, ...]}`), and emits one follow-up per section to its
//!    own function. Output: `{"url", "sections": N, "labels": {label: n}}`.
//! 2. **A section** (`{"section": {"url", "index", "title", "label", "text"}}`):
//!    posts it to the index API (the variable `INDEX_URL`, the same bearer
//!    token) and outputs `{"indexed": index, "label": label, "status": s}`.
//!
//! The run finishes when every section is indexed; a run callback says so.
//!
//! Errors: a payload of neither shape is `bad-input`; a missing variable is
//! `config-missing` (not retried); a document that is not UTF-8 or has no
//! text is `bad-input`; an API that answers 5xx or cannot be reached is
//! `upstream` (retried, with backoff); 4xx is `upstream-refused` (not
//! retried: the token or the request is wrong, and trying again will not fix
//! it); a classification of another length than the sections is
//! `bad-response`.

use std::collections::BTreeMap;

use eddy_sdk::http::Request;
use eddy_sdk::{Error, Invocation, Output, config};
use serde::{Deserialize, Serialize};

/// The most sections one document is split into (one follow-up each).
const MAX_SECTIONS: usize = 200;

#[derive(Deserialize)]
#[serde(untagged)]
enum Input {
    Document { url: String },
    Section { section: Section },
}

#[derive(Debug, Serialize, Deserialize)]
struct Section {
    url: String,
    index: usize,
    title: String,
    label: String,
    text: String,
}

#[derive(Deserialize)]
struct Labels {
    labels: Vec<String>,
}

/// The sections of a Markdown text: (title, body) at each heading.
fn sections(name: &str, text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut title = name.to_string();
    let mut body = String::new();
    for line in text.lines() {
        if let Some(h) = line.strip_prefix('#') {
            if !body.trim().is_empty() {
                out.push((title, body.trim().to_string()));
            }
            title = h.trim_start_matches('#').trim().to_string();
            body = String::new();
        } else {
            body.push_str(line);
            body.push('\n');
        }
    }
    if !body.trim().is_empty() {
        out.push((title, body.trim().to_string()));
    }
    out
}

/// A call to one of the APIs: 2xx, or the error a pipeline wants.
fn call(what: &str, req: Request) -> Result<eddy_sdk::http::Response, Error> {
    let r = req.send()?;
    match r.status {
        200..=299 => Ok(r),
        400..=499 => Err(Error::new(
            "upstream-refused",
            format!("the {what} API answered {}", r.status),
        )),
        s => Err(Error::retryable(
            "upstream",
            format!("the {what} API answered {s}"),
        )),
    }
}

fn document(inv: &Invocation, url: &str) -> Result<Output, Error> {
    let classifier = config::require("CLASSIFIER_URL")?;
    let token = config::require("CLASSIFIER_TOKEN")?;
    let doc = call("document", Request::get(url))?;
    let text = doc
        .text()
        .map_err(|_| Error::bad_input(format!("{url} is not UTF-8 text")))?;
    let name = url.rsplit('/').next().unwrap_or(url);
    let parts = sections(name, text);
    if parts.is_empty() {
        return Err(Error::bad_input(format!("{url} has no text")));
    }
    if parts.len() > MAX_SECTIONS {
        return Err(Error::bad_input(format!(
            "{url} has {} sections, more than {MAX_SECTIONS}",
            parts.len()
        )));
    }
    let texts: Vec<&str> = parts.iter().map(|(_, body)| body.as_str()).collect();
    let labels: Labels = call(
        "classification",
        Request::post(&classifier)
            .header("authorization", &format!("Bearer {token}"))
            .json(&serde_json::json!({ "sections": texts }))?,
    )?
    .json()?;
    if labels.labels.len() != parts.len() {
        return Err(Error::new(
            "bad-response",
            format!(
                "the classification API labelled {} sections of {}",
                labels.labels.len(),
                parts.len()
            ),
        ));
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (index, ((title, text), label)) in parts.iter().zip(&labels.labels).enumerate() {
        *counts.entry(label).or_default() += 1;
        let section = Section {
            url: url.to_string(),
            index,
            title: title.clone(),
            label: label.clone(),
            text: text.clone(),
        };
        eddy_sdk::emit_json(&inv.function, &serde_json::json!({ "section": section }))?;
    }
    eddy_sdk::info(format!("{url}: {} sections classified", parts.len()));
    Output::json(&serde_json::json!({
        "url": url,
        "sections": parts.len(),
        "labels": counts,
    }))
}

fn section(s: &Section) -> Result<Output, Error> {
    let index = config::require("INDEX_URL")?;
    let token = config::require("CLASSIFIER_TOKEN")?;
    let r = call(
        "index",
        Request::post(&index)
            .header("authorization", &format!("Bearer {token}"))
            .json(s)?,
    )?;
    Output::json(&serde_json::json!({
        "indexed": s.index,
        "label": s.label,
        "status": r.status,
    }))
}

fn handle(inv: Invocation) -> Result<Output, Error> {
    match inv.json::<Input>() {
        Ok(Input::Document { url }) => document(&inv, &url),
        Ok(Input::Section { section: s }) => section(&s),
        Err(_) => Err(Error::bad_input(
            r#"expected {"url": "..."} (a document) or {"section": {...}} (one of its sections)"#,
        )),
    }
}

eddy_sdk::export!(handle);

#[cfg(test)]
mod tests {
    use super::sections;

    #[test]
    fn splits_at_headings() {
        let s = sections("r.md", "intro\n\n# One\na\nb\n## Two\n\n# Three\nc");
        let got: Vec<(&str, &str)> = s.iter().map(|(t, b)| (t.as_str(), b.as_str())).collect();
        // A heading without text is no section.
        assert_eq!(got, [("r.md", "intro"), ("One", "a\nb"), ("Three", "c")]);
    }
}
