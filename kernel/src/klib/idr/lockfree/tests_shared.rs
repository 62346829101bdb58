//! Checks shared by the host tests and the loom models.

use core::sync::atomic::Ordering;

use super::tree::{ALL, LEAF, Section, shift_at};
use super::{Bits64, LF_ID_LIMIT, LF_SLOTS, LfEnv, LfIdr, LfNode};

/// Checks the tree's shape: every full hint sits over a full child (and,
/// when `exact`, every full child has its hint: true once the map is quiet
/// after one-thread use), the node counter matches the linked nodes, and
/// (when `exact`) the only empty leaf is the cursor's.
pub(super) fn check_invariants<E: LfEnv>(m: &LfIdr<u8, E>, exact: bool) {
    fn walk<E: LfEnv>(
        m: &LfIdr<u8, E>,
        node: &LfNode<E>,
        depth: usize,
        base: u32,
        s: Section<'_, E>,
        exact: bool,
        nodes: &mut u32,
    ) {
        let word = node.bits.load(Ordering::SeqCst);
        for slot in 0..LF_SLOTS {
            let id = base + ((slot as u32) << shift_at(depth));
            if id >= LF_ID_LIMIT || depth == LEAF {
                continue;
            }
            let hint = word & (1 << slot) != 0;
            let Some(child) = m.child(node, slot, s) else {
                assert!(
                    !hint,
                    "full hint over a missing child at id {id} depth {depth}"
                );
                continue;
            };
            *nodes += 1;
            let full = child.bits.load(Ordering::SeqCst) == ALL;
            assert!(
                !hint || full,
                "full hint over a child with room at id {id} depth {depth}"
            );
            if exact {
                assert!(
                    hint || !full,
                    "full child without its hint at id {id} depth {depth}"
                );
                if depth + 1 == LEAF && child.bits.load(Ordering::SeqCst) == 0 {
                    assert!(m.in_cursor_leaf(id), "empty leaf at id {id} left behind");
                }
            }
            walk(m, child, depth + 1, id, s, exact, nodes);
        }
    }
    let g = m.read_lock();
    let mut nodes = 0;
    walk(m, &m.root, 0, 0, Section::of(&g), exact, &mut nodes);
    assert_eq!(nodes, m.nr_nodes(), "node counter");
}
