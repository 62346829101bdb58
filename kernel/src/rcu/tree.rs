//! The grace-period machine and the callback lists (the shape of Linux's
//! Tree RCU, `kernel/rcu/tree.c`, without preemptible readers or the node
//! tree), written once over an [`RcuEnv`]: the kernel runs one static
//! instance on `core` atomics and its spinlocks, the loom models run small
//! ones on loom's.
//!
//! A reader bumps its CPU's nesting count. A grace period (GP) starts by
//! numbering itself (`started`) and then asking every online CPU for a
//! quiescent state (a bit each in `pending`); it ends when the last bit is
//! cleared, and `completed` takes its number. A CPU passes a quiescent
//! state when it switches tasks, idles, or takes a timer tick outside any
//! read-side section. A callback queued while `started` is `s` waits for GP
//! `s + 1`, which starts after it was queued, so every reader that could
//! have seen what it frees has finished by then. Callbacks sit on per-CPU
//! FIFO lists ([`super::cblist`]) and run outside any lock.
//!
//! Where the environment observes readers (the host has no ticks), waiters
//! also read other CPUs' nesting counts: a CPU seen outside a read-side
//! section is quiescent.
//!
//! An idle CPU that stops its tick reports nothing more, so it enters an
//! extended quiescent state (EQS, Linux's dyntick-idle) instead: its
//! `dynticks` counter, odd while RCU watches the CPU, turns even
//! ([`Rcu::eqs_enter`]) and odd again when the CPU leaves idle
//! ([`Rcu::eqs_exit`]), each time with a full barrier on the side that
//! faces the CPU's read-side sections. A GP never waits for an idle CPU:
//! once it has published whom it waits for (`pending`), its start looks at
//! every counter and counts a CPU in an EQS quiescent. A CPU entering the
//! EQS as a GP starts is caught by one side: it increments before it
//! looks at `pending`, the start publishes `pending` before it looks at
//! the counter (Dekker), so either the start sees it idle or it sees its
//! bit and reports itself. A CPU leaving the EQS increments before any
//! read: a start that still saw it idle came before its readers, and so
//! did whatever the GP waits to free.
//!
//! Every operation names the CPU it runs on; the kernel passes its own.

use core::sync::atomic::Ordering::{Relaxed, SeqCst};
use core::sync::atomic::compiler_fence;

use super::cblist::RcuHead;
use super::env::{RcuEnv, RcuLock, Word64};
use crate::sync::word::AtomicWord;

/// One CPU's RCU state (Linux's `struct rcu_data`).
#[repr(align(128))]
pub(crate) struct RcuData<E: RcuEnv> {
    /// Read-side nesting; written only by this CPU.
    pub(super) nesting: E::Word,
    /// Linux's dynticks counter (`rcu_data.dynticks`, moved into context
    /// tracking since): odd while RCU watches this CPU, even while it is in
    /// an extended quiescent state. Written only by this CPU; GP starts
    /// read it.
    pub(super) dynticks: E::Word,
    pub(super) cbs: E::ListLock,
}

/// The grace-period numbers and the CPUs the running GP waits for.
#[repr(align(128))]
pub(crate) struct GpState<E: RcuEnv> {
    /// Number of the last GP started.
    pub(super) started: E::Word64,
    /// Number of the last GP completed (`started` or one less).
    pub(super) completed: E::Word64,
    /// The highest GP any callback or waiter needs.
    pub(super) wanted: E::Word64,
    /// CPUs that still owe the current GP a quiescent state.
    pub(super) pending: E::Word64,
    /// When the current GP started, in cycles.
    pub(super) started_at: E::Word64,
}

/// The RCU state of `N` CPUs (Linux's `struct rcu_state`).
pub(crate) struct Rcu<E: RcuEnv, const N: usize> {
    pub(super) cpus: [RcuData<E>; N],
    pub(super) gp: GpState<E>,
    /// Serialises starting and ending GPs (rare: once per GP each).
    pub(super) gp_lock: E::GpLock,
}

/// What a wait is waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Waiting {
    GracePeriod,
    Callbacks,
}

/// Called once per round of a wait, after the spin-wait hint (the kernel's
/// watchdog; nothing in the models).
pub(crate) trait RcuWait {
    fn round(&mut self, waiting: Waiting);
}

impl RcuWait for () {
    #[inline(always)]
    fn round(&mut self, _: Waiting) {}
}

/// A backlog above which an invoker runs every ready callback whatever its
/// limit (Linux's `qhimark`): callbacks queued faster than the tick's batch
/// drains would hold their memory back without bound.
pub(crate) const BACKLOG_HIGH: u64 = 10_000;

impl<E: RcuEnv, const N: usize> Rcu<E, N> {
    /// Port of `rcu_read_lock()` on `cpu`.
    #[inline(always)]
    pub(crate) fn read_lock(&self, cpu: usize) {
        let n = &self.cpus[cpu].nesting;
        if E::OBSERVE_READERS {
            n.fetch_add(1, SeqCst);
            E::sc_fence();
        } else {
            // Only this CPU writes it; a tick that lands here sees either
            // value and both are right for the code it interrupted.
            n.store(n.load(Relaxed) + 1, Relaxed);
            compiler_fence(SeqCst);
        }
    }

    /// Port of `rcu_read_unlock()` on `cpu`.
    #[inline(always)]
    pub(crate) fn read_unlock(&self, cpu: usize) {
        let n = &self.cpus[cpu].nesting;
        if E::OBSERVE_READERS {
            n.fetch_sub(1, SeqCst);
        } else {
            compiler_fence(SeqCst);
            n.store(n.load(Relaxed) - 1, Relaxed);
        }
    }

    /// `cpu`'s read-side nesting, as `cpu` itself (or a diagnostic) sees it.
    #[inline]
    pub(crate) fn nesting(&self, cpu: usize) -> u32 {
        self.cpus[cpu].nesting.load(Relaxed)
    }

    fn online_mask() -> u64 {
        let n = E::cpus_online().min(N);
        if n >= 64 { u64::MAX } else { (1u64 << n) - 1 }
    }

    /// Starts a GP if one is wanted and none is running.
    pub(crate) fn start_gp_if_needed(&self) {
        let started = self.gp.started.load(SeqCst);
        if self.gp.wanted.load(SeqCst) <= started || started != self.gp.completed.load(SeqCst) {
            return;
        }
        let _g = self.gp_lock.lock();
        self.start_gp_locked();
    }

    /// Under `gp_lock`, the start of Linux's `rcu_gp_init()`: numbers the
    /// new GP first, then asks the CPUs, so a callback that saw the old
    /// number waits for this GP, whose quiescent states all come after it
    /// was queued, and one that saw the new number waits for the next.
    /// Then the first round of Linux's force-quiescent-state scan
    /// (`rcu_implicit_dynticks_qs()`): a CPU in an extended quiescent state
    /// is quiescent for this GP. A GP whose every CPU idles ends here, and
    /// the next starts if one is wanted.
    fn start_gp_locked(&self) {
        let gp = &self.gp;
        loop {
            let started = gp.started.load(SeqCst);
            if started != gp.completed.load(SeqCst) || gp.wanted.load(SeqCst) <= started {
                return;
            }
            gp.started_at.store(E::cycles(), Relaxed);
            gp.started.store(started + 1, SeqCst);
            // An exchange rather than a store, for loom's sake: CPUs clear
            // bits without the lock, and loom may order a plain store before
            // a racing clear its thread has not seen (the language does not:
            // the clear read the old mask), so waiters would read that
            // clear's value forever. Same cost: a SeqCst store is an xchg on
            // x86.
            let mask = Self::online_mask();
            gp.pending.swap(mask, SeqCst);
            // `pending` is published before the looks at the counters (the
            // Dekker pair of `eqs_enter`).
            E::sc_fence();
            let idle = (0..N)
                .filter(|&c| mask & (1 << c) != 0 && self.in_eqs(c))
                .fold(0u64, |m, c| m | 1 << c);
            if idle == 0 {
                return;
            }
            // Whoever clears the last bit ends the GP: a CPU reporting
            // itself meanwhile waits for this lock to do so.
            let before = gp.pending.fetch_and(!idle, SeqCst);
            if before == 0 || before & !idle != 0 {
                return;
            }
            gp.completed.store(started + 1, SeqCst);
        }
    }

    /// Whether `cpu` is in an extended quiescent state now.
    fn in_eqs(&self, cpu: usize) -> bool {
        self.cpus[cpu].dynticks.load(SeqCst) & 1 == 0
    }

    /// Under `gp_lock`, once the last CPU's bit is cleared (Linux's
    /// `rcu_gp_cleanup()`): the running GP has completed; starts the next if
    /// one is wanted.
    fn end_gp_locked(&self) {
        let started = self.gp.started.load(SeqCst);
        self.gp.completed.store(started, SeqCst);
        self.start_gp_locked();
    }

    /// Port of `rcu_report_qs_rdp()`: records that `cpu` passed a quiescent
    /// state; ends the GP if it was the last CPU the GP waited for. Only
    /// `cpu` itself reports this way: it is quiescent whichever GP is
    /// running when the bit is cleared.
    fn report_qs(&self, cpu: usize) {
        let bit = 1u64 << cpu;
        if self.gp.pending.load(Relaxed) & bit == 0 {
            return;
        }
        if self.gp.pending.fetch_and(!bit, SeqCst) == bit {
            let _g = self.gp_lock.lock();
            self.end_gp_locked();
        }
    }

    /// The GP a callback or waiter arriving now must wait for (Linux's
    /// `rcu_seq_snap()` of the GP sequence), recorded as wanted.
    pub(crate) fn gp_needed_now(&self) -> u64 {
        // What the caller unpublished comes before the GP number it reads.
        E::sc_fence();
        let need = self.gp.started.load(SeqCst) + 1;
        // Raise `wanted` only when it moves: most callers find it already set.
        let mut wanted = self.gp.wanted.load(SeqCst);
        while wanted < need {
            match self
                .gp
                .wanted
                .compare_exchange(wanted, need, SeqCst, SeqCst)
            {
                Ok(_) => break,
                Err(w) => wanted = w,
            }
        }
        need
    }

    /// Port of `call_rcu()` on `cpu`: runs `func(head)` after a grace
    /// period, on some CPU, with no lock held.
    ///
    /// # Safety
    /// `head` is valid and unqueued, and stays valid (with whatever `func`
    /// needs) until `func` runs; `func` may free it.
    pub(crate) unsafe fn call_rcu(
        &self,
        cpu: usize,
        head: *mut RcuHead,
        func: unsafe fn(*mut RcuHead),
    ) {
        let gp = self.gp_needed_now();
        // SAFETY: per the contract.
        let backlog = unsafe { self.cpus[cpu].cbs.lock().enqueue(head, func, gp) };
        self.start_gp_if_needed();
        if E::OBSERVE_READERS && backlog % 64 == 0 {
            // No ticks: make progress here now and then.
            self.force_quiescent_states();
            self.invoke_ready(cpu, u64::MAX);
        }
    }

    /// Port of `rcu_do_batch()`: runs up to `limit` of `cpu`'s callbacks
    /// whose GP has completed, or all of them past a backlog of
    /// [`BACKLOG_HIGH`]; returns how many ran. Any CPU may do this for any
    /// other: the list has its own lock, and callbacks run after it is
    /// dropped.
    ///
    /// One invoker per list at a time, as Linux's `rcu_do_batch()` on the
    /// list's own CPU: so callbacks finish in queue order, which is what
    /// [`barrier`](Self::barrier) relies on. An invoker that finds the list
    /// busy returns at once, never waits: a tick runs with interrupts off
    /// and may have interrupted the busy invoker on its CPU.
    pub(crate) fn invoke_ready(&self, cpu: usize, limit: u64) -> u64 {
        let completed = self.gp.completed.load(SeqCst);
        let batch = {
            let mut l = self.cpus[cpu].cbs.lock();
            let limit = if l.backlog() > BACKLOG_HIGH {
                u64::MAX
            } else {
                limit
            };
            match l.take_ready(completed, limit) {
                Some(batch) => batch,
                None => return 0,
            }
        };
        let n = batch.run();
        // Counted once they have run, so a barrier does not return while
        // another CPU is still running callbacks queued before it.
        self.cpus[cpu].cbs.lock().finish(n);
        n
    }

    /// The host's stand-in for ticks (Linux's `force_quiescent_state()`
    /// with `rcu_implicit_dynticks_qs()`): a CPU seen outside any read-side
    /// section has passed a quiescent state.
    ///
    /// The look and the clear happen under the GP lock, for the GP read
    /// there, as Linux's `force_qs_rnp()` reports under the node lock
    /// against the `gp_seq` it read: a GP neither ends nor starts
    /// meanwhile, so the CPU was seen outside a section during the GP whose
    /// bit is cleared. Without the lock a CPU seen quiet during GP `s` could
    /// have its bit cleared in GP `s + 1`, after it entered a section that
    /// `s + 1` must wait for.
    pub(crate) fn force_quiescent_states(&self) {
        if !E::OBSERVE_READERS || self.gp.pending.load(SeqCst) == 0 {
            return;
        }
        let _g = self.gp_lock.lock();
        if self.gp.started.load(SeqCst) == self.gp.completed.load(SeqCst) {
            return;
        }
        let pending = self.gp.pending.load(SeqCst);
        // What was unpublished before this GP started comes before the
        // looks at the readers.
        E::sc_fence();
        let quiet = (0..N)
            .filter(|&c| pending & (1 << c) != 0 && self.cpus[c].nesting.load(SeqCst) == 0)
            .fold(0u64, |m, c| m | 1 << c);
        if quiet == 0 {
            return;
        }
        // CPUs clear their own bits without the lock; whoever clears the
        // last one ends the GP (it waits for this lock to do so).
        let before = self.gp.pending.fetch_and(!quiet, SeqCst);
        if before != 0 && before & !quiet == 0 {
            self.end_gp_locked();
        }
    }

    /// `cpu` is quiescent now (task context, outside any read-side
    /// section): the part of `rcu_note_context_switch()` and
    /// `rcu_all_qs()` this kernel needs.
    pub(crate) fn quiescent_state(&self, cpu: usize) {
        assert!(
            self.nesting(cpu) == 0,
            "cpu {cpu}: RCU grace-period wait or context switch inside rcu_read_lock()"
        );
        self.report_qs(cpu);
    }

    /// Port of `rcu_eqs_enter()` (`ct_idle_enter()`): `cpu` is about to
    /// halt with its tick stopped and stops being watched until
    /// [`eqs_exit`](Self::eqs_exit). Called by `cpu`, interrupts off,
    /// outside any read-side section.
    ///
    /// The increment comes after every read-side section the CPU ran (a
    /// full barrier before it), and before its look at `pending`: a GP
    /// that starts meanwhile either finds the CPU idle, or has published
    /// its bit by the time the CPU looks, and the CPU reports it (being
    /// quiescent for any GP from here to the exit). Without that look, a
    /// GP started between the idle loop's last quiescent state and the
    /// increment would wait for a CPU that no tick will report.
    pub(crate) fn eqs_enter(&self, cpu: usize) {
        assert!(
            self.nesting(cpu) == 0,
            "cpu {cpu}: idle inside rcu_read_lock()"
        );
        E::sc_fence();
        let was = self.cpus[cpu].dynticks.fetch_add(1, SeqCst);
        assert!(was & 1 == 1, "cpu {cpu} entered an RCU EQS twice");
        E::sc_fence();
        self.report_qs(cpu);
    }

    /// Port of `rcu_eqs_exit()` (`ct_idle_exit()`): `cpu` leaves idle and
    /// is watched again. Called by `cpu`, interrupts off, before anything
    /// that may read: the increment is ordered before every later load (a
    /// full barrier after it), so a GP start that still found the CPU idle
    /// came before the CPU's next read-side section, and so did whatever
    /// that GP waits to free.
    pub(crate) fn eqs_exit(&self, cpu: usize) {
        let was = self.cpus[cpu].dynticks.fetch_add(1, SeqCst);
        assert!(was & 1 == 0, "cpu {cpu} left an RCU EQS it was not in");
        E::sc_fence();
    }

    /// Port of `rcu_needs_cpu()`: whether `cpu` has callbacks queued. Its
    /// tick must then go on while it idles, to start their GP, see it end
    /// and run them (the other CPUs' GP starts only clear its bit).
    pub(crate) fn needs_cpu(&self, cpu: usize) -> bool {
        self.cpus[cpu].cbs.lock().backlog() != 0
    }

    /// The RCU part of `cpu`'s timer tick (Linux's `rcu_sched_clock_irq()`
    /// without the stall check): a quiescent state if the interrupted code
    /// was outside any read-side section, a GP if one is wanted, and up to
    /// `limit` of `cpu`'s ready callbacks.
    pub(crate) fn tick(&self, cpu: usize, limit: u64) {
        // The interrupt entry ends an idle CPU's EQS before the handler
        // (which may read, as ticks do here).
        assert!(
            !self.in_eqs(cpu),
            "cpu {cpu}: RCU tick in an extended quiescent state"
        );
        if self.nesting(cpu) == 0 {
            self.report_qs(cpu);
        }
        self.start_gp_if_needed();
        self.invoke_ready(cpu, limit);
    }

    /// Waits, on `cpu`, until GP `gp` has completed, passing quiescent
    /// states for `cpu` meanwhile.
    pub(crate) fn wait_for_gp(&self, cpu: usize, gp: u64, wait: &mut impl RcuWait) {
        while self.gp.completed.load(SeqCst) < gp {
            self.start_gp_if_needed();
            self.quiescent_state(cpu);
            self.force_quiescent_states();
            E::Word::relax();
            wait.round(Waiting::GracePeriod);
        }
    }

    /// Port of `synchronize_rcu()` on `cpu`: returns once every read-side
    /// section that began before the call has ended.
    pub(crate) fn synchronize(&self, cpu: usize, wait: &mut impl RcuWait) {
        self.wait_for_gp(cpu, self.gp_needed_now(), wait);
    }

    /// Port of `rcu_barrier()` on `cpu`: returns once every callback queued
    /// before the call, on any CPU, has run. Linux queues a callback behind
    /// each CPU's and waits for those; here a list's `invoked` count says
    /// the same, since one invoker at a time runs a list in order (the
    /// barrier helps when the list is free and waits while another invoker
    /// has it).
    pub(crate) fn barrier(&self, cpu: usize, wait: &mut impl RcuWait) {
        let mut targets = [0u64; N];
        for (c, t) in targets.iter_mut().enumerate() {
            *t = self.cpus[c].cbs.lock().queued();
        }
        self.wait_for_gp(cpu, self.gp_needed_now(), wait);
        for (c, &target) in targets.iter().enumerate() {
            while self.cpus[c].cbs.lock().invoked() < target {
                self.invoke_ready(c, u64::MAX);
                E::Word::relax();
                wait.round(Waiting::Callbacks);
            }
        }
    }

    /// Callbacks queued and not yet run, over all CPUs.
    pub(crate) fn pending_callbacks(&self) -> u64 {
        self.cpus.iter().map(|c| c.cbs.lock().backlog()).sum()
    }

    /// Grace periods completed.
    pub(crate) fn completed(&self) -> u64 {
        self.gp.completed.load(SeqCst)
    }
}
