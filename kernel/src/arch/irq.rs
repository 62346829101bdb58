//! Interrupt handlers for the local APIC's vectors (the periodic timer,
//! the wake-up IPI, APIC errors, spurious interrupts) and the one entry
//! path every handler takes.
//!
//! [`irq_entry`] brackets a handler's body with `irq_enter`/`irq_exit` on
//! the per-CPU area, which is what `platform::in_interrupt()` reads (the
//! tasklist rwlock lets interrupt-context readers past a waiting writer),
//! and counts the interrupt per CPU and kind. Handlers are only written
//! through the [`interrupt_handler!`] macro, so none can skip it; the
//! exception and NMI handlers in `idt` enter through it as well.
//!
//! The timer runs the kernel's per-tick work, the lock algorithm's tick if
//! it has one, the lockup detectors' checks (`watchdog`) and an optional
//! hook, which tests use to take locks from interrupt context. On a CPU
//! that idles with its tick stopped it runs only for the watchdog's
//! one-shot, after the interrupt entry has ended the idle (`nohz`).

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use x86_64::structures::idt::{InterruptDescriptorTable, InterruptStackFrame};

use super::apic;
use super::percpu::{MAX_CPUS, PerCpu, this_cpu};

/// `fn()` run by every timer interrupt, or 0.
static TIMER_HOOK: AtomicUsize = AtomicUsize::new(0);
/// The kernel's per-tick work (`fn()`), or 0: set once at boot, so arch code
/// does not call up into the subsystems.
static TICK_WORK: AtomicUsize = AtomicUsize::new(0);
/// The lock algorithm's `fn()` for every timer interrupt, or 0.
static LOCK_TICK: AtomicUsize = AtomicUsize::new(0);

/// What an interrupt was, for the per-CPU counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IrqKind {
    Timer = 0,
    Wake = 1,
    ApicError = 2,
    Spurious = 3,
    Nmi = 4,
    /// A CPU exception or a vector nobody installed (both fail the run).
    Exception = 5,
}

const NR_KINDS: usize = 6;

/// Interrupts taken, per CPU and kind: written only by their own CPU,
/// inside the handler, with plain loads and stores.
#[repr(align(64))]
struct IrqCounts([AtomicU64; NR_KINDS]);

static COUNTS: [IrqCounts; MAX_CPUS] =
    [const { IrqCounts([const { AtomicU64::new(0) }; NR_KINDS]) }; MAX_CPUS];

/// Interrupts of `kind` that CPU `cpu` has taken.
pub(crate) fn irq_count(cpu: usize, kind: IrqKind) -> u64 {
    COUNTS[cpu].0[kind as usize].load(Ordering::Relaxed)
}

/// The entry path of every interrupt and exception handler: the end of a
/// tickless idle (not for an NMI, see `nohz`), `irq_enter`, count, `body`,
/// `irq_exit`.
#[inline(always)]
pub(crate) fn irq_entry<R>(kind: IrqKind, body: impl FnOnce(&'static PerCpu) -> R) -> R {
    let cpu = this_cpu();
    if kind != IrqKind::Nmi {
        super::nohz::irq_enter(cpu);
    }
    cpu.irq_enter();
    let c = &COUNTS[cpu.index() as usize].0[kind as usize];
    c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    let r = body(cpu);
    cpu.irq_exit();
    r
}

/// Defines an `extern "x86-interrupt"` handler whose body runs inside
/// [`irq_entry`]: the only way handlers are written.
macro_rules! interrupt_handler {
    ($(#[$m:meta])* $name:ident($kind:expr, $frame:ident, $cpu:ident) $body:block) => {
        $(#[$m])*
        extern "x86-interrupt" fn $name($frame: InterruptStackFrame) {
            $crate::arch::irq::irq_entry($kind, |$cpu| {
                let _ = &$cpu;
                $body
            })
        }
    };
}

/// Installs the APIC vectors' handlers in `idt`.
pub(crate) fn install(idt: &mut InterruptDescriptorTable) {
    idt[apic::TIMER_VECTOR].set_handler_fn(timer);
    idt[apic::WAKE_VECTOR].set_handler_fn(wake);
    idt[apic::ERROR_VECTOR].set_handler_fn(error);
    idt[apic::SPURIOUS_VECTOR].set_handler_fn(spurious);
}

/// Sets the work every CPU's timer interrupt does (RCU's tick).
pub(crate) fn set_tick_work(work: fn()) {
    TICK_WORK.store(work as usize, Ordering::Release);
}

/// Makes every CPU's timer interrupt call `hook` (None: nothing).
pub(crate) fn set_timer_hook(hook: Option<fn()>) {
    TIMER_HOOK.store(hook.map_or(0, |f| f as usize), Ordering::Release);
}

/// Makes every CPU's timer interrupt call `tick` for the lock algorithm
/// (None: nothing); set once at boot.
pub(crate) fn set_lock_tick(tick: Option<fn()>) {
    LOCK_TICK.store(tick.map_or(0, |f| f as usize), Ordering::Release);
}

interrupt_handler!(timer(IrqKind::Timer, frame, cpu) {
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
    super::watchdog::on_tick(cpu, frame.instruction_pointer.as_u64());
    let hook = TIMER_HOOK.load(Ordering::Acquire);
    if hook != 0 {
        // SAFETY: only `set_timer_hook` stores here, and it stores a `fn()`.
        let hook: fn() = unsafe { core::mem::transmute::<usize, fn()>(hook) };
        hook();
    }
    apic::eoi();
});

interrupt_handler!(wake(IrqKind::Wake, _frame, cpu) {
    // Its only job is to end a `hlt`; the woken loop looks for work itself.
    apic::eoi();
});

interrupt_handler!(error(IrqKind::ApicError, frame, cpu) {
    let esr = apic::error_status();
    apic::eoi();
    panic!(
        "local APIC error, ESR {esr:#x}, at RIP {:#x}",
        frame.instruction_pointer.as_u64()
    );
});

interrupt_handler!(spurious(IrqKind::Spurious, _frame, cpu) {
    // No EOI for spurious interrupts.
});
