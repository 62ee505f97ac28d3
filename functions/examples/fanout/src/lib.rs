//! `fanout`: the feedback-loop use case. Each invocation re-invokes its own
//! function `branch` times until the run's tree is `depth` levels deep.
//!
//! - Input: JSON `{"branch": B, "depth": D}` (B and D non-negative integers).
//! - Behaviour: when the invocation's depth (0 for the root) is less than D,
//!   it emits B follow-ups to its own function (the invocation's `function`
//!   field, so it works under any deployed name) with the same payload and
//!   content type. A run of `{"branch": 4, "depth": 6}` therefore has
//!   1 + 4 + 4² + ... + 4⁶ = 5461 invocations.
//! - With `"log": true` in the payload, each invocation logs one line
//!   (`depth d: emitting n`) through the host's `log`.
//! - Output: JSON `{"depth": d, "emitted": n}`: this invocation's depth and
//!   how many follow-ups it emitted.
//! - Errors: a payload that is not JSON of that shape is a non-retryable
//!   `bad-input` error. Emitting more than the function's emit limit ends the
//!   invocation with a `limit exceeded` error.

use eddy_sdk::{Error, Invocation, Output};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Plan {
    branch: u32,
    depth: u32,
    #[serde(default)]
    log: bool,
}

#[derive(Serialize)]
struct Report {
    depth: u32,
    emitted: u32,
}

fn handle(inv: Invocation) -> Result<Output, Error> {
    let plan: Plan = inv.json()?;
    let mut emitted = 0;
    if plan.log {
        let n = if inv.depth < plan.depth {
            plan.branch
        } else {
            0
        };
        eddy_sdk::info(format!("depth {}: emitting {n}", inv.depth));
    }
    if inv.depth < plan.depth {
        for _ in 0..plan.branch {
            eddy_sdk::emit_with(&inv.function, &inv.payload, &inv.content_type);
            emitted += 1;
        }
    }
    Output::json(&Report {
        depth: inv.depth,
        emitted,
    })
}

eddy_sdk::export!(handle);
