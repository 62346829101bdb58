//! loom models of the paravirt ticket lock's halt and kick ([`PvTickets`]
//! over loom's atomics). The machine is modelled as the kernel's NMI kick
//! behaves: a CPU that enters `halt_unless` is "armed" from its check on; a
//! kick to an armed CPU ends its halt, a kick to a CPU not yet armed is
//! lost (the check that follows must then see the unlock). A lost wake-up
//! leaves a thread halted forever, which loom reports; two holders at once
//! trip the holder count and loom's `UnsafeCell` check. (loom does not
//! model SeqCst's total order, hence the fences: see
//! `AtomicWord::mb_after_atomic`.) Waiters halt without spinning first, so
//! every model goes through the halt. Run by `make test-loom`.

use super::{PvCpu, PvTickets, PvWaiter};
use crate::sync::loom_model;
use core::sync::atomic::Ordering::SeqCst;
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicU32, fence};
use loom::thread;

const IDLE: u32 = 0;
const ARMED: u32 = 1;
const KICKED: u32 = 2;

struct Machine {
    lock: PvTickets<AtomicU32>,
    waiters: Vec<PvWaiter<AtomicU32>>,
    armed: Vec<AtomicU32>,
    holders: AtomicU32,
    count: UnsafeCell<u32>,
}

fn machine(cpus: usize) -> Arc<Machine> {
    Arc::new(Machine {
        lock: PvTickets::with_words(),
        waiters: (0..cpus).map(|_| PvWaiter::with_words()).collect(),
        armed: (0..cpus).map(|_| AtomicU32::new(IDLE)).collect(),
        holders: AtomicU32::new(0),
        count: UnsafeCell::new(0),
    })
}

/// One CPU of the model machine.
struct Cpu(Arc<Machine>, usize);

impl PvCpu<AtomicU32> for Cpu {
    fn cpu(&self) -> usize {
        self.1
    }

    fn waiter(&self, cpu: usize) -> &PvWaiter<AtomicU32> {
        &self.0.waiters[cpu]
    }

    fn waiter_cpus(&self) -> usize {
        self.0.waiters.len()
    }

    fn spin_threshold(&self) -> u32 {
        // A spin round yields, and loom then runs the holder: a waiter that
        // spun would never reach the halt.
        0
    }

    fn spin_threshold_queued(&self) -> u32 {
        0
    }

    fn irqs_off<R>(&self, f: impl FnOnce() -> R) -> R {
        f()
    }

    fn halt_unless(&self, word: &AtomicU32, value: u32) {
        let armed = &self.0.armed[self.1];
        armed.store(ARMED, SeqCst);
        // An NMI is delivered at an instruction boundary: the kick and the
        // check are ordered one way or the other.
        fence(SeqCst);
        if word.load(SeqCst) != value {
            // Halted: only a kick ends it.
            while armed.load(SeqCst) == ARMED {
                thread::yield_now();
            }
        }
        armed.store(IDLE, SeqCst);
    }

    fn kick(&self, cpu: usize) {
        fence(SeqCst);
        let _ = self.0.armed[cpu].compare_exchange(ARMED, KICKED, SeqCst, SeqCst);
    }
}

fn lock(cpu: &Cpu) {
    let lock = &cpu.0.lock;
    if let Err(ticket) = lock.lock_fast() {
        lock.lock_slow_on(ticket, cpu, &mut ());
    }
    assert_eq!(cpu.0.holders.fetch_add(1, SeqCst), 0, "two holders at once");
}

fn unlock(cpu: &Cpu) {
    cpu.0.holders.fetch_sub(1, SeqCst);
    cpu.0.lock.unlock_on(cpu);
}

fn bump(cpu: &Cpu) {
    lock(cpu);
    // SAFETY: the lock is held (which is what loom checks).
    cpu.0.count.with_mut(|v| unsafe { *v += 1 });
    unlock(cpu);
}

fn count(m: &Machine) -> u32 {
    // SAFETY: every other thread has been joined.
    m.count.with(|v| unsafe { *v })
}

/// A two-CPU machine whose CPU 0 (this thread, returned as `me`) holds the
/// lock while CPU 1 (a new thread, `waiter`) sets out to bump the count
/// under it.
fn held_with_waiter() -> (Arc<Machine>, Cpu, thread::JoinHandle<()>) {
    let m = machine(2);
    let me = Cpu(m.clone(), 0);
    lock(&me);
    let waiter = {
        let m = m.clone();
        thread::spawn(move || bump(&Cpu(m, 1)))
    };
    (m, me, waiter)
}

/// The lock is held; a second CPU waits, halts, and must be kicked by the
/// unlock wherever the unlock falls relative to its check and halt.
#[test]
fn pvticket_kick_is_never_lost() {
    loom_model(|| {
        let (m, me, waiter) = held_with_waiter();
        unlock(&me);
        waiter.join().unwrap();
        assert_eq!(count(&m), 1);
        assert!(!m.lock.is_locked());
    });
}

/// Two waiters, two threads: CPU 1 waits for ticket 2, then the holder
/// (CPU 0) queues behind it for ticket 4 and unlocks ticket 0. The unlock
/// kicks CPU 1 (the new owner) and CPU 0 (the next), which then halts
/// until CPU 1's unlock kicks it. Each is served once, in ticket order.
/// (A third thread makes the model too large to finish.)
#[test]
fn pvticket_two_waiters_are_served_once_each_in_order() {
    loom_model(|| {
        let (m, me, waiter) = held_with_waiter();
        while m.lock.next.load(SeqCst) & !super::SLOWPATH < 4 {
            thread::yield_now();
        }
        let mine = m.lock.lock_fast().unwrap_err();
        assert_eq!(mine, 4);
        unlock(&me);
        m.lock.lock_slow_on(mine, &me, &mut ());
        assert_eq!(m.holders.fetch_add(1, SeqCst), 0, "two holders at once");
        assert_eq!(count(&m), 1, "served before the earlier ticket");
        // SAFETY: the lock is held.
        m.count.with_mut(|v| unsafe { *v += 1 });
        unlock(&me);
        waiter.join().unwrap();
        assert_eq!(count(&m), 2);
        assert!(!m.lock.is_locked());
    });
}

/// After the waiters are gone the slow-path flag is dropped, so the next
/// uncontended unlock takes the fast path again.
#[test]
fn pvticket_flag_is_cleared_when_no_one_waits() {
    loom_model(|| {
        let (m, me, waiter) = held_with_waiter();
        unlock(&me);
        waiter.join().unwrap();
        bump(&me);
        assert_eq!(m.lock.next.load(SeqCst) & super::SLOWPATH, 0);
        assert_eq!(count(&m), 2);
    });
}
