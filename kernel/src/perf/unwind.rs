//! The call chain of an interrupted context, by frame pointers.
//!
//! The kernel is built with frame pointers: every function's prologue
//! pushes the caller's RBP and points RBP at it, so `[rbp]` is the next
//! frame and `[rbp + 8]` the return address into the caller. The walk runs
//! in NMI context on whatever the CPU was doing, so it trusts nothing: a
//! frame must lie above the interrupted RSP, above the frame before it,
//! 8-byte aligned and below the top of the stack RSP lies on (from the
//! bytes RSP up to that top, all are mapped). A frame that breaks a rule
//! ends the walk as truncated (code without frame pointers, or a sample
//! inside a prologue); a zero frame pointer is the chain's natural end.

use super::table::{MAX_DEPTH, Sample};

/// Walks from `fp` for the context interrupted at `rip` with stack pointer
/// `rsp`, on a stack whose top is `top` (exclusive; `None`: unknown, so
/// only the leaf is kept). `read(addr)` reads the word at `addr`, and is
/// only called for `rsp <= addr` and `addr + 8 <= top`.
pub(crate) fn unwind(
    rip: u64,
    rsp: u64,
    fp: u64,
    top: Option<u64>,
    read: impl Fn(u64) -> u64,
) -> Sample {
    let mut s = Sample {
        frames: [0; MAX_DEPTH],
        depth: 1,
        truncated: false,
    };
    s.frames[0] = rip;
    let Some(top) = top else {
        s.truncated = true;
        return s;
    };
    let mut fp = fp;
    let mut low = rsp;
    while s.depth < MAX_DEPTH {
        if fp == 0 {
            return s;
        }
        if fp % 8 != 0 || fp < low || fp.checked_add(16).is_none_or(|end| end > top) {
            s.truncated = true;
            return s;
        }
        let ret = read(fp + 8);
        if ret == 0 {
            return s;
        }
        s.frames[s.depth] = ret;
        s.depth += 1;
        low = fp + 16;
        fp = read(fp);
    }
    // Deeper than we keep: the root-most frames are cut.
    s.truncated = true;
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stack of words at `base`, read by address.
    fn reader(base: u64, words: &[u64]) -> impl Fn(u64) -> u64 + '_ {
        move |addr| {
            assert!(addr >= base && addr + 8 <= base + 8 * words.len() as u64);
            words[((addr - base) / 8) as usize]
        }
    }

    #[test]
    fn walks_a_chain_to_its_zero_end() {
        let base = 0x1000;
        // fp0 at 0x1010 -> fp1 at 0x1030 -> 0.
        let words = [0, 0, 0x1030, 0xaaa, 0, 0, 0, 0xbbb, 0];
        let s = unwind(
            0x999,
            0x1000,
            0x1010,
            Some(base + 8 * 9),
            reader(base, &words),
        );
        assert_eq!(&s.frames[..s.depth], [0x999, 0xaaa, 0xbbb]);
        assert!(!s.truncated);
    }

    #[test]
    fn a_frame_outside_the_stack_or_going_down_truncates() {
        let base = 0x1000;
        let words = [0, 0, 0x1000, 0xaaa, 0, 0];
        // The next frame points below the current one.
        let s = unwind(0x999, 0x1000, 0x1010, Some(base + 48), reader(base, &words));
        assert_eq!(&s.frames[..s.depth], [0x999, 0xaaa]);
        assert!(s.truncated);
        // A first frame above the stack's top, or misaligned, is not read.
        let s = unwind(0x999, 0x1000, 0x2000, Some(base + 48), reader(base, &words));
        assert_eq!((s.depth, s.truncated), (1, true));
        let s = unwind(0x999, 0x1000, 0x1011, Some(base + 48), reader(base, &words));
        assert_eq!((s.depth, s.truncated), (1, true));
        // An unknown stack keeps the leaf only.
        let s = unwind(0x999, 0x1000, 0x1010, None, reader(base, &words));
        assert_eq!((s.depth, s.truncated), (1, true));
    }
}
