//! `echo`: returns its input unchanged.
//!
//! - Input: any payload, any content type.
//! - Output: the same bytes with the same content type.
//!
//! The smallest useful processor; handy to check a deployment end to end and
//! as the target of other functions' follow-ups.

use eddy_sdk::{Error, Invocation, Output};

fn handle(inv: Invocation) -> Result<Output, Error> {
    Ok(Output::bytes(inv.content_type, inv.payload))
}

eddy_sdk::export!(handle);
