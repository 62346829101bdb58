//! Memory: the physical frame allocator (portable) and the kernel heap.

pub mod cache;
pub mod frame;
#[cfg(target_os = "none")]
pub mod heap;

use core::sync::atomic::{AtomicU64, Ordering};

/// Virtual address at which the bootloader mapped all physical memory.
static PHYS_OFFSET: AtomicU64 = AtomicU64::new(0);

/// Records the physical-memory mapping's offset. Called once at boot.
pub fn set_phys_offset(offset: u64) {
    PHYS_OFFSET.store(offset, Ordering::Relaxed);
}

/// The virtual address of physical address `phys` in the physical-memory
/// mapping.
pub fn phys_to_virt(phys: u64) -> *mut u8 {
    (PHYS_OFFSET.load(Ordering::Relaxed) + phys) as *mut u8
}
