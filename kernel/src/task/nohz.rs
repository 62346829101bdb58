//! NO_HZ_IDLE, the idle loop's side (Linux's `tick_nohz_idle_stop_tick()`
//! and `tick_nohz_idle_exit()`, with `ct_idle_enter()` and
//! `ct_idle_exit()` for RCU): a CPU with nothing to run stops its tick and
//! leaves RCU's watch while it halts, and gets both back when it wakes.
//!
//! [`idle_enter`] is the idle loop's last step before `sti; hlt`, with
//! interrupts off and after its last look at the run queue (so a waker
//! sends the wake IPI, which ends the halt). It keeps the tick if this CPU
//! needs it while it idles: RCU callbacks queued here (`rcu_needs_cpu()`:
//! the tick starts their grace period and runs them), or a CPU halted in a
//! lock wait (the pv-ticket lock's sweep runs from ticks). Otherwise the
//! CPU enters RCU's extended quiescent state, then stops its tick.
//! [`idle_exit`] reverses both, RCU first, so that RCU watches the CPU
//! before any tick or handler can read. It runs once per stop, from
//! whichever comes first: the idle loop once the halt ends, or the
//! interrupt entry of the interrupt that ended it, before the handler
//! (`arch::nohz`). So the wake IPI, the watchdog's one-shot and an NMI
//! kick (via the loop) all restart the tick.
//!
//! `nohz=off` keeps every idle CPU ticking and watched, as before, so one
//! build measures both.

use core::sync::atomic::{AtomicBool, Ordering};

use crate::arch::{nohz, percpu};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns NO_HZ_IDLE on or off (`nohz=`). Boot turns it on once the lockup
/// detectors run: an idle CPU's watchdog wake-ups follow their bounds.
pub(crate) fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether idle CPUs stop their tick (`nohz=on`).
pub(crate) fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Port of `tick_nohz_idle_stop_tick()`: stops this CPU's tick for the
/// halt that follows, unless it needs it. Interrupts off.
pub(crate) fn idle_enter() {
    if !enabled() || crate::rcu::rcu_needs_cpu() || crate::sync::pvticket::waiters_halted() {
        return;
    }
    // The tick first: if one was already due it is taken as a tick (and
    // RCU keeps watching this CPU until the next try).
    if nohz::stop_tick() {
        crate::rcu::rcu_idle_enter();
    }
}

/// Port of `tick_nohz_idle_exit()`: if this CPU idles with its tick
/// stopped, RCU watches it again and the tick restarts. Interrupts off;
/// also the interrupt entry's hook (`arch::hooks`).
pub(crate) fn idle_exit() {
    if !percpu::this_cpu().tick_stopped() {
        return;
    }
    crate::rcu::rcu_idle_exit();
    nohz::restart_tick();
}
