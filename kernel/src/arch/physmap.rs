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
