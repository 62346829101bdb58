//! loom models of `pid_allocated` without a lock: no add succeeds once
//! allocation is disabled, and a namespace's death races an add
//! linearizably. Run by `make test-loom`.

use super::{PIDNS_ADDING, PidAllocated};
use crate::klib::errno::Errno;
use crate::sync::loom_model;
use loom::sync::Arc;
use loom::sync::atomic::AtomicU32;
use loom::thread;

type Word = PidAllocated<AtomicU32>;

#[test]
fn loom_models_no_add_after_disable() {
    loom_model(|| {
        let a = Arc::new(Word::with_word());
        let adder = {
            let a = a.clone();
            thread::spawn(move || a.try_add())
        };
        let count = a.disable();
        let added = adder.join().unwrap();
        // Either the add came first (and the disabler saw it counted) or
        // it was refused.
        match added {
            Ok(v) => assert_eq!((v, count), (PIDNS_ADDING + 1, 1)),
            Err(e) => assert_eq!((e, count), (Errno::ENOMEM, 0)),
        }
        assert_eq!(a.get(), count);
    });
}

#[test]
fn loom_models_death_of_a_new_namespace_races_an_add() {
    loom_model(|| {
        let a = Arc::new(Word::with_word());
        a.try_add().unwrap();
        let adder = {
            let a = a.clone();
            thread::spawn(move || a.try_add())
        };
        let removed = a.remove();
        let added = adder.join().unwrap();
        match (removed, added) {
            // The removal came first: dead, the add refused.
            (PIDNS_ADDING, Err(Errno::ENOMEM)) => assert_eq!(a.get(), 0),
            // The add came first (or between the two halves of the
            // removal): alive with one pid.
            (r, Ok(_)) if r == PIDNS_ADDING + 1 => assert_eq!(a.get(), PIDNS_ADDING + 1),
            other => panic!("not linearizable: {other:?}"),
        }
    });
}
