//! Guarded kernel stacks: task and AP stacks live in a region of their own,
//! each with unmapped pages below it, so an overflow faults at once instead
//! of writing over whatever lies below.
//!
//! The region is one top-level (PML4) slot, claimed at boot before any AP
//! starts (the APs' temporary page table copies the top level), cut into
//! [`SLOT`]-sized slots: a stack at the top of its slot, the rest unmapped.
//! Frames for stacks and tables come from the boot frame allocator, not the
//! heap. Mappings only go from absent to present: a freed stack keeps its
//! slot and frames on a free list, so no CPU can hold a stale translation
//! and no TLB shootdown is needed (the region keeps its peak); the per-CPU
//! object cache in front (`task::stack_cache`) keeps the spawn path off the
//! region's lock. A fault on a guard page (a page fault, or the double
//! fault it becomes when the CPU cannot push the exception frame) is
//! reported by the exception handlers through [`guard_hit`].

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::arch::hooks::GuardHit;
use crate::mm::frame::FRAME_SIZE;
use crate::mm::{phys_to_virt, with_frames};
use crate::sync::{SpinLockIrqSave, named_spin_lock_irqsave};

/// Virtual space per stack: the stack at the top, the guard below it.
pub(crate) const SLOT: u64 = 128 * 1024;
/// Most bytes a stack may have (the rest of its slot is guard).
pub(crate) const MAX_STACK: u64 = SLOT / 2;

const PRESENT: u64 = 1;
const WRITABLE: u64 = 1 << 1;
const NO_EXECUTE: u64 = 1 << 63;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
/// Bytes one top-level entry covers.
const PML4_SPAN: u64 = 1 << 39;

/// A free stack, linked through its own lowest word.
struct FreeStack {
    next: Option<NonNull<FreeStack>>,
}

struct Region {
    /// Slots handed out so far (the next new slot's number).
    slots: u64,
    /// Free stacks, all of `free_size` bytes (the task stacks' size).
    free: Option<NonNull<FreeStack>>,
    free_size: u64,
}

// SAFETY: the free list's stacks belong to the region, reached only under
// its lock.
unsafe impl Send for Region {}

/// Start of the region (0 until [`init`]).
static BASE: AtomicU64 = AtomicU64::new(0);
/// Bytes of stack memory mapped (statistics).
static MAPPED: AtomicU64 = AtomicU64::new(0);
static REGION: SpinLockIrqSave<Region> = named_spin_lock_irqsave(
    "stack_region",
    Region {
        slots: 0,
        free: None,
        free_size: 0,
    },
);

/// Claims a free top-level slot of the kernel's page table for the region.
/// Called once by the boot CPU, after the frame allocator is global and
/// before any AP starts or any stack is allocated.
pub(crate) fn init() -> Result<(), &'static str> {
    assert_eq!(BASE.load(Ordering::Relaxed), 0, "stack region set up twice");
    let pml4 = phys_to_virt(current_pml4()) as *mut u64;
    // The upper half, from the top: the bootloader maps the kernel and its
    // own areas wherever it found room, so look for an entry it left empty.
    let index = (256..512)
        .rev()
        // SAFETY: the live PML4 is mapped through the physical-memory
        // mapping; reading its entries has no side effect.
        .find(|&i| unsafe { pml4.add(i).read_volatile() } & PRESENT == 0)
        .ok_or("no free top-level page-table slot for the stack region")?;
    let pdpt = zeroed_frame().ok_or("no frame for the stack region's page table")?;
    // SAFETY: the entry was empty and the frame is fresh and zeroed: this
    // adds a mapping of nothing yet, which no CPU can have cached.
    unsafe { pml4.add(index).write_volatile(pdpt | PRESENT | WRITABLE) };
    BASE.store(
        0xffff_0000_0000_0000 | (index as u64) << 39,
        Ordering::Release,
    );
    Ok(())
}

/// Physical address of the live top-level page table.
fn current_pml4() -> u64 {
    x86_64::registers::control::Cr3::read()
        .0
        .start_address()
        .as_u64()
}

/// A zeroed frame from the boot frame allocator.
fn zeroed_frame() -> Option<u64> {
    let frame = with_frames(|f| f.alloc_frame())?;
    // SAFETY: a fresh frame nobody else uses, mapped through the
    // physical-memory mapping.
    unsafe { core::ptr::write_bytes(phys_to_virt(frame), 0, FRAME_SIZE as usize) };
    Some(frame)
}

/// The entry for `va` in the table at physical `table`, at `shift`.
///
/// # Safety
/// `table` is a page table of the region's.
unsafe fn entry(table: u64, va: u64, shift: u32) -> *mut u64 {
    let index = (va >> shift) & 511;
    // SAFETY: per the contract; the index is below 512.
    unsafe { (phys_to_virt(table) as *mut u64).add(index as usize) }
}

/// Maps the frame `pa` at `va`, creating the tables on the way. Under the
/// region lock (tables are only ever added).
fn map_page(va: u64, pa: u64) -> Option<()> {
    // SAFETY: the region's top-level entry and every table below it were
    // made by this file; entries only go from absent to present, under the
    // region lock, so no CPU holds a translation they would contradict.
    unsafe {
        let mut table = *entry(current_pml4(), va, 39) & ADDR_MASK;
        for shift in [30, 21] {
            let e = entry(table, va, shift);
            if *e & PRESENT == 0 {
                let next = zeroed_frame()?;
                e.write_volatile(next | PRESENT | WRITABLE);
            }
            table = *e & ADDR_MASK;
        }
        entry(table, va, 12).write_volatile(pa | PRESENT | WRITABLE | NO_EXECUTE);
    }
    Some(())
}

/// Whether `va` (inside the region) is mapped: the fault handlers ask,
/// which may run while this CPU holds the region lock (the walk takes
/// none).
fn is_mapped(va: u64) -> bool {
    crate::arch::physmap::virt_to_phys_page(va).is_some()
}

/// A stack of `size` bytes (a multiple of the frame size, at most
/// [`MAX_STACK`]) with unmapped guard pages below: its lowest address, or
/// `None` when frames or virtual space run out. The stack's top is the
/// returned address plus `size`.
pub(crate) fn alloc_stack(size: u64) -> Option<NonNull<u8>> {
    assert!(
        size.is_multiple_of(FRAME_SIZE) && size > 0 && size <= MAX_STACK,
        "stack size {size}"
    );
    let base = BASE.load(Ordering::Acquire);
    assert!(base != 0, "stack region used before init");
    let mut r = REGION.lock();
    if r.free_size == size
        && let Some(s) = r.free
    {
        // SAFETY: a free stack of the region, linked through its lowest
        // word, which is mapped.
        r.free = unsafe { s.as_ref().next };
        return Some(s.cast());
    }
    if (r.slots + 1) * SLOT > PML4_SPAN {
        return None;
    }
    // The slot is used up even if mapping fails half-way: a present entry
    // is never overwritten.
    r.slots += 1;
    let bottom = base + r.slots * SLOT - size;
    for page in (0..size).step_by(FRAME_SIZE as usize) {
        // Zeroed, not only for hygiene: the BIOS bootloader ran its code in
        // memory it then reports usable (1-16 MiB), and QEMU's TCG keeps
        // the translations of that code. A stack in such a frame made
        // every store a slow self-modifying-code check (pushes included:
        // ~60x slower tasks, wherever the bump allocator put a stack).
        // Writing the whole frame once drops the stale translations.
        let frame = zeroed_frame()?;
        map_page(bottom + page, frame)?;
        MAPPED.fetch_add(FRAME_SIZE, Ordering::Relaxed);
    }
    NonNull::new(bottom as *mut u8)
}

/// Gives a stack back to the region for the next one of its size.
///
/// # Safety
/// `stack` came from [`alloc_stack`] with this `size`, nothing runs on it
/// or uses it any more, and it is freed once.
pub(crate) unsafe fn free_stack(stack: NonNull<u8>, size: u64) {
    let mut r = REGION.lock();
    // One size class is kept (the task stacks'); the others (AP stacks)
    // are never freed.
    if r.free.is_none() {
        r.free_size = size;
    }
    assert_eq!(
        r.free_size, size,
        "stack of {size} bytes freed to the region"
    );
    let node = stack.cast::<FreeStack>();
    // SAFETY: the stack is ours now, mapped, and large enough for a link.
    unsafe { node.as_ptr().write(FreeStack { next: r.free }) };
    r.free = Some(node);
}

/// Where the region starts (0 before [`init`]).
pub(crate) fn base() -> u64 {
    BASE.load(Ordering::Relaxed)
}

/// Bytes of stack the region has mapped so far.
pub(crate) fn mapped_bytes() -> u64 {
    MAPPED.load(Ordering::Relaxed)
}

/// Whether `addr` lies in the region but on no mapped page, i.e. on the
/// guard below some stack (or in a slot not handed out yet).
pub(crate) fn guard_hit(addr: u64) -> Option<GuardHit> {
    let base = BASE.load(Ordering::Acquire);
    if base == 0 || addr < base || addr - base >= PML4_SPAN || is_mapped(addr) {
        return None;
    }
    let slot_top = base + ((addr - base) / SLOT + 1) * SLOT;
    let mut bottom = (addr & !(FRAME_SIZE - 1)) + FRAME_SIZE;
    while bottom < slot_top && !is_mapped(bottom) {
        bottom += FRAME_SIZE;
    }
    Some(GuardHit {
        addr,
        stack_bottom: bottom,
        stack_top: slot_top,
    })
}

/// The top of the boot CPU's first stack (the bootloader's), or 0.
static BOOT_STACK_TOP: AtomicU64 = AtomicU64::new(0);

/// Records the bootloader's stack: the page boundary at or above `rsp`,
/// read at the kernel's entry.
pub(crate) fn set_boot_stack(rsp: u64) {
    BOOT_STACK_TOP.store(rsp.next_multiple_of(FRAME_SIZE), Ordering::Relaxed);
}

/// The top (exclusive) of the stack `sp` lies on, for an unwinder that
/// must not read past it: the slot's top in the stack region, or the boot
/// stack's top if `sp` lies within the boot stack's size below it. Every
/// byte from `sp` up to the top is mapped (the stack's used part).
pub(crate) fn stack_top(sp: u64) -> Option<u64> {
    let base = BASE.load(Ordering::Acquire);
    if base != 0 && sp >= base && sp - base < PML4_SPAN {
        return Some(base + ((sp - base) / SLOT + 1) * SLOT);
    }
    let boot = BOOT_STACK_TOP.load(Ordering::Relaxed);
    (boot != 0 && sp < boot && boot - sp <= BOOT_STACK_SIZE).then_some(boot)
}

/// The bootloader's stack size (`BOOTLOADER_CONFIG.kernel_stack_size`).
pub(crate) const BOOT_STACK_SIZE: u64 = 256 * 1024;
