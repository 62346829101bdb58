//! `pid_allocated` and its `PIDNS_ADDING` flag as one atomic word, for an
//! `alloc_pid` and `free_pid` that take no lock (Linux keeps both under
//! `pidmap_lock`).
//!
//! The low bits count a namespace's pids; [`PIDNS_ADDING`] says it still
//! accepts new ones. [`PidAllocated::try_add`] checks the flag and counts
//! in one compare-and-swap, so once [`PidAllocated::disable`] has cleared
//! the flag no add succeeds, and every add that succeeded before is
//! counted: whoever waits for the count to fall (the reaper in
//! `zap_pid_ns_processes`) waits for that pid too. [`PidAllocated::remove`]
//! subtracts one and returns the new count, so the caller wakes the reaper
//! at 2 or 1; when the count reaches 0 with the flag still set (the
//! namespace's first pid failed), it marks the namespace dead with a CAS
//! to 0 and returns [`PIDNS_ADDING`], as Linux's switch sees it. If an add
//! slipped in between, that add is ordered before the removal (the CAS
//! fails, the namespace lives on, and the count it returns includes the
//! add), as if Linux had taken the lock for them in that order.

use core::sync::atomic::{AtomicU32, Ordering};

use super::namespace::PIDNS_ADDING;
use crate::klib::errno::Errno;
use crate::klib::idr::lockfree::Word32;

/// Port of `ns->pid_allocated` without `pidmap_lock` (see the module
/// header).
pub(crate) struct PidAllocated<W = AtomicU32>(W);

impl PidAllocated {
    /// A new namespace's: accepting pids, none yet.
    pub(crate) const fn new() -> Self {
        PidAllocated(AtomicU32::new(PIDNS_ADDING))
    }
}

impl Default for PidAllocated {
    fn default() -> Self {
        Self::new()
    }
}

impl<W: Word32> PidAllocated<W> {
    /// Over any [`Word32`] (loom models).
    #[cfg_attr(not(all(test, loom)), allow(dead_code))]
    pub(crate) fn with_word() -> Self {
        PidAllocated(W::with_value(PIDNS_ADDING))
    }

    /// The whole word: the count, plus [`PIDNS_ADDING`] while accepting.
    pub(crate) fn get(&self) -> u32 {
        self.0.load(Ordering::Acquire)
    }

    /// Whether the namespace still accepts pids.
    pub(crate) fn is_adding(&self) -> bool {
        self.get() & PIDNS_ADDING != 0
    }

    /// Counts a new pid if the namespace still accepts pids (the check
    /// `alloc_pid` makes on the innermost level before publishing);
    /// returns the new word, or ENOMEM (what Linux reports) if not.
    pub(crate) fn try_add(&self) -> Result<u32, Errno> {
        let mut v = self.0.load(Ordering::Relaxed);
        loop {
            if v & PIDNS_ADDING == 0 {
                return Err(Errno::ENOMEM);
            }
            match self
                .0
                .compare_exchange(v, v + 1, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Ok(v + 1),
                Err(now) => v = now,
            }
        }
    }

    /// Counts a new pid unconditionally (the outer levels, which Linux
    /// counts without checking their flag); returns the new word.
    pub(crate) fn add(&self) -> u32 {
        self.0.fetch_add(1, Ordering::AcqRel).wrapping_add(1)
    }

    /// Uncounts a pid (`free_pid`); returns the new word as Linux's switch
    /// sees it: 2 or 1, wake the reaper; [`PIDNS_ADDING`], this removal
    /// left a namespace that never got going without pids and marked it
    /// dead (the word is 0 now).
    pub(crate) fn remove(&self) -> u32 {
        let new = self.0.fetch_sub(1, Ordering::AcqRel).wrapping_sub(1);
        if new != PIDNS_ADDING {
            return new;
        }
        match self
            .0
            .compare_exchange(PIDNS_ADDING, 0, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => PIDNS_ADDING,
            Err(now) => now,
        }
    }

    /// Port of `disable_pid_allocation()`: stops adding; returns the new
    /// word (the count alone).
    pub(crate) fn disable(&self) -> u32 {
        self.0.fetch_and(!PIDNS_ADDING, Ordering::AcqRel) & !PIDNS_ADDING
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn adds_count_until_disabled() {
        let a = PidAllocated::new();
        assert!(a.is_adding());
        assert_eq!(a.try_add(), Ok(PIDNS_ADDING + 1));
        assert_eq!(a.try_add(), Ok(PIDNS_ADDING + 2));
        assert_eq!(a.add(), PIDNS_ADDING + 3);
        assert_eq!(a.disable(), 3);
        assert!(!a.is_adding());
        assert_eq!(a.try_add(), Err(Errno::ENOMEM));
        assert_eq!(a.get(), 3, "a refused add leaves the count alone");
        assert_eq!(a.add(), 4, "outer levels count regardless");
        assert_eq!(a.remove(), 3);
        assert_eq!(a.remove(), 2, "wake the reaper");
        assert_eq!(a.remove(), 1, "wake the reaper");
        assert_eq!(a.remove(), 0);
        assert_eq!(a.try_add(), Err(Errno::ENOMEM));
    }

    #[test]
    fn the_first_pid_failing_kills_the_namespace() {
        let a = PidAllocated::new();
        assert_eq!(a.try_add(), Ok(PIDNS_ADDING + 1));
        assert_eq!(a.remove(), PIDNS_ADDING);
        assert_eq!(a.get(), 0);
        assert!(!a.is_adding());
        assert_eq!(a.try_add(), Err(Errno::ENOMEM));
    }

    #[test]
    fn reaper_wakeups_at_two_and_one_while_adding() {
        let a = PidAllocated::new();
        for _ in 0..3 {
            a.try_add().unwrap();
        }
        assert_eq!(a.remove(), PIDNS_ADDING + 2);
        assert_eq!(a.remove(), PIDNS_ADDING + 1);
        assert!(a.is_adding());
    }

    #[test]
    fn racing_adds_and_removes_keep_an_exact_count() {
        let a = PidAllocated::new();
        a.try_add().unwrap();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        a.try_add().unwrap();
                        a.remove();
                    }
                });
            }
        });
        assert_eq!(a.get(), PIDNS_ADDING + 1);
        assert_eq!(a.disable(), 1);
    }
}

#[cfg(all(test, loom))]
mod loom_models;
