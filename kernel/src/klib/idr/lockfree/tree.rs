//! The lock-free map's tree: fixed-height walks, node installation, the
//! claim search, the full hints and leaf reclamation. The protocol and its
//! guarantees are described in [`LfIdr`]'s doc.
//!
//! Every function here runs inside a read-side section whose guard it is
//! given; the references it hands out live no longer than that guard,
//! because a node unlinked meanwhile is only freed after a grace period.
//!
//! Full hints. Bit `s` of an inner node's word says "the subtree in slot
//! `s` is full", so a search skips it. Whoever makes a word all ones (a
//! leaf's last claim, an inner node's last hint) sets the bit above it and
//! then looks at the word again; whoever turns an all-ones word into a
//! non-full one (a removal, a retraction) clears the bit above it if set.
//! All these are SeqCst, so in the single order of SeqCst operations
//! either the setter's second look sees the new room (and it takes its
//! hint back) or the clearer sees the hint (and clears it): a hint over a
//! subtree with room never outlives the operations that raced on it.

use core::marker::PhantomData;
use core::ptr::{self, NonNull};
use core::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, SeqCst};

use super::LfIdr;
use super::env::{Bits64, LfEnv, LfEvent, SlotPtr, Word32};
use crate::klib::errno::Errno;

/// Bits of the id each level consumes.
pub(crate) const LF_BITS: u32 = 6;
/// Slots per node.
pub(crate) const LF_SLOTS: usize = 1 << LF_BITS;
/// Levels of the tree, root included (fixed: see [`LfIdr`]).
pub(crate) const LF_LEVELS: usize = 4;
/// Ids are below this (Linux's `PID_MAX_LIMIT`, 2^22).
pub(crate) const LF_ID_LIMIT: u32 = 1 << 22;
/// Depth of the leaves (the root is depth 0).
pub(super) const LEAF: usize = LF_LEVELS - 1;
/// A word with every bit set: a full leaf, a full inner node, a dead leaf.
pub(super) const ALL: u64 = u64::MAX;

/// Id bits below the slot index of a node at `depth`.
pub(super) const fn shift_at(depth: usize) -> u32 {
    LF_BITS * (LEAF - depth) as u32
}

/// `id`'s slot in its node at `depth`.
pub(super) const fn slot_of(id: u32, depth: usize) -> usize {
    ((id >> shift_at(depth)) as usize) & (LF_SLOTS - 1)
}

/// One node: 64 slots and one bitmap word. In a leaf, bit `i` says id
/// `base + i` is claimed and slot `i` holds its published entry (null
/// until published); all ones with nothing published marks a dead leaf,
/// told from a full one by `reclaimers`. In an inner node, slot `i` is a
/// child and bit `i` the child's full hint.
#[repr(C, align(64))]
pub(crate) struct LfNode<E: LfEnv> {
    pub(super) bits: E::Bits,
    /// Reclaims of this leaf under way, and 1 for good once one killed it
    /// (see [`LfIdr::kill_leaf`]); 0 in inner nodes.
    pub(super) reclaimers: E::Word,
    pub(super) slots: [E::Slot; LF_SLOTS],
    pub(crate) tag: E::Tag,
}

impl<E: LfEnv> LfNode<E> {
    /// A clean node (the root, and the loom environment's nodes).
    pub(crate) fn new_clean() -> Self {
        LfNode {
            bits: E::Bits::with_value(0),
            reclaimers: E::Word::with_value(0),
            slots: core::array::from_fn(|_| E::Slot::null()),
            tag: E::Tag::default(),
        }
    }
}

/// The nodes from the root (`[0]`) down to one leaf, valid for `'g`.
pub(super) type Path<'g, E> = [&'g LfNode<E>; LF_LEVELS];

/// Ties node references to the read-side section they were found in.
pub(super) struct Section<'g, E: LfEnv>(PhantomData<&'g E::ReadGuard>);

impl<'g, E: LfEnv> Section<'g, E> {
    pub(super) fn of(_guard: &'g E::ReadGuard) -> Self {
        Section(PhantomData)
    }
}

impl<E: LfEnv> Clone for Section<'_, E> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<E: LfEnv> Copy for Section<'_, E> {}

impl<T, E: LfEnv> LfIdr<T, E> {
    /// The child in `slot` of `parent`, if any.
    #[inline]
    pub(super) fn child<'g>(
        &'g self,
        parent: &'g LfNode<E>,
        slot: usize,
        _s: Section<'g, E>,
    ) -> Option<&'g LfNode<E>> {
        let p = parent.slots[slot].load(Acquire);
        if p.is_null() {
            return None;
        }
        // SAFETY: a non-null child slot of a node reached in this read-side
        // section points at a node that was initialised before its install
        // (Release, paired with the Acquire above) and is freed no earlier
        // than a grace period after it is unlinked.
        let node = unsafe { &*p.cast::<LfNode<E>>() };
        E::touch(node);
        Some(node)
    }

    /// The child in `slot` of `parent`, installing a fresh node if there is
    /// none; ENOMEM if node memory is short.
    pub(super) fn child_or_install<'g>(
        &'g self,
        parent: &'g LfNode<E>,
        slot: usize,
        s: Section<'g, E>,
    ) -> Result<&'g LfNode<E>, Errno> {
        if let Some(child) = self.child(parent, slot, s) {
            return Ok(child);
        }
        let fresh = self.env.alloc_node().ok_or(Errno::ENOMEM)?;
        match parent.slots[slot].compare_exchange(
            ptr::null_mut(),
            fresh.as_ptr().cast(),
            AcqRel,
            Acquire,
        ) {
            Ok(_) => {
                self.nodes.fetch_add(1, Relaxed);
                self.env.count(LfEvent::NodeInstall);
                // SAFETY: our node, now linked: it lives as `child` does.
                Ok(unsafe { fresh.as_ref() })
            }
            Err(winner) => {
                self.env.count(LfEvent::InstallRace);
                // SAFETY: our node was never published, so no other CPU
                // can have reached it.
                unsafe { self.env.free_node(fresh) };
                // SAFETY: as in `child`: the winner's node, initialised
                // before its Release install, which the failed CAS
                // acquired.
                let node = unsafe { &*winner.cast::<LfNode<E>>() };
                E::touch(node);
                Ok(node)
            }
        }
    }

    /// The path to `id`'s leaf, if every node on it exists.
    pub(super) fn path_to<'g>(&'g self, id: u32, s: Section<'g, E>) -> Option<Path<'g, E>> {
        if id >= LF_ID_LIMIT {
            return None;
        }
        let mut path = [&self.root; LF_LEVELS];
        for depth in 0..LEAF {
            path[depth + 1] = self.child(path[depth], slot_of(id, depth), s)?;
        }
        Some(path)
    }

    /// The path to `id`'s leaf, installing the nodes it lacks.
    pub(super) fn path_installing<'g>(
        &'g self,
        id: u32,
        s: Section<'g, E>,
    ) -> Result<Path<'g, E>, Errno> {
        debug_assert!(id < LF_ID_LIMIT);
        let mut path = [&self.root; LF_LEVELS];
        for depth in 0..LEAF {
            path[depth + 1] = self.child_or_install(path[depth], slot_of(id, depth), s)?;
        }
        Ok(path)
    }

    /// Claims the lowest id in `[lo, max]` whose bit it finds clear
    /// (Linux: `idr_get_free()` plus the insertion), installing nodes on
    /// the way down. `Ok(None)` when it finds none.
    ///
    /// The walk keeps the path like the locked IDR's search: at an inner
    /// node it takes the first slot at or after `index` whose full hint is
    /// clear; at a leaf the first clear bit, which it sets with one atomic
    /// OR. If another CPU set it first the walk looks at the leaf again;
    /// when a node has no room at or after `index`, `index` moves past it
    /// and the walk climbs back up. `index` never decreases, so the walk
    /// ends. A leaf with every bit set may be dying rather than full: the
    /// walk then waits for it to go ([`wait_if_dying`](Self::wait_if_dying))
    /// and climbs to its parent at the same `index`, which links a fresh
    /// leaf there (or the same one, full after all).
    pub(super) fn search<'g>(
        &'g self,
        lo: u32,
        max: u32,
        s: Section<'g, E>,
    ) -> Result<Option<u32>, Errno> {
        let max = u64::from(max.min(LF_ID_LIMIT - 1));
        let mut path = [&self.root; LF_LEVELS];
        let mut bases = [0u64; LF_LEVELS];
        let mut depth = 0;
        let mut index = u64::from(lo);
        loop {
            if index > max {
                return Ok(None);
            }
            let (node, base, shift) = (path[depth], bases[depth], shift_at(depth));
            let end = base + ((LF_SLOTS as u64) << shift);
            if index >= end {
                if depth == 0 {
                    return Ok(None);
                }
                depth -= 1;
                continue;
            }
            let off = ((index - base) >> shift) as u32;
            let word = node.bits.load(Acquire);
            let room = !word & (ALL << off);
            if room == 0 {
                if depth == LEAF && word == ALL && self.wait_if_dying(&path, index as u32) {
                    depth -= 1;
                    continue;
                }
                index = end;
                continue;
            }
            let slot = room.trailing_zeros();
            if slot != off {
                index = base + (u64::from(slot) << shift);
                if index > max {
                    return Ok(None);
                }
            }
            if depth == LEAF {
                let bit = 1u64 << slot;
                let old = node.bits.fetch_or(bit, SeqCst);
                if old & bit == 0 {
                    let id = index as u32;
                    if old | bit == ALL {
                        self.mark_full(&path, id);
                    }
                    return Ok(Some(id));
                }
                // Taken under us (or the leaf died): look again.
                self.env.count(LfEvent::ClaimRace);
                continue;
            }
            let child = self.child_or_install(node, slot as usize, s)?;
            depth += 1;
            path[depth] = child;
            bases[depth] = base + (u64::from(slot) << shift);
        }
    }

    /// The leaf at the end of `path` just became full through a claim of
    /// `id`: sets the full hints above it, as far up as nodes fill.
    pub(super) fn mark_full(&self, path: &Path<'_, E>, id: u32) {
        for depth in (0..LEAF).rev() {
            let (parent, child) = (path[depth], path[depth + 1]);
            let bit = 1u64 << slot_of(id, depth);
            let before = parent.bits.fetch_or(bit, SeqCst);
            E::sc_fence();
            if child.bits.load(SeqCst) != ALL {
                // Room appeared below, and whoever made it may have looked
                // at this hint before we set it: take it back ourselves.
                self.env.count(LfEvent::HintRetract);
                let was = parent.bits.fetch_and(!bit, SeqCst);
                if was == ALL && depth > 0 {
                    self.note_room(path, id, depth - 1);
                }
                return;
            }
            if before | bit != ALL {
                return;
            }
        }
    }

    /// The node at `path[depth + 1]` (on `id`'s path) has just stopped
    /// being full: clears the hints that say otherwise, upwards, for as
    /// long as clearing one un-fills its node.
    pub(super) fn note_room(&self, path: &Path<'_, E>, id: u32, mut depth: usize) {
        loop {
            let node = path[depth];
            let bit = 1u64 << slot_of(id, depth);
            E::sc_fence();
            if node.bits.load(SeqCst) & bit == 0 {
                return;
            }
            let was = node.bits.fetch_and(!bit, SeqCst);
            if was != ALL || depth == 0 {
                return;
            }
            depth -= 1;
        }
    }

    /// Reclaims the leaf at the end of `path` (holding `id`'s slot) if it
    /// is empty: kills it (no claim can set a bit in it any more), unlinks
    /// it and retires it. A leaf dies once, so only its killer unlinks it.
    pub(super) fn reclaim_leaf(&self, path: &Path<'_, E>, id: u32) {
        if self.kill_leaf(path[LEAF]) {
            self.unlink_dead_leaf(path, id);
        }
    }

    /// Makes `leaf` dead if it is empty, by one CAS from no bits to all
    /// bits. All bits is also a full leaf, so the attempt first counts
    /// itself in `reclaimers`: a claimer that finds all bits set and no
    /// reclaimer knows the leaf is full. A failed attempt takes its count
    /// back; a dead leaf keeps it until it is freed.
    pub(super) fn kill_leaf(&self, leaf: &LfNode<E>) -> bool {
        // Relaxed: the CAS below releases it to whoever reads its all-ones.
        leaf.reclaimers.fetch_add(1, Relaxed);
        if leaf.bits.compare_exchange(0, ALL, SeqCst, Relaxed).is_ok() {
            return true;
        }
        leaf.reclaimers.fetch_sub(1, Relaxed);
        self.env.count(LfEvent::ReclaimAborted);
        false
    }

    /// Unlinks and retires the leaf at the end of `path`, which the caller
    /// just killed.
    pub(super) fn unlink_dead_leaf(&self, path: &Path<'_, E>, id: u32) {
        let (leaf, parent) = (path[LEAF], path[LEAF - 1]);
        let me = ptr::from_ref(leaf).cast_mut().cast::<()>();
        let unlinked = parent.slots[slot_of(id, LEAF - 1)]
            .compare_exchange(me, ptr::null_mut(), AcqRel, Relaxed)
            .is_ok();
        assert!(
            unlinked,
            "lock-free IDR: a dead leaf was unlinked by someone else"
        );
        self.nodes.fetch_sub(1, Relaxed);
        self.env.count(LfEvent::Reclaim);
        // SAFETY: we unlinked it just now (only its killer does), a dead
        // empty leaf has null slots, and we are inside a read-side section.
        unsafe { self.env.retire_node(NonNull::from(leaf)) };
    }

    /// For a claim of `id` that found every bit of its leaf (the end of
    /// `path`) set: whether the leaf may be dying rather than full, in
    /// which case this waits until it is unlinked or its reclaim gave up,
    /// and the claim must look again. The wait is bounded: a reclaimer
    /// goes from counting itself to unlinking the leaf or taking its count
    /// back in a few steps, none of which waits.
    pub(super) fn wait_if_dying(&self, path: &Path<'_, E>, id: u32) -> bool {
        let leaf = path[LEAF];
        // The all-ones the caller read was acquired from the killer's CAS
        // (or a later claim's OR), so a killer's count is visible here.
        if leaf.reclaimers.load(Relaxed) == 0 {
            return false;
        }
        self.env.count(LfEvent::DeadLeaf);
        let link = &path[LEAF - 1].slots[slot_of(id, LEAF - 1)];
        let me = ptr::from_ref(leaf).cast_mut().cast::<()>();
        while link.load(SeqCst) == me && leaf.reclaimers.load(SeqCst) != 0 {
            E::relax();
        }
        true
    }

    /// Reclaims `id`'s leaf if it exists and is empty (the cursor left it).
    pub(super) fn reclaim_if_empty<'g>(&'g self, id: u32, s: Section<'g, E>) {
        if let Some(path) = self.path_to(id, s)
            && path[LEAF].bits.load(SeqCst) == 0
        {
            self.reclaim_leaf(&path, id);
        }
    }

    /// Whether `id` lies in the leaf the cyclic cursor points into (kept
    /// when emptied: the next claims land there).
    pub(super) fn in_cursor_leaf(&self, id: u32) -> bool {
        self.cursor.0.load(SeqCst) >> LF_BITS == id >> LF_BITS
    }
}
