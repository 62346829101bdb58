//! loom models of the locked IDR's lockless lookup (`IdrRcu::find`: the
//! tree code over loom's atomics and the modelled RCU of `loom_rcu`), a
//! writer and a reader each: while the writer grows the tree by two levels
//! in one insertion, or removes an id so that its leaf and inner node are
//! freed and the tree shrinks by two levels, the reader always finds the
//! id that stays, finds the one that comes or goes or null, and never
//! reaches a freed node. Run by `make test-loom`.

use super::Idr;
use super::loom_env::LoomIdrEnv;
use super::loom_rcu::LoomNodes;
use crate::sync::loom_model;
use loom::thread;
use std::sync::Arc;

type Map = Idr<u8, LoomIdrEnv>;

/// In leaf 0 of a one-level tree.
const STAYS: u32 = 7;
/// Needs three levels (ids from 4096 do): in slot 1 of the top root.
const OTHER: u32 = 4096 + 7;

/// What is stored at `id`: a reader that finds another value at `id`
/// walked a path that is not `id`'s.
fn val(id: u32) -> *mut u8 {
    (((id as usize) << 4) | 8) as *mut u8
}

fn insert(m: &mut Map, id: u32) {
    assert_eq!(m.alloc(val(id), id, id + 1), Ok(id));
}

/// What a reader found while the writer changed the map.
struct Raced {
    stays: *mut u8,
    other: *mut u8,
    map: Map,
    nodes: Arc<LoomNodes>,
}

/// Runs `write` on the map holding `ids` while a reader looks up
/// [`STAYS`] and [`OTHER`] in one read-side section.
fn race(ids: &[u32], write: impl FnOnce(&mut Map)) -> Raced {
    let (env, rcu, nodes) = LoomIdrEnv::new();
    let mut map = Map::with_env(env);
    for &id in ids {
        insert(&mut map, id);
    }
    // SAFETY: the map outlives the reader, which is joined below.
    let view = unsafe { map.rcu_view() };
    let reader = thread::spawn(move || {
        let g = rcu.read_lock();
        let found = (view.find(STAYS, &g) as usize, view.find(OTHER, &g) as usize);
        drop(g);
        found
    });
    write(&mut map);
    let (stays, other) = reader.join().unwrap();
    Raced {
        stays: stays as *mut u8,
        other: other as *mut u8,
        map,
        nodes,
    }
}

#[test]
fn loom_models_idr_lookup_racing_growth_finds_what_stays() {
    loom_model(|| {
        // Two new roots above the old one, each published only once its
        // slot 0 links the tree below, then OTHER's path.
        let r = race(&[STAYS], |m| insert(m, OTHER));
        assert_eq!(r.stays, val(STAYS), "a present id was missed");
        assert!(r.other.is_null() || r.other == val(OTHER), "{:?}", r.other);
        assert_eq!((r.map.height(), r.map.nr_nodes()), (3, 5));
        drop(r.map);
        assert_eq!(r.nodes.live(), 0);
    });
}

#[test]
fn loom_models_idr_lookup_racing_shrink_and_node_frees_finds_what_stays() {
    loom_model(|| {
        // OTHER's leaf and inner node leave the tree, then two roots do,
        // each keeping its slot 0 until its grace period ends; a reader on
        // any of them must not see it freed.
        let r = race(&[STAYS, OTHER], |m| {
            assert_eq!(m.remove(OTHER), Some(val(OTHER)));
        });
        assert_eq!(r.stays, val(STAYS), "a present id was missed");
        assert!(r.other.is_null() || r.other == val(OTHER), "{:?}", r.other);
        assert_eq!((r.map.height(), r.map.nr_nodes()), (1, 1));
        assert_eq!(r.nodes.live(), 1, "the four nodes that left were freed");
        drop(r.map);
        assert_eq!(r.nodes.live(), 0);
    });
}
