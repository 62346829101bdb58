//! pidfs's part of the pid paths (Linux's fs/pidfs.c from 6.15 until the
//! rhashtable conversion): every published pid gets a 64-bit inode number
//! from a global counter and goes into one global red-black tree keyed by
//! it, both under `pidmap_lock`: `alloc_pid` calls [`pidfs_add_pid`] in its
//! publication, `free_pid` calls [`pidfs_remove_pid`] before it drops the
//! lock. Writers bump `pidmap_lock_seq` around tree changes, as Linux does
//! for its lockless lookups. The tree is intrusive (the node lives in
//! `struct pid`), so nothing is allocated under the lock.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, Ordering};

use intrusive_collections::{KeyAdapter, RBTree, RBTreeLink, UnsafeRef, intrusive_adapter};

use super::{Pid, PidmapGuard};
use crate::klib::lockctx::{self, Site};

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

fn pidfs(_pidmap_lock: &mut PidmapGuard) -> &mut Pidfs {
    // SAFETY: the guard proves this CPU holds pidmap_lock, and its `&mut`
    // borrow keeps this the only reference while it lives.
    unsafe { &mut *PIDFS.0.get() }
}

fn write_seqcount<R>(f: impl FnOnce() -> R) -> R {
    PIDMAP_LOCK_SEQ.fetch_add(1, Ordering::Release);
    let r = f();
    PIDMAP_LOCK_SEQ.fetch_add(1, Ordering::Release);
    r
}

/// Port of `pidfs_add_pid()`: numbers `pid` and links it into the tree.
///
/// # Safety
/// `pid` is alive and stays so until [`pidfs_remove_pid`], and is not in
/// the tree.
pub(super) unsafe fn pidfs_add_pid(g: &mut PidmapGuard, pid: *const Pid) {
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
pub(super) unsafe fn pidfs_remove_pid(g: &mut PidmapGuard, pid: *const Pid) {
    lockctx::record(Site::PidfsRemove);
    let tree = pidfs(g)
        .tree
        .as_mut()
        .expect("pidfs_remove_pid before any add");
    // SAFETY: per the contract, `pid` is in this tree.
    let mut cursor = unsafe { tree.cursor_mut_from_ptr(pid) };
    write_seqcount(|| cursor.remove());
}

/// Pids in the tree now.
pub fn pidfs_count(g: &mut PidmapGuard) -> usize {
    pidfs(g).tree.as_ref().map_or(0, |t| t.iter().count())
}

/// Whether a pid numbered `ino` is in the tree.
pub fn pidfs_contains(g: &mut PidmapGuard, ino: u64) -> bool {
    pidfs(g)
        .tree
        .as_ref()
        .is_some_and(|t| !t.find(&ino).is_null())
}
