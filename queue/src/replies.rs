//! The reply channel of a gateway instance: completions of sync invocations
//! publish their id there, so a waiting request wakes without polling.
//!
//! Pub/sub is not durable: a message sent while the subscription is down is
//! lost. Waiters therefore also re-read the record now and then (the result
//! key is the fallback), and every reconnect is announced so that they
//! re-check at once.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tracing::warn;

use crate::Queue;

/// What the reply subscription reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Invocation `id` finished.
    Done(String),
    /// The subscription was (re)established: messages may have been missed.
    Resubscribed,
}

impl Queue {
    /// Subscribes to `channel` for as long as the receiver lives,
    /// reconnecting with backoff. Each message's payload comes as
    /// [`Reply::Done`].
    pub fn replies(&self, channel: String) -> mpsc::Receiver<Reply> {
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
                        warn!(%error, channel, "subscribing to the reply channel; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                        continue;
                    }
                };
                backoff = Duration::from_millis(50);
                if tx.send(Reply::Resubscribed).await.is_err() {
                    return;
                }
                let mut messages = pubsub.into_on_message();
                while let Some(msg) = messages.next().await {
                    let id: String = match msg.get_payload() {
                        Ok(id) => id,
                        Err(_) => continue,
                    };
                    if tx.send(Reply::Done(id)).await.is_err() {
                        return;
                    }
                }
                warn!(channel, "reply subscription ended; resubscribing");
            }
        });
        rx
    }
}
