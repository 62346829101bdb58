//! A lock-free id -> pointer map for pid allocation without `pidmap_lock`:
//! Linux's pre-4.15 scheme (atomic test-and-set of a bit near a cmpxchg'd
//! cursor) over the IDR's radix tree of 64-slot nodes.
//!
//! It lets concurrent forks claim pids on different CPUs without one
//! global lock, at the price of strict cyclic order. [`LfIdr`] is the map;
//! its doc gives the tree's shape, the claim, publish, remove and reclaim
//! protocol, and what is guaranteed under concurrency. `tree` holds the
//! walks, the claim search and the full hints; `env` what the map runs on
//! (atomic words, node memory, grace periods, counters), so the same
//! protocol runs in the kernel, in the host tests and under loom.

use core::marker::PhantomData;
use core::sync::atomic::{AtomicU32, Ordering};

use crate::klib::errno::Errno;

mod env;
mod tree;

pub(crate) use env::{
    Bits64, KernelEnv, LfEnv, LfEvent, LfStats, SlotPtr, Word32, lf_node_cache, lf_stats_cpu,
    lf_stats_total,
};
use tree::{ALL, LEAF, Section, slot_of};
pub(crate) use tree::{LF_ID_LIMIT, LF_SLOTS, LfNode};

/// The nodes linked in a map, as [`LfIdr::census`] counts them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LfCensus {
    /// Inner nodes below the root.
    pub(crate) inner: u32,
    pub(crate) leaves: u32,
    /// Leaves holding no id, the cursor's excepted: none once operations
    /// stop (see [`LfIdr`]).
    pub(crate) idle_leaves: u32,
}

impl LfCensus {
    /// Inner nodes and leaves: what [`LfIdr::nr_nodes`] must say.
    pub(crate) fn nodes(&self) -> u32 {
        self.inner + self.leaves
    }
}

/// The cursor on a cache line of its own: every cyclic claim writes it,
/// while the root next to it is read by every walk.
#[repr(align(128))]
struct CursorLine<W>(W);

/// A lock-free id -> `*mut T` map (ids below [`LF_ID_LIMIT`]) with a
/// cyclic cursor.
///
/// The tree has a fixed height, four levels of 6 bits for ids below 2^22
/// (`PID_MAX_LIMIT`), and its root lives in the map: nothing grows or
/// shrinks at the top, so no walk can race with that (a small id costs a
/// pointer load or two more than in a tree cut to size). A leaf's word has
/// a bit per claimed id, an inner node's a "subtree full" hint per child.
///
/// - Claim: one atomic OR sets the id's bit (exact id: EEXIST if it was
///   set; cyclic: the first clear bit from the cursor, skipping subtrees
///   hinted full, once wrapped to the low bound), then a CAS moves the
///   cursor forward unless another CPU moved it further. Missing nodes are
///   installed by CAS into the parent's slot; the loser frees its node.
/// - Publish is a Release store into the claimed id's slot; lookup walks
///   with Acquire loads under RCU and sees null until then. Remove clears
///   the slot, then the bit (Release: the next claimer sees the null slot).
/// - An emptied leaf dies by one CAS from no bits to all bits (no claim can
///   land in it), is unlinked, and is freed after a grace period. Its last
///   remover reclaims it, unless the cursor points into it (the next
///   claims land there); then the claim that moves the cursor out does.
///   So once operations stop, no leaf but the cursor's is linked empty.
///   Inner nodes stay until the map is dropped: at most 16 + 1024 of them,
///   only where ids were used, and a walk then never finds its path cut
///   above a leaf.
///
/// # Concurrency
/// Guaranteed instead of strict cyclic order (as in Linux before 4.15): an
/// id has one claimer at a time, and a removed id can be claimed again (a
/// full hint over room is taken back by the operations that raced, see
/// `tree`). A cyclic claim that read cursor `c` returns the first id at or
/// after `max(c, low)` whose bit it found clear, or, having wrapped, the
/// first from `low`; ids it passed were claimed when it looked or freed
/// while it looked. Racing claims may interleave (A 10, B 11, or the
/// reverse) and the cursor never moves back as seen from where a claim
/// started. A leaf being reclaimed looks full (all bits set) between its
/// death and its unlink, but it counts as free, as in Linux, where the
/// leaf's ids are free all along: its reclaim counts itself in the leaf
/// first, and a claim that finds all bits set and a reclaim under way
/// waits for the unlink (a few steps of the reclaimer) and looks again.
/// So an exact claim of a free id succeeds and a cyclic claim does not
/// pass free ids in a dying leaf: EEXIST means the id was claimed when the
/// claim looked, ENOSPC that each id in range was claimed at some point
/// while it looked.
#[repr(C)]
pub(crate) struct LfIdr<T, E: LfEnv = KernelEnv> {
    root: LfNode<E>,
    cursor: CursorLine<E::Word>,
    /// Nodes linked below the root (changed on install and reclaim only).
    nodes: AtomicU32,
    env: E,
    _entries: PhantomData<*mut T>,
}

// SAFETY: all shared state is atomic; nodes are owned by the map and freed
// only when unreachable (unlinked, then a grace period) or on drop; entries
// are opaque pointers the map never dereferences.
unsafe impl<T, E: LfEnv> Sync for LfIdr<T, E> {}
// SAFETY: as above; nothing in the map is tied to a thread.
unsafe impl<T, E: LfEnv> Send for LfIdr<T, E> {}

impl<T> LfIdr<T, KernelEnv> {
    /// An empty map with its cursor at 0, nodes from [`lf_node_cache`].
    pub(crate) fn new() -> Self {
        Self::with_env(KernelEnv::new())
    }
}

impl<T> Default for LfIdr<T, KernelEnv> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, E: LfEnv> LfIdr<T, E> {
    /// An empty map over `env`.
    pub(crate) fn with_env(env: E) -> Self {
        LfIdr {
            root: LfNode::new_clean(),
            cursor: CursorLine(E::Word::with_value(0)),
            nodes: AtomicU32::new(0),
            env,
            _entries: PhantomData,
        }
    }

    /// Enters a read-side section of the map's environment (in the kernel,
    /// `rcu_read_lock()`), as [`find`](Self::find) needs.
    pub(crate) fn read_lock(&self) -> E::ReadGuard {
        self.env.read_lock()
    }

    /// Claims the next free id cyclically (Linux: `idr_alloc_cyclic` with
    /// `alloc_pid`'s `pid_min`): searches `[max(cursor, low), end)`, then
    /// once `[low, end)`, where `low` is 1 until the cursor has passed
    /// `reserved`, then `reserved`. The id holds null until published.
    /// ENOSPC if no free id was found, ENOMEM if a node could not be had.
    pub(crate) fn claim_cyclic(&self, reserved: u32, end: u32) -> Result<u32, Errno> {
        let guard = self.env.read_lock();
        let s = Section::of(&guard);
        let seen = self.cursor.0.load(Ordering::Relaxed);
        let low = if seen > reserved { reserved } else { 1 };
        let max = end.min(LF_ID_LIMIT).checked_sub(1).ok_or(Errno::ENOSPC)?;
        let from = seen.max(low);
        let id = match self.search(from, max, s)? {
            Some(id) => id,
            None if from > low => self.search(low, max, s)?.ok_or(Errno::ENOSPC)?,
            None => return Err(Errno::ENOSPC),
        };
        self.cursor_past(seen, id, s);
        Ok(id)
    }

    /// Moves the cursor past `id`, claimed cyclically by a claim that read
    /// the cursor at `seen`, and if the move left a leaf, reclaims that
    /// leaf if it is empty (a remover that emptied it while the cursor was
    /// there left it linked).
    fn cursor_past<'g>(&'g self, seen: u32, id: u32, s: Section<'g, E>) {
        if let Some(left) = self.advance_cursor(seen, id + 1) {
            self.cursor_left(left, id + 1, s);
        }
    }

    /// Moves the cursor from `seen` to `new` unless another claim moved it
    /// further meanwhile (walking forward from `seen`, wrapping included);
    /// Linux 4.14's `set_last_pid`. Returns the value it replaced, which
    /// may be past `seen`; `None` if it left the cursor alone.
    fn advance_cursor(&self, seen: u32, new: u32) -> Option<u32> {
        let mut cur = seen;
        // SeqCst (free on x86, where any locked instruction is a full
        // barrier): `cursor_left` pairs it with a remover's `fetch_and`.
        while let Err(now) =
            self.cursor
                .0
                .compare_exchange(cur, new, Ordering::SeqCst, Ordering::Relaxed)
        {
            self.env.count(LfEvent::CursorRace);
            if now.wrapping_sub(seen) >= new.wrapping_sub(seen) {
                return None;
            }
            cur = now;
        }
        Some(cur)
    }

    /// The cursor just moved from `old` to `new`; if that left `old`'s
    /// leaf, reclaims it if it is empty. Its last remover may have seen
    /// the cursor there and kept it; both sides write (the cursor here,
    /// the leaf's bits there), fence and then read the other's word, so at
    /// least one of them sees the leaf empty and the cursor gone.
    fn cursor_left<'g>(&'g self, old: u32, new: u32, s: Section<'g, E>) {
        if old >> tree::LF_BITS != new >> tree::LF_BITS {
            E::sc_fence();
            self.reclaim_if_empty(old, s);
        }
    }

    /// Claims exactly `id` (Linux: `idr_alloc(id, id + 1)` for `set_tid`),
    /// leaving the cursor alone. EEXIST if it is claimed, EINVAL if it is
    /// beyond [`LF_ID_LIMIT`], ENOMEM if a node could not be had.
    pub(crate) fn claim_exact(&self, id: u32) -> Result<(), Errno> {
        if id >= LF_ID_LIMIT {
            return Err(Errno::EINVAL);
        }
        let guard = self.env.read_lock();
        let s = Section::of(&guard);
        let bit = 1u64 << slot_of(id, LEAF);
        loop {
            let path = self.path_installing(id, s)?;
            let old = path[LEAF].bits.fetch_or(bit, Ordering::SeqCst);
            if old & bit == 0 {
                if old | bit == ALL {
                    self.mark_full(&path, id);
                }
                return Ok(());
            }
            // All bits set is also what a dying leaf looks like: once it
            // is gone, look again (and install a fresh leaf).
            if old == ALL && self.wait_if_dying(&path, id) {
                continue;
            }
            return Err(Errno::EEXIST);
        }
    }

    /// Publishes `ptr` at the claimed `id` (Linux: `idr_replace` in
    /// `alloc_pid`): lookups see it from now on. ENOENT if `id` is not
    /// claimed.
    ///
    /// # Safety
    /// The caller claimed `id` from this map and has not removed it; no
    /// other CPU publishes or removes it meanwhile.
    pub(crate) unsafe fn publish(&self, id: u32, ptr: *mut T) -> Result<(), Errno> {
        let guard = self.env.read_lock();
        let path = self.path_to(id, Section::of(&guard)).ok_or(Errno::ENOENT)?;
        let (leaf, off) = (path[LEAF], slot_of(id, LEAF));
        if leaf.bits.load(Ordering::Relaxed) & (1 << off) == 0 {
            return Err(Errno::ENOENT);
        }
        leaf.slots[off].store(ptr.cast(), Ordering::Release);
        Ok(())
    }

    /// Port of `idr_find()` under RCU: the entry published at `id`, or null
    /// (free, or claimed but not yet published). No lock; `guard` proves
    /// the read-side section the entry must be used in.
    pub(crate) fn find(&self, id: u32, guard: &E::ReadGuard) -> *mut T {
        match self.path_to(id, Section::of(guard)) {
            Some(path) => path[LEAF].slots[slot_of(id, LEAF)]
                .load(Ordering::Acquire)
                .cast(),
            None => core::ptr::null_mut(),
        }
    }

    /// Whether `id` is claimed (published or not).
    pub(crate) fn is_allocated(&self, id: u32) -> bool {
        let guard = self.env.read_lock();
        self.path_to(id, Section::of(&guard)).is_some_and(|path| {
            path[LEAF].bits.load(Ordering::Acquire) & (1 << slot_of(id, LEAF)) != 0
        })
    }

    /// Port of `idr_remove()`: frees the claimed `id`, returning what was
    /// published there (null if nothing was), or `None` if `id` was not
    /// claimed. An emptied leaf is reclaimed unless the cursor points into
    /// it.
    ///
    /// # Safety
    /// The caller claimed `id` from this map and has not removed it since;
    /// nobody else publishes or removes it meanwhile. (A dead leaf reads
    /// as all claimed: removing an id one does not own could reopen it
    /// while it is being freed.)
    pub(crate) unsafe fn remove(&self, id: u32) -> Option<*mut T> {
        let guard = self.env.read_lock();
        let s = Section::of(&guard);
        let path = self.path_to(id, s)?;
        let (leaf, off) = (path[LEAF], slot_of(id, LEAF));
        let bit = 1u64 << off;
        if leaf.bits.load(Ordering::Relaxed) & bit == 0 {
            return None;
        }
        // The owner is the slot's only writer, so no locked exchange: the
        // bit's clearing (Release) orders the null before the next claim.
        let entry = leaf.slots[off].load(Ordering::Relaxed);
        leaf.slots[off].store(core::ptr::null_mut(), Ordering::Relaxed);
        let old = leaf.bits.fetch_and(!bit, Ordering::SeqCst);
        if old == ALL {
            self.note_room(&path, id, LEAF - 1);
        }
        if old == bit {
            // Pairs with `cursor_left`: the claim moving the cursor out of
            // this leaf reclaims it if this reads the cursor still here.
            E::sc_fence();
            if !self.in_cursor_leaf(id) {
                self.reclaim_leaf(&path, id);
            }
        }
        Some(entry.cast())
    }

    /// Port of `idr_get_cursor()`.
    pub(crate) fn get_cursor(&self) -> u32 {
        self.cursor.0.load(Ordering::Relaxed)
    }

    /// Port of `idr_set_cursor()` (`alloc_pid` resets it to 0 when a
    /// namespace's first pid fails). Reclaims the leaf the cursor leaves if
    /// it is empty.
    pub(crate) fn set_cursor(&self, next: u32) {
        let old = self.cursor.0.swap(next, Ordering::SeqCst);
        if old >> tree::LF_BITS != next >> tree::LF_BITS {
            let guard = self.env.read_lock();
            self.cursor_left(old, next, Section::of(&guard));
        }
    }

    /// Nodes linked below the root.
    pub(crate) fn nr_nodes(&self) -> u32 {
        self.nodes.load(Ordering::Relaxed)
    }

    /// What is linked below the root, by a walk: exact when no other CPU
    /// changes the map.
    pub(crate) fn census(&self) -> LfCensus {
        fn walk<E: LfEnv>(
            m: &LfIdr<impl Sized, E>,
            node: &LfNode<E>,
            depth: usize,
            base: u32,
            s: Section<'_, E>,
            c: &mut LfCensus,
        ) {
            for slot in 0..LF_SLOTS {
                let id = base + ((slot as u32) << tree::shift_at(depth));
                let Some(child) = m.child(node, slot, s) else {
                    continue;
                };
                if depth + 1 < LEAF {
                    c.inner += 1;
                    walk(m, child, depth + 1, id, s, c);
                } else {
                    c.leaves += 1;
                    let idle = child.bits.load(Ordering::SeqCst) == 0 && !m.in_cursor_leaf(id);
                    c.idle_leaves += u32::from(idle);
                }
            }
        }
        let guard = self.env.read_lock();
        let mut c = LfCensus::default();
        walk(self, &self.root, 0, 0, Section::of(&guard), &mut c);
        c
    }

    /// Port of `idr_for_each()`: every claimed id in order with its entry
    /// (null if unpublished). Exact when no other CPU changes the map.
    pub(crate) fn for_each(&self, mut f: impl FnMut(u32, *mut T)) {
        let guard = self.env.read_lock();
        self.visit(&self.root, 0, 0, Section::of(&guard), &mut f);
    }

    fn visit<'g>(
        &'g self,
        node: &'g LfNode<E>,
        depth: usize,
        base: u32,
        s: Section<'g, E>,
        f: &mut impl FnMut(u32, *mut T),
    ) {
        for slot in 0..LF_SLOTS {
            let id = base + ((slot as u32) << tree::shift_at(depth));
            if id >= LF_ID_LIMIT {
                return;
            }
            if depth == LEAF {
                if node.bits.load(Ordering::Acquire) & (1 << slot) != 0 {
                    f(id, node.slots[slot].load(Ordering::Acquire).cast());
                }
            } else if let Some(child) = self.child(node, slot, s) {
                self.visit(child, depth + 1, id, s, f);
            }
        }
    }

    /// Claimed ids (published or not); exact when no other CPU changes the
    /// map.
    pub(crate) fn count_ids(&self) -> u32 {
        let mut n = 0;
        self.for_each(|_, _| n += 1);
        n
    }

    /// Frees the subtree below `node` (at `depth`) and, unless it is the
    /// root, `node` itself.
    ///
    /// # Safety
    /// Nobody else can reach the map's nodes (`&mut self` in `drop`).
    unsafe fn free_subtree(&mut self, node: *const LfNode<E>, depth: usize) {
        for slot in 0..LF_SLOTS {
            // SAFETY: `node` is the root or a node of this map, still
            // allocated (children are freed before their parent).
            let child =
                unsafe { (*node).slots[slot].swap(core::ptr::null_mut(), Ordering::Relaxed) };
            if child.is_null() {
                continue;
            }
            if depth + 1 < LEAF {
                // SAFETY: per the contract.
                unsafe { self.free_subtree(child.cast(), depth + 1) };
            }
            // SAFETY: a node of this map, now unreachable (its slot is
            // cleared and nobody else can walk the map).
            unsafe {
                self.env
                    .free_node(core::ptr::NonNull::new_unchecked(child.cast()))
            };
        }
    }
}

impl<T, E: LfEnv> Drop for LfIdr<T, E> {
    /// Frees every node at once: `&mut self` means no walk is in flight
    /// (leaves reclaimed earlier are already on their way out through
    /// RCU, and their callbacks never touch the map).
    fn drop(&mut self) {
        let root: *const LfNode<E> = &self.root;
        // SAFETY: `&mut self`: nobody else can reach the nodes.
        unsafe { self.free_subtree(root, 0) };
    }
}

#[cfg(all(test, loom))]
mod loom_env;
#[cfg(all(test, loom))]
mod loom_models;
#[cfg(all(test, not(loom)))]
mod tests;
#[cfg(test)]
mod tests_shared;
