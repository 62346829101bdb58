//! The bootable pidlab kernel: only the bootloader entry point lives here;
//! everything else is in the `pidlab` library so its portable parts can be
//! unit-tested on the host.
#![no_std]
#![no_main]

use bootloader_api::{BootInfo, entry_point};

entry_point!(kernel_entry, config = &pidlab::BOOTLOADER_CONFIG);

fn kernel_entry(boot_info: &'static mut BootInfo) -> ! {
    pidlab::kernel_main(boot_info)
}
