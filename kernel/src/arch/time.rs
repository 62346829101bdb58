//! Time: the TSC, calibrated against the PIT, as a monotonic nanosecond
//! clock and a busy-wait delay.
//!
//! At boot the boot CPU counts TSC cycles across a 50 ms PIT interval
//! (the shortest of three). The
//! TSC is then the clock everyone reads: under QEMU/TCG every vCPU's TSC
//! comes from the same host counter, so readings agree across CPUs.

use core::sync::atomic::{AtomicU64, Ordering};

use super::cpu::{self, rdtsc};
use super::pit;

/// TSC value at calibration, the clock's zero.
static TSC_ZERO: AtomicU64 = AtomicU64::new(0);

/// PIT interval used for calibration.
pub(crate) const CALIBRATION_MS: u64 = 50;

/// Measures the TSC frequency against the PIT and makes it the clock.
/// Returns it in Hz. The shortest of three measurements counts: under
/// TCG a vCPU the host deschedules beside a PIT edge makes a count too
/// long (a clock too fast), never too short.
pub(crate) fn calibrate_tsc() -> u64 {
    TSC_ZERO.store(rdtsc(), Ordering::Relaxed);
    let cycles = (0..3)
        .map(|_| pit::measure_tsc_over_ms(CALIBRATION_MS))
        .min()
        .unwrap_or(0);
    let hz = cycles * 1000 / CALIBRATION_MS;
    cpu::set_tsc_hz(hz);
    hz
}

/// Nanoseconds since calibration.
pub(crate) fn now_ns() -> u64 {
    let hz = cpu::tsc_hz();
    if hz == 0 {
        return 0;
    }
    let cycles = rdtsc().saturating_sub(TSC_ZERO.load(Ordering::Relaxed));
    (cycles as u128 * 1_000_000_000 / hz as u128) as u64
}

/// TSC cycles in `ns` nanoseconds.
pub(crate) fn ns_to_cycles(ns: u64) -> u64 {
    (ns as u128 * cpu::tsc_hz() as u128 / 1_000_000_000) as u64
}

/// TSC cycles as nanoseconds.
pub(crate) fn cycles_to_ns(cycles: u64) -> u64 {
    match cpu::tsc_hz() {
        0 => 0,
        hz => (cycles as u128 * 1_000_000_000 / hz as u128) as u64,
    }
}

/// Busy-waits at least `us` microseconds (by the PIT before the TSC is
/// calibrated).
pub(crate) fn delay_us(us: u64) {
    if cpu::tsc_hz() == 0 {
        let mut ticks = pit::PIT_HZ * us / 1_000_000 + 1;
        while ticks > 0 {
            let chunk = ticks.min(0xffff);
            pit::wait_ticks(chunk as u16, || {}, || ());
            ticks -= chunk;
        }
        return;
    }
    let end = rdtsc() + ns_to_cycles(us * 1000);
    while rdtsc() < end {
        core::hint::spin_loop();
    }
}
