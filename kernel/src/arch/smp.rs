//! SMP bring-up and running work on the other CPUs.
//!
//! [`start_aps`] starts the application processors the MADT lists, one at
//! a time, through the real-mode `trampoline`. Each start is an offer that
//! only the AP it was made for can claim, so an AP that wakes late never
//! takes the stack, arguments or CPU index meant for the next one
//! ([`ApBoot`] describes the claim handshake).
//!
//! Once up, each AP runs the idle function the caller of [`start_aps`]
//! passed down (the scheduler's), so arch code never calls up into it.
//! [`kick`] and [`stop_other_cpus`] then reach the other CPUs with NMIs.

use alloc::boxed::Box;
use alloc::vec;
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use x86_64::registers::control::{Cr0, Cr3, Cr4};

use super::acpi::MadtInfo;
use super::apic::{self, Ipi};
use super::percpu::{self, MAX_CPUS};
use super::physmap::{PAGE_SIZE, phys_to_virt};
use super::trampoline::{self, Field};
use super::{gdt, idt, time};

/// How long the boot CPU waits for one AP to report.
pub(crate) const AP_TIMEOUT_MS: u64 = 1000;
/// How long it waits, past that, for an AP that claimed its index but has
/// not finished setting up: the index is the AP's, so it cannot be reused.
const AP_CLAIMED_TIMEOUT_MS: u64 = 10_000;
/// Stack size of each AP's boot (and idle) context.
pub(crate) const AP_STACK_SIZE: usize = 64 * 1024;

/// The memory AP bring-up needs, from the layers above (arch allocates
/// none itself).
pub(crate) struct ApMemory {
    /// A free physical page below 1 MiB (the real-mode trampoline and its
    /// page tables), never given back.
    pub(crate) low_page: fn() -> Option<u64>,
    /// A mapped, guarded stack of `size` bytes (its lowest address), kept
    /// for the kernel's life.
    pub(crate) stack: fn(size: u64) -> Option<core::ptr::NonNull<u8>>,
}

/// One start of one AP: what the AP is to be, and how far it got. A fresh
/// record per start (leaked: a late AP may still read it).
///
/// **The claim handshake.** Each start is an offer: a fresh guarded stack
/// and a fresh `ApBoot` record (the dense CPU index and the APIC id
/// expected), patched into the trampoline, and a claim word set to that
/// APIC id plus one. The AP claims the offer in the trampoline with a
/// compare-and-swap keyed by its own APIC id (from CPUID), then claims the
/// index in Rust by moving the record from Offered to Running; only then
/// does it touch its per-CPU slot. An AP that does not report within
/// [`AP_TIMEOUT_MS`] loses both races: the boot CPU withdraws the claim
/// word and moves the record to Abandoned, sends the AP an INIT (which
/// parks it until a start-up IPI that never comes), and moves on; the
/// abandoned stack is never handed out again, and the index goes to the
/// next AP. A late AP therefore finds either no offer for its APIC id (it
/// halts in the trampoline, touching no stack) or its own abandoned record
/// (it halts on its own stack), so it never takes the stack, arguments or
/// index of the next one. If the AP won the record first, it owns the
/// index, and the boot CPU waits for it (bounded) rather than reuse it.
pub(crate) struct ApBoot {
    index: u32,
    apic_id: u32,
    state: AtomicU32,
}

/// The boot CPU has made the offer; nobody has claimed the index.
const OFFERED: u32 = 0;
/// The AP has claimed the index and is setting itself up.
const RUNNING: u32 = 1;
/// The AP is up (its timer runs, it is about to idle).
const ALIVE: u32 = 2;
/// The boot CPU gave up on this start before the AP claimed the index.
const ABANDONED: u32 = 3;

/// APs turned away in Rust: they claimed an offer the boot CPU had
/// already abandoned.
static REFUSED_LATE: AtomicU32 = AtomicU32::new(0);
/// The APIC id `ap-late` abandoned, plus one (0: none).
static ABANDONED_ON_PURPOSE: AtomicU32 = AtomicU32::new(0);
/// The trampoline's page (0 before `start_aps`).
static TRAMPOLINE: AtomicU64 = AtomicU64::new(0);

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
pub(crate) fn online() -> usize {
    ONLINE.load(Ordering::Acquire)
}

/// APIC id of online CPU `index`.
pub(crate) fn apic_id_of(index: usize) -> u32 {
    APIC_IDS[index].load(Ordering::Relaxed)
}

/// What [`start_aps`] did.
pub(crate) struct StartReport {
    /// CPUs in the MADT (usable entries).
    pub(crate) in_madt: usize,
    /// APIC ids of APs that did not come up in time.
    pub(crate) failed: vec::Vec<u32>,
    /// MADT CPUs beyond `MAX_CPUS`, not started.
    pub(crate) over_limit: usize,
    /// Milliseconds from the first INIT to the last AP online.
    pub(crate) elapsed_ms: u64,
}

/// Brings the boot CPU's own APIC and timer up (index 0).
pub(crate) fn init_boot_cpu(madt: &MadtInfo, timer_hz: u32) {
    apic::init_global(madt.lapic_address);
    apic::init_this_cpu();
    TIMER_HZ.store(timer_hz, Ordering::Relaxed);
    APIC_IDS[0].store(apic::id(), Ordering::Relaxed);
    apic::calibrate_timer();
    apic::start_periodic_timer(timer_hz);
}

/// Starts every AP the MADT lists. Needs the stack region and the global
/// frame allocator (low memory for the trampoline and its page tables).
/// The boot CPU copies the trampoline (see `trampoline`) to a free page
/// below 1 MiB, builds a temporary PML4 below 4 GiB that copies the
/// kernel's PML4 and identity-maps that page, and starts the APs one at a
/// time ([`start_one`]).
/// Each AP, once set up, calls `idle(index)` and never returns: the
/// scheduler passes its idle loop down, so arch code never calls up.
///
/// `late_first_ap` (the `ap-late` test) abandons the first AP right after
/// its start-up IPIs and leaves it running: it wakes while the next AP is
/// being offered, and the handshake must turn it away.
pub(crate) fn start_aps(
    madt: &MadtInfo,
    idle: fn(usize) -> !,
    mem: &ApMemory,
    late_first_ap: bool,
) -> Result<StartReport, &'static str> {
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
    let page = prepare_trampoline(mem)?;
    TRAMPOLINE.store(page, Ordering::Relaxed);
    let started = time::now_ns();
    for (n, &apic_id) in ids.iter().filter(|&&id| id != bsp).enumerate() {
        let index = online();
        if index >= MAX_CPUS {
            report.over_limit += 1;
            continue;
        }
        if start_one(mem, page, index, apic_id, late_first_ap && n == 0) {
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
    // SAFETY: `page` holds the copied trampoline and `offset..offset +
    // width` is the field inside it. An AP may be reading the offer fields
    // meanwhile (a late one), but the claim handshake makes it discard
    // what it read, and the boot CPU patches nothing else after start-up.
    unsafe {
        match width {
            4 => (ptr as *mut u32).write_volatile(value as u32),
            _ => (ptr as *mut u64).write_volatile(value),
        }
    }
}

/// A 4-byte field of the trampoline that APs update with locked
/// instructions.
fn atomic_field(page: u64, field: Field) -> &'static AtomicU32 {
    let (offset, width) = trampoline::field(field);
    assert!(
        width == 4 && offset.is_multiple_of(4),
        "{field:?} is not an aligned u32"
    );
    // SAFETY: an aligned u32 inside the trampoline page, which stays
    // allocated (and is only used this way) for the kernel's life.
    unsafe { &*(phys_to_virt(page + offset as u64) as *const AtomicU32) }
}

/// APs turned away by the claim handshake so far: in the trampoline (no
/// offer for their APIC id) and in Rust (their offer was abandoned).
pub(crate) fn refused_aps() -> (u32, u32) {
    let page = TRAMPOLINE.load(Ordering::Relaxed);
    let in_trampoline = if page == 0 {
        0
    } else {
        atomic_field(page, Field::Refused).load(Ordering::SeqCst)
    };
    (in_trampoline, REFUSED_LATE.load(Ordering::SeqCst))
}

/// The APIC id the `ap-late` test abandoned at start-up, if any.
pub(crate) fn abandoned_on_purpose() -> Option<u32> {
    ABANDONED_ON_PURPOSE.load(Ordering::Relaxed).checked_sub(1)
}

/// Parks the CPU with `apic_id` with an INIT (it waits for a start-up IPI
/// that never comes; NMIs wait with it).
pub(crate) fn park_cpu(apic_id: u32) {
    let sent = apic::send_ipi(apic_id, Ipi::InitAssert).and_then(|_| {
        time::delay_us(10_000);
        apic::send_ipi(apic_id, Ipi::InitDeassert)
    });
    if sent.is_err() {
        log::warn!("smp: APIC did not accept the INIT for APIC id {apic_id}");
    }
}

/// Copies the trampoline below 1 MiB and builds its temporary page tables.
/// Returns the trampoline's physical page address.
fn prepare_trampoline(mem: &ApMemory) -> Result<u64, &'static str> {
    let code = trampoline::code();
    if code.len() > PAGE_SIZE as usize {
        return Err("AP trampoline is larger than a page");
    }
    let low = || (mem.low_page)().ok_or("no free page below 1 MiB for the AP trampoline");
    let page = low()?;
    let (pml4, pdpt, pd, pt) = (low()?, low()?, low()?, low()?);

    // SAFETY: all five frames were just taken from the allocator (nothing
    // else uses them) and are mapped through the physical-memory mapping.
    unsafe {
        core::ptr::copy_nonoverlapping(code.as_ptr(), phys_to_virt(page), code.len());
        for t in [pdpt, pd, pt] {
            core::ptr::write_bytes(phys_to_virt(t), 0, PAGE_SIZE as usize);
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

/// Starts one AP as CPU `index` with the INIT, 10 ms, SIPI, 200 µs, SIPI
/// sequence (a second SIPI only if the first did not wake it), under the
/// claim handshake [`ApBoot`] describes. True if it came up. `abandon` (the `ap-late` test) abandons the record before
/// the start-up IPIs and leaves the AP running unparked: it either claims
/// its own offer and is refused the index, or finds the claim word already
/// keyed for the next AP and is refused in the trampoline.
fn start_one(mem: &ApMemory, page: u64, index: usize, apic_id: u32, abandon: bool) -> bool {
    // The stack lives as long as the kernel (the AP idles on it); if the
    // start fails it is never handed out again, since a late AP may run on
    // it.
    let Some(stack) = (mem.stack)(AP_STACK_SIZE as u64) else {
        log::warn!("smp: no stack for APIC id {apic_id}");
        return false;
    };
    let boot: &'static ApBoot = Box::leak(Box::new(ApBoot {
        index: index as u32,
        apic_id,
        state: AtomicU32::new(OFFERED),
    }));
    let top = stack.as_ptr() as u64 + AP_STACK_SIZE as u64;
    write_field(page, Field::Stack, top);
    write_field(page, Field::Arg, boot as *const ApBoot as u64);
    let claim = atomic_field(page, Field::Claim);
    let key = apic_id.wrapping_add(1);
    claim.store(key, Ordering::SeqCst);
    if abandon {
        boot.state.store(ABANDONED, Ordering::SeqCst);
        ABANDONED_ON_PURPOSE.store(apic_id + 1, Ordering::Relaxed);
    }

    let sipi_page = (page >> 12) as u8;
    let sent = apic::send_ipi(apic_id, Ipi::InitAssert)
        .and_then(|_| {
            time::delay_us(10_000);
            apic::send_ipi(apic_id, Ipi::InitDeassert)
        })
        .and_then(|_| apic::send_ipi(apic_id, Ipi::Startup(sipi_page)));
    if abandon {
        log::info!("smp: APIC id {apic_id} abandoned on purpose (test ap-late)");
        return false;
    }
    if sent.is_err() {
        log::warn!("smp: APIC did not accept the start-up IPIs for APIC id {apic_id}");
    } else {
        time::delay_us(200);
        if boot.state.load(Ordering::Acquire) == OFFERED {
            let _ = apic::send_ipi(apic_id, Ipi::Startup(sipi_page));
        }
        if wait_for_state(boot, AP_TIMEOUT_MS, |s| s == ALIVE) {
            return true;
        }
    }
    // Withdraw the offer; if the AP got past the trampoline, take the
    // index back unless it already claimed it.
    let _ = claim.compare_exchange(key, 0, Ordering::SeqCst, Ordering::SeqCst);
    match boot
        .state
        .compare_exchange(OFFERED, ABANDONED, Ordering::SeqCst, Ordering::SeqCst)
    {
        Ok(_) => {
            log::warn!("smp: CPU with APIC id {apic_id} did not come up within {AP_TIMEOUT_MS} ms");
            park_cpu(apic_id);
            false
        }
        // It claimed the index: it is ours to wait for, not to reuse.
        Err(_) => {
            if wait_for_state(boot, AP_CLAIMED_TIMEOUT_MS, |s| s == ALIVE) {
                return true;
            }
            panic!(
                "smp: CPU with APIC id {apic_id} claimed index {index} but did not finish \
                 setting up within {} ms",
                AP_TIMEOUT_MS + AP_CLAIMED_TIMEOUT_MS
            );
        }
    }
}

/// Waits up to `ms` for `boot`'s state to satisfy `done`.
fn wait_for_state(boot: &ApBoot, ms: u64, done: impl Fn(u32) -> bool) -> bool {
    let deadline = time::now_ns() + ms * 1_000_000;
    loop {
        if done(boot.state.load(Ordering::Acquire)) {
            return true;
        }
        if time::now_ns() >= deadline {
            return false;
        }
        core::hint::spin_loop();
    }
}

/// The Rust entry of an AP, called by the trampoline on its fresh stack
/// once it has claimed the offer for its APIC id.
///
/// The AP sets its GS base (per-CPU slot), GDT/TSS and IDT before it
/// touches its local APIC, so an NMI or exception from then on (the panic
/// path's stop NMI, say) finds a handler and a per-CPU area.
extern "C" fn ap_entry(boot: &'static ApBoot) -> ! {
    if boot
        .state
        .compare_exchange(OFFERED, RUNNING, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        // Too late: the boot CPU abandoned this start (and may have given
        // the index to the next AP). Stay out, on this start's own stack.
        REFUSED_LATE.fetch_add(1, Ordering::SeqCst);
        super::cpu::halt_forever();
    }
    let index = boot.index as usize;
    // SAFETY: the kernel's page table maps everything this AP runs from now
    // on (kernel text, the stack region, the heap); the temporary table
    // mapped the same high-half addresses, so switching is seamless.
    unsafe {
        core::arch::asm!("mov cr3, {}", in(reg) KERNEL_CR3.load(Ordering::Relaxed),
            options(nostack, preserves_flags));
    }
    // SAFETY: index `index` was offered to this CPU (its APIC id matched
    // the claim word) and this CPU won it from the boot CPU (the record's
    // Offered -> Running transition), so nobody else uses it; this is the
    // first thing that needs it.
    unsafe {
        percpu::init_this_cpu(index, boot.apic_id);
        gdt::init_this_cpu(index);
    }
    idt::load();
    apic::init_this_cpu();
    assert_eq!(
        apic::id(),
        boot.apic_id,
        "AP claimed the offer for another APIC id"
    );
    apic::start_periodic_timer(TIMER_HZ.load(Ordering::Relaxed));
    boot.state.store(ALIVE, Ordering::Release);
    // After ALIVE, so the boot CPU's start timeout never waits on it; the
    // boot CPU waits for every CPU's before anything is measured.
    super::softtlb::grow_this_cpu(index);
    let idle = AP_IDLE.load(Ordering::Acquire);
    // SAFETY: `start_aps` stored a `fn(usize) -> !` before starting any AP
    // (the Release/Acquire pair orders it before this load).
    let idle: fn(usize) -> ! = unsafe { core::mem::transmute(idle) };
    idle(index)
}

/// Kicks online CPU `index` out of a lock wait's halt: an NMI, the only
/// thing that ends a `hlt` with IRQs off (see `cpu::halt_unless`).
pub(crate) fn kick(index: usize) {
    if index < online() {
        percpu::cpu(index).note_kick();
        let _ = apic::send_ipi(apic_id_of(index), apic::Ipi::Nmi);
    }
}

/// Stops every other CPU (the panic path): NMI to all but this one.
pub(crate) fn stop_other_cpus() {
    if online() > 1 {
        let _ = apic::send_nmi_all_but_self();
    }
}
