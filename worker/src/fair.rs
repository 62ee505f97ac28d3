//! Fair execution slots: the sandboxes that may run guest code at once (about
//! one per core), handed out round-robin across tenants.
//!
//! A worker holds many more invocations than it has cores (they spend part of
//! their life on Redis round trips). Without this gate, every held
//! invocation competes for the CPU at once, so a tenant's trickle waits
//! behind another tenant's whole burst. With it, an invocation waits at most
//! for one execution per other tenant with waiters: when a slot frees, it
//! goes to the next tenant in turn, not to the oldest waiter.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, mpsc};

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

#[derive(Debug, Default)]
struct State {
    free: usize,
    /// Waiters per tenant, oldest first.
    waiting: HashMap<String, VecDeque<oneshot::Sender<Pass>>>,
    /// Tenants with waiters, in turn order.
    turn: VecDeque<String>,
    /// Slots held per tenant (kept only by a gate with a cap).
    held: HashMap<String, usize>,
}

/// How recently another tenant must have run here for an invocation to be
/// isolated on the low-priority execution threads.
const SHARED_WINDOW: Duration = Duration::from_secs(1);

/// Which tenants ran on this worker lately: whether the CPU is shared.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    /// When each tenant last asked to run (pruned as it goes).
    seen: Mutex<HashMap<String, Instant>>,
}

impl Activity {
    /// Notes `tenant`'s activity; whether another tenant was active lately.
    fn shared(&self, tenant: &str) -> bool {
        let now = Instant::now();
        let mut seen = self.seen.lock();
        match seen.get_mut(tenant) {
            Some(at) => *at = now,
            None => {
                seen.insert(tenant.to_string(), now);
            }
        }
        if seen.len() > 1 {
            seen.retain(|_, at| now.duration_since(*at) < SHARED_WINDOW);
        }
        seen.len() > 1
    }

    /// Whether a tenant other than `tenant` was active lately (records
    /// nothing).
    fn others(&self, tenant: &str) -> bool {
        let now = Instant::now();
        let seen = self.seen.lock();
        seen.iter()
            .any(|(t, at)| t != tenant && now.duration_since(*at) < SHARED_WINDOW)
    }
}

/// Execution slots shared by every tenant of this worker. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct FairGate {
    state: Arc<Mutex<State>>,
    /// Most slots one tenant may hold while another tenant is active on
    /// this worker (`usize::MAX`: no cap).
    cap: usize,
    /// Which tenants were active lately (for the cap).
    activity: Option<Arc<Activity>>,
}

/// One execution slot; given to the next tenant in turn when dropped.
#[derive(Debug)]
pub(crate) struct Pass {
    gate: Option<FairGate>,
    /// Its holder, where the gate counts holders.
    tenant: Option<String>,
}

impl Drop for Pass {
    fn drop(&mut self) {
        if let Some(gate) = self.gate.take() {
            gate.release(self.tenant.take());
        }
    }
}

impl FairGate {
    pub(crate) fn new(slots: usize) -> Self {
        FairGate {
            state: Arc::new(Mutex::new(State {
                free: slots.max(1),
                ..State::default()
            })),
            cap: usize::MAX,
            activity: None,
        }
    }

    /// A gate where no tenant holds more than half the slots (at least one)
    /// while another tenant was active on the worker lately (`activity`): a
    /// tenant whose guests hold their slots long (blocked in host calls
    /// until their timeout) cannot take them all from the others, even
    /// between the others' invocations. Alone, a tenant uses them all.
    pub(crate) fn capped(slots: usize, activity: Arc<Activity>) -> Self {
        FairGate {
            cap: (slots / 2).max(1),
            activity: Some(activity),
            ..FairGate::new(slots)
        }
    }

    fn counts(&self) -> bool {
        self.cap != usize::MAX
    }

    /// Whether `tenant` may take one more slot now.
    fn may_take(&self, s: &State, tenant: &str) -> bool {
        if !self.counts() || s.held.get(tenant).copied().unwrap_or(0) < self.cap {
            return true;
        }
        let others_hold = s.held.iter().any(|(t, n)| t != tenant && *n > 0);
        let others_wait = s.turn.iter().any(|t| t != tenant);
        let others_active = self.activity.as_ref().is_some_and(|a| a.others(tenant));
        !others_hold && !others_wait && !others_active
    }

    fn pass(&self, s: &mut State, tenant: &str) -> Pass {
        let tenant = self.counts().then(|| {
            *s.held.entry(tenant.to_string()).or_default() += 1;
            tenant.to_string()
        });
        Pass {
            gate: Some(self.clone()),
            tenant,
        }
    }

    fn unhold(s: &mut State, tenant: &str) {
        if let Some(n) = s.held.get_mut(tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                s.held.remove(tenant);
            }
        }
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, State> {
        self.state.lock()
    }

    /// Waits for a slot for `tenant`'s invocation.
    pub(crate) async fn enter(&self, tenant: &str) -> Pass {
        let rx = {
            let mut s = self.lock();
            // A free slot is this caller's unless a waiter that may take it
            // is ahead in turn.
            if s.free > 0
                && self.may_take(&s, tenant)
                && !s.turn.iter().any(|t| self.may_take(&s, t))
            {
                s.free -= 1;
                return self.pass(&mut s, tenant);
            }
            let (tx, rx) = oneshot::channel();
            let State { waiting, turn, .. } = &mut *s;
            let queue = waiting.entry(tenant.to_string()).or_default();
            if queue.is_empty() {
                turn.push_back(tenant.to_string());
            }
            queue.push_back(tx);
            rx
        };
        // A granted pass that is never received (this future dropped) drops
        // inside the channel and frees its slot again.
        match rx.await {
            Ok(pass) => pass,
            // The sender went away without a pass: only when the gate is
            // dropped, which outlives every caller. Run unthrottled.
            Err(_) => Pass {
                gate: None,
                tenant: None,
            },
        }
    }

    /// A slot came free (`holder`'s, where holders are counted): hand it to
    /// the next tenant in turn that may take it, or keep it.
    fn release(&self, holder: Option<String>) {
        let mut s = self.lock();
        if let Some(h) = holder {
            Self::unhold(&mut s, &h);
        }
        // Tenants at their cap keep their place in turn; each is looked at
        // once.
        let mut skipped = 0;
        while skipped < s.turn.len() {
            let Some(tenant) = s.turn.pop_front() else {
                break;
            };
            if !self.may_take(&s, &tenant) {
                s.turn.push_back(tenant);
                skipped += 1;
                continue;
            }
            let (next, more) = match s.waiting.get_mut(&tenant) {
                Some(q) => (q.pop_front(), !q.is_empty()),
                None => (None, false),
            };
            if more {
                s.turn.push_back(tenant.clone());
            } else {
                s.waiting.remove(&tenant);
            }
            let Some(tx) = next else { continue };
            let pass = self.pass(&mut s, &tenant);
            match tx.send(pass) {
                Ok(()) => return,
                // The waiter is gone: its pass comes back, and dropping it
                // here would re-enter this lock. Defuse it and try the next.
                Err(mut pass) => {
                    pass.gate = None;
                    Self::unhold(&mut s, &tenant);
                }
            }
        }
        s.free += 1;
    }

    /// Slots free and invocations waiting (for metrics and tests).
    pub(crate) fn load(&self) -> (usize, usize) {
        let s = self.lock();
        (s.free, s.waiting.values().map(VecDeque::len).sum())
    }
}

/// Where guest code runs. Alone (one tenant active on this worker), or for a
/// short guest, inline on the caller's runtime: no thread handoff, the
/// cheapest path. While tenants share the worker, a long guest runs on
/// execution threads of its own (one per slot, each with a single-threaded
/// async runtime) at a lower CPU priority (nice 10 to 19, below the worker's
/// bulk work: `eddy_protocol::SyncFirst::exec_nice`), so a
/// CPU-bound burst yields the CPU to the platform's I/O (reads, completions,
/// the gateway, Redis on the same machine) and to other tenants' short
/// guests.
///
/// Inline guests and isolated ones take turns in gates of their own: a short
/// guest never waits for a slot held by a long guest that the kernel may be
/// holding back (that wait was the tail of a trickle during a CPU-bound
/// burst). Each gate admits one guest per core.
pub(crate) struct Executor {
    activity: Arc<Activity>,
    single_thread: bool,
    inline: FairGate,
    isolated: FairGate,
    jobs: mpsc::Sender<Job>,
}

type Job = Box<dyn FnOnce(&tokio::runtime::Runtime) + Send>;

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("inline", &self.inline)
            .field("isolated", &self.isolated)
            .finish_non_exhaustive()
    }
}

/// Functions whose guests typically run longer than this (µs) are isolated
/// on the execution threads while tenants share the worker.
pub(crate) const ISOLATE_OVER_US: u64 = 250;

/// A guest still running inline after this long moves to the execution
/// threads while tenants share the worker (see [`Executor::run`]).
pub(crate) const DEMOTE_AFTER: Duration = Duration::from_millis(5);

/// Sets the calling thread's nice value (10 is a weight of 110 against
/// 1024: about a tenth of a core that normal threads keep busy; 19 is 15).
/// Best effort: a refusal (lowering the nice value needs a privilege, so a
/// thread spawned from a nicer one keeps its own) is logged.
#[cfg(target_os = "linux")]
fn set_nice(nice: i32) -> &'static str {
    if let Err(error) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), nice) {
        tracing::warn!(%error, nice, "could not lower an execution thread's priority");
        return "unchanged";
    }
    "nice"
}

#[cfg(not(target_os = "linux"))]
fn set_nice(_nice: i32) -> &'static str {
    "normal"
}

/// Lowers the calling thread's CPU priority to nice `nice`, never raising
/// it (a thread already nicer stays so): for the threads of a worker's bulk
/// work (`eddy_protocol::SyncFirst::bulk_nice`). Best effort; 0 does
/// nothing.
pub fn lower_thread_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    if nice > 0 {
        let me = Some(rustix::thread::gettid());
        let now = rustix::process::getpriority_process(me).unwrap_or(0);
        if now < nice {
            let _ = rustix::process::setpriority_process(me, nice);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

impl Executor {
    /// `slots` execution threads (and slots per gate) at nice `nice`
    /// (`eddy_protocol::SyncFirst::exec_nice`).
    /// `single_thread`: the caller's runtime has one thread (`EDDY_THREADS=1`).
    /// Then long guests always go to the execution threads, shared worker or
    /// not (inline, they would hold the only thread between their 1 ms
    /// yields, and the runtime polls I/O only every few dozen polls), and
    /// short ones run inline one at a time (more would only interleave on the
    /// one thread, stretching each one's wall-clock time toward its timeout).
    pub(crate) fn new(slots: usize, nice: i32, single_thread: bool) -> std::io::Result<Self> {
        let slots = slots.max(1);
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..slots {
            let rx = rx.clone();
            // I/O too: a guest's outbound HTTP connections are driven by
            // the runtime its invocation runs on.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            std::thread::Builder::new()
                .name(format!("eddy-exec-{i}"))
                .spawn(move || {
                    // On Linux the nice value is per thread.
                    let how = set_nice(nice);
                    tracing::debug!(priority = how, "execution thread started");
                    loop {
                        // One thread waits on the queue at a time; the
                        // others wait for the lock.
                        let job = match rx.lock().recv() {
                            Ok(job) => job,
                            Err(_) => return, // the executor is gone
                        };
                        job(&rt);
                    }
                })?;
        }
        let activity = Arc::new(Activity::default());
        Ok(Executor {
            isolated: FairGate::capped(slots, activity.clone()),
            activity,
            single_thread,
            inline: FairGate::new(if single_thread { 1 } else { slots }),
            jobs: tx,
        })
    }

    /// Slots free and invocations waiting, over both gates.
    pub(crate) fn load(&self) -> (usize, usize) {
        let (a, b) = (self.inline.load(), self.isolated.load());
        (a.0 + b.0, a.1 + b.1)
    }

    /// Runs `work` once `tenant` has a slot: on an execution thread when
    /// tenants share the worker (or the caller's runtime has one thread: see
    /// [`Executor::new`]) and the function typically runs longer than
    /// [`ISOLATE_OVER_US`] (`typical_us`, 0 when unknown); inline otherwise
    /// (a short guest cannot hog the CPU, and the handoff would cost more
    /// than it runs).
    pub(crate) async fn run<T, F>(
        &self,
        tenant: &str,
        typical_us: u64,
        work: F,
    ) -> Result<T, String>
    where
        F: std::future::Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        // `shared` also records this tenant's activity: always ask it.
        let shared = self.activity.shared(tenant);
        // One thread: this executor's runtime, or the caller's (the worker's
        // interactive lane).
        let single_thread = self.single_thread
            || tokio::runtime::Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread);
        let isolate = typical_us > ISOLATE_OVER_US && (shared || single_thread);
        let work = if isolate {
            Box::pin(work)
        } else {
            let slot = self.inline.enter(tenant).await;
            let mut work = Box::pin(work);
            // A guest that runs long inline (its function is new here, or
            // its past runs were short) would hold an inline slot, and
            // every short guest behind it, until it ends: past
            // `DEMOTE_AFTER`, while other tenants are about, it gives the
            // slot back and finishes on the execution threads. A CPU-bound
            // guest yields at every epoch tick, and the clock is read then:
            // a busy runtime advances its timers only every few dozen
            // polls, tens of ms with guests in them. The timer catches a
            // guest blocked in a host call, which is not polled.
            let may_demote = || single_thread || self.activity.others(tenant);
            let mut checked = Instant::now();
            loop {
                let due = checked + DEMOTE_AFTER;
                let step = std::future::poll_fn(|cx| match work.as_mut().poll(cx) {
                    std::task::Poll::Ready(out) => std::task::Poll::Ready(Some(out)),
                    std::task::Poll::Pending if Instant::now() >= due => {
                        std::task::Poll::Ready(None)
                    }
                    std::task::Poll::Pending => std::task::Poll::Pending,
                });
                let out = tokio::select! {
                    biased;
                    out = step => out,
                    () = tokio::time::sleep_until(due.into()) => None,
                };
                match out {
                    Some(out) => return Ok(out),
                    None if may_demote() => break,
                    // Alone here: it runs on; look again later.
                    None => checked = Instant::now(),
                }
            }
            drop(slot);
            work
        };
        let slot = self.isolated.enter(tenant).await;
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |rt| {
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rt.block_on(work)));
            let _ = tx.send(out.map_err(|_| "the sandbox task panicked".to_string()));
        });
        self.jobs
            .send(job)
            .map_err(|_| "the execution threads are gone".to_string())?;
        let out = rx
            .await
            .map_err(|_| "the execution thread went away".to_string())?;
        drop(slot);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn slots_go_round_robin_across_tenants() {
        let gate = FairGate::new(1);
        let first = gate.enter("burst").await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // Ten of the burst tenant queue first, then one of the trickle.
        for i in 0..10 {
            let (g, o) = (gate.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _p = g.enter("burst").await;
                o.lock().push(format!("burst-{i}"));
            }));
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let (g, o) = (gate.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let _p = g.enter("trickle").await;
            o.lock().push("trickle".into());
        }));
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(gate.load(), (0, 11));
        drop(first);
        for t in tasks {
            t.await.unwrap();
        }
        let order = order.lock().clone();
        assert_eq!(order[0], "burst-0");
        assert_eq!(order[1], "trickle", "the trickle goes second: {order:?}");
        assert_eq!(gate.load(), (1, 0));
    }

    fn thread() -> String {
        std::thread::current().name().unwrap_or("").to_string()
    }

    /// The calling thread's scheduling policy and nice value, from
    /// /proc/thread-self/stat (fields 19 and 41).
    #[cfg(target_os = "linux")]
    fn policy_and_nice() -> (u32, i32) {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = after_comm.split(' ').collect();
        // after_comm starts at field 3 (state).
        (f[41 - 3].parse().unwrap(), f[19 - 3].parse().unwrap())
    }

    #[tokio::test]
    async fn a_capped_gate_keeps_a_slot_for_another_active_tenant() {
        let activity = Arc::new(Activity::default());
        let gate = FairGate::capped(2, activity.clone());
        // Alone, mallory takes both slots.
        assert!(!activity.shared("mallory"));
        let m1 = gate.enter("mallory").await;
        let m2 = gate.enter("mallory").await;
        // Alice becomes active; she waits for a slot and gets the first
        // one freed.
        assert!(activity.shared("alice"));
        let alice = tokio::spawn({
            let g = gate.clone();
            async move { g.enter("alice").await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let m3 = tokio::spawn({
            let g = gate.clone();
            async move { g.enter("mallory").await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(m1);
        let a = tokio::time::timeout(Duration::from_secs(5), alice)
            .await
            .unwrap()
            .unwrap();
        // Alice's guest ends; she is still active, so mallory, at her cap,
        // does not get the slot: it stays for alice's next guest.
        drop(a);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !m3.is_finished(),
            "mallory took a second slot from an active tenant"
        );
        assert_eq!(gate.load(), (1, 1));
        let a = tokio::time::timeout(Duration::from_secs(1), gate.enter("alice"))
            .await
            .expect("alice's slot was kept");
        // Mallory's own release lets her waiter in.
        drop(m2);
        let m3 = tokio::time::timeout(Duration::from_secs(5), m3)
            .await
            .unwrap()
            .unwrap();
        drop((a, m3));
        assert_eq!(gate.load(), (2, 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_long_guest_started_inline_gives_its_slot_back() {
        let exec = Arc::new(Executor::new(1, 10, false).unwrap());
        let _ = exec.run("alice", 0, async {}).await;
        // Mallory's guest: of a function never seen here (typical 0), it
        // starts inline and runs long, yielding at every tick as guests do.
        let long = tokio::spawn({
            let exec = exec.clone();
            async move {
                exec.run("mallory", 0, async {
                    let start = Instant::now();
                    while start.elapsed() < Duration::from_millis(500) {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    thread()
                })
                .await
                .unwrap()
            }
        });
        tokio::time::sleep(DEMOTE_AFTER * 4).await;
        // The one inline slot is free again for alice's short guest.
        let short = tokio::time::timeout(
            Duration::from_millis(200),
            exec.run("alice", 0, async { thread() }),
        )
        .await
        .expect("the short guest waited for the long one")
        .unwrap();
        assert!(!short.starts_with("eddy-exec"), "{short}");
        assert!(!long.is_finished());
        let long = long.await.unwrap();
        assert!(long.starts_with("eddy-exec"), "finished on {long}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn long_guests_of_shared_workers_run_on_the_low_priority_threads() {
        {
            let exec = Executor::new(2, 19, false).unwrap();
            let long = ISOLATE_OVER_US + 1;
            // One tenant alone: inline, whatever its length.
            let t = exec.run("a", long, async { thread() }).await.unwrap();
            assert!(!t.starts_with("eddy-exec"), "{t}");
            // Two tenants active: a long guest goes to an execution thread,
            // at the lower priority; a short one stays inline.
            let _ = exec.run("b", 0, async {}).await;
            let t = exec.run("a", long, async { thread() }).await.unwrap();
            assert!(t.starts_with("eddy-exec"), "{t}");
            #[cfg(target_os = "linux")]
            {
                let (policy, nice) = exec
                    .run("a", long, async { policy_and_nice() })
                    .await
                    .unwrap();
                let other = 0; // SCHED_OTHER
                assert_eq!((policy, nice), (other, 19));
                assert_eq!(policy_and_nice(), (other, 0), "the caller is untouched");
            }
            let t = exec.run("b", 0, async { thread() }).await.unwrap();
            assert!(!t.starts_with("eddy-exec"), "{t}");
            assert_eq!(exec.load(), (4, 0), "every slot came back");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_long_guest_leaves_a_single_threaded_caller_of_a_multi_threaded_worker() {
        // The worker's interactive lane: one thread of its own, sharing the
        // executor of a multi-threaded worker.
        let exec = Arc::new(Executor::new(2, 10, false).unwrap());
        let long = ISOLATE_OVER_US + 1;
        let e = exec.clone();
        let on_lane = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let long_one = e.run("a", long, async { thread() }).await.unwrap();
                let short_one = e.run("a", 0, async { thread() }).await.unwrap();
                (long_one, short_one)
            })
        })
        .join()
        .unwrap();
        assert!(on_lane.0.starts_with("eddy-exec"), "{}", on_lane.0);
        assert!(!on_lane.1.starts_with("eddy-exec"), "{}", on_lane.1);
        // On the worker's own runtime the same guest alone stays inline.
        let t = exec.run("a", long, async { thread() }).await.unwrap();
        assert!(!t.starts_with("eddy-exec"), "{t}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn bulk_threads_are_lowered_never_raised() {
        let nice = |f: fn()| {
            std::thread::spawn(move || {
                f();
                policy_and_nice().1
            })
            .join()
            .unwrap()
        };
        assert_eq!(nice(|| lower_thread_priority(5)), 5);
        assert_eq!(nice(|| lower_thread_priority(0)), 0);
        // A thread already nicer stays as it is.
        assert_eq!(
            nice(|| {
                let me = Some(rustix::thread::gettid());
                rustix::process::setpriority_process(me, 12).unwrap();
                lower_thread_priority(5);
            }),
            12
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn on_one_runtime_thread_long_guests_always_leave_it_and_short_ones_take_turns() {
        let exec = Executor::new(2, 10, true).unwrap();
        let long = ISOLATE_OVER_US + 1;
        // One tenant alone, yet a long guest runs on an execution thread.
        let t = exec.run("a", long, async { thread() }).await.unwrap();
        assert!(t.starts_with("eddy-exec"), "{t}");
        // A short one stays on the caller's thread, with one inline slot.
        let t = exec.run("a", 0, async { thread() }).await.unwrap();
        assert!(!t.starts_with("eddy-exec"), "{t}");
        assert_eq!(
            exec.load(),
            (3, 0),
            "one inline slot, two isolated, all back"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_short_guest_never_waits_for_a_long_one() {
        let exec = Arc::new(Executor::new(1, 10, false).unwrap());
        let long = ISOLATE_OVER_US + 1;
        let _ = exec.run("trickle", 0, async {}).await;
        // The burst's long guest holds the only isolated slot until released.
        let (release, held) = oneshot::channel::<()>();
        let e = exec.clone();
        let burst = tokio::spawn(async move {
            e.run("burst", long, async move {
                let _ = held.await;
                thread()
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            exec.isolated.load(),
            (0, 0),
            "the long guest holds its slot"
        );
        // A short guest of the other tenant starts at once, inline.
        let t = tokio::time::timeout(
            Duration::from_secs(2),
            exec.run("trickle", 0, async { thread() }),
        )
        .await
        .expect("the short guest waited for the long one")
        .unwrap();
        assert!(!t.starts_with("eddy-exec"), "{t}");
        release.send(()).unwrap();
        assert!(burst.await.unwrap().unwrap().starts_with("eddy-exec"));
        assert_eq!(exec.load(), (2, 0));
    }

    #[tokio::test]
    async fn an_abandoned_waiter_does_not_leak_its_slot() {
        let gate = FairGate::new(1);
        let held = gate.enter("a").await;
        let g = gate.clone();
        let waiter = tokio::spawn(async move {
            let _p = g.enter("b").await;
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        waiter.abort();
        let _ = waiter.await;
        drop(held);
        assert_eq!(gate.load(), (1, 0));
        let _again = gate.enter("c").await;
        assert_eq!(gate.load(), (0, 0));
    }
}
