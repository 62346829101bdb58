//! The idle/wake hand-shake: when a waker must send the wake IPI.
//!
//! A CPU with nothing to run halts in `sti; hlt` and only an interrupt ends
//! that. A task queued on another CPU's run queue therefore needs the wake
//! IPI when that CPU is halted, and only then: a busy CPU takes the task
//! from its queue at its next `schedule()` (the kernel does not preempt, so
//! an interrupt cannot make it switch sooner), and an IPI there only costs
//! it an interrupt (under TCG, xAPIC register writes that serialise vCPUs).
//! Linux skips the IPI the same way for a CPU polling in idle
//! (`set_nr_if_polling`).
//!
//! The protocol is Dekker's: the idle CPU announces [`IdleKick::prepare_halt`]
//! and then looks at its run queue under the queue's lock; a waker pushes
//! under that lock and then asks [`IdleKick::needs_kick`]. Whichever takes the
//! lock second sees the other's write, so either the idle CPU finds the task
//! or the waker sends the IPI. The loom model below checks exactly this
//! code with loom's atomics.

use core::sync::atomic::Ordering;

use crate::sync::word::AtomicWord;

/// One CPU's "may be halted" flag.
pub(crate) struct IdleKick<W: AtomicWord> {
    halting: W,
}

impl<W: AtomicWord> IdleKick<W> {
    /// A flag of a CPU that is not halting (non-const; the kernel's
    /// statics build the `AtomicU32` form with [`IdleKick::new`]).
    #[cfg_attr(not(all(test, loom)), allow(dead_code))]
    pub(crate) fn with_word() -> Self {
        IdleKick {
            halting: W::with_value(0),
        }
    }

    /// The idle CPU, before its last look at the run queue: from here on
    /// it may halt, so wakers must send the IPI.
    #[inline]
    pub(crate) fn prepare_halt(&self) {
        self.halting.store(1, Ordering::SeqCst);
    }

    /// The idle CPU is awake again (it found work, or an interrupt ended
    /// the halt): no IPI needed until the next [`prepare_halt`](Self::prepare_halt).
    #[inline]
    pub(crate) fn end_halt(&self) {
        self.halting.store(0, Ordering::Relaxed);
    }

    /// A waker, after queueing a task under the run queue's lock: whether
    /// the CPU may be halted and needs the wake IPI.
    #[inline]
    pub(crate) fn needs_kick(&self) -> bool {
        self.halting.load(Ordering::SeqCst) != 0
    }
}

impl IdleKick<core::sync::atomic::AtomicU32> {
    /// A flag of a CPU that is not halting.
    pub(crate) const fn new() -> Self {
        IdleKick {
            halting: core::sync::atomic::AtomicU32::new(0),
        }
    }
}

#[cfg(all(test, loom))]
mod loom_models {
    //! The hand-shake over loom's atomics, with a loom mutex standing in
    //! for the run queue's lock: whatever the interleaving, the idle CPU
    //! either finds the queued task or the waker decides to kick it.

    use super::IdleKick;
    use crate::sync::loom_model;
    use loom::sync::atomic::AtomicU32;
    use loom::sync::{Arc, Mutex};
    use loom::thread;

    type Shared = (IdleKick<AtomicU32>, Mutex<u32>);

    #[test]
    fn idle_finds_the_task_or_the_waker_kicks() {
        loom_model(|| {
            let s: Arc<Shared> = Arc::new((IdleKick::with_word(), Mutex::new(0)));
            let waker = {
                let s = s.clone();
                thread::spawn(move || {
                    *s.1.lock().unwrap() += 1;
                    s.0.needs_kick()
                })
            };
            s.0.prepare_halt();
            let found = *s.1.lock().unwrap() > 0;
            let kicked = waker.join().unwrap();
            assert!(
                found || kicked,
                "the task was queued on a halted CPU and no IPI sent"
            );
        });
    }

    #[test]
    fn a_busy_cpu_is_not_kicked() {
        loom_model(|| {
            let s: Arc<Shared> = Arc::new((IdleKick::with_word(), Mutex::new(0)));
            s.0.prepare_halt();
            s.0.end_halt();
            let waker = {
                let s = s.clone();
                thread::spawn(move || {
                    *s.1.lock().unwrap() += 1;
                    s.0.needs_kick()
                })
            };
            assert!(!waker.join().unwrap());
        });
    }
}
