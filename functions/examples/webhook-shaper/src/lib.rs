//! `webhook-shaper`: normalises GitHub webhooks into one small event shape,
//! and optionally forwards the event to another function.
//!
//! - Input: the JSON body of a GitHub webhook delivery. Recognised by shape
//!   (the `X-GitHub-Event` header is not available to processors):
//!   - `push` (has `ref` and `commits`),
//!   - `issue_comment` (has `issue` and `comment`),
//!   - `issues` (has `issue`),
//!   - `pull_request` (has `pull_request`).
//! - Output: JSON
//!   `{"source": "github", "kind": "push"|"issue"|"issue_comment"|"pull_request", "repo": "owner/name", "actor": "login", "summary": "..."}`,
//!   e.g. `{"source":"github","kind":"push","repo":"octo/hello","actor":"alice","summary":"alice pushed 2 commits to main: Fix the parser"}`.
//! - Config: when `notify` is set to a function name, the normalised event is
//!   also emitted to that function (as JSON).
//! - Logs one `info` line per event.
//! - Errors (non-retryable `bad-input`): a payload that is not JSON, not a
//!   recognised webhook, or has no `repository.full_name`.

use eddy_sdk::{Error, Invocation, Output};
use serde::{Deserialize, Serialize};

/// The parts of the webhook payloads this processor reads. Everything is
/// optional: the shape decides the kind.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Webhook {
    action: Option<String>,
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    commits: Option<Vec<Commit>>,
    head_commit: Option<Commit>,
    created: bool,
    deleted: bool,
    pusher: Option<Pusher>,
    issue: Option<Item>,
    comment: Option<serde::de::IgnoredAny>,
    pull_request: Option<Item>,
    repository: Option<Repository>,
    sender: Option<User>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Commit {
    message: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Pusher {
    name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Item {
    number: u64,
    title: String,
    user: Option<User>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Repository {
    full_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct User {
    login: Option<String>,
}

/// The normalised event.
#[derive(Debug, PartialEq, Serialize)]
struct Event {
    source: &'static str,
    kind: &'static str,
    repo: String,
    actor: String,
    summary: String,
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default().trim()
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn normalise(hook: Webhook) -> Result<Event, Error> {
    let repo = hook
        .repository
        .and_then(|r| r.full_name)
        .ok_or_else(|| Error::bad_input("not a GitHub webhook: no repository.full_name"))?;
    let sender = hook.sender.and_then(|u| u.login);
    let action = hook.action.as_deref().unwrap_or("updated");

    let (kind, actor, summary) = if let (Some(git_ref), Some(commits)) =
        (&hook.git_ref, &hook.commits)
    {
        let actor = sender
            .or_else(|| hook.pusher.and_then(|p| p.name))
            .unwrap_or_else(|| "someone".to_string());
        let branch = git_ref
            .strip_prefix("refs/heads/")
            .or_else(|| git_ref.strip_prefix("refs/tags/"))
            .unwrap_or(git_ref);
        let summary = if hook.deleted {
            format!("{actor} deleted {branch}")
        } else if commits.is_empty() {
            let verb = if hook.created { "created" } else { "pushed to" };
            format!("{actor} {verb} {branch}")
        } else {
            let head = hook
                .head_commit
                .as_ref()
                .or(commits.last())
                .map(|c| first_line(&c.message))
                .unwrap_or_default();
            format!(
                "{actor} pushed {} to {branch}: {head}",
                plural(commits.len(), "commit")
            )
        };
        ("push", actor, summary)
    } else if let Some(issue) = hook.issue {
        let actor = sender
            .or_else(|| issue.user.and_then(|u| u.login))
            .unwrap_or_else(|| "someone".to_string());
        if hook.comment.is_some() {
            let summary = format!(
                "{actor} commented on issue #{}: {}",
                issue.number, issue.title
            );
            ("issue_comment", actor, summary)
        } else {
            let summary = format!("{actor} {action} issue #{}: {}", issue.number, issue.title);
            ("issue", actor, summary)
        }
    } else if let Some(pr) = hook.pull_request {
        let actor = sender
            .or_else(|| pr.user.and_then(|u| u.login))
            .unwrap_or_else(|| "someone".to_string());
        let summary = format!("{actor} {action} pull request #{}: {}", pr.number, pr.title);
        ("pull_request", actor, summary)
    } else {
        return Err(Error::bad_input(
            "unrecognised GitHub webhook: expected a push, issues, issue_comment or pull_request event",
        ));
    };

    Ok(Event {
        source: "github",
        kind,
        repo,
        actor,
        summary,
    })
}

fn handle(inv: Invocation) -> Result<Output, Error> {
    let event = normalise(inv.json()?)?;
    let notify = inv
        .config("notify")
        .map(str::trim)
        .filter(|f| !f.is_empty());
    match notify {
        Some(target) => {
            eddy_sdk::emit_json(target, &event)?;
            eddy_sdk::info(format!(
                "github {} on {} by {}; forwarded to {target}",
                event.kind, event.repo, event.actor
            ));
        }
        None => eddy_sdk::info(format!(
            "github {} on {} by {}",
            event.kind, event.repo, event.actor
        )),
    }
    Output::json(&event)
}

eddy_sdk::export!(handle);

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(json: serde_json::Value) -> Result<Event, Error> {
        normalise(serde_json::from_value(json).unwrap())
    }

    #[test]
    fn push() {
        let ev = shape(serde_json::json!({
            "ref": "refs/heads/main",
            "before": "a", "after": "b",
            "created": false, "deleted": false, "forced": false,
            "repository": {"id": 1, "name": "hello", "full_name": "octo/hello"},
            "pusher": {"name": "alice", "email": "alice@example.com"},
            "sender": {"login": "alice", "id": 7},
            "commits": [
                {"id": "1", "message": "Add tests"},
                {"id": "2", "message": "Fix the parser\n\nIt choked on tabs."}
            ],
            "head_commit": {"id": "2", "message": "Fix the parser\n\nIt choked on tabs."}
        }))
        .unwrap();
        assert_eq!(
            ev,
            Event {
                source: "github",
                kind: "push",
                repo: "octo/hello".into(),
                actor: "alice".into(),
                summary: "alice pushed 2 commits to main: Fix the parser".into(),
            }
        );
        assert_eq!(
            serde_json::to_string(&ev).unwrap(),
            r#"{"source":"github","kind":"push","repo":"octo/hello","actor":"alice","summary":"alice pushed 2 commits to main: Fix the parser"}"#
        );
    }

    #[test]
    fn push_without_sender_and_branch_deletion() {
        let ev = shape(serde_json::json!({
            "ref": "refs/heads/old", "commits": [], "deleted": true, "head_commit": null,
            "repository": {"full_name": "octo/hello"}, "pusher": {"name": "bob"}
        }))
        .unwrap();
        assert_eq!(
            (ev.actor.as_str(), ev.summary.as_str()),
            ("bob", "bob deleted old")
        );
    }

    #[test]
    fn issue_comment_and_pull_request() {
        let ev = shape(serde_json::json!({
            "action": "opened",
            "issue": {"number": 12, "title": "Crash on start", "user": {"login": "carol"}},
            "repository": {"full_name": "octo/hello"}, "sender": {"login": "carol"}
        }))
        .unwrap();
        assert_eq!(ev.kind, "issue");
        assert_eq!(ev.summary, "carol opened issue #12: Crash on start");

        let ev = shape(serde_json::json!({
            "action": "created",
            "issue": {"number": 12, "title": "Crash on start"},
            "comment": {"body": "me too"},
            "repository": {"full_name": "octo/hello"}, "sender": {"login": "dave"}
        }))
        .unwrap();
        assert_eq!(ev.kind, "issue_comment");
        assert_eq!(ev.summary, "dave commented on issue #12: Crash on start");

        let ev = shape(serde_json::json!({
            "action": "closed",
            "pull_request": {"number": 5, "title": "Faster", "user": {"login": "erin"}},
            "repository": {"full_name": "octo/hello"}
        }))
        .unwrap();
        assert_eq!(ev.kind, "pull_request");
        assert_eq!(ev.summary, "erin closed pull request #5: Faster");
    }

    #[test]
    fn unrecognised() {
        let err = shape(serde_json::json!({"zen": "hi", "repository": {"full_name": "o/r"}}))
            .unwrap_err();
        assert_eq!(err.code, "bad-input");
        let err = shape(serde_json::json!({"ref": "x", "commits": []})).unwrap_err();
        assert!(err.message.contains("repository"));
    }
}
