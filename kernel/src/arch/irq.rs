//! Interrupt handlers for the local APIC's vectors: the periodic timer, the
//! wake-up IPI, APIC errors and spurious interrupts.
//!
//! Handlers bracket their work with `irq_enter`/`irq_exit` on the per-CPU
//! area, which is what `platform::in_interrupt()` reads (the tasklist rwlock
//! lets interrupt-context readers past a waiting writer). The timer runs the
//! lock algorithm's tick, if it has one, and an optional hook, which tests
//! use to take locks from interrupt context.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use x86_64::structures::idt::{InterruptDescriptorTable, InterruptStackFrame};

use super::apic;
use super::percpu::this_cpu;

/// `fn()` run by every timer interrupt, or 0.
static TIMER_HOOK: AtomicUsize = AtomicUsize::new(0);
/// The kernel's per-tick work (`fn()`), or 0: set once at boot, so arch code
/// does not call up into the subsystems.
static TICK_WORK: AtomicUsize = AtomicUsize::new(0);
/// The lock algorithm's `fn()` for every timer interrupt, or 0.
static LOCK_TICK: AtomicUsize = AtomicUsize::new(0);
static SPURIOUS: AtomicU64 = AtomicU64::new(0);

/// Installs the APIC vectors' handlers in `idt`.
pub fn install(idt: &mut InterruptDescriptorTable) {
    idt[apic::TIMER_VECTOR].set_handler_fn(timer);
    idt[apic::WAKE_VECTOR].set_handler_fn(wake);
    idt[apic::ERROR_VECTOR].set_handler_fn(error);
    idt[apic::SPURIOUS_VECTOR].set_handler_fn(spurious);
}

/// Sets the work every CPU's timer interrupt does (RCU's tick).
pub fn set_tick_work(work: fn()) {
    TICK_WORK.store(work as usize, Ordering::Release);
}

/// Makes every CPU's timer interrupt call `hook` (None: nothing).
pub fn set_timer_hook(hook: Option<fn()>) {
    TIMER_HOOK.store(hook.map_or(0, |f| f as usize), Ordering::Release);
}

/// Makes every CPU's timer interrupt call `tick` for the lock algorithm
/// (None: nothing); set once at boot.
pub fn set_lock_tick(tick: Option<fn()>) {
    LOCK_TICK.store(tick.map_or(0, |f| f as usize), Ordering::Release);
}

/// Spurious interrupts seen so far, all CPUs.
pub fn spurious_count() -> u64 {
    SPURIOUS.load(Ordering::Relaxed)
}

extern "x86-interrupt" fn timer(_frame: InterruptStackFrame) {
    let cpu = this_cpu();
    cpu.irq_enter();
    cpu.tick();
    let work = TICK_WORK.load(Ordering::Acquire);
    if work != 0 {
        // SAFETY: only `set_tick_work` stores here, and it stores a `fn()`.
        let work: fn() = unsafe { core::mem::transmute::<usize, fn()>(work) };
        work();
    }
    let tick = LOCK_TICK.load(Ordering::Acquire);
    if tick != 0 {
        // SAFETY: only `set_lock_tick` stores here, and it stores a `fn()`.
        let tick: fn() = unsafe { core::mem::transmute::<usize, fn()>(tick) };
        tick();
    }
    let hook = TIMER_HOOK.load(Ordering::Acquire);
    if hook != 0 {
        // SAFETY: only `set_timer_hook` stores here, and it stores a `fn()`.
        let hook: fn() = unsafe { core::mem::transmute::<usize, fn()>(hook) };
        hook();
    }
    apic::eoi();
    cpu.irq_exit();
}

extern "x86-interrupt" fn wake(_frame: InterruptStackFrame) {
    // Its only job is to end a `hlt`; the woken loop looks for work itself.
    apic::eoi();
}

extern "x86-interrupt" fn error(frame: InterruptStackFrame) {
    let esr = apic::error_status();
    apic::eoi();
    panic!(
        "local APIC error, ESR {esr:#x}, at RIP {:#x}",
        frame.instruction_pointer.as_u64()
    );
}

extern "x86-interrupt" fn spurious(_frame: InterruptStackFrame) {
    // No EOI for spurious interrupts.
    SPURIOUS.fetch_add(1, Ordering::Relaxed);
}
