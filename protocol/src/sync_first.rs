//! Sync before bulk: work somebody waits for (a sync invocation) never
//! queues behind work that can wait (async invocations, a bulk load, a
//! burst's completions), on the CPU or in Redis. Each part is measured in
//! `bench/RESULTS.md` by a sync trickle's p99 during another tenant's
//! 100,000-invocation burst (`bench/w5-scale.sh`).
//!
//! Always, because they cost the bulk nothing:
//! - a sync invocation's enqueue publishes `!<stream>` (`Wake::Interactive`)
//!   and a worker reads and runs it on its **interactive lane**, a thread of
//!   its own at the process's priority with Redis connections of its own,
//!   which keeps a blocking read open on the streams that took a sync
//!   invocation in the last [`INTERACTIVE_FOR`] and have room for one more
//!   (`eddy_worker`, `wake.rs`);
//! - sync enqueues and completions go on an **urgent connection**, which
//!   Redis serves in turn with the batches on the ordinary one
//!   (`eddy_queue::Queue`).
//!
//! Behind the one switch, [`SyncFirst`] (`EDDY_BULK_YIELD`, on by default),
//! because each costs the bulk some throughput while sync calls last:
//! - **priorities**: a worker's bulk threads (reads, async invocations,
//!   short guests run inline, completions, callbacks) at nice
//!   [`SyncFirst::bulk_nice`], long guests' execution threads below them
//!   ([`SyncFirst::exec_nice`]);
//! - **paced enqueues**: while a gateway's sync calls wait, its group
//!   commits of async invocations go one at a time and a bulk load pauses
//!   after each chunk, each pause as long as the flush took, at most
//!   [`MAX_PAUSE`] (`Queue::hold_bulk_enqueues`, `Queue::pace_bulk_enqueue`);
//! - **narrowed completions**: for [`NARROW_FOR`] after a worker's last sync
//!   invocation, its bulk completions go one flush at a time instead of two
//!   (`Queue::narrow_bulk_completions`), so a sync completion finds at most
//!   one bulk script ahead of it in Redis.

use std::time::Duration;

/// Whether bulk work yields to sync work (the switch; see the module).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncFirst {
    pub bulk_yields: bool,
}

impl Default for SyncFirst {
    fn default() -> Self {
        SyncFirst { bulk_yields: true }
    }
}

impl SyncFirst {
    /// The nice value of a worker's bulk threads: 15 when bulk work yields
    /// (on 2 cores a sync trickle's p99 during a 100,000 burst was 12-15%
    /// lower than at 5, 19 no better, W1 unchanged), else 0.
    pub fn bulk_nice(self) -> i32 {
        if self.bulk_yields { 15 } else { 0 }
    }

    /// The nice value of long guests' execution threads: five steps below
    /// the bulk work (a third of its CPU weight), at least 10, at most 19.
    /// Not a matter of sync calls alone: a tenant's CPU-bound burst gives
    /// way to other tenants' reads, completions and short guests.
    pub fn exec_nice(self) -> i32 {
        (self.bulk_nice() + 5).clamp(10, 19)
    }
}

/// How long after a stream's last sync invocation the lane keeps a blocking
/// read open on it.
pub const INTERACTIVE_FOR: Duration = Duration::from_secs(10);

/// How long after its last sync invocation a worker keeps its bulk
/// completions narrowed to one flush in flight.
pub const NARROW_FOR: Duration = Duration::from_secs(1);

/// The longest pause of paced bulk enqueues.
pub const MAX_PAUSE: Duration = Duration::from_millis(2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_guests_stay_below_the_bulk_work() {
        let on = SyncFirst::default();
        assert_eq!((on.bulk_nice(), on.exec_nice()), (15, 19));
        let off = SyncFirst { bulk_yields: false };
        assert_eq!((off.bulk_nice(), off.exec_nice()), (0, 10));
    }
}
