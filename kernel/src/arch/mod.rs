//! x86_64 glue for the bare-metal build: CPU control, per-CPU data, serial
//! console, descriptor tables and exceptions, QEMU's fw_cfg and exit devices.
//! Nothing here builds for the host; the portable code above it does.

pub(crate) mod acpi;
pub(crate) mod apic;
pub(crate) mod cpu;
pub(crate) mod fw_cfg;
pub(crate) mod gdt;
pub(crate) mod hooks;
pub(crate) mod hpet;
pub(crate) mod idt;
pub(crate) mod irq;
pub(crate) mod nohz;
pub(crate) mod panic;
pub(crate) mod percpu;
pub(crate) mod physmap;
pub(crate) mod pit;
pub(crate) mod qemu;
pub(crate) mod retranslate;
pub(crate) mod serial;
pub(crate) mod smp;
pub(crate) mod softtlb;
pub(crate) mod switch;
pub(crate) mod time;
pub(crate) mod trampoline;
pub(crate) mod watchdog;
