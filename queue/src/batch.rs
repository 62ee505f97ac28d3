//! Group commit: calls made at about the same time share one trip to Redis.
//!
//! A gateway accepting many requests at once, or a worker finishing many
//! invocations, would otherwise send one script call each: a write, a
//! wake-up of Redis, a reply and a wake-up of the caller per invocation. A
//! [`Batcher`] takes every call waiting when it gets to run and hands them
//! to one flush (one script call per tenant). It never waits to fill a
//! batch: alone, a call goes out at once; under load, calls pile up while
//! the previous flushes are in flight, and the batch grows with the load.
//!
//! A [`Gate`] paces the ordinary (bulk) flushes while it is held (a gateway
//! holds it while its sync calls wait): one in flight, then a pause as long
//! as it took (at most [`MAX_PAUSE`]), so that Redis has room for the urgent
//! ones between them and the bulk keeps at least half its pace.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;

use crate::{Error, Result};

struct Item<T, R> {
    job: T,
    reply: oneshot::Sender<Result<R>>,
}

/// Hands jobs to a flushing task; see the module documentation.
pub(crate) struct Batcher<T, R> {
    tx: mpsc::UnboundedSender<Item<T, R>>,
    urgent: mpsc::UnboundedSender<Item<T, R>>,
}

impl<T, R> std::fmt::Debug for Batcher<T, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").finish_non_exhaustive()
    }
}

/// Paces a batcher's ordinary flushes while it is held (see the module
/// documentation and `Queue::hold_bulk_enqueues`). Urgent flushes are never
/// paced.
#[derive(Debug)]
pub(crate) struct Gate {
    held: AtomicUsize,
    opened: Notify,
    max_pause: Duration,
    /// Ordinary flushes of a gated batcher that ended while it was held.
    paced: AtomicU64,
    /// The same count as a metric, once its owner names one.
    meter: std::sync::OnceLock<metrics::Counter>,
}

/// The longest pause after an ordinary flush while a [`Gate`] is held.
pub(crate) const MAX_PAUSE: Duration = eddy_protocol::sync_first::MAX_PAUSE;

impl Default for Gate {
    fn default() -> Self {
        Gate::new(MAX_PAUSE)
    }
}

impl Gate {
    pub(crate) fn new(max_pause: Duration) -> Self {
        Gate {
            held: AtomicUsize::new(0),
            opened: Notify::new(),
            max_pause,
            paced: AtomicU64::new(0),
            meter: std::sync::OnceLock::new(),
        }
    }

    /// How many ordinary flushes of the batcher it gates ended while it was
    /// held (each then followed by a pause or, without pauses, by the next
    /// one alone) so far. The callers' own
    /// pacing ([`Gate::pace`]) is not counted: they count it themselves.
    #[cfg(test)]
    fn paced_flushes(&self) -> u64 {
        self.paced.load(Ordering::Relaxed)
    }

    /// Counts the paced flushes in `counter` too (the first one set stays).
    pub(crate) fn meter(&self, counter: metrics::Counter) {
        let _ = self.meter.set(counter);
    }

    fn count_paced(&self) {
        self.paced.fetch_add(1, Ordering::Relaxed);
        if let Some(m) = self.meter.get() {
            m.increment(1);
        }
    }

    pub(crate) fn hold(self: &Arc<Self>) -> Hold {
        self.held.fetch_add(1, Ordering::AcqRel);
        Hold(self.clone())
    }

    fn is_held(&self) -> bool {
        self.held.load(Ordering::Acquire) > 0
    }

    /// Pacing for a caller that sends its bulk script calls itself (the
    /// gateway's batch endpoint): after one that took `took`, while the
    /// gate is held, waits as long again (at most the gate's bound) or until
    /// it is released. Returns the time waited.
    pub(crate) async fn pace(&self, took: Duration) -> Duration {
        if !self.is_held() {
            return Duration::ZERO;
        }
        let started = Instant::now();
        self.released(started + took.min(self.max_pause)).await;
        started.elapsed()
    }

    /// Until the gate is released or `deadline`.
    async fn released(&self, deadline: Instant) {
        let opened = self.opened.notified();
        tokio::pin!(opened);
        opened.as_mut().enable();
        if self.is_held() {
            let _ = tokio::time::timeout_at(deadline, opened).await;
        }
    }
}

/// One hold of a [`Gate`]; released when dropped.
#[derive(Debug)]
pub struct Hold(Arc<Gate>);

impl Drop for Hold {
    fn drop(&mut self) {
        if self.0.held.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.opened.notify_waiters();
        }
    }
}

/// How big a batch may grow: by count, and by the bytes it carries (one
/// script call holds single-threaded Redis for the whole batch).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_jobs: usize,
    pub(crate) max_bytes: usize,
    /// Flushes of ordinary jobs in flight at once. More than one lets a
    /// batch form while the previous one is on its way without doubling
    /// anybody's wait. Urgent jobs are not held back by it.
    pub(crate) in_flight: usize,
}

/// The jobs waiting in `rx` after `first`, up to the limits; one that does
/// not fit is left in `carry` for the next batch.
fn gather<T, R>(
    first: Item<T, R>,
    rx: &mut mpsc::UnboundedReceiver<Item<T, R>>,
    carry: &mut Option<Item<T, R>>,
    limits: Limits,
    size: fn(&T) -> usize,
) -> Vec<Item<T, R>> {
    let mut bytes = size(&first.job);
    let mut items = vec![first];
    while items.len() < limits.max_jobs.max(1) {
        let Ok(next) = rx.try_recv() else { break };
        let b = size(&next.job);
        if bytes + b > limits.max_bytes {
            *carry = Some(next);
            break;
        }
        bytes += b;
        items.push(next);
    }
    items
}

impl<T: Send + 'static, R: Send + 'static> Batcher<T, R> {
    /// Spawns the flushing task on the current runtime. `size` tells the
    /// bytes of a job; `flush` gets a batch (and whether it is urgent) and
    /// answers every job of it, in order (a missing answer reaches its
    /// caller as [`Error::Closed`]).
    #[cfg(test)]
    pub(crate) fn spawn<F, Fut>(limits: Limits, size: fn(&T) -> usize, flush: F) -> Self
    where
        F: Fn(Vec<T>, bool) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<Result<R>>> + Send + 'static,
    {
        Self::spawn_gated(limits, size, None, flush)
    }

    /// [`Batcher::spawn`], with ordinary flushes paced while `gate` is held.
    pub(crate) fn spawn_gated<F, Fut>(
        limits: Limits,
        size: fn(&T) -> usize,
        gate: Option<Arc<Gate>>,
        flush: F,
    ) -> Self
    where
        F: Fn(Vec<T>, bool) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<Result<R>>> + Send + 'static,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<Item<T, R>>();
        let (urgent, mut urgent_rx) = mpsc::unbounded_channel::<Item<T, R>>();
        tokio::spawn(async move {
            let run = |items: Vec<Item<T, R>>, ordinary: bool| {
                let (jobs, replies): (Vec<T>, Vec<_>) =
                    items.into_iter().map(|i| (i.job, i.reply)).unzip();
                let started = Instant::now();
                let done = flush(jobs, !ordinary);
                async move {
                    let mut answers = done.await.into_iter();
                    for reply in replies {
                        let _ = reply.send(answers.next().unwrap_or(Err(Error::Closed)));
                    }
                    (ordinary, started.elapsed())
                }
            };
            let mut running = FuturesUnordered::new();
            let mut ordinary = 0usize;
            // A job that did not fit into the previous batch starts the next.
            let (mut carry, mut urgent_carry) = (None, None);
            let (mut open, mut urgent_open) = (true, true);
            // While the gate is held: no ordinary flush before this.
            let mut paused_until: Option<Instant> = None;
            loop {
                let held = gate.as_ref().is_some_and(|g| g.is_held());
                if !held {
                    paused_until = None;
                }
                let pause = paused_until.filter(|until| Instant::now() < *until);
                let in_flight = if held { 1 } else { limits.in_flight.max(1) };
                tokio::select! {
                    biased;
                    item = async {
                        match urgent_carry.take() {
                            Some(i) => Some(i),
                            None => urgent_rx.recv().await,
                        }
                    }, if urgent_open => match item {
                        None => urgent_open = false,
                        Some(first) => {
                            let items = gather(first, &mut urgent_rx, &mut urgent_carry, limits, size);
                            running.push(run(items, false));
                        }
                    },
                    Some((was_ordinary, took)) = running.next(), if !running.is_empty() => {
                        if was_ordinary {
                            ordinary -= 1;
                            if let Some(g) = gate.as_ref().filter(|g| g.is_held()) {
                                paused_until = Some(Instant::now() + took.min(g.max_pause));
                                g.count_paced();
                            }
                        }
                    }
                    () = async {
                        if let (Some(g), Some(until)) = (&gate, pause) {
                            g.released(until).await;
                        }
                    }, if pause.is_some() => {}
                    item = async {
                        match carry.take() {
                            Some(i) => Some(i),
                            None => rx.recv().await,
                        }
                    }, if open && pause.is_none() && ordinary < in_flight => match item {
                        None => open = false,
                        Some(first) => {
                            let items = gather(first, &mut rx, &mut carry, limits, size);
                            ordinary += 1;
                            running.push(run(items, true));
                        }
                    },
                    else => break,
                }
            }
        });
        Batcher { tx, urgent }
    }

    /// Queues `job` for the next flush and waits for its answer. An
    /// `urgent` job (someone waits for it: a sync invocation) goes out at
    /// once with the other urgent ones waiting, not behind the flushes in
    /// flight, and never in a batch with ordinary jobs.
    pub(crate) async fn call(&self, job: T, urgent: bool) -> Result<R> {
        let (reply, answer) = oneshot::channel();
        let tx = if urgent { &self.urgent } else { &self.tx };
        tx.send(Item { job, reply }).map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn calls_waiting_together_share_a_flush_and_get_their_own_answers() {
        let flushes = Arc::new(AtomicUsize::new(0));
        let seen = flushes.clone();
        let b: Batcher<u32, u32> = Batcher::spawn(
            Limits {
                max_jobs: 64,
                max_bytes: 1 << 20,
                in_flight: 1,
            },
            |_| 1,
            move |jobs: Vec<u32>, _| {
                seen.fetch_add(1, Ordering::SeqCst);
                async move {
                    tokio::task::yield_now().await;
                    jobs.into_iter().map(|j| Ok(j * 10)).collect()
                }
            },
        );
        let b = Arc::new(b);
        let calls: Vec<_> = (0..100u32)
            .map(|i| {
                let b = b.clone();
                tokio::spawn(async move { (i, b.call(i, false).await) })
            })
            .collect();
        for c in calls {
            let (i, answer) = c.await.unwrap();
            assert_eq!(answer.unwrap(), i * 10);
        }
        let n = flushes.load(Ordering::SeqCst);
        // 100 calls, at most 64 per flush: 2 or a few more, never 100.
        assert!((2..=10).contains(&n), "{n} flushes");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_batch_stops_at_its_byte_limit_and_a_short_answer_is_an_error() {
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let b: Batcher<usize, usize> = Batcher::spawn(
            Limits {
                max_jobs: 64,
                max_bytes: 10,
                in_flight: 1,
            },
            |j| *j,
            move |jobs: Vec<usize>, _| {
                seen.lock().unwrap().push(jobs.clone());
                async move {
                    // Answers all but a job of 7 bytes.
                    jobs.into_iter().filter(|j| *j != 7).map(Ok).collect()
                }
            },
        );
        let b = Arc::new(b);
        let calls: Vec<_> = [4usize, 4, 4, 7]
            .into_iter()
            .map(|j| {
                let b = b.clone();
                tokio::spawn(async move { b.call(j, false).await })
            })
            .collect();
        let mut answers = Vec::new();
        for c in calls {
            answers.push(c.await.unwrap());
        }
        assert!(matches!(answers[3], Err(Error::Closed)));
        assert_eq!(answers[0].as_ref().unwrap(), &4);
        for batch in sizes.lock().unwrap().iter() {
            assert!(
                batch.iter().sum::<usize>() <= 10 || batch.len() == 1,
                "{batch:?}"
            );
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_urgent_call_does_not_wait_behind_ordinary_flushes_in_flight() {
        // Ordinary flushes block until released; one may be in flight.
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let g = gate.clone();
        let b: Batcher<u32, u32> = Batcher::spawn(
            Limits {
                max_jobs: 64,
                max_bytes: 1 << 20,
                in_flight: 1,
            },
            |_| 1,
            move |jobs: Vec<u32>, _| {
                let g = g.clone();
                async move {
                    if jobs.iter().any(|j| *j < 100) {
                        let _ = g.acquire().await.unwrap();
                    }
                    jobs.into_iter().map(Ok).collect()
                }
            },
        );
        let b = Arc::new(b);
        let ordinary: Vec<_> = (0..3u32)
            .map(|i| {
                let b = b.clone();
                tokio::spawn(async move { b.call(i, false).await })
            })
            .collect();
        tokio::task::yield_now().await;
        // The ordinary jobs are stuck; the urgent one is answered.
        let urgent = tokio::time::timeout(std::time::Duration::from_secs(5), b.call(100, true))
            .await
            .expect("the urgent call waited behind ordinary ones");
        assert_eq!(urgent.unwrap(), 100);
        assert!(ordinary.iter().all(|o| !o.is_finished()));
        gate.add_permits(10);
        for (i, o) in ordinary.into_iter().enumerate() {
            assert_eq!(o.await.unwrap().unwrap(), i as u32);
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_held_gate_paces_ordinary_flushes_and_never_urgent_ones() {
        let limits = Limits {
            max_jobs: 64,
            max_bytes: 1 << 20,
            in_flight: 2,
        };
        // Ordinary job j takes j ms to flush; the spans are recorded.
        let spans = Arc::new(std::sync::Mutex::new(Vec::<(u32, Instant, Instant)>::new()));
        let gate = Arc::new(Gate::new(Duration::from_secs(60)));
        let b = Arc::new(Batcher::spawn_gated(limits, |_| 1, Some(gate.clone()), {
            let spans = spans.clone();
            move |jobs: Vec<u32>, urgent| {
                let spans = spans.clone();
                async move {
                    let started = Instant::now();
                    if !urgent {
                        tokio::time::sleep(Duration::from_millis(jobs[0].into())).await;
                    }
                    let mut s = spans.lock().unwrap();
                    s.extend(jobs.iter().map(|j| (*j, started, Instant::now())));
                    jobs.into_iter().map(Ok).collect()
                }
            }
        }));
        let span = |j: u32| *spans.lock().unwrap().iter().find(|s| s.0 == j).unwrap();
        let call = |j: u32| {
            let b = b.clone();
            tokio::spawn(async move { b.call(j, false).await.unwrap() })
        };
        let secs = Duration::from_secs;
        // Lets the batcher take what was called so far into a flush.
        let settle = || async {
            for _ in 0..100 {
                tokio::task::yield_now().await;
            }
        };

        // Not held: two flushes at once, no pause.
        let a = call(300);
        settle().await;
        let c = call(301);
        assert_eq!((a.await.unwrap(), c.await.unwrap()), (300, 301));
        assert!(span(301).1 < span(300).2, "unheld flushes did not overlap");
        assert_eq!(gate.paced_flushes(), 0);

        // Held: one at a time, and after one that took 200 ms a pause as
        // long; an urgent call meanwhile is answered at once.
        let hold = gate.hold();
        let first = call(200);
        settle().await;
        let second = call(1);
        let urgent = tokio::time::timeout(secs(5), b.call(7, true)).await;
        assert_eq!(urgent.expect("an urgent call was paced").unwrap(), 7);
        assert_eq!((first.await.unwrap(), second.await.unwrap()), (200, 1));
        let gap = span(1).1 - span(200).2;
        assert!(
            gap >= Duration::from_millis(150),
            "paused {gap:?} after a 200 ms flush"
        );
        // Both ordinary flushes were followed by a pause; the urgent one not.
        assert_eq!(gate.paced_flushes(), 2);

        // Released during the pause: the next flush goes at once.
        let first = call(1000);
        settle().await;
        let second = call(2);
        assert_eq!(first.await.unwrap(), 1000);
        drop(hold);
        assert_eq!(second.await.unwrap(), 2);
        let gap = span(2).1 - span(1000).2;
        assert!(
            gap < Duration::from_millis(900),
            "the release did not end a 1 s pause: {gap:?}"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_held_gate_without_pauses_narrows_ordinary_flushes_to_one_at_a_time() {
        let limits = Limits {
            max_jobs: 1,
            max_bytes: 1 << 20,
            in_flight: 2,
        };
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Gate::new(Duration::ZERO));
        let b = Arc::new(Batcher::spawn_gated(limits, |_| 1, Some(gate.clone()), {
            let (running, most) = (running.clone(), most.clone());
            move |jobs: Vec<u32>, _| {
                let (running, most) = (running.clone(), most.clone());
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    jobs.into_iter().map(Ok).collect()
                }
            }
        }));
        let burst = |n: u32| {
            let calls: Vec<_> = (0..n)
                .map(|j| {
                    let b = b.clone();
                    tokio::spawn(async move { b.call(j, false).await.unwrap() })
                })
                .collect();
            async move {
                for (j, c) in calls.into_iter().enumerate() {
                    assert_eq!(c.await.unwrap(), j as u32);
                }
            }
        };
        // Not held: two flushes in flight.
        burst(6).await;
        assert_eq!(most.swap(0, Ordering::SeqCst), 2);
        assert_eq!(gate.paced_flushes(), 0);
        // Held: one at a time, each counted.
        let hold = gate.hold();
        burst(6).await;
        assert_eq!(most.swap(0, Ordering::SeqCst), 1);
        assert_eq!(gate.paced_flushes(), 6);
        drop(hold);
        burst(6).await;
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_callers_own_pacing_waits_only_while_held_as_long_as_its_call_took() {
        let gate = Arc::new(Gate::new(Duration::from_secs(60)));
        let ms = Duration::from_millis;
        // Not held: no pause, whatever the call took.
        assert_eq!(gate.pace(Duration::from_secs(60)).await, Duration::ZERO);
        // Held: as long as the call took.
        let hold = gate.hold();
        let paused = gate.pace(ms(200)).await;
        assert!(
            paused >= ms(200) && paused < Duration::from_secs(30),
            "{paused:?}"
        );
        // Released midway: the pause ends with it.
        let pacing = tokio::spawn({
            let gate = gate.clone();
            async move { gate.pace(Duration::from_secs(60)).await }
        });
        tokio::task::yield_now().await;
        drop(hold);
        let paused = tokio::time::timeout(Duration::from_secs(10), pacing)
            .await
            .expect("the release did not end the pause")
            .unwrap();
        assert!(paused < Duration::from_secs(10), "{paused:?}");
        // The bound: never longer than the gate's.
        let gate = Arc::new(Gate::new(ms(20)));
        let _held = gate.hold();
        let paused =
            tokio::time::timeout(Duration::from_secs(10), gate.pace(Duration::from_secs(60)))
                .await
                .expect("the pause outlasted the gate's bound");
        assert!(paused >= ms(20), "{paused:?}");
    }
}
