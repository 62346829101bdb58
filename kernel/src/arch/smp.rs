//! SMP bring-up and running work on the other CPUs.
//!
//! **Start-up.** The boot CPU copies the trampoline (see `trampoline`) to a
//! free page below 1 MiB, builds a temporary PML4 below 4 GiB that copies the
//! kernel's PML4 and identity-maps that page, and starts the application
//! processors one at a time with the INIT, 10 ms, SIPI, 200 µs, SIPI sequence
//! (a second SIPI only if the first did not wake it). Each AP gets a fresh
//! stack and a pointer to its [`ApArgs`]: its dense CPU index and the APIC id
//! it is expected to have. An AP that does not report within
//! [`AP_TIMEOUT_MS`] is reported and skipped; its index is reused for the
//! next AP, and should the slow AP wake up later it finds that its APIC id
//! does not match the arguments and halts for good, so indices stay dense
//! and unique.
//!
//! Once up, each AP runs the idle function the caller of [`start_aps`]
//! passed down (the scheduler's), so arch code never calls up into it.

use alloc::vec;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use x86_64::registers::control::{Cr0, Cr3, Cr4};

use super::acpi::MadtInfo;
use super::apic::{self, Ipi};
use super::percpu::{self, MAX_CPUS};
use super::trampoline::{self, Field};
use super::{gdt, idt, time};
use crate::mm::frame::FRAME_SIZE;
use crate::mm::{phys_to_virt, stack, with_frames};

/// How long the boot CPU waits for one AP to report.
pub const AP_TIMEOUT_MS: u64 = 1000;
/// Stack size of each AP's boot (and idle) context.
pub const AP_STACK_SIZE: usize = 64 * 1024;

/// Arguments handed to an AP through the trampoline.
pub struct ApArgs {
    index: AtomicU32,
    apic_id: AtomicU32,
    alive: AtomicBool,
}

static AP_ARGS: [ApArgs; MAX_CPUS] = [const {
    ApArgs {
        index: AtomicU32::new(0),
        apic_id: AtomicU32::new(0),
        alive: AtomicBool::new(false),
    }
}; MAX_CPUS];

/// CPUs online (dense indices `0..ONLINE`).
static ONLINE: AtomicUsize = AtomicUsize::new(1);
/// APIC id of each online CPU, by index.
static APIC_IDS: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
/// The kernel's own CR3, which APs switch to first thing.
static KERNEL_CR3: AtomicU64 = AtomicU64::new(0);

/// What each AP runs once it is up (`start_aps`'s `idle`).
static AP_IDLE: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());
/// Timer rate every CPU programs.
static TIMER_HZ: AtomicU32 = AtomicU32::new(1000);

/// Number of CPUs online.
pub fn online() -> usize {
    ONLINE.load(Ordering::Acquire)
}

/// APIC id of online CPU `index`.
pub fn apic_id_of(index: usize) -> u32 {
    APIC_IDS[index].load(Ordering::Relaxed)
}

/// What [`start_aps`] did.
pub struct StartReport {
    /// CPUs in the MADT (usable entries).
    pub in_madt: usize,
    /// APIC ids of APs that did not come up in time.
    pub failed: vec::Vec<u32>,
    /// MADT CPUs beyond `MAX_CPUS`, not started.
    pub over_limit: usize,
    /// Milliseconds from the first INIT to the last AP online.
    pub elapsed_ms: u64,
}

/// Brings the boot CPU's own APIC and timer up (index 0).
pub fn init_boot_cpu(madt: &MadtInfo, timer_hz: u32) {
    apic::init_global(madt.lapic_address);
    apic::init_this_cpu();
    TIMER_HZ.store(timer_hz, Ordering::Relaxed);
    APIC_IDS[0].store(apic::id(), Ordering::Relaxed);
    apic::calibrate_timer();
    apic::start_periodic_timer(timer_hz);
}

/// Starts every AP the MADT lists. Needs the stack region and the global
/// frame allocator (low memory for the trampoline and its page tables).
/// Each AP, once set up, calls `idle(index)` and never returns: the
/// scheduler passes its idle loop down, so arch code never calls up.
pub fn start_aps(madt: &MadtInfo, idle: fn(usize) -> !) -> Result<StartReport, &'static str> {
    AP_IDLE.store(idle as *mut (), Ordering::Release);
    let bsp = apic::id();
    let ids = madt.apic_ids.as_slice();
    let mut report = StartReport {
        in_madt: ids.len() + madt.apic_ids.dropped,
        failed: vec::Vec::new(),
        over_limit: madt.apic_ids.dropped,
        elapsed_ms: 0,
    };
    if ids.iter().all(|&id| id == bsp) {
        return Ok(report);
    }
    let page = prepare_trampoline()?;
    let started = time::now_ns();
    for &apic_id in ids.iter().filter(|&&id| id != bsp) {
        let index = online();
        if index >= MAX_CPUS {
            report.over_limit += 1;
            continue;
        }
        if start_one(page, index, apic_id) {
            APIC_IDS[index].store(apic_id, Ordering::Relaxed);
            ONLINE.store(index + 1, Ordering::Release);
        } else {
            report.failed.push(apic_id);
        }
    }
    report.elapsed_ms = (time::now_ns() - started) / 1_000_000;
    Ok(report)
}

fn write_field(page: u64, field: Field, value: u64) {
    let (offset, width) = trampoline::field(field);
    let ptr = phys_to_virt(page + offset as u64);
    // SAFETY: `page` holds the copied trampoline, which nobody runs while
    // the boot CPU patches it (APs start one at a time, after patching);
    // `offset..offset + width` is the field inside it.
    unsafe {
        match width {
            4 => (ptr as *mut u32).write_unaligned(value as u32),
            _ => (ptr as *mut u64).write_unaligned(value),
        }
    }
}

/// Copies the trampoline below 1 MiB and builds its temporary page tables.
/// Returns the trampoline's physical page address.
fn prepare_trampoline() -> Result<u64, &'static str> {
    let code = trampoline::code();
    if code.len() > FRAME_SIZE as usize {
        return Err("AP trampoline is larger than a page");
    }
    let low = || {
        with_frames(|f| f.alloc_low_frame()).ok_or("no free page below 1 MiB for the AP trampoline")
    };
    let page = low()?;
    let (pml4, pdpt, pd, pt) = (low()?, low()?, low()?, low()?);

    // SAFETY: all five frames were just taken from the allocator (nothing
    // else uses them) and are mapped through the physical-memory mapping.
    unsafe {
        core::ptr::copy_nonoverlapping(code.as_ptr(), phys_to_virt(page), code.len());
        for t in [pdpt, pd, pt] {
            core::ptr::write_bytes(phys_to_virt(t), 0, FRAME_SIZE as usize);
        }
        let (kernel_pml4, _) = Cr3::read();
        let kernel_pml4 = kernel_pml4.start_address().as_u64();
        KERNEL_CR3.store(
            Cr3::read_raw().0.start_address().as_u64(),
            Ordering::Relaxed,
        );
        core::ptr::copy_nonoverlapping(
            phys_to_virt(kernel_pml4) as *const u64,
            phys_to_virt(pml4) as *mut u64,
            512,
        );
        // Identity-map the trampoline page: PML4[0] -> PDPT[0] -> PD[0] ->
        // PT[page >> 12]. Present + writable, executable (no NX bit).
        const PRESENT_WRITABLE: u64 = 0b11;
        let entry = |table: u64, index: u64, value: u64| {
            (phys_to_virt(table) as *mut u64)
                .add(index as usize)
                .write(value | PRESENT_WRITABLE)
        };
        entry(pml4, 0, pdpt);
        entry(pdpt, 0, pd);
        entry(pd, 0, pt);
        entry(pt, page >> 12, page);
    }

    write_field(
        page,
        Field::GdtrBase,
        page + trampoline::gdt_offset() as u64,
    );
    write_field(
        page,
        Field::FarOffset,
        page + trampoline::long_mode_offset() as u64,
    );
    // CR0 with caching on, protection and paging; CR4 as the boot CPU's
    // minus PCIDE (it cannot be set outside long mode).
    write_field(page, Field::Cr0, Cr0::read_raw());
    write_field(page, Field::Cr3, pml4);
    write_field(page, Field::Cr4, Cr4::read_raw() & !(1 << 17));
    write_field(page, Field::Entry, ap_entry as *const () as u64);
    Ok(page)
}

/// Starts one AP as CPU `index`. True if it reported in time.
fn start_one(page: u64, index: usize, apic_id: u32) -> bool {
    let args = &AP_ARGS[index];
    args.index.store(index as u32, Ordering::Relaxed);
    args.apic_id.store(apic_id, Ordering::Relaxed);
    args.alive.store(false, Ordering::Release);
    // The stack lives as long as the kernel (the AP idles on it).
    let Some(stack) = stack::alloc_stack(AP_STACK_SIZE as u64) else {
        log::warn!("smp: no stack for APIC id {apic_id}");
        return false;
    };
    let top = stack.as_ptr() as u64 + AP_STACK_SIZE as u64;
    write_field(page, Field::Stack, top);
    write_field(page, Field::Arg, args as *const ApArgs as u64);

    let sipi_page = (page >> 12) as u8;
    let sent = apic::send_ipi(apic_id, Ipi::InitAssert)
        .and_then(|_| {
            time::delay_us(10_000);
            apic::send_ipi(apic_id, Ipi::InitDeassert)
        })
        .and_then(|_| apic::send_ipi(apic_id, Ipi::Startup(sipi_page)));
    if sent.is_err() {
        log::warn!("smp: APIC did not accept the start-up IPIs for APIC id {apic_id}");
        return false;
    }
    time::delay_us(200);
    if !args.alive.load(Ordering::Acquire) {
        let _ = apic::send_ipi(apic_id, Ipi::Startup(sipi_page));
    }
    let deadline = time::now_ns() + AP_TIMEOUT_MS * 1_000_000;
    while time::now_ns() < deadline {
        if args.alive.load(Ordering::Acquire) {
            return true;
        }
        core::hint::spin_loop();
    }
    log::warn!("smp: CPU with APIC id {apic_id} did not come up within {AP_TIMEOUT_MS} ms");
    false
}

/// The Rust entry of an AP, called by the trampoline on its fresh stack.
extern "C" fn ap_entry(args: &'static ApArgs) -> ! {
    // SAFETY: the kernel's page table maps everything this AP runs from now
    // on (kernel text, heap stack); the temporary table mapped the same
    // high-half addresses, so switching is seamless.
    unsafe {
        core::arch::asm!("mov cr3, {}", in(reg) KERNEL_CR3.load(Ordering::Relaxed),
            options(nostack, preserves_flags));
    }
    apic::init_this_cpu();
    if apic::id() != args.apic_id.load(Ordering::Relaxed) {
        // A late AP whose slot was given to the next one: stay out.
        super::cpu::halt_forever();
    }
    let index = args.index.load(Ordering::Relaxed) as usize;
    // SAFETY: index `index` was reserved for this CPU by the boot CPU and is
    // used by nobody else; this is the first thing that needs it.
    unsafe {
        percpu::init_this_cpu(index, apic::id());
        gdt::init_this_cpu(index);
    }
    idt::load();
    apic::start_periodic_timer(TIMER_HZ.load(Ordering::Relaxed));
    args.alive.store(true, Ordering::Release);
    let idle = AP_IDLE.load(Ordering::Acquire);
    // SAFETY: `start_aps` stored a `fn(usize) -> !` before starting any AP
    // (the Release/Acquire pair orders it before this load).
    let idle: fn(usize) -> ! = unsafe { core::mem::transmute(idle) };
    idle(index)
}

/// Stops every other CPU (the panic path): NMI to all but this one.
pub fn stop_other_cpus() {
    if online() > 1 {
        let _ = apic::send_nmi_all_but_self();
    }
}
