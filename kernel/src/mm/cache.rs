//! Per-CPU object caches in front of the global heap (a small slab-cache
//! "magazine" layer, like the per-CPU array caches of Linux's SLAB).
//!
//! Each cache serves one object layout (tasks, pids, kernel stacks, IDR
//! nodes). Every CPU keeps a bounded stack of free objects; `alloc` pops
//! from this CPU's stack and `free` pushes onto it, with interrupts off and
//! no lock, so the spawn/reap fast path never touches the global heap lock.
//! Only when a CPU's stack is empty (alloc) or full (free) does the call fall
//! through to the global heap, and each fall-through is counted, so the
//! benchmark can report how often the fast path missed. An object freed on
//! another CPU than the one that allocated it simply joins that CPU's stack.

use core::alloc::Layout;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::platform::PerCpu;

/// Free objects a CPU keeps per cache.
pub const MAGAZINE: usize = 64;

#[derive(Clone, Copy)]
struct Magazine {
    objs: [*mut u8; MAGAZINE],
    len: usize,
}

// SAFETY: the raw pointers are free heap blocks owned by the cache; moving
// the magazine between threads (host simulation) moves that ownership.
unsafe impl Send for Magazine {}

/// Counters of one cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Allocations served from a CPU's magazine.
    pub hits: u64,
    /// Allocations that went to the global heap.
    pub heap_allocs: u64,
    /// Frees that went to the global heap (magazine full).
    pub heap_frees: u64,
    /// Allocations the global heap refused.
    pub failures: u64,
}

/// A per-CPU cache of objects of one layout.
pub struct ObjCache {
    name: &'static str,
    layout: Layout,
    mags: PerCpu<Magazine>,
    hits: AtomicU64,
    heap_allocs: AtomicU64,
    heap_frees: AtomicU64,
    failures: AtomicU64,
}

impl ObjCache {
    /// A cache named `name` for objects of `layout` (const, so caches are
    /// plain statics: a cache is tens of KiB, too big to build on a task
    /// stack).
    pub const fn new(name: &'static str, layout: Layout) -> Self {
        assert!(layout.size() > 0, "zero-sized cache");
        ObjCache {
            name,
            layout,
            mags: PerCpu::new_copied(Magazine {
                objs: [core::ptr::null_mut(); MAGAZINE],
                len: 0,
            }),
            hits: AtomicU64::new(0),
            heap_allocs: AtomicU64::new(0),
            heap_frees: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// An uninitialised object, or `None` when the heap is exhausted.
    #[inline]
    pub fn alloc(&self) -> Option<NonNull<u8>> {
        let cached = self.mags.with(|m| {
            if m.len == 0 {
                return None;
            }
            m.len -= 1;
            Some(m.objs[m.len])
        });
        if let Some(p) = cached {
            // Relaxed counter on this CPU's hot path: one uncontended-ish
            // increment; it is what makes the fall-through share reportable.
            self.hits.fetch_add(1, Ordering::Relaxed);
            return NonNull::new(p);
        }
        self.heap_allocs.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the layout has a non-zero size (checked in `new`).
        let p = NonNull::new(unsafe { alloc::alloc::alloc(self.layout) });
        if p.is_none() {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        p
    }

    /// Returns an object to the cache.
    ///
    /// # Safety
    /// `obj` came from this cache's [`alloc`](Self::alloc), is not used
    /// afterwards, and is freed once.
    #[inline]
    pub unsafe fn free(&self, obj: NonNull<u8>) {
        let overflow = self.mags.with(|m| {
            if m.len == MAGAZINE {
                return true;
            }
            m.objs[m.len] = obj.as_ptr();
            m.len += 1;
            false
        });
        if overflow {
            self.heap_frees.fetch_add(1, Ordering::Relaxed);
            // SAFETY: `obj` was allocated with `self.layout` (by us or by
            // the heap on our behalf), per the caller's contract.
            unsafe { alloc::alloc::dealloc(obj.as_ptr(), self.layout) };
        }
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            heap_allocs: self.heap_allocs.load(Ordering::Relaxed),
            heap_frees: self.heap_frees.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
        }
    }

    /// Bytes the magazines may hold at most (the bound on heap use that the
    /// caches may keep after everything is freed).
    pub fn max_cached_bytes(&self) -> usize {
        crate::platform::MAX_CPUS * MAGAZINE * self.layout.size()
    }

    /// Objects currently held in magazines, over all CPUs.
    ///
    /// # Safety
    /// No CPU may use the cache meanwhile.
    pub unsafe fn cached_objects(&self) -> usize {
        let mut n = 0;
        // SAFETY: the caller guarantees exclusive use.
        unsafe { self.mags.for_each(|_, m| n += m.len) };
        n
    }
}

impl Drop for ObjCache {
    fn drop(&mut self) {
        let layout = self.layout;
        // SAFETY: `&mut self` means nobody else uses the cache; every cached
        // pointer is a free block of `layout`.
        unsafe {
            self.mags.for_each(|_, m| {
                for &p in &m.objs[..m.len] {
                    alloc::alloc::dealloc(p, layout);
                }
                m.len = 0;
            })
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> ObjCache {
        ObjCache::new("test", Layout::from_size_align(64, 8).unwrap())
    }

    #[test]
    fn freed_objects_are_reused_without_the_heap() {
        let c = cache();
        let a = c.alloc().unwrap();
        // SAFETY: `a` came from `c` and is not used again.
        unsafe { c.free(a) };
        let b = c.alloc().unwrap();
        assert_eq!(a, b, "the magazine hands back the freed object");
        let s = c.stats();
        assert_eq!((s.hits, s.heap_allocs), (1, 1));
        // SAFETY: as above.
        unsafe { c.free(b) };
    }

    #[test]
    fn overflow_goes_back_to_the_heap_and_is_counted() {
        let c = cache();
        let objs: Vec<_> = (0..MAGAZINE + 5).map(|_| c.alloc().unwrap()).collect();
        for o in objs {
            // SAFETY: each came from `c` and is freed once.
            unsafe { c.free(o) };
        }
        let s = c.stats();
        assert_eq!(s.heap_allocs, (MAGAZINE + 5) as u64);
        assert_eq!(s.heap_frees, 5);
        // SAFETY: no other thread uses `c`.
        assert_eq!(unsafe { c.cached_objects() }, MAGAZINE);
    }

    #[test]
    fn cross_thread_free_is_fine() {
        let c = std::sync::Arc::new(cache());
        let ptrs: Vec<usize> = (0..100)
            .map(|_| c.alloc().unwrap().as_ptr() as usize)
            .collect();
        let c2 = c.clone();
        std::thread::spawn(move || {
            for p in ptrs {
                // SAFETY: each pointer came from `c` and is freed once.
                unsafe { c2.free(NonNull::new(p as *mut u8).unwrap()) };
            }
        })
        .join()
        .unwrap();
        assert_eq!(c.stats().heap_frees, (100 - MAGAZINE) as u64);
    }
}
