//! Dropping QEMU's translation of the kernel's code, so that it is
//! translated again, in the order the code next runs.
//!
//! Under TCG, QEMU runs translations of our code placed in its code buffer
//! in the order they were first needed; where each version's hot path lands
//! there (which host cache sets and branch-predictor entries it shares with
//! what) is fixed for the rest of the boot and differs from boot to boot.
//! It moved the threadspawn ratios by several percent per boot, a bias one
//! boot's rounds cannot see. TCG keeps guest code pages write-protected
//! and drops the translations of a page when it is written (self-modifying
//! code), so writing every text byte back unchanged, through the
//! physical-memory map, makes QEMU forget them all. The benchmark does it
//! every round (as Stabilizer re-randomizes code layout during a run): the
//! placement is then redrawn per round and its effect is part of the
//! rounds' spread, in the interval. Under KVM there is no translation and
//! nothing to drop.

use super::physmap::{PAGE_SIZE, phys_to_virt};

unsafe extern "C" {
    /// The ELF header, where the linker (lld) starts the kernel's image.
    static __ehdr_start: u8;
    /// The end of the executable code (provided by lld).
    static etext: u8;
}

const PRESENT: u64 = 1;
const HUGE: u64 = 1 << 7;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// The physical address of the page holding `va`, by walking the live page
/// tables (2 MiB and 1 GiB pages included); `None` if unmapped.
fn page_phys(va: u64) -> Option<u64> {
    let mut table = x86_64::registers::control::Cr3::read()
        .0
        .start_address()
        .as_u64();
    for shift in [39u32, 30, 21, 12] {
        let index = ((va >> shift) & 511) as usize;
        // SAFETY: `table` is a page table of the live hierarchy (CR3's, then
        // one a present entry names), reached through the physical-memory
        // mapping; the index is below 512. Read only.
        let e = unsafe {
            (phys_to_virt(table) as *const u64)
                .add(index)
                .read_volatile()
        };
        if e & PRESENT == 0 {
            return None;
        }
        if shift == 12 || (shift != 39 && e & HUGE != 0) {
            let size = 1u64 << shift;
            return Some((e & ADDR_MASK & !(size - 1)) + (va & (size - 1) & !(PAGE_SIZE - 1)));
        }
        table = e & ADDR_MASK;
    }
    None
}

/// Writes every byte of the kernel's image up to the end of its code back
/// unchanged; returns the pages written. QEMU (TCG) then drops its
/// translations of them.
pub(crate) fn drop_translations() -> u64 {
    let start = (&raw const __ehdr_start) as u64 & !(PAGE_SIZE - 1);
    let end = (&raw const etext) as u64;
    let mut pages = 0;
    for va in (start..end).step_by(PAGE_SIZE as usize) {
        let Some(pa) = page_phys(va) else { continue };
        let words = phys_to_virt(pa) as *mut u64;
        for i in 0..(PAGE_SIZE / 8) as usize {
            // SAFETY: `words` maps one whole page of the kernel's image
            // through the writable physical-memory mapping; each word is
            // written back with the value just read, so every CPU fetching
            // or reading it sees the same bytes before, during and after.
            // Nothing else writes the image.
            unsafe {
                let w = words.add(i).read_volatile();
                words.add(i).write_volatile(w);
            }
        }
        pages += 1;
    }
    pages
}
