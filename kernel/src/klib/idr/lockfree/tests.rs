//! Host tests of the lock-free map, one thread: every rule of the module
//! header, fault injection, reclamation and drop (with private node caches,
//! so the node counts are exact), and a property test against a sequential
//! model. The std-thread stress tests are in `stress.rs`.

pub(super) use super::tests_shared::check_invariants;
use super::*;
use crate::klib::fault_inject::{FaultMode, FaultSite, fault_inject};
use crate::mm::cache::RcuObjCache;
use crate::platform;
use crate::rcu::rcu_barrier;
use core::ptr;
use proptest::prelude::*;
use std::collections::BTreeMap;

mod stress;

/// A kernel environment whose nodes come from a cache of its own (one per
/// expansion), so its counters see only this test.
macro_rules! private_env {
    () => {{
        static CACHE: $crate::mm::cache::RcuObjCache = $crate::mm::cache::RcuObjCache::new_zeroed(
            "lf_test",
            core::alloc::Layout::new::<
                $crate::klib::idr::lockfree::LfNode<$crate::klib::idr::lockfree::KernelEnv>,
            >(),
        );
        (
            $crate::klib::idr::lockfree::KernelEnv::with_cache(&CACHE),
            &CACHE,
        )
    }};
}
pub(super) use private_env;

type Map = LfIdr<u8, KernelEnv>;

pub(super) const RESERVED: u32 = 300;

fn p(v: usize) -> *mut u8 {
    v as *mut u8
}

/// Nodes taken from `cache` and not yet given back (retired ones count
/// until their grace period ends).
pub(super) fn live_nodes(cache: &RcuObjCache) -> u64 {
    cache.stats().live()
}

/// Nodes live in `cache` once every retired node is freed: `rcu_barrier`,
/// then a wait for callbacks that another CPU detached before the barrier
/// and may still be running (the barrier counts a callback as invoked
/// when it is detached from its list, not when it has run), up to 10 s.
pub(super) fn settled_nodes(cache: &RcuObjCache, want: u64) -> u64 {
    rcu_barrier();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while live_nodes(cache) != want && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    live_nodes(cache)
}

fn publish(m: &Map, id: u32, v: usize) -> Result<(), Errno> {
    // SAFETY: the tests publish only ids they claimed and still hold.
    unsafe { m.publish(id, p(v)) }
}

fn remove(m: &Map, id: u32) -> Option<*mut u8> {
    // SAFETY: the tests remove only ids they claimed, once.
    unsafe { m.remove(id) }
}

fn find(m: &Map, id: u32) -> *mut u8 {
    let g = m.read_lock();
    m.find(id, &g)
}

fn inner_bit(m: &Map, id: u32, depth: usize) -> bool {
    let g = m.read_lock();
    let path = m.path_to(id, Section::of(&g)).expect("a path");
    path[depth].bits.load(Ordering::SeqCst) & (1 << slot_of(id, depth)) != 0
}

#[test]
fn claim_publish_find_remove() {
    let (env, cache) = private_env!();
    let m = Map::with_env(env);
    assert_eq!(m.claim_exact(5), Ok(()));
    assert!(m.is_allocated(5));
    assert!(
        find(&m, 5).is_null(),
        "claimed but unpublished reads as null"
    );
    assert_eq!(publish(&m, 5, 0x50), Ok(()));
    assert_eq!(find(&m, 5), p(0x50));
    assert_eq!(
        publish(&m, 6, 0x60),
        Err(Errno::ENOENT),
        "6 was never claimed"
    );
    assert_eq!(publish(&m, 1 << 20, 0x60), Err(Errno::ENOENT));
    assert_eq!(m.count_ids(), 1);
    assert_eq!(remove(&m, 5), Some(p(0x50)));
    assert!(find(&m, 5).is_null() && !m.is_allocated(5));
    assert_eq!(remove(&m, 5), None);
    assert_eq!(remove(&m, LF_ID_LIMIT + 7), None);
    assert!(find(&m, LF_ID_LIMIT).is_null());
    assert_eq!(m.count_ids(), 0);
    check_invariants(&m, true);
    drop(m);
    assert_eq!(settled_nodes(cache, 0), 0);
}

#[test]
fn exact_claims_take_their_bit_or_fail_with_eexist() {
    let (env, _) = private_env!();
    let m = Map::with_env(env);
    assert_eq!(m.claim_exact(7), Ok(()));
    assert_eq!(m.claim_exact(7), Err(Errno::EEXIST));
    assert_eq!(m.get_cursor(), 0, "an exact claim leaves the cursor alone");
    assert_eq!(m.claim_exact(LF_ID_LIMIT), Err(Errno::EINVAL));
    assert_eq!(m.claim_exact(LF_ID_LIMIT - 1), Ok(()));
    assert_eq!(m.claim_exact(0), Ok(()));
    let mut ids = Vec::new();
    m.for_each(|id, e| {
        assert!(e.is_null());
        ids.push(id)
    });
    assert_eq!(ids, [0, 7, LF_ID_LIMIT - 1]);
    // The cyclic search skips the exact claims.
    m.set_cursor(7);
    assert_eq!(m.claim_cyclic(RESERVED, 100), Ok(8));
    check_invariants(&m, true);
}

#[test]
fn cyclic_claims_follow_the_cursor_and_wrap_to_reserved_pids() {
    let (env, _) = private_env!();
    let m = Map::with_env(env);
    assert_eq!(
        m.claim_cyclic(RESERVED, 400),
        Ok(1),
        "pid_min is 1 at first"
    );
    assert_eq!(m.claim_cyclic(RESERVED, 400), Ok(2));
    assert_eq!(m.get_cursor(), 3);
    // A cursor at RESERVED_PIDS has not passed it: the low bound is still 1.
    m.set_cursor(RESERVED);
    assert_eq!(m.claim_cyclic(RESERVED, 400), Ok(300));
    m.set_cursor(398);
    assert_eq!(m.claim_cyclic(RESERVED, 400), Ok(398));
    assert_eq!(m.claim_cyclic(RESERVED, 400), Ok(399));
    // Wrapped: restart at RESERVED_PIDS, not at 1 (3..300 stay unused).
    assert_eq!(m.claim_cyclic(RESERVED, 400), Ok(301));
    assert_eq!(m.get_cursor(), 302);
    for want in 302..398 {
        assert_eq!(m.claim_cyclic(RESERVED, 400), Ok(want));
    }
    assert_eq!(
        m.claim_cyclic(RESERVED, 400),
        Err(Errno::ENOSPC),
        "300..400 is full"
    );
    assert_eq!(
        m.get_cursor(),
        398,
        "a failed claim leaves the cursor alone"
    );
    // A larger pid_max makes room beyond.
    assert_eq!(m.claim_cyclic(RESERVED, 401), Ok(400));
    check_invariants(&m, true);
}

#[test]
fn a_full_range_is_enospc_until_an_id_is_removed() {
    let (env, _) = private_env!();
    let m = Map::with_env(env);
    for want in 1..10 {
        assert_eq!(m.claim_cyclic(RESERVED, 10), Ok(want));
    }
    assert_eq!(m.claim_cyclic(RESERVED, 10), Err(Errno::ENOSPC));
    assert_eq!(
        m.claim_cyclic(RESERVED, 0),
        Err(Errno::ENOSPC),
        "empty range"
    );
    assert_eq!(remove(&m, 4), Some(ptr::null_mut()));
    assert_eq!(
        m.claim_cyclic(RESERVED, 10),
        Ok(4),
        "wrapped to the freed id"
    );
    assert_eq!(m.get_cursor(), 5);
    check_invariants(&m, true);
}

#[test]
fn the_cursor_moves_forward_only() {
    let (env, _) = private_env!();
    let m = Map::with_env(env);
    m.set_cursor(50);
    // A claim that started at 10 and got 19 must not pull it back.
    assert_eq!(m.advance_cursor(10, 20), None);
    assert_eq!(m.get_cursor(), 50);
    // One that started at 50 and wrapped to 4 moves it on (past the end).
    assert_eq!(m.advance_cursor(50, 5), Some(50));
    assert_eq!(m.get_cursor(), 5);
    // One that started at 3 and got 9 moves it on from 5.
    assert_eq!(m.advance_cursor(3, 10), Some(5), "it replaced 5, not 3");
    assert_eq!(m.get_cursor(), 10);
}

#[test]
fn the_claim_moving_the_cursor_out_of_an_emptied_leaf_reclaims_it() {
    let (env, _) = private_env!();
    let m = Map::with_env(env);
    // Leaf 1 (64..128) empties while the cursor is in it: kept.
    assert_eq!(m.claim_exact(70), Ok(()));
    m.set_cursor(71);
    assert_eq!(remove(&m, 70), Some(ptr::null_mut()));
    assert_eq!(m.census().leaves, 1, "the cursor's leaf stays");
    // A cyclic claim that read the cursor long ago, in leaf 0, and got 128
    // (leaf 2; leaf 1 looked full when it passed) moves the cursor on
    // from 71: it is the one that takes the cursor out of leaf 1.
    assert_eq!(m.claim_exact(128), Ok(()));
    {
        let g = m.read_lock();
        m.cursor_past(5, 128, Section::of(&g));
    }
    assert_eq!(m.get_cursor(), 129);
    assert_eq!(
        m.census(),
        LfCensus {
            inner: 2,
            leaves: 1,
            idle_leaves: 0
        },
        "leaf 1 was left linked, empty"
    );
    check_invariants(&m, true);
}

#[test]
fn a_claim_meeting_a_dying_leaf_waits_for_it_and_gets_its_id() {
    let (env, _) = private_env!();
    let m = Map::with_env(env);
    assert_eq!(m.claim_exact(70), Ok(()));
    assert_eq!(remove(&m, 70), Some(ptr::null_mut()));
    assert_eq!(m.claim_exact(70), Ok(()), "leaf 1 was reclaimed");
    assert_eq!(remove(&m, 70), Some(ptr::null_mut()));
    // Leaf 1 emptied while the cursor was in it, and a reclaimer stopped
    // between killing it and unlinking it.
    m.set_cursor(81);
    assert_eq!(m.claim_exact(80), Ok(()));
    assert_eq!(remove(&m, 80), Some(ptr::null_mut()));
    let g = m.read_lock();
    let path = m.path_to(80, Section::of(&g)).unwrap();
    assert!(m.kill_leaf(path[LEAF]));
    let claimed = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|sc| {
        let claimer = sc.spawn(|| {
            let r = m.claim_exact(71);
            claimed.store(true, Ordering::SeqCst);
            r
        });
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(
            !claimed.load(Ordering::SeqCst),
            "the claim did not wait for the dying leaf"
        );
        m.unlink_dead_leaf(&path, 80);
        assert_eq!(claimer.join().unwrap(), Ok(()), "71 is free");
    });
    drop(g);
    // A full leaf whose reclaim attempt is under way: the claim waits for
    // the attempt to give up, then reports the id taken.
    for id in 128..192 {
        assert_eq!(m.claim_exact(id), Ok(()));
    }
    let g = m.read_lock();
    let path = m.path_to(128, Section::of(&g)).unwrap();
    path[LEAF].reclaimers.fetch_add(1, Ordering::SeqCst);
    std::thread::scope(|sc| {
        let claimer = sc.spawn(|| m.claim_exact(130));
        std::thread::sleep(std::time::Duration::from_millis(20));
        path[LEAF].reclaimers.fetch_sub(1, Ordering::SeqCst);
        assert_eq!(claimer.join().unwrap(), Err(Errno::EEXIST));
    });
    drop(g);
    assert_eq!(m.claim_exact(191), Err(Errno::EEXIST), "a full leaf");
    check_invariants(&m, true);
}

#[test]
fn full_hints_follow_leaves_and_nodes_filling_and_emptying() {
    let (env, _) = private_env!();
    let m = Map::with_env(env);
    assert_eq!(m.claim_exact(0), Ok(()));
    for want in 1..64 {
        assert_eq!(m.claim_cyclic(RESERVED, 1 << 20), Ok(want));
    }
    assert!(inner_bit(&m, 0, LEAF - 1), "a full leaf is hinted");
    assert!(!inner_bit(&m, 0, LEAF - 2));
    check_invariants(&m, true);
    assert_eq!(remove(&m, 10), Some(ptr::null_mut()));
    assert!(!inner_bit(&m, 0, LEAF - 1), "room below clears the hint");
    m.set_cursor(0);
    assert_eq!(m.claim_cyclic(RESERVED, 1 << 20), Ok(10));
    // Fill a whole inner node (4096 ids): its hint goes up a level.
    m.set_cursor(64);
    for want in 64..4096 {
        assert_eq!(m.claim_cyclic(RESERVED, 1 << 20), Ok(want));
    }
    assert!(inner_bit(&m, 0, LEAF - 2), "a full inner node is hinted");
    check_invariants(&m, true);
    // The search now skips the full subtree in one step.
    assert_eq!(m.claim_cyclic(RESERVED, 1 << 20), Ok(4096));
    assert_eq!(remove(&m, 1234), Some(ptr::null_mut()));
    assert!(!inner_bit(&m, 1234, LEAF - 1) && !inner_bit(&m, 1234, LEAF - 2));
    check_invariants(&m, true);
    m.set_cursor(RESERVED);
    assert_eq!(m.claim_cyclic(RESERVED, 1 << 20), Ok(1234));
    check_invariants(&m, true);
}

#[test]
fn emptied_leaves_are_reclaimed_except_the_cursors() {
    let (env, cache) = private_env!();
    let m = Map::with_env(env);
    let before = lf_stats_cpu(platform::cpu_id());
    assert_eq!(m.claim_exact(100), Ok(()));
    assert_eq!(m.nr_nodes(), 3, "two inner nodes and a leaf");
    assert_eq!(remove(&m, 100), Some(ptr::null_mut()));
    assert_eq!(m.nr_nodes(), 2, "the emptied leaf is unlinked at once");
    assert_eq!(settled_nodes(cache, 2), 2, "and freed after a grace period");
    // The cursor's leaf stays when emptied: the next claims land there.
    assert_eq!(m.claim_cyclic(RESERVED, 2000), Ok(1));
    assert_eq!(remove(&m, 1), Some(ptr::null_mut()));
    assert_eq!(m.nr_nodes(), 3);
    check_invariants(&m, true);
    assert_eq!(m.claim_cyclic(RESERVED, 2000), Ok(2));
    assert_eq!(remove(&m, 2), Some(ptr::null_mut()));
    // Moving the cursor away reclaims it.
    m.set_cursor(1000);
    assert_eq!(m.nr_nodes(), 2);
    // So does a claim that leaves it, e.g. wrapping under a lower pid_max.
    assert_eq!(m.claim_cyclic(RESERVED, 2000), Ok(1000));
    assert_eq!(remove(&m, 1000), Some(ptr::null_mut()));
    assert_eq!(m.nr_nodes(), 3, "leaf 15 is the cursor's");
    assert_eq!(m.claim_cyclic(RESERVED, 500), Ok(300));
    assert_eq!(m.nr_nodes(), 3, "leaf 15 went, leaf 4 came");
    check_invariants(&m, true);
    let s: LfStats = lf_stats_cpu(platform::cpu_id());
    assert_eq!(s.reclaims - before.reclaims, 3);
    assert_eq!(s.node_installs - before.node_installs, 6);
    assert_eq!(remove(&m, 300), Some(ptr::null_mut()));
    drop(m);
    assert_eq!(settled_nodes(cache, 0), 0);
}

#[test]
fn node_allocation_failure_is_enomem_and_leaks_nothing() {
    let (env, cache) = private_env!();
    let me = Some(platform::cpu_id());
    let m = Map::with_env(env);
    fault_inject(FaultSite::NodeAlloc, FaultMode::FailNext(1), me);
    assert_eq!(m.claim_exact(5), Err(Errno::ENOMEM));
    assert_eq!((m.nr_nodes(), live_nodes(cache)), (0, 0));
    // The third node (the leaf) fails: the inner nodes stay, nothing is
    // claimed.
    fault_inject(FaultSite::NodeAlloc, FaultMode::FailEvery(3), me);
    assert_eq!(m.claim_cyclic(RESERVED, 100), Err(Errno::ENOMEM));
    fault_inject(FaultSite::NodeAlloc, FaultMode::Off, me);
    assert_eq!((m.nr_nodes(), live_nodes(cache)), (2, 2));
    assert_eq!(m.count_ids(), 0);
    assert_eq!(m.get_cursor(), 0, "a failed claim leaves the cursor alone");
    assert_eq!(m.claim_cyclic(RESERVED, 100), Ok(1));
    assert_eq!(m.nr_nodes(), 3);
    let s = lf_stats_cpu(platform::cpu_id());
    assert!(s.node_alloc_failures >= 2);
    check_invariants(&m, true);
    drop(m);
    assert_eq!(live_nodes(cache), 0);
}

#[test]
fn the_default_map_takes_nodes_from_the_shared_cache() {
    let cpu = platform::cpu_id();
    let before = lf_node_cache().stats_cpu(cpu);
    let m = LfIdr::<u8>::new();
    assert_eq!(m.claim_cyclic(RESERVED, 1000), Ok(1));
    assert_eq!(lf_node_cache().stats_cpu(cpu).allocs() - before.allocs(), 3);
    drop(m);
    assert_eq!(lf_node_cache().stats_cpu(cpu).frees - before.frees, 3);
}

#[test]
fn drop_frees_every_node() {
    let (env, cache) = private_env!();
    let m = Map::with_env(env);
    for id in [1, 63, 64, 5000, 262_143, 262_144, 1 << 21, LF_ID_LIMIT - 1] {
        assert_eq!(m.claim_exact(id), Ok(()));
        assert_eq!(publish(&m, id, id as usize + 1), Ok(()));
    }
    assert_eq!(find(&m, 262_144), p(262_145));
    check_invariants(&m, true);
    let nodes = m.nr_nodes();
    assert_eq!(u64::from(nodes), live_nodes(cache));
    assert!(nodes >= 16, "{nodes}");
    drop(m);
    assert_eq!(live_nodes(cache), 0);
}

/// One step of the property test.
#[derive(Clone, Debug)]
enum Op {
    /// `claim_cyclic(RESERVED, end)`.
    Cyclic(u32),
    /// `claim_exact(id)`.
    Exact(u32),
    /// Publish the n-th claimed id (mod the count).
    Publish(usize, usize),
    /// Remove the n-th claimed id (mod the count).
    Remove(usize),
    SetCursor(u32),
}

fn op() -> impl Strategy<Value = Op> {
    let end = prop_oneof![
        4 => 301u32..800,
        1 => Just(LF_ID_LIMIT),
        1 => 1u32..64,
    ];
    let id = prop_oneof![
        6 => 0u32..800,
        1 => 0u32..LF_ID_LIMIT,
    ];
    prop_oneof![
        6 => end.prop_map(Op::Cyclic),
        3 => id.clone().prop_map(Op::Exact),
        2 => (any::<usize>(), 1usize..1000).prop_map(|(i, v)| Op::Publish(i, v)),
        5 => any::<usize>().prop_map(Op::Remove),
        1 => id.prop_map(Op::SetCursor),
    ]
}

/// The sequential model: claimed ids with what is published there, and
/// the cursor.
#[derive(Default)]
struct Model {
    ids: BTreeMap<u32, usize>,
    cursor: u32,
}

impl Model {
    fn first_free(&self, from: u32, end: u32) -> Option<u32> {
        (from..end.min(LF_ID_LIMIT)).find(|i| !self.ids.contains_key(i))
    }

    fn cyclic(&mut self, end: u32) -> Result<u32, Errno> {
        let low = if self.cursor > RESERVED { RESERVED } else { 1 };
        let from = self.cursor.max(low);
        let id = self
            .first_free(from, end)
            .or_else(|| (from > low).then(|| self.first_free(low, end)).flatten())
            .ok_or(Errno::ENOSPC)?;
        self.ids.insert(id, 0);
        self.cursor = id + 1;
        Ok(id)
    }

    fn nth(&self, n: usize) -> Option<u32> {
        (!self.ids.is_empty()).then(|| *self.ids.keys().nth(n % self.ids.len()).unwrap())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]
    #[test]
    fn lockfree_map_matches_a_sequential_model(ops in proptest::collection::vec(op(), 1..160)) {
        let (env, cache) = private_env!();
        let m = Map::with_env(env);
        let mut model = Model::default();
        for op in ops {
            match op {
                Op::Cyclic(end) => {
                    prop_assert_eq!(m.claim_cyclic(RESERVED, end), model.cyclic(end));
                }
                Op::Exact(id) => {
                    let want = if model.ids.contains_key(&id) { Err(Errno::EEXIST) } else { Ok(()) };
                    prop_assert_eq!(m.claim_exact(id), want);
                    model.ids.entry(id).or_insert(0);
                }
                Op::Publish(n, v) => {
                    if let Some(id) = model.nth(n) {
                        prop_assert_eq!(publish(&m, id, v), Ok(()));
                        model.ids.insert(id, v);
                    }
                }
                Op::Remove(n) => {
                    if let Some(id) = model.nth(n) {
                        let v = model.ids.remove(&id).unwrap();
                        prop_assert_eq!(remove(&m, id), Some(p(v)));
                    }
                }
                Op::SetCursor(c) => {
                    m.set_cursor(c);
                    model.cursor = c;
                }
            }
            prop_assert_eq!(m.get_cursor(), model.cursor);
            prop_assert_eq!(m.count_ids() as usize, model.ids.len());
            check_invariants(&m, true);
        }
        let mut seen = BTreeMap::new();
        m.for_each(|id, e| { seen.insert(id, e as usize); });
        prop_assert_eq!(&seen, &model.ids);
        for (&id, &v) in &model.ids {
            prop_assert_eq!(find(&m, id), p(v));
            prop_assert_eq!(remove(&m, id), Some(p(v)));
        }
        prop_assert_eq!(m.count_ids(), 0);
        drop(m);
        prop_assert_eq!(settled_nodes(cache, 0), 0);
    }
}
