//! x86_64 glue for the bare-metal build: CPU control, per-CPU data, serial
//! console, descriptor tables and exceptions, QEMU's fw_cfg and exit devices.
//! Nothing here builds for the host; the portable code above it does.

pub mod acpi;
pub mod apic;
pub mod cpu;
pub mod fw_cfg;
pub mod gdt;
pub mod idt;
pub mod irq;
pub mod panic;
pub mod percpu;
pub mod pit;
pub mod qemu;
pub mod serial;
pub mod smp;
pub mod switch;
pub mod time;
pub mod trampoline;
pub mod watchdog;
