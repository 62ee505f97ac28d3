//! All of Eddy's Redis access: streams, the Lua scripts that make enqueue and
//! completion atomic, the function registry, invocation and run records,
//! retries and dead letters.
//!
//! **Invariant:** this is the only crate that speaks Redis, and it writes only
//! `eddy_protocol` types (or plain counters) into it.
//!
//! Connections: one auto-reconnecting multiplexed connection
//! ([`redis::aio::ConnectionManager`]) for short commands, and a separate
//! connection without a response timeout for each blocking reader
//! ([`Queue::blocking_connection`]): a blocking `XREADGROUP` on the shared
//! connection would hit the default response timeout and hold up everyone.
#![forbid(unsafe_code)]

mod callbacks;
mod consume;
mod control;
mod invocations;
mod registry;
mod replies;
mod retries;
mod scripts;
mod tenants;

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};

pub use callbacks::{CALLBACK_GROUP, Callback, DeadCallback};
pub use consume::{Delivery, Malformed};
pub use control::StreamStats;
pub use invocations::{Completed, Completion, Disposition, Enqueued, FollowUp};
pub use registry::{Backlog, FunctionVersions};
pub use replies::Reply;
pub use retries::DeadLetter;
pub use tenants::{ApiKey, Quota, TenantInfo};

/// Errors of the queue.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Redis refused or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Something in Redis is not what Eddy wrote there.
    #[error("corrupt data in redis: {0}")]
    Corrupt(String),
    /// The function does not exist.
    #[error("function `{0}` not found")]
    NoFunction(String),
    /// A tenant quota refused the invocation: `which` is `pending` or `rate`.
    #[error("quota exceeded: {which} (limit {limit})")]
    Quota { which: String, limit: u64 },
}

impl Error {
    /// Whether retrying the same call later may succeed (Redis down or
    /// restarting, a dropped connection).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Redis(e) => {
                e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_timeout()
                    || e.is_connection_refusal()
                    || matches!(
                        e.code(),
                        Some("LOADING" | "TRYAGAIN" | "BUSY" | "MASTERDOWN")
                    )
            }
            _ => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Settings of the queue.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// How long invocation and run records are kept after their last change.
    pub record_ttl: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            record_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

/// A handle on Eddy's Redis. Cheap to clone.
#[derive(Clone)]
pub struct Queue {
    client: redis::Client,
    conn: ConnectionManager,
    config: QueueConfig,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Queue {
    /// Connects to `url` (`redis://host:port/db`). Reconnects by itself later.
    pub async fn connect(url: &str, config: QueueConfig) -> Result<Self> {
        let client = redis::Client::open(url)?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_with_config(client.clone(), manager).await?;
        Ok(Queue {
            client,
            conn,
            config,
        })
    }

    /// A dedicated connection without a response timeout, for one blocking
    /// reader.
    pub async fn blocking_connection(&self) -> Result<MultiplexedConnection> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(None);
        Ok(self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?)
    }

    pub(crate) fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    pub(crate) fn ttl_secs(&self) -> u64 {
        self.config.record_ttl.as_secs().max(1)
    }

    /// Round trip to Redis.
    pub async fn ping(&self) -> Result<()> {
        let _: String = redis::cmd("PING").query_async(&mut self.conn()).await?;
        Ok(())
    }
}
