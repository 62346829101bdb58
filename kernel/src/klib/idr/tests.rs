//! Host tests of the IDR: the Linux API's edge cases, tree growth and
//! shrinking, the preload bound, fault injection, and a property test
//! against a set.
use super::*;
use crate::klib::fault_inject::{FaultMode, FaultSite, fault_inject};
use crate::platform;
use proptest::prelude::*;
use std::collections::BTreeSet;

fn p(v: usize) -> *mut u8 {
    v as *mut u8
}

/// Nodes this CPU gave back to the node cache since boot.
fn nodes_freed_here() -> u64 {
    idr_node_cache().stats_cpu(platform::cpu_id()).frees
}

fn alloc(idr: &mut Idr<u8>, start: u32, end: u32) -> Result<u32, Errno> {
    idr_preload().unwrap();
    let r = idr.alloc(p(0x10), start, end);
    idr_preload_end();
    r
}

fn cyclic(idr: &mut Idr<u8>, start: u32, end: u32) -> Result<u32, Errno> {
    idr_preload().unwrap();
    let r = idr.alloc_cyclic(ptr::null_mut(), start, end);
    idr_preload_end();
    r
}

#[test]
fn alloc_find_replace_remove() {
    let mut idr = Idr::<u8>::new();
    assert_eq!(alloc(&mut idr, 5, 10), Ok(5));
    assert_eq!(alloc(&mut idr, 5, 10), Ok(6));
    assert_eq!(idr.find(5), p(0x10));
    assert_eq!(idr.replace(p(0x20), 6), Ok(p(0x10)));
    assert_eq!(idr.find(6), p(0x20));
    assert_eq!(idr.replace(p(0x20), 7), Err(Errno::ENOENT));
    assert_eq!(alloc(&mut idr, 5, 6), Err(Errno::ENOSPC));
    assert_eq!(alloc(&mut idr, 9, 9), Err(Errno::ENOSPC));
    assert_eq!(idr.remove(5), Some(p(0x10)));
    assert_eq!(idr.remove(5), None);
    assert_eq!(idr.remove(1 << 20), None);
    assert_eq!(alloc(&mut idr, 0, 0), Ok(0));
    assert_eq!(idr.nr_ids(), 2);
    assert_eq!(idr.get_cursor(), 0, "idr_alloc leaves the cursor alone");
    idr.remove(0);
    idr.remove(6);
    assert!(idr.is_empty());
    assert_eq!(idr.nr_nodes(), 0);
}

#[test]
fn reserved_ids_are_allocated_but_not_found() {
    let mut idr = Idr::<u8>::new();
    let id = cyclic(&mut idr, 1, 100).unwrap();
    assert!(idr.is_allocated(id));
    assert!(idr.find(id).is_null());
    assert_eq!(idr.remove(id), Some(ptr::null_mut()));
}

#[test]
fn cyclic_wraps_like_linux() {
    let mut idr = Idr::<u8>::new();
    assert_eq!(cyclic(&mut idr, 1, 5), Ok(1));
    assert_eq!(cyclic(&mut idr, 1, 5), Ok(2));
    idr.remove(1);
    assert_eq!(cyclic(&mut idr, 1, 5), Ok(3));
    assert_eq!(cyclic(&mut idr, 1, 5), Ok(4));
    assert_eq!(idr.get_cursor(), 5);
    // Past the end: wrap to start, find the freed 1.
    assert_eq!(cyclic(&mut idr, 1, 5), Ok(1));
    assert_eq!(idr.get_cursor(), 2);
    assert_eq!(cyclic(&mut idr, 1, 5), Err(Errno::ENOSPC));
    // A cursor beyond `end` (pid_max lowered) wraps as well.
    idr.set_cursor(1000);
    idr.remove(3);
    assert_eq!(cyclic(&mut idr, 1, 5), Ok(3));
    for id in 1..5 {
        idr.remove(id);
    }
    assert_eq!(idr.nr_nodes(), 0);
}

#[test]
fn tree_grows_and_shrinks() {
    let mut idr = Idr::<u8>::new();
    assert_eq!(alloc(&mut idr, 3, 0), Ok(3));
    assert_eq!((idr.height(), idr.nr_nodes()), (1, 1));
    let top = IDR_ID_LIMIT - 1;
    assert_eq!(alloc(&mut idr, top, 0), Ok(top));
    assert_eq!(idr.height(), 4);
    assert_eq!(idr.nr_nodes(), 7, "4 on 3's path, 3 more on top's");
    assert_eq!(alloc(&mut idr, top, 0), Err(Errno::ENOSPC));
    assert_eq!(alloc(&mut idr, IDR_ID_LIMIT, 0), Err(Errno::ENOSPC));
    idr.remove(top);
    assert_eq!((idr.height(), idr.nr_nodes()), (1, 1), "shrunk back");
    idr.remove(3);
    assert_eq!((idr.height(), idr.nr_nodes()), (0, 0));
}

/// Runs `f` with `site` armed in `mode` on this CPU only.
fn with_fault<R>(site: FaultSite, mode: FaultMode, f: impl FnOnce() -> R) -> R {
    let me = Some(platform::cpu_id());
    fault_inject(site, mode, me);
    let r = f();
    fault_inject(site, FaultMode::Off, me);
    r
}

#[test]
fn insertions_take_nodes_from_the_cache_before_the_pool() {
    let mut idr = Idr::<u8>::new();
    idr_preload().unwrap();
    // Every id below needs at least one new node, the last one six; none
    // of them touches the pool while the cache can allocate.
    for id in [0, 64, 4096, 1 << 18, IDR_ID_LIMIT - 1] {
        assert!(idr.nodes_needed(id) > 0);
        assert_eq!(idr.alloc(p(1), id, 0), Ok(id));
        assert_eq!(idr_preload_count(), IDR_PRELOAD_SIZE);
    }
    idr_preload_end();
    for id in [0, 64, 4096, 1 << 18, IDR_ID_LIMIT - 1] {
        idr.remove(id);
    }
    assert_eq!(idr.nr_nodes(), 0);
}

#[test]
fn worst_case_insertion_needs_the_whole_pool() {
    let mut idr = Idr::<u8>::new();
    assert_eq!(alloc(&mut idr, 0, 0), Ok(0));
    assert_eq!(idr.nodes_needed(IDR_ID_LIMIT - 1), IDR_PRELOAD_SIZE);
    idr_preload().unwrap();
    assert_eq!(idr_preload_count(), IDR_PRELOAD_SIZE);
    // With the node cache failing, the pool is the only supply.
    with_fault(FaultSite::NodeAlloc, FaultMode::FailEvery(1), || {
        assert!(idr.alloc(p(1), IDR_ID_LIMIT - 1, 0).is_ok());
        assert_eq!(idr_preload_count(), 0);
        // With the pool empty too, an insertion needing a node fails and
        // changes nothing; one that needs none still works.
        let before = (idr.nr_ids(), idr.nr_nodes(), idr.height());
        assert_eq!(idr.alloc(p(1), 1 << 12, 0), Err(Errno::ENOMEM));
        assert_eq!((idr.nr_ids(), idr.nr_nodes(), idr.height()), before);
        assert_eq!(idr.alloc(p(1), 1, 0), Ok(1));
    });
    let before = idr_node_cache().stats().frees;
    for id in [0, 1, IDR_ID_LIMIT - 1] {
        idr.remove(id);
    }
    assert_eq!(idr.nr_nodes(), 0);
    // Nodes leave for the cache a grace period after they leave the tree.
    // Whichever thread invokes this CPU's callbacks counts the frees (one
    // invoker per list: maybe another test's barrier), and other tests
    // free nodes too: so the count is over every CPU, and at least ours.
    crate::rcu::rcu_barrier();
    assert!(idr_node_cache().stats().frees - before >= 7);
    assert_eq!(idr_preload_count(), 0, "emptied nodes go to the cache");
}

#[test]
fn faults_fail_cleanly() {
    let me = Some(platform::cpu_id());
    let mut idr = Idr::<u8>::new();
    idr_preload_drain();
    fault_inject(FaultSite::PreloadFill, FaultMode::FailNext(1), me);
    assert_eq!(idr_preload(), Err(Errno::ENOMEM));
    assert_eq!(idr_preload_count(), 0);
    // The slab failing with the pool dry is ENOMEM; the slab alone is
    // enough.
    with_fault(FaultSite::NodeAlloc, FaultMode::FailEvery(1), || {
        assert_eq!(idr.alloc(p(1), 0, 0), Err(Errno::ENOMEM));
    });
    assert_eq!(idr.alloc(p(1), 0, 0), Ok(0));
    idr.remove(0);
    // A full pool that looks dry, with the slab failing: ENOMEM, and the
    // pool keeps its nodes.
    assert_eq!(idr_preload(), Ok(()));
    fault_inject(FaultSite::NodeAlloc, FaultMode::FailNext(1), me);
    fault_inject(FaultSite::PreloadTake, FaultMode::FailNext(1), me);
    assert_eq!(idr.alloc(p(1), 0, 0), Err(Errno::ENOMEM));
    assert_eq!(idr_preload_count(), IDR_PRELOAD_SIZE, "nothing taken");
    // The slab failing once: the pool supplies the node.
    fault_inject(FaultSite::NodeAlloc, FaultMode::FailNext(1), me);
    assert_eq!(idr.alloc(p(1), 0, 0), Ok(0));
    assert_eq!(idr_preload_count(), IDR_PRELOAD_SIZE - 1);
    idr.remove(0);
    assert!(idr.is_empty());
}

#[test]
fn a_failed_insertion_gives_every_node_back() {
    let me = Some(platform::cpu_id());
    let mut idr = Idr::<u8>::new();
    assert_eq!(alloc(&mut idr, 0, 0), Ok(0));
    let top = IDR_ID_LIMIT - 1;
    assert_eq!(idr.nodes_needed(top), IDR_PRELOAD_SIZE);
    idr_preload().unwrap();
    let cache = || idr_node_cache().stats_cpu(platform::cpu_id());
    let before = (cache(), idr.nr_nodes(), idr.height());
    // Every second cache allocation fails and every third pool take: the
    // six nodes come cache, pool, cache, pool, cache, and then neither.
    fault_inject(FaultSite::NodeAlloc, FaultMode::FailEvery(2), me);
    fault_inject(FaultSite::PreloadTake, FaultMode::FailEvery(3), me);
    let r = idr.alloc(p(1), top, 0);
    fault_inject(FaultSite::NodeAlloc, FaultMode::Off, me);
    fault_inject(FaultSite::PreloadTake, FaultMode::Off, me);
    assert_eq!(r, Err(Errno::ENOMEM));
    assert_eq!((idr.nr_nodes(), idr.height()), (before.1, before.2));
    assert_eq!(
        idr_preload_count(),
        IDR_PRELOAD_SIZE,
        "pooled nodes went back"
    );
    let (was, now) = (before.0, cache());
    assert_eq!(now.allocs() - was.allocs(), 3, "three from the cache");
    assert_eq!(now.frees - was.frees, 3, "and all three back");
    idr_preload_end();
    idr.remove(0);
    assert!(idr.is_empty());
}

#[test]
fn dropping_a_populated_idr_frees_its_nodes() {
    let mut idr = Idr::<u8>::new();
    for id in [1, 70, 5000, 300_000] {
        assert_eq!(alloc(&mut idr, id, 0), Ok(id));
    }
    let n = u64::from(idr.nr_nodes());
    let before = nodes_freed_here();
    drop(idr);
    assert_eq!(nodes_freed_here() - before, n);
}

#[test]
fn dense_fill_finds_every_hole() {
    let mut idr = Idr::<u8>::new();
    for want in 0..5000 {
        assert_eq!(alloc(&mut idr, 0, 0), Ok(want));
    }
    for id in (0..5000).step_by(7) {
        idr.remove(id);
    }
    for want in (0..5000).step_by(7) {
        assert_eq!(alloc(&mut idr, 0, 0), Ok(want));
    }
    assert_eq!(alloc(&mut idr, 0, 0), Ok(5000));
    let mut seen = 0;
    idr.for_each(|id, _| {
        assert_eq!(id, seen);
        seen += 1;
    });
    assert_eq!(seen, 5001);
    for id in 0..=5000 {
        idr.remove(id);
    }
    assert_eq!(idr.nr_nodes(), 0);
}

#[derive(Clone, Debug)]
enum IdrOp {
    Alloc(u32, u32),
    Cyclic(u32, u32),
    Remove(u32),
    SetCursor(u32),
}

fn id_strategy() -> impl Strategy<Value = u32> {
    prop_oneof![
        0u32..200,
        4000u32..4200,
        262_100u32..262_200,
        Just(IDR_ID_LIMIT - 1)
    ]
}

fn idr_op() -> impl Strategy<Value = IdrOp> {
    prop_oneof![
        (id_strategy(), id_strategy()).prop_map(|(a, b)| IdrOp::Alloc(a, b)),
        (id_strategy(), id_strategy()).prop_map(|(a, b)| IdrOp::Cyclic(a, b)),
        id_strategy().prop_map(IdrOp::Remove),
        id_strategy().prop_map(IdrOp::SetCursor),
    ]
}

fn model_first_free(set: &BTreeSet<u32>, start: u32, end: u32) -> Option<u32> {
    let max = Idr::<u8>::max_of(end);
    (start..=max).find(|id| !set.contains(id))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn idr_matches_a_set(ops in proptest::collection::vec(idr_op(), 1..120)) {
        let mut idr = Idr::<u8>::new();
        let mut set = BTreeSet::new();
        let mut next = 0u32;
        for op in ops {
            match op {
                IdrOp::Alloc(s, e) => {
                    let want = model_first_free(&set, s, e).ok_or(Errno::ENOSPC);
                    prop_assert_eq!(alloc(&mut idr, s, e), want);
                    if let Ok(id) = want { set.insert(id); }
                }
                IdrOp::Cyclic(s, e) => {
                    let from = next.max(s);
                    let want = model_first_free(&set, from, e)
                        .or_else(|| if from > s { model_first_free(&set, s, e) } else { None })
                        .ok_or(Errno::ENOSPC);
                    prop_assert_eq!(cyclic(&mut idr, s, e), want);
                    if let Ok(id) = want { set.insert(id); next = id + 1; }
                }
                IdrOp::Remove(id) => {
                    prop_assert_eq!(idr.remove(id).is_some(), set.remove(&id));
                }
                IdrOp::SetCursor(c) => { idr.set_cursor(c); next = c; }
            }
            prop_assert_eq!(idr.nr_ids() as usize, set.len());
            prop_assert_eq!(idr.get_cursor(), next);
        }
        let mut ids = Vec::new();
        idr.for_each(|id, _| ids.push(id));
        prop_assert_eq!(ids, set.iter().copied().collect::<Vec<_>>());
        for id in set { idr.remove(id); }
        prop_assert_eq!(idr.nr_nodes(), 0);
        prop_assert!(idr.is_empty());
    }
}

/// The value stored at `id` in the lockless-reader test: a reader that
/// finds another value at `id` read a node that was not `id`'s path.
fn val(id: u32) -> *mut u8 {
    p(((id as usize) << 4) | 8)
}

#[test]
fn lockless_readers_see_published_entries_or_nothing() {
    use crate::rcu::{rcu_barrier, rcu_read_lock};
    use std::sync::atomic::{AtomicBool, AtomicU64};
    use std::sync::{Arc, Mutex};

    // Id 7 stays; the others come and go. Inserting and removing the large
    // ones grows the tree to four levels and shrinks it back, replacing
    // the root, while readers must keep finding 7. All sit in slot 7 of
    // their leaf, so a reader that reads a freed node reused as another
    // leaf finds another id's value there.
    const STAYS: u32 = 7;
    const IDS: [u32; 5] = [
        64 + 7,
        4096 + 7,
        8192 + 64 + 7,
        (1 << 18) + 7,
        (1 << 23) + 7,
    ];
    let idr = Arc::new(Mutex::new(Idr::<u8>::new()));
    assert_eq!(alloc_val(&mut idr.lock().unwrap(), STAYS), Ok(STAYS));
    // SAFETY: the IDR outlives every reader (joined below).
    let view = unsafe { idr.lock().unwrap().rcu_view() };
    let stop = Arc::new(AtomicBool::new(false));
    let found = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (stop, found) = (stop.clone(), found.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let rcu = rcu_read_lock();
                    assert_eq!(
                        view.find(STAYS, &rcu),
                        val(STAYS),
                        "a present id was missed"
                    );
                    for id in IDS {
                        let v = view.find(id, &rcu);
                        assert!(v.is_null() || v == val(id), "id {id}: found {v:?}");
                        found.fetch_add(u64::from(!v.is_null()), Ordering::Relaxed);
                    }
                    drop(rcu);
                }
            })
        })
        .collect();
    for round in 0..20_000u32 {
        let mut g = idr.lock().unwrap();
        for (i, &id) in IDS.iter().enumerate() {
            if (round >> i) & 1 == 0 {
                if !g.is_allocated(id) {
                    assert_eq!(alloc_val(&mut g, id), Ok(id));
                }
            } else {
                g.remove(id);
            }
        }
        drop(g);
        // Let freed nodes reach the cache and be reused while readers run.
        if round % 64 == 0 {
            rcu_barrier();
        }
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    assert!(
        found.load(Ordering::Relaxed) > 0,
        "the readers never found an entry"
    );
    let mut g = idr.lock().unwrap();
    g.remove(STAYS);
    for id in IDS {
        g.remove(id);
    }
    assert_eq!(g.nr_nodes(), 0);
}

fn alloc_val(idr: &mut Idr<u8>, id: u32) -> Result<u32, Errno> {
    idr_preload().unwrap();
    let r = idr.alloc(val(id), id, id + 1);
    idr_preload_end();
    r
}
