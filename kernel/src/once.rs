//! A lazily built, never freed global (`OnceBox`), for statics whose
//! constructor is not `const` (per-CPU tables, `init_pid_ns`).
//!
//! The first caller builds the value and publishes it with one
//! compare-and-swap; a racing caller that loses drops its own copy and uses
//! the winner's. After that, reaching the value is one Acquire load. No
//! lock is involved, so it works before the scheduler exists and from any
//! CPU.

use alloc::boxed::Box;
use core::sync::atomic::{AtomicPtr, Ordering};

/// A global `T` built on first use by a constructor given at the call site.
pub struct OnceBox<T> {
    ptr: AtomicPtr<T>,
}

impl<T> OnceBox<T> {
    /// An empty cell.
    pub const fn new() -> Self {
        OnceBox {
            ptr: AtomicPtr::new(core::ptr::null_mut()),
        }
    }

    /// The value, built by `init` if this is the first use.
    #[inline]
    pub fn get_or_init(&self, init: impl FnOnce() -> T) -> &T {
        let p = self.ptr.load(Ordering::Acquire);
        if !p.is_null() {
            // SAFETY: a non-null pointer was published by `init_slow` from
            // `Box::into_raw` and is never freed or replaced.
            return unsafe { &*p };
        }
        self.init_slow(init)
    }

    #[cold]
    fn init_slow(&self, init: impl FnOnce() -> T) -> &T {
        let fresh = Box::into_raw(Box::new(init()));
        match self.ptr.compare_exchange(
            core::ptr::null_mut(),
            fresh,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            // SAFETY: we just published `fresh`, which lives forever.
            Ok(_) => unsafe { &*fresh },
            Err(winner) => {
                // SAFETY: `fresh` came from `Box::into_raw` above and was
                // never shared.
                drop(unsafe { Box::from_raw(fresh) });
                // SAFETY: as in `get_or_init`: published, never freed.
                unsafe { &*winner }
            }
        }
    }
}

impl<T> Default for OnceBox<T> {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: the cell hands out `&T` to every thread, so `T: Sync` is needed;
// the value may be built on one thread and dropped (if it lost a race) on
// another, so `T: Send` too.
unsafe impl<T: Send + Sync> Sync for OnceBox<T> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_once_under_races() {
        static CELL: OnceBox<u64> = OnceBox::new();
        let vals: Vec<u64> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|i| s.spawn(move || *CELL.get_or_init(|| i)))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(vals.iter().all(|&v| v == vals[0]));
    }
}
