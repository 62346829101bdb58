//! What arch reports but only the layers above it know, reached through
//! hooks those layers register once at boot.
//!
//! arch is the bottom layer: it imports no other room of the kernel. Yet a
//! fault report should name the running task, a lockup report the lock its
//! CPU spins for, a panic the heap's state, a page fault on a stack guard
//! the stack it belongs to, and a wait for the console lock is bounded like
//! every lock wait, and a profiler sample is recorded by the profiler, and
//! an interrupt on a CPU that idles with its tick stopped ends its idle
//! (RCU must watch the CPU again before the handler runs). As
//! Linux's `arch/` reaches generic code only through
//! entry points it declares, arch declares these, [`register`] fills them
//! in (boot does, with the task, sync and mm functions), and each has a
//! harmless default until then: an unknown name, no lock, nothing to add,
//! no guard, an unbounded wait.

use spin::Once;

/// A fault address on the unmapped guard below a task stack.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GuardHit {
    pub(crate) addr: u64,
    /// The stack's mapped range above the guard.
    pub(crate) stack_bottom: u64,
    pub(crate) stack_top: u64,
}

/// The entry points arch calls upward.
pub(crate) struct ArchHooks {
    /// The name of the task running on CPU `cpu`, if known.
    pub(crate) task_name: fn(cpu: usize) -> Option<&'static str>,
    /// What CPU `cpu` spins for, as (kind, name), e.g. ("lock",
    /// "tasklist_lock").
    pub(crate) waiting_for: fn(cpu: usize) -> Option<(&'static str, &'static str)>,
    /// Prints what the layers above add to a panic report (the heap).
    pub(crate) panic_report: fn(),
    /// The stack guard `addr` lies on, if any.
    pub(crate) stack_guard: fn(addr: u64) -> Option<GuardHit>,
    /// Called now and then while a CPU waits for the console lock, with the
    /// cycles waited and the holder's CPU: panics past the lock wait bound.
    pub(crate) console_wait: fn(waited_cycles: u64, holder_cpu: Option<usize>),
    /// A profiler sample, from the NMI handler: the interrupted RIP, RSP
    /// and frame pointer. Takes no lock, allocates nothing.
    pub(crate) profile_nmi: fn(rip: u64, rsp: u64, fp: u64),
    /// An interrupt arrived on this CPU while it idles with its tick
    /// stopped (`nohz`): leave idle (ending in `nohz::restart_tick`).
    /// Interrupts off, before the handler.
    pub(crate) idle_exit: fn(),
}

static HOOKS: Once<ArchHooks> = Once::new();

/// Installs the hooks (once: boot calls this before the first AP starts).
pub(crate) fn register(hooks: ArchHooks) {
    HOOKS.call_once(|| hooks);
}

pub(crate) fn task_name(cpu: usize) -> Option<&'static str> {
    HOOKS.get().and_then(|h| (h.task_name)(cpu))
}

pub(crate) fn waiting_for(cpu: usize) -> Option<(&'static str, &'static str)> {
    HOOKS.get().and_then(|h| (h.waiting_for)(cpu))
}

pub(crate) fn panic_report() {
    if let Some(h) = HOOKS.get() {
        (h.panic_report)();
    }
}

pub(crate) fn stack_guard(addr: u64) -> Option<GuardHit> {
    HOOKS.get().and_then(|h| (h.stack_guard)(addr))
}

pub(crate) fn console_wait(waited_cycles: u64, holder_cpu: Option<usize>) {
    if let Some(h) = HOOKS.get() {
        (h.console_wait)(waited_cycles, holder_cpu);
    }
}

pub(crate) fn profile_nmi(rip: u64, rsp: u64, fp: u64) {
    if let Some(h) = HOOKS.get() {
        (h.profile_nmi)(rip, rsp, fp);
    }
}

pub(crate) fn idle_exit() {
    match HOOKS.get() {
        Some(h) => (h.idle_exit)(),
        None => super::nohz::restart_tick(),
    }
}
