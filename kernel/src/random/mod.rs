//! The entropy pool: `add_device_randomness` and `get_random_u64`, after
//! Linux's `drivers/char/random.c`.
//!
//! Linux keeps its input pool as a running BLAKE2s hash under the pool's own
//! spinlock (`input_pool.lock`, taken irqsave); mixing bytes in is a hash
//! update. `release_task` feeds each exiting task's run time in through
//! `add_device_randomness`, which is why the pool lock sits on the exit
//! path, and why the deferred `release_task` strategy calls it after
//! dropping `tasklist_lock`. As Linux does, each `add_device_randomness` also
//! mixes in the cycle counter.
//!
//! Output is simplified: Linux expands the pool into a ChaCha20 CRNG;
//! `get_random_u64` here finalises a copy of the pool hash with a counter and
//! mixes the counter back in. Fine for a lab, not for keys.

mod blake2s;

use blake2s::Blake2s;

use crate::klib::lockctx::{self, Site};
use crate::platform;
use crate::sync::SpinLockIrqSave;
use crate::sync::named_spin_lock_irqsave;

struct Pool {
    hash: Blake2s,
    mixes: u64,
    #[cfg(test)]
    draws: u64,
}

static INPUT_POOL: SpinLockIrqSave<Pool> = named_spin_lock_irqsave(
    "input_pool.lock",
    Pool {
        hash: Blake2s::new(),
        mixes: 0,
        #[cfg(test)]
        draws: 0,
    },
);

impl Pool {
    fn hash(&mut self) -> &mut Blake2s {
        &mut self.hash
    }
}

/// `add_device_randomness`: mixes `buf` (and the cycle counter) into the
/// pool, crediting no entropy.
pub(crate) fn add_device_randomness(buf: &[u8]) {
    lockctx::record(Site::AddDeviceRandomness);
    let stamp = platform::cycles().to_le_bytes();
    let mut pool = INPUT_POOL.lock();
    let h = pool.hash();
    h.update(&stamp);
    h.update(buf);
    pool.mixes += 1;
}

/// `get_random_u64`: 64 bits derived from the pool.
#[cfg(test)]
pub(crate) fn get_random_u64() -> u64 {
    let mut pool = INPUT_POOL.lock();
    pool.draws += 1;
    let counter = pool.draws.to_le_bytes();
    let mut copy = pool.hash().clone();
    copy.update(&counter);
    let out = copy.finalize();
    pool.hash().update(&counter);
    u64::from_le_bytes(out[..8].try_into().expect("BLAKE2s gives 32 bytes"))
}

/// Times `add_device_randomness` has been called.
#[cfg(test)]
pub(crate) fn mixes() -> u64 {
    INPUT_POOL.lock().mixes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_differ_and_mixing_is_counted() {
        let before = mixes();
        add_device_randomness(&42u64.to_le_bytes());
        assert!(mixes() > before);
        let a = get_random_u64();
        let b = get_random_u64();
        assert_ne!(a, b, "successive draws must differ");
    }

    #[test]
    fn the_lock_is_taken_with_irqs_off() {
        assert!(platform::irqs_enabled());
        let _g = INPUT_POOL.lock();
        assert!(!platform::irqs_enabled());
    }
}
