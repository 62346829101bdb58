//! Physical frame allocator over the boot memory map.
//!
//! The bootloader reports usable physical ranges; we keep them sorted and hand
//! out 4 KiB frames by bumping a cursor through them. Boot-time users (the
//! kernel heap, the AP trampoline and its page tables, per-CPU stacks) take
//! memory once and keep it, so frames are never returned: a bump allocator is
//! all the kernel needs, and it cannot fragment. Memory below 1 MiB is kept
//! apart for the real-mode AP trampoline ([`FrameAllocator::alloc_low_frame`]).

pub(crate) const FRAME_SIZE: u64 = 4096;
/// Frames below this address are only handed out by `alloc_low_frame`.
pub(crate) const LOW_MEMORY_END: u64 = 0x10_0000;
/// The most regions we track; the BIOS map of a QEMU guest has a handful.
pub(crate) const MAX_REGIONS: usize = 64;

/// A half-open physical address range `[start, end)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PhysRange {
    pub(crate) start: u64,
    pub(crate) end: u64,
}

impl PhysRange {
    pub(crate) fn len(&self) -> u64 {
        self.end - self.start
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// Bump allocator over the usable physical memory.
pub(crate) struct FrameAllocator {
    /// Usable ranges, page-aligned, sorted, not overlapping. `start` moves up
    /// as frames are handed out.
    free: [PhysRange; MAX_REGIONS],
    count: usize,
    /// Bytes in the usable ranges at creation.
    total: u64,
    /// Ranges dropped because the table was full.
    dropped: u64,
}

impl FrameAllocator {
    /// Builds the allocator from usable ranges in any order. Ranges are
    /// trimmed to whole frames; frame 0 is never handed out (a null physical
    /// address is a bug magnet). Overlapping input is merged.
    pub(crate) fn new(usable: impl IntoIterator<Item = PhysRange>) -> Self {
        let mut a = FrameAllocator {
            free: [PhysRange::default(); MAX_REGIONS],
            count: 0,
            total: 0,
            dropped: 0,
        };
        for r in usable {
            let start = r.start.max(FRAME_SIZE).next_multiple_of(FRAME_SIZE);
            let end = r.end & !(FRAME_SIZE - 1);
            if end > start {
                a.insert(PhysRange { start, end });
            }
        }
        a.total = a.free_bytes();
        a
    }

    fn insert(&mut self, r: PhysRange) {
        // Split at LOW_MEMORY_END so a range never straddles the two pools.
        if r.start < LOW_MEMORY_END && r.end > LOW_MEMORY_END {
            self.insert(PhysRange {
                start: r.start,
                end: LOW_MEMORY_END,
            });
            self.insert(PhysRange {
                start: LOW_MEMORY_END,
                end: r.end,
            });
            return;
        }
        let mut merged = r;
        // Merge with every range that overlaps or touches `r` (same pool).
        let mut i = 0;
        while i < self.count {
            let o = self.free[i];
            let same_pool = (o.start < LOW_MEMORY_END) == (merged.start < LOW_MEMORY_END);
            if same_pool && o.start <= merged.end && merged.start <= o.end {
                merged.start = merged.start.min(o.start);
                merged.end = merged.end.max(o.end);
                self.free.copy_within(i + 1..self.count, i);
                self.count -= 1;
            } else {
                i += 1;
            }
        }
        if self.count == MAX_REGIONS {
            self.dropped += merged.len();
            return;
        }
        let at = self.free[..self.count].partition_point(|o| o.start < merged.start);
        self.free.copy_within(at..self.count, at + 1);
        self.free[at] = merged;
        self.count += 1;
    }

    /// The usable ranges that are still free.
    pub(crate) fn free_ranges(&self) -> &[PhysRange] {
        &self.free[..self.count]
    }

    /// Bytes of usable memory at creation.
    pub(crate) fn total_bytes(&self) -> u64 {
        self.total
    }

    /// Bytes not yet handed out.
    pub(crate) fn free_bytes(&self) -> u64 {
        self.free_ranges().iter().map(PhysRange::len).sum()
    }

    /// Bytes of usable memory ignored because the region table was full.
    pub(crate) fn dropped_bytes(&self) -> u64 {
        self.dropped
    }

    /// The largest free range at or above 1 MiB.
    pub(crate) fn largest_high_range(&self) -> Option<PhysRange> {
        self.free_ranges()
            .iter()
            .filter(|r| r.start >= LOW_MEMORY_END)
            .max_by_key(|r| r.len())
            .copied()
    }

    /// One frame at or above 1 MiB.
    pub(crate) fn alloc_frame(&mut self) -> Option<u64> {
        self.alloc_contiguous(FRAME_SIZE, FRAME_SIZE)
    }

    /// One frame below 1 MiB (for code that must run in real mode).
    pub(crate) fn alloc_low_frame(&mut self) -> Option<u64> {
        let i = self.free[..self.count]
            .iter()
            .position(|r| r.start < LOW_MEMORY_END && !r.is_empty())?;
        let frame = self.free[i].start;
        self.free[i].start += FRAME_SIZE;
        Some(frame)
    }

    /// `size` bytes (rounded up to frames) of contiguous memory at or above
    /// 1 MiB, aligned to `align` (a power of two, at least a frame). Takes
    /// from the first range that fits.
    pub(crate) fn alloc_contiguous(&mut self, size: u64, align: u64) -> Option<u64> {
        if size == 0 || !align.is_power_of_two() {
            return None;
        }
        let align = align.max(FRAME_SIZE);
        let size = size.checked_next_multiple_of(FRAME_SIZE)?;
        for r in self.free[..self.count].iter_mut() {
            if r.start < LOW_MEMORY_END {
                continue;
            }
            let Some(start) = r.start.checked_next_multiple_of(align) else {
                continue;
            };
            let Some(end) = start.checked_add(size) else {
                continue;
            };
            if end <= r.end {
                // The alignment gap below `start` is lost; boot-time
                // allocations are few, so this is a handful of frames.
                r.start = end;
                return Some(start);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, end: u64) -> PhysRange {
        PhysRange { start, end }
    }

    #[test]
    fn trims_sorts_merges_and_splits_at_1mib() {
        let a = FrameAllocator::new([
            r(0x20_0000, 0x30_0000),
            r(0, 0x9_f000),
            r(0x10_0000, 0x20_0000),
            r(0x50_0001, 0x60_0fff),
            r(0x8_0000, 0x18_0000),
        ]);
        assert_eq!(
            a.free_ranges(),
            &[
                r(0x1000, 0x10_0000),
                r(0x10_0000, 0x30_0000),
                r(0x50_1000, 0x60_0000),
            ]
        );
        assert_eq!(a.total_bytes(), a.free_bytes());
    }

    #[test]
    fn high_frames_never_come_from_low_memory_and_low_ones_do() {
        let mut a = FrameAllocator::new([r(0, 0x2000), r(0x10_0000, 0x10_2000)]);
        assert_eq!(a.alloc_frame(), Some(0x10_0000));
        assert_eq!(a.alloc_frame(), Some(0x10_1000));
        assert_eq!(a.alloc_frame(), None);
        assert_eq!(a.alloc_low_frame(), Some(0x1000), "frame 0 is skipped");
        assert_eq!(a.alloc_low_frame(), None);
    }

    #[test]
    fn contiguous_respects_alignment_and_exhaustion() {
        let mut a = FrameAllocator::new([r(0x10_1000, 0x40_0000)]);
        let p = a.alloc_contiguous(0x10_0000, 0x20_0000).unwrap();
        assert_eq!(p, 0x20_0000);
        assert_eq!(
            a.alloc_contiguous(0x10_0001, 0x1000),
            None,
            "rounds up past the end"
        );
        assert_eq!(a.alloc_contiguous(0x10_0000, 0x1000), Some(0x30_0000));
        assert_eq!(a.alloc_contiguous(1, 0x1000), None);
        assert_eq!(a.alloc_contiguous(0, 0x1000), None);
        assert_eq!(a.alloc_contiguous(0x1000, 3), None);
        assert_eq!(a.alloc_contiguous(u64::MAX, 0x1000), None);
    }

    #[test]
    fn largest_high_range() {
        let a = FrameAllocator::new([
            r(0x1000, 0x9_0000),
            r(0x10_0000, 0x20_0000),
            r(0x40_0000, 0x80_0000),
        ]);
        assert_eq!(a.largest_high_range(), Some(r(0x40_0000, 0x80_0000)));
    }

    #[test]
    fn full_table_counts_dropped_bytes() {
        let a = FrameAllocator::new((0..MAX_REGIONS as u64 + 2).map(|i| {
            let s = 0x100_0000 + i * 0x10_0000;
            r(s, s + 0x1000)
        }));
        assert_eq!(a.free_ranges().len(), MAX_REGIONS);
        assert_eq!(a.dropped_bytes(), 2 * 0x1000);
    }
}
