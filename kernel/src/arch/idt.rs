//! The interrupt descriptor table, shared by every CPU.
//!
//! Every vector has a handler from the start: the 32 CPU exceptions report
//! their vector, name, error code, RIP and (for page faults) CR2, and fail
//! the run through the panic path (a fault on a stack guard page, including
//! the double fault an overflow turns into, as `stack overflow on CPU n in
//! task NAME`); the local APIC's vectors go to `irq`; any
//! other vector that fires is reported as unexpected. Every handler enters
//! through `irq::irq_entry`. The double fault runs
//! on its own IST stack (see `gdt`). An NMI while a panic is in progress is
//! the "stop" signal from the panicking CPU: this CPU halts for good; one
//! sent by the hard-lockup detector makes this CPU report where it is
//! stuck (`watchdog`); any other NMI is a lock kick (`cpu::halt_unless`).

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

use x86_64::registers::control::Cr2;
use x86_64::set_general_handler;
use x86_64::structures::idt::{InterruptDescriptorTable, InterruptStackFrame};

use super::gdt::DOUBLE_FAULT_IST_INDEX;
use super::hooks;
use super::irq::{IrqKind, irq_entry};

struct Idt(UnsafeCell<InterruptDescriptorTable>);

// SAFETY: the table is written only by the boot CPU in `init`, before any CPU
// loads it (`BUILT` orders the two); afterwards it is only read.
unsafe impl Sync for Idt {}

static IDT: Idt = Idt(UnsafeCell::new(InterruptDescriptorTable::new()));
static BUILT: AtomicBool = AtomicBool::new(false);

const EXCEPTION_NAMES: [&str; 32] = [
    "#DE divide error",
    "#DB debug",
    "NMI",
    "#BP breakpoint",
    "#OF overflow",
    "#BR bound range exceeded",
    "#UD invalid opcode",
    "#NM device not available",
    "#DF double fault",
    "coprocessor segment overrun",
    "#TS invalid TSS",
    "#NP segment not present",
    "#SS stack-segment fault",
    "#GP general protection fault",
    "#PF page fault",
    "reserved (15)",
    "#MF x87 floating-point error",
    "#AC alignment check",
    "#MC machine check",
    "#XM SIMD floating-point error",
    "#VE virtualization exception",
    "#CP control protection",
    "reserved (22)",
    "reserved (23)",
    "reserved (24)",
    "reserved (25)",
    "reserved (26)",
    "reserved (27)",
    "#HV hypervisor injection",
    "#VC VMM communication",
    "#SX security exception",
    "reserved (31)",
];

/// Builds the table and loads it on the boot CPU. Called once.
pub(crate) fn init() {
    assert!(!BUILT.load(Ordering::Relaxed), "IDT built twice");
    // SAFETY: only the boot CPU runs this, once, before any CPU loads the
    // table, so nobody reads it while we write.
    let idt = unsafe { &mut *IDT.0.get() };
    set_general_handler!(idt, general_handler);
    idt.non_maskable_interrupt.set_handler_fn(nmi_handler);
    // SAFETY: the IST index names the double-fault stack every CPU's TSS
    // sets up in `gdt::init_this_cpu`.
    unsafe {
        idt.double_fault
            .set_handler_fn(double_fault_handler)
            .set_stack_index(DOUBLE_FAULT_IST_INDEX);
    }
    super::irq::install(idt);
    BUILT.store(true, Ordering::Release);
    load();
}

/// Loads the shared table on this CPU.
pub(crate) fn load() {
    assert!(
        BUILT.load(Ordering::Acquire),
        "IDT loaded before it was built"
    );
    // SAFETY: the table is complete and never written again, so a shared
    // 'static reference is sound.
    let idt: &'static InterruptDescriptorTable = unsafe { &*IDT.0.get() };
    idt.load();
}

/// Panics naming the CPU and task if the fault address or the stack
/// pointer lies on a stack guard.
fn stack_overflow_check(cr2: u64, rsp: u64) {
    let Some(hit) = hooks::stack_guard(cr2).or_else(|| hooks::stack_guard(rsp)) else {
        return;
    };
    let cpu = super::percpu::cpu_index();
    panic!(
        "stack overflow on CPU {cpu} in task {}: RSP {rsp:#x}, fault at {:#x} on the guard \
         below the stack {:#x}-{:#x}",
        hooks::task_name(cpu as usize).unwrap_or("?"),
        hit.addr,
        hit.stack_bottom,
        hit.stack_top
    );
}

fn general_handler(frame: InterruptStackFrame, vector: u8, error_code: Option<u64>) {
    irq_entry(IrqKind::Exception, |_| exception(frame, vector, error_code))
}

fn exception(frame: InterruptStackFrame, vector: u8, error_code: Option<u64>) {
    let rip = frame.instruction_pointer.as_u64();
    if vector >= 32 {
        panic!("unexpected interrupt: vector {vector} at RIP {rip:#x}");
    }
    let name = EXCEPTION_NAMES[vector as usize];
    let code = error_code.unwrap_or(0);
    if vector == 14 {
        stack_overflow_check(Cr2::read_raw(), frame.stack_pointer.as_u64());
        panic!(
            "CPU exception {name} (vector {vector}), error code {code:#x}, \
             RIP {rip:#x}, CR2 {:#x}, RSP {:#x}",
            Cr2::read_raw(),
            frame.stack_pointer.as_u64()
        );
    }
    panic!(
        "CPU exception {name} (vector {vector}), error code {code:#x}, RIP {rip:#x}, RSP {:#x}",
        frame.stack_pointer.as_u64()
    );
}

/// An NMI is the panic's stop signal, the hard-lockup detector's request
/// for a report, a lock kick, or the profiler's sample (`hpet`): a kick
/// (or sample) that lands in the check-and-halt window skips the halt
/// (`cpu::halt_unless`; the waiter looks again). Neither takes a lock or
/// prints anything.
extern "x86-interrupt" fn nmi_handler(mut frame: InterruptStackFrame) {
    // The interrupted code's frame pointer: the kernel is built with frame
    // pointers, so this handler's prologue pushed it where RBP now points.
    let interrupted_fp: u64;
    // SAFETY: reads the word RBP points at, this handler's saved RBP (its
    // own frame, on the NMI stack); nothing is written.
    unsafe {
        core::arch::asm!(
            "mov {}, [rbp]",
            out(reg) interrupted_fp,
            options(nostack, readonly, preserves_flags)
        )
    };
    irq_entry(IrqKind::Nmi, |cpu| {
        if super::panic::in_progress() {
            super::cpu::halt_forever();
        }
        let rip = frame.instruction_pointer.as_u64();
        super::watchdog::on_nmi(rip);
        // A kick's NMI is no sample (it lands where the CPU halted).
        if !cpu.take_kick() && super::hpet::sampling() {
            hooks::profile_nmi(rip, frame.stack_pointer.as_u64(), interrupted_fp);
        }
        if let Some(resume) = super::cpu::skip_halt_window(rip) {
            // SAFETY: `resume` is the instruction right after the window's
            // `hlt`, in the same function, with the same stack and registers
            // the interrupted code expects there.
            unsafe {
                frame
                    .as_mut()
                    .update(|f| f.instruction_pointer = x86_64::VirtAddr::new(resume));
            }
        }
    })
}

extern "x86-interrupt" fn double_fault_handler(frame: InterruptStackFrame, code: u64) -> ! {
    irq_entry(IrqKind::Exception, |_| double_fault(frame, code))
}

fn double_fault(frame: InterruptStackFrame, code: u64) -> ! {
    // A push onto a guard page (the CPU delivering the page fault of an
    // overflow on the overflowed stack) ends here, on the IST stack.
    stack_overflow_check(Cr2::read_raw(), frame.stack_pointer.as_u64());
    panic!(
        "CPU exception #DF double fault (vector 8), error code {code:#x}, RIP {:#x}, RSP {:#x} \
         (kernel stack overflow?)",
        frame.instruction_pointer.as_u64(),
        frame.stack_pointer.as_u64()
    );
}
