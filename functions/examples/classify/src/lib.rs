//! `classify`: the batch-classifier use case. Labels transaction rows `ok`,
//! `review` or `blocked`.
//!
//! - Input, either:
//!   - CSV text (content type `text/csv`, or `text/plain`): one row per line,
//!     `id,amount,country,category`. Blank lines are skipped, and so is a
//!     first line that is the header `id,amount,country,...`. Fields are
//!     trimmed; quoting is not supported (no field may contain a comma).
//!   - JSON `{"row": "id,amount,country,category"}` (content type
//!     `application/json`): one row.
//!
//!   Without a recognised content type the payload is taken as JSON if it
//!   starts with `{`, else as CSV.
//! - Rules, in order:
//!   1. `blocked` when `country` (case-insensitive) is in the config value
//!      `blocked_countries`, a comma-separated list (default `KP,IR`);
//!   2. `review` when `amount` is greater than the config value `high_amount`
//!      (default `1000`);
//!   3. `ok` otherwise.
//! - Output: JSON
//!   `{"rows": N, "labels": {"ok": a, "review": b, "blocked": c}, "results": [{"id": "..", "label": ".."}, ...]}`
//!   with the results in input order.
//! - Errors (non-retryable): a malformed row (wrong number of fields, empty
//!   id or country, an amount that is not a number) is a `bad-input` error
//!   naming its line, e.g. `line 3: expected 4 fields (id,amount,country,category), got 2`;
//!   an invalid `high_amount` is a `bad-config` error.
//!
//! Example: `t1,25.50,FR,books\nt2,4999,US,electronics\nt3,10,KP,food` gives
//! `{"rows":3,"labels":{"ok":1,"review":1,"blocked":1},"results":[{"id":"t1","label":"ok"},{"id":"t2","label":"review"},{"id":"t3","label":"blocked"}]}`.

use std::borrow::Cow;

use eddy_sdk::{Error, Invocation, Output};
use serde::{Deserialize, Serialize};

const DEFAULT_HIGH_AMOUNT: f64 = 1000.0;
const DEFAULT_BLOCKED_COUNTRIES: &str = "KP,IR";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Label {
    Ok,
    Review,
    Blocked,
}

#[derive(Debug)]
struct Rules {
    high_amount: f64,
    /// Upper-case country codes.
    blocked_countries: Vec<String>,
}

impl Rules {
    fn from_config(inv: &Invocation) -> Result<Rules, Error> {
        let high_amount = match inv.config("high_amount") {
            None => DEFAULT_HIGH_AMOUNT,
            Some(v) => v
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| {
                    Error::new(
                        "bad-config",
                        format!("config high_amount: {v:?} is not a number"),
                    )
                })?,
        };
        let blocked_countries = inv
            .config_or("blocked_countries", DEFAULT_BLOCKED_COUNTRIES)
            .split(',')
            .map(|c| c.trim().to_ascii_uppercase())
            .filter(|c| !c.is_empty())
            .collect();
        Ok(Rules {
            high_amount,
            blocked_countries,
        })
    }

    fn label(&self, amount: f64, country: &str) -> Label {
        if self
            .blocked_countries
            .iter()
            .any(|c| c.eq_ignore_ascii_case(country))
        {
            Label::Blocked
        } else if amount > self.high_amount {
            Label::Review
        } else {
            Label::Ok
        }
    }
}

#[derive(Debug, Default, PartialEq, Serialize)]
struct Labels {
    ok: usize,
    review: usize,
    blocked: usize,
}

#[derive(Debug, PartialEq, Serialize)]
struct RowResult<'a> {
    id: &'a str,
    label: Label,
}

#[derive(Debug, PartialEq, Serialize)]
struct Report<'a> {
    rows: usize,
    labels: Labels,
    results: Vec<RowResult<'a>>,
}

#[derive(Deserialize)]
struct JsonRow {
    row: String,
}

/// The CSV text of the invocation, whichever way it came.
fn rows_text(inv: &Invocation) -> Result<Cow<'_, str>, Error> {
    let media = inv.media_type();
    let json = if inv.is_json() {
        true
    } else if media.eq_ignore_ascii_case("text/csv") || media.eq_ignore_ascii_case("text/plain") {
        false
    } else {
        inv.payload.trim_ascii_start().starts_with(b"{")
    };
    if json {
        let JsonRow { row } = inv.json()?;
        Ok(Cow::Owned(row))
    } else {
        inv.text().map(Cow::Borrowed)
    }
}

fn classify<'a>(text: &'a str, rules: &Rules) -> Result<Report<'a>, Error> {
    let mut labels = Labels::default();
    let mut results = Vec::new();
    let mut first = true;
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let header = first
            && fields.len() >= 2
            && fields[0].eq_ignore_ascii_case("id")
            && fields[1].eq_ignore_ascii_case("amount");
        first = false;
        if header {
            continue;
        }
        let [id, amount, country, _category] = fields[..] else {
            return Err(Error::bad_input(format!(
                "line {line_no}: expected 4 fields (id,amount,country,category), got {}",
                fields.len()
            )));
        };
        if id.is_empty() {
            return Err(Error::bad_input(format!("line {line_no}: empty id")));
        }
        if country.is_empty() {
            return Err(Error::bad_input(format!("line {line_no}: empty country")));
        }
        let amount = amount
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .ok_or_else(|| {
                Error::bad_input(format!("line {line_no}: amount {amount:?} is not a number"))
            })?;
        let label = rules.label(amount, country);
        match label {
            Label::Ok => labels.ok += 1,
            Label::Review => labels.review += 1,
            Label::Blocked => labels.blocked += 1,
        }
        results.push(RowResult { id, label });
    }
    Ok(Report {
        rows: results.len(),
        labels,
        results,
    })
}

fn handle(inv: Invocation) -> Result<Output, Error> {
    let rules = Rules::from_config(&inv)?;
    let text = rows_text(&inv)?;
    let report = classify(&text, &rules)?;
    Output::json(&report)
}

eddy_sdk::export!(handle);

#[cfg(test)]
mod tests {
    use super::*;

    fn inv(content_type: &str, payload: &str, config: &[(&str, &str)]) -> Invocation {
        Invocation {
            id: "i".into(),
            run_id: "r".into(),
            function: "classify".into(),
            attempt: 1,
            depth: 0,
            content_type: content_type.into(),
            payload: payload.as_bytes().to_vec(),
            config: config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            tenant: "acme".into(),
            version: 1,
            deadline_ms: 0,
            traceparent: None,
        }
    }

    fn run(inv: &Invocation) -> Result<serde_json::Value, Error> {
        let rules = Rules::from_config(inv)?;
        let text = rows_text(inv)?;
        let report = classify(&text, &rules)?;
        Ok(serde_json::to_value(&report).unwrap())
    }

    #[test]
    fn csv_with_defaults() {
        let csv = "id,amount,country,category\r\nt1,25.50,FR,books\r\n\r\nt2,4999,US,electronics\nt3,10,kp,food\nt4,1000,DE,food\n";
        let out = run(&inv("text/csv; charset=utf-8", csv, &[])).unwrap();
        assert_eq!(
            out,
            serde_json::json!({
                "rows": 4,
                "labels": {"ok": 2, "review": 1, "blocked": 1},
                "results": [
                    {"id": "t1", "label": "ok"},
                    {"id": "t2", "label": "review"},
                    {"id": "t3", "label": "blocked"},
                    {"id": "t4", "label": "ok"},
                ],
            })
        );
    }

    #[test]
    fn json_row_and_config() {
        let cfg = [("high_amount", "50"), ("blocked_countries", " ru , by ")];
        let out = run(&inv(
            "application/json",
            r#"{"row": "x,60,FR,books"}"#,
            &cfg,
        ))
        .unwrap();
        assert_eq!(out["results"][0]["label"], "review");
        let out = run(&inv("application/json", r#"{"row": "x,1,BY,books"}"#, &cfg)).unwrap();
        assert_eq!(out["labels"]["blocked"], 1);
        // KP is no longer blocked once the list is configured.
        let out = run(&inv("", r#" {"row": "x,1,KP,books"}"#, &cfg)).unwrap();
        assert_eq!(out["results"][0]["label"], "ok");
    }

    #[test]
    fn malformed_rows_name_the_line() {
        let err = run(&inv("text/csv", "a,1,FR,x\n\nb,2\n", &[])).unwrap_err();
        assert_eq!(err.code, "bad-input");
        assert!(!err.retryable);
        assert_eq!(
            err.message,
            "line 3: expected 4 fields (id,amount,country,category), got 2"
        );
        let err = run(&inv("text/csv", "a,lots,FR,x", &[])).unwrap_err();
        assert_eq!(err.message, "line 1: amount \"lots\" is not a number");
        let err = run(&inv("text/csv", "a,1,FR,x\n,1,FR,x", &[])).unwrap_err();
        assert_eq!(err.message, "line 2: empty id");
        let err = run(&inv("application/json", "{\"rows\": 1}", &[])).unwrap_err();
        assert_eq!(err.code, "bad-input");
    }

    #[test]
    fn bad_config() {
        let err = run(&inv("text/csv", "a,1,FR,x", &[("high_amount", "lots")])).unwrap_err();
        assert_eq!(err.code, "bad-config");
    }
}
