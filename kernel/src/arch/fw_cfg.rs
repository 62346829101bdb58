//! QEMU's firmware configuration device (fw_cfg), legacy I/O port interface.
//!
//! The runner passes files to the kernel with `-fw_cfg name=opt/pidlab/...`:
//! the command line, and (later) pidctl scripts. Protocol: write a 16-bit
//! selector to port 0x510, then read the item's bytes one at a time from port
//! 0x511. Item 0x0000 is the signature "QEMU"; item 0x0019 is the file
//! directory: a big-endian u32 count, then 64-byte entries of big-endian
//! size (u32), selector (u16), reserved (u16) and a NUL-padded name.

use x86_64::instructions::port::Port;

const SELECTOR_PORT: u16 = 0x510;
const DATA_PORT: u16 = 0x511;
const SIGNATURE: u16 = 0x0000;
const FILE_DIR: u16 = 0x0019;
const NAME_LEN: usize = 56;

/// Why a fw_cfg file could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FwCfgError {
    /// No fw_cfg device (not running under QEMU?).
    NoDevice,
    /// The file does not exist.
    NotFound,
    /// The file is larger than the buffer (its size is given).
    TooLarge(u32),
}

fn select(item: u16) {
    // SAFETY: port 0x510 is fw_cfg's selector register on QEMU's PC machine;
    // writing it only changes which item the data port reads.
    unsafe { Port::<u16>::new(SELECTOR_PORT).write(item) };
}

fn read_u8() -> u8 {
    // SAFETY: port 0x511 is fw_cfg's data register; a read returns the next
    // byte of the selected item (0 past its end).
    unsafe { Port::<u8>::new(DATA_PORT).read() }
}

fn read_bytes(buf: &mut [u8]) {
    for b in buf {
        *b = read_u8();
    }
}

fn read_be_u32() -> u32 {
    let mut b = [0; 4];
    read_bytes(&mut b);
    u32::from_be_bytes(b)
}

fn read_be_u16() -> u16 {
    let mut b = [0; 2];
    read_bytes(&mut b);
    u16::from_be_bytes(b)
}

/// Whether QEMU's fw_cfg device answers.
pub(crate) fn present() -> bool {
    select(SIGNATURE);
    let mut sig = [0; 4];
    read_bytes(&mut sig);
    &sig == b"QEMU"
}

/// Looks a file up in the directory: its selector and size.
fn find(name: &str) -> Result<(u16, u32), FwCfgError> {
    if !present() {
        return Err(FwCfgError::NoDevice);
    }
    select(FILE_DIR);
    let count = read_be_u32();
    let mut found = None;
    // The whole directory is read even after a match: the data port is a
    // stream, and stopping early is harmless but gains nothing measurable.
    for _ in 0..count {
        let size = read_be_u32();
        let item = read_be_u16();
        let _reserved = read_be_u16();
        let mut entry_name = [0u8; NAME_LEN];
        read_bytes(&mut entry_name);
        let len = entry_name.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
        if found.is_none() && &entry_name[..len] == name.as_bytes() {
            found = Some((item, size));
        }
    }
    found.ok_or(FwCfgError::NotFound)
}

/// Reads file `name` into `buf`, returning its length.
pub(crate) fn read_file(name: &str, buf: &mut [u8]) -> Result<usize, FwCfgError> {
    let (item, size) = find(name)?;
    let len = size as usize;
    if len > buf.len() {
        return Err(FwCfgError::TooLarge(size));
    }
    select(item);
    read_bytes(&mut buf[..len]);
    Ok(len)
}
