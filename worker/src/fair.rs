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
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

#[derive(Debug, Default)]
struct State {
    free: usize,
    /// Waiters per tenant, oldest first.
    waiting: HashMap<String, VecDeque<oneshot::Sender<Pass>>>,
    /// Tenants with waiters, in turn order.
    turn: VecDeque<String>,
}

/// Execution slots shared by every tenant of this worker. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct FairGate {
    state: Arc<Mutex<State>>,
}

/// One execution slot; given to the next tenant in turn when dropped.
#[derive(Debug)]
pub(crate) struct Pass {
    gate: Option<FairGate>,
}

impl Drop for Pass {
    fn drop(&mut self) {
        if let Some(gate) = self.gate.take() {
            gate.release();
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
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a slot for `tenant`'s invocation.
    pub(crate) async fn enter(&self, tenant: &str) -> Pass {
        let rx = {
            let mut s = self.lock();
            if s.free > 0 && s.turn.is_empty() {
                s.free -= 1;
                return Pass {
                    gate: Some(self.clone()),
                };
            }
            let (tx, rx) = oneshot::channel();
            let queue = s.waiting.entry(tenant.to_string()).or_default();
            if queue.is_empty() {
                s.turn.push_back(tenant.to_string());
            }
            // `entry` above borrowed `s`; look the queue up again.
            if let Some(q) = s.waiting.get_mut(tenant) {
                q.push_back(tx);
            }
            rx
        };
        // A granted pass that is never received (this future dropped) drops
        // inside the channel and frees its slot again.
        match rx.await {
            Ok(pass) => pass,
            // The sender went away without a pass: only when the gate is
            // dropped, which outlives every caller. Run unthrottled.
            Err(_) => Pass { gate: None },
        }
    }

    /// A slot came free: hand it to the next tenant in turn, or keep it.
    fn release(&self) {
        let mut s = self.lock();
        loop {
            let Some(tenant) = s.turn.pop_front() else {
                s.free += 1;
                return;
            };
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
            let pass = Pass {
                gate: Some(self.clone()),
            };
            match tx.send(pass) {
                Ok(()) => return,
                // The waiter is gone: its pass comes back, and dropping it
                // here would re-enter this lock. Defuse it and try the next.
                Err(mut pass) => {
                    pass.gate = None;
                }
            }
        }
    }

    /// Slots free and invocations waiting (for metrics and tests).
    pub(crate) fn load(&self) -> (usize, usize) {
        let s = self.lock();
        (s.free, s.waiting.values().map(VecDeque::len).sum())
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
                o.lock().unwrap().push(format!("burst-{i}"));
            }));
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let (g, o) = (gate.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let _p = g.enter("trickle").await;
            o.lock().unwrap().push("trickle".into());
        }));
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(gate.load(), (0, 11));
        drop(first);
        for t in tasks {
            t.await.unwrap();
        }
        let order = order.lock().unwrap().clone();
        assert_eq!(order[0], "burst-0");
        assert_eq!(order[1], "trickle", "the trickle goes second: {order:?}");
        assert_eq!(gate.load(), (1, 0));
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
