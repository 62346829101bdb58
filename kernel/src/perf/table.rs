//! One CPU's samples, aggregated as they arrive: an open-addressing table
//! of (tag, stack) -> count, written only by its CPU's NMI handler.
//!
//! An NMI can neither allocate nor take a lock, and a profile of a minute
//! at 4 kHz is a quarter of a million samples per CPU, so samples are not
//! kept one by one: each goes to its stack's entry (found by a hash, then
//! a short linear probe). A sample whose stack finds no room is counted as
//! dropped for its tag, so the counts still add up to the samples taken.

use alloc::boxed::Box;
use alloc::vec::Vec;

/// Most frames kept per sample (the leaf and its callers).
pub(crate) const MAX_DEPTH: usize = 32;
/// Entries per CPU.
const CAPACITY: usize = 8192;
/// Entries looked at before a sample is dropped.
const MAX_PROBE: usize = 64;
/// Most tags (kernel version x worker count, plus "outside").
pub(crate) const MAX_TAGS: usize = 64;

/// One recorded stack.
#[derive(Clone, Copy)]
pub(crate) struct Entry {
    pub(crate) count: u32,
    pub(crate) tag: u16,
    pub(crate) depth: u8,
    /// The unwind stopped at a frame it could not trust.
    pub(crate) truncated: bool,
    hash: u64,
    /// Leaf first: the interrupted RIP, then return addresses.
    pub(crate) frames: [u64; MAX_DEPTH],
}

const EMPTY: Entry = Entry {
    count: 0,
    tag: 0,
    depth: 0,
    truncated: false,
    hash: 0,
    frames: [0; MAX_DEPTH],
};

/// A sample as the unwinder produced it.
pub(crate) struct Sample {
    pub(crate) frames: [u64; MAX_DEPTH],
    pub(crate) depth: usize,
    pub(crate) truncated: bool,
}

pub(crate) struct Table {
    entries: Box<[Entry]>,
    /// Samples per tag that found no room.
    pub(crate) dropped: [u64; MAX_TAGS],
    pub(crate) truncated: u64,
    /// Samples recorded (kept or dropped).
    pub(crate) taken: u64,
}

impl Table {
    /// An empty table (allocated before sampling starts).
    pub(crate) fn new() -> Box<Table> {
        let mut entries = Vec::with_capacity(CAPACITY);
        entries.resize(CAPACITY, EMPTY);
        Box::new(Table {
            entries: entries.into_boxed_slice(),
            dropped: [0; MAX_TAGS],
            truncated: 0,
            taken: 0,
        })
    }

    /// Counts one sample (NMI context: no lock, no allocation).
    pub(crate) fn record(&mut self, tag: u16, s: &Sample) {
        let frames = &s.frames[..s.depth];
        let hash = hash(tag, s.truncated, frames);
        self.taken += 1;
        if s.truncated {
            self.truncated += 1;
        }
        let start = (hash as usize) % CAPACITY;
        for i in 0..MAX_PROBE {
            let e = &mut self.entries[(start + i) % CAPACITY];
            if e.count == 0 {
                e.count = 1;
                e.tag = tag;
                e.depth = s.depth as u8;
                e.truncated = s.truncated;
                e.hash = hash;
                e.frames[..s.depth].copy_from_slice(frames);
                return;
            }
            if e.hash == hash
                && e.tag == tag
                && e.truncated == s.truncated
                && &e.frames[..e.depth as usize] == frames
            {
                e.count = e.count.saturating_add(1);
                return;
            }
        }
        self.dropped[usize::from(tag) % MAX_TAGS] += 1;
    }

    /// The recorded stacks.
    pub(crate) fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| e.count > 0)
    }
}

/// FNV-1a over the tag, the truncation mark and the frames.
fn hash(tag: u16, truncated: bool, frames: &[u64]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut mix = |v: u64| {
        h ^= v;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    };
    mix(u64::from(tag) << 1 | u64::from(truncated));
    for &f in frames {
        mix(f);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(frames: &[u64]) -> Sample {
        let mut s = Sample {
            frames: [0; MAX_DEPTH],
            depth: frames.len(),
            truncated: false,
        };
        s.frames[..frames.len()].copy_from_slice(frames);
        s
    }

    #[test]
    fn same_stack_and_tag_share_an_entry() {
        let mut t = Table::new();
        t.record(1, &sample(&[1, 2, 3]));
        t.record(1, &sample(&[1, 2, 3]));
        t.record(2, &sample(&[1, 2, 3]));
        t.record(1, &sample(&[1, 2]));
        let mut counts: Vec<(u16, u8, u32)> =
            t.entries().map(|e| (e.tag, e.depth, e.count)).collect();
        counts.sort_unstable();
        assert_eq!(counts, [(1, 2, 1), (1, 3, 2), (2, 3, 1)]);
    }

    #[test]
    fn a_full_table_counts_drops_per_tag() {
        let mut t = Table::new();
        for i in 0..(CAPACITY as u64 + 100) {
            t.record(3, &sample(&[i]));
        }
        let kept: u64 = t.entries().map(|e| u64::from(e.count)).sum();
        assert_eq!(kept + t.dropped[3], CAPACITY as u64 + 100);
        assert!(t.dropped[3] >= 100);
    }
}
