//! Per-CPU object caches in front of the global heap: Linux's slab caches
//! reduced to their per-CPU layer, with a small shared depot (Bonwick's
//! magazines and depot). Tasks, kernel stacks, pids and IDR nodes all come
//! from one [`ObjCache`] each.
//!
//! A CPU keeps a bounded stack of free objects (its magazine) and uses it
//! with interrupts off and no lock, so the spawn/reap path does not touch
//! the heap lock. An empty magazine first takes a batch from the cache's
//! depot, a full one gives a batch to it; only when the depot cannot help
//! does the call fall through to the heap. The depot is what carries
//! objects from CPUs that free them to CPUs that allocate them.
//!
//! Objects come from the global heap unless the cache has a [`Backing`] of
//! its own (kernel stacks come from the guarded stack region); "heap" in
//! the counters means that backing.
//!
//! A zeroed cache ([`ObjCache::new_zeroed`]) hands out zeroed objects and
//! takes them back zeroed, as Linux's radix-tree node cache does with its
//! constructor. Counters live in per-CPU slots, summed when read.

use core::alloc::Layout;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::platform::{self, MAX_CPUS, PerCpu};
use crate::sync::{SpinLockIrqSave, named_spin_lock_irqsave};

/// Free objects a CPU keeps per cache, by default.
pub(crate) const MAGAZINE: usize = 64;
/// Most objects a cache's depot holds by default; beyond it, frees go to
/// the heap.
///
/// Small on purpose: it only has to carry a batch or two from the CPUs
/// that free to the CPUs that allocate. Whatever it holds stays allocated
/// between the blocks a mass teardown frees, and the linked-list heap's
/// deallocation walks its free blocks, so a depot of thousands turned a
/// million frees quadratic.
pub(crate) const DEPOT_MAX: usize = 2 * MAGAZINE;

/// Magazine size of the caches whose objects RCU frees (pids, IDR nodes):
/// they come back a grace period's worth at a time, so a CPU's magazine
/// holds a tick's worth of spawns and the depot twice that.
pub(crate) const RCU_MAGAZINE: usize = 512;

/// A cache whose frees arrive in grace-period batches.
pub(crate) type RcuObjCache = ObjCache<RCU_MAGAZINE, { 2 * RCU_MAGAZINE }>;

#[derive(Clone, Copy)]
struct Magazine<const MAG: usize> {
    objs: [*mut u8; MAG],
    len: usize,
}

// SAFETY: the raw pointers are free heap blocks owned by the cache; moving
// the magazine between threads (host simulation) moves that ownership.
unsafe impl<const MAG: usize> Send for Magazine<MAG> {}

/// Free objects shared by all CPUs of one cache.
struct Depot<const DEPOT: usize> {
    objs: [*mut u8; DEPOT],
    len: usize,
}

// SAFETY: as for `Magazine`; the depot is only reached under its lock.
unsafe impl<const DEPOT: usize> Send for Depot<DEPOT> {}

/// One CPU's counters: written only by that CPU with interrupts off (a
/// plain load and store, no locked instruction), read by anyone.
#[repr(align(128))]
struct CpuCounts {
    hits: AtomicU64,
    heap_allocs: AtomicU64,
    frees: AtomicU64,
    heap_frees: AtomicU64,
    failures: AtomicU64,
}

impl CpuCounts {
    const fn new() -> Self {
        CpuCounts {
            hits: AtomicU64::new(0),
            heap_allocs: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            heap_frees: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }
}

/// Adds one to a counter of this CPU's slot. Only this CPU writes the slot,
/// and only with interrupts off, so the plain load and store are exact.
#[inline]
fn bump(counter: &AtomicU64) {
    counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// Counters of one cache, for one CPU or summed over all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CacheStats {
    /// Allocations served without the heap (magazine or depot).
    pub(crate) hits: u64,
    /// Allocations that went to the global heap.
    pub(crate) heap_allocs: u64,
    /// Objects given back to the cache.
    pub(crate) frees: u64,
    /// Frees that went on to the global heap (magazine and depot full).
    pub(crate) heap_frees: u64,
    /// Allocations the global heap refused.
    pub(crate) failures: u64,
}

#[cfg(test)]
impl CacheStats {
    /// Objects handed out.
    pub(crate) fn allocs(&self) -> u64 {
        self.hits + self.heap_allocs
    }

    /// Objects handed out and not given back (summed over CPUs: an object
    /// may be freed on another CPU than the one that allocated it).
    pub(crate) fn live(&self) -> u64 {
        self.allocs().wrapping_sub(self.frees)
    }
}

/// Where a cache's objects come from when its magazines and depot are
/// empty, and go when they are full.
#[derive(Clone, Copy)]
pub(crate) struct Backing {
    /// A block of the layout, or null.
    pub(crate) alloc: fn(Layout) -> *mut u8,
    /// Takes back a block `alloc` gave for the layout.
    ///
    /// # Safety
    /// The block came from `alloc` with this layout and is freed once.
    pub(crate) free: unsafe fn(*mut u8, Layout),
}

fn heap_alloc(layout: Layout) -> *mut u8 {
    // SAFETY: caches have non-zero-sized layouts (checked in `build`).
    unsafe { alloc::alloc::alloc(layout) }
}

/// # Safety
/// As [`Backing::free`].
unsafe fn heap_free(p: *mut u8, layout: Layout) {
    // SAFETY: per the contract, a heap block of `layout`.
    unsafe { alloc::alloc::dealloc(p, layout) }
}

/// The global heap.
pub(crate) const HEAP_BACKING: Backing = Backing {
    alloc: heap_alloc,
    free: heap_free,
};

/// A per-CPU cache of objects of one layout, with `MAG` objects per CPU
/// magazine and a depot of `DEPOT`.
pub(crate) struct ObjCache<const MAG: usize = MAGAZINE, const DEPOT: usize = DEPOT_MAX> {
    #[cfg_attr(
        not(test),
        allow(dead_code, reason = "named in the test build's checks")
    )]
    name: &'static str,
    layout: Layout,
    zeroed: bool,
    backing: Backing,
    mags: PerCpu<Magazine<MAG>>,
    depot: SpinLockIrqSave<Depot<DEPOT>>,
    counts: [CpuCounts; MAX_CPUS],
}

impl<const MAG: usize, const DEPOT: usize> ObjCache<MAG, DEPOT> {
    /// Objects moved between a magazine and the depot at once.
    const BATCH: usize = MAG / 2;

    /// A cache named `name` for objects of `layout`, handed out
    /// uninitialised (const, so caches are plain statics: a cache is tens
    /// of KiB, too big to build on a task stack).
    pub(crate) const fn new(name: &'static str, layout: Layout) -> Self {
        Self::build(name, layout, false, HEAP_BACKING)
    }

    /// A cache whose objects come from `backing` instead of the heap.
    pub(crate) const fn with_backing(name: &'static str, layout: Layout, backing: Backing) -> Self {
        Self::build(name, layout, false, backing)
    }

    /// A cache whose objects come out zeroed. Whoever frees an object must
    /// have zeroed it again (Linux: the radix-tree node cache's constructor
    /// zeroes new slabs, and nodes are cleared before they are freed), so
    /// the fast path never clears memory.
    pub(crate) const fn new_zeroed(name: &'static str, layout: Layout) -> Self {
        Self::build(name, layout, true, HEAP_BACKING)
    }

    const fn build(name: &'static str, layout: Layout, zeroed: bool, backing: Backing) -> Self {
        assert!(layout.size() > 0, "zero-sized cache");
        ObjCache {
            name,
            layout,
            zeroed,
            backing,
            mags: PerCpu::new_copied(Magazine {
                objs: [core::ptr::null_mut(); MAG],
                len: 0,
            }),
            depot: named_spin_lock_irqsave(
                "obj_cache_depot",
                Depot {
                    objs: [core::ptr::null_mut(); DEPOT],
                    len: 0,
                },
            ),
            counts: [const { CpuCounts::new() }; MAX_CPUS],
        }
    }

    pub(crate) fn layout(&self) -> Layout {
        self.layout
    }

    fn my_counts(&self) -> &CpuCounts {
        &self.counts[platform::cpu_id()]
    }

    /// Counts on this CPU's slot with interrupts off (for the slow paths,
    /// which run outside the magazine's critical section).
    fn count_irqsafe(&self, which: fn(&CpuCounts) -> &AtomicU64) {
        let flags = platform::local_irq_save();
        bump(which(self.my_counts()));
        platform::local_irq_restore(flags);
    }

    /// An object (zeroed if the cache is), or `None` when the heap is
    /// exhausted.
    #[inline]
    pub(crate) fn alloc(&self) -> Option<NonNull<u8>> {
        let cached = self.mags.with(|m| {
            if m.len == 0 {
                self.refill_from_depot(m);
                if m.len == 0 {
                    return None;
                }
            }
            m.len -= 1;
            bump(&self.my_counts().hits);
            Some(m.objs[m.len])
        });
        if let Some(p) = cached {
            return NonNull::new(p);
        }
        let p = NonNull::new(if self.zeroed {
            // SAFETY: the layout has a non-zero size (checked in `build`);
            // zeroed caches are heap-backed.
            unsafe { alloc::alloc::alloc_zeroed(self.layout) }
        } else {
            (self.backing.alloc)(self.layout)
        });
        self.count_irqsafe(if p.is_some() {
            |c| &c.heap_allocs
        } else {
            |c| &c.failures
        });
        p
    }

    /// Returns an object to the cache.
    ///
    /// # Safety
    /// `obj` came from this cache's [`alloc`](Self::alloc), is not used
    /// afterwards, and is freed once; if the cache is zeroed, every byte of
    /// `obj` is zero again.
    #[inline]
    pub(crate) unsafe fn free(&self, obj: NonNull<u8>) {
        #[cfg(test)]
        if self.zeroed {
            // SAFETY: `obj` is a live block of `layout` (the caller's
            // contract), read only.
            let bytes = unsafe { core::slice::from_raw_parts(obj.as_ptr(), self.layout.size()) };
            assert!(
                bytes.iter().all(|&b| b == 0),
                "{}: object freed without being zeroed",
                self.name
            );
        }
        let cached = self.mags.with(|m| {
            bump(&self.my_counts().frees);
            if m.len == MAG && !self.spill_to_depot(m) {
                return false;
            }
            m.objs[m.len] = obj.as_ptr();
            m.len += 1;
            true
        });
        if !cached {
            // SAFETY: `obj` was allocated with `self.layout` (by us or by
            // the backing on our behalf), per the caller's contract.
            unsafe { (self.backing.free)(obj.as_ptr(), self.layout) };
            self.count_irqsafe(|c| &c.heap_frees);
        }
    }

    /// Moves up to a batch from the depot into the (empty) magazine `m`.
    fn refill_from_depot(&self, m: &mut Magazine<MAG>) {
        let mut d = self.depot.lock();
        let n = d.len.min(Self::BATCH);
        let from = d.len - n;
        m.objs[..n].copy_from_slice(&d.objs[from..d.len]);
        m.len = n;
        d.len = from;
    }

    /// Moves a batch from the (full) magazine `m` to the depot if it has
    /// room; false if it has not.
    fn spill_to_depot(&self, m: &mut Magazine<MAG>) -> bool {
        let mut d = self.depot.lock();
        let batch = Self::BATCH;
        if d.len + batch > DEPOT {
            return false;
        }
        let (at, keep) = (d.len, m.len - batch);
        d.objs[at..at + batch].copy_from_slice(&m.objs[keep..m.len]);
        d.len += batch;
        m.len = keep;
        true
    }

    /// CPU `cpu`'s counters (exact once that CPU is quiet; zero for a CPU
    /// out of range).
    pub(crate) fn stats_cpu(&self, cpu: usize) -> CacheStats {
        let Some(c) = self.counts.get(cpu) else {
            return CacheStats::default();
        };
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CacheStats {
            hits: r(&c.hits),
            heap_allocs: r(&c.heap_allocs),
            frees: r(&c.frees),
            heap_frees: r(&c.heap_frees),
            failures: r(&c.failures),
        }
    }

    /// The counters summed over CPUs.
    pub(crate) fn stats(&self) -> CacheStats {
        (0..MAX_CPUS).fold(CacheStats::default(), |mut t, cpu| {
            let s = self.stats_cpu(cpu);
            t.hits += s.hits;
            t.heap_allocs += s.heap_allocs;
            t.frees += s.frees;
            t.heap_frees += s.heap_frees;
            t.failures += s.failures;
            t
        })
    }

    /// Bytes the magazines (of the CPUs online) and the depot may hold at
    /// most: the heap use the cache may keep after everything is freed.
    pub(crate) fn max_cached_bytes(&self) -> usize {
        (platform::cpus_online().min(MAX_CPUS) * MAG + DEPOT) * self.layout.size()
    }

    /// Objects currently held in magazines and the depot.
    ///
    /// # Safety
    /// No CPU may use the cache meanwhile.
    #[cfg(test)]
    pub(crate) unsafe fn cached_objects(&self) -> usize {
        let mut n = self.depot.lock().len;
        // SAFETY: the caller guarantees exclusive use.
        unsafe { self.mags.for_each(|_, m| n += m.len) };
        n
    }
}

impl<const MAG: usize, const DEPOT: usize> Drop for ObjCache<MAG, DEPOT> {
    fn drop(&mut self) {
        let (layout, free) = (self.layout, self.backing.free);
        let d = self.depot.get_mut();
        for &p in &d.objs[..d.len] {
            // SAFETY: depot objects are free blocks of `layout`, ours alone
            // under `&mut self`.
            unsafe { free(p, layout) };
        }
        d.len = 0;
        // SAFETY: `&mut self` means nobody else uses the cache; every cached
        // pointer is a free block of `layout`.
        unsafe {
            self.mags.for_each(|_, m| {
                for &p in &m.objs[..m.len] {
                    free(p, layout);
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

    /// Frees every pointer (given as an address) to `c`.
    fn free_all(c: &ObjCache, ptrs: impl IntoIterator<Item = usize>) {
        for p in ptrs {
            // SAFETY: each pointer came from `c` and is freed once.
            unsafe { c.free(NonNull::new(p as *mut u8).unwrap()) };
        }
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
        assert_eq!((s.hits, s.heap_allocs, s.frees), (1, 1, 1));
        assert_eq!(s.live(), 1);
        // SAFETY: as above.
        unsafe { c.free(b) };
    }

    #[test]
    fn overflow_goes_to_the_depot_then_the_heap() {
        let c = cache();
        let n = MAGAZINE + DEPOT_MAX + 5;
        let objs: Vec<usize> = (0..n)
            .map(|_| c.alloc().unwrap().as_ptr() as usize)
            .collect();
        free_all(&c, objs);
        let s = c.stats();
        assert_eq!(s.heap_allocs, n as u64);
        assert_eq!(s.frees, n as u64);
        // The magazine spills half of itself per batch the depot takes, so
        // it ends up to a batch below full before the heap is used.
        // SAFETY: no other thread uses `c`.
        let cached = unsafe { c.cached_objects() };
        assert_eq!(cached as u64 + s.heap_frees, n as u64);
        assert!(cached >= DEPOT_MAX + MAGAZINE / 2, "{cached}");
        assert_eq!(s.live(), 0);
    }

    #[test]
    fn the_depot_carries_objects_between_cpus() {
        let c = std::sync::Arc::new(cache());
        // This CPU allocates, another frees: without the depot the other
        // CPU's magazine would overflow to the heap and this one's would
        // stay empty.
        let (to_freer, batches) = std::sync::mpsc::channel::<Vec<usize>>();
        let (done, freed) = std::sync::mpsc::channel();
        let c2 = c.clone();
        let freer = std::thread::spawn(move || {
            for batch in batches {
                free_all(&c2, batch);
                done.send(()).unwrap();
            }
        });
        for _ in 0..4 {
            let ptrs = (0..MAGAZINE)
                .map(|_| c.alloc().unwrap().as_ptr() as usize)
                .collect();
            to_freer.send(ptrs).unwrap();
            freed.recv().unwrap();
        }
        drop(to_freer);
        freer.join().unwrap();
        let s = c.stats();
        assert_eq!(s.hits, 2 * MAGAZINE as u64, "the last two rounds: {s:?}");
        assert_eq!(s.heap_frees, 0, "{s:?}");
        assert_eq!(s.live(), 0);
    }

    #[test]
    fn counters_are_per_cpu() {
        let c = std::sync::Arc::new(cache());
        let me = platform::cpu_id();
        let p = c.alloc().unwrap().as_ptr() as usize;
        let c2 = c.clone();
        let other = std::thread::spawn(move || {
            free_all(&c2, [p]);
            platform::cpu_id()
        })
        .join()
        .unwrap();
        assert_eq!(c.stats_cpu(me).allocs(), 1);
        assert_eq!(c.stats_cpu(other).frees, 1);
        assert_eq!(c.stats_cpu(MAX_CPUS), CacheStats::default());
        assert_eq!(c.stats().live(), 0);
    }

    #[test]
    fn a_zeroed_cache_hands_out_zeroed_objects() {
        let c: ObjCache = ObjCache::new_zeroed("zeroed", Layout::from_size_align(256, 64).unwrap());
        let objs: Vec<NonNull<u8>> = (0..3 * MAGAZINE).map(|_| c.alloc().unwrap()).collect();
        for o in &objs {
            // SAFETY: a live 256-byte object of `c`.
            let bytes = unsafe { core::slice::from_raw_parts(o.as_ptr(), 256) };
            assert!(bytes.iter().all(|&b| b == 0));
        }
        free_all(&c, objs.iter().map(|o| o.as_ptr() as usize));
    }

    #[test]
    #[should_panic(expected = "zeroed: object freed without being zeroed")]
    fn a_zeroed_cache_rejects_dirty_objects() {
        let c: ObjCache = ObjCache::new_zeroed("zeroed", Layout::from_size_align(64, 8).unwrap());
        let o = c.alloc().unwrap();
        // SAFETY: a live object of `c`.
        unsafe { o.as_ptr().write(1) };
        // SAFETY: from `c`, freed once (the check panics first).
        unsafe { c.free(o) };
    }
}
