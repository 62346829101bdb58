//! Builds the BIOS disk image from the kernel binary, which cargo builds for
//! `x86_64-unknown-none` as an artifact dependency, and tells the crate where
//! the image is (`PIDLAB_BIOS_IMAGE`) and where the kernel ELF it was made
//! from is (`PIDLAB_KERNEL_ELF`, whose symbols and DWARF name the addresses
//! of a profile; `PIDLAB_BOOT_KERNEL` is the copy inside the image).
//!
//! The image gets the kernel without its DWARF: the bootloader reads the
//! whole file from disk, which under TCG costs seconds per megabyte, and
//! nothing in the guest reads debug sections. Stripping moves no loaded
//! byte, so the runner names the image's addresses from the full ELF.

use std::path::{Path, PathBuf};
use std::process::Command;

use bootloader::BootConfig;

fn main() {
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let kernel = PathBuf::from(
        std::env::var_os("CARGO_BIN_FILE_PIDLAB_KERNEL_BIN_pidlab-kernel")
            .expect("cargo sets the artifact path of the kernel binary (bindeps)"),
    );
    let image = out_dir.join("pidlab-bios.img");
    let bootable = strip_debug(&kernel, &out_dir.join("pidlab-kernel-stripped"));

    // The bootloader's own log would bury ours, and drawing it on the
    // (invisible) framebuffer costs boot time under TCG.
    let mut boot_config = BootConfig::default();
    boot_config.serial_logging = false;
    boot_config.frame_buffer_logging = false;

    bootloader::BiosBoot::new(&bootable)
        .set_boot_config(&boot_config)
        .create_disk_image(&image)
        .expect("creating the BIOS disk image");
    println!("cargo:rustc-env=PIDLAB_BIOS_IMAGE={}", image.display());
    println!("cargo:rustc-env=PIDLAB_KERNEL_ELF={}", kernel.display());
    println!("cargo:rustc-env=PIDLAB_BOOT_KERNEL={}", bootable.display());
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", kernel.display());
}

/// `kernel` without its debug sections, written to `stripped` by the
/// toolchain's `llvm-objcopy` (component llvm-tools-preview); `kernel`
/// itself, with a warning, if that cannot be done.
fn strip_debug(kernel: &Path, stripped: &Path) -> PathBuf {
    let Some(objcopy) = llvm_objcopy() else {
        println!(
            "cargo:warning=llvm-objcopy not found (rustup component llvm-tools-preview): \
             the boot image carries the kernel's debug info and boots slower"
        );
        return kernel.to_path_buf();
    };
    let status = Command::new(&objcopy)
        .arg("--strip-debug")
        .arg(kernel)
        .arg(stripped)
        .status();
    match status {
        Ok(s) if s.success() => stripped.to_path_buf(),
        other => {
            println!(
                "cargo:warning={} --strip-debug failed ({other:?}): the boot image carries \
                 the kernel's debug info",
                objcopy.display()
            );
            kernel.to_path_buf()
        }
    }
}

/// The toolchain's `llvm-objcopy`: `<sysroot>/lib/rustlib/<host>/bin/`.
fn llvm_objcopy() -> Option<PathBuf> {
    let rustc = std::env::var_os("RUSTC")?;
    let out = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()?;
    let sysroot = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    let host = std::env::var("HOST").ok()?;
    let path = sysroot
        .join("lib/rustlib")
        .join(host)
        .join("bin/llvm-objcopy");
    path.is_file().then_some(path)
}
