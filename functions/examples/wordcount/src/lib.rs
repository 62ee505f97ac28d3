//! `wordcount`: counts the words of a text.
//!
//! - Input: JSON `{"text": "..."}` (content type ignored).
//! - Output: JSON `{"words": N, "unique": U, "top": [["word", count], ...]}`
//!   where `words` is the number of words, `unique` the number of distinct
//!   words and `top` the (at most) 5 most frequent words, most frequent
//!   first, ties in alphabetical order.
//! - Words are the maximal runs of alphanumeric characters (Unicode) of the
//!   lowercased text: `"Don't stop"` has the words `don`, `t`, `stop`.
//! - Errors: a payload that is not JSON of that shape is a non-retryable
//!   `bad-input` error.
//!
//! Example: `{"text": "the cat and the hat"}` gives
//! `{"words":5,"unique":4,"top":[["the",2],["and",1],["cat",1],["hat",1]]}`.

use std::collections::BTreeMap;

use eddy_sdk::{Error, Invocation, Output};
use serde::{Deserialize, Serialize};

/// How many of the most frequent words the output lists.
const TOP: usize = 5;

#[derive(Deserialize)]
struct Request {
    text: String,
}

#[derive(Debug, PartialEq, Serialize)]
struct Counts {
    words: usize,
    unique: usize,
    top: Vec<(String, usize)>,
}

fn count(text: &str) -> Counts {
    let lower = text.to_lowercase();
    let mut freq: BTreeMap<&str, usize> = BTreeMap::new();
    let mut words = 0;
    for word in lower.split(|c: char| !c.is_alphanumeric()) {
        if word.is_empty() {
            continue;
        }
        words += 1;
        *freq.entry(word).or_default() += 1;
    }
    let unique = freq.len();
    // The map iterates in alphabetical order and the sort is stable, so ties
    // stay alphabetical.
    let mut top: Vec<(&str, usize)> = freq.into_iter().collect();
    top.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
    top.truncate(TOP);
    Counts {
        words,
        unique,
        top: top.into_iter().map(|(w, n)| (w.to_string(), n)).collect(),
    }
}

fn handle(inv: Invocation) -> Result<Output, Error> {
    let req: Request = inv.json()?;
    Output::json(&count(&req.text))
}

eddy_sdk::export!(handle);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_top() {
        let c = count("The cat and THE hat; the end. Cat!");
        assert_eq!(c.words, 8);
        assert_eq!(c.unique, 5);
        assert_eq!(
            c.top,
            vec![
                ("the".to_string(), 3),
                ("cat".to_string(), 2),
                ("and".to_string(), 1),
                ("end".to_string(), 1),
                ("hat".to_string(), 1),
            ]
        );
    }

    #[test]
    fn empty_and_punctuation_only() {
        assert_eq!(
            count(" ,.;- "),
            Counts {
                words: 0,
                unique: 0,
                top: vec![]
            }
        );
    }

    #[test]
    fn json_shape() {
        let out = serde_json::to_string(&count("b a b")).unwrap();
        assert_eq!(out, r#"{"words":3,"unique":2,"top":[["b",2],["a",1]]}"#);
    }
}
