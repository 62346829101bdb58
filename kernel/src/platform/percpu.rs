//! Per-CPU data reached with interrupts off ([`PerCpu`]).

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, Ordering};

use super::{IrqFlags, MAX_CPUS, cpu_id, local_irq_restore, local_irq_save};

/// Per-CPU data: one `T` per CPU, used only by its CPU with interrupts off.
///
/// [`with`](Self::with) hands out `&mut T` for this CPU's slot. Interrupts
/// off keep other code off the CPU, but nothing in the types stops `f`
/// from calling `with` on the same table again, which would make a second
/// `&mut` to the slot; so each slot carries a busy flag, set for the
/// duration of `f`, and a nested `with` panics naming the table instead.
pub(crate) struct PerCpu<T> {
    slots: [CacheAligned<Slot<T>>; MAX_CPUS],
}

#[repr(align(128))]
struct CacheAligned<T>(T);

struct Slot<T> {
    /// Set while a `with` on this CPU holds the slot. Only this CPU
    /// touches it, with interrupts off, so plain loads and stores do.
    busy: AtomicBool,
    value: UnsafeCell<T>,
}

impl<T> Slot<T> {
    const fn new(value: T) -> Self {
        Slot {
            busy: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }
}

// SAFETY: a slot's value is only reached through `with`, which hands CPU
// `i`'s slot to code running on CPU `i` with interrupts off and refuses a
// nested call while the slot is held; nothing else can run on that CPU
// meanwhile (the kernel is not preemptive), so access is exclusive.
unsafe impl<T: Send> Sync for PerCpu<T> {}

impl<T: Copy> PerCpu<T> {
    /// Builds the table with a copy of `init` in every slot, at compile time
    /// (so a large table can be a plain `static`, never built on a stack).
    pub(crate) const fn new_copied(init: T) -> Self {
        let mut slots: [MaybeUninit<CacheAligned<Slot<T>>>; MAX_CPUS] =
            [const { MaybeUninit::uninit() }; MAX_CPUS];
        let mut i = 0;
        while i < MAX_CPUS {
            slots[i] = MaybeUninit::new(CacheAligned(Slot::new(init)));
            i += 1;
        }
        // SAFETY: every element was initialised above, and an array of
        // MaybeUninit<X> has the layout of an array of X.
        let slots = unsafe {
            core::ptr::read(
                &slots as *const [MaybeUninit<CacheAligned<Slot<T>>>; MAX_CPUS]
                    as *const [CacheAligned<Slot<T>>; MAX_CPUS],
            )
        };
        PerCpu { slots }
    }
}

/// Releases a slot taken by [`PerCpu::with`] and restores interrupts, also
/// when `f` unwinds (host tests), so a failed test leaves the CPU usable.
struct SlotHold<'a> {
    busy: &'a AtomicBool,
    flags: IrqFlags,
}

impl Drop for SlotHold<'_> {
    #[inline]
    fn drop(&mut self) {
        self.busy.store(false, Ordering::Relaxed);
        local_irq_restore(self.flags);
    }
}

impl<T> PerCpu<T> {
    /// Builds the table, calling `init` for each CPU slot.
    #[cfg(test)]
    pub(crate) fn new(mut init: impl FnMut() -> T) -> Self {
        PerCpu {
            slots: core::array::from_fn(|_| CacheAligned(Slot::new(init()))),
        }
    }

    /// Runs `f` on this CPU's slot with interrupts off.
    ///
    /// Panics if `f` calls `with` on the same table again: that would
    /// alias the slot.
    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let flags = local_irq_save();
        let cpu = cpu_id();
        let slot = &self.slots[cpu].0;
        if slot.busy.load(Ordering::Relaxed) {
            local_irq_restore(flags);
            reentered::<T>(cpu);
        }
        slot.busy.store(true, Ordering::Relaxed);
        let _hold = SlotHold {
            busy: &slot.busy,
            flags,
        };
        // SAFETY: see the `Sync` impl: this CPU's slot, interrupts off, and
        // the busy flag (clear above, set until `_hold` drops) makes this
        // the only `&mut` to it.
        f(unsafe { &mut *slot.value.get() })
    }

    /// Visits every CPU's slot. Only sound when no CPU uses the table
    /// concurrently (e.g. after the benchmark, all workers parked).
    ///
    /// # Safety
    /// No other CPU may be inside [`with`](Self::with) on this table.
    pub(crate) unsafe fn for_each(&self, mut f: impl FnMut(usize, &mut T)) {
        for (cpu, slot) in self.slots.iter().enumerate() {
            if slot.0.busy.load(Ordering::Relaxed) {
                reentered::<T>(cpu);
            }
            // SAFETY: the caller guarantees nobody else uses the table,
            // and this CPU is not inside `with` on it (checked above).
            f(cpu, unsafe { &mut *slot.0.value.get() });
        }
    }
}

#[cold]
#[inline(never)]
#[track_caller]
fn reentered<T>(cpu: usize) -> ! {
    panic!(
        "PerCpu::with re-entered on CPU {cpu}: a nested with() on the same PerCpu<{}> would alias its slot",
        core::any::type_name::<T>()
    )
}
