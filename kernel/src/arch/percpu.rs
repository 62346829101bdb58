//! Per-CPU data, reached through the GS segment base.
//!
//! Each CPU owns one cache-line-aligned [`PerCpu`] slot in a static table.
//! The slot's first word holds its own address, and the CPU's
//! `IA32_GS_BASE` points at the slot, so `mov reg, gs:[0]` yields "my slot"
//! in one instruction with no table lookup and no APIC read. A CPU sets its
//! GS base before anything else it does (the console lock needs the CPU
//! index), so [`this_cpu`] is valid everywhere after that.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use x86_64::VirtAddr;
use x86_64::registers::model_specific::GsBase;

/// Most CPUs the kernel supports.
pub(crate) use crate::MAX_CPUS;

/// One CPU's private data.
#[repr(C, align(128))]
pub(crate) struct PerCpu {
    /// Address of this slot; must stay at offset 0 (read as `gs:[0]`).
    self_addr: AtomicUsize,
    index: AtomicU32,
    apic_id: AtomicU32,
    /// Nesting depth of interrupt handlers running on this CPU.
    irq_depth: AtomicU32,
    /// Local APIC timer interrupts taken.
    ticks: AtomicU64,
    /// A kick NMI is on its way (set by the kicker before the IPI), so the
    /// next NMI is not a profiler sample.
    kick_pending: AtomicBool,
    /// This CPU idles with its periodic tick stopped (`nohz`): written by
    /// this CPU with interrupts off, read by its own interrupt entry and by
    /// the CPU watching it for hard lockups.
    tick_stopped: AtomicBool,
    /// Times this CPU stopped its tick to idle.
    idle_stops: AtomicU64,
}

impl PerCpu {
    const fn new() -> Self {
        PerCpu {
            self_addr: AtomicUsize::new(0),
            index: AtomicU32::new(0),
            apic_id: AtomicU32::new(0),
            irq_depth: AtomicU32::new(0),
            ticks: AtomicU64::new(0),
            kick_pending: AtomicBool::new(false),
            tick_stopped: AtomicBool::new(false),
            idle_stops: AtomicU64::new(0),
        }
    }

    /// Dense CPU index: 0 is the boot CPU, APs count up in start order.
    pub(crate) fn index(&self) -> u32 {
        self.index.load(Ordering::Relaxed)
    }

    /// Whether this CPU is running an interrupt handler.
    pub(crate) fn in_interrupt(&self) -> bool {
        self.irq_depth.load(Ordering::Relaxed) > 0
    }

    /// Marks entry into an interrupt handler (paired with `irq_exit`).
    pub(crate) fn irq_enter(&self) {
        self.irq_depth.fetch_add(1, Ordering::Relaxed);
    }

    /// Marks the end of an interrupt handler.
    pub(crate) fn irq_exit(&self) {
        self.irq_depth.fetch_sub(1, Ordering::Relaxed);
    }

    /// Timer interrupts this CPU has taken.
    pub(crate) fn ticks(&self) -> u64 {
        self.ticks.load(Ordering::Relaxed)
    }

    /// Counts one timer interrupt.
    pub(crate) fn tick(&self) {
        self.ticks.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether this CPU idles with its tick stopped.
    #[inline]
    pub(crate) fn tick_stopped(&self) -> bool {
        self.tick_stopped.load(Ordering::Relaxed)
    }

    /// Marks the tick stopped for idle (counting the stop) or running.
    /// This CPU only, with interrupts off.
    pub(crate) fn set_tick_stopped(&self, stopped: bool) {
        if stopped {
            let n = &self.idle_stops;
            n.store(n.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
        self.tick_stopped.store(stopped, Ordering::Relaxed);
    }

    /// Times this CPU has stopped its tick to idle.
    pub(crate) fn idle_stops(&self) -> u64 {
        self.idle_stops.load(Ordering::Relaxed)
    }

    /// Notes that a kick NMI is being sent to this CPU.
    pub(crate) fn note_kick(&self) {
        self.kick_pending.store(true, Ordering::Release);
    }

    /// Whether a kick was pending (and clears it): the NMI handler's test.
    pub(crate) fn take_kick(&self) -> bool {
        self.kick_pending.load(Ordering::Relaxed) && self.kick_pending.swap(false, Ordering::AcqRel)
    }

    /// Records the local APIC id (the boot CPU learns it after its per-CPU
    /// area is already in use).
    pub(crate) fn set_apic_id(&self, id: u32) {
        self.apic_id.store(id, Ordering::Relaxed);
    }
}

static CPUS: [PerCpu; MAX_CPUS] = [const { PerCpu::new() }; MAX_CPUS];

/// Makes slot `index` this CPU's per-CPU area.
///
/// # Safety
/// Called once per CPU, on that CPU, before anything uses [`this_cpu`]; no
/// two CPUs may use the same index.
pub(crate) unsafe fn init_this_cpu(index: usize, apic_id: u32) {
    let slot = &CPUS[index];
    slot.self_addr
        .store(slot as *const PerCpu as usize, Ordering::Relaxed);
    slot.index.store(index as u32, Ordering::Relaxed);
    slot.apic_id.store(apic_id, Ordering::Relaxed);
    GsBase::write(VirtAddr::from_ptr(slot));
}

/// This CPU's per-CPU area.
#[inline]
pub(crate) fn this_cpu() -> &'static PerCpu {
    let addr: usize;
    // SAFETY: GS base points at this CPU's slot (set by `init_this_cpu`
    // before any caller runs), whose first word is the slot's address.
    unsafe {
        core::arch::asm!("mov {}, gs:[0]", out(reg) addr,
            options(nostack, readonly, preserves_flags));
        &*(addr as *const PerCpu)
    }
}

/// CPU `index`'s area (for reading another CPU's counters).
pub(crate) fn cpu(index: usize) -> &'static PerCpu {
    &CPUS[index]
}

/// This CPU's dense index.
#[inline]
pub(crate) fn cpu_index() -> u32 {
    this_cpu().index()
}
