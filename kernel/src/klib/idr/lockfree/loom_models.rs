//! loom models of the lock-free map (the protocol code over loom's atomics
//! and the modelled RCU of `loom_env`), two threads each: claims never
//! hand out an id twice and both succeed when there is room; a lookup
//! racing publish and remove sees null or the published entry, never a
//! freed node; racing installs leave one node linked and free the others;
//! a claim racing the reclaim of its leaf gets its free id, exact or
//! cyclic, in a live leaf; a removal emptying the cursor's leaf while a
//! claim moves the cursor out leaves no empty leaf linked; a removal
//! racing the claim that fills a leaf leaves no stale full hint. Run by
//! `make test-loom`.

use super::loom_env::LoomEnv;
use super::tests_shared::check_invariants;
use super::tree::LEAF;
use super::{LfIdr, slot_of};
use crate::klib::errno::Errno;
use crate::sync::loom_model;
use core::sync::atomic::Ordering;
use loom::sync::Arc;
use loom::thread;

type Map = LfIdr<u8, LoomEnv>;

const RESERVED: u32 = 300;

fn remove(m: &Map, id: u32) -> Option<*mut u8> {
    // SAFETY: each model removes only ids it claimed, once.
    unsafe { m.remove(id) }
}

#[test]
fn loom_models_two_claimers_get_distinct_ids() {
    loom_model(|| {
        let (env, counts) = LoomEnv::new();
        let m = Arc::new(Map::with_env(env));
        m.claim_exact(1).unwrap();
        let other = {
            let m = m.clone();
            thread::spawn(move || m.claim_cyclic(RESERVED, 4))
        };
        let mine = m.claim_cyclic(RESERVED, 4);
        let theirs = other.join().unwrap();
        let mut got = [mine.unwrap(), theirs.unwrap()];
        got.sort();
        assert_eq!(got, [2, 3], "both claims succeed, with different ids");
        assert_eq!(m.get_cursor(), 4, "the cursor ends past both");
        assert_eq!(m.count_ids(), 3);
        check_invariants(&m, true);
        drop(m);
        assert_eq!(counts.live(), 0);
    });
}

#[test]
fn loom_models_one_free_id_goes_to_one_claimer() {
    loom_model(|| {
        let (env, _) = LoomEnv::new();
        let m = Arc::new(Map::with_env(env));
        m.claim_exact(1).unwrap();
        let other = {
            let m = m.clone();
            thread::spawn(move || m.claim_cyclic(RESERVED, 3))
        };
        let mine = m.claim_cyclic(RESERVED, 3);
        let theirs = other.join().unwrap();
        let mut got = [mine, theirs];
        got.sort();
        assert_eq!(got, [Ok(2), Err(Errno::ENOSPC)]);
    });
}

#[test]
fn loom_models_racing_installs_link_one_node_and_free_the_other() {
    loom_model(|| {
        let (env, counts) = LoomEnv::new();
        let m = Arc::new(Map::with_env(env));
        let other = {
            let m = m.clone();
            thread::spawn(move || m.claim_exact(5))
        };
        assert_eq!(m.claim_exact(6), Ok(()));
        assert_eq!(other.join().unwrap(), Ok(()));
        assert_eq!(m.nr_nodes(), 3, "one node per level");
        assert_eq!(counts.live(), 3, "the losers' nodes were freed");
        assert!(m.is_allocated(5) && m.is_allocated(6));
        check_invariants(&m, true);
        drop(m);
        assert_eq!(counts.live(), 0);
    });
}

#[test]
fn loom_models_lookup_sees_null_or_the_entry_never_a_freed_node() {
    loom_model(|| {
        let (env, counts) = LoomEnv::new();
        let m = Arc::new(Map::with_env(env));
        // Leaf 1 (ids 64..128); the cursor's leaf is leaf 0, so removing 70
        // reclaims leaf 1 while the lookup may be walking it.
        m.claim_exact(70).unwrap();
        let entry = 0x7000 as *mut u8;
        let reader = {
            let m = m.clone();
            thread::spawn(move || {
                let g = m.read_lock();
                let e = m.find(70, &g);
                drop(g);
                e
            })
        };
        // SAFETY: 70 is ours, claimed above.
        unsafe { m.publish(70, entry) }.unwrap();
        assert_eq!(remove(&m, 70), Some(entry));
        let seen = reader.join().unwrap();
        assert!(seen.is_null() || seen == entry, "lookup saw {seen:?}");
        assert_eq!(m.nr_nodes(), 2, "the emptied leaf was unlinked");
        assert_eq!(counts.live(), 2, "and freed after the grace period");
    });
}

#[test]
fn loom_models_exact_claim_racing_a_reclaim_lands_in_a_live_leaf() {
    loom_model(|| {
        let (env, counts) = LoomEnv::new();
        let m = Arc::new(Map::with_env(env));
        m.claim_exact(70).unwrap();
        let claimer = {
            let m = m.clone();
            // 71 is free all along, whatever state leaf 1 is in.
            thread::spawn(move || m.claim_exact(71))
        };
        assert_eq!(remove(&m, 70), Some(core::ptr::null_mut()));
        assert_eq!(claimer.join().unwrap(), Ok(()), "a free id refused");
        assert!(m.is_allocated(71) && !m.is_allocated(70));
        assert_eq!(m.count_ids(), 1);
        assert_eq!(m.nr_nodes(), 3);
        assert_eq!(counts.live(), 3, "a dead leaf was freed, a live one kept");
        check_invariants(&m, true);
    });
}

#[test]
fn loom_models_cyclic_claim_racing_a_reclaim_finds_the_free_ids_there() {
    loom_model(|| {
        let (env, counts) = LoomEnv::new();
        let m = Arc::new(Map::with_env(env));
        // Below pid_max 128 only leaf 1 (64..128) has room, and it is
        // being reclaimed (the cursor is in leaf 0).
        for id in 0..64 {
            m.claim_exact(id).unwrap();
        }
        m.claim_exact(70).unwrap();
        m.set_cursor(63);
        let claimer = {
            let m = m.clone();
            thread::spawn(move || m.claim_cyclic(RESERVED, 128))
        };
        assert_eq!(remove(&m, 70), Some(core::ptr::null_mut()));
        // Leaf 1 live, dying or replaced: 64 is free in each.
        assert_eq!(claimer.join().unwrap(), Ok(64), "a free id passed");
        assert_eq!(m.count_ids(), 65);
        assert_eq!(counts.live(), m.nr_nodes() as usize);
        check_invariants(&m, false);
    });
}

#[test]
fn loom_models_no_leaf_stays_linked_empty_when_the_cursor_leaves_it() {
    loom_model(|| {
        let (env, counts) = LoomEnv::new();
        let m = Arc::new(Map::with_env(env));
        // The cursor is in leaf 1 at 127, the leaf's only id: its remover
        // keeps the leaf if it sees the cursor there, and the claim (which
        // gets 127 back or 128, in leaf 2) moves the cursor out.
        m.claim_exact(127).unwrap();
        m.set_cursor(127);
        let claimer = {
            let m = m.clone();
            thread::spawn(move || m.claim_cyclic(RESERVED, 200))
        };
        assert_eq!(remove(&m, 127), Some(core::ptr::null_mut()));
        let got = claimer.join().unwrap();
        assert!(matches!(got, Ok(127) | Ok(128)), "{got:?}");
        let census = m.census();
        assert_eq!(census.idle_leaves, 0, "an emptied leaf left linked");
        assert_eq!(census.nodes(), m.nr_nodes());
        assert_eq!(counts.live(), m.nr_nodes() as usize);
        check_invariants(&m, true);
    });
}

#[test]
fn loom_models_a_removal_racing_the_filling_claim_leaves_no_stale_hint() {
    loom_model(|| {
        let (env, _) = LoomEnv::new();
        let m = Arc::new(Map::with_env(env));
        for id in 0..63 {
            m.claim_exact(id).unwrap();
        }
        let filler = {
            let m = m.clone();
            thread::spawn(move || m.claim_exact(63))
        };
        assert_eq!(remove(&m, 5), Some(core::ptr::null_mut()));
        assert_eq!(filler.join().unwrap(), Ok(()));
        let hinted = {
            let g = m.read_lock();
            let path = m.path_to(0, super::Section::of(&g)).unwrap();
            path[LEAF - 1].bits.load(Ordering::SeqCst) & (1 << slot_of(0, LEAF - 1)) != 0
        };
        assert!(!hinted, "a full hint over a leaf with room");
        check_invariants(&m, true);
        // The freed id is found again.
        assert_eq!(m.claim_cyclic(RESERVED, 64), Ok(5));
    });
}
