//! pidfs's part of the pid paths.
//!
//! 6.14 to 6.19 (Linux's fs/pidfs.c from "pidfs: lookup pid through
//! rbtree" until the rhashtable conversion): every published pid gets a
//! 64-bit inode number from a global counter and goes into one global
//! red-black tree keyed by it, both under `pidmap_lock`: `alloc_pid` calls
//! [`pidfs_add_pid`] in its publication, `free_pid` calls
//! [`pidfs_remove_pid`] before it drops the lock. Writers bump
//! `pidmap_lock_seq` around tree changes, as Linux does for its lockless
//! lookups. The tree is intrusive (the node lives in `struct pid`), so
//! nothing is allocated under the lock.
//!
//! 7.0 ("pidfs: convert rb-tree to rhashtable", "pidfs: implement ino
//! allocation without the pidmap lock") moved both out of `pidmap_lock`:
//! `alloc_pid` calls `pidfs_add_pid` after the unlock, `free_pid` calls
//! `pidfs_remove_pid` after its unlock, and the inode number comes from a
//! per-CPU batch (`gen_cookie_next()`). [`pidfs_add_pid_hashed`] does that
//! (for `v7.0` and `lockless`): numbers the pid from this CPU's batch and
//! links it into one of [`PIDFS_BUCKETS`] trees, each under its own
//! spinlock (the rhashtable's bucket locks).

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, Ordering, fence};

use intrusive_collections::{KeyAdapter, RBTree, RBTreeLink, UnsafeRef, intrusive_adapter};

use super::{Pid, PidmapGuard};
use crate::klib::lockctx::{self, Site};
use crate::platform::{self, MAX_CPUS};
use crate::sync::irq::IrqDiscipline;
use crate::sync::{SpinLock, named_spin_lock};

intrusive_adapter!(pub(super) PidfsAdapter = UnsafeRef<Pid>: Pid { pidfs_node: RBTreeLink });

impl<'a> KeyAdapter<'a> for PidfsAdapter {
    type Key = u64;

    fn get_key(&self, pid: &'a Pid) -> u64 {
        pid.ino.load(Ordering::Relaxed)
    }
}

/// The state `pidmap_lock` protects for pidfs.
struct Pidfs {
    /// Port of `pidfs_ino_tree` (built on first use).
    tree: Option<RBTree<PidfsAdapter>>,
    /// Port of `pidfs_ino_nr`: numbering starts at 2 (1 is the root inode
    /// of pseudo filesystems).
    next_ino: u64,
}

struct PidfsCell(UnsafeCell<Pidfs>);

// SAFETY: reached only through `pidfs`, which needs pidmap_lock's guard.
unsafe impl Sync for PidfsCell {}

static PIDFS: PidfsCell = PidfsCell(UnsafeCell::new(Pidfs {
    tree: None,
    next_ino: 2,
}));

/// Port of `pidmap_lock_seq`: bumped by writers around tree changes.
static PIDMAP_LOCK_SEQ: AtomicU64 = AtomicU64::new(0);

fn pidfs<D: IrqDiscipline>(_pidmap_lock: &mut PidmapGuard<D>) -> &mut Pidfs {
    // SAFETY: the guard proves this CPU holds pidmap_lock, and its `&mut`
    // borrow keeps this the only reference while it lives.
    unsafe { &mut *PIDFS.0.get() }
}

/// `write_seqcount_begin`/`_end` around `f`: as Linux's, a plain increment
/// (writers are serialized by pidmap_lock, so no locked read-modify-write)
/// and a write barrier each side.
fn write_seqcount<R>(f: impl FnOnce() -> R) -> R {
    let s = PIDMAP_LOCK_SEQ.load(Ordering::Relaxed);
    PIDMAP_LOCK_SEQ.store(s + 1, Ordering::Relaxed);
    fence(Ordering::Release);
    let r = f();
    fence(Ordering::Release);
    PIDMAP_LOCK_SEQ.store(s + 2, Ordering::Relaxed);
    r
}

/// Port of `pidfs_add_pid()`: numbers `pid` and links it into the tree.
///
/// # Safety
/// `pid` is alive and stays so until [`pidfs_remove_pid`], and is not in
/// the tree.
pub(super) unsafe fn pidfs_add_pid<D: IrqDiscipline>(g: &mut PidmapGuard<D>, pid: *const Pid) {
    lockctx::record(Site::PidfsAdd);
    let fs = pidfs(g);
    let ino = fs.next_ino;
    fs.next_ino += 1;
    // SAFETY: per the contract.
    unsafe { (*pid).ino.store(ino, Ordering::Relaxed) };
    let tree = fs
        .tree
        .get_or_insert_with(|| RBTree::new(PidfsAdapter::new()));
    // SAFETY: per the contract, the pointer outlives its membership.
    let r = unsafe { UnsafeRef::from_raw(pid) };
    write_seqcount(|| tree.insert(r));
}

/// Port of `pidfs_remove_pid()`: unlinks `pid` from the tree.
///
/// # Safety
/// `pid` was added with [`pidfs_add_pid`] and not removed since.
pub(super) unsafe fn pidfs_remove_pid<D: IrqDiscipline>(g: &mut PidmapGuard<D>, pid: *const Pid) {
    lockctx::record(Site::PidfsRemove);
    let tree = pidfs(g)
        .tree
        .as_mut()
        .expect("pidfs_remove_pid before any add");
    // SAFETY: per the contract, `pid` is in this tree.
    let mut cursor = unsafe { tree.cursor_mut_from_ptr(pid) };
    write_seqcount(|| cursor.remove());
}

/// Whether a pid numbered `ino` is in the tree.
#[cfg(test)]
pub(crate) fn pidfs_contains<D: IrqDiscipline>(g: &mut PidmapGuard<D>, ino: u64) -> bool {
    pidfs(g)
        .tree
        .as_ref()
        .is_some_and(|t| !t.find(&ino).is_null())
}

/// Buckets of the lock-free strategy's pidfs table.
pub(crate) const PIDFS_BUCKETS: usize = 256;

/// One bucket: the pids whose inode hashes here.
struct Bucket(Option<RBTree<PidfsAdapter>>);

// SAFETY: the tree holds pointers to pids, which are not tied to a thread;
// it is only reached under its bucket's lock.
unsafe impl Send for Bucket {}

static BUCKETS: [SpinLock<Bucket>; PIDFS_BUCKETS] =
    [const { named_spin_lock("pidfs_bucket", Bucket(None)) }; PIDFS_BUCKETS];

/// Inode numbers handed out per CPU at a time (Linux 7.0's
/// `gen_cookie_next()`: `COOKIE_LOCAL_BATCH`).
const INO_BATCH: u64 = 4096;
/// 7.0's inode numbers: a range of their own, so they never meet the
/// numbers `pidfs_add_pid` hands out under `pidmap_lock` (both schemes run
/// side by side here).
const HASHED_INO_BASE: u64 = 1 << 62;
static NEXT_INO_BATCH: AtomicU64 = AtomicU64::new(HASHED_INO_BASE);

/// Each CPU's current batch: the next number and the end of its batch.
#[repr(align(128))]
struct InoBatch {
    next: AtomicU64,
    end: AtomicU64,
}

static INO_BATCHES: [InoBatch; MAX_CPUS] = [const {
    InoBatch {
        next: AtomicU64::new(0),
        end: AtomicU64::new(0),
    }
}; MAX_CPUS];

/// A unique inode number: from this CPU's batch, a global atomic add once
/// per [`INO_BATCH`]. Interrupts are off while the batch is touched (no
/// preemption between reading and writing it).
fn next_hashed_ino() -> u64 {
    let flags = platform::local_irq_save();
    let b = &INO_BATCHES[platform::cpu_id()];
    let mut next = b.next.load(Ordering::Relaxed);
    if next == b.end.load(Ordering::Relaxed) {
        next = NEXT_INO_BATCH.fetch_add(INO_BATCH, Ordering::Relaxed);
        b.end.store(next + INO_BATCH, Ordering::Relaxed);
    }
    b.next.store(next + 1, Ordering::Relaxed);
    platform::local_irq_restore(flags);
    next
}

fn bucket_of(ino: u64) -> &'static SpinLock<Bucket> {
    // Fibonacci hashing: consecutive numbers (one CPU's batch) spread out.
    let h = ino.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56;
    &BUCKETS[h as usize % PIDFS_BUCKETS]
}

/// Whether `pid` went into 7.0's table ([`pidfs_add_pid_hashed`]): its
/// number is from that scheme's range.
pub(super) fn added_hashed(pid: &Pid) -> bool {
    pid.ino.load(Ordering::Relaxed) >= HASHED_INO_BASE
}

/// Port of 7.0's `pidfs_add_pid()` (after `pidmap_lock` is dropped):
/// numbers `pid` and links it into its bucket, under that bucket's lock
/// only.
///
/// # Safety
/// As [`pidfs_add_pid`]; undone with [`pidfs_remove_pid_hashed`].
pub(super) unsafe fn pidfs_add_pid_hashed(pid: *const Pid) {
    lockctx::record(Site::PidfsAdd);
    let ino = next_hashed_ino();
    // SAFETY: per the contract, `pid` is alive and not in any tree.
    unsafe { (*pid).ino.store(ino, Ordering::Relaxed) };
    let mut b = bucket_of(ino).lock();
    let tree = b.0.get_or_insert_with(|| RBTree::new(PidfsAdapter::new()));
    // SAFETY: per the contract, the pointer outlives its membership.
    tree.insert(unsafe { UnsafeRef::from_raw(pid) });
}

/// Port of 7.0's `pidfs_remove_pid()` (after `free_pid`'s unlock), for a
/// pid added by [`pidfs_add_pid_hashed`].
///
/// # Safety
/// `pid` was added with `pidfs_add_pid_hashed` and not removed since.
pub(super) unsafe fn pidfs_remove_pid_hashed(pid: *const Pid) {
    lockctx::record(Site::PidfsRemove);
    // SAFETY: per the contract, `pid` is alive; its number is fixed.
    let ino = unsafe { (*pid).ino.load(Ordering::Relaxed) };
    let mut b = bucket_of(ino).lock();
    let tree =
        b.0.as_mut()
            .expect("pidfs_remove_pid_hashed before any add");
    // SAFETY: per the contract, `pid` is in this bucket's tree.
    unsafe { tree.cursor_mut_from_ptr(pid) }.remove();
}

/// Whether a pid numbered `ino` is in 7.0's table.
#[cfg(test)]
pub(crate) fn pidfs_hashed_contains(ino: u64) -> bool {
    let b = bucket_of(ino).lock();
    b.0.as_ref().is_some_and(|t| !t.find(&ino).is_null())
}
