//! loom models of the qrwlock protocol ([`Qrw`] over loom's atomics):
//! readers exclude writers and writers each other (loom's `UnsafeCell`
//! flags any overlapping write), a waiting writer is always woken (a lost
//! wake-up would spin forever, which loom reports), and an interrupt-context
//! reader gets past a waiting writer (the model deadlocks otherwise). Run
//! by `make test-loom`.

use super::Qrw;
use crate::sync::loom_model;
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::AtomicU32;
use loom::thread;

type LoomQrw = Qrw<AtomicU32, crate::sync::ticket::Tickets<AtomicU32>>;
type Shared = (LoomQrw, UnsafeCell<u32>);

fn new_shared() -> Arc<Shared> {
    Arc::new((LoomQrw::with_words(), UnsafeCell::new(0)))
}

fn write(s: &Shared) {
    s.0.write_lock();
    // SAFETY: the write lock is held (which is what loom checks).
    s.1.with_mut(|v| unsafe { *v += 1 });
    s.0.write_unlock();
}

fn read(s: &Shared, in_interrupt: bool) -> u32 {
    s.0.read_lock(in_interrupt);
    // SAFETY: the read lock is held (which is what loom checks).
    let v = s.1.with(|v| unsafe { *v });
    s.0.read_unlock();
    v
}

/// Runs `f` on the shared lock in a new thread.
fn spawn<T: 'static>(
    s: &Arc<Shared>,
    f: impl FnOnce(&Shared) -> T + 'static,
) -> thread::JoinHandle<T> {
    let s = s.clone();
    thread::spawn(move || f(&s))
}

#[test]
fn rwlock_writers_exclude_each_other() {
    loom_model(|| {
        let s = new_shared();
        let other = spawn(&s, write);
        write(&s);
        other.join().unwrap();
        assert_eq!(read(&s, false), 2);
        assert!(!s.0.is_locked());
    });
}

/// A reader (in task or interrupt context) racing a writer sees the count
/// before or after the write, never during it.
fn reader_excludes_writer(in_interrupt: bool) {
    loom_model(move || {
        let s = new_shared();
        let reader = spawn(&s, move |s| read(s, in_interrupt));
        write(&s);
        assert!(reader.join().unwrap() <= 1);
        assert!(!s.0.is_locked());
    });
}

#[test]
fn rwlock_readers_exclude_writers() {
    reader_excludes_writer(false);
}

#[test]
fn rwlock_interrupt_readers_exclude_writers() {
    reader_excludes_writer(true);
}

/// The writer arrives while a reader holds the lock, so it must wait and
/// then be let in once the reader leaves.
#[test]
fn rwlock_waiting_writer_is_woken() {
    loom_model(|| {
        let s = new_shared();
        s.0.read_lock(false);
        let writer = spawn(&s, write);
        let late_reader = spawn(&s, |s| read(s, false));
        s.0.read_unlock();
        writer.join().unwrap();
        late_reader.join().unwrap();
        assert_eq!(read(&s, false), 1);
    });
}

/// A task reader holds the lock; a writer on another CPU starts waiting
/// for it; then an interrupt arrives on the reader's CPU and read-locks
/// too. If the interrupt reader queued behind the waiting writer, nobody
/// could progress (the writer waits for our bias, we wait for the IRQ).
/// Two threads: the interrupt runs on the holder's thread, as on a CPU.
#[test]
fn rwlock_interrupt_reader_passes_waiting_writer() {
    loom_model(|| {
        let s = new_shared();
        s.0.read_lock(false);
        let writer = spawn(&s, write);
        while !s.0.writer_waiting() {
            thread::yield_now();
        }
        // The interrupt: must get in although a writer waits.
        assert_eq!(read(&s, true), 0);
        s.0.read_unlock();
        writer.join().unwrap();
        assert_eq!(read(&s, false), 1);
    });
}
