//! The arch seam: the few machine facts portable code needs.
//!
//! Portable modules (locks, IDR, pid namespaces, tasks, statistics) never
//! touch `arch` directly; they call these functions. On the bare-metal build
//! they are the real thing (RFLAGS.IF, `pause`, RDTSC, the per-CPU area). On
//! the host they are a faithful simulation, so unit tests, std-thread stress
//! tests and `loom` models exercise the same code:
//!
//! - each host thread is a "CPU": it claims a free CPU id on first use (or
//!   [`host::bind_cpu`] picks one) and releases it when the thread ends, so
//!   two live threads never share per-CPU data;
//! - each thread has its own simulated interrupt flag, so IRQ discipline
//!   (`local_irq_save` inside an IRQ-safe lock, assertions that IF=0) is
//!   checked on the host as well;
//! - cycles are nanoseconds of the monotonic clock.
//!
//! The kernel is not preemptive: a task runs until it blocks or exits, and
//! only interrupts can run other code on its CPU. So "IRQs off" is all it
//! takes for exclusive use of this CPU's per-CPU data ([`PerCpu`]).

pub(crate) use crate::MAX_CPUS;

/// Saved interrupt state, from [`local_irq_save`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "restore the interrupt state with local_irq_restore"]
pub(crate) struct IrqFlags {
    were_enabled: bool,
}

impl IrqFlags {
    /// Whether interrupts were on when the flags were saved.
    pub(crate) fn were_enabled(&self) -> bool {
        self.were_enabled
    }
}

#[cfg(target_os = "none")]
mod metal;
#[cfg(target_os = "none")]
use metal as imp;
#[cfg(not(target_os = "none"))]
mod sim;
#[cfg(not(target_os = "none"))]
use sim as imp;
mod percpu;
pub(crate) use percpu::PerCpu;
#[cfg(test)]
mod tests;

/// Host-only controls of the simulation.
#[cfg(not(target_os = "none"))]
pub(crate) mod host {
    /// Makes this thread CPU `id` (panics if another live thread has it).
    pub(crate) fn bind_cpu(id: usize) {
        super::imp::bind_cpu(id)
    }

    /// Runs `f` as an interrupt handler would: IRQs off, `in_interrupt()`.
    pub(crate) fn run_as_interrupt<R>(f: impl FnOnce() -> R) -> R {
        super::imp::run_as_interrupt(f)
    }
}

/// This CPU's dense index, below [`MAX_CPUS`].
#[inline]
pub(crate) fn cpu_id() -> usize {
    imp::cpu_id()
}

/// Spin-wait hint (`pause`).
#[inline]
pub(crate) fn cpu_relax() {
    imp::cpu_relax()
}

/// A monotonic cycle counter (TSC on the machine, nanoseconds on the host).
#[inline]
pub(crate) fn cycles() -> u64 {
    imp::cycles()
}

/// [`cycles`] per second (the calibrated TSC frequency on the machine).
pub(crate) fn cycles_per_sec() -> u64 {
    imp::cycles_per_sec()
}

/// Whether interrupts are enabled on this CPU.
#[inline]
pub(crate) fn irqs_enabled() -> bool {
    imp::irqs_enabled()
}

/// `local_irq_disable()`.
#[inline]
pub(crate) fn local_irq_disable() {
    imp::local_irq_disable()
}

/// `local_irq_enable()`.
#[inline]
pub(crate) fn local_irq_enable() {
    imp::local_irq_enable()
}

/// `local_irq_save()`: disables interrupts, returning the previous state.
#[inline]
pub(crate) fn local_irq_save() -> IrqFlags {
    imp::local_irq_save()
}

/// `local_irq_restore()`: re-enables interrupts if they were on at save.
#[inline]
pub(crate) fn local_irq_restore(flags: IrqFlags) {
    if flags.were_enabled {
        imp::local_irq_enable();
    }
}

/// Whether this CPU is running an interrupt handler.
#[inline]
pub(crate) fn in_interrupt() -> bool {
    imp::in_interrupt()
}

/// CPUs running (the host simulation: as many as there may be).
pub(crate) fn cpus_online() -> usize {
    imp::cpus_online()
}

/// Halts this CPU until [`kick_cpu`] or an interrupt, unless `*word ==
/// value`. The check and the halt are one unit with respect to kicks: a
/// kick sent after this call began ends the halt or prevents it, whatever
/// instruction it arrives at. Called with IRQs off (then only a kick ends
/// the halt).
pub(crate) fn halt_unless(word: &core::sync::atomic::AtomicU32, value: u32) {
    imp::halt_unless(word, value)
}

/// Ends CPU `cpu`'s [`halt_unless`] (an NMI on the machine).
pub(crate) fn kick_cpu(cpu: usize) {
    imp::kick_cpu(cpu)
}

/// `cond_resched()`: a scheduling point for long loops (the soft-lockup
/// detector counts it as one; other tasks of this CPU get to run). Nothing
/// on the host, nor before the scheduler registers itself.
#[inline]
pub(crate) fn cond_resched() {
    imp::cond_resched()
}

/// Registers the scheduler's `cond_resched` (once, at boot).
#[cfg(target_os = "none")]
pub(crate) fn set_cond_resched(f: fn()) {
    imp::set_cond_resched(f)
}

/// Runs work on several CPUs at once: the seam benchmarks and SMP tests use
/// so the same code runs on the machine's CPUs and on host threads.
pub(crate) trait Parallel: Sync {
    /// CPUs available to [`run`](Self::run).
    fn cpus(&self) -> usize;

    /// Runs `f(i)` for `i` in `0..n`, each on its own CPU, all at once, and
    /// returns when every call has returned. `n` must not exceed
    /// [`cpus`](Self::cpus).
    fn run(&self, n: usize, f: &(dyn Fn(usize) + Sync));
}

/// [`Parallel`] over host threads, each bound to its own simulated CPU.
#[cfg(not(target_os = "none"))]
pub(crate) struct HostThreads(pub usize);

#[cfg(not(target_os = "none"))]
impl Parallel for HostThreads {
    fn cpus(&self) -> usize {
        self.0
    }

    fn run(&self, n: usize, f: &(dyn Fn(usize) + Sync)) {
        assert!(n <= self.0, "asked for {n} CPUs of {}", self.0);
        std::thread::scope(|s| {
            for i in 0..n {
                s.spawn(move || f(i));
            }
        });
    }
}
