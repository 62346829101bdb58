//! `seqlock_t` (Linux's include/linux/seqlock.h): a spinlock that writers
//! take, plus a sequence count they make odd while they write, so readers
//! never block writers: a reader samples the count, reads, and retries if
//! the count was odd or moved.
//!
//! The protected value is made of atomics (read and written with relaxed
//! ordering), so a reader racing a writer sees torn values it then throws
//! away, never undefined behaviour. Writers order the count and the data
//! with release/acquire fences, as `write_seqcount_begin`/`_end` do.

use core::sync::atomic::{AtomicU32, Ordering, fence};

use super::{SpinLock, named_spin_lock};

/// A sequence-locked `T` (whose fields are atomics).
pub(crate) struct SeqLock<T> {
    seq: AtomicU32,
    lock: SpinLock<()>,
    data: T,
}

/// A held `write_seqlock()`; dropping it is `write_sequnlock()`.
pub(crate) struct SeqLockWriteGuard<'a, T> {
    owner: &'a SeqLock<T>,
    _lock: lock_api::MutexGuard<'a, super::irq::IrqLock<super::RawSpin, super::irq::Plain>, ()>,
}

impl<T> SeqLock<T> {
    /// A named seqlock (`DEFINE_SEQLOCK`).
    pub(crate) const fn named(name: &'static str, data: T) -> Self {
        SeqLock {
            seq: AtomicU32::new(0),
            lock: named_spin_lock(name, ()),
            data,
        }
    }

    /// `write_seqlock()`: excludes other writers and makes the count odd.
    pub(crate) fn write(&self) -> SeqLockWriteGuard<'_, T> {
        let lock = self.lock.lock();
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s.wrapping_add(1), Ordering::Relaxed);
        // smp_wmb(): the odd count is visible before any data store.
        fence(Ordering::Release);
        SeqLockWriteGuard {
            owner: self,
            _lock: lock,
        }
    }

    /// `read_seqbegin()`..`read_seqretry()` around `f`: a consistent read,
    /// retried while a writer is active.
    pub(crate) fn read<R>(&self, f: impl Fn(&T) -> R) -> R {
        loop {
            let start = self.seq.load(Ordering::Acquire);
            if start & 1 != 0 {
                core::hint::spin_loop();
                continue;
            }
            let r = f(&self.data);
            // smp_rmb(): the data loads happen before the count re-read.
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == start {
                return r;
            }
        }
    }

    /// Writes done so far (the count halved).
    #[cfg(test)]
    pub(crate) fn writes(&self) -> u32 {
        self.seq.load(Ordering::Relaxed) / 2
    }
}

impl<T> core::ops::Deref for SeqLockWriteGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.owner.data
    }
}

impl<T> Drop for SeqLockWriteGuard<'_, T> {
    fn drop(&mut self) {
        // smp_wmb(): the data stores are visible before the even count.
        fence(Ordering::Release);
        let s = self.owner.seq.load(Ordering::Relaxed);
        self.owner.seq.store(s.wrapping_add(1), Ordering::Relaxed);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use core::sync::atomic::AtomicU64;

    struct Pair {
        a: AtomicU64,
        b: AtomicU64,
    }

    #[test]
    fn readers_never_see_a_half_written_pair() {
        let l = SeqLock::named(
            "test_seqlock",
            Pair {
                a: AtomicU64::new(0),
                b: AtomicU64::new(0),
            },
        );
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 1..=20_000u64 {
                    let w = l.write();
                    w.a.store(i, Ordering::Relaxed);
                    w.b.store(i, Ordering::Relaxed);
                }
            });
            s.spawn(|| {
                for _ in 0..20_000 {
                    let (a, b) =
                        l.read(|p| (p.a.load(Ordering::Relaxed), p.b.load(Ordering::Relaxed)));
                    assert_eq!(a, b, "torn read returned");
                }
            });
        });
        assert_eq!(l.writes(), 20_000);
    }
}
