//! Host tests of `alloc_pid` / `free_pid`: one per error rule, the Linux
//! details (cursor, RESERVED_PIDS, pid_allocated), lock counts, references,
//! leaks, a model-based property test running every kernel version and the
//! lock-free strategy side by side, and std-thread concurrency. The rules
//! tests run every pair, `lockless` in a lock-free root ([`new_root_for`]).

use super::alloc::alloc_nr;
use super::*;
use crate::klib::errno::Errno;
use crate::klib::fault_inject::{FaultMode, FaultSite, fault_inject};
use crate::klib::idr::{IDR_PRELOAD_SIZE, idr_preload_count};
use crate::pid::namespace::{
    MAX_PID_NS_LEVEL, PID_MAX_DEFAULT, PID_MAX_LIMIT, PID_MAX_MIN, RESERVED_PIDS, Reaper,
    create_pid_namespace, disable_pid_allocation, set_reaper_wake_hook,
};
use crate::platform::{HostThreads, Parallel};
use crate::strategy::{AllocPidStrategy, LOCKLESS, PAIRS, StrategyPair};
use ::alloc::sync::Arc;
use core::ptr::NonNull;

use crate::task::Task;
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64};
use proptest::prelude::*;
use std::collections::{BTreeSet, HashSet};
use std::sync::Mutex;
use std::vec::Vec;

/// 6.14's `alloc_pid` and 7.0's, each with its own `pidmap_lock` discipline.
const STOCK: &StrategyPair = &PAIRS[0];
const ONCE: &StrategyPair = &PAIRS[3];

fn here() -> Option<usize> {
    Some(platform::cpu_id())
}

/// A task standing in for every namespace's init (never woken here).
fn reaper() -> Option<Reaper> {
    static REAPER: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let t = *REAPER.get_or_init(|| Task::adopt("reaper", 0).unwrap().into_raw() as usize);
    // SAFETY: leaked above: the task lives as long as the tests.
    Some(Reaper::of(unsafe { &*(t as *const Task) }))
}

/// A root `strategy` can allocate in: lock-free for `lockless`.
fn new_root_for(strategy: &StrategyPair) -> Arc<PidNamespace> {
    if strategy.lockless() {
        PidNamespace::new_root_lockless()
    } else {
        PidNamespace::new_root()
    }
}

/// A strategy that allocates in `ns`'s tree (for inits and set-up pids).
fn setup_for(ns: &PidNamespace) -> &'static StrategyPair {
    if ns.lockfree().is_some() {
        &LOCKLESS
    } else {
        STOCK
    }
}

/// Every strategy pair: the Linux versions and `lockless`.
fn all() -> impl Iterator<Item = &'static StrategyPair> {
    StrategyPair::all()
}

/// Moves `ns`'s cyclic cursor (`idr_set_cursor`).
fn set_cursor(ns: &PidNamespace, c: u32) {
    match ns.lockfree() {
        Some(lf) => lf.idr.set_cursor(c),
        None => ns.map(&mut pidmap_lock_irq()).idr.set_cursor(c),
    }
}

/// IDR nodes `ns` holds, where a Linux map must be back to `before`; a
/// lock-free map keeps its inner nodes (and the cursor's leaf) until it
/// is dropped, so there only the count is reported, unchecked.
fn nodes_back(ns: &PidNamespace, before: u32) -> bool {
    ns.lockfree().is_some() || ns.stats().nodes == before
}

/// A root with an init (pid 1) and a reaper, like a booted kernel's.
fn root_with_init(strategy: &'static StrategyPair) -> (Arc<PidNamespace>, PidRef) {
    let ns = new_root_for(strategy);
    let init = alloc_pid(&ns, &[], strategy, false).unwrap();
    assert_eq!(init.nr(), 1);
    ns.set_child_reaper(reaper());
    (ns, init)
}

/// A chain of `depth` namespaces below `root`, each with its init.
fn chain(root: &Arc<PidNamespace>, depth: usize) -> (Vec<Arc<PidNamespace>>, Vec<PidRef>) {
    let mut nss = vec![root.clone()];
    let mut inits = Vec::new();
    for _ in 0..depth {
        let ns = create_pid_namespace(nss.last().unwrap()).unwrap();
        let init = alloc_pid(&ns, &[], setup_for(&ns), false).unwrap();
        assert_eq!(init.numbers().last().unwrap().nr, 1);
        ns.set_child_reaper(reaper());
        nss.push(ns);
        inits.push(init);
    }
    (nss, inits)
}

fn ids_of(ns: &PidNamespace) -> Vec<u32> {
    let mut v = Vec::new();
    if let Some(lf) = ns.lockfree() {
        lf.idr.for_each(|id, _| v.push(id));
        return v;
    }
    let mut g = pidmap_lock_irqsave();
    ns.map(&mut g).idr.for_each(|id, _| v.push(id));
    v
}

fn nrs(pid: &PidRef) -> Vec<i32> {
    pid.numbers().iter().map(|u| u.nr).collect()
}

#[test]
fn too_many_tids_is_einval() {
    for s in all() {
        let (root, _init) = root_with_init(s);
        assert_eq!(
            alloc_pid(&root, &[5, 6], s, true).err(),
            Some(Errno::EINVAL)
        );
        let (nss, _inits) = chain(&root, 1);
        assert_eq!(
            alloc_pid(&nss[1], &[5, 6, 7], s, true).err(),
            Some(Errno::EINVAL)
        );
        assert!(alloc_pid(&nss[1], &[5, 6], s, true).is_ok());
    }
}

#[test]
fn pid_struct_allocation_failure_is_enomem() {
    for s in all() {
        let (root, _init) = root_with_init(s);
        let before = root.stats();
        fault_inject(FaultSite::PidAlloc, FaultMode::FailNext(1), here());
        // The struct allocation comes before the tid checks.
        assert_eq!(alloc_pid(&root, &[0], s, false).err(), Some(Errno::ENOMEM));
        assert_eq!(root.stats(), before);
        assert!(alloc_pid(&root, &[], s, false).is_ok());
    }
}

#[test]
fn tid_out_of_range_is_einval() {
    for s in all() {
        let (root, _init) = root_with_init(s);
        root.set_pid_max(1000).unwrap();
        for tid in [0, -1, 1000, i32::MAX] {
            assert_eq!(alloc_pid(&root, &[tid], s, true).err(), Some(Errno::EINVAL));
        }
        assert_eq!(alloc_pid(&root, &[999], s, true).unwrap().nr(), 999);
        // Range checks come before the capability check.
        assert_eq!(alloc_pid(&root, &[0], s, false).err(), Some(Errno::EINVAL));
    }
}

#[test]
fn tid_other_than_1_without_reaper_is_einval() {
    for s in all() {
        let root = new_root_for(s);
        assert_eq!(alloc_pid(&root, &[2], s, true).err(), Some(Errno::EINVAL));
        // An outer level without a reaper fails too.
        let (outer, _init) = root_with_init(s);
        let inner = create_pid_namespace(&outer).unwrap();
        outer.set_child_reaper(None);
        assert_eq!(
            alloc_pid(&inner, &[1, 7], s, true).err(),
            Some(Errno::EINVAL)
        );
        // Pid 1 needs no reaper: it is the reaper-to-be.
        let init = alloc_pid(&root, &[1], s, true).unwrap();
        assert_eq!(init.nr(), 1);
        assert_eq!(root.stats().cursor, 0, "set_tid leaves the cursor alone");
    }
}

#[test]
fn tid_without_capability_is_eperm() {
    for s in all() {
        let (root, _init) = root_with_init(s);
        assert_eq!(alloc_pid(&root, &[50], s, false).err(), Some(Errno::EPERM));
        assert!(alloc_pid(&root, &[], s, false).is_ok(), "no tid, no check");
    }
}

#[test]
fn tid_in_use_is_eexist_and_rolls_back() {
    for s in all() {
        let (root, _init) = root_with_init(s);
        let (nss, _inits) = chain(&root, 2);
        let taken = alloc_pid(&root, &[40], s, true).unwrap();
        let before: Vec<_> = nss.iter().map(|ns| ids_of(ns)).collect();
        // Inner two levels get their numbers, the root's 40 is taken.
        assert_eq!(
            alloc_pid(&nss[2], &[9, 9, 40], s, true).err(),
            Some(Errno::EEXIST)
        );
        let after: Vec<_> = nss.iter().map(|ns| ids_of(ns)).collect();
        assert_eq!(before, after, "every number taken was given back");
        drop(taken);
    }
}

#[test]
fn exhausted_range_is_eagain() {
    for s in all() {
        let (root, _init) = root_with_init(s);
        root.set_pid_max(PID_MAX_MIN).unwrap();
        let mut live = Vec::new();
        for want in 2..PID_MAX_MIN {
            let pid = alloc_pid(&root, &[], s, false).unwrap();
            assert_eq!(pid.nr(), want);
            live.push(pid);
        }
        assert_eq!(alloc_pid(&root, &[], s, false).err(), Some(Errno::EAGAIN));
        // After the cursor passed RESERVED_PIDS, only ids >= 300 come back.
        let low = live.remove(10);
        assert_eq!(low.nr(), 12);
        free_pid(low, s);
        assert_eq!(alloc_pid(&root, &[], s, false).err(), Some(Errno::EAGAIN));
        let high = live.pop().unwrap();
        assert_eq!(high.nr(), 300);
        free_pid(high, s);
        assert_eq!(alloc_pid(&root, &[], s, false).unwrap().nr(), 300);
        for pid in live {
            free_pid(pid, s);
        }
    }
}

/// Arms (or with `FaultMode::Off`, disarms) both ways an insertion gets
/// a node on this CPU: the node cache (`NodeAlloc`) fails every time, the
/// preload pool (`PreloadTake`) looks dry as `pool` says.
fn fail_nodes(pool: FaultMode) {
    let cache = match pool {
        FaultMode::Off => FaultMode::Off,
        _ => FaultMode::FailEvery(1),
    };
    fault_inject(FaultSite::NodeAlloc, cache, here());
    fault_inject(FaultSite::PreloadTake, pool, here());
}

#[test]
fn node_allocation_failure_is_enomem_after_one_repreload() {
    for s in &PAIRS {
        let (root, _init) = root_with_init(s);
        // Pid 64 starts a new leaf, so it needs a node.
        root.map(&mut pidmap_lock_irq()).idr.set_cursor(64);
        let before = pid_stats_this_cpu();
        fail_nodes(FaultMode::FailEvery(1));
        let r = alloc_pid(&root, &[], s, false);
        fail_nodes(FaultMode::Off);
        assert_eq!(r.err(), Some(Errno::ENOMEM));
        let d = pid_stats_this_cpu().since(&before);
        match s.alloc {
            AllocPidStrategy::Stock => assert_eq!((d.alloc_locks, d.alloc_repreloads), (2, 0)),
            AllocPidStrategy::SingleLock => assert_eq!((d.alloc_locks, d.alloc_repreloads), (2, 1)),
            AllocPidStrategy::Lockless => unreachable!("PAIRS are the Linux versions"),
        }
        assert_eq!(ids_of(&root), [1]);
        assert_eq!(
            root.stats().cursor,
            64,
            "a failed cyclic alloc keeps the cursor"
        );
        // A single failure: the change's re-preload rides it out, the stock
        // code (one preload per level, no retry) does not.
        fail_nodes(FaultMode::FailNext(1));
        let r = alloc_pid(&root, &[], s, false);
        fail_nodes(FaultMode::Off);
        match s.alloc {
            AllocPidStrategy::Stock => assert_eq!(r.err(), Some(Errno::ENOMEM)),
            AllocPidStrategy::SingleLock => assert_eq!(r.unwrap().nr(), 64),
            AllocPidStrategy::Lockless => unreachable!("PAIRS are the Linux versions"),
        }
    }
}

#[test]
fn a_failing_node_cache_is_covered_by_the_preload_pool() {
    for s in &PAIRS {
        let (root, _init) = root_with_init(s);
        root.map(&mut pidmap_lock_irq()).idr.set_cursor(64);
        let before = pid_stats_this_cpu();
        fault_inject(FaultSite::NodeAlloc, FaultMode::FailEvery(1), here());
        let r = alloc_pid(&root, &[], s, false);
        fault_inject(FaultSite::NodeAlloc, FaultMode::Off, here());
        assert_eq!(r.unwrap().nr(), 64);
        let d = pid_stats_this_cpu().since(&before);
        let want = match s.alloc {
            AllocPidStrategy::Stock => 2,
            AllocPidStrategy::SingleLock => 1,
            AllocPidStrategy::Lockless => unreachable!("PAIRS are the Linux versions"),
        };
        assert_eq!((d.alloc_locks, d.alloc_repreloads), (want, 0));
    }
}

/// A root and a chain of three namespaces below it, each with pid `tall`
/// taken (so every level's tree is as tall as that needs) and its cursor
/// at `cursor`; then one `SingleLock` allocation at the deepest level with
/// `faults` armed on the node supply ([`fail_nodes`]). Checks that the pid
/// got `cursor` at every level and returns the allocation's
/// `(alloc_locks, alloc_repreloads)`.
fn single_lock_alloc_at(tall: i32, cursor: u32, faults: FaultMode) -> (u64, u64) {
    let (root, _init) = root_with_init(STOCK);
    let (nss, _inits) = chain(&root, 3);
    let _tall = alloc_pid(&nss[3], &[tall; 4], STOCK, true).unwrap();
    for ns in &nss {
        ns.map(&mut pidmap_lock_irq()).idr.set_cursor(cursor);
    }
    let before = pid_stats_this_cpu();
    fail_nodes(faults);
    let r = alloc_pid(&nss[3], &[], ONCE, false);
    fail_nodes(FaultMode::Off);
    let d = pid_stats_this_cpu().since(&before);
    let pid = r.unwrap_or_else(|e| panic!("{e} {d:?}"));
    assert_eq!(nrs(&pid), [cursor as i32; 4]);
    (d.alloc_locks, d.alloc_repreloads)
}

#[test]
fn single_lock_repreloads_once_per_level() {
    // Two-level trees everywhere, so that pid 128 needs exactly one node.
    // Every level needs a fresh leaf, the node cache fails, and every
    // second pool take finds it dry: levels 2, 1 and 0 each fail once and
    // succeed after one re-preload.
    assert_eq!(
        single_lock_alloc_at(100, 128, FaultMode::FailEvery(2)),
        (4, 3)
    );
}

#[test]
fn dead_namespace_is_enomem() {
    for s in all() {
        let (root, _init) = root_with_init(s);
        let (nss, _inits) = chain(&root, 1);
        disable_pid_allocation(&nss[1], s);
        let root_ids = ids_of(&root);
        assert_eq!(alloc_pid(&nss[1], &[], s, false).err(), Some(Errno::ENOMEM));
        assert_eq!(
            ids_of(&root),
            root_ids,
            "the parent's number was given back"
        );
        assert_eq!(ids_of(&nss[1]), [1]);
        // The parent still works.
        assert!(alloc_pid(&root, &[], s, false).is_ok());
    }
}

#[test]
fn failed_first_pid_resets_the_cursor() {
    for s in all() {
        let (root, _init) = root_with_init(s);
        let child = create_pid_namespace(&root).unwrap();
        // The child's number (1) is taken, then the root's requested
        // number collides: the child never got its first pid.
        let _taken = alloc_pid(&root, &[77], s, true).unwrap();
        child.set_child_reaper(reaper());
        assert_eq!(
            alloc_pid(&child, &[1, 77], s, true).err(),
            Some(Errno::EEXIST)
        );
        child.set_child_reaper(None);
        set_cursor(&child, 5);
        root.set_pid_max(PID_MAX_MIN).unwrap();
        let mut fill = Vec::new();
        while let Ok(p) = alloc_pid(&root, &[], s, false) {
            fill.push(p);
        }
        // Cyclic in the child fine, root full -> EAGAIN, and the child's
        // cursor goes back to 0 so its init still gets pid 1.
        assert_eq!(alloc_pid(&child, &[], s, false).err(), Some(Errno::EAGAIN));
        assert_eq!(child.stats().cursor, 0);
        assert!(ids_of(&child).is_empty());
        let p = fill.pop().unwrap();
        free_pid(p, s);
        assert_eq!(alloc_pid(&child, &[], s, false).unwrap().numbers()[1].nr, 1);
    }
}

/// Held by the tests that install a reaper wake-up hook (there is one
/// hook for the whole kernel).
static WAKE_HOOK_USERS: Mutex<()> = Mutex::new(());

#[test]
fn free_pid_accounting_and_reaper_wakeups() {
    static WOKEN: AtomicU64 = AtomicU64::new(0);
    fn hook(_ns: &PidNamespace, _reaper: Reaper) {
        WOKEN.fetch_add(1, Ordering::Relaxed);
    }
    let _hook = WAKE_HOOK_USERS.lock().unwrap_or_else(|e| e.into_inner());
    set_reaper_wake_hook(Some(hook));
    for s in all() {
        let (root, init) = root_with_init(s);
        let a = alloc_pid(&root, &[], s, false).unwrap();
        let b = alloc_pid(&root, &[], s, false).unwrap();
        assert_eq!(root.pid_allocated(), PIDNS_ADDING + 3);
        free_pid(b, s);
        assert_eq!(root.pid_allocated(), PIDNS_ADDING + 2);
        assert_eq!(root.reaper_wakeups(), 0, "no wake-ups while adding");
        // The init is dying: no more pids, and the last ones wake it.
        disable_pid_allocation(&root, s);
        assert_eq!(root.pid_allocated(), 2);
        free_pid(a, s);
        assert_eq!(root.reaper_wakeups(), 1);
        free_pid(init, s);
        assert_eq!(root.reaper_wakeups(), 1, "0 left wakes nobody");
        assert_eq!(root.pid_allocated(), 0);
        assert!(nodes_back(&root, 0));
        // A namespace whose only pid goes before it had a reaper is dead.
        let dead = new_root_for(s);
        let first = alloc_pid(&dead, &[], s, false).unwrap();
        free_pid(first, s);
        assert_eq!(dead.pid_allocated(), 0);
        assert_eq!(alloc_pid(&dead, &[], s, false).err(), Some(Errno::ENOMEM));
    }
    assert!(WOKEN.load(Ordering::Relaxed) >= 2);
    set_reaper_wake_hook(None);
}

#[test]
fn lockless_free_pid_frees_the_number_before_it_wakes_the_reaper() {
    /// The namespace watched, and the number being freed there.
    static WATCHED: AtomicPtr<PidNamespace> = AtomicPtr::new(core::ptr::null_mut());
    static FREEING: AtomicU32 = AtomicU32::new(0);
    /// Wake-ups seen in the watched namespace, and those that still found
    /// the number claimed.
    static WAKES: AtomicU64 = AtomicU64::new(0);
    static STILL_CLAIMED: AtomicU64 = AtomicU64::new(0);
    fn hook(ns: &PidNamespace, _reaper: Reaper) {
        if !core::ptr::eq(ns, WATCHED.load(Ordering::Relaxed)) {
            return;
        }
        WAKES.fetch_add(1, Ordering::Relaxed);
        let lf = ns.lockfree().unwrap();
        if lf.idr.is_allocated(FREEING.load(Ordering::Relaxed)) {
            STILL_CLAIMED.fetch_add(1, Ordering::Relaxed);
        }
    }
    let _hook = WAKE_HOOK_USERS.lock().unwrap_or_else(|e| e.into_inner());
    set_reaper_wake_hook(Some(hook));
    let (root, init) = root_with_init(&LOCKLESS);
    let (nss, inits) = chain(&root, 1);
    let child = &nss[1];
    let a = alloc_pid(child, &[], &LOCKLESS, false).unwrap();
    let b = alloc_pid(child, &[], &LOCKLESS, false).unwrap();
    // The child's init is dying: the reaper waits for its last pids.
    disable_pid_allocation(child, &LOCKLESS);
    WATCHED.store(Arc::as_ptr(child).cast_mut(), Ordering::Relaxed);
    for (pid, left) in [(b, 2), (a, 1)] {
        FREEING.store(pid.numbers()[1].nr as u32, Ordering::Relaxed);
        free_pid(pid, &LOCKLESS);
        assert_eq!(child.pid_allocated(), left);
    }
    WATCHED.store(core::ptr::null_mut(), Ordering::Relaxed);
    set_reaper_wake_hook(None);
    assert_eq!(WAKES.load(Ordering::Relaxed), 2, "woken at 2 and at 1");
    assert_eq!(
        STILL_CLAIMED.load(Ordering::Relaxed),
        0,
        "the woken reaper found the freed number still claimed"
    );
    assert_eq!(ids_of(child), [1]);
    for pid in inits.into_iter().chain([init]) {
        free_pid(pid, &LOCKLESS);
    }
}

#[test]
fn lock_acquisitions_per_operation() {
    for depth in [0usize, 1, 3] {
        for s in all() {
            let (root, _init) = root_with_init(s);
            let (nss, _inits) = chain(&root, depth);
            let ns = nss.last().unwrap();
            let before = pid_stats_this_cpu();
            let pid = alloc_pid(ns, &[], s, false).unwrap();
            let mid = pid_stats_this_cpu();
            free_pid(pid, s);
            let a = mid.since(&before);
            let f = pid_stats_this_cpu().since(&mid);
            let want = match s.alloc {
                AllocPidStrategy::Stock => depth as u64 + 2,
                AllocPidStrategy::SingleLock => 1,
                AllocPidStrategy::Lockless => 0,
            };
            assert_eq!((a.alloc_calls, a.alloc_locks, a.alloc_failed), (1, want, 0));
            assert_eq!((f.free_calls, f.free_locks), (1, u64::from(!s.lockless())));
        }
    }
}

#[test]
fn single_lock_takes_pidmap_lock_once_even_when_every_level_needs_nodes() {
    // Three-level trees everywhere; at a cursor of 8192 every level needs
    // a new internal node and a new leaf: eight nodes, more than one
    // preload holds, so only the node cache lets one hold suffice.
    assert_eq!(single_lock_alloc_at(5000, 8192, FaultMode::Off), (1, 0));
}

#[test]
fn single_lock_takes_pidmap_lock_once_in_steady_state() {
    // Spawn/reap loops three namespaces deep, long enough for every
    // level's cursor to cross leaf and internal-node boundaries. With no
    // other pid kept alive (threadspawn's pattern), every reap leaves
    // each namespace with only its init in slot 0 of its root, so the
    // tree shrinks and the next pid regrows it: two nodes per level,
    // eight in all, more than one preload holds.
    for keep_alive in [0, 3] {
        let (root, _init) = root_with_init(STOCK);
        let (nss, _inits) = chain(&root, 3);
        let ns = nss.last().unwrap();
        let before = pid_stats_this_cpu();
        let mut live = std::collections::VecDeque::new();
        const OPS: u64 = 3 * 4096 + 100;
        for _ in 0..OPS {
            live.push_back(alloc_pid(ns, &[], ONCE, false).unwrap());
            if live.len() > keep_alive {
                free_pid(live.pop_front().unwrap(), STOCK);
            }
        }
        let d = pid_stats_this_cpu().since(&before);
        assert_eq!(d.alloc_calls, OPS);
        assert_eq!(
            (d.alloc_locks, d.alloc_repreloads),
            (OPS, 0),
            "keeping {keep_alive} alive"
        );
        for pid in live {
            free_pid(pid, STOCK);
        }
        assert!(ns.stats().cursor > 3 * 4096, "crossed 4096s");
    }
}

#[test]
fn references_find_and_numbers() {
    let (root, _init) = root_with_init(ONCE);
    let (nss, _inits) = chain(&root, 2);
    let pid = alloc_pid(&nss[2], &[], ONCE, false).unwrap();
    assert_eq!(pid.level(), 2);
    assert_eq!(pid.count(), 2, "the caller's handle and the IDRs'");
    assert!(ptr::eq(pid.ns(), &*nss[2]));
    assert_eq!(nrs(&pid), [4, 3, 2]);
    for (level, ns) in nss.iter().enumerate() {
        assert_eq!(pid_nr_ns(&pid, ns), pid.numbers()[level].nr);
        let found = find_pid_ns(pid.numbers()[level].nr, ns).unwrap();
        assert!(PidRef::ptr_eq(&found, &pid));
    }
    assert_eq!(pid_nr_ns(&pid, &PidNamespace::new_root()), 0);
    let sibling = create_pid_namespace(&nss[1]).unwrap();
    assert_eq!(pid_nr_ns(&pid, &sibling), 0, "same level, other namespace");
    assert!(find_pid_ns(-1, &root).is_none());
    let keep = get_pid(&pid);
    assert_eq!(keep.count(), 3);
    assert!(!keep.pid_has_task(PidType::Pid));
    free_pid(pid, STOCK);
    assert_eq!(
        keep.count(),
        2,
        "the IDRs' reference waits for a grace period"
    );
    crate::rcu::rcu_barrier();
    assert_eq!(keep.count(), 1);
    assert!(find_pid_ns(keep.nr(), &root).is_none());
    assert_eq!(pid_nr_ns(&keep, &root), 4, "numbers outlive the hash");
    free_pid(keep.clone(), STOCK); // Freeing twice only drops the handle.
    assert_eq!(keep.count(), 1);
    put_pid(keep);
}

#[test]
fn reserved_numbers_are_invisible() {
    let (root, _init) = root_with_init(STOCK);
    let mut g = pidmap_lock_irq();
    let map = root.map(&mut g);
    let nr = alloc_nr(map, 0, 1000).unwrap();
    drop(g);
    assert!(find_pid_ns(nr, &root).is_none());
    root.map(&mut pidmap_lock_irq()).idr.remove(nr as u32);
}

#[test]
fn everything_goes_back() {
    for s in all() {
        let (root, init) = root_with_init(s);
        root.set_pid_max(PID_MAX_LIMIT).unwrap();
        let (nss, inits) = chain(&root, 3);
        let start: Vec<_> = nss.iter().map(|ns| ns.stats()).collect();
        let mut live = Vec::new();
        for i in 0..3000 {
            let ns = &nss[i % 4];
            live.push(alloc_pid(ns, &[], s, false).unwrap());
            if i % 3 == 0 {
                free_pid(live.swap_remove(i % live.len()), s);
            }
        }
        assert!(root.stats().nodes > 1);
        for p in live {
            free_pid(p, s);
        }
        let end: Vec<_> = nss.iter().map(|ns| ns.stats()).collect();
        for (ns, (a, b)) in nss.iter().zip(start.iter().zip(&end)) {
            assert_eq!((a.ids, a.pid_allocated), (b.ids, b.pid_allocated));
            assert!(nodes_back(ns, a.nodes), "{s:?}");
        }
        for p in inits.into_iter().rev() {
            free_pid(p, s);
        }
        free_pid(init, s);
        for ns in &nss {
            let st = ns.stats();
            assert_eq!((st.ids, st.pid_allocated), (0, 0));
            assert!(nodes_back(ns, 0), "{s:?}");
        }
        assert!(idr_preload_count() <= IDR_PRELOAD_SIZE);
    }
}

/// Four threads allocate (through `alloc_with(i, cpu)`, at the root and
/// three levels down) and free (through `free_with`) 3,000 pids each,
/// holding at most 9 at a time: no live number may appear twice at any
/// level, and every thread's preload pool stays within its bound.
fn allocate_on_four_threads(
    nss: &[Arc<PidNamespace>],
    alloc_with: &(dyn Fn(usize, usize) -> &'static StrategyPair + Sync),
    free_with: &'static StrategyPair,
) {
    let live: Mutex<HashSet<(usize, i32)>> = Mutex::new(HashSet::new());
    let forget = |pid: &PidRef| {
        let mut set = live.lock().unwrap();
        for (level, u) in pid.numbers().iter().enumerate() {
            set.remove(&(level, u.nr));
        }
    };
    HostThreads(4).run(4, &|cpu| {
        let mut mine: Vec<PidRef> = Vec::new();
        for i in 0..3000usize {
            let depth = if (i / 2 + cpu) % 2 == 0 { 0 } else { 3 };
            let pid = alloc_pid(&nss[depth], &[], alloc_with(i, cpu), false).unwrap();
            {
                let mut set = live.lock().unwrap();
                for (level, u) in pid.numbers().iter().enumerate() {
                    assert!(set.insert((level, u.nr)), "duplicate {level}/{}", u.nr);
                }
            }
            mine.push(pid);
            if mine.len() > 8 {
                let old = mine.swap_remove(i % mine.len());
                forget(&old);
                free_pid(old, free_with);
            }
        }
        for p in mine {
            forget(&p);
            free_pid(p, free_with);
        }
        assert!(idr_preload_count() <= IDR_PRELOAD_SIZE);
    });
}

#[test]
fn concurrent_allocations_are_unique() {
    let (root, init) = root_with_init(STOCK);
    let (nss, inits) = chain(&root, 3);
    allocate_on_four_threads(&nss, &|i, cpu| &PAIRS[(i + cpu) % PAIRS.len()], STOCK);
    for ns in &nss {
        assert_eq!(
            ns.stats().ids,
            1 + (3 - ns.level()),
            "only the inits are left"
        );
    }
    drop(inits);
    drop(init);
}

/// The lock-free strategy: a node that cannot be had is ENOMEM at once
/// (no pool to retry from), and the levels already claimed give their
/// numbers back.
#[test]
fn lockless_node_failure_is_enomem_and_gives_back_what_it_claimed() {
    let (root, _init) = root_with_init(&LOCKLESS);
    let (nss, _inits) = chain(&root, 1);
    // The child's next id shares its init's leaf; the root's (64) needs a
    // new leaf.
    set_cursor(&root, 64);
    let before = pid_stats_this_cpu();
    fault_inject(FaultSite::NodeAlloc, FaultMode::FailNext(1), here());
    let r = alloc_pid(&nss[1], &[], &LOCKLESS, false);
    fault_inject(FaultSite::NodeAlloc, FaultMode::Off, here());
    assert_eq!(r.err(), Some(Errno::ENOMEM));
    assert_eq!(ids_of(&nss[1]), [1], "the child's claim was given back");
    assert_eq!(ids_of(&root), [1, 2]);
    assert_eq!(root.stats().cursor, 64, "a failed claim keeps the cursor");
    let pid = alloc_pid(&nss[1], &[], &LOCKLESS, false).unwrap();
    assert_eq!(nrs(&pid), [64, 3]);
    let d = pid_stats_this_cpu().since(&before);
    assert_eq!((d.alloc_calls, d.alloc_failed, d.alloc_locks), (2, 1, 0));
}

/// Lock-free allocations from four threads, three namespaces deep and at
/// the root: every live number unique at every level, and only the inits
/// left at the end.
#[test]
fn lockless_concurrent_allocations_are_unique() {
    let (root, init) = root_with_init(&LOCKLESS);
    let (nss, inits) = chain(&root, 3);
    allocate_on_four_threads(&nss, &|_, _| &LOCKLESS, &LOCKLESS);
    for ns in &nss {
        let want = 1 + (3 - ns.level());
        assert_eq!(ns.stats().ids, want, "only the inits are left");
        assert_eq!(ns.pid_allocated(), PIDNS_ADDING + want);
    }
    drop(inits);
    drop(init);
}

// ---- Model-based property test ----

#[derive(Clone, Debug)]
enum Op {
    Alloc {
        ns: usize,
        set_tid: Vec<i32>,
        cap: bool,
    },
    Free(usize),
    CreateNs(usize),
    SetPidMax(usize, i32),
    SetReaper(usize),
    Disable(usize),
    SetCursor(usize, u32),
    /// The next allocation runs with every IDR node allocation failing.
    FailNodes,
    /// The next allocation's pid struct allocation fails.
    FailPidStruct,
}

fn op() -> impl Strategy<Value = Op> {
    let tid = prop_oneof![
        Just(-1),
        Just(0),
        1..6i32,
        Just(64),
        Just(299),
        Just(300),
        Just(301),
        Just(1000),
        Just(32767),
        Just(32768)
    ];
    prop_oneof![
        8 => (any::<usize>(), Just(Vec::new()), Just(true))
            .prop_map(|(ns, set_tid, cap)| Op::Alloc { ns, set_tid, cap }),
        3 => (any::<usize>(), proptest::collection::vec(tid, 0..4), prop::bool::weighted(0.8))
            .prop_map(|(ns, set_tid, cap)| Op::Alloc { ns, set_tid, cap }),
        4 => any::<usize>().prop_map(Op::Free),
        2 => any::<usize>().prop_map(Op::CreateNs),
        1 => (any::<usize>(), prop_oneof![Just(300), Just(301), Just(302), Just(400), Just(70_000), Just(PID_MAX_LIMIT), Just(PID_MAX_LIMIT + 1)])
            .prop_map(|(ns, v)| Op::SetPidMax(ns, v)),
        2 => any::<usize>().prop_map(Op::SetReaper),
        1 => any::<usize>().prop_map(Op::Disable),
        1 => (any::<usize>(), prop_oneof![Just(0u32), Just(63), Just(64), Just(299), Just(300), Just(301), Just(399), Just(40_000), Just(4_194_303)])
            .prop_map(|(ns, c)| Op::SetCursor(ns, c)),
        1 => Just(Op::FailNodes),
        1 => Just(Op::FailPidStruct),
    ]
}

#[derive(Clone)]
struct ModelNs {
    level: u32,
    parent: Option<usize>,
    pid_max: i32,
    reaper: bool,
    ids: BTreeSet<u32>,
    cursor: u32,
    pid_allocated: u32,
    wakeups: u64,
}

impl ModelNs {
    /// A new namespace: no pids, no reaper, accepting pids.
    fn new(level: u32, parent: Option<usize>, pid_max: i32) -> Self {
        ModelNs {
            level,
            parent,
            pid_max,
            reaper: false,
            ids: BTreeSet::new(),
            cursor: 0,
            pid_allocated: PIDNS_ADDING,
            wakeups: 0,
        }
    }

    fn first_free(&self, from: u32, max: u32) -> Option<u32> {
        (from..=max).find(|id| !self.ids.contains(id))
    }
}

/// Linux's rules, written down plainly over sets.
struct Model {
    /// Stock checks each level's tid just before allocating at it; the
    /// change checks every level before taking the lock.
    per_level_checks: bool,
    ns: Vec<ModelNs>,
    live: Vec<Vec<(usize, u32)>>,
}

/// One `alloc_pid` call, as the model and the real thing both get it:
/// the namespace, `set_tid`, whether the caller has the capability, and
/// whether the pid struct or the IDR nodes are to fail.
#[derive(Clone, Copy)]
struct AllocReq<'a> {
    ns: usize,
    set_tid: &'a [i32],
    cap: bool,
    fail_pid: bool,
    fail_nodes: bool,
}

type AllocOutcome = Result<Vec<i32>, Errno>;

impl Model {
    fn new(strategy: &StrategyPair) -> Self {
        Model {
            per_level_checks: strategy.alloc == AllocPidStrategy::Stock,
            ns: vec![ModelNs::new(0, None, PID_MAX_DEFAULT)],
            live: Vec::new(),
        }
    }

    fn alloc(&mut self, req: &AllocReq<'_>) -> AllocOutcome {
        let AllocReq {
            ns,
            set_tid,
            cap,
            fail_pid,
            fail_nodes,
        } = *req;
        let mut chain = vec![ns];
        while let Some(p) = self.ns[*chain.last().unwrap()].parent {
            chain.push(p);
        }
        if set_tid.len() > chain.len() {
            return Err(Errno::EINVAL);
        }
        if fail_pid {
            return Err(Errno::ENOMEM);
        }
        let check = |m: &ModelNs, depth: usize| -> Result<(), Errno> {
            let Some(&tid) = set_tid.get(depth) else {
                return Ok(());
            };
            if tid < 1 || tid >= m.pid_max || (tid != 1 && !m.reaper) {
                return Err(Errno::EINVAL);
            }
            if !cap {
                return Err(Errno::EPERM);
            }
            Ok(())
        };
        if !self.per_level_checks {
            for (depth, &n) in chain.iter().enumerate() {
                check(&self.ns[n], depth)?;
            }
        }
        let pid_max: Vec<i32> = chain.iter().map(|&n| self.ns[n].pid_max).collect();
        let mut taken: Vec<(usize, u32)> = Vec::new();
        let mut err = None;
        for (depth, &n) in chain.iter().enumerate() {
            if self.per_level_checks
                && let Err(e) = check(&self.ns[n], depth)
            {
                err = Some(e);
                break;
            }
            let m = &mut self.ns[n];
            let max = pid_max[depth] as u32 - 1;
            let nr = if let Some(&tid) = set_tid.get(depth) {
                if m.ids.contains(&(tid as u32)) {
                    Err(Errno::EEXIST)
                } else {
                    Ok(tid as u32)
                }
            } else {
                let pid_min = if m.cursor > RESERVED_PIDS as u32 {
                    RESERVED_PIDS as u32
                } else {
                    1
                };
                let from = m.cursor.max(pid_min);
                m.first_free(from, max)
                    .or_else(|| {
                        if from > pid_min {
                            m.first_free(pid_min, max)
                        } else {
                            None
                        }
                    })
                    .ok_or(Errno::EAGAIN)
            };
            let nr = match nr {
                Ok(nr) if fail_nodes && !m.ids.iter().any(|&id| id >> 6 == nr >> 6) => {
                    Err(Errno::ENOMEM)
                }
                r => r,
            };
            match nr {
                Ok(nr) => {
                    m.ids.insert(nr);
                    if depth >= set_tid.len() {
                        m.cursor = nr + 1;
                    }
                    taken.push((n, nr));
                }
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        if err.is_none() && self.ns[ns].pid_allocated & PIDNS_ADDING == 0 {
            err = Some(Errno::ENOMEM);
        }
        if let Some(e) = err {
            for (n, nr) in taken {
                self.ns[n].ids.remove(&nr);
            }
            if self.ns[ns].pid_allocated == PIDNS_ADDING {
                self.ns[ns].cursor = 0;
            }
            return Err(e);
        }
        for &(n, _) in &taken {
            self.ns[n].pid_allocated += 1;
        }
        taken.reverse();
        let out = taken.iter().map(|&(_, nr)| nr as i32).collect();
        self.live.push(taken);
        Ok(out)
    }

    fn free(&mut self, pick: usize) {
        let pid = self.live.remove(pick);
        for (n, nr) in pid {
            let m = &mut self.ns[n];
            m.pid_allocated = m.pid_allocated.wrapping_sub(1);
            match m.pid_allocated {
                2 | 1 => m.wakeups += 1,
                PIDNS_ADDING => m.pid_allocated = 0,
                _ => {}
            }
            m.ids.remove(&nr);
        }
    }
}

/// The real thing, one strategy.
struct World {
    strategy: &'static StrategyPair,
    ns: Vec<Arc<PidNamespace>>,
    live: Vec<PidRef>,
}

impl World {
    fn new(strategy: &'static StrategyPair) -> Self {
        World {
            strategy,
            ns: vec![new_root_for(strategy)],
            live: Vec::new(),
        }
    }

    fn alloc(&mut self, req: &AllocReq<'_>) -> AllocOutcome {
        if req.fail_pid {
            fault_inject(FaultSite::PidAlloc, FaultMode::FailNext(1), here());
        }
        // A lock-free map's leaves outlive their ids in ways the model
        // does not track (the cursor's leaf stays): its node failures are
        // tested on their own, not here.
        if req.fail_nodes && !self.strategy.lockless() {
            self::fail_nodes(FaultMode::FailEvery(1));
        }
        let r = alloc_pid(&self.ns[req.ns], req.set_tid, self.strategy, req.cap);
        fault_inject(FaultSite::PidAlloc, FaultMode::Off, here());
        self::fail_nodes(FaultMode::Off);
        let pid = r?;
        let out = nrs(&pid);
        self.live.push(pid);
        Ok(out)
    }
}

fn run_ops(ops: &[Op]) -> Result<(), TestCaseError> {
    for v in all() {
        run_ops_on(ops, &mut Model::new(v), &mut World::new(v))?;
    }
    Ok(())
}

/// Runs `ops` on one strategy's world and its model side by side.
fn run_ops_on(ops: &[Op], model: &mut Model, w: &mut World) -> Result<(), TestCaseError> {
    let (mut fail_nodes, mut fail_pid) = (false, false);
    for op in ops {
        let nns = model.ns.len();
        match *op {
            Op::Alloc {
                ns,
                ref set_tid,
                cap,
            } => {
                let req = AllocReq {
                    ns: ns % nns,
                    set_tid,
                    cap,
                    fail_pid,
                    fail_nodes,
                };
                let model_req = AllocReq {
                    fail_nodes: fail_nodes && !w.strategy.lockless(),
                    ..req
                };
                let want = model.alloc(&model_req);
                let got = w.alloc(&req);
                prop_assert_eq!(&got, &want, "{:?} on {:?}", op, w.strategy);
                (fail_nodes, fail_pid) = (false, false);
            }
            Op::Free(pick) => {
                if model.live.is_empty() {
                    continue;
                }
                let pick = pick % model.live.len();
                model.free(pick);
                free_pid(w.live.remove(pick), w.strategy);
            }
            Op::CreateNs(parent) => {
                let parent = parent % nns;
                let p = model.ns[parent].clone();
                let want = if p.level >= MAX_PID_NS_LEVEL {
                    Err(Errno::ENOSPC)
                } else {
                    // Linux 6.14+: a child starts at PID_MAX_LIMIT.
                    model
                        .ns
                        .push(ModelNs::new(p.level + 1, Some(parent), PID_MAX_LIMIT));
                    Ok(())
                };
                let got = create_pid_namespace(&w.ns[parent]).map(|ns| w.ns.push(ns));
                prop_assert_eq!(got, want);
            }
            Op::SetPidMax(ns, v) => {
                let ns = ns % nns;
                let want = if (PID_MAX_MIN..=PID_MAX_LIMIT).contains(&v) {
                    model.ns[ns].pid_max = v;
                    Ok(())
                } else {
                    Err(Errno::EINVAL)
                };
                prop_assert_eq!(w.ns[ns].set_pid_max(v), want);
            }
            Op::SetReaper(ns) => {
                let ns = ns % nns;
                model.ns[ns].reaper = true;
                w.ns[ns].set_child_reaper(reaper());
            }
            Op::Disable(ns) => {
                let ns = ns % nns;
                model.ns[ns].pid_allocated &= !PIDNS_ADDING;
                disable_pid_allocation(&w.ns[ns], w.strategy);
            }
            Op::SetCursor(ns, c) => {
                let ns = ns % nns;
                model.ns[ns].cursor = c;
                set_cursor(&w.ns[ns], c);
            }
            Op::FailNodes => fail_nodes = true,
            Op::FailPidStruct => fail_pid = true,
        }
    }
    for (i, m) in model.ns.iter().enumerate() {
        let ns = &w.ns[i];
        let st = ns.stats();
        prop_assert_eq!(ids_of(ns), m.ids.iter().copied().collect::<Vec<_>>());
        prop_assert_eq!((st.cursor, st.pid_allocated), (m.cursor, m.pid_allocated));
        prop_assert_eq!(ns.reaper_wakeups(), m.wakeups);
    }
    for pid in &w.live {
        for u in pid.numbers() {
            let found = find_pid_ns(u.nr, u.ns());
            prop_assert!(found.is_some_and(|f| PidRef::ptr_eq(&f, pid)));
        }
    }
    for pid in w.live.drain(..) {
        free_pid(pid, w.strategy);
    }
    for ns in &w.ns {
        prop_assert_eq!(ns.stats().ids, 0);
        prop_assert!(nodes_back(ns, 0));
    }
    prop_assert!(idr_preload_count() <= IDR_PRELOAD_SIZE);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn strategies_match_the_model(ops in proptest::collection::vec(op(), 1..80)) {
        run_ops(&ops)?;
    }
}

#[test]
fn stock_checks_set_tid_level_by_level_and_the_change_checks_first() {
    for (strategy, want) in [(STOCK, Errno::EEXIST), (ONCE, Errno::EINVAL)] {
        let (root, _init) = root_with_init(strategy);
        let (nss, _inits) = chain(&root, 1);
        // The child's pid 1 is taken; the root's tid is beyond its pid_max.
        let set_tid = [1, root.pid_max()];
        assert_eq!(
            alloc_pid(&nss[1], &set_tid, strategy, true).err(),
            Some(want),
            "{strategy:?}"
        );
        assert_eq!(ids_of(&nss[1]), [1], "{strategy:?}: nothing leaked");
    }
}

#[test]
fn pidfs_numbers_published_pids_and_forgets_freed_ones() {
    for s in all() {
        let (root, _init) = root_with_init(s);
        let (nss, _inits) = chain(&root, 2);
        let a = alloc_pid(&nss[2], &[], s, false).unwrap();
        let b = alloc_pid(&root, &[], s, false).unwrap();
        // One counter under pidmap_lock up to 6.19; per-CPU batches of a
        // range of their own from 7.0 (one CPU here).
        assert!(
            a.ino() >= 2 && b.ino() > a.ino(),
            "{s:?}: inode numbers grow"
        );
        let hashed = s.pidfs == crate::strategy::PidfsStrategy::Hashed;
        assert_eq!(pidfs::added_hashed(a.header()), hashed, "{s:?}");
        let in_tree = |ino| {
            if hashed {
                pidfs::pidfs_hashed_contains(ino)
            } else {
                pidfs::pidfs_contains(&mut pidmap_lock_irqsave(), ino)
            }
        };
        assert!(in_tree(a.ino()) && in_tree(b.ino()));
        let (ia, ib) = (a.ino(), b.ino());
        free_pid(a, s);
        assert!(!in_tree(ia), "{s:?}: free_pid removes it");
        assert!(in_tree(ib));
        free_pid(b, s);
        assert!(!in_tree(ib));
    }
}

#[test]
fn pid_layout_is_the_header_then_one_upid_per_level() {
    for level in 0..=MAX_PID_NS_LEVEL {
        let upids = core::alloc::Layout::array::<Upid>(level as usize + 1).unwrap();
        let (layout, offset) = core::alloc::Layout::new::<Pid>().extend(upids).unwrap();
        assert_eq!(offset, core::mem::offset_of!(Pid, numbers), "level {level}");
        let aligned = layout.align_to(super::PID_ALIGN).unwrap().pad_to_align();
        assert_eq!(pid_layout(level), aligned, "level {level}");
        assert_eq!(pid_layout(level).align() % 64, 0, "level {level}");
        assert_eq!(pid_layout(level).size() % 64, 0, "level {level}");
    }
    for (level, cache) in pid_caches().iter().enumerate() {
        assert_eq!(cache.layout(), pid_layout(level as u32));
    }
}

/// `pidmap_lock` starts a cache line of its own and fills it
/// (`__cacheline_aligned_in_smp`), so no other hot data shares it.
#[test]
fn pidmap_lock_has_a_cache_line_of_its_own() {
    let addr = core::ptr::addr_of!(PIDMAP_LOCK) as usize;
    assert_eq!(addr % 64, 0, "pidmap_lock at {addr:#x}");
    assert_eq!(size_of_val(&PIDMAP_LOCK) % 64, 0);
}

/// Pids of the root namespace take no reference on it (Linux's
/// get_pid_ns/put_pid_ns skip `init_pid_ns`): no shared count bounces
/// between CPUs on every fork at `ns_depth=0`.
#[test]
fn pids_of_the_root_namespace_take_no_reference_on_it() {
    let root = crate::pid::namespace::init_pid_ns();
    let child = create_pid_namespace(root).unwrap();
    let counts = || (Arc::strong_count(root), Arc::strong_count(&child));
    let before = counts();
    let (r, c) = (
        crate::pid::namespace::get_pid_ns(root),
        crate::pid::namespace::get_pid_ns(&child),
    );
    assert_eq!(
        counts(),
        (before.0, before.1 + 1),
        "only the child is counted"
    );
    // SAFETY: the references just taken.
    unsafe {
        crate::pid::namespace::put_pid_ns(r);
        crate::pid::namespace::put_pid_ns(c);
    }
    assert_eq!(counts(), before);
}
