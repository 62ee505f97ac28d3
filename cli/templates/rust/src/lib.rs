//! {{name}}: counts the words of {"text": "..."}.

use eddy_sdk::{Error, Invocation, Output};
use serde::Deserialize;

#[derive(Deserialize)]
struct Request {
    text: String,
}

fn handle(inv: Invocation) -> Result<Output, Error> {
    // Not JSON of that shape: a `bad-input` error, not retried.
    let req: Request = inv.json()?;
    let words = req.text.split_whitespace().count();
    eddy_sdk::info(format!("{words} words"));
    Output::json(&serde_json::json!({ "words": words }))
}

eddy_sdk::export!(handle);
