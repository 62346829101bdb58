//! Std-thread stress tests of the lock-free map: 8 threads (8 simulated
//! CPUs) claim, publish, look up and remove random ids in a small range, so
//! claims collide, leaves fill, empty, die and come back. A shared
//! ownership array catches an id handed out twice; afterwards the map must
//! be empty with no leaf linked but the cursor's, every id claimable again
//! (none lost), and, after `rcu_barrier`, every reclaimed node freed.

use super::{RESERVED, check_invariants, private_env, settled_nodes};
use crate::klib::errno::Errno;
use crate::klib::fault_inject::{FaultMode, FaultSite, fault_inject};
use crate::klib::idr::lockfree::{KernelEnv, LfIdr, lf_stats_total};
use crate::platform;
use crate::rcu::rcu_read_lock;
use std::sync::Barrier;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

type Map = LfIdr<u8, KernelEnv>;

const THREADS: usize = 8;

/// A small deterministic generator (xorshift64*), one per thread.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What a thread publishes at `id`: recognisable, never dereferenced.
fn entry(id: u32, owner: u32) -> *mut u8 {
    ((id as usize) << 8 | owner as usize) as *mut u8
}

struct Shared {
    map: Map,
    /// `owners[id]`: the thread (1-based) holding `id`, 0 if none.
    owners: Vec<AtomicU32>,
    end: u32,
    claims: AtomicU64,
    lookups_hit: AtomicU64,
    start: Barrier,
}

impl Shared {
    fn take(&self, id: u32, me: u32) {
        let prev = self.owners[id as usize].swap(me, Ordering::SeqCst);
        assert_eq!(
            prev, 0,
            "id {id} handed to thread {me} while thread {prev} holds it"
        );
        self.claims.fetch_add(1, Ordering::Relaxed);
    }

    fn give_back(&self, id: u32, me: u32, published: bool) {
        // Released before the map frees it: another claimer may take it
        // the moment the bit clears.
        assert_eq!(self.owners[id as usize].swap(0, Ordering::SeqCst), me);
        // SAFETY: this thread claimed `id` and removes it once.
        let e = unsafe { self.map.remove(id) };
        let want = if published {
            entry(id, me)
        } else {
            core::ptr::null_mut()
        };
        assert_eq!(e, Some(want), "remove({id}) by thread {me}");
    }

    fn lookup(&self, id: u32) {
        let g = rcu_read_lock();
        let e = self.map.find(id, &g);
        if !e.is_null() {
            assert_eq!(
                e as usize >> 8,
                id as usize,
                "find({id}) returned another id's entry"
            );
            self.lookups_hit.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One thread's run: `ops` random operations keeping at most `hold` ids,
/// then everything it holds removed. `exact_share` of 16 claims are exact.
fn worker(s: &Shared, t: usize, ops: usize, hold: usize, exact_share: u64, fail_every: u32) {
    let me = t as u32 + 1;
    // Start together, or the first threads finish before the last begin.
    s.start.wait();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((t as u64 + 1) * 0x1000_0001));
    // (id, published)
    let mut mine: Vec<(u32, bool)> = Vec::new();
    if fail_every > 0 {
        fault_inject(
            FaultSite::NodeAlloc,
            FaultMode::FailEvery(fail_every),
            Some(platform::cpu_id()),
        );
    }
    for _ in 0..ops {
        match rng.below(8) {
            0..=2 if mine.len() < hold => {
                let got = if rng.below(16) < exact_share {
                    let id = 1 + rng.below(u64::from(s.end) - 1) as u32;
                    match s.map.claim_exact(id) {
                        Ok(()) => Ok(id),
                        Err(e) => Err(e),
                    }
                } else {
                    s.map.claim_cyclic(RESERVED, s.end)
                };
                match got {
                    Ok(id) => {
                        s.take(id, me);
                        mine.push((id, false));
                    }
                    Err(Errno::EEXIST | Errno::ENOSPC | Errno::ENOMEM) => {}
                    Err(e) => panic!("unexpected {e}"),
                }
            }
            3 if !mine.is_empty() => {
                let i = rng.below(mine.len() as u64) as usize;
                let (id, published) = &mut mine[i];
                if !*published {
                    // SAFETY: this thread claimed `id` and still holds it.
                    unsafe { s.map.publish(*id, entry(*id, me)) }.unwrap();
                    *published = true;
                }
            }
            4..=5 => s.lookup(1 + rng.below(u64::from(s.end) - 1) as u32),
            _ if !mine.is_empty() => {
                let i = rng.below(mine.len() as u64) as usize;
                let (id, published) = mine.swap_remove(i);
                s.give_back(id, me, published);
            }
            _ => {}
        }
    }
    if fail_every > 0 {
        fault_inject(
            FaultSite::NodeAlloc,
            FaultMode::Off,
            Some(platform::cpu_id()),
        );
    }
    for (id, published) in mine {
        s.give_back(id, me, published);
    }
}

/// Runs the workers, then checks: empty map, no id lost, nodes freed.
fn stress(
    s: &Shared,
    cache: &crate::mm::cache::RcuObjCache,
    ops: usize,
    hold: usize,
    exact: u64,
    fail: u32,
) {
    std::thread::scope(|sc| {
        for t in 0..THREADS {
            sc.spawn(move || worker(s, t, ops, hold, exact, fail));
        }
    });
    let m = &s.map;
    assert_eq!(
        m.count_ids(),
        0,
        "ids left after every thread removed its own"
    );
    check_invariants(m, false);
    let census = m.census();
    assert_eq!(census.idle_leaves, 0, "emptied leaves left linked");
    assert_eq!(census.nodes(), m.nr_nodes());
    let linked = u64::from(m.nr_nodes());
    assert_eq!(
        settled_nodes(cache, linked),
        linked,
        "reclaimed nodes not freed after rcu_barrier"
    );
    // No id lost: from an empty map, one thread gets every id of the range
    // once, in order, then ENOSPC.
    m.set_cursor(0);
    for want in 1..s.end {
        assert_eq!(
            m.claim_cyclic(RESERVED, s.end),
            Ok(want),
            "id {want} was lost"
        );
    }
    assert_eq!(m.claim_cyclic(RESERVED, s.end), Err(Errno::ENOSPC));
    check_invariants(m, true);
    for id in 1..s.end {
        // SAFETY: claimed just above, removed once.
        assert_eq!(unsafe { m.remove(id) }, Some(core::ptr::null_mut()));
    }
    assert_eq!(m.count_ids(), 0);
}

fn shared(env: KernelEnv, end: u32) -> Shared {
    Shared {
        map: Map::with_env(env),
        owners: (0..end).map(|_| AtomicU32::new(0)).collect(),
        end,
        claims: AtomicU64::new(0),
        lookups_hit: AtomicU64::new(0),
        start: Barrier::new(THREADS),
    }
}

#[test]
fn lockfree_stress_mixed_claims_over_32_leaves() {
    let (env, cache) = private_env!();
    let s = shared(env, 2048);
    let before = lf_stats_total();
    stress(&s, cache, 200_000, 150, 4, 0);
    let st = lf_stats_total();
    assert!(s.claims.load(Ordering::Relaxed) > 10_000);
    assert!(s.lookups_hit.load(Ordering::Relaxed) > 0);
    assert!(st.reclaims > before.reclaims, "{st:?}");
    drop(s);
    assert_eq!(settled_nodes(cache, 0), 0);
}

#[test]
fn lockfree_stress_exact_claims_race_reclaims_in_4_leaves() {
    // Few ids held, mostly exact claims in 256 ids: leaves empty and die
    // constantly while others claim into them.
    let (env, cache) = private_env!();
    let s = shared(env, 256);
    let before = lf_stats_total();
    stress(&s, cache, 300_000, 4, 12, 0);
    let st = lf_stats_total();
    assert!(st.reclaims > before.reclaims, "{st:?}");
    drop(s);
    assert_eq!(settled_nodes(cache, 0), 0);
}

#[test]
fn lockfree_stress_leaves_fill_and_empty_under_racing_hints() {
    // 128 ids and up to 8 x 16 held: the two leaves and their inner node
    // fill and empty constantly, so full hints are set and cleared in
    // races.
    let (env, cache) = private_env!();
    let s = shared(env, 129);
    stress(&s, cache, 200_000, 16, 4, 0);
    drop(s);
    assert_eq!(settled_nodes(cache, 0), 0);
}

#[test]
fn lockfree_stress_with_injected_node_failures() {
    let (env, cache) = private_env!();
    let s = shared(env, 1024);
    let before = lf_stats_total();
    stress(&s, cache, 100_000, 40, 6, 5);
    assert!(lf_stats_total().node_alloc_failures > before.node_alloc_failures);
    drop(s);
    assert_eq!(settled_nodes(cache, 0), 0);
}
