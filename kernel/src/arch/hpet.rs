//! The HPET as the profiler's clock: one comparator in periodic mode whose
//! interrupt is an NMI broadcast to every CPU.
//!
//! A sampling profiler driven by an ordinary interrupt sees code that runs
//! with interrupts off only when it turns them back on (Linux's `cpu-clock`
//! events, hrtimer driven, have that skew; with a PMU, perf samples from an
//! NMI). Under TCG there is no PMU, but the HPET can deliver a comparator's
//! interrupt as a message (FSB delivery, QEMU's `-global hpet.msi=on`),
//! and a message can say "NMI, to every local APIC". So every CPU is
//! interrupted `hz` times a second, at the same instants, whatever its
//! interrupt flag: code with interrupts off is sampled where it runs.
//!
//! The comparator is programmed as Linux's `hpet_set_periodic()` does (32-bit
//! mode, the value-set write, then the period), on the last comparator
//! (the first two may serve the legacy PIT/RTC routes).

use core::sync::atomic::{AtomicU64, Ordering};

use super::physmap::phys_to_virt;

const GCAP_ID: u64 = 0x000;
const GEN_CONF: u64 = 0x010;
const MAIN_COUNTER: u64 = 0x0f0;
const fn timer_conf(n: u64) -> u64 {
    0x100 + 0x20 * n
}
const fn timer_cmp(n: u64) -> u64 {
    0x108 + 0x20 * n
}
const fn timer_fsb(n: u64) -> u64 {
    0x110 + 0x20 * n
}

const GEN_ENABLE: u32 = 1 << 0;
const TN_INT_ENB: u32 = 1 << 2;
const TN_PERIODIC: u32 = 1 << 3;
const TN_PER_INT_CAP: u32 = 1 << 4;
const TN_VAL_SET: u32 = 1 << 6;
const TN_32MODE: u32 = 1 << 8;
const TN_FSB_EN: u32 = 1 << 14;
const TN_FSB_INT_DEL_CAP: u32 = 1 << 15;

/// The message: delivery mode NMI (0b100), edge, vector ignored.
const MSI_DATA_NMI: u32 = 0b100 << 8;
/// The message's address: the local APICs' window, destination 0xff in
/// physical mode, which every xAPIC takes as broadcast.
const MSI_ADDR_BROADCAST: u32 = 0xfee0_0000 | (0xff << 12);

/// The HPET's registers (virtual address), 0 when there is none.
static BASE: AtomicU64 = AtomicU64::new(0);
/// The comparator in use while sampling, plus one (0: none).
static RUNNING: AtomicU64 = AtomicU64::new(0);

fn read(reg: u64) -> u32 {
    let base = BASE.load(Ordering::Relaxed);
    // SAFETY: `base` maps the HPET's register block (set by `init` from the
    // ACPI table), and `reg` is one of its 32-bit registers.
    unsafe { ((base + reg) as *const u32).read_volatile() }
}

fn write(reg: u64, v: u32) {
    let base = BASE.load(Ordering::Relaxed);
    // SAFETY: as in `read`.
    unsafe { ((base + reg) as *mut u32).write_volatile(v) }
}

/// Records the HPET's physical address (from ACPI).
pub(crate) fn init(phys: u64) {
    BASE.store(phys_to_virt(phys) as u64, Ordering::Relaxed);
}

/// Why periodic NMIs cannot be had here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HpetError {
    /// ACPI lists no HPET.
    Absent,
    /// No comparator can deliver its interrupt as a message (QEMU: run
    /// with `-global hpet.msi=on`, as the runner does).
    NoFsbDelivery,
    /// The rate does not fit the HPET's clock.
    BadRate,
}

impl core::fmt::Display for HpetError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            HpetError::Absent => "the machine has no HPET (ACPI lists none)",
            HpetError::NoFsbDelivery => {
                "no HPET comparator delivers interrupts as messages (QEMU needs -global hpet.msi=on; the runner passes it)"
            }
            HpetError::BadRate => "the rate does not fit the HPET's clock",
        })
    }
}

/// Starts NMIs to every CPU `hz` times a second; returns the comparator
/// used.
pub(crate) fn start_nmi_broadcast(hz: u32) -> Result<u32, HpetError> {
    if BASE.load(Ordering::Relaxed) == 0 {
        return Err(HpetError::Absent);
    }
    let cap_lo = read(GCAP_ID);
    let period_fs = u64::from(read(GCAP_ID + 4));
    let timers = u64::from((cap_lo >> 8) & 0x1f) + 1;
    let n = (0..timers)
        .rev()
        .find(|&n| {
            let c = read(timer_conf(n));
            c & TN_FSB_INT_DEL_CAP != 0 && c & TN_PER_INT_CAP != 0
        })
        .ok_or(HpetError::NoFsbDelivery)?;
    if period_fs == 0 || hz == 0 {
        return Err(HpetError::BadRate);
    }
    let delta = 1_000_000_000_000_000u64 / period_fs / u64::from(hz);
    if delta < 16 || delta > u64::from(u32::MAX / 2) {
        return Err(HpetError::BadRate);
    }
    write(timer_fsb(n), MSI_DATA_NMI);
    write(timer_fsb(n) + 4, MSI_ADDR_BROADCAST);
    let general = read(GEN_CONF);
    write(GEN_CONF, general & !GEN_ENABLE);
    let cmp = read(MAIN_COUNTER).wrapping_add(delta as u32);
    let conf = read(timer_conf(n)) & !(TN_INT_ENB | TN_FSB_EN);
    write(
        timer_conf(n),
        conf | TN_PERIODIC | TN_VAL_SET | TN_32MODE | TN_FSB_EN | TN_INT_ENB,
    );
    // The value-set write sets the first deadline; the next, the period.
    write(timer_cmp(n), cmp);
    write(timer_cmp(n), delta as u32);
    RUNNING.store(n + 1, Ordering::Release);
    write(GEN_CONF, general | GEN_ENABLE);
    Ok(n as u32)
}

/// Whether the periodic NMIs run (the NMI handler's test).
#[inline]
pub(crate) fn sampling() -> bool {
    RUNNING.load(Ordering::Relaxed) != 0
}

/// Stops the NMIs (an NMI already sent may still arrive).
pub(crate) fn stop_nmi_broadcast() {
    let running = RUNNING.swap(0, Ordering::AcqRel);
    if running == 0 {
        return;
    }
    let n = running - 1;
    let conf = read(timer_conf(n));
    write(
        timer_conf(n),
        conf & !(TN_INT_ENB | TN_FSB_EN | TN_PERIODIC),
    );
}
