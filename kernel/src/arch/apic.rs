//! The local APIC: per-CPU interrupt controller, timer and IPIs.
//!
//! xAPIC mode reaches the registers through MMIO at the address the MADT
//! gives (QEMU's TCG has no x2APIC); when CPUID reports x2APIC, every CPU
//! switches to it and uses the MSRs at 0x800 + register/16 instead. Sending
//! an IPI in xAPIC mode writes the ICR's high half (destination) before the
//! low half (which sends), then polls the delivery-status bit until the
//! APIC has accepted it; x2APIC writes the 64-bit ICR in one go.
//!
//! Vectors: 0x20 the timer (periodic; one-shot or stopped while its CPU
//! idles, see `nohz`), 0xf0 the wake-up IPI (it only breaks a `hlt`), 0xfe
//! APIC errors, 0xff spurious (no EOI, by the spec).

use core::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

use x86_64::registers::model_specific::Msr;

use super::physmap::phys_to_virt;

pub(crate) const TIMER_VECTOR: u8 = 0x20;
pub(crate) const WAKE_VECTOR: u8 = 0xf0;
pub(crate) const ERROR_VECTOR: u8 = 0xfe;
pub(crate) const SPURIOUS_VECTOR: u8 = 0xff;

const REG_ID: u32 = 0x20;
const REG_VERSION: u32 = 0x30;
const REG_TPR: u32 = 0x80;
const REG_EOI: u32 = 0xb0;
const REG_SVR: u32 = 0xf0;
const REG_ESR: u32 = 0x280;
/// The Interrupt Request Register: eight 32-bit words from here, one every
/// 0x10 (vector / 32 picks the word, vector % 32 the bit).
const REG_IRR0: u32 = 0x200;
const REG_ICR_LOW: u32 = 0x300;
const REG_ICR_HIGH: u32 = 0x310;
const REG_LVT_TIMER: u32 = 0x320;
const REG_LVT_LINT0: u32 = 0x350;
const REG_LVT_LINT1: u32 = 0x360;
const REG_LVT_ERROR: u32 = 0x370;
const REG_TIMER_INIT: u32 = 0x380;
const REG_TIMER_CURRENT: u32 = 0x390;
const REG_TIMER_DIVIDE: u32 = 0x3e0;

const LVT_MASKED: u32 = 1 << 16;
const LVT_TIMER_PERIODIC: u32 = 1 << 17;
const SVR_ENABLE: u32 = 1 << 8;
const ICR_DELIVERY_PENDING: u32 = 1 << 12;
const ICR_LEVEL_ASSERT: u32 = 1 << 14;
const ICR_TRIGGER_LEVEL: u32 = 1 << 15;
const ICR_ALL_BUT_SELF: u32 = 0b11 << 18;
const DM_NMI: u32 = 0b100 << 8;
const DM_INIT: u32 = 0b101 << 8;
const DM_STARTUP: u32 = 0b110 << 8;
/// Timer divide configuration value for "divide by 16".
const DIVIDE_BY_16: u32 = 0b0011;

const IA32_APIC_BASE: u32 = 0x1b;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_X2APIC: u64 = 1 << 10;

const MODE_NONE: u8 = 0;
const MODE_XAPIC: u8 = 1;
const MODE_X2APIC: u8 = 2;

static MODE: AtomicU8 = AtomicU8::new(MODE_NONE);
/// Virtual address of the xAPIC registers.
static MMIO: AtomicU64 = AtomicU64::new(0);
/// Timer ticks per second at divide-by-16 (measured once, by the boot CPU).
static TIMER_HZ: AtomicU64 = AtomicU64::new(0);
/// The periodic timer's initial count (the same on every CPU), for
/// restarting it after an idle stretch.
static PERIOD_COUNT: AtomicU32 = AtomicU32::new(0);

/// An inter-processor interrupt.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Ipi {
    Fixed(u8),
    Nmi,
    InitAssert,
    InitDeassert,
    Startup(u8),
}

/// Whether the CPU supports x2APIC (CPUID.1:ECX[21]).
fn cpu_has_x2apic() -> bool {
    let leaf1 = core::arch::x86_64::__cpuid(1);
    leaf1.ecx & (1 << 21) != 0
}

/// "x2apic" or "xapic".
pub(crate) fn mode_name() -> &'static str {
    match MODE.load(Ordering::Relaxed) {
        MODE_X2APIC => "x2apic",
        MODE_XAPIC => "xapic",
        _ => "none",
    }
}

fn read(reg: u32) -> u32 {
    if MODE.load(Ordering::Relaxed) == MODE_X2APIC {
        // SAFETY: x2APIC mode is enabled on this CPU (every CPU enables it
        // in `init_this_cpu` before touching registers); the MSR exists.
        unsafe { Msr::new(0x800 + (reg >> 4)).read() as u32 }
    } else {
        let addr = MMIO.load(Ordering::Relaxed) + reg as u64;
        // SAFETY: the xAPIC register page is mapped (physical-memory
        // mapping) and `reg` is a register offset within it.
        unsafe { (addr as *const u32).read_volatile() }
    }
}

fn write(reg: u32, value: u32) {
    if MODE.load(Ordering::Relaxed) == MODE_X2APIC {
        // SAFETY: as in `read`.
        unsafe { Msr::new(0x800 + (reg >> 4)).write(value as u64) };
    } else {
        let addr = MMIO.load(Ordering::Relaxed) + reg as u64;
        // SAFETY: as in `read`.
        unsafe { (addr as *mut u32).write_volatile(value) };
    }
}

/// Picks the mode and the register address. Called once by the boot CPU,
/// before `init_this_cpu` on any CPU.
pub(crate) fn init_global(lapic_phys: u64) {
    let mode = if cpu_has_x2apic() {
        MODE_X2APIC
    } else {
        MODE_XAPIC
    };
    MMIO.store(phys_to_virt(lapic_phys) as u64, Ordering::Relaxed);
    MODE.store(mode, Ordering::Relaxed);
}

/// Enables this CPU's local APIC: mode, spurious vector, error vector,
/// LINT pins masked, timer masked.
pub(crate) fn init_this_cpu() {
    let mut base = Msr::new(IA32_APIC_BASE);
    // SAFETY: IA32_APIC_BASE exists on every CPU with an APIC; we only set
    // the enable bits (and x2APIC's when the CPU has it), keeping the base.
    unsafe {
        let value = base.read() | APIC_BASE_ENABLE;
        if MODE.load(Ordering::Relaxed) == MODE_X2APIC {
            base.write(value | APIC_BASE_X2APIC);
        } else {
            base.write(value);
        }
    }
    write(REG_TPR, 0);
    write(REG_LVT_TIMER, LVT_MASKED | TIMER_VECTOR as u32);
    write(REG_LVT_LINT0, LVT_MASKED);
    write(REG_LVT_LINT1, LVT_MASKED);
    write(REG_LVT_ERROR, ERROR_VECTOR as u32);
    // The ESR latches on write: write, then read to clear.
    write(REG_ESR, 0);
    let _ = read(REG_ESR);
    write(REG_SVR, SVR_ENABLE | SPURIOUS_VECTOR as u32);
    eoi();
}

/// This CPU's APIC id.
pub(crate) fn id() -> u32 {
    if MODE.load(Ordering::Relaxed) == MODE_X2APIC {
        read(REG_ID)
    } else {
        read(REG_ID) >> 24
    }
}

/// The APIC version register (for the boot report).
pub(crate) fn version() -> u32 {
    read(REG_VERSION) & 0xff
}

/// Signals the end of an interrupt.
#[inline]
pub(crate) fn eoi() {
    write(REG_EOI, 0);
}

/// Reads and clears the error status.
pub(crate) fn error_status() -> u32 {
    write(REG_ESR, 0);
    read(REG_ESR)
}

fn icr_low(ipi: Ipi) -> u32 {
    match ipi {
        Ipi::Fixed(v) => v as u32 | ICR_LEVEL_ASSERT,
        Ipi::Nmi => DM_NMI | ICR_LEVEL_ASSERT,
        Ipi::InitAssert => DM_INIT | ICR_LEVEL_ASSERT | ICR_TRIGGER_LEVEL,
        Ipi::InitDeassert => DM_INIT | ICR_TRIGGER_LEVEL,
        Ipi::Startup(page) => DM_STARTUP | page as u32 | ICR_LEVEL_ASSERT,
    }
}

/// Error from sending an IPI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IpiTimeout;

/// Sends `ipi` to `dest` (shorthand `all_but_self` ignores `dest`), then
/// waits until the APIC has accepted it (xAPIC).
fn send_raw(dest: u32, low: u32) -> Result<(), IpiTimeout> {
    x86_64::instructions::interrupts::without_interrupts(|| {
        if MODE.load(Ordering::Relaxed) == MODE_X2APIC {
            // SAFETY: x2APIC mode is on; writing the ICR MSR sends the IPI.
            unsafe { Msr::new(0x830).write(((dest as u64) << 32) | low as u64) };
            Ok(())
        } else {
            write(REG_ICR_HIGH, dest << 24);
            write(REG_ICR_LOW, low);
            wait_icr_idle()
        }
    })
}

fn wait_icr_idle() -> Result<(), IpiTimeout> {
    // About a second of polling even before the TSC is calibrated.
    for _ in 0..100_000_000u64 {
        if read(REG_ICR_LOW) & ICR_DELIVERY_PENDING == 0 {
            return Ok(());
        }
        core::hint::spin_loop();
    }
    Err(IpiTimeout)
}

/// Sends an IPI to the CPU with APIC id `dest`.
pub(crate) fn send_ipi(dest: u32, ipi: Ipi) -> Result<(), IpiTimeout> {
    send_raw(dest, icr_low(ipi))
}

/// Sends an NMI to every CPU but this one.
pub(crate) fn send_nmi_all_but_self() -> Result<(), IpiTimeout> {
    send_raw(0, icr_low(Ipi::Nmi) | ICR_ALL_BUT_SELF)
}

/// Measures the timer's rate against the (calibrated) TSC. Boot CPU, once.
pub(crate) fn calibrate_timer() -> u64 {
    const WINDOW_US: u64 = 10_000;
    write(REG_TIMER_DIVIDE, DIVIDE_BY_16);
    write(REG_LVT_TIMER, LVT_MASKED | TIMER_VECTOR as u32);
    write(REG_TIMER_INIT, u32::MAX);
    super::time::delay_us(WINDOW_US);
    let elapsed = u32::MAX - read(REG_TIMER_CURRENT);
    write(REG_TIMER_INIT, 0);
    let hz = elapsed as u64 * (1_000_000 / WINDOW_US);
    TIMER_HZ.store(hz, Ordering::Relaxed);
    hz
}

/// Starts this CPU's timer in periodic mode at `hz` interrupts per second.
pub(crate) fn start_periodic_timer(hz: u32) {
    let count = (TIMER_HZ.load(Ordering::Relaxed) / hz as u64).clamp(1, u32::MAX as u64);
    PERIOD_COUNT.store(count as u32, Ordering::Relaxed);
    write(REG_TIMER_DIVIDE, DIVIDE_BY_16);
    restart_periodic_timer();
}

/// Restarts this CPU's periodic timer at the rate [`start_periodic_timer`]
/// set; the first interrupt comes a full period from now.
pub(crate) fn restart_periodic_timer() {
    write(REG_LVT_TIMER, LVT_TIMER_PERIODIC | TIMER_VECTOR as u32);
    write(REG_TIMER_INIT, PERIOD_COUNT.load(Ordering::Relaxed));
}

/// Whether a timer interrupt is pending on this CPU: accepted by the local
/// APIC (its IRR bit set) but not yet delivered, as one that fired while
/// interrupts were off is.
pub(crate) fn timer_pending() -> bool {
    let v = TIMER_VECTOR as u32;
    read(REG_IRR0 + 0x10 * (v / 32)) & (1 << (v % 32)) != 0
}

/// Stops this CPU's timer, or, with `after_us`, leaves it to interrupt
/// once that far ahead (one-shot mode; as far as the 32-bit count reaches
/// if further).
pub(crate) fn stop_timer_or_oneshot(after_us: Option<u64>) {
    let count = after_us.map_or(0, |us| {
        let ticks = TIMER_HZ.load(Ordering::Relaxed) as u128 * us as u128 / 1_000_000;
        ticks.clamp(1, u32::MAX as u128) as u32
    });
    write(REG_LVT_TIMER, TIMER_VECTOR as u32);
    // A zero initial count stops the timer.
    write(REG_TIMER_INIT, count);
}
