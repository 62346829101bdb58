//! Memory: the physical frame allocator (portable) and the kernel heap.

pub(crate) mod cache;
pub(crate) mod frame;
#[cfg(target_os = "none")]
pub(crate) mod heap;
#[cfg(target_os = "none")]
pub(crate) mod stack;

use core::sync::atomic::{AtomicU64, Ordering};

use crate::sync::{SpinLockIrqSave, named_spin_lock_irqsave};
use frame::FrameAllocator;

/// The frame allocator once boot has taken the heap out of it: the stack
/// region and the AP trampoline take their frames here.
static FRAMES: SpinLockIrqSave<Option<FrameAllocator>> = named_spin_lock_irqsave("frames", None);

/// Hands the boot frame allocator over for the rest of the kernel's life.
pub(crate) fn install_frames(frames: FrameAllocator) {
    *FRAMES.lock() = Some(frames);
}

/// Runs `f` on the frame allocator; `None` before [`install_frames`].
pub(crate) fn with_frames<R>(f: impl FnOnce(&mut FrameAllocator) -> Option<R>) -> Option<R> {
    FRAMES.lock().as_mut().and_then(f)
}

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
