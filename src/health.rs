//! Liveness and readiness, as the HTTP endpoints report them.
//!
//! Live: the consume loop has polled recently, or is waiting for the brokers in a call it retries
//! (a drain, a transaction's commit or abort, a replacement producer's initialization), each
//! attempt bounded well under the stall limit: restarting would not bring the brokers back, and
//! under exactly-once a restart loop would only rebalance the group again and again.
//!
//! Ready: the service is running, has joined its consumer group, and is not shutting down. Holding
//! partitions is not required: a replica beyond the input's partition count stands by, and a
//! rolling update would wait for it forever.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Health {
    started: Instant,
    last_poll_ms: AtomicU64,
    assigned_partitions: AtomicUsize,
    /// An assignment (even an empty one) has been received from the group, and not lost since.
    joined: AtomicBool,
    running: AtomicBool,
    shutting_down: AtomicBool,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            last_poll_ms: AtomicU64::new(0),
            assigned_partitions: AtomicUsize::new(0),
            joined: AtomicBool::new(false),
            running: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
        }
    }
}

impl Health {
    /// The loop polled, or is still waiting for the brokers between two bounded attempts.
    pub fn heartbeat(&self) {
        self.last_poll_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// After an assignment from the group: the partitions now held (0 for a member given none).
    pub fn set_assigned(&self, count: usize) {
        self.assigned_partitions.store(count, Ordering::Relaxed);
        self.joined.store(true, Ordering::Relaxed);
    }

    /// After a revocation: the partitions still held.
    pub fn set_revoked(&self, count: usize) {
        self.assigned_partitions.store(count, Ordering::Relaxed);
    }

    /// The assignment was lost (the group went on without this member): not ready until the
    /// group assigns again.
    pub fn set_assignment_lost(&self) {
        self.joined.store(false, Ordering::Relaxed);
    }

    pub fn set_running(&self, running: bool) {
        self.running.store(running, Ordering::Relaxed);
    }

    pub fn set_shutting_down(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
    }

    /// False when the loop has not polled for `stall_after` (it is stuck), or has not started.
    pub fn is_live(&self, stall_after: Duration) -> bool {
        if !self.running.load(Ordering::Relaxed) && !self.shutting_down.load(Ordering::Relaxed) {
            // Starting up (connecting, initializing transactions) counts as alive for a while.
            return self.started.elapsed() < stall_after * 4;
        }
        let now = self.started.elapsed().as_millis() as u64;
        now.saturating_sub(self.last_poll_ms.load(Ordering::Relaxed))
            < stall_after.as_millis() as u64
    }

    pub fn is_ready(&self) -> bool {
        self.running.load(Ordering::Relaxed)
            && !self.shutting_down.load(Ordering::Relaxed)
            && self.joined.load(Ordering::Relaxed)
    }

    pub fn assigned_partitions(&self) -> usize {
        self.assigned_partitions.load(Ordering::Relaxed)
    }
}
