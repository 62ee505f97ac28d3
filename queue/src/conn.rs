//! Connections to one Redis server or to a Redis Cluster, behind one type
//! each, so that every command and script in this crate is written once.
//!
//! A cluster is named by `redis+cluster://host:port[,host:port…]` (or
//! `rediss+cluster://` for TLS); `cluster_url` makes one of a plain URL.
//! Every key of a tenant carries the hash tag `{t:<tenant>}`, so a script or
//! a pipeline about one tenant stays on one slot; the few global keys
//! (registry of tenants, API keys, workers, assignments, activity) are only
//! touched by single-key commands or by pipelines on one of them.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use crate::Result;

/// How to reach Redis.
#[derive(Clone)]
pub(crate) enum Backend {
    Single(redis::Client),
    Cluster(Box<Cluster>),
}

/// The clients of a Redis Cluster.
#[derive(Clone)]
pub(crate) struct Cluster {
    /// Short commands: connection and response timeouts.
    client: ClusterClient,
    /// Blocking readers: no response timeout (a timeout would make the
    /// client send the blocked `XREADGROUP` again).
    blocking: ClusterClient,
    /// One plain client per seed node, for pub/sub (a `PUBLISH` reaches
    /// every node of a cluster, so any one will do; on failure the next).
    nodes: Vec<redis::Client>,
}

/// Whether `url` names a cluster, and its seed node URLs.
/// `url` as a cluster URL (`redis://a,b` → `redis+cluster://a,b`), for an
/// operator who says the Redis behind a plain URL is a cluster.
pub fn cluster_url(url: &str) -> String {
    if url.contains("+cluster://") {
        return url.to_string();
    }
    match url.split_once("://") {
        Some(("rediss", rest)) => format!("rediss+cluster://{rest}"),
        Some((_, rest)) => format!("redis+cluster://{rest}"),
        None => format!("redis+cluster://{url}"),
    }
}

pub(crate) fn cluster_seeds(url: &str) -> Option<Vec<String>> {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("redis+cluster://") {
        ("redis://", rest)
    } else if let Some(rest) = url.strip_prefix("rediss+cluster://") {
        ("rediss://", rest)
    } else {
        return None;
    };
    // `user:pass@` on the first seed applies to all.
    let (auth, hosts) = match rest.rsplit_once('@') {
        Some((auth, hosts)) => (format!("{auth}@"), hosts),
        None => (String::new(), rest),
    };
    let seeds: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| match h.split_once("://") {
            Some(_) => h.to_string(),
            None => format!("{scheme}{auth}{h}"),
        })
        .collect();
    (!seeds.is_empty()).then_some(seeds)
}

impl Backend {
    pub(crate) fn open(url: &str) -> Result<Self> {
        match cluster_seeds(url) {
            None => Ok(Backend::Single(redis::Client::open(url)?)),
            Some(seeds) => {
                let builder = || {
                    ClusterClientBuilder::new(seeds.clone())
                        .connection_timeout(Duration::from_secs(2))
                        .retries(6)
                        .min_retry_wait(20)
                        .max_retry_wait(500)
                };
                Ok(Backend::Cluster(Box::new(Cluster {
                    client: builder().response_timeout(Duration::from_secs(5)).build()?,
                    blocking: builder().build()?,
                    nodes: seeds
                        .iter()
                        .map(|s| redis::Client::open(s.as_str()))
                        .collect::<redis::RedisResult<_>>()?,
                })))
            }
        }
    }

    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Backend::Cluster(_))
    }

    /// The shared, auto-reconnecting connection for short commands.
    pub(crate) async fn shared(&self) -> Result<Conn> {
        Ok(match self {
            Backend::Single(client) => {
                let manager = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    .set_response_timeout(Some(Duration::from_secs(5)))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_millis(500));
                Conn::Single(ConnectionManager::new_with_config(client.clone(), manager).await?)
            }
            Backend::Cluster(c) => Conn::Cluster(c.client.get_async_connection().await?),
        })
    }

    /// A connection of its own without a response timeout, for one blocking
    /// reader.
    pub(crate) async fn blocking(&self) -> Result<BlockingConn> {
        Ok(match self {
            Backend::Single(client) => {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    .set_response_timeout(None);
                BlockingConn::Single(
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?,
                )
            }
            Backend::Cluster(c) => BlockingConn::Cluster(c.blocking.get_async_connection().await?),
        })
    }

    /// Clients to subscribe through, in the order to try them.
    pub(crate) fn pubsub_clients(&self) -> Vec<redis::Client> {
        match self {
            Backend::Single(client) => vec![client.clone()],
            Backend::Cluster(c) => c.nodes.clone(),
        }
    }
}

macro_rules! delegate {
    ($t:ident) => {
        impl ConnectionLike for $t {
            fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
                match self {
                    $t::Single(c) => c.req_packed_command(cmd),
                    $t::Cluster(c) => c.req_packed_command(cmd),
                }
            }

            fn req_packed_commands<'a>(
                &'a mut self,
                cmd: &'a Pipeline,
                offset: usize,
                count: usize,
            ) -> RedisFuture<'a, Vec<Value>> {
                match self {
                    $t::Single(c) => c.req_packed_commands(cmd, offset, count),
                    $t::Cluster(c) => c.req_packed_commands(cmd, offset, count),
                }
            }

            fn get_db(&self) -> i64 {
                match self {
                    $t::Single(c) => c.get_db(),
                    $t::Cluster(c) => c.get_db(),
                }
            }
        }

        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(match self {
                    $t::Single(_) => concat!(stringify!($t), "(single)"),
                    $t::Cluster(_) => concat!(stringify!($t), "(cluster)"),
                })
            }
        }
    };
}

/// The shared connection: one server (auto-reconnecting) or a cluster.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}
delegate!(Conn);

/// A connection for one blocking reader (see [`crate::Queue::blocking_connection`]).
#[derive(Clone)]
pub enum BlockingConn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}
delegate!(BlockingConn);

/// The hash slot group of a key: its hash tag (`{…}`), or the key itself.
pub(crate) fn slot_group(key: &str) -> &str {
    if let Some(open) = key.find('{')
        && let Some(len) = key[open + 1..].find('}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

/// `keys` grouped by hash slot group, in first-seen order within each.
pub(crate) fn by_slot(keys: &[String]) -> Vec<Vec<String>> {
    let mut groups: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for k in keys {
        groups.entry(slot_group(k)).or_default().push(k.clone());
    }
    groups.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_and_slot_groups() {
        assert_eq!(cluster_seeds("redis://127.0.0.1:6379"), None);
        assert_eq!(
            cluster_seeds("redis+cluster://127.0.0.1:7000,127.0.0.1:7001").unwrap(),
            vec!["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"]
        );
        assert_eq!(
            cluster_seeds("rediss+cluster://u:p@a:1,b:2").unwrap(),
            vec!["rediss://u:p@a:1", "rediss://u:p@b:2"]
        );
        assert_eq!(
            cluster_seeds(&cluster_url("redis://r:6379")).unwrap(),
            vec!["redis://r:6379"]
        );
        assert_eq!(slot_group("eddy:{t:acme}:q:f"), "t:acme");
        assert_eq!(slot_group("eddy:active"), "eddy:active");
        assert_eq!(slot_group("a{}b"), "a{}b");
        let g = by_slot(&[
            "eddy:{t:a}:q:x".into(),
            "eddy:{t:b}:q:x".into(),
            "eddy:{t:a}:q:y".into(),
        ]);
        assert_eq!(
            g,
            vec![
                vec!["eddy:{t:a}:q:x".to_string(), "eddy:{t:a}:q:y".into()],
                vec!["eddy:{t:b}:q:x".to_string()]
            ]
        );
    }
}
