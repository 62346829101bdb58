//! Dropping QEMU's translation of the kernel's code, so that it is
//! translated again, in the order the code next runs.
//!
//! Under TCG, QEMU runs translations of our code placed in its code buffer
//! in the order they were first needed; where each version's hot path lands
//! there (which host cache sets and branch-predictor entries it shares with
//! what) is fixed for the rest of the boot and differs from boot to boot.
//! It moved the threadspawn ratios by several percent per boot, a bias one
//! boot's rounds cannot see. TCG sends every write to a guest page it has
//! translated code from through a slow path that drops the translations
//! of the bytes written (its self-modifying-code support), so writing
//! every text byte back unchanged, through the physical-memory map, makes
//! QEMU forget them all. The benchmark does it
//! every round (as Stabilizer re-randomizes code layout during a run): the
//! placement is then redrawn per round and its effect is part of the
//! rounds' spread, in the interval. Under KVM there is no translation and
//! nothing to drop.

use super::physmap::{PAGE_SIZE, phys_to_virt, virt_to_phys_page};

unsafe extern "C" {
    /// The ELF header, where the linker (lld) starts the kernel's image.
    static __ehdr_start: u8;
    /// The end of the executable code (provided by lld).
    static etext: u8;
}

/// Writes every byte of the kernel's image up to the end of its code back
/// unchanged; returns the pages written to. QEMU (TCG) then drops its
/// translations of them.
pub(crate) fn drop_translations() -> u64 {
    let start = (&raw const __ehdr_start) as u64;
    let end = (&raw const etext) as u64;
    let mut pages = 0;
    let mut va = start;
    while va < end {
        // Up to the end of this page or of the code, whichever is first:
        // nothing past `etext` is touched.
        let stop = ((va & !(PAGE_SIZE - 1)) + PAGE_SIZE).min(end);
        if let Some(pa) = virt_to_phys_page(va) {
            let from = phys_to_virt(pa + (va & (PAGE_SIZE - 1)));
            let len = (stop - va) as usize;
            // Whole words while they fit (`va` starts the image or a page,
            // so it is 8-aligned unless the image's start is not), then
            // bytes.
            let words = if va % 8 == 0 { len / 8 } else { 0 };
            // `from..from + len` is the image's bytes `va..stop` (read-only
            // data and code, inside one page) through the writable
            // physical-memory mapping; nothing else writes them.
            for i in 0..words {
                // SAFETY: word `i` lies in `from..from + len` (above), and
                // is written back with the value just read: every CPU
                // fetching or reading it sees the same bytes throughout.
                unsafe {
                    let w = (from as *mut u64).add(i).read_volatile();
                    (from as *mut u64).add(i).write_volatile(w);
                }
            }
            for i in words * 8..len {
                // SAFETY: byte `i` lies in `from..from + len` (above), and
                // is written back with the value just read.
                unsafe {
                    let b = from.add(i).read_volatile();
                    from.add(i).write_volatile(b);
                }
            }
            pages += 1;
        }
        va = stop;
    }
    pages
}
