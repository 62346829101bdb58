//! Context switch: save the callee-saved registers of one task on its stack,
//! store its stack pointer, load the next task's, and restore its registers.
//!
//! Everything caller-saved is already saved by the compiler around the call,
//! so six pushes and a stack swap are the whole switch. A new task's stack is
//! built to look like it was switched out just before `pidlab_task_start`,
//! with its entry function in r12 and argument in r13; `pidlab_task_start`
//! calls the entry, which never returns.

use core::arch::global_asm;

global_asm!(
    r#"
    .section .text.pidlab_switch, "ax"
    .global pidlab_switch_context
pidlab_switch_context:
    push rbp
    push rbx
    push r12
    push r13
    push r14
    push r15
    mov [rdi], rsp
    mov rsp, rsi
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    ret

    .global pidlab_task_start
pidlab_task_start:
    mov rdi, r13
    call r12
    ud2
    .text
"#
);

unsafe extern "C" {
    fn pidlab_switch_context(prev_sp: *mut u64, next_sp: u64);
    fn pidlab_task_start();
}

/// Switches from the running context to the one saved at `next_sp`,
/// storing the current stack pointer at `prev_sp`. Returns when something
/// switches back.
///
/// # Safety
/// Interrupts are off; `next_sp` is a stack pointer saved by this function
/// or built by [`init_stack`], of a stack that stays valid while in use;
/// `prev_sp` is where the running task's saved pointer lives.
#[inline]
pub(crate) unsafe fn switch_context(prev_sp: *mut u64, next_sp: u64) {
    // SAFETY: per the contract.
    unsafe { pidlab_switch_context(prev_sp, next_sp) }
}

/// Prepares a fresh stack so that switching to it calls `entry(arg)`.
/// Returns the stack pointer to switch to.
///
/// # Safety
/// `stack_top` is the 16-aligned top of a writable stack of at least 128
/// bytes that nothing else uses.
pub(crate) unsafe fn init_stack(stack_top: u64, entry: extern "C" fn(u64) -> !, arg: u64) -> u64 {
    // After `ret` pops the return address, rsp must be 16-aligned so that
    // `call r12` leaves the callee with rsp = 8 mod 16, as the ABI wants.
    let ret_slot = stack_top - 24;
    let frame = [
        0,                                     // r15
        0,                                     // r14
        arg,                                   // r13
        entry as *const () as u64,             // r12
        0,                                     // rbx
        0,                                     // rbp
        pidlab_task_start as *const () as u64, // return address
    ];
    let sp = ret_slot - 6 * 8;
    // SAFETY: the seven words lie within the stack (below its top).
    unsafe { core::ptr::copy_nonoverlapping(frame.as_ptr(), sp as *mut u64, frame.len()) };
    sp
}
