//! The seam on the machine: RFLAGS.IF, `pause`, RDTSC, the per-CPU area,
//! NMI kicks.

use super::IrqFlags;
use crate::arch::{cpu, percpu};
use x86_64::instructions::interrupts;

#[inline]
pub(crate) fn cpu_id() -> usize {
    percpu::cpu_index() as usize
}

#[inline]
pub(crate) fn cpu_relax() {
    core::hint::spin_loop();
}

#[inline]
pub(crate) fn cycles() -> u64 {
    cpu::rdtsc()
}

pub(crate) fn cycles_per_sec() -> u64 {
    cpu::tsc_hz()
}

#[inline]
pub(crate) fn irqs_enabled() -> bool {
    interrupts::are_enabled()
}

#[inline]
pub(crate) fn local_irq_disable() {
    interrupts::disable();
}

#[inline]
pub(crate) fn local_irq_enable() {
    interrupts::enable();
}

#[inline]
pub(crate) fn local_irq_save() -> IrqFlags {
    let were_enabled = interrupts::are_enabled();
    if were_enabled {
        interrupts::disable();
    }
    IrqFlags { were_enabled }
}

#[inline]
pub(crate) fn in_interrupt() -> bool {
    percpu::this_cpu().in_interrupt()
}

pub(crate) fn cpus_online() -> usize {
    crate::arch::smp::online()
}

pub(crate) fn halt_unless(word: &core::sync::atomic::AtomicU32, value: u32) {
    cpu::halt_unless(word, value);
}

pub(crate) fn kick_cpu(cpu: usize) {
    crate::arch::smp::kick(cpu);
}

/// The scheduler's `cond_resched`, registered at boot (the scheduler
/// is above this seam): nothing until then.
static COND_RESCHED: spin::Once<fn()> = spin::Once::new();

pub(crate) fn set_cond_resched(f: fn()) {
    COND_RESCHED.call_once(|| f);
}

#[inline]
pub(crate) fn cond_resched() {
    if let Some(f) = COND_RESCHED.get() {
        f();
    }
}
