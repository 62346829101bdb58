//! The idle CPU's tick (Linux's NO_HZ_IDLE, `kernel/time/tick-sched.c`):
//! stopped while the CPU idles, restarted when it wakes, so an idle vCPU
//! costs the host nothing (under TCG every tick is a host thread wake-up
//! that takes time from the busy vCPUs).
//!
//! Whether and when to stop is the idle loop's decision (`task::nohz`,
//! which also takes RCU's eyes off the CPU); arch switches the timer and
//! keeps the per-CPU flag that says the tick is stopped. The loop calls
//! [`stop_tick`] with interrupts off, right before its `sti; hlt`. The CPU
//! leaves idle on the first of two events: the halt ends and the loop runs
//! the exit itself, or an interrupt arrives; then [`irq_enter`], the first
//! thing `irq_entry` does for every interrupt but an NMI, finds the flag
//! and calls the exit hook the layers above registered (`hooks`), so RCU
//! watches the CPU again and its tick runs before the handler does
//! anything (Linux's `ct_irq_enter()` in `irq_enter()`). The exit ends in
//! [`restart_tick`], which clears the flag: the exit runs once per stop.
//! NMIs skip it: one may land anywhere in the idle loop's own entry or
//! exit, and their handlers use neither RCU nor the tick; an NMI that ends
//! the halt leaves the exit to the loop.
//!
//! A stopped tick is not always silent: while the hard-lockup detector
//! runs, an idle CPU still checks its buddy now and then (as Linux's
//! watchdog hrtimer keeps firing on an idle CPU), so the timer is left as
//! a one-shot that far ahead ([`watchdog::idle_check_us`]).

use super::percpu::{PerCpu, this_cpu};
use super::{apic, hooks, watchdog};

/// Stops this CPU's periodic tick for idle (leaving the watchdog's
/// one-shot, if any); false if a tick was already pending, which then
/// keeps the timer periodic and is taken as an ordinary tick at the halt
/// (the CPU tries again on its next pass through the idle loop), so a CPU
/// whose tick is stopped takes no tick that was due before. Interrupts
/// off; undone by [`restart_tick`].
pub(crate) fn stop_tick() -> bool {
    apic::stop_timer_or_oneshot(watchdog::idle_check_us());
    // The timer is stopped: no tick becomes pending after this check.
    if apic::timer_pending() {
        apic::restart_periodic_timer();
        return false;
    }
    this_cpu().set_tick_stopped(true);
    true
}

/// Restarts this CPU's periodic tick when it leaves idle. Interrupts off.
pub(crate) fn restart_tick() {
    this_cpu().set_tick_stopped(false);
    apic::restart_periodic_timer();
    // Idle is a scheduling point however long it lasted (Linux's
    // `tick_nohz_restart_sched_tick()` touches the soft-lockup watchdog).
    watchdog::touch();
}

/// `irq_entry`'s part, before the handler: an interrupt on a CPU that
/// idles with its tick stopped ends its idle first.
#[inline(always)]
pub(crate) fn irq_enter(cpu: &PerCpu) {
    if cpu.tick_stopped() {
        hooks::idle_exit();
    }
}
