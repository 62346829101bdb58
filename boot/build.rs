//! Builds the BIOS disk image from the kernel binary, which cargo builds for
//! `x86_64-unknown-none` as an artifact dependency, and tells the crate where
//! it is (`PIDLAB_BIOS_IMAGE`).

use std::path::PathBuf;

use bootloader::BootConfig;

fn main() {
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let kernel = PathBuf::from(
        std::env::var_os("CARGO_BIN_FILE_PIDLAB_KERNEL_BIN_pidlab-kernel")
            .expect("cargo sets the artifact path of the kernel binary (bindeps)"),
    );
    let image = out_dir.join("pidlab-bios.img");

    // The bootloader's own log would bury ours, and drawing it on the
    // (invisible) framebuffer costs boot time under TCG.
    let mut boot_config = BootConfig::default();
    boot_config.serial_logging = false;
    boot_config.frame_buffer_logging = false;

    bootloader::BiosBoot::new(&kernel)
        .set_boot_config(&boot_config)
        .create_disk_image(&image)
        .expect("creating the BIOS disk image");
    println!("cargo:rustc-env=PIDLAB_BIOS_IMAGE={}", image.display());
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", kernel.display());
}
