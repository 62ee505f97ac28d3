//! The reply channel of a gateway instance: completions of sync invocations
//! publish there, so a waiting request wakes without polling. The message is
//! the invocation's id followed by its finished record (the fields of its
//! hash, each as `<length>:<bytes>`), so the request answers without reading
//! the record back; just the id when the record is large.
//!
//! Pub/sub is not durable: a message sent while the subscription is down is
//! lost. Waiters therefore also re-read the record now and then (the result
//! key is the fallback), and every reconnect is announced so that they
//! re-check at once.

use std::collections::HashMap;
use std::time::Duration;

use eddy_protocol::InvocationRecord;
use eddy_protocol::messages::Message;
use futures::StreamExt;
use redis::AsyncCommands;
use tokio::sync::mpsc;
use tracing::warn;

use crate::{Queue, Result};

/// What the reply subscription reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Invocation `id` finished; its record is to be read.
    Done(String),
    /// Invocation `id` finished, and this is its record.
    Finished(String, Box<InvocationRecord>),
    /// The subscription was (re)established: messages may have been missed.
    Resubscribed,
}

/// What a control-channel subscription reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<M> {
    Message(M),
    /// The subscription was (re)established: messages may have been missed.
    Resubscribed,
}

impl Queue {
    /// Subscribes to a gateway's reply channel for as long as the receiver
    /// lives, reconnecting with backoff.
    pub fn replies(&self, channel: String) -> mpsc::Receiver<Reply> {
        self.subscription(channel, decode, Reply::Resubscribed)
    }

    /// Subscribes to the channel of `M` for as long as the receiver lives,
    /// reconnecting with backoff. Messages that do not decode are dropped.
    pub fn subscribe<M: Message>(&self) -> mpsc::Receiver<Event<M>> {
        self.subscription(
            M::CHANNEL.to_string(),
            |bytes| {
                let text = std::str::from_utf8(bytes).ok()?;
                Some(Event::Message(M::decode(text)?))
            },
            Event::Resubscribed,
        )
    }

    /// Publishes `message`. Pub/sub is not durable: callers say what the
    /// receivers fall back on when it is lost.
    pub async fn publish<M: Message>(&self, message: &M) -> Result<()> {
        let _: () = self.conn().publish(M::CHANNEL, message.encode()).await?;
        Ok(())
    }

    fn subscription<T: Clone + Send + 'static>(
        &self,
        channel: String,
        decode: fn(&[u8]) -> Option<T>,
        resubscribed: T,
    ) -> mpsc::Receiver<T> {
        let (tx, rx) = mpsc::channel(4096);
        // One server; or the nodes of a cluster in turn (a PUBLISH reaches
        // every node, so any one serves).
        let clients = self.backend.pubsub_clients();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(50);
            let mut turn = 0usize;
            while !tx.is_closed() {
                let Some(client) = clients.get(turn % clients.len().max(1)) else {
                    return;
                };
                turn += 1;
                let sub = async {
                    let mut pubsub = client.get_async_pubsub().await?;
                    pubsub.subscribe(&channel).await?;
                    Ok::<_, redis::RedisError>(pubsub)
                }
                .await;
                let pubsub = match sub {
                    Ok(p) => p,
                    Err(error) => {
                        warn!(%error, channel, "subscribing; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                        continue;
                    }
                };
                backoff = Duration::from_millis(50);
                if tx.send(resubscribed.clone()).await.is_err() {
                    return;
                }
                let mut messages = pubsub.into_on_message();
                while let Some(msg) = messages.next().await {
                    let Some(item) = decode(msg.get_payload_bytes()) else {
                        continue;
                    };
                    if tx.send(item).await.is_err() {
                        return;
                    }
                }
                warn!(channel, "subscription ended; resubscribing");
            }
        });
        rx
    }
}

/// A message as published: `<id>` alone, or `<id>\n` and the record's
/// fields (see the module doc). A record that does not parse still wakes its
/// waiter, which then reads the record itself.
fn decode(payload: &[u8]) -> Option<Reply> {
    let Some(nl) = payload.iter().position(|b| *b == b'\n') else {
        return std::str::from_utf8(payload)
            .ok()
            .map(|s| Reply::Done(s.to_string()));
    };
    let id = std::str::from_utf8(&payload[..nl]).ok()?.to_string();
    let mut rest = &payload[nl + 1..];
    let mut items = Vec::new();
    let complete = loop {
        if rest.is_empty() {
            break true;
        }
        let Some(colon) = rest.iter().position(|b| *b == b':') else {
            break false;
        };
        let Some(len) = std::str::from_utf8(&rest[..colon])
            .ok()
            .and_then(|l| l.parse::<usize>().ok())
        else {
            break false;
        };
        let Some(end) = (colon + 1).checked_add(len) else {
            break false;
        };
        let Some(item) = rest.get(colon + 1..end) else {
            break false;
        };
        items.push(item.to_vec());
        rest = &rest[end..];
    };
    if !complete || items.len() % 2 != 0 {
        return Some(Reply::Done(id));
    }
    let mut map = HashMap::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        map.insert(String::from_utf8_lossy(&k).into_owned(), v);
    }
    match crate::records::record_from_map(&id, None, &map) {
        Ok(rec) => Some(Reply::Finished(id, Box::new(rec))),
        Err(_) => Some(Reply::Done(id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(id: &str, fields: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = format!("{id}\n").into_bytes();
        for (k, v) in fields {
            out.extend(format!("{}:{k}", k.len()).bytes());
            out.extend(format!("{}:", v.len()).bytes());
            out.extend_from_slice(v);
        }
        out
    }

    #[test]
    fn a_bare_id_and_a_framed_record() {
        assert_eq!(decode(b"abc"), Some(Reply::Done("abc".into())));
        // Binary output with separators inside survives the framing.
        let output: &[u8] = b"x:\n1:\xff";
        let msg = frame(
            "inv1",
            &[
                ("tenant", b"acme"),
                ("status", b"succeeded"),
                ("run", b"inv1"),
                ("attempt", b"2"),
                ("completions", b"1"),
                ("ct", b"application/octet-stream"),
                ("output", output),
                (
                    "outcome",
                    br#"{"timings":{"queue_wait_us":0,"load_us":0,"instantiate_us":1,"run_us":7,"cold":false,"epoch_ticks":0}}"#,
                ),
            ],
        );
        let Some(Reply::Finished(id, rec)) = decode(&msg) else {
            panic!("not a record: {:?}", decode(&msg));
        };
        assert_eq!(id, "inv1");
        assert_eq!(rec.tenant, "acme");
        assert_eq!(rec.attempt, 2);
        assert_eq!(rec.output.as_deref(), Some(output));
        assert_eq!(rec.outcome.timings.run_us, 7);
    }

    #[test]
    fn a_broken_frame_still_wakes_the_waiter() {
        let mut msg = frame("inv2", &[("status", b"succeeded")]);
        msg.truncate(msg.len() - 3);
        assert_eq!(decode(&msg), Some(Reply::Done("inv2".into())));
        assert_eq!(decode(b"inv3\n4:abc"), Some(Reply::Done("inv3".into())));
    }
}
