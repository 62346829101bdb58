//! `Lazy<T>`: a static initialised on first use (for per-CPU tables and
//! caches, whose constructors are not `const`).
//!
//! The first caller runs the initialiser; concurrent callers spin until it
//! is done. After that, `get` is one Acquire load and a branch.

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::ops::Deref;
use core::sync::atomic::{AtomicU8, Ordering};

const EMPTY: u8 = 0;
const RUNNING: u8 = 1;
const READY: u8 = 2;

pub struct Lazy<T> {
    state: AtomicU8,
    value: UnsafeCell<MaybeUninit<T>>,
    init: fn() -> T,
}

// SAFETY: the value is written once, by the caller that moved `state` from
// EMPTY to RUNNING, and only read after `state` is READY (Release/Acquire).
unsafe impl<T: Send + Sync> Sync for Lazy<T> {}

impl<T> Lazy<T> {
    pub const fn new(init: fn() -> T) -> Self {
        Lazy {
            state: AtomicU8::new(EMPTY),
            value: UnsafeCell::new(MaybeUninit::uninit()),
            init,
        }
    }

    /// The value, initialising it on first use.
    #[inline]
    pub fn get(&self) -> &T {
        if self.state.load(Ordering::Acquire) != READY {
            self.initialise();
        }
        // SAFETY: `state` is READY, so the value was written and is never
        // written again.
        unsafe { (*self.value.get()).assume_init_ref() }
    }

    /// Never inlined: the value is built on this function's frame, and a
    /// per-CPU table is tens of KiB. Inlined, that frame was reserved in
    /// every caller of `get` (measured: 60 KiB of stack in the pid paths,
    /// overflowing 16 KiB task stacks); out of line it exists only during
    /// the first call, which boot makes on its 256 KiB stack.
    #[cold]
    #[inline(never)]
    fn initialise(&self) {
        match self
            .state
            .compare_exchange(EMPTY, RUNNING, Ordering::Acquire, Ordering::Acquire)
        {
            Ok(_) => {
                let v = (self.init)();
                // SAFETY: we won the EMPTY -> RUNNING race; nobody reads the
                // value before READY.
                unsafe { (*self.value.get()).write(v) };
                self.state.store(READY, Ordering::Release);
            }
            Err(_) => {
                while self.state.load(Ordering::Acquire) != READY {
                    core::hint::spin_loop();
                }
            }
        }
    }
}

impl<T> Deref for Lazy<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    static CALLS: AtomicUsize = AtomicUsize::new(0);
    static VALUE: Lazy<usize> = Lazy::new(|| {
        CALLS.fetch_add(1, Ordering::SeqCst);
        42
    });

    #[test]
    fn initialises_once_under_contention() {
        let threads: Vec<_> = (0..8).map(|_| std::thread::spawn(|| *VALUE)).collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), 42);
        }
        assert_eq!(CALLS.load(Ordering::SeqCst), 1);
    }
}
