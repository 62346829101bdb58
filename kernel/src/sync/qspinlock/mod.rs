//! Linux's queued spinlock (`kernel/locking/qspinlock.c`, x86's
//! `arch_spinlock_t` since 4.2), without the paravirt parts.
//!
//! One 32-bit word: bits 0-7 the locked byte, bit 8 the pending bit, bits
//! 16-17 and 18-31 the tail (nesting index and CPU + 1 of the last queued
//! waiter). The fast path swings the word from 0 to locked. The first
//! contender sets pending and spins on the word; later ones queue on an
//! MCS list of per-CPU nodes, each spinning on its own node until its
//! predecessor hands the head on, then the head spins on the word for the
//! owner and the pending waiter to go. So at most two CPUs spin on the
//! lock word and hand-off is FIFO. A CPU has one node per nesting context
//! (task, interrupt, up to [`MAX_NODES`]); a deeper nesting spins on
//! `trylock`, as Linux does. Linux clears the locked byte and sets it with
//! byte stores; Rust has no mixed-size atomics, so those are 32-bit atomic
//! operations on the word (the uncontended unlock is a `lock sub`).

use core::sync::atomic::{AtomicU32, Ordering};

use super::raw::{ConstInit, SpinProtocol, SpinWait};
use super::word::AtomicWord;
use crate::platform;

const LOCKED: u32 = 1;
const LOCKED_MASK: u32 = 0xff;
const PENDING: u32 = 1 << 8;
const PENDING_MASK: u32 = 0xff << 8;
const LOCKED_PENDING_MASK: u32 = LOCKED_MASK | PENDING_MASK;
const TAIL_IDX_SHIFT: u32 = 16;
const TAIL_CPU_SHIFT: u32 = 18;
const TAIL_MASK: u32 = !LOCKED_PENDING_MASK;

/// Nodes per CPU: one per context that may nest a lock wait.
pub(crate) const MAX_NODES: usize = 4;

/// Rounds to wait for a pending waiter's hand-over to finish before
/// queueing (x86's `_Q_PENDING_LOOPS`); loom keeps its state space small.
const PENDING_LOOPS: u32 = if cfg!(loom) { 1 } else { 1 << 9 };

/// An MCS queue node: `locked` becomes 1 when its predecessor hands on the
/// queue head, `next` is the successor's node id + 1 (0: none yet).
struct QNode<A> {
    locked: A,
    next: A,
}

/// One CPU's nodes and how many of them are in use.
#[repr(align(64))]
pub(crate) struct CpuQNodes<A = AtomicU32> {
    count: A,
    nodes: [QNode<A>; MAX_NODES],
}

impl CpuQNodes {
    const fn new() -> Self {
        CpuQNodes {
            count: AtomicU32::new(0),
            nodes: [const {
                QNode {
                    locked: AtomicU32::new(0),
                    next: AtomicU32::new(0),
                }
            }; MAX_NODES],
        }
    }
}

impl<A: AtomicWord> CpuQNodes<A> {
    /// A CPU's nodes over any [`AtomicWord`] (loom models).
    #[cfg_attr(not(all(test, loom)), allow(dead_code))]
    pub(crate) fn with_words() -> Self {
        CpuQNodes {
            count: A::with_value(0),
            nodes: core::array::from_fn(|_| QNode {
                locked: A::with_value(0),
                next: A::with_value(0),
            }),
        }
    }
}

/// The kernel's queue nodes, `qnodes[NR_CPUS]` in Linux.
static QNODES: [CpuQNodes; crate::MAX_CPUS] = [const { CpuQNodes::new() }; crate::MAX_CPUS];

fn encode_tail(cpu: usize, idx: usize) -> u32 {
    ((cpu as u32 + 1) << TAIL_CPU_SHIFT) | ((idx as u32) << TAIL_IDX_SHIFT)
}

/// The node id (CPU * [`MAX_NODES`] + index) a tail names.
fn tail_node(tail: u32) -> usize {
    let cpu = (tail >> TAIL_CPU_SHIFT) as usize - 1;
    cpu * MAX_NODES + ((tail >> TAIL_IDX_SHIFT) & 3) as usize
}

fn node<A>(nodes: &[CpuQNodes<A>], id: usize) -> &QNode<A> {
    &nodes[id / MAX_NODES].nodes[id % MAX_NODES]
}

/// The queued spinlock's word; see the module doc.
pub(crate) struct QSpin<A = AtomicU32> {
    pub(super) val: A,
}

impl ConstInit for QSpin {
    #[allow(clippy::declare_interior_mutable_const)]
    const UNLOCKED: Self = QSpin {
        val: AtomicU32::new(0),
    };
}

impl<A: AtomicWord> QSpin<A> {
    /// An unlocked lock over any [`AtomicWord`] (loom models).
    #[cfg_attr(not(all(test, loom)), allow(dead_code))]
    pub(crate) fn with_words() -> Self {
        QSpin {
            val: A::with_value(0),
        }
    }

    /// `queued_spin_lock()`'s fast path; on failure, the word it found.
    #[inline(always)]
    pub(crate) fn lock_fast(&self) -> Result<(), u32> {
        self.val
            .compare_exchange(0, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .map(|_| ())
    }

    /// `queued_spin_trylock()`.
    #[inline]
    pub(crate) fn try_lock(&self) -> bool {
        self.val.load(Ordering::Relaxed) == 0 && self.lock_fast().is_ok()
    }

    /// `queued_spin_unlock()`: clears the locked byte (Release).
    #[inline(always)]
    pub(crate) fn unlock(&self) {
        self.val.fetch_sub(LOCKED, Ordering::Release);
    }

    /// Spins while `busy(word)`, returning the word that ended it (Acquire).
    #[inline(always)]
    fn wait_while(&self, wait: &mut impl SpinWait, mut busy: impl FnMut(u32) -> bool) -> u32 {
        loop {
            let val = self.val.load(Ordering::Acquire);
            if !busy(val) {
                return val;
            }
            A::relax();
            wait.round();
        }
    }

    /// `queued_spin_lock_slowpath()` on CPU `cpu`, whose queue nodes are
    /// `nodes[cpu]`; `val` is the word the fast path found.
    pub(crate) fn lock_slow_on(
        &self,
        mut val: u32,
        nodes: &[CpuQNodes<A>],
        cpu: usize,
        wait: &mut impl SpinWait,
    ) {
        // A pending waiter is taking the lock over: give it a moment
        // rather than queue behind it.
        if val == PENDING {
            let mut rounds = PENDING_LOOPS;
            val = self.wait_while(wait, |v| {
                rounds = rounds.saturating_sub(1);
                v == PENDING && rounds > 0
            });
        }
        // Anyone pending or queued: queue too.
        if val & !LOCKED_MASK != 0 {
            return self.queue(nodes, cpu, wait);
        }
        // Become the pending waiter.
        val = self.val.fetch_or(PENDING, Ordering::Acquire);
        if val & !LOCKED_MASK != 0 {
            // Someone got there first; undo our bit unless it was already
            // set by them.
            if val & PENDING_MASK == 0 {
                self.val.fetch_and(!PENDING, Ordering::Relaxed);
            }
            return self.queue(nodes, cpu, wait);
        }
        // Pending: wait for the owner to go, then swap pending for locked
        // (the tail may change meanwhile, so an add, not a store).
        if val & LOCKED_MASK != 0 {
            self.wait_while(wait, |v| v & LOCKED_MASK != 0);
        }
        self.val
            .fetch_add(LOCKED.wrapping_sub(PENDING), Ordering::Relaxed);
    }

    /// The MCS queue part of the slow path.
    fn queue(&self, nodes: &[CpuQNodes<A>], cpu: usize, wait: &mut impl SpinWait) {
        let mine = &nodes[cpu];
        let idx = mine.count.fetch_add(1, Ordering::Relaxed) as usize;
        if idx >= MAX_NODES {
            // Nested deeper than we have nodes for: spin on trylock.
            while !self.try_lock() {
                A::relax();
                wait.round();
            }
            mine.count.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        let me = &mine.nodes[idx];
        let tail = encode_tail(cpu, idx);
        me.locked.store(0, Ordering::Relaxed);
        me.next.store(0, Ordering::Relaxed);
        // The node's cache line may have been cold: the lock may be free
        // by now.
        if !self.try_lock() {
            self.queue_wait(nodes, me, tail, wait);
        }
        mine.count.fetch_sub(1, Ordering::Relaxed);
    }

    fn queue_wait(
        &self,
        nodes: &[CpuQNodes<A>],
        me: &QNode<A>,
        tail: u32,
        wait: &mut impl SpinWait,
    ) {
        let old = self.xchg_tail(tail);
        let mut next = 0;
        if old & TAIL_MASK != 0 {
            let prev = node(nodes, tail_node(old));
            prev.next
                .store(tail_node(tail) as u32 + 1, Ordering::Release);
            while me.locked.load(Ordering::Acquire) == 0 {
                A::relax();
                wait.round();
            }
            next = me.next.load(Ordering::Acquire);
        }
        // Head of the queue: wait for the owner and the pending waiter.
        let val = self.wait_while(wait, |v| v & LOCKED_PENDING_MASK != 0);
        // Last in the queue: take the lock and clear the tail at once.
        if val & TAIL_MASK == tail
            && self
                .val
                .compare_exchange(val, LOCKED, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return;
        }
        // Others queued behind us: take the lock, leave the tail, and hand
        // the queue head to our successor once it has linked itself.
        self.val.fetch_or(LOCKED, Ordering::Relaxed);
        while next == 0 {
            A::relax();
            wait.round();
            next = me.next.load(Ordering::Acquire);
        }
        node(nodes, next as usize - 1)
            .locked
            .store(1, Ordering::Release);
    }

    /// Puts `tail` in the tail bits, keeping locked and pending; returns
    /// the previous word. Release publishes our node's initialisation;
    /// Acquire orders our store to the previous tail's node after its own
    /// initialisation (Linux relies on the address dependency for that,
    /// which Rust's memory model does not honour).
    fn xchg_tail(&self, tail: u32) -> u32 {
        let mut old = self.val.load(Ordering::Relaxed);
        loop {
            let new = (old & LOCKED_PENDING_MASK) | tail;
            match self
                .val
                .compare_exchange(old, new, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return old,
                Err(seen) => old = seen,
            }
        }
    }

    pub(crate) fn is_locked(&self) -> bool {
        self.val.load(Ordering::Relaxed) != 0
    }
}

impl SpinProtocol for QSpin {
    /// The word the fast path found.
    type Pending = u32;

    #[inline(always)]
    fn lock_fast(&self) -> Result<(), u32> {
        QSpin::lock_fast(self)
    }

    #[inline]
    fn lock_slow(&self, val: u32, wait: &mut impl SpinWait) {
        self.lock_slow_on(val, &QNODES, platform::cpu_id(), wait);
    }

    #[inline]
    fn try_lock(&self) -> bool {
        QSpin::try_lock(self)
    }

    #[inline(always)]
    fn unlock(&self) {
        QSpin::unlock(self);
    }

    fn is_locked(&self) -> bool {
        QSpin::is_locked(self)
    }
}

#[cfg(all(test, loom))]
mod loom_models;
