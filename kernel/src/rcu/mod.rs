//! RCU for a non-preemptive kernel (the shape of Linux's Tree RCU without
//! preemptible readers): `rcu_read_lock`/`rcu_read_unlock`, `call_rcu`,
//! `synchronize_rcu`, `rcu_barrier`.
//!
//! A reader bumps its CPU's nesting count. A grace period (GP) starts by
//! numbering itself (`started`) and then asking every online CPU for a
//! quiescent state (a bit each in `pending`); it ends when the last bit is
//! cleared, and `completed` takes its number. A CPU passes a quiescent
//! state when it switches tasks, idles, or takes a timer tick outside any
//! read-side section. A callback queued while `started` is `s` waits for GP
//! `s + 1`, which starts after it was queued, so every reader that could
//! have seen what it frees has finished by then. Callbacks sit on per-CPU
//! FIFO lists and run outside any lock, from the tick, the idle loop, or
//! `rcu_barrier`. A GP that waits too long is reported as an RCU stall, and
//! the waits of `synchronize_rcu` and `rcu_barrier` are bounded by the
//! spin-wait watchdog at twice that.
//!
//! The host build has no ticks: there, waiters observe other CPUs' nesting
//! counts directly (a CPU seen outside a read-side section is quiescent),
//! which needs sequentially consistent reader updates.

use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering, compiler_fence};

use crate::platform::{self, MAX_CPUS, cpu_id};
use crate::sync::debug::{Holder, Watchdog};
use crate::sync::{SpinLockIrqSave, named_spin_lock_irqsave};

#[cfg(test)]
mod tests;

/// A callback's link in its CPU's list (Linux's `struct rcu_head`), embedded
/// in the object it frees.
pub(crate) struct RcuHead {
    next: UnsafeCell<*mut RcuHead>,
    func: UnsafeCell<Option<unsafe fn(*mut RcuHead)>>,
    /// The GP this callback waits for.
    gp: UnsafeCell<u64>,
}

// SAFETY: the fields are only touched by `call_rcu` before the head is
// queued and by the list owner under the list lock afterwards.
unsafe impl Sync for RcuHead {}
// SAFETY: as above; a head is not tied to a thread.
unsafe impl Send for RcuHead {}

impl RcuHead {
    /// An unqueued head.
    pub(crate) const fn new() -> Self {
        RcuHead {
            next: UnsafeCell::new(ptr::null_mut()),
            func: UnsafeCell::new(None),
            gp: UnsafeCell::new(0),
        }
    }
}

impl Default for RcuHead {
    fn default() -> Self {
        Self::new()
    }
}

/// One CPU's queued callbacks, oldest first (so GP numbers never decrease
/// along the list).
struct CbList {
    head: *mut RcuHead,
    tail: *mut RcuHead,
    queued: u64,
    invoked: u64,
    /// Set while an invoker runs callbacks it detached from this list.
    invoking: bool,
}

// SAFETY: the list owns the queued heads until it hands them to their
// callbacks; it is only reached under its lock.
unsafe impl Send for CbList {}

#[repr(align(128))]
struct RcuCpu {
    /// Read-side nesting; written only by this CPU (the host simulation
    /// uses sequentially consistent updates so waiters may read it).
    nesting: AtomicU32,
    cbs: SpinLockIrqSave<CbList>,
}

static CPUS: [RcuCpu; MAX_CPUS] = [const {
    RcuCpu {
        nesting: AtomicU32::new(0),
        cbs: named_spin_lock_irqsave(
            "rcu_cblist",
            CbList {
                head: ptr::null_mut(),
                tail: ptr::null_mut(),
                queued: 0,
                invoked: 0,
                invoking: false,
            },
        ),
    }
}; MAX_CPUS];

/// The grace-period state (Linux's `rcu_state`).
struct GpState {
    /// Number of the last GP started.
    started: AtomicU64,
    /// Number of the last GP completed (`started` or one less).
    completed: AtomicU64,
    /// The highest GP any callback or waiter needs.
    wanted: AtomicU64,
    /// CPUs that still owe the current GP a quiescent state.
    pending: AtomicU64,
    /// When the current GP started, in cycles.
    started_at: AtomicU64,
    stall_reported: AtomicBool,
}

static GP: GpState = GpState {
    started: AtomicU64::new(0),
    completed: AtomicU64::new(0),
    wanted: AtomicU64::new(0),
    pending: AtomicU64::new(0),
    started_at: AtomicU64::new(0),
    stall_reported: AtomicBool::new(false),
};

/// Serialises starting and ending GPs (rare: once per GP).
static GP_LOCK: SpinLockIrqSave<()> = named_spin_lock_irqsave("rcu_gp", ());

/// How long a GP may take before it is reported as a stall (0: never).
static STALL_MS: AtomicU64 = AtomicU64::new(DEFAULT_STALL_MS);

/// Default RCU stall bound in milliseconds (Linux's is 21 s; vCPUs here may
/// be descheduled by the host for long stretches, so keep a margin).
pub(crate) const DEFAULT_STALL_MS: u64 = 10_000;

/// The stall bound in ms (0: no check).
pub(crate) fn stall_ms() -> u64 {
    STALL_MS.load(Ordering::Relaxed)
}

/// Sets the stall bound (0 disables the check); returns the previous one.
pub(crate) fn set_stall_ms(ms: u64) -> u64 {
    STALL_MS.swap(ms, Ordering::Relaxed)
}

/// A held `rcu_read_lock()`; dropping it is `rcu_read_unlock()`. Readers
/// must not block or switch tasks while holding it.
#[must_use = "the read-side section ends when the guard drops"]
pub(crate) struct RcuReadGuard {
    _not_send: core::marker::PhantomData<*const ()>,
}

/// Port of `rcu_read_lock()`: objects reached from RCU-protected pointers
/// stay valid until the guard drops.
#[inline]
pub(crate) fn rcu_read_lock() -> RcuReadGuard {
    let n = &CPUS[cpu_id()].nesting;
    if cfg!(target_os = "none") {
        // Only this CPU writes it; a tick that lands here sees either value
        // and both are right for the code it interrupted.
        n.store(n.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        compiler_fence(Ordering::SeqCst);
    } else {
        n.fetch_add(1, Ordering::SeqCst);
    }
    RcuReadGuard {
        _not_send: core::marker::PhantomData,
    }
}

impl Drop for RcuReadGuard {
    /// Port of `rcu_read_unlock()`.
    #[inline]
    fn drop(&mut self) {
        let n = &CPUS[cpu_id()].nesting;
        if cfg!(target_os = "none") {
            compiler_fence(Ordering::SeqCst);
            n.store(n.load(Ordering::Relaxed) - 1, Ordering::Relaxed);
        } else {
            n.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Whether this CPU is inside a read-side section.
#[cfg(test)]
pub(crate) fn rcu_read_lock_held() -> bool {
    CPUS[cpu_id()].nesting.load(Ordering::Relaxed) != 0
}

fn online_mask() -> u64 {
    let n = platform::cpus_online().min(MAX_CPUS);
    if n >= 64 { u64::MAX } else { (1u64 << n) - 1 }
}

/// Starts a GP if one is wanted and none is running.
fn start_gp_if_needed() {
    let started = GP.started.load(Ordering::SeqCst);
    if GP.wanted.load(Ordering::SeqCst) <= started || started != GP.completed.load(Ordering::SeqCst)
    {
        return;
    }
    let _g = GP_LOCK.lock();
    start_gp_locked();
}

/// Under `GP_LOCK`: numbers the new GP first, then asks the CPUs, so a
/// callback that saw the old number waits for this GP, whose quiescent
/// states all come after it was queued, and one that saw the new number
/// waits for the next.
fn start_gp_locked() {
    let started = GP.started.load(Ordering::SeqCst);
    if started != GP.completed.load(Ordering::SeqCst) || GP.wanted.load(Ordering::SeqCst) <= started
    {
        return;
    }
    GP.started_at.store(platform::cycles(), Ordering::Relaxed);
    GP.stall_reported.store(false, Ordering::Relaxed);
    GP.started.store(started + 1, Ordering::SeqCst);
    GP.pending.store(online_mask(), Ordering::SeqCst);
}

/// Records that `cpu` passed a quiescent state; ends the GP if it was the
/// last CPU the GP waited for.
fn report_qs(cpu: usize) {
    let bit = 1u64 << cpu;
    if GP.pending.load(Ordering::Relaxed) & bit == 0 {
        return;
    }
    if GP.pending.fetch_and(!bit, Ordering::SeqCst) == bit {
        let _g = GP_LOCK.lock();
        let started = GP.started.load(Ordering::SeqCst);
        GP.completed.store(started, Ordering::SeqCst);
        start_gp_locked();
    }
}

/// The GP a callback or waiter arriving now must wait for.
fn gp_needed_now() -> u64 {
    let need = GP.started.load(Ordering::SeqCst) + 1;
    // Raise `wanted` only when it moves: most callers find it already set.
    let mut wanted = GP.wanted.load(Ordering::SeqCst);
    while wanted < need {
        match GP
            .wanted
            .compare_exchange_weak(wanted, need, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => break,
            Err(w) => wanted = w,
        }
    }
    need
}

/// Port of `call_rcu()`: runs `func(head)` after a grace period, on some
/// CPU, in interrupt or task context, with no lock held. `func` must not
/// take a lock that is ever held with interrupts on.
///
/// # Safety
/// `head` is valid and unqueued, and stays valid (with whatever `func`
/// needs) until `func` runs; `func` may free it.
pub(crate) unsafe fn call_rcu(head: *mut RcuHead, func: unsafe fn(*mut RcuHead)) {
    let gp = gp_needed_now();
    // SAFETY: the caller hands over an unqueued head.
    unsafe {
        *(*head).next.get() = ptr::null_mut();
        *(*head).func.get() = Some(func);
        *(*head).gp.get() = gp;
    }
    let backlog = {
        let mut l = CPUS[cpu_id()].cbs.lock();
        if l.tail.is_null() {
            l.head = head;
        } else {
            // SAFETY: the tail is a queued head the list owns.
            unsafe { *(*l.tail).next.get() = head };
        }
        l.tail = head;
        l.queued += 1;
        l.queued - l.invoked
    };
    start_gp_if_needed();
    if cfg!(not(target_os = "none")) && backlog % 64 == 0 {
        // No ticks on the host: make progress here now and then.
        force_quiescent_states();
        invoke_ready(cpu_id(), u64::MAX);
    }
}

/// Most callbacks one timer tick runs (Linux's `blimit`): the tick runs
/// with interrupts off, and a long batch would look like a CPU stuck with
/// interrupts off to the hard-lockup detector. The rest wait for the next
/// tick, a `cond_resched()` or the idle loop.
const TICK_BATCH: u64 = 1000;
/// A backlog above which the tick runs every ready callback (Linux's
/// `qhimark`): callbacks queued faster than the batch drains would hold
/// their memory back without bound.
const BACKLOG_HIGH: u64 = 10_000;

/// Runs up to `limit` of `cpu`'s callbacks whose GP has completed, or all
/// of them past a backlog of [`BACKLOG_HIGH`] (any CPU may do this for any
/// other: the list has its own lock, and callbacks run after it is
/// dropped).
///
/// One invoker per list at a time, as Linux's `rcu_do_batch()` on the
/// list's own CPU: so callbacks finish in queue order and `invoked` counts
/// a prefix of the list, which is what `rcu_barrier` relies on. An invoker
/// that finds the list busy returns at once, never waits: a tick runs with
/// interrupts off and may have interrupted the busy invoker on its CPU.
fn invoke_ready(cpu: usize, limit: u64) -> u64 {
    let completed = GP.completed.load(Ordering::SeqCst);
    let mut batch = {
        let mut l = CPUS[cpu].cbs.lock();
        if l.invoking {
            return 0;
        }
        let limit = if l.queued - l.invoked > BACKLOG_HIGH {
            u64::MAX
        } else {
            limit
        };
        let first = l.head;
        let mut last: *mut RcuHead = ptr::null_mut();
        let mut n = 0;
        let mut p = l.head;
        // SAFETY: heads on the list are owned by it.
        while !p.is_null() && n < limit && unsafe { *(*p).gp.get() } <= completed {
            last = p;
            p = unsafe { *(*p).next.get() };
            n += 1;
        }
        if n == 0 {
            return 0;
        }
        l.head = p;
        if p.is_null() {
            l.tail = ptr::null_mut();
        }
        // SAFETY: `last` is the end of the detached prefix.
        unsafe { *(*last).next.get() = ptr::null_mut() };
        l.invoking = true;
        first
    };
    let mut n = 0;
    while !batch.is_null() {
        // SAFETY: the detached heads are ours; read the link and the
        // function before the callback frees the head.
        unsafe {
            let next = *(*batch).next.get();
            let func = (*(*batch).func.get()).expect("queued rcu_head without a callback");
            func(batch);
            batch = next;
        }
        n += 1;
    }
    // Counted once they have run, so rcu_barrier does not return while
    // another CPU is still running callbacks queued before it.
    let mut l = CPUS[cpu].cbs.lock();
    l.invoked += n;
    l.invoking = false;
    n
}

/// The host's stand-in for ticks: a CPU seen outside any read-side section
/// has passed a quiescent state.
fn force_quiescent_states() {
    if cfg!(target_os = "none") {
        return;
    }
    let pending = GP.pending.load(Ordering::SeqCst);
    for cpu in (0..MAX_CPUS).filter(|c| pending & (1 << c) != 0) {
        if CPUS[cpu].nesting.load(Ordering::SeqCst) == 0 {
            report_qs(cpu);
        }
    }
}

/// This CPU is quiescent now (task context, outside any read-side section).
fn quiescent_here() {
    let cpu = cpu_id();
    assert!(
        CPUS[cpu].nesting.load(Ordering::Relaxed) == 0,
        "cpu {cpu}: RCU grace-period wait or context switch inside rcu_read_lock()"
    );
    report_qs(cpu);
}

/// Port of `rcu_all_qs()` (what `cond_resched()` reports): a long kernel
/// loop that neither switches tasks nor idles calls this between read-side
/// sections, since a tick may never land in the instants between them.
pub(crate) fn rcu_all_qs() {
    quiescent_here();
    // Task context with no lock held: run what is ready here, as Linux's
    // RCU softirq would on this CPU, rather than only in batches per tick.
    invoke_ready(cpu_id(), u64::MAX);
}

/// Port of `rcu_note_context_switch()`: called by `schedule()`.
#[inline]
pub(crate) fn rcu_note_context_switch() {
    quiescent_here();
}

/// The idle loop's part: a quiescent state, then this CPU's ready
/// callbacks.
pub(crate) fn rcu_idle() {
    quiescent_here();
    invoke_ready(cpu_id(), u64::MAX);
}

/// Port of `rcu_sched_clock_irq()`, from the timer interrupt: a quiescent
/// state if the interrupted code was outside any read-side section, this
/// CPU's ready callbacks, and the stall check.
pub(crate) fn rcu_sched_clock_irq() {
    let cpu = cpu_id();
    if CPUS[cpu].nesting.load(Ordering::Relaxed) == 0 {
        report_qs(cpu);
    }
    start_gp_if_needed();
    invoke_ready(cpu, TICK_BATCH);
    check_stall();
}

/// Panics, naming the CPUs a GP still waits for, once it is older than the
/// stall bound.
fn check_stall() {
    let bound_ms = STALL_MS.load(Ordering::Relaxed);
    let started = GP.started.load(Ordering::SeqCst);
    if bound_ms == 0 || started == GP.completed.load(Ordering::SeqCst) {
        return;
    }
    let cps = platform::cycles_per_sec();
    let age = platform::cycles().saturating_sub(GP.started_at.load(Ordering::Relaxed));
    if cps == 0 || age < bound_ms.saturating_mul(cps / 1000) {
        return;
    }
    if GP.stall_reported.swap(true, Ordering::Relaxed) {
        return;
    }
    let pending = GP.pending.load(Ordering::SeqCst);
    let mut who = alloc::string::String::new();
    for c in (0..MAX_CPUS).filter(|c| pending & (1 << c) != 0) {
        use core::fmt::Write;
        let n = CPUS[c].nesting.load(Ordering::Relaxed);
        let _ = write!(who, " cpu {c} (read-side nesting {n})");
    }
    panic!(
        "rcu: stall: grace period {started} has waited {} ms for{who}",
        age / (cps / 1000).max(1)
    );
}

/// A watchdog for a wait on RCU: twice the stall bound, so the stall
/// report (which names the CPUs holding the grace period up) comes first.
fn wait_watchdog() -> Watchdog {
    Watchdog::start_bounded(
        "wait for",
        STALL_MS.load(Ordering::Relaxed).saturating_mul(2),
    )
}

/// Spins until GP `gp` has completed, passing quiescent states for this
/// CPU meanwhile.
fn wait_for_gp(gp: u64) {
    let mut watchdog = wait_watchdog();
    while GP.completed.load(Ordering::SeqCst) < gp {
        start_gp_if_needed();
        quiescent_here();
        force_quiescent_states();
        platform::cpu_relax();
        watchdog.tick("rcu_grace_period", || {
            Holder::Text("CPUs that have not passed a quiescent state")
        });
    }
}

/// Port of `synchronize_rcu()`: returns once every read-side section that
/// began before the call has ended. Must be called with interrupts on
/// (other CPUs' ticks end the GP) and outside any read-side section.
pub(crate) fn synchronize_rcu() {
    wait_for_gp(gp_needed_now());
}

/// Port of `rcu_barrier()`: returns once every callback queued before the
/// call, on any CPU, has run. Linux queues a callback behind each CPU's and
/// waits for those; here a list's `invoked` count says the same, since one
/// invoker at a time runs a list in order (the barrier helps when the list
/// is free and waits while another invoker has it).
pub(crate) fn rcu_barrier() {
    let mut targets = [0u64; MAX_CPUS];
    for (cpu, t) in targets.iter_mut().enumerate() {
        *t = CPUS[cpu].cbs.lock().queued;
    }
    let gp = gp_needed_now();
    wait_for_gp(gp);
    let mut watchdog = wait_watchdog();
    for (cpu, &target) in targets.iter().enumerate() {
        while CPUS[cpu].cbs.lock().invoked < target {
            invoke_ready(cpu, u64::MAX);
            platform::cpu_relax();
            watchdog.tick("rcu_barrier", || Holder::Text("callbacks not yet run"));
        }
    }
}

/// Callbacks queued and not yet run, over all CPUs.
pub(crate) fn pending_callbacks() -> u64 {
    CPUS.iter()
        .map(|c| {
            let l = c.cbs.lock();
            l.queued - l.invoked
        })
        .sum()
}

/// Grace periods completed since boot.
pub(crate) fn completed_gps() -> u64 {
    GP.completed.load(Ordering::SeqCst)
}
