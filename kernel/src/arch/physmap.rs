//! The bootloader's mapping of all physical memory at one offset: how arch
//! (and mm above it) reach a physical address.

use core::sync::atomic::{AtomicU64, Ordering};

/// The size of a page (and of a physical frame).
pub(crate) const PAGE_SIZE: u64 = 4096;

/// Virtual address at which the bootloader mapped all physical memory.
static PHYS_OFFSET: AtomicU64 = AtomicU64::new(0);

/// Records the physical-memory mapping's offset. Called once at boot.
pub(crate) fn set_phys_offset(offset: u64) {
    PHYS_OFFSET.store(offset, Ordering::Relaxed);
}

/// The virtual address of physical address `phys` in the physical-memory
/// mapping.
pub(crate) fn phys_to_virt(phys: u64) -> *mut u8 {
    (PHYS_OFFSET.load(Ordering::Relaxed) + phys) as *mut u8
}

const PRESENT: u64 = 1;
/// A page-directory entry that maps a 2 MiB or 1 GiB page itself.
const HUGE: u64 = 1 << 7;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// The physical address of the page holding `va`, by walking the live page
/// tables (2 MiB and 1 GiB pages included); `None` if unmapped. Takes no
/// lock, so fault handlers may call it.
pub(crate) fn virt_to_phys_page(va: u64) -> Option<u64> {
    let mut table = x86_64::registers::control::Cr3::read()
        .0
        .start_address()
        .as_u64();
    for shift in [39u32, 30, 21, 12] {
        let index = ((va >> shift) & 511) as usize;
        // SAFETY: `table` is a page table of the live hierarchy (CR3's, then
        // one a present entry names; the kernel never frees a table),
        // reached through the physical-memory mapping; the index is below
        // 512. Read only, and an entry written meanwhile is read whole
        // (aligned 8-byte stores).
        let e = unsafe {
            (phys_to_virt(table) as *const u64)
                .add(index)
                .read_volatile()
        };
        if e & PRESENT == 0 {
            return None;
        }
        if shift == 12 || (shift != 39 && e & HUGE != 0) {
            let size = 1u64 << shift;
            return Some((e & ADDR_MASK & !(size - 1)) + (va & (size - 1) & !(PAGE_SIZE - 1)));
        }
        table = e & ADDR_MASK;
    }
    None
}
