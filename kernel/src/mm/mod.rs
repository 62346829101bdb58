//! Memory: the physical frame allocator (portable) and the kernel heap.

pub(crate) mod cache;
pub(crate) mod frame;
#[cfg(target_os = "none")]
pub(crate) mod heap;
#[cfg(target_os = "none")]
pub(crate) mod stack;

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

#[cfg(target_os = "none")]
pub(crate) use crate::arch::physmap::{phys_to_virt, set_phys_offset};
