//! CPU control: interrupt flag, time-stamp counter, halting.

use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::instructions::interrupts;

/// Whether interrupts are enabled on this CPU (RFLAGS.IF).
#[inline]
pub fn interrupts_enabled() -> bool {
    interrupts::are_enabled()
}

/// Reads the time-stamp counter.
#[inline]
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects and is available on every x86_64 CPU.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// TSC frequency in Hz, once calibrated (0 before).
static TSC_HZ: AtomicU64 = AtomicU64::new(0);

/// The calibrated TSC frequency in Hz (0 before calibration).
pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// Records the calibrated TSC frequency.
pub fn set_tsc_hz(hz: u64) {
    TSC_HZ.store(hz, Ordering::Relaxed);
}

/// Stops this CPU for good: interrupts off, then `hlt` forever (an NMI may
/// still wake it; it halts again).
pub fn halt_forever() -> ! {
    interrupts::disable();
    loop {
        x86_64::instructions::hlt();
    }
}
