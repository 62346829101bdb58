//! Benchmarks the kernel runs after boot (`bench=...`), and the statistics
//! they report with.

pub(crate) mod locks;
pub(crate) mod pidalloc;
pub(crate) mod soak;
#[cfg(target_os = "none")]
pub(crate) mod softtlb;
pub(crate) mod stats;
pub(crate) mod steal;
pub(crate) mod threadspawn;

use pidlab_abi::Accel;

/// The accelerator's name for reports: the runner's `accel=`, or
/// `unknown` when the kernel was booted some other way.
pub(crate) fn accel_name(accel: Option<Accel>) -> &'static str {
    accel.map_or("unknown", Accel::name)
}

/// xorshift64*: the benchmarks' choices (the soak's operations, the
/// threadspawn rounds' order), replayable from a seed.
pub(crate) fn next_rand(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// An xorshift state from any seed: splitmix64's finaliser, a bijection,
/// so distinct seeds give distinct states (xorshift needs one not zero).
pub(crate) fn rng_state(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    match z ^ (z >> 31) {
        0 => 1,
        s => s,
    }
}

/// A Fisher-Yates shuffle of `0..n` drawn from `state`.
pub(crate) fn shuffled(n: usize, state: &mut u64) -> alloc::vec::Vec<usize> {
    let mut order: alloc::vec::Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (next_rand(state) % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_replays_its_orders_and_another_changes_them() {
        let orders = |seed: u64| {
            let mut s = rng_state(seed);
            (0..20)
                .map(|_| shuffled(4, &mut s))
                .collect::<alloc::vec::Vec<_>>()
        };
        assert_eq!(orders(7), orders(7));
        assert_ne!(orders(7), orders(8));
        assert_ne!(orders(42), orders(43), "seeds one bit apart");
        for o in orders(7) {
            let mut sorted = o.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, [0, 1, 2, 3], "a permutation");
        }
        // Every version comes first in some round.
        let firsts: alloc::collections::BTreeSet<usize> = orders(7).iter().map(|o| o[0]).collect();
        assert_eq!(firsts.len(), 4);
    }
}
