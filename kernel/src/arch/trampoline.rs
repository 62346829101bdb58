//! The AP start-up trampoline: real mode to long mode in one page.
//!
//! An AP leaves reset in real mode and, on the start-up IPI, executes at
//! physical `page * 4096` with `CS = page << 8, IP = 0`. The code here is
//! assembled into the kernel image, copied to a free page below 1 MiB at
//! run time, and patched there (the `pidlab_tr_*` data fields, located by
//! [`field`]). It takes the AP to long mode, claims the start-up offer the
//! boot CPU made for it, and calls the offered Rust entry on the offered
//! stack (`smp` makes the offers and copies the page).
//!
//! All addressing is relative to the page (DS = CS in real mode,
//! RIP-relative in long mode), so the code runs wherever it is copied.

use core::arch::global_asm;

// The trampoline, in order:
//
// 1. loads its own three-entry GDT (null, 64-bit code, data);
// 2. sets CR4 (PAE and the boot CPU's other bits) and CR3 to a temporary
//    PML4 below 4 GiB, which copies every kernel PML4 entry and identity-maps
//    this page, so the code keeps running once paging is on;
// 3. sets EFER.LME and EFER.NXE (the kernel's page tables use NX; without
//    NXE those entries would be reserved-bit faults);
// 4. writes CR0 with PE and PG at once, which enters long mode directly
//    (compatibility submode), then far-jumps into the 64-bit code segment;
// 5. in 64-bit mode loads the data segments, reads the offered stack,
//    argument and entry into registers, and claims the offer: a `lock
//    cmpxchg` of the claim word from its own initial APIC id plus one (from
//    CPUID, so no APIC access yet) to 0. Only the AP the offer was made for
//    can win, and only while the boot CPU has not withdrawn it; the loser
//    counts itself in the refused word and halts without touching any
//    stack. The winner loads the stack and calls the Rust entry with its
//    argument, both high-half kernel addresses that the temporary PML4 maps
//    like the kernel's. The Rust side then switches to the kernel's CR3.
//
// The offer's fields are read before the claim: the boot CPU rewrites them
// only after the claim word says the offer was taken or withdrawn, so what
// a winner read is its own offer, and a loser's reads are never used.
global_asm!(
    r#"
    .section .text.pidlab_trampoline, "ax"
    .global pidlab_tr_start
    .global pidlab_tr_end
    .global pidlab_tr_gdtr_base
    .global pidlab_tr_gdt
    .global pidlab_tr_far_offset
    .global pidlab_tr_long
    .global pidlab_tr_cr0
    .global pidlab_tr_cr3
    .global pidlab_tr_cr4
    .global pidlab_tr_stack
    .global pidlab_tr_arg
    .global pidlab_tr_entry
    .global pidlab_tr_claim
    .global pidlab_tr_refused

    .code16
pidlab_tr_start:
    cli
    cld
    movw %cs, %ax
    movw %ax, %ds
    lgdtl (pidlab_tr_gdtr - pidlab_tr_start)
    movl (pidlab_tr_cr4 - pidlab_tr_start), %eax
    movl %eax, %cr4
    movl (pidlab_tr_cr3 - pidlab_tr_start), %eax
    movl %eax, %cr3
    movl $0xc0000080, %ecx
    rdmsr
    orl $0x900, %eax
    wrmsr
    movl (pidlab_tr_cr0 - pidlab_tr_start), %eax
    movl %eax, %cr0
    ljmpl *(pidlab_tr_far - pidlab_tr_start)

    .code64
pidlab_tr_long:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    movq pidlab_tr_stack(%rip), %r8
    movq pidlab_tr_arg(%rip), %r9
    movq pidlab_tr_entry(%rip), %r10
    movl $1, %eax
    cpuid
    shrl $24, %ebx
    leal 1(%rbx), %eax
    xorl %ecx, %ecx
    lock cmpxchgl %ecx, pidlab_tr_claim(%rip)
    jne 2f
    movq %r8, %rsp
    movq %r9, %rdi
    callq *%r10
1:
    cli
    hlt
    jmp 1b
2:
    lock incl pidlab_tr_refused(%rip)
    jmp 1b

    .balign 16
pidlab_tr_gdt:
    .quad 0
    .quad 0x00af9a000000ffff
    .quad 0x00cf92000000ffff
pidlab_tr_gdtr:
    .word 23
pidlab_tr_gdtr_base:
    .long 0
    .balign 8
pidlab_tr_far:
pidlab_tr_far_offset:
    .long 0
    .word 0x08
    .balign 8
pidlab_tr_cr0:
    .long 0
pidlab_tr_cr3:
    .long 0
pidlab_tr_cr4:
    .long 0
    .balign 8
pidlab_tr_stack:
    .quad 0
pidlab_tr_arg:
    .quad 0
pidlab_tr_entry:
    .quad 0
    .balign 4
pidlab_tr_claim:
    .long 0
pidlab_tr_refused:
    .long 0
pidlab_tr_end:
    .code64
    .text
"#,
    options(att_syntax)
);

unsafe extern "C" {
    static pidlab_tr_start: u8;
    static pidlab_tr_end: u8;
    static pidlab_tr_gdt: u8;
    static pidlab_tr_gdtr_base: u8;
    static pidlab_tr_far_offset: u8;
    static pidlab_tr_long: u8;
    static pidlab_tr_cr0: u8;
    static pidlab_tr_cr3: u8;
    static pidlab_tr_cr4: u8;
    static pidlab_tr_stack: u8;
    static pidlab_tr_arg: u8;
    static pidlab_tr_entry: u8;
    static pidlab_tr_claim: u8;
    static pidlab_tr_refused: u8;
}

/// A field of the trampoline to patch after copying.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Field {
    GdtrBase,
    FarOffset,
    Cr0,
    Cr3,
    Cr4,
    Stack,
    Arg,
    Entry,
    /// The claim word: the APIC id the offer is for, plus one (0: none).
    Claim,
    /// APs that found no offer for them.
    Refused,
}

fn start() -> usize {
    &raw const pidlab_tr_start as usize
}

/// The trampoline's bytes, as assembled into the kernel.
pub(crate) fn code() -> &'static [u8] {
    let len = &raw const pidlab_tr_end as usize - start();
    // SAFETY: the two symbols delimit the trampoline in the kernel's text,
    // which is mapped and never written.
    unsafe { core::slice::from_raw_parts(start() as *const u8, len) }
}

/// Offset of the GDT within the trampoline.
pub(crate) fn gdt_offset() -> usize {
    &raw const pidlab_tr_gdt as usize - start()
}

/// Offset of the 64-bit entry within the trampoline.
pub(crate) fn long_mode_offset() -> usize {
    &raw const pidlab_tr_long as usize - start()
}

/// Offset and width in bytes of `field` within the trampoline.
pub(crate) fn field(field: Field) -> (usize, usize) {
    let (sym, width) = match field {
        Field::GdtrBase => (&raw const pidlab_tr_gdtr_base, 4),
        Field::FarOffset => (&raw const pidlab_tr_far_offset, 4),
        Field::Cr0 => (&raw const pidlab_tr_cr0, 4),
        Field::Cr3 => (&raw const pidlab_tr_cr3, 4),
        Field::Cr4 => (&raw const pidlab_tr_cr4, 4),
        Field::Stack => (&raw const pidlab_tr_stack, 8),
        Field::Arg => (&raw const pidlab_tr_arg, 8),
        Field::Entry => (&raw const pidlab_tr_entry, 8),
        Field::Claim => (&raw const pidlab_tr_claim, 4),
        Field::Refused => (&raw const pidlab_tr_refused, 4),
    };
    (sym as usize - start(), width)
}
