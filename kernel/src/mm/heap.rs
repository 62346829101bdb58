//! The kernel heap: `linked_list_allocator` over one physically contiguous
//! range, reached through the bootloader's physical-memory mapping.
//!
//! The heap lock is taken with interrupts off, so an interrupt handler that
//! allocates cannot deadlock against the code it interrupted. It records
//! its holder's CPU, and a wait for it runs under the lock watchdog
//! (`sync::debug::Watchdog`), so a stuck holder is named, not waited for
//! forever; a CPU that wants it while already holding it (a fault inside
//! the allocator) is told so at once. An allocation
//! that fails returns null (fallible users such as `try_reserve` see an
//! error); the request is remembered so the panic that an infallible
//! allocation turns into can name it along with the heap's state.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use linked_list_allocator::Heap;

use crate::arch::percpu::cpu_index;
use crate::platform;
use crate::sync::debug::{Holder, Watchdog};
use pidlab_abi::console::PANIC_MARK;

/// `KernelHeap::owner` when nobody holds the lock.
const NO_OWNER: u32 = u32::MAX;

pub(crate) struct KernelHeap {
    /// The CPU holding the heap lock, or `NO_OWNER`.
    owner: AtomicU32,
    heap: UnsafeCell<Heap>,
    /// Size and alignment of the most recent failed request (0: none).
    failed_size: AtomicUsize,
    failed_align: AtomicUsize,
}

// SAFETY: `heap` is only touched while `owner` is held (see `with_heap`).
unsafe impl Sync for KernelHeap {}

#[global_allocator]
pub(crate) static HEAP: KernelHeap = KernelHeap {
    owner: AtomicU32::new(NO_OWNER),
    heap: UnsafeCell::new(Heap::empty()),
    failed_size: AtomicUsize::new(0),
    failed_align: AtomicUsize::new(0),
};

/// Heap occupancy at one moment.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HeapStats {
    pub(crate) size: usize,
    pub(crate) used: usize,
}

impl KernelHeap {
    fn try_lock(&self, me: u32) -> bool {
        self.owner
            .compare_exchange(NO_OWNER, me, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    fn with_heap<R>(&self, f: impl FnOnce(&mut Heap) -> R) -> R {
        let flags = platform::local_irq_save();
        let me = cpu_index();
        if !self.try_lock(me) {
            self.lock_slow(me);
        }
        // SAFETY: we hold the lock, so no other CPU touches the heap, and
        // interrupts are off, so no handler on this CPU re-enters.
        let r = f(unsafe { &mut *self.heap.get() });
        self.owner.store(NO_OWNER, Ordering::Release);
        platform::local_irq_restore(flags);
        r
    }

    #[cold]
    fn lock_slow(&self, me: u32) {
        if self.owner.load(Ordering::Relaxed) == me {
            panic!("heap_lock: cpu {me} wants the heap while it holds it");
        }
        let mut watchdog = Watchdog::start();
        while !self.try_lock(me) {
            core::hint::spin_loop();
            watchdog.tick("heap_lock", || match self.owner.load(Ordering::Relaxed) {
                NO_OWNER => Holder::Unknown,
                cpu => Holder::Cpu(cpu as usize),
            });
        }
    }

    /// Hands the heap its memory. Called once, by the boot CPU.
    ///
    /// # Safety
    /// `[start, start + size)` must be mapped, writable, and used by nothing
    /// else for the rest of the kernel's life.
    pub(crate) unsafe fn init(&self, start: *mut u8, size: usize) {
        self.with_heap(|h| {
            assert!(h.size() == 0, "heap initialised twice");
            // SAFETY: the caller guarantees the range is ours alone.
            unsafe { h.init(start, size) }
        });
    }

    pub(crate) fn stats(&self) -> HeapStats {
        self.with_heap(|h| HeapStats {
            size: h.size(),
            used: h.used(),
        })
    }

    /// Like [`stats`](Self::stats), but gives up instead of waiting: for the
    /// panic path, which may run while this CPU holds the heap lock.
    pub(crate) fn try_stats(&self) -> Option<HeapStats> {
        let flags = platform::local_irq_save();
        if !self.try_lock(cpu_index()) {
            platform::local_irq_restore(flags);
            return None;
        }
        // SAFETY: we hold the lock with interrupts off (as in `with_heap`).
        let h = unsafe { &*self.heap.get() };
        let stats = HeapStats {
            size: h.size(),
            used: h.used(),
        };
        self.owner.store(NO_OWNER, Ordering::Release);
        platform::local_irq_restore(flags);
        Some(stats)
    }

    /// The most recent request the heap could not satisfy, as (size, align).
    pub(crate) fn last_failure(&self) -> Option<(usize, usize)> {
        match self.failed_size.load(Ordering::Relaxed) {
            0 => None,
            size => Some((size, self.failed_align.load(Ordering::Relaxed))),
        }
    }
}

// SAFETY: allocations come from `linked_list_allocator`, which returns
// distinct blocks of at least the requested size and alignment; the heap is
// only touched under its lock.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.with_heap(|h| h.allocate_first_fit(layout)) {
            Ok(p) => p.as_ptr(),
            Err(()) => {
                self.failed_align.store(layout.align(), Ordering::Relaxed);
                self.failed_size
                    .store(layout.size().max(1), Ordering::Relaxed);
                ptr::null_mut()
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(p) = NonNull::new(ptr) {
            // SAFETY: the caller passes a block this allocator returned for
            // `layout`, as GlobalAlloc requires.
            self.with_heap(|h| unsafe { h.deallocate(p, layout) });
        }
    }
}

/// The heap's part of a panic report (an arch hook): the last allocation
/// that failed, and the heap's use if its lock is free.
pub(crate) fn panic_report() {
    if let Some((size, align)) = HEAP.last_failure() {
        print!("{PANIC_MARK}   last failed allocation: {size} bytes (align {align})");
        match HEAP.try_stats() {
            Some(s) => println!("; heap {} of {} bytes in use", s.used, s.size),
            None => println!(),
        }
    }
}
