//! `struct pid` and its allocation (Linux's kernel/pid.c): `alloc_pid`,
//! `free_pid`, `put_pid`, `find_pid_ns`, `pid_nr_ns`, and the global
//! `pidmap_lock`.
//!
//! This is the subsystem the kernel exists to exercise: a [`Pid`] is one
//! number per namespace level, handed out by the namespaces' IDRs, found
//! without locks under RCU, and kept alive for a grace period after
//! `free_pid` unhashes it. Callers hold pids through counted [`PidRef`]s;
//! `pidmap_lock` is held through a [`PidmapGuard`] whose type names the
//! IRQ discipline of the kernel version it acts as. `alloc` holds
//! `alloc_pid`, `allocated` the lock-free pid count, `namespace` the pid
//! namespaces, `pidfs` pidfs's inode numbers, `stats` the counters.

use ::alloc::alloc::{Layout, alloc, dealloc};
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering, fence};

use intrusive_collections::RBTreeLink;

use crate::klib::aligned::CacheAligned;
use crate::klib::fault_inject::{FaultSite, should_fail};
use crate::klib::hlist::HlistHead;
use crate::klib::lockctx::{self, Tracked};
use crate::mm::cache::RcuObjCache;
use crate::pid::namespace::{PIDNS_ADDING, PidNamespace, put_pid_ns};
use crate::platform;
use crate::rcu::{RcuHead, call_rcu, rcu_read_lock};
use crate::strategy::{PidmapIrq, StrategyPair};
use crate::sync::RawSpin;
use crate::sync::irq::{Irq, IrqDiscipline, IrqLock, IrqSave, Plain, RawGuard};

/// Port of `enum pid_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub(crate) enum PidType {
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
pub(crate) const PIDTYPE_MAX: usize = 4;

impl PidType {
    /// Every type, in Linux's order.
    pub(crate) const ALL: [PidType; PIDTYPE_MAX] =
        [PidType::Pid, PidType::Tgid, PidType::Pgid, PidType::Sid];
}

/// One `T` per pid type, indexed by [`PidType`] (Linux's
/// `[PIDTYPE_MAX]` arrays in `struct pid` and `task_struct`).
#[derive(Clone, Debug, Default)]
pub(crate) struct PerPidType<T>(pub [T; PIDTYPE_MAX]);

impl<T> core::ops::Index<PidType> for PerPidType<T> {
    type Output = T;

    #[inline]
    fn index(&self, ty: PidType) -> &T {
        &self.0[ty as usize]
    }
}

impl<T> core::ops::IndexMut<PidType> for PerPidType<T> {
    #[inline]
    fn index_mut(&mut self, ty: PidType) -> &mut T {
        &mut self.0[ty as usize]
    }
}

/// Port of `struct upid`: a pid's number in one namespace.
#[repr(C)]
pub(crate) struct Upid {
    /// The number.
    pub(crate) nr: i32,
    ns: *const PidNamespace,
}

impl Upid {
    /// The namespace the number belongs to.
    pub(crate) fn ns(&self) -> &PidNamespace {
        // SAFETY: a pid holds a reference to its own namespace, which holds
        // its ancestors, so every upid's namespace outlives the pid, and a
        // `&Upid` cannot outlive the pid it was borrowed from.
        unsafe { &*self.ns }
    }
}

/// Port of `struct pid`. Allocated with `level + 1` [`Upid`]s after the
/// header (Linux's flexible `numbers[]`), so it is only handled through
/// raw pointers and [`PidRef`].
///
/// A pid is one number per namespace level, from the namespace it was
/// allocated in (`numbers[level]`) up to the root (`numbers[0]`), each kept
/// in that namespace's IDR. `alloc_pid` (see `alloc`) first *reserves*
/// every number (the slot holds null, so `find_pid_ns` cannot see a
/// half-built pid), then *publishes* the pid in all of them at once, after
/// checking that the namespace still accepts pids (`PIDNS_ADDING`).
#[repr(C)]
pub(crate) struct Pid {
    count: AtomicU32,
    level: u32,
    /// Published in the IDRs and not yet freed by `free_pid`. Changed under
    /// pidmap_lock only.
    hashed: AtomicBool,
    /// Port of `pid->rcu`: the IDRs' reference is dropped through it, a
    /// grace period after `free_pid`.
    rcu: RcuHead,
    /// Port of `pid->ino`: the pidfs inode number, set at publication.
    ino: AtomicU64,
    /// Port of `pid->pidfs_node`: the pid in pidfs's tree (pidmap_lock).
    pidfs_node: RBTreeLink,
    /// Port of `pid->tasks[PIDTYPE_MAX]`: tasks using this pid, by type.
    tasks: PerPidType<HlistHead>,
    numbers: [Upid; 0],
}

/// The layout of a pid of `level`: the header, then `level + 1` upids.
/// One formula for the caches and the heap, so a cached object is always
/// exactly the size the pid code writes (a host test checks it against
/// `Layout::extend`).
fn pid_layout(level: u32) -> Layout {
    pid_cache_layout(level as usize)
}

/// Levels whose pids come from per-CPU object caches (deeper pids, rare,
/// go straight to the heap).
pub(crate) const PID_CACHED_LEVELS: usize = 4;

/// Linux's pid caches are `SLAB_HWCACHE_ALIGN`: each pid starts a cache
/// line and no two pids share one, so a pid one CPU writes never sits on a
/// line with a pid another CPU writes (which would make the benchmark's
/// false sharing depend on where the allocator happened to put them).
pub(crate) const PID_ALIGN: usize = 64;

const fn pid_cache_layout(level: usize) -> Layout {
    let size = core::mem::offset_of!(Pid, numbers) + (level + 1) * core::mem::size_of::<Upid>();
    let align = if core::mem::align_of::<Pid>() > PID_ALIGN {
        core::mem::align_of::<Pid>()
    } else {
        PID_ALIGN
    };
    match Layout::from_size_align(size.next_multiple_of(align), align) {
        Ok(l) => l,
        Err(_) => panic!("bad pid layout"),
    }
}

static PID_CACHES: [RcuObjCache; PID_CACHED_LEVELS] = [
    RcuObjCache::new("pid_0", pid_cache_layout(0)),
    RcuObjCache::new("pid_1", pid_cache_layout(1)),
    RcuObjCache::new("pid_2", pid_cache_layout(2)),
    RcuObjCache::new("pid_3", pid_cache_layout(3)),
];

/// The per-CPU caches pids of levels `0..PID_CACHED_LEVELS` come from.
pub(crate) fn pid_caches() -> &'static [RcuObjCache] {
    &PID_CACHES
}

/// The seam all `struct pid` memory comes from (Linux:
/// `kmem_cache_alloc(ns->pid_cachep)`, one cache per level): uninitialised
/// memory for a pid of `level`, sized for its level, or `None` when memory
/// is short (or [`FaultSite::PidAlloc`] fires). [`pid_struct_free`] gives
/// it back.
pub(crate) fn pid_struct_alloc(level: u32) -> Option<NonNull<Pid>> {
    if should_fail(FaultSite::PidAlloc) {
        return None;
    }
    if let Some(cache) = PID_CACHES.get(level as usize) {
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
pub(crate) unsafe fn pid_struct_free(pid: NonNull<Pid>, level: u32) {
    if let Some(cache) = PID_CACHES.get(level as usize) {
        // SAFETY: the caller guarantees it came from this level's cache.
        return unsafe { cache.free(pid.cast()) };
    }
    // SAFETY: the caller guarantees origin and layout.
    unsafe { dealloc(pid.as_ptr().cast(), pid_layout(level)) }
}

/// A counted reference to a pid (`get_pid` clones it, dropping it is
/// `put_pid`).
///
/// The pid's `count` is the refcount. A published pid holds one reference
/// for the IDRs, which `free_pid` hands to `call_rcu(delayed_put_pid)`, so
/// a lockless reader that found the pid before it was unhashed can still
/// take a reference; `alloc_pid` returns a second one as the caller's
/// `PidRef`. (Linux hands out its one reference uncounted; a counted handle
/// is what makes the Rust API safe.)
pub(crate) struct PidRef {
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
    pub(crate) fn level(&self) -> u32 {
        self.header().level
    }

    /// Port of `pid->numbers[]`: one upid per level, root first.
    pub(crate) fn numbers(&self) -> &[Upid] {
        // SAFETY: `level + 1` upids follow the header; all are initialised
        // before a `PidRef` to a published pid exists, and are immutable.
        unsafe {
            core::slice::from_raw_parts(Self::numbers_ptr(self.ptr), self.level() as usize + 1)
        }
    }

    /// Port of `pid_nr()`: the number in the root namespace.
    pub(crate) fn nr(&self) -> i32 {
        self.numbers()[0].nr
    }

    /// Port of `ns_of_pid()`: the namespace the pid was allocated in.
    pub(crate) fn ns(&self) -> &PidNamespace {
        self.numbers()[self.level() as usize].ns()
    }

    /// Port of `pidfs_ino()`: the pidfs inode number (0 before publication).
    #[cfg(test)]
    pub(crate) fn ino(&self) -> u64 {
        self.header().ino.load(Ordering::Relaxed)
    }

    /// The reference count (for tests and assertions).
    #[cfg(test)]
    pub(crate) fn count(&self) -> u32 {
        self.header().count.load(Ordering::Relaxed)
    }

    /// Port of `pid->tasks[type]`: the tasks attached with this type.
    /// Changing the list needs tasklist_lock.
    pub(crate) fn tasks(&self, ty: PidType) -> &HlistHead {
        &self.header().tasks[ty]
    }

    /// Port of `pid_has_task()`.
    pub(crate) fn pid_has_task(&self, ty: PidType) -> bool {
        !self.tasks(ty).is_empty()
    }

    /// The raw pid, for intrusive structures of the task code.
    pub(crate) fn as_ptr(&self) -> NonNull<Pid> {
        self.ptr
    }

    /// Gives up the handle without dropping its reference.
    #[cfg(test)]
    pub(crate) fn into_raw(self) -> NonNull<Pid> {
        core::mem::ManuallyDrop::new(self).ptr
    }

    /// Takes back a handle given up with [`into_raw`](Self::into_raw).
    ///
    /// # Safety
    /// `ptr` came from `into_raw` and its reference is not used otherwise.
    pub(crate) unsafe fn from_raw(ptr: NonNull<Pid>) -> PidRef {
        PidRef { ptr }
    }

    /// Whether two handles name the same pid.
    pub(crate) fn ptr_eq(a: &PidRef, b: &PidRef) -> bool {
        a.ptr == b.ptr
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
            // Still hashed means an IDR still points at it: a use after
            // free, whatever the build.
            assert!(
                !(*pid.as_ptr()).hashed.load(Ordering::Relaxed),
                "pid freed while still published"
            );
            let ns = (*Self::numbers_ptr(pid).add(level as usize)).ns;
            put_pid_ns(ns);
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
        let nrs: ::alloc::vec::Vec<i32> = self.numbers().iter().map(|u| u.nr).collect();
        write!(f, "Pid{nrs:?}")
    }
}

/// Port of `get_pid()`.
#[cfg(test)]
pub(crate) fn get_pid(pid: &PidRef) -> PidRef {
    pid.clone()
}

/// Port of `put_pid()`.
#[cfg(test)]
pub(crate) fn put_pid(pid: PidRef) {
    drop(pid)
}

/// Port of `pid_nr_ns()`: `pid`'s number in `ns`, 0 if it has none there.
pub(crate) fn pid_nr_ns(pid: &PidRef, ns: &PidNamespace) -> i32 {
    match pid.numbers().get(ns.level() as usize) {
        Some(upid) if ptr::eq(upid.ns, ns) => upid.nr,
        _ => 0,
    }
}

/// `pidmap_lock`. It guards the namespaces' [`namespace::PidMap`]s, which live in
/// the namespaces, so it holds no data: its guard is the proof. On a cache
/// line of its own, as Linux's `__cacheline_aligned_in_smp`.
static PIDMAP_LOCK: CacheAligned<RawSpin> = CacheAligned(RawSpin::named("pidmap_lock"));

/// Holding `pidmap_lock`, taken with IRQ discipline `D` (which also says
/// how the drop releases it). Proof of the lock for [`PidNamespace::map`].
///
/// `alloc_pid`, `free_pid` and `disable_pid_allocation` take the kernel
/// version ([`StrategyPair`]) they act as: its `AllocPidStrategy` and the
/// IRQ discipline of its `pidmap_lock` (6.14: `spin_lock_irq` /
/// `irqsave`; 6.15 on: `spin_lock`), each a `PidmapGuard` whose type names
/// the discipline; [`PidNamespace::map`] demands one.
pub(crate) struct PidmapGuard<D: IrqDiscipline>(#[allow(dead_code)] RawGuard<'static, RawSpin, D>);

impl<D: IrqDiscipline> PidmapGuard<D> {
    /// Takes `pidmap_lock` with discipline `D`.
    #[inline]
    pub(super) fn lock() -> Self {
        let g = PidmapGuard(IrqLock::<_, D>::of(&PIDMAP_LOCK.0).lock_guard());
        lockctx::acquired(Tracked::Pidmap);
        g
    }
}

impl<D: IrqDiscipline> Drop for PidmapGuard<D> {
    fn drop(&mut self) {
        // Before the field's drop unlocks.
        lockctx::releasing(Tracked::Pidmap);
    }
}

/// `spin_lock_irq(&pidmap_lock)`: interrupts must be on; unlocking turns
/// them back on.
#[inline]
pub(crate) fn pidmap_lock_irq() -> PidmapGuard<Irq> {
    PidmapGuard::lock()
}

/// `spin_lock_irqsave(&pidmap_lock, flags)`: unlocking restores the
/// interrupt state found here.
#[inline]
pub(crate) fn pidmap_lock_irqsave() -> PidmapGuard<IrqSave> {
    PidmapGuard::lock()
}

/// `spin_lock(&pidmap_lock)`: interrupts as they are (6.15 on).
#[inline]
pub(crate) fn pidmap_lock() -> PidmapGuard<Plain> {
    PidmapGuard::lock()
}

/// Port of `free_pid()` as `version` has it: takes the pid out of every
/// namespace's IDR, keeps `pid_allocated` (waking the child reaper when
/// only it is left, marking the namespace dead when its last pid goes
/// before it ever had an init), and drops the IDRs' reference along with
/// `pid`. Calling it again for a pid already freed (through a clone) only
/// drops that handle. 6.14 takes `pidmap_lock` with `spin_lock_irqsave`,
/// 6.15 on with `spin_lock`.
pub(crate) fn free_pid(pid: PidRef, version: &StrategyPair) {
    crate::strategy::per_version!(version.index, free_pid_as(pid))
}

/// [`free_pid`] as the version at index `V` compiles it.
// A function of its own, as pid.c's free_pid is in Linux (a compilation
// unit of its own): see `per_version!` in strategy.rs.
#[inline(never)]
pub(crate) fn free_pid_as<const V: u8>(pid: PidRef) {
    let version = StrategyPair::of::<V>();
    lockctx::record_free(|| pid.nr());
    // A pid of a lock-free tree is freed without pidmap_lock, whatever
    // version releases it (only `lockless` allocates there).
    let lockfree = pid.ns().lockfree().is_some();
    // Where the pid was added decides (a pid allocated by one version may
    // be freed by another in the tests; each kernel uses its own scheme).
    let pidfs_locked = !pidfs::added_hashed(pid.header());
    let hashed = match version.pidmap_irq {
        _ if lockfree => unhash_pid_lockless(&pid),
        PidmapIrq::Off => unhash_pid(&pid, pidmap_lock_irqsave(), pidfs_locked),
        PidmapIrq::Untouched => unhash_pid(&pid, pidmap_lock(), pidfs_locked),
    };
    let stats = &PID_STATS[platform::cpu_id()];
    bump(&stats.free_calls, 1);
    bump(&stats.free_locks, u64::from(!lockfree));
    if hashed {
        // call_rcu(&pid->rcu, delayed_put_pid): lockless readers
        // (find_pid_ns) may still hold the pointer the IDRs held.
        // SAFETY: the head is the pid's own and unqueued (a pid is unhashed
        // once); the IDRs' reference keeps the pid alive until the callback
        // drops it.
        unsafe { call_rcu(&raw const pid.header().rcu as *mut RcuHead, delayed_put_pid) };
    }
    drop(pid);
}

/// `free_pid`'s critical section; releases `g`. Returns whether the pid
/// was still hashed (and so is unhashed now). Up to 6.19 pidfs lets go of
/// the pid under the lock (`pidfs_locked`); 7.0 after the unlock.
#[inline(always)]
fn unhash_pid<D: IrqDiscipline>(pid: &PidRef, mut g: PidmapGuard<D>, pidfs_locked: bool) -> bool {
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
        if pidfs_locked {
            // SAFETY: a hashed pid was added to pidfs by its publication.
            unsafe { pidfs::pidfs_remove_pid(&mut g, pid.ptr.as_ptr()) };
        }
        pid.header().hashed.store(false, Ordering::Relaxed);
    }
    drop(g);
    if hashed && !pidfs_locked {
        // SAFETY: 7.0 added the pid to the hashed table after publishing it.
        unsafe { pidfs::pidfs_remove_pid_hashed(pid.ptr.as_ptr()) };
    }
    hashed
}

/// `free_pid`'s work for a pid of a lock-free tree, with no lock: each
/// level's number removed, then the level uncounted (waking the reaper at
/// 2 or 1, the namespace dead if its first pid goes), then pidfs. Returns
/// whether the pid was still hashed (one caller wins if two race).
///
/// Linux uncounts, then removes, both under `pidmap_lock`, so whoever
/// takes the lock sees both or neither. Without the lock the number goes
/// first: whoever sees the count fall (the reaper woken at 2 or 1) and
/// then looks the number up or asks for it finds it free.
fn unhash_pid_lockless(pid: &PidRef) -> bool {
    if !pid.header().hashed.swap(false, Ordering::AcqRel) {
        return false;
    }
    for upid in pid.numbers() {
        let ns = upid.ns();
        let lf = ns
            .lockfree()
            .expect("a lock-free tree's namespaces are all lock-free");
        // SAFETY: the pid claimed and published this number at alloc_pid
        // and only its free_pid (this one: `hashed` was ours to clear)
        // removes it.
        unsafe { lf.idr.remove(upid.nr as u32) };
        if let 2 | 1 = lf.allocated.remove() {
            ns.wake_child_reaper();
        }
    }
    // SAFETY: a hashed lock-free pid was added to pidfs's table at
    // publication.
    unsafe { pidfs::pidfs_remove_pid_hashed(pid.ptr.as_ptr()) };
    true
}

/// Port of `delayed_put_pid()`: drops the IDRs' reference of a freed pid.
///
/// # Safety
/// `head` is the `rcu` field of a pid unhashed by `free_pid`, whose IDR
/// reference is still held.
unsafe fn delayed_put_pid(head: *mut RcuHead) {
    // SAFETY: per the contract (container_of), and the reference is the
    // IDRs', handed to this callback.
    unsafe {
        let pid = head.byte_sub(core::mem::offset_of!(Pid, rcu)).cast::<Pid>();
        drop(PidRef::from_raw(NonNull::new_unchecked(pid)));
    }
}

/// Port of `find_get_pid()` in `ns`: `find_pid_ns()` under
/// `rcu_read_lock`, without `pidmap_lock`, then `get_pid()`. The pid may
/// be unhashed meanwhile (as in Linux, the caller then finds no task).
pub(crate) fn find_pid_ns(nr: i32, ns: &PidNamespace) -> Option<PidRef> {
    let nr = u32::try_from(nr).ok()?;
    let rcu = rcu_read_lock();
    let p = match ns.lockfree() {
        Some(lf) if nr < crate::klib::idr::lockfree::LF_ID_LIMIT => lf.idr.find(nr, &rcu),
        Some(_) => ptr::null_mut(),
        None => ns.idr_rcu().find(nr, &rcu),
    };
    let p = NonNull::new(p)?;
    // SAFETY: a pid found in the IDR holds the IDRs' reference until a
    // grace period after free_pid unhashed it (delayed_put_pid), and this
    // read-side section began before that grace period could end.
    unsafe { p.as_ref() }.count.fetch_add(1, Ordering::Relaxed);
    drop(rcu);
    Some(PidRef { ptr: p })
}

mod alloc;
mod allocated;
pub(crate) mod namespace;
pub(crate) mod pidfs;
mod stats;

pub(crate) use alloc::{alloc_pid, alloc_pid_as};
use stats::{PID_STATS, bump};
pub(crate) use stats::{pid_stats_this_cpu, pid_stats_total};

#[cfg(test)]
mod tests;
