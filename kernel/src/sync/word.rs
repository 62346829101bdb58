//! The atomic word the lock state machines are built on, swappable for
//! loom's.
//!
//! Each lock protocol (the ticket counters, the qrwlock count word) is
//! written once, generic over [`AtomicWord`]. The kernel, its statics and
//! the ordinary tests use `core`'s `AtomicU32`, which is const-constructible
//! and compiles to plain `lock xadd`/`cmpxchg`/`mov`. The `loom` model
//! checks (`make test-loom`, built with `--cfg loom`) instantiate the very
//! same code with loom's `AtomicU32`, whose wait hint yields to loom's
//! scheduler so a spinning thread lets the holder run. Keeping the choice a
//! type parameter, rather than swapping the kernel's atomics crate-wide
//! under `cfg(loom)`, keeps every lock constructor `const` in both builds.

use core::sync::atomic::{AtomicU32, Ordering};

use crate::platform;

/// A 32-bit atomic cell plus the spin-wait hint that suits it.
pub(crate) trait AtomicWord: Send + Sync {
    /// A new cell holding `v` (non-const; the kernel's const constructors
    /// build `AtomicU32` directly).
    fn with_value(v: u32) -> Self;
    fn load(&self, order: Ordering) -> u32;
    fn store(&self, v: u32, order: Ordering);
    fn fetch_add(&self, v: u32, order: Ordering) -> u32;
    fn fetch_sub(&self, v: u32, order: Ordering) -> u32;
    fn fetch_or(&self, v: u32, order: Ordering) -> u32;
    fn fetch_and(&self, v: u32, order: Ordering) -> u32;
    fn compare_exchange(
        &self,
        current: u32,
        new: u32,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u32, u32>;
    /// One round of a spin-wait loop (`pause` on the machine).
    fn relax();
    /// Linux's `smp_mb__after_atomic()`: orders a SeqCst read-modify-write
    /// before a later SeqCst load of another word (the store-load order a
    /// halt/kick handshake needs). Rust's SeqCst total order already gives
    /// that, and x86's `lock` prefix is a full barrier, so the kernel emits
    /// nothing; loom does not model that total order, so there it is a
    /// SeqCst fence.
    fn mb_after_atomic();
}

/// Methods of an atomic-cell trait impl that forward to the atomic type's
/// own method of the same name, each listed as `kind name` with its value
/// type `$v`: `new` (a constructor taking the initial value), `load`,
/// `store`, `rmw` (read-modify-write: `fetch_*`, `swap`) or `cas`
/// (`compare_exchange`). Used inside an `impl` block.
macro_rules! forward_atomic {
    ($ty:ty, $v:ty { $($kind:ident $name:ident),* $(,)? }) => {
        $($crate::sync::word::forward_atomic!(@$kind $ty, $v, $name);)*
    };
    (@new $ty:ty, $v:ty, $name:ident) => {
        #[inline(always)]
        fn $name(v: $v) -> Self {
            <$ty>::new(v)
        }
    };
    (@load $ty:ty, $v:ty, $name:ident) => {
        #[inline(always)]
        fn $name(&self, order: ::core::sync::atomic::Ordering) -> $v {
            <$ty>::$name(self, order)
        }
    };
    (@store $ty:ty, $v:ty, $name:ident) => {
        #[inline(always)]
        fn $name(&self, v: $v, order: ::core::sync::atomic::Ordering) {
            <$ty>::$name(self, v, order)
        }
    };
    (@rmw $ty:ty, $v:ty, $name:ident) => {
        #[inline(always)]
        fn $name(&self, v: $v, order: ::core::sync::atomic::Ordering) -> $v {
            <$ty>::$name(self, v, order)
        }
    };
    (@cas $ty:ty, $v:ty, $name:ident) => {
        #[inline(always)]
        fn $name(
            &self,
            cur: $v,
            new: $v,
            ok: ::core::sync::atomic::Ordering,
            err: ::core::sync::atomic::Ordering,
        ) -> Result<$v, $v> {
            <$ty>::$name(self, cur, new, ok, err)
        }
    };
}
pub(crate) use forward_atomic;

/// Implements [`AtomicWord`] for the atomic type `$ty`, with `$relax` as
/// its spin-wait hint and `$mb` as its `smp_mb__after_atomic()`.
macro_rules! delegate_atomic_word {
    ($ty:ty, $relax:expr, $mb:expr) => {
        impl AtomicWord for $ty {
            forward_atomic!($ty, u32 {
                new with_value,
                load load,
                store store,
                rmw fetch_add,
                rmw fetch_sub,
                rmw fetch_or,
                rmw fetch_and,
                cas compare_exchange,
            });
            #[inline(always)]
            fn relax() {
                $relax
            }
            #[inline(always)]
            fn mb_after_atomic() {
                $mb
            }
        }
    };
}

delegate_atomic_word!(
    AtomicU32,
    platform::cpu_relax(),
    core::sync::atomic::compiler_fence(Ordering::SeqCst)
);

#[cfg(all(test, loom))]
delegate_atomic_word!(
    loom::sync::atomic::AtomicU32,
    loom::thread::yield_now(),
    loom::sync::atomic::fence(Ordering::SeqCst)
);
