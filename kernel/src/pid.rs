//! `struct pid` and its allocation (Linux's kernel/pid.c): `alloc_pid` in
//! two run-time strategies, `free_pid`, `put_pid`, `find_pid_ns`,
//! `pid_nr_ns`, and the global `pidmap_lock`.
//!
//! A pid is one number per namespace level, from the namespace it was
//! allocated in (`numbers[level]`) up to the root (`numbers[0]`), each kept
//! in that namespace's IDR. `alloc_pid` first *reserves* every number (the
//! IDR slot holds null, so `find_pid_ns` cannot see a half-built pid), then
//! *publishes* the pid in all of them at once with `idr_replace`, after
//! checking that the namespace still accepts pids (`PIDNS_ADDING`).
//!
//! **Strategies.** [`AllocPidStrategy::Stock`] is alloc_pid before Mateusz
//! Guzik's "pid: only take pidmap_lock once on alloc": for every level,
//! preload, lock, allocate one number, unlock; then lock once more to check
//! `PIDNS_ADDING` and publish (level + 2 acquisitions).
//! [`AllocPidStrategy::SingleLock`] is the change: everything that needs no
//! lock is done first, then one acquisition covers every level and the
//! publication. One preload covers only one insertion, so if a level runs
//! the pool dry the lock is dropped, the pool refilled and the lock retaken,
//! at most once per level; that is safe because allocation across levels
//! was never atomic to begin with. Both strategies give the same results
//! for the same inputs (the tests run them side by side against a model).
//!
//! **References.** `count` is the refcount (`get_pid`/`put_pid`); the pid
//! is freed when it reaches zero. Published pids hold one reference for the
//! IDRs (Linux's `alloc_pid` reference, which `free_pid` drops), and
//! `alloc_pid` returns a second one as the caller's [`PidRef`]; `free_pid`
//! consumes that handle and drops both. (Linux hands out its one reference
//! uncounted; a counted handle is what makes the Rust API safe.)
//!
//! **No RCU.** Linux's `find_pid_ns` runs under `rcu_read_lock` and the
//! final `put_pid` of a freed pid is delayed by `call_rcu`. We have no RCU:
//! `find_pid_ns` takes pidmap_lock and returns a counted reference, and
//! `free_pid` drops its references at once.
//!
//! **Locking.** `pidmap_lock` is one global ticket spinlock. `alloc_pid`
//! takes it `spin_lock_irq` style (it runs with interrupts on);
//! `free_pid` and the readers take it `spin_lock_irqsave` style, since the
//! task release path may call `free_pid` with interrupts off. Both are a
//! [`PidmapGuard`], which [`PidNamespace::map`] demands.
//!
//! **Memory.** The pid struct comes from one seam, [`pid_struct_alloc`] /
//! [`pid_struct_free`], sized for its level like Linux's per-level
//! `pid_cachep`, fallible, and covered by [`FaultSite::PidAlloc`].

use alloc::alloc::{Layout, alloc, dealloc};
use alloc::sync::Arc;
use core::mem::ManuallyDrop;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering, fence};

use crate::errno::Errno;
use crate::fault_inject::{FaultSite, should_fail};
use crate::hlist::HlistHead;
use crate::idr::{idr_preload, idr_preload_end};
use crate::mm::cache::ObjCache;
use crate::pid_namespace::{MAX_PID_NS_LEVEL, PIDNS_ADDING, PidMap, PidNamespace, RESERVED_PIDS};
use crate::platform::{self, IrqFlags};
use crate::sync::{RawTicketLock, SpinLock, ticket::spin_lock};

/// Port of `enum pid_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum PidType {
    /// `PIDTYPE_PID`: the thread's own id.
    Pid = 0,
    /// `PIDTYPE_TGID`: the thread group.
    Tgid = 1,
    /// `PIDTYPE_PGID`: the process group.
    Pgid = 2,
    /// `PIDTYPE_SID`: the session.
    Sid = 3,
}

/// Number of pid types (`PIDTYPE_MAX`).
pub const PIDTYPE_MAX: usize = 4;

/// Port of `struct upid`: a pid's number in one namespace.
#[repr(C)]
pub struct Upid {
    /// The number.
    pub nr: i32,
    ns: *const PidNamespace,
}

impl Upid {
    /// The namespace the number belongs to.
    pub fn ns(&self) -> &PidNamespace {
        // SAFETY: a pid holds a reference to its own namespace, which holds
        // its ancestors, so every upid's namespace outlives the pid, and a
        // `&Upid` cannot outlive the pid it was borrowed from.
        unsafe { &*self.ns }
    }
}

/// Port of `struct pid`. Allocated with `level + 1` [`Upid`]s after the
/// header (Linux's flexible `numbers[]`), so it is only handled through
/// raw pointers and [`PidRef`].
#[repr(C)]
pub struct Pid {
    count: AtomicU32,
    level: u32,
    /// Published in the IDRs and not yet freed by `free_pid`. Changed under
    /// pidmap_lock only.
    hashed: AtomicBool,
    /// Port of `pid->tasks[PIDTYPE_MAX]`: tasks using this pid, by type.
    tasks: [HlistHead; PIDTYPE_MAX],
    numbers: [Upid; 0],
}

fn pid_layout(level: u32) -> Layout {
    let upids = Layout::array::<Upid>(level as usize + 1).expect("pid layout");
    let (layout, offset) = Layout::new::<Pid>().extend(upids).expect("pid layout");
    debug_assert_eq!(offset, core::mem::offset_of!(Pid, numbers));
    layout.pad_to_align()
}

/// Levels whose pids come from per-CPU object caches (deeper pids, rare,
/// go straight to the heap).
pub const PID_CACHED_LEVELS: usize = 4;

const fn pid_cache_layout(level: usize) -> Layout {
    let size = core::mem::offset_of!(Pid, numbers) + (level + 1) * core::mem::size_of::<Upid>();
    let align = core::mem::align_of::<Pid>();
    match Layout::from_size_align(size.next_multiple_of(align), align) {
        Ok(l) => l,
        Err(_) => panic!("bad pid layout"),
    }
}

static PID_CACHES: [ObjCache; PID_CACHED_LEVELS] = [
    ObjCache::new("pid_0", pid_cache_layout(0)),
    ObjCache::new("pid_1", pid_cache_layout(1)),
    ObjCache::new("pid_2", pid_cache_layout(2)),
    ObjCache::new("pid_3", pid_cache_layout(3)),
];

/// The per-CPU caches pids of levels `0..PID_CACHED_LEVELS` come from.
pub fn pid_caches() -> &'static [ObjCache] {
    &PID_CACHES
}

/// The seam all `struct pid` memory comes from (Linux:
/// `kmem_cache_alloc(ns->pid_cachep)`, one cache per level): uninitialised
/// memory for a pid of `level`, or `None` when memory is short (or
/// [`FaultSite::PidAlloc`] fires).
pub fn pid_struct_alloc(level: u32) -> Option<NonNull<Pid>> {
    if should_fail(FaultSite::PidAlloc) {
        return None;
    }
    if let Some(cache) = PID_CACHES.get(level as usize) {
        debug_assert_eq!(cache.layout(), pid_layout(level));
        return cache.alloc().map(NonNull::cast);
    }
    // SAFETY: the layout has a non-zero size.
    NonNull::new(unsafe { alloc(pid_layout(level)) }.cast())
}

/// Returns pid memory to the seam.
///
/// # Safety
/// `pid` came from [`pid_struct_alloc`] with the same `level`, and is not
/// used again.
pub unsafe fn pid_struct_free(pid: NonNull<Pid>, level: u32) {
    if let Some(cache) = PID_CACHES.get(level as usize) {
        // SAFETY: the caller guarantees it came from this level's cache.
        return unsafe { cache.free(pid.cast()) };
    }
    // SAFETY: the caller guarantees origin and layout.
    unsafe { dealloc(pid.as_ptr().cast(), pid_layout(level)) }
}

/// A counted reference to a pid (`get_pid` clones it, dropping it is
/// `put_pid`).
pub struct PidRef {
    ptr: NonNull<Pid>,
}

// SAFETY: the header is atomics; the upids are written before the pid is
// shared and never changed after; the task lists' changes are `unsafe` and
// need tasklist_lock. A pid is not tied to a thread.
unsafe impl Send for PidRef {}
// SAFETY: as above.
unsafe impl Sync for PidRef {}

impl PidRef {
    fn header(&self) -> &Pid {
        // SAFETY: a counted reference keeps the pid alive; the header is
        // initialised before any `PidRef` exists.
        unsafe { self.ptr.as_ref() }
    }

    fn numbers_ptr(pid: NonNull<Pid>) -> *mut Upid {
        // SAFETY: projecting a field of a live allocation through the raw
        // pointer keeps its provenance over the trailing upids.
        unsafe { (&raw mut (*pid.as_ptr()).numbers).cast() }
    }

    /// The pid's level (its innermost namespace's level).
    pub fn level(&self) -> u32 {
        self.header().level
    }

    /// Port of `pid->numbers[]`: one upid per level, root first.
    pub fn numbers(&self) -> &[Upid] {
        // SAFETY: `level + 1` upids follow the header; all are initialised
        // before a `PidRef` to a published pid exists, and are immutable.
        unsafe {
            core::slice::from_raw_parts(Self::numbers_ptr(self.ptr), self.level() as usize + 1)
        }
    }

    /// Port of `pid_nr()`: the number in the root namespace.
    pub fn nr(&self) -> i32 {
        self.numbers()[0].nr
    }

    /// Port of `ns_of_pid()`: the namespace the pid was allocated in.
    pub fn ns(&self) -> &PidNamespace {
        self.numbers()[self.level() as usize].ns()
    }

    /// The reference count (for tests and assertions).
    pub fn count(&self) -> u32 {
        self.header().count.load(Ordering::Relaxed)
    }

    /// Port of `pid->tasks[type]`: the tasks attached with this type.
    /// Changing the list needs tasklist_lock.
    pub fn tasks(&self, ty: PidType) -> &HlistHead {
        &self.header().tasks[ty as usize]
    }

    /// Port of `pid_has_task()`.
    pub fn pid_has_task(&self, ty: PidType) -> bool {
        !self.tasks(ty).is_empty()
    }

    /// The raw pid, for intrusive structures of the task code.
    pub fn as_ptr(&self) -> NonNull<Pid> {
        self.ptr
    }

    /// Gives up the handle without dropping its reference.
    pub fn into_raw(self) -> NonNull<Pid> {
        ManuallyDrop::new(self).ptr
    }

    /// Takes back a handle given up with [`into_raw`](Self::into_raw).
    ///
    /// # Safety
    /// `ptr` came from `into_raw` and its reference is not used otherwise.
    pub unsafe fn from_raw(ptr: NonNull<Pid>) -> PidRef {
        PidRef { ptr }
    }

    /// Whether two handles name the same pid.
    pub fn ptr_eq(a: &PidRef, b: &PidRef) -> bool {
        a.ptr == b.ptr
    }

    /// Drops `n` references at once.
    fn put_many(self, n: u32) {
        let this = ManuallyDrop::new(self);
        if this.header().count.fetch_sub(n, Ordering::Release) == n {
            fence(Ordering::Acquire);
            // SAFETY: that was the last reference.
            unsafe { Self::destroy(this.ptr) };
        }
    }

    /// Frees a pid whose count reached zero: its memory and its reference
    /// to its namespace.
    ///
    /// # Safety
    /// Nobody references `pid` any more.
    unsafe fn destroy(pid: NonNull<Pid>) {
        // SAFETY: per the contract; the header and upids are initialised,
        // and `numbers[level].ns` holds the reference `new_pid` took.
        unsafe {
            let level = (*pid.as_ptr()).level;
            debug_assert!(!(*pid.as_ptr()).hashed.load(Ordering::Relaxed));
            let ns = (*Self::numbers_ptr(pid).add(level as usize)).ns;
            drop(Arc::from_raw(ns));
            pid_struct_free(pid, level);
        }
    }
}

impl Clone for PidRef {
    /// Port of `get_pid()`.
    fn clone(&self) -> Self {
        self.header().count.fetch_add(1, Ordering::Relaxed);
        PidRef { ptr: self.ptr }
    }
}

impl Drop for PidRef {
    /// Port of `put_pid()`.
    fn drop(&mut self) {
        if self.header().count.fetch_sub(1, Ordering::Release) == 1 {
            fence(Ordering::Acquire);
            // SAFETY: that was the last reference.
            unsafe { Self::destroy(self.ptr) };
        }
    }
}

impl core::fmt::Debug for PidRef {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let nrs: alloc::vec::Vec<i32> = self.numbers().iter().map(|u| u.nr).collect();
        write!(f, "Pid{nrs:?}")
    }
}

/// Port of `get_pid()`.
pub fn get_pid(pid: &PidRef) -> PidRef {
    pid.clone()
}

/// Port of `put_pid()`.
pub fn put_pid(pid: PidRef) {
    drop(pid)
}

/// Port of `pid_nr_ns()`: `pid`'s number in `ns`, 0 if it has none there.
pub fn pid_nr_ns(pid: &PidRef, ns: &PidNamespace) -> i32 {
    match pid.numbers().get(ns.level() as usize) {
        Some(upid) if ptr::eq(upid.ns, ns) => upid.nr,
        _ => 0,
    }
}

static PIDMAP_LOCK: SpinLock<()> = spin_lock("pidmap_lock", ());

enum IrqRelease {
    Enable,
    Restore(IrqFlags),
}

/// Holding `pidmap_lock`, with interrupts off; unlocking restores them as
/// the locking flavour says. Proof of the lock for [`PidNamespace::map`].
pub struct PidmapGuard {
    guard: ManuallyDrop<lock_api::MutexGuard<'static, RawTicketLock, ()>>,
    irq: IrqRelease,
}

/// `spin_lock_irq(&pidmap_lock)`: interrupts must be on; unlocking turns
/// them back on.
pub fn pidmap_lock_irq() -> PidmapGuard {
    debug_assert!(platform::irqs_enabled(), "spin_lock_irq with IRQs off");
    platform::local_irq_disable();
    PidmapGuard {
        guard: ManuallyDrop::new(PIDMAP_LOCK.lock()),
        irq: IrqRelease::Enable,
    }
}

/// `spin_lock_irqsave(&pidmap_lock, flags)`: unlocking restores the
/// interrupt state found here.
pub fn pidmap_lock_irqsave() -> PidmapGuard {
    let flags = platform::local_irq_save();
    PidmapGuard {
        guard: ManuallyDrop::new(PIDMAP_LOCK.lock()),
        irq: IrqRelease::Restore(flags),
    }
}

impl Drop for PidmapGuard {
    fn drop(&mut self) {
        // SAFETY: dropped exactly once, here; unlock before touching IRQs.
        unsafe { ManuallyDrop::drop(&mut self.guard) };
        match self.irq {
            IrqRelease::Enable => platform::local_irq_enable(),
            IrqRelease::Restore(flags) => platform::local_irq_restore(flags),
        }
    }
}

/// Which `alloc_pid` to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AllocPidStrategy {
    /// Before the change: a lock round trip per level, one more to publish.
    Stock,
    /// After the change: one acquisition (plus one per re-preload).
    SingleLock,
}

impl AllocPidStrategy {
    /// Both, Stock first.
    pub const ALL: [AllocPidStrategy; 2] = [AllocPidStrategy::Stock, AllocPidStrategy::SingleLock];

    /// Short name for tables and CSV rows.
    pub fn name(self) -> &'static str {
        match self {
            AllocPidStrategy::Stock => "stock",
            AllocPidStrategy::SingleLock => "single-lock",
        }
    }
}

/// Everything `alloc_pid` decides before taking pidmap_lock, indexed from
/// the innermost level outwards (Linux's `set_tid[ns->level - i]`).
struct Prep {
    tid: [i32; MAX_PID_NS_LEVEL as usize + 1],
    pid_max: [i32; MAX_PID_NS_LEVEL as usize + 1],
}

/// Lock accounting of one `alloc_pid` call.
#[derive(Default)]
struct AllocCounts {
    locks: u64,
    repreloads: u64,
}

impl AllocCounts {
    fn lock(&mut self) -> PidmapGuard {
        self.locks += 1;
        pidmap_lock_irq()
    }
}

/// A pid being built: memory and header initialised, numbers being filled.
/// Dropping it (on failure) frees it.
struct NewPid(PidRef);

impl NewPid {
    fn set_number(&mut self, level: u32, nr: i32, ns: &PidNamespace) {
        // SAFETY: `level` is within the allocation, and the pid is not
        // shared yet, so nobody else reads its upids.
        unsafe {
            (*PidRef::numbers_ptr(self.0.ptr).add(level as usize)).nr = nr;
            (*PidRef::numbers_ptr(self.0.ptr).add(level as usize)).ns = ns;
        }
    }

    fn number(&self, level: u32) -> (i32, &PidNamespace) {
        // SAFETY: only levels set by `set_number` are read (callers read
        // levels above the failing one, which were all set).
        let upid = unsafe { &*PidRef::numbers_ptr(self.0.ptr).add(level as usize) };
        (upid.nr, upid.ns())
    }
}

/// Allocates and initialises the pid struct for `ns` (count 1, empty task
/// lists, a reference to `ns`, upids to be filled).
fn new_pid(ns: &Arc<PidNamespace>) -> Result<NewPid, Errno> {
    let level = ns.level();
    let ptr = pid_struct_alloc(level).ok_or(Errno::ENOMEM)?;
    // SAFETY: fresh memory of `pid_layout(level)`: write the header, then
    // every upid, before anything reads them.
    unsafe {
        ptr.as_ptr().write(Pid {
            count: AtomicU32::new(1),
            level,
            hashed: AtomicBool::new(false),
            tasks: [const { HlistHead::new() }; PIDTYPE_MAX],
            numbers: [],
        });
        let numbers = PidRef::numbers_ptr(ptr);
        for i in 0..level as usize {
            numbers.add(i).write(Upid {
                nr: 0,
                ns: ptr::null(),
            });
        }
        // The innermost upid's namespace pointer carries the pid's
        // reference to its namespace (`get_pid_ns`), released in `destroy`.
        numbers.add(level as usize).write(Upid {
            nr: 0,
            ns: Arc::into_raw(ns.clone()),
        });
    }
    Ok(NewPid(PidRef { ptr }))
}

/// The lock-free part of alloc_pid's checks, for every level: the
/// requested tid is in range, asks for pid 1 or has a reaper to go to, and
/// the caller may ask for it; plus the `pid_max` snapshot.
fn prepare(ns: &PidNamespace, set_tid: &[i32], has_cap: bool) -> Result<Prep, Errno> {
    let mut prep = Prep {
        tid: [0; MAX_PID_NS_LEVEL as usize + 1],
        pid_max: [0; MAX_PID_NS_LEVEL as usize + 1],
    };
    let mut tmp = Some(ns);
    for depth in 0..=ns.level() as usize {
        let level_ns = tmp.expect("namespace chain shorter than its level");
        prep.pid_max[depth] = level_ns.pid_max();
        if let Some(&tid) = set_tid.get(depth) {
            if tid < 1 || tid >= prep.pid_max[depth] {
                return Err(Errno::EINVAL);
            }
            // Also fail if a pid != 1 is requested and no pid 1 exists.
            if tid != 1 && level_ns.child_reaper().is_none() {
                return Err(Errno::EINVAL);
            }
            if !has_cap {
                return Err(Errno::EPERM);
            }
            prep.tid[depth] = tid;
        }
        tmp = level_ns.parent().map(|p| &**p);
    }
    Ok(prep)
}

/// One level's number: the requested tid, or the next one cyclically.
/// Runs under pidmap_lock; nodes come from this CPU's preload pool.
fn alloc_nr(map: &mut PidMap, tid: i32, pid_max: i32) -> Result<i32, Errno> {
    if tid != 0 {
        // ENOSPC on a one-id range means the tid is taken.
        let tid = tid as u32;
        return match map.idr.alloc(ptr::null_mut(), tid, tid + 1) {
            Err(Errno::ENOSPC) => Err(Errno::EEXIST),
            r => r.map(|nr| nr as i32),
        };
    }
    // init really needs pid 1, but after reaching the maximum wrap back
    // to RESERVED_PIDS.
    let pid_min = if map.idr.get_cursor() > RESERVED_PIDS as u32 {
        RESERVED_PIDS
    } else {
        1
    };
    match map
        .idr
        .alloc_cyclic(ptr::null_mut(), pid_min as u32, pid_max as u32)
    {
        Err(Errno::ENOSPC) => Err(Errno::EAGAIN),
        r => r.map(|nr| nr as i32),
    }
}

/// Undoes a failed allocation under pidmap_lock: frees the numbers of the
/// levels above `failed` (all were taken), and if the namespace never got
/// its first pid, resets its cursor so that its init still gets pid 1.
fn rollback(g: &mut PidmapGuard, pid: &NewPid, ns: &PidNamespace, failed: i64) {
    for level in (failed + 1) as u32..=ns.level() {
        let (nr, level_ns) = pid.number(level);
        level_ns.map(g).idr.remove(nr as u32);
    }
    let map = ns.map(g);
    if map.pid_allocated == PIDNS_ADDING {
        map.idr.set_cursor(0);
    }
}

/// Makes the pid visible to `find_pid_ns` in every namespace and counts
/// it, under pidmap_lock; ENOMEM if `ns` no longer accepts pids.
fn publish(g: &mut PidmapGuard, pid: NewPid, ns: &PidNamespace) -> Result<PidRef, (NewPid, Errno)> {
    // ENOMEM is not the most obvious choice when the namespace's init has
    // died, but it is what Linux has always reported.
    if ns.map(g).pid_allocated & PIDNS_ADDING == 0 {
        return Err((pid, Errno::ENOMEM));
    }
    let header = pid.0.header();
    // The IDRs' reference (dropped by free_pid), besides the caller's.
    header.count.store(2, Ordering::Relaxed);
    header.hashed.store(true, Ordering::Relaxed);
    let raw = pid.0.ptr.as_ptr();
    for level in (0..=ns.level()).rev() {
        let (nr, level_ns) = pid.number(level);
        let map = level_ns.map(g);
        let old = map.idr.replace(raw, nr as u32);
        debug_assert!(matches!(old, Ok(p) if p.is_null()));
        map.pid_allocated += 1;
    }
    Ok(pid.0)
}

/// The pre-change alloc_pid: per level, preload + lock + allocate +
/// unlock; then lock again to check `PIDNS_ADDING` and publish.
fn alloc_pid_stock(
    ns: &Arc<PidNamespace>,
    mut pid: NewPid,
    prep: &Prep,
    counts: &mut AllocCounts,
) -> Result<PidRef, Errno> {
    let top = ns.level() as i64;
    let mut level_ns: &PidNamespace = ns;
    let mut i = top;
    let mut err = None;
    while i >= 0 {
        let depth = (top - i) as usize;
        // Like Linux's idr_preload(), ignore a failed fill: the insertion
        // reports ENOMEM if the pool really runs dry.
        let _ = idr_preload();
        let nr = {
            let mut g = counts.lock();
            alloc_nr(level_ns.map(&mut g), prep.tid[depth], prep.pid_max[depth])
        };
        idr_preload_end();
        match nr {
            Ok(nr) => pid.set_number(i as u32, nr, level_ns),
            Err(e) => {
                err = Some(e);
                break;
            }
        }
        i -= 1;
        if let Some(parent) = level_ns.parent() {
            level_ns = parent;
        }
    }
    if err.is_none() {
        let _ = idr_preload();
        let mut g = counts.lock();
        let published = publish(&mut g, pid, ns);
        drop(g);
        idr_preload_end();
        match published {
            Ok(pid) => return Ok(pid),
            Err((p, e)) => {
                pid = p;
                err = Some(e);
            }
        }
    }
    let mut g = counts.lock();
    rollback(&mut g, &pid, ns, i);
    drop(g);
    Err(err.unwrap_or(Errno::ENOMEM))
}

/// The changed alloc_pid: one pidmap_lock acquisition for every level and
/// the publication.
fn alloc_pid_single_lock(
    ns: &Arc<PidNamespace>,
    mut pid: NewPid,
    prep: &Prep,
    counts: &mut AllocCounts,
) -> Result<PidRef, Errno> {
    let top = ns.level() as i64;
    let mut level_ns: &PidNamespace = ns;
    let mut i = top;
    let mut retried_preload = false;
    let _ = idr_preload();
    let mut g = counts.lock();
    let err = loop {
        if i < 0 {
            match publish(&mut g, pid, ns) {
                Ok(pid) => {
                    drop(g);
                    idr_preload_end();
                    return Ok(pid);
                }
                Err((p, e)) => {
                    pid = p;
                    break e;
                }
            }
        }
        let depth = (top - i) as usize;
        match alloc_nr(level_ns.map(&mut g), prep.tid[depth], prep.pid_max[depth]) {
            Ok(nr) => {
                pid.set_number(i as u32, nr, level_ns);
                i -= 1;
                retried_preload = false;
                if let Some(parent) = level_ns.parent() {
                    level_ns = parent;
                }
            }
            // The IDR API only preloads for one insertion, and we may do
            // several under pidmap_lock. Refilling the pool may save the
            // day, but only try once per level: idr_preload() cannot say
            // whether it got anywhere. Dropping the lock is safe because
            // pid allocation across namespaces was never atomic; holding
            // it throughout is only for speed.
            Err(Errno::ENOMEM) if !retried_preload => {
                drop(g);
                idr_preload_end();
                retried_preload = true;
                counts.repreloads += 1;
                let _ = idr_preload();
                g = counts.lock();
            }
            Err(e) => break e,
        }
    };
    rollback(&mut g, &pid, ns, i);
    drop(g);
    idr_preload_end();
    Err(err)
}

/// Port of `alloc_pid()`: a new pid in `ns` and all its ancestors.
///
/// `set_tid` asks for specific numbers, innermost namespace first, for at
/// most `ns.level() + 1` levels (the rest are allocated cyclically);
/// asking needs the checkpoint/restore capability over the namespaces,
/// which the caller states in `has_checkpoint_restore_cap`. Errors, in
/// order: EINVAL (too many tids), ENOMEM (no memory for the pid), EINVAL
/// (a tid out of `1..pid_max`, or not 1 where the namespace has no child
/// reaper), EPERM (no capability), EEXIST (a tid is taken), EAGAIN (no
/// free number), ENOMEM (no IDR node even after refilling the pool), ENOMEM
/// (the namespace no longer accepts pids).
///
/// Must be called with interrupts on (it may allocate, and takes
/// pidmap_lock `spin_lock_irq` style).
pub fn alloc_pid(
    ns: &Arc<PidNamespace>,
    set_tid: &[i32],
    strategy: AllocPidStrategy,
    has_checkpoint_restore_cap: bool,
) -> Result<PidRef, Errno> {
    let mut counts = AllocCounts::default();
    let result = alloc_pid_counted(
        ns,
        set_tid,
        strategy,
        has_checkpoint_restore_cap,
        &mut counts,
    );
    let stats = &PID_STATS[platform::cpu_id()];
    bump(&stats.alloc_calls, 1);
    bump(&stats.alloc_failed, u64::from(result.is_err()));
    bump(&stats.alloc_locks, counts.locks);
    bump(&stats.alloc_repreloads, counts.repreloads);
    result
}

fn alloc_pid_counted(
    ns: &Arc<PidNamespace>,
    set_tid: &[i32],
    strategy: AllocPidStrategy,
    has_cap: bool,
    counts: &mut AllocCounts,
) -> Result<PidRef, Errno> {
    // set_tid may name a pid for each level from ns outwards, never more.
    if set_tid.len() > ns.level() as usize + 1 {
        return Err(Errno::EINVAL);
    }
    let pid = new_pid(ns)?;
    // Linux before the change validated each level just before allocating
    // its number; both strategies here validate every level first, as the
    // change does, so they agree on which error wins.
    let prep = prepare(ns, set_tid, has_cap)?;
    match strategy {
        AllocPidStrategy::Stock => alloc_pid_stock(ns, pid, &prep, counts),
        AllocPidStrategy::SingleLock => alloc_pid_single_lock(ns, pid, &prep, counts),
    }
}

/// Port of `free_pid()`: takes the pid out of every namespace's IDR, keeps
/// `pid_allocated` (waking the child reaper when only it is left, marking
/// the namespace dead when its last pid goes before it ever had an init),
/// and drops the IDRs' reference along with `pid`. Calling it again for a
/// pid already freed (through a clone) only drops that handle.
pub fn free_pid(pid: PidRef) {
    let mut g = pidmap_lock_irqsave();
    let hashed = pid.header().hashed.load(Ordering::Relaxed);
    if hashed {
        for upid in pid.numbers() {
            let ns = upid.ns();
            let map = ns.map(&mut g);
            map.pid_allocated = map.pid_allocated.wrapping_sub(1);
            match map.pid_allocated {
                // When all that is left in the namespace is the reaper,
                // wake it: it may be waiting in zap_pid_ns_processes().
                2 | 1 => ns.wake_child_reaper(),
                // The first process's fork failed: the namespace is dead.
                PIDNS_ADDING => ns.stop_adding(map),
                _ => {}
            }
            ns.map(&mut g).idr.remove(upid.nr as u32);
        }
        pid.header().hashed.store(false, Ordering::Relaxed);
    }
    drop(g);
    let stats = &PID_STATS[platform::cpu_id()];
    bump(&stats.free_calls, 1);
    bump(&stats.free_locks, 1);
    pid.put_many(if hashed { 2 } else { 1 });
}

/// Port of `find_pid_ns()` (as `find_get_pid` in `ns`): the published pid
/// numbered `nr` in `ns`, with a reference. Linux looks it up under RCU
/// without a reference; we have no RCU, so we look under pidmap_lock and
/// take the reference before unlocking.
pub fn find_pid_ns(nr: i32, ns: &PidNamespace) -> Option<PidRef> {
    let nr = u32::try_from(nr).ok()?;
    let mut g = pidmap_lock_irqsave();
    let p = NonNull::new(ns.map(&mut g).idr.find(nr))?;
    // SAFETY: a published pid holds the IDRs' reference until free_pid
    // removes it under this lock, so it is alive while we hold the lock.
    unsafe { p.as_ref() }.count.fetch_add(1, Ordering::Relaxed);
    drop(g);
    Some(PidRef { ptr: p })
}

mod stats;

use stats::{PID_STATS, bump};
pub use stats::{PidStats, pid_stats_cpu, pid_stats_this_cpu, pid_stats_total};

#[cfg(test)]
mod tests;
