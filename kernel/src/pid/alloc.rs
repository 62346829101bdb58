//! `alloc_pid` (Linux's kernel/pid.c) in both strategies: everything that
//! needs no lock is prepared first ([`prepare`], [`new_pid`]), numbers are
//! reserved level by level under `pidmap_lock`, then [`publish`] makes the
//! pid visible in every namespace at once; a failure goes through
//! [`rollback`]. The Linux strategies differ only in how often they take
//! the lock (see [`AllocPidStrategy`]); [`alloc_pid_lockless`] takes none,
//! in namespaces whose maps are lock-free.

use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use arrayvec::ArrayVec;
use intrusive_collections::RBTreeLink;

use super::namespace::LockFree;
use super::namespace::{
    MAX_PID_NS_LEVEL, PIDNS_ADDING, PidMap, PidNamespace, RESERVED_PIDS, get_pid_ns,
};
use super::pidfs::{pidfs_add_pid, pidfs_add_pid_hashed};
use super::stats::{PID_STATS, bump};
use super::{PIDTYPE_MAX, PerPidType, Pid, PidRef, PidmapGuard, Upid, pid_struct_alloc};
use crate::klib::errno::Errno;
use crate::klib::hlist::HlistHead;
use crate::klib::idr::{idr_preload, idr_preload_end};
use crate::platform;
use crate::rcu::RcuHead;
use crate::strategy::{AllocPidStrategy, PidfsStrategy, PidmapIrq, StrategyPair};
use crate::sync::irq::{Irq, IrqDiscipline, Plain};

/// Everything `alloc_pid` decides before taking pidmap_lock: per level,
/// from the innermost outwards (Linux's `set_tid[ns->level - i]`), the
/// requested tid (0: any) and the `pid_max` snapshot. Only the levels the
/// namespace has are written (Linux's on-stack arrays are not cleared
/// either): zeroing all 33 would add work to every fork that stock's
/// alloc_pid does not do.
struct Prep {
    levels: ArrayVec<(i32, i32), { MAX_PID_NS_LEVEL as usize + 1 }>,
}

impl Prep {
    /// The tid and `pid_max` of the level `depth` steps out from the
    /// innermost.
    #[inline]
    fn level(&self, depth: usize) -> (i32, i32) {
        self.levels[depth]
    }
}

/// Lock accounting of one `alloc_pid` call.
#[derive(Default)]
struct AllocCounts {
    locks: u64,
    repreloads: u64,
}

impl AllocCounts {
    /// Takes `pidmap_lock` with discipline `D`: `spin_lock_irq` up to 6.14,
    /// `spin_lock` from 6.15.
    #[inline(always)]
    fn lock<D: IrqDiscipline>(&mut self) -> PidmapGuard<D> {
        self.locks += 1;
        PidmapGuard::lock()
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
fn new_pid(ns: &PidNamespace) -> Result<NewPid, Errno> {
    let level = ns.level();
    let ptr = pid_struct_alloc(level).ok_or(Errno::ENOMEM)?;
    // SAFETY: fresh memory of `pid_layout(level)`: write the header, then
    // every upid, before anything reads them.
    unsafe {
        ptr.as_ptr().write(Pid {
            count: AtomicU32::new(1),
            level,
            hashed: AtomicBool::new(false),
            rcu: RcuHead::new(),
            ino: AtomicU64::new(0),
            pidfs_node: RBTreeLink::new(),
            tasks: PerPidType([const { HlistHead::new() }; PIDTYPE_MAX]),
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
            ns: get_pid_ns(ns),
        });
    }
    Ok(NewPid(PidRef { ptr }))
}

/// One level's checks, done without the lock: the requested tid (if any)
/// is in range, asks for pid 1 or has a reaper to go to, and the caller may
/// ask for it (`checkpoint_restore_ns_capable` over that level); plus the
/// level's `pid_max` snapshot. Returns `(tid, pid_max)`, tid 0 for "any".
fn check_level(
    level_ns: &PidNamespace,
    set_tid: &[i32],
    depth: usize,
    has_cap: bool,
) -> Result<(i32, i32), Errno> {
    let pid_max = level_ns.pid_max();
    let Some(&tid) = set_tid.get(depth) else {
        return Ok((0, pid_max));
    };
    if tid < 1 || tid >= pid_max {
        return Err(Errno::EINVAL);
    }
    // Also fail if a pid != 1 is requested and no pid 1 exists.
    if tid != 1 && level_ns.child_reaper().is_none() {
        return Err(Errno::EINVAL);
    }
    if !has_cap {
        return Err(Errno::EPERM);
    }
    Ok((tid, pid_max))
}

/// The namespaces a pid of `ns` gets a number in, innermost first, each
/// with its level (its index in `numbers`) and depth (its index in
/// `set_tid`): Linux's `for (i = ns->level; i >= 0; i--, tmp = tmp->parent)`.
fn levels(ns: &PidNamespace) -> impl Iterator<Item = (u32, usize, &PidNamespace)> {
    let top = ns.level();
    core::iter::successors(Some(ns), |n| n.parent().map(|p| &**p))
        .enumerate()
        .map(move |(depth, n)| (top - depth as u32, depth, n))
}

/// The change's prologue: every level checked before the lock is taken,
/// into the caller's `prep` (filled in place: returning it by value would
/// copy all 33 levels' room on every fork).
fn prepare(
    ns: &PidNamespace,
    set_tid: &[i32],
    has_cap: bool,
    prep: &mut Prep,
) -> Result<(), Errno> {
    for (_, depth, level_ns) in levels(ns) {
        prep.levels
            .push(check_level(level_ns, set_tid, depth, has_cap)?);
    }
    Ok(())
}

/// One level's number: the requested tid, or the next one cyclically.
/// Runs under pidmap_lock; IDR nodes come from the node cache, or this
/// CPU's preload pool when the cache fails.
pub(super) fn alloc_nr(map: &mut PidMap, tid: i32, pid_max: i32) -> Result<i32, Errno> {
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
fn rollback<D: IrqDiscipline>(
    g: &mut PidmapGuard<D>,
    pid: &NewPid,
    ns: &PidNamespace,
    failed: i64,
) {
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
/// it, under pidmap_lock; ENOMEM if `ns` no longer accepts pids. Up to
/// 6.19 pidfs numbers and links it here too (`pidfs_locked`).
fn publish<D: IrqDiscipline>(
    g: &mut PidmapGuard<D>,
    pid: NewPid,
    ns: &PidNamespace,
    pidfs_locked: bool,
) -> Result<PidRef, (NewPid, Errno)> {
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
    if pidfs_locked {
        // SAFETY: the pid stays alive while published (the IDRs'
        // reference) and free_pid removes it from pidfs before dropping
        // that reference.
        unsafe { pidfs_add_pid(g, raw) };
    }
    for level in (0..=ns.level()).rev() {
        let (nr, level_ns) = pid.number(level);
        let map = level_ns.map(g);
        let old = map.idr.replace(raw, nr as u32);
        // Anything else there would be a second pid under one number.
        assert!(
            matches!(old, Ok(p) if p.is_null()),
            "alloc_pid: number {nr} at level {level} is already published"
        );
        map.pid_allocated += 1;
    }
    Ok(pid.0)
}

/// The pre-change alloc_pid: per level, check the level, then preload +
/// lock + allocate + unlock; then lock again to check `PIDNS_ADDING` and
/// publish. Checking level by level means an outer level's bad tid is
/// only seen once the inner levels got their numbers (so `[taken, beyond
/// the outer pid_max]` is EEXIST here and EINVAL in the change).
fn alloc_pid_stock<D: IrqDiscipline>(
    ns: &PidNamespace,
    mut pid: NewPid,
    set_tid: &[i32],
    has_cap: bool,
    pidfs_locked: bool,
    counts: &mut AllocCounts,
) -> Result<PidRef, Errno> {
    // The level that failed (-1: none); the levels above it have numbers.
    let mut failed = -1;
    let mut err = None;
    for (level, depth, level_ns) in levels(ns) {
        let nr = check_level(level_ns, set_tid, depth, has_cap).and_then(|(tid, pid_max)| {
            // Like Linux's idr_preload(), ignore a failed fill: the
            // insertion reports ENOMEM if the pool really runs dry.
            let _ = idr_preload();
            let nr = {
                let mut g = counts.lock::<D>();
                alloc_nr(level_ns.map(&mut g), tid, pid_max)
            };
            idr_preload_end();
            nr
        });
        match nr {
            Ok(nr) => pid.set_number(level, nr, level_ns),
            Err(e) => {
                (failed, err) = (i64::from(level), Some(e));
                break;
            }
        }
    }
    if err.is_none() {
        let _ = idr_preload();
        let mut g = counts.lock::<D>();
        let published = publish(&mut g, pid, ns, pidfs_locked);
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
    let mut g = counts.lock::<D>();
    rollback(&mut g, &pid, ns, failed);
    drop(g);
    Err(err.unwrap_or(Errno::ENOMEM))
}

/// The changed alloc_pid: one pidmap_lock acquisition for every level and
/// the publication.
fn alloc_pid_single_lock<D: IrqDiscipline>(
    ns: &PidNamespace,
    mut pid: NewPid,
    prep: &Prep,
    pidfs_locked: bool,
    counts: &mut AllocCounts,
) -> Result<PidRef, Errno> {
    let top = ns.level() as i64;
    let mut level_ns: &PidNamespace = ns;
    let mut i = top;
    let mut retried_preload = false;
    let _ = idr_preload();
    let mut g = counts.lock::<D>();
    let err = loop {
        if i < 0 {
            match publish(&mut g, pid, ns, pidfs_locked) {
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
        let (tid, pid_max) = prep.level(depth);
        match alloc_nr(level_ns.map(&mut g), tid, pid_max) {
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
                g = counts.lock::<D>();
            }
            Err(e) => break e,
        }
    };
    rollback(&mut g, &pid, ns, i);
    drop(g);
    idr_preload_end();
    Err(err)
}

/// Port of `alloc_pid()` as kernel `version` has it: a new pid in `ns` and
/// all its ancestors.
///
/// `set_tid` asks for specific numbers, innermost namespace first, for at
/// most `ns.level() + 1` levels (the rest are allocated cyclically);
/// asking needs the checkpoint/restore capability over the namespaces,
/// which the caller states in `has_checkpoint_restore_cap`. Errors, in
/// order: EINVAL (too many tids), EINVAL (`version` is `lockless` and `ns`
/// is not lock-free, or the reverse), ENOMEM (no memory for the pid), EINVAL
/// (a tid out of `1..pid_max`, or not 1 where the namespace has no child
/// reaper), EPERM (no capability), EEXIST (a tid is taken), EAGAIN (no
/// free number), ENOMEM (no IDR node even after refilling the pool), ENOMEM
/// (the namespace no longer accepts pids).
///
/// Must be called with interrupts on (it may allocate, and up to 6.14
/// takes pidmap_lock `spin_lock_irq` style).
pub(crate) fn alloc_pid(
    ns: &PidNamespace,
    set_tid: &[i32],
    version: &StrategyPair,
    has_checkpoint_restore_cap: bool,
) -> Result<PidRef, Errno> {
    crate::strategy::per_version!(
        version.index,
        alloc_pid_as(ns, set_tid, has_checkpoint_restore_cap)
    )
}

/// [`alloc_pid`] as the version at index `V` compiles it.
// A function of its own, as pid.c's alloc_pid is in Linux (a compilation
// unit of its own): see `per_version!` in strategy.rs.
#[inline(never)]
pub(crate) fn alloc_pid_as<const V: u8>(
    ns: &PidNamespace,
    set_tid: &[i32],
    has_checkpoint_restore_cap: bool,
) -> Result<PidRef, Errno> {
    let version = StrategyPair::of::<V>();
    let mut counts = AllocCounts::default();
    let cap = has_checkpoint_restore_cap;
    let result = match version.pidmap_irq {
        _ if version.lockless() => {
            alloc_pid_counted::<Plain>(ns, set_tid, version, cap, &mut counts)
        }
        PidmapIrq::Off => alloc_pid_counted::<Irq>(ns, set_tid, version, cap, &mut counts),
        PidmapIrq::Untouched => alloc_pid_counted::<Plain>(ns, set_tid, version, cap, &mut counts),
    };
    // 7.0: pidfs numbers and links the pid after pidmap_lock is dropped
    // (the lock-free version did it in its own publication).
    if let Ok(pid) = &result
        && version.pidfs == PidfsStrategy::Hashed
        && !version.lockless()
    {
        // SAFETY: the pid is published and alive; free_pid removes it from
        // pidfs after its own unlock, before dropping the IDRs' reference.
        unsafe { pidfs_add_pid_hashed(pid.ptr.as_ptr()) };
    }
    let stats = &PID_STATS[platform::cpu_id()];
    bump(&stats.alloc_calls, 1);
    bump(&stats.alloc_failed, u64::from(result.is_err()));
    bump(&stats.alloc_locks, counts.locks);
    bump(&stats.alloc_repreloads, counts.repreloads);
    result
}

fn alloc_pid_counted<D: IrqDiscipline>(
    ns: &PidNamespace,
    set_tid: &[i32],
    version: &StrategyPair,
    has_cap: bool,
    counts: &mut AllocCounts,
) -> Result<PidRef, Errno> {
    let strategy = version.alloc;
    let pidfs_locked = version.pidfs == PidfsStrategy::UnderPidmapLock;
    // set_tid may name a pid for each level from ns outwards, never more.
    if set_tid.len() > ns.level() as usize + 1 {
        return Err(Errno::EINVAL);
    }
    // A namespace's ids live in one kind of map: the Linux strategies'
    // under pidmap_lock, or the lock-free one's.
    if ns.lockfree().is_some() != (strategy == AllocPidStrategy::Lockless) {
        return Err(Errno::EINVAL);
    }
    let pid = new_pid(ns)?;
    match strategy {
        AllocPidStrategy::Stock => {
            alloc_pid_stock::<D>(ns, pid, set_tid, has_cap, pidfs_locked, counts)
        }
        AllocPidStrategy::SingleLock => {
            let mut prep = Prep {
                levels: ArrayVec::new(),
            };
            prepare(ns, set_tid, has_cap, &mut prep)?;
            alloc_pid_single_lock::<D>(ns, pid, &prep, pidfs_locked, counts)
        }
        AllocPidStrategy::Lockless => {
            let mut prep = Prep {
                levels: ArrayVec::new(),
            };
            prepare(ns, set_tid, has_cap, &mut prep)?;
            alloc_pid_lockless(ns, pid, &prep)
        }
    }
}

/// The lock-free namespace at `level_ns` (every namespace of a lock-free
/// tree has one).
fn lf(level_ns: &PidNamespace) -> &LockFree {
    level_ns
        .lockfree()
        .expect("a lock-free tree's namespaces are all lock-free")
}

/// One level's number without a lock: the requested tid claimed exactly
/// (EEXIST when taken), or the next free one from the cursor, wrapping to
/// `RESERVED_PIDS` once the cursor has passed it (EAGAIN when full).
fn claim_nr(map: &LockFree, tid: i32, pid_max: i32) -> Result<i32, Errno> {
    if tid != 0 {
        return map.idr.claim_exact(tid as u32).map(|()| tid);
    }
    match map.idr.claim_cyclic(RESERVED_PIDS as u32, pid_max as u32) {
        Err(Errno::ENOSPC) => Err(Errno::EAGAIN),
        r => r.map(|nr| nr as i32),
    }
}

/// The lock-free alloc_pid (the `lockless` strategy): every level checked
/// first (as the alloc change does), then each level's number claimed with
/// atomic bit operations in its [`LfIdr`](crate::klib::idr::lockfree::LfIdr),
/// innermost first; then the innermost count is bumped by a CAS that fails
/// once the namespace stops adding (ENOMEM, as Linux), the outer ones by
/// an atomic add, the pid gets its pidfs number, and each level's slot is
/// published with a release store, outermost first as Linux's loop does.
/// No `pidmap_lock`: a failure gives back the numbers claimed so far the
/// same way, and resets the cursor if the namespace never got a pid.
fn alloc_pid_lockless(ns: &PidNamespace, mut pid: NewPid, prep: &Prep) -> Result<PidRef, Errno> {
    // The level that failed (-1: none); the levels above it have numbers.
    let mut failed = -1;
    let mut err = None;
    for (level, depth, level_ns) in levels(ns) {
        let (tid, pid_max) = prep.level(depth);
        match claim_nr(lf(level_ns), tid, pid_max) {
            Ok(nr) => pid.set_number(level, nr, level_ns),
            Err(e) => {
                (failed, err) = (i64::from(level), Some(e));
                break;
            }
        }
    }
    if err.is_none() {
        match lf(ns).allocated.try_add() {
            Ok(_) => return Ok(publish_lockless(pid, ns)),
            Err(e) => err = Some(e),
        }
    }
    for level in (failed + 1) as u32..=ns.level() {
        let (nr, level_ns) = pid.number(level);
        // SAFETY: this call claimed `nr` there and published nothing.
        unsafe { lf(level_ns).idr.remove(nr as u32) };
    }
    let map = lf(ns);
    if map.allocated.get() == PIDNS_ADDING {
        map.idr.set_cursor(0);
    }
    Err(err.unwrap_or(Errno::ENOMEM))
}

/// Counts the outer levels, numbers the pid in pidfs and publishes it in
/// every level (the innermost was counted by the caller's `try_add`).
fn publish_lockless(pid: NewPid, ns: &PidNamespace) -> PidRef {
    let header = pid.0.header();
    header.count.store(2, Ordering::Relaxed);
    header.hashed.store(true, Ordering::Relaxed);
    let raw = pid.0.ptr.as_ptr();
    // SAFETY: the pid stays alive while published (the maps' reference)
    // and free_pid removes it from pidfs before dropping that reference.
    unsafe { pidfs_add_pid_hashed(raw) };
    for level in (0..=ns.level()).rev() {
        let (nr, level_ns) = pid.number(level);
        let map = lf(level_ns);
        if level != ns.level() {
            map.allocated.add();
        }
        // SAFETY: this call claimed `nr` in this map; only its free_pid
        // removes it, after publication.
        let r = unsafe { map.idr.publish(nr as u32, raw) };
        assert!(
            r.is_ok(),
            "alloc_pid: number {nr} at level {level} lost its claim"
        );
    }
    pid.0
}
