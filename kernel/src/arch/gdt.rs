//! Per-CPU GDT and TSS, with a separate IST stack for double faults.
//!
//! Every CPU gets its own GDT (a TSS descriptor is marked busy when loaded,
//! so CPUs cannot share one) and its own TSS whose first IST slot points at a
//! private stack. The double-fault handler runs on that stack, so a kernel
//! stack overflow is reported instead of escalating to a triple fault.

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;

use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable};
use x86_64::structures::tss::TaskStateSegment;

use super::percpu::MAX_CPUS;

/// IST slot (0-based, as the TSS table is indexed) of the double-fault stack.
pub(crate) const DOUBLE_FAULT_IST_INDEX: u16 = 0;
const IST_STACK_SIZE: usize = 16 * 1024;

struct CpuTables {
    gdt: GlobalDescriptorTable,
    tss: TaskStateSegment,
}

#[repr(C, align(16))]
struct IstStack([u8; IST_STACK_SIZE]);

struct PerCpuStorage<T>([UnsafeCell<MaybeUninit<T>>; MAX_CPUS]);

// SAFETY: slot `i` is only written by CPU `i`, once, in `init_this_cpu`;
// afterwards the CPU's descriptor registers point into it and nobody writes.
unsafe impl<T> Sync for PerCpuStorage<T> {}

static TABLES: PerCpuStorage<CpuTables> =
    PerCpuStorage([const { UnsafeCell::new(MaybeUninit::uninit()) }; MAX_CPUS]);
static IST_STACKS: PerCpuStorage<IstStack> =
    PerCpuStorage([const { UnsafeCell::new(MaybeUninit::uninit()) }; MAX_CPUS]);

/// Builds and loads CPU `index`'s GDT and TSS, and reloads the segment
/// registers.
///
/// # Safety
/// Called once per CPU, on that CPU, with its own index.
pub(crate) unsafe fn init_this_cpu(index: usize) {
    let stack = IST_STACKS.0[index].get();
    let stack_top = VirtAddr::from_ptr(stack) + IST_STACK_SIZE as u64;

    let slot = TABLES.0[index].get();
    // SAFETY: slot `index` belongs to this CPU and is written only here, once
    // (the caller's contract); it is a static, so the references are 'static.
    let tables: &'static mut CpuTables = unsafe {
        (*slot).write(CpuTables {
            gdt: GlobalDescriptorTable::new(),
            tss: TaskStateSegment::new(),
        })
    };
    tables.tss.interrupt_stack_table[DOUBLE_FAULT_IST_INDEX as usize] = stack_top;
    // SAFETY: the TSS is not modified after this point (a loaded TSS must
    // not change under the CPU), so a shared 'static borrow is sound.
    let tss: &'static TaskStateSegment = unsafe { &*core::ptr::addr_of!(tables.tss) };
    let code = tables.gdt.append(Descriptor::kernel_code_segment());
    let data = tables.gdt.append(Descriptor::kernel_data_segment());
    let tss_sel = tables.gdt.append(Descriptor::tss_segment(tss));
    // SAFETY: as above; the GDT is complete and is not modified again.
    let gdt: &'static GlobalDescriptorTable = unsafe { &*core::ptr::addr_of!(tables.gdt) };
    gdt.load();
    // SAFETY: the selectors index valid descriptors of the GDT just loaded.
    unsafe {
        CS::set_reg(code);
        SS::set_reg(data);
        DS::set_reg(data);
        ES::set_reg(data);
        load_tss(tss_sel);
    }
}
