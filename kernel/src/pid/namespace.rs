//! Pid namespaces (Linux's kernel/pid_namespace.c and the namespace half of
//! kernel/pid.c).
//!
//! Each namespace is its own id space for pids: a [`PidNamespace`] has a
//! level, a parent, an IDR of pids, a `pid_max`, a child reaper and a count
//! of live pids whose flag says whether it still accepts new ones
//! ([`disable_pid_allocation`] clears it when its init dies). Its IDR and
//! count are the [`PidMap`] that `pidmap_lock` protects, or, in a tree
//! built lock-free ([`PidNamespace::new_root_lockless`]), a [`LockFree`]
//! map and atomic count. Namespaces are created with
//! [`create_pid_namespace`] under a root such as [`init_pid_ns`].

use alloc::sync::Arc;
use core::cell::UnsafeCell;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use crate::klib::errno::Errno;
use crate::klib::idr::lockfree::LfIdr;
use crate::klib::idr::{Idr, IdrRcu};
use crate::pid::allocated::PidAllocated;
use crate::pid::{Pid, PidmapGuard, pidmap_lock_irqsave};
use crate::strategy::{PidmapIrq, StrategyPair};
use crate::sync::irq::IrqDiscipline;
use spin::LazyLock;

/// Deepest namespace level (Linux: `MAX_PID_NS_LEVEL`).
pub(crate) const MAX_PID_NS_LEVEL: u32 = 32;
/// `pid_allocated` flag: the namespace accepts new pids.
pub(crate) const PIDNS_ADDING: u32 = 1 << 31;
/// Ids below this are skipped once the cursor has passed them (daemons
/// started at boot keep low numbers).
pub(crate) const RESERVED_PIDS: i32 = 300;
/// Default `pid_max` (Linux: `PID_MAX_DEFAULT`, 32768).
pub(crate) const PID_MAX_DEFAULT: i32 = 0x8000;
/// Largest `pid_max` (Linux: `PID_MAX_LIMIT` on 64-bit, 4M).
pub(crate) const PID_MAX_LIMIT: i32 = 4 * 1024 * 1024;
/// Smallest `pid_max` (Linux: `pid_max_min = RESERVED_PIDS + 1`).
pub(crate) const PID_MAX_MIN: i32 = RESERVED_PIDS + 1;

/// The state `pidmap_lock` protects in each namespace.
///
/// Every namespace's IDR and `pid_allocated` are protected by the one
/// global `pidmap_lock` (see [`PidmapGuard`]): they sit in an `UnsafeCell`
/// reached only through [`PidNamespace::map`], which demands the lock's
/// guard.
pub(crate) struct PidMap {
    /// Port of `ns->idr`: pid numbers of this namespace.
    pub(crate) idr: Idr<Pid>,
    /// Port of `ns->pid_allocated`: [`PIDNS_ADDING`] plus live pids.
    pub(crate) pid_allocated: u32,
}

/// A lock-free namespace's id space (the `lockless` strategy): ids are
/// claimed in an [`LfIdr`] and counted in a [`PidAllocated`] word, with no
/// `pidmap_lock`.
pub(crate) struct LockFree {
    pub(crate) idr: LfIdr<Pid>,
    pub(crate) allocated: PidAllocated,
}

/// Port of `struct pid_namespace`.
///
/// A namespace has a `level` (0 for the root, at most
/// [`MAX_PID_NS_LEVEL`]), a parent, and its own id space: an [`Idr`] of
/// pids with its cyclic cursor, a `pid_max` (`PID_MAX_LIMIT` for a child
/// at creation, as in Linux 6.14+; settable within 301..=4,194,304), a
/// `child_reaper` and the `pid_allocated` count. `pid_allocated` starts at
/// [`PIDNS_ADDING`]: the flag says the namespace still accepts new pids,
/// the low bits count live ones. When its init dies,
/// [`disable_pid_allocation`] clears the flag and `alloc_pid` fails with
/// ENOMEM from then on.
///
/// The IDR and `pid_allocated` are the [`PidMap`], under `pidmap_lock`;
/// in a lock-free tree (every namespace below a root made with
/// [`new_root_lockless`](Self::new_root_lockless)) they are [`LockFree`]
/// instead, and only the `lockless` strategy allocates there.
/// `pid_max` and `child_reaper` are read without the lock (`READ_ONCE` in
/// Linux), so they are atomics.
///
/// Lifetime is reference counted with `Arc` (Linux: `get_pid_ns` /
/// `put_pid_ns`): a child holds its parent, and every `struct pid` holds the
/// namespace it was allocated in, hence all its ancestors.
pub(crate) struct PidNamespace {
    level: u32,
    /// `ns->idr` as lockless readers see it (`find_pid_ns`).
    idr_rcu: IdrRcu<Pid>,
    /// This is `init_pid_ns` (static in Linux: never counted or freed).
    init: bool,
    parent: Option<Arc<PidNamespace>>,
    pid_max: AtomicI32,
    child_reaper: AtomicPtr<()>,
    reaper_wakeups: AtomicU64,
    /// Mirror of `pid_allocated & PIDNS_ADDING`, cleared under pidmap_lock
    /// with it, for `copy_process`'s recheck under tasklist_lock (Linux
    /// reads `pid_allocated` there without pidmap_lock).
    adding: AtomicBool,
    map: UnsafeCell<PidMap>,
    /// The id space of a lock-free tree (then `map` stays empty).
    lockfree: Option<alloc::boxed::Box<LockFree>>,
}

static NR_PID_NS: AtomicUsize = AtomicUsize::new(0);

/// Pid namespaces alive (the root included once built).
pub(crate) fn nr_pid_namespaces() -> usize {
    NR_PID_NS.load(Ordering::Relaxed)
}

impl Drop for PidNamespace {
    fn drop(&mut self) {
        NR_PID_NS.fetch_sub(1, Ordering::Relaxed);
    }
}

// SAFETY: `map` is only reached through `PidNamespace::map`, which needs
// the guard of the global pidmap_lock (one holder at a time, and the `&mut`
// borrow of the guard allows one map at a time); every other field is
// immutable or atomic. The IDR's raw pointers are nodes it owns and pids
// kept alive by the references the IDR holds.
unsafe impl Sync for PidNamespace {}
// SAFETY: as above; nothing in a namespace is tied to a thread.
unsafe impl Send for PidNamespace {}

/// Snapshot of a namespace's id space, taken under pidmap_lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PidNsStats {
    /// Allocated ids (published pids plus reservations in flight).
    pub(crate) ids: u32,
    /// IDR nodes in use.
    pub(crate) nodes: u32,
    /// The cyclic cursor (`idr_next`).
    pub(crate) cursor: u32,
    /// `pid_allocated`.
    pub(crate) pid_allocated: u32,
}

impl PidNamespace {
    fn new(parent: Option<Arc<PidNamespace>>, lockfree: bool) -> Self {
        NR_PID_NS.fetch_add(1, Ordering::Relaxed);
        let (level, pid_max) = match &parent {
            // Linux 6.14+ (create_pid_namespace): a child starts at the
            // limit; each level's own pid_max bounds ids at that level.
            Some(p) => (p.level + 1, PID_MAX_LIMIT),
            None => (0, PID_MAX_DEFAULT),
        };
        let idr = Idr::new();
        // SAFETY: the view lives in the namespace beside the map that owns
        // the IDR, so no longer than the IDR.
        let idr_rcu = unsafe { idr.rcu_view() };
        PidNamespace {
            level,
            init: false,
            idr_rcu,
            parent,
            pid_max: AtomicI32::new(pid_max),
            child_reaper: AtomicPtr::new(core::ptr::null_mut()),
            reaper_wakeups: AtomicU64::new(0),
            adding: AtomicBool::new(true),
            map: UnsafeCell::new(PidMap {
                idr,
                pid_allocated: PIDNS_ADDING,
            }),
            lockfree: lockfree.then(|| {
                alloc::boxed::Box::new(LockFree {
                    idr: LfIdr::new(),
                    allocated: PidAllocated::new(),
                })
            }),
        }
    }

    /// A new root (level 0) namespace with its own id space. The kernel's
    /// root is [`init_pid_ns`]; tests and benchmarks build private roots so
    /// they share nothing but `pidmap_lock`.
    pub(crate) fn new_root() -> Arc<PidNamespace> {
        Arc::new(PidNamespace::new(None, false))
    }

    /// A new root whose tree is lock-free: it and every namespace created
    /// below it keep their ids in a [`LockFree`] map, where only the
    /// `lockless` strategy allocates (the others get EINVAL).
    pub(crate) fn new_root_lockless() -> Arc<PidNamespace> {
        Arc::new(PidNamespace::new(None, true))
    }

    /// The lock-free id space, if this namespace's tree is lock-free.
    pub(crate) fn lockfree(&self) -> Option<&LockFree> {
        self.lockfree.as_deref()
    }

    /// This namespace's IDR for lookups under `rcu_read_lock`.
    pub(crate) fn idr_rcu(&self) -> &IdrRcu<Pid> {
        &self.idr_rcu
    }

    /// The level: 0 for a root.
    pub(crate) fn level(&self) -> u32 {
        self.level
    }

    /// The parent namespace (`None` for a root).
    pub(crate) fn parent(&self) -> Option<&Arc<PidNamespace>> {
        self.parent.as_ref()
    }

    /// `READ_ONCE(ns->pid_max)`: ids allocated here are below it.
    pub(crate) fn pid_max(&self) -> i32 {
        self.pid_max.load(Ordering::Relaxed)
    }

    /// The `kernel.pid_max` sysctl of this namespace (`proc_dointvec_minmax`
    /// over `pid_max_min..=pid_max_max`): EINVAL outside
    /// [`PID_MAX_MIN`]..=[`PID_MAX_LIMIT`]. Live pids above a lowered
    /// `pid_max` stay; new ones are allocated below it.
    pub(crate) fn set_pid_max(&self, pid_max: i32) -> Result<(), Errno> {
        if !(PID_MAX_MIN..=PID_MAX_LIMIT).contains(&pid_max) {
            return Err(Errno::EINVAL);
        }
        self.pid_max.store(pid_max, Ordering::Relaxed);
        Ok(())
    }

    /// `ns->child_reaper`: the namespace's init task, `None` before it has
    /// one. Only compared and woken here; the task code keeps it alive.
    pub(crate) fn child_reaper(&self) -> Option<Reaper> {
        NonNull::new(self.child_reaper.load(Ordering::Acquire)).map(Reaper)
    }

    /// Sets (or clears) the child reaper.
    pub(crate) fn set_child_reaper(&self, reaper: Option<Reaper>) {
        let p = reaper.map_or(core::ptr::null_mut(), |r| r.0.as_ptr());
        self.child_reaper.store(p, Ordering::Release);
    }

    /// Whether the namespace still accepts pids (`PIDNS_ADDING`), read
    /// without pidmap_lock.
    pub(crate) fn accepts_pids(&self) -> bool {
        match self.lockfree() {
            Some(lf) => lf.allocated.is_adding(),
            None => self.adding.load(Ordering::Acquire),
        }
    }

    /// Clears `PIDNS_ADDING` in `map` (this namespace's, under pidmap_lock)
    /// and its mirror.
    pub(crate) fn stop_adding(&self, map: &mut PidMap) {
        map.pid_allocated &= !PIDNS_ADDING;
        self.adding.store(false, Ordering::Release);
    }

    /// How many times `free_pid` woke this namespace's reaper.
    #[cfg(test)]
    pub(crate) fn reaper_wakeups(&self) -> u64 {
        self.reaper_wakeups.load(Ordering::Relaxed)
    }

    /// The state pidmap_lock protects; the guard proves the lock is held.
    pub(crate) fn map<'g, D: IrqDiscipline>(
        &'g self,
        _pidmap_lock: &'g mut PidmapGuard<D>,
    ) -> &'g mut PidMap {
        // SAFETY: the guard means this CPU holds pidmap_lock, which every
        // access to any namespace's map needs, and its `&mut` borrow keeps
        // this the only map reference for as long as it lives.
        unsafe { &mut *self.map.get() }
    }

    /// `pid_allocated`, read under pidmap_lock.
    #[cfg(test)]
    pub(crate) fn pid_allocated(&self) -> u32 {
        if let Some(lf) = self.lockfree() {
            return lf.allocated.get();
        }
        let mut g = pidmap_lock_irqsave();
        self.map(&mut g).pid_allocated
    }

    /// Id-space statistics, read under pidmap_lock (a lock-free map's
    /// without it: exact when nothing allocates there meanwhile).
    pub(crate) fn stats(&self) -> PidNsStats {
        if let Some(lf) = self.lockfree() {
            return PidNsStats {
                ids: lf.idr.count_ids(),
                nodes: lf.idr.nr_nodes(),
                cursor: lf.idr.get_cursor(),
                pid_allocated: lf.allocated.get(),
            };
        }
        let mut g = pidmap_lock_irqsave();
        let map = self.map(&mut g);
        PidNsStats {
            ids: map.idr.nr_ids(),
            nodes: map.idr.nr_nodes(),
            cursor: map.idr.get_cursor(),
            pid_allocated: map.pid_allocated,
        }
    }

    /// Port of `wake_up_process(ns->child_reaper)` in `free_pid`: counts
    /// the wake-up and calls the hook the task code installed. Runs under
    /// pidmap_lock with interrupts off, as in Linux.
    pub(crate) fn wake_child_reaper(&self) {
        self.reaper_wakeups.fetch_add(1, Ordering::Relaxed);
        let hook = REAPER_WAKE_HOOK.load(Ordering::Acquire);
        if let (false, Some(reaper)) = (hook.is_null(), self.child_reaper()) {
            // SAFETY: only `set_reaper_wake_hook` stores non-null values,
            // and it stores `ReaperWakeHook` function pointers.
            let hook: ReaperWakeHook = unsafe { core::mem::transmute(hook) };
            hook(self, reaper);
        }
    }
}

/// A namespace's child reaper as pid/ holds it: Linux's `struct
/// task_struct *child_reaper`, a pointer whose type pid.c never needs.
/// task/ owns tasks and converts (`Reaper::of`, `Reaper::task`, in
/// task/); here it is only compared and handed to the wake-up hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Reaper(NonNull<()>);

impl Reaper {
    /// A reaper from a task's address (task/ calls this).
    pub(crate) fn from_raw(task: NonNull<()>) -> Self {
        Reaper(task)
    }

    /// The task's address.
    pub(crate) fn as_raw(self) -> NonNull<()> {
        self.0
    }
}

/// What `free_pid` calls to wake a namespace's child reaper.
pub(crate) type ReaperWakeHook = fn(&PidNamespace, Reaper);

static REAPER_WAKE_HOOK: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

/// Installs (or with `None` removes) the reaper wake-up hook. It runs under
/// pidmap_lock with interrupts off, so it must not take pidmap_lock or
/// sleep.
#[cfg(test)]
pub(crate) fn set_reaper_wake_hook(hook: Option<ReaperWakeHook>) {
    let p = hook.map_or(core::ptr::null_mut(), |f| f as *mut ());
    REAPER_WAKE_HOOK.store(p, Ordering::Release);
}

static INIT_PID_NS: LazyLock<Arc<PidNamespace>> = LazyLock::new(|| {
    let mut ns = PidNamespace::new(None, false);
    ns.init = true;
    Arc::new(ns)
});

/// Port of `init_pid_ns`: the kernel's root namespace, built on first use
/// (Linux: statically, with `pid_idr_init()` at boot). The boot CPU uses
/// it before any other CPU runs, so the lazy initialisation never has a
/// second CPU spinning on it.
pub(crate) fn init_pid_ns() -> &'static Arc<PidNamespace> {
    &INIT_PID_NS
}

/// Port of `get_pid_ns()`: the namespace as a counted raw reference, for a
/// pid to keep. `init_pid_ns` is not counted (Linux's is static): the root
/// is every pid's at `ns_depth` 0, and counting it would be one globally
/// shared atomic pair per spawn.
pub(crate) fn get_pid_ns(ns: &PidNamespace) -> *const PidNamespace {
    if !ns.init {
        // SAFETY: every namespace lives in an `Arc` (`new_root`,
        // `create_pid_namespace`), and `ns` borrows a live one.
        unsafe { Arc::increment_strong_count(ns) };
    }
    ns
}

/// Port of `put_pid_ns()`: drops a reference taken by [`get_pid_ns`].
///
/// # Safety
/// `ns` came from `get_pid_ns` and that reference is not used again.
pub(crate) unsafe fn put_pid_ns(ns: *const PidNamespace) {
    // SAFETY: per the contract, `ns` is alive (its reference is held).
    if !unsafe { (*ns).init } {
        // SAFETY: the reference `get_pid_ns` counted.
        drop(unsafe { Arc::from_raw(ns) });
    }
}

/// Port of `create_pid_namespace()`: a child of `parent` (level + 1,
/// `pid_max` at `PID_MAX_LIMIT`, no reaper yet, accepting pids). ENOSPC beyond
/// [`MAX_PID_NS_LEVEL`]. The namespace itself is allocated infallibly
/// (`Arc::new`): it is rare and small, unlike pids and nodes.
pub(crate) fn create_pid_namespace(parent: &Arc<PidNamespace>) -> Result<Arc<PidNamespace>, Errno> {
    if parent.level() >= MAX_PID_NS_LEVEL {
        return Err(Errno::ENOSPC);
    }
    let lockfree = parent.lockfree.is_some();
    Ok(Arc::new(PidNamespace::new(Some(parent.clone()), lockfree)))
}

/// Port of `disable_pid_allocation()` as `version` has it (6.14:
/// `spin_lock_irq`, 6.15 on: `spin_lock`): the namespace accepts no new
/// pids (its init is dying); `alloc_pid` then fails with ENOMEM. In a
/// lock-free tree, one atomic AND on its count word, whatever the version.
pub(crate) fn disable_pid_allocation(ns: &PidNamespace, version: &StrategyPair) {
    if let Some(lf) = ns.lockfree() {
        lf.allocated.disable();
        return;
    }
    match version.pidmap_irq {
        PidmapIrq::Off => ns.stop_adding(ns.map(&mut crate::pid::pidmap_lock_irq())),
        PidmapIrq::Untouched => ns.stop_adding(ns.map(&mut crate::pid::pidmap_lock())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_enospc() {
        let mut ns = PidNamespace::new_root();
        assert_eq!(ns.level(), 0);
        for level in 1..=MAX_PID_NS_LEVEL {
            ns = create_pid_namespace(&ns).unwrap();
            assert_eq!(ns.level(), level);
        }
        assert_eq!(create_pid_namespace(&ns).err(), Some(Errno::ENOSPC));
        assert_eq!(ns.parent().unwrap().level(), MAX_PID_NS_LEVEL - 1);
    }

    #[test]
    fn a_child_starts_at_the_limit_and_each_level_keeps_its_own() {
        let root = PidNamespace::new_root();
        assert_eq!(root.pid_max(), PID_MAX_DEFAULT);
        assert_eq!(root.set_pid_max(300), Err(Errno::EINVAL));
        assert_eq!(root.set_pid_max(PID_MAX_LIMIT + 1), Err(Errno::EINVAL));
        assert_eq!(root.set_pid_max(PID_MAX_LIMIT), Ok(()));
        assert_eq!(root.set_pid_max(PID_MAX_MIN), Ok(()));
        let child = create_pid_namespace(&root).unwrap();
        assert_eq!(
            child.pid_max(),
            PID_MAX_LIMIT,
            "not the parent's {PID_MAX_MIN}"
        );
        child.set_pid_max(1000).unwrap();
        assert_eq!(root.pid_max(), PID_MAX_MIN, "the parent keeps its own");
    }

    #[test]
    fn new_namespace_state() {
        let ns = create_pid_namespace(init_pid_ns()).unwrap();
        assert!(ns.child_reaper().is_none());
        let s = ns.stats();
        assert_eq!(
            s,
            PidNsStats {
                ids: 0,
                nodes: 0,
                cursor: 0,
                pid_allocated: PIDNS_ADDING
            }
        );
        let mut task = 0u64;
        let init = Reaper::from_raw(NonNull::from(&mut task).cast());
        ns.set_child_reaper(Some(init));
        assert_eq!(ns.child_reaper(), Some(init));
        ns.set_child_reaper(None);
        disable_pid_allocation(&ns, StrategyPair::stock());
        assert_eq!(ns.pid_allocated(), 0);
    }
}
