//! CPU control: interrupt flag, time-stamp counter, halting.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use x86_64::instructions::interrupts;

/// Whether CPUID says we run under a hypervisor (leaf 1, ECX bit 31).
pub(crate) fn hypervisor_present() -> bool {
    core::arch::x86_64::__cpuid(1).ecx & (1 << 31) != 0
}

/// Reads the time-stamp counter.
#[inline]
pub(crate) fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects and is available on every x86_64 CPU.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// TSC frequency in Hz, once calibrated (0 before).
static TSC_HZ: AtomicU64 = AtomicU64::new(0);

/// The calibrated TSC frequency in Hz (0 before calibration).
pub(crate) fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// Records the calibrated TSC frequency.
pub(crate) fn set_tsc_hz(hz: u64) {
    TSC_HZ.store(hz, Ordering::Relaxed);
}

// `halt_unless(word, value)`: halts unless `*word == value`. From
// `pidlab_halt_check` up to `pidlab_halt_end` is the window in which an
// NMI must not be lost: the NMI handler moves a return address inside it
// to `pidlab_halt_end` (see `skip_halt_window`), so an NMI that arrives
// after the check, or at the `hlt` itself, skips the halt; one that
// arrives before the check is followed by the check.
core::arch::global_asm!(
    ".pushsection .text.pidlab_halt_unless, \"ax\"",
    ".global pidlab_halt_unless",
    "pidlab_halt_unless:",
    ".global pidlab_halt_check",
    "pidlab_halt_check:",
    "    cmp dword ptr [rdi], esi",
    "    je 2f",
    "    hlt",
    "2:",
    ".global pidlab_halt_end",
    "pidlab_halt_end:",
    "    ret",
    ".popsection",
);

unsafe extern "C" {
    fn pidlab_halt_unless(word: *const u32, value: u32);
    static pidlab_halt_check: u8;
    static pidlab_halt_end: u8;
}

/// Halts until an NMI (or, with IF=1, any interrupt), unless `*word ==
/// value`; a kick NMI can never be lost between the check and the `hlt`.
pub(crate) fn halt_unless(word: &AtomicU32, value: u32) {
    // SAFETY: `word` is a live, aligned u32 (an atomic: the asm only reads
    // it with a plain load, which is atomic on x86); the routine touches
    // nothing else and follows the C ABI.
    unsafe { pidlab_halt_unless(word.as_ptr(), value) }
}

/// The return address an NMI that interrupted `rip` should resume at:
/// past the halt if `rip` is inside the check-and-halt window.
pub(crate) fn skip_halt_window(rip: u64) -> Option<u64> {
    let check = (&raw const pidlab_halt_check) as u64;
    let end = (&raw const pidlab_halt_end) as u64;
    (check..end).contains(&rip).then_some(end)
}

/// Stops this CPU for good: interrupts off, then `hlt` forever (an NMI may
/// still wake it; it halts again).
pub(crate) fn halt_forever() -> ! {
    interrupts::disable();
    loop {
        x86_64::instructions::hlt();
    }
}
