//! ACPI: the MADT, to learn which local APICs (CPUs) the machine has, and
//! the HPET table, for the profiler's clock.
//!
//! We use the `acpi` crate (pinned, with its `alloc` and `aml` features off:
//! only the static tables, no allocator, no AML interpreter) rather than a
//! hand-written parser: it finds the RSDT/XSDT from the RSDP, and iterates
//! MADT entries. We check the signature and checksum of the RSDP (the crate
//! only warns on a bad RSDP checksum, so we reject it) and of the MADT
//! ourselves. Physical memory is reached through the bootloader's mapping of
//! all of it, so "mapping" a region is an addition.

use core::ptr::NonNull;

use acpi::sdt::Signature;
use acpi::sdt::madt::{Madt, MadtEntry};
use acpi::{AcpiTables, Handler, PciAddress, PhysicalMapping};

use super::physmap::phys_to_virt;
use crate::MAX_CPUS;

/// What the MADT says about the CPUs.
#[derive(Clone, Debug)]
pub(crate) struct MadtInfo {
    /// Physical address of the local APIC registers (xAPIC MMIO).
    pub(crate) lapic_address: u64,
    /// APIC ids of usable CPUs (enabled, or online-capable), boot CPU
    /// included, in table order.
    pub(crate) apic_ids: ApicIds,
    /// Entries marked neither enabled nor online-capable.
    pub(crate) disabled: usize,
    /// Physical address of the HPET's registers, if ACPI lists one (its
    /// own table, read here since the tables are at hand).
    pub(crate) hpet_address: Option<u64>,
}

/// A fixed-capacity list of APIC ids (no allocation needed).
#[derive(Clone, Debug)]
pub(crate) struct ApicIds {
    ids: [u32; MAX_CPUS],
    len: usize,
    /// Usable entries beyond `MAX_CPUS`.
    pub(crate) dropped: usize,
}

impl Default for ApicIds {
    fn default() -> Self {
        ApicIds {
            ids: [0; MAX_CPUS],
            len: 0,
            dropped: 0,
        }
    }
}

impl ApicIds {
    fn push(&mut self, id: u32) {
        if self.len == MAX_CPUS {
            self.dropped += 1;
        } else {
            self.ids[self.len] = id;
            self.len += 1;
        }
    }

    pub(crate) fn as_slice(&self) -> &[u32] {
        &self.ids[..self.len]
    }
}

/// Maps physical memory for the `acpi` crate through the bootloader's
/// full physical mapping.
#[derive(Clone, Copy)]
struct PhysMap;

impl Handler for PhysMap {
    unsafe fn map_physical_region<T>(
        &self,
        physical_address: usize,
        size: usize,
    ) -> PhysicalMapping<Self, T> {
        let virt = phys_to_virt(physical_address as u64) as *mut T;
        PhysicalMapping {
            physical_start: physical_address,
            virtual_start: NonNull::new(virt).expect("physical mapping is never at 0"),
            region_length: size,
            mapped_length: size,
            handler: *self,
        }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}

    // The rest serves the AML interpreter, which we do not build; the static
    // tables never call these.
    fn read_u8(&self, a: usize) -> u8 {
        // SAFETY: only reached through the AML interpreter (disabled).
        unsafe { phys_to_virt(a as u64).read_volatile() }
    }
    fn read_u16(&self, a: usize) -> u16 {
        // SAFETY: as above.
        unsafe { (phys_to_virt(a as u64) as *const u16).read_volatile() }
    }
    fn read_u32(&self, a: usize) -> u32 {
        // SAFETY: as above.
        unsafe { (phys_to_virt(a as u64) as *const u32).read_volatile() }
    }
    fn read_u64(&self, a: usize) -> u64 {
        // SAFETY: as above.
        unsafe { (phys_to_virt(a as u64) as *const u64).read_volatile() }
    }
    fn write_u8(&self, _: usize, _: u8) {}
    fn write_u16(&self, _: usize, _: u16) {}
    fn write_u32(&self, _: usize, _: u32) {}
    fn write_u64(&self, _: usize, _: u64) {}
    fn read_io_u8(&self, _: u16) -> u8 {
        0xff
    }
    fn read_io_u16(&self, _: u16) -> u16 {
        0xffff
    }
    fn read_io_u32(&self, _: u16) -> u32 {
        0xffff_ffff
    }
    fn write_io_u8(&self, _: u16, _: u8) {}
    fn write_io_u16(&self, _: u16, _: u16) {}
    fn write_io_u32(&self, _: u16, _: u32) {}
    fn read_pci_u8(&self, _: PciAddress, _: u16) -> u8 {
        0xff
    }
    fn read_pci_u16(&self, _: PciAddress, _: u16) -> u16 {
        0xffff
    }
    fn read_pci_u32(&self, _: PciAddress, _: u16) -> u32 {
        0xffff_ffff
    }
    fn write_pci_u8(&self, _: PciAddress, _: u16, _: u8) {}
    fn write_pci_u16(&self, _: PciAddress, _: u16, _: u16) {}
    fn write_pci_u32(&self, _: PciAddress, _: u16, _: u32) {}
    fn nanos_since_boot(&self) -> u64 {
        super::time::now_ns()
    }
    fn stall(&self, us: u64) {
        super::time::delay_us(us);
    }
    fn sleep(&self, ms: u64) {
        super::time::delay_us(ms * 1000);
    }
}

/// Checks an ACPI structure's byte checksum (the bytes sum to 0 mod 256).
fn checksum_ok(phys: u64, len: usize) -> bool {
    // SAFETY: the caller read `len` from the structure's own header in
    // mapped physical memory.
    let bytes = unsafe { core::slice::from_raw_parts(phys_to_virt(phys), len) };
    bytes.iter().fold(0u8, |s, &b| s.wrapping_add(b)) == 0
}

/// Reads the MADT starting from the RSDP at physical `rsdp`.
pub(crate) fn read_madt(rsdp: u64) -> Result<MadtInfo, &'static str> {
    // The RSDP: "RSD PTR " and a checksum over its first 20 bytes (ACPI 1.0
    // part); revision 2+ adds an extended checksum over `length` bytes.
    // SAFETY: the bootloader reports the RSDP's address; it is mapped.
    let sig = unsafe { core::slice::from_raw_parts(phys_to_virt(rsdp), 8) };
    if sig != b"RSD PTR " {
        return Err("RSDP signature is not \"RSD PTR \"");
    }
    if !checksum_ok(rsdp, 20) {
        return Err("RSDP checksum is wrong");
    }
    // SAFETY: as above; byte 15 is the revision, bytes 20..24 the length.
    let revision = unsafe { phys_to_virt(rsdp + 15).read() };
    if revision >= 2 {
        // SAFETY: as above.
        let len = unsafe { (phys_to_virt(rsdp + 20) as *const u32).read_unaligned() };
        if !checksum_ok(rsdp, len as usize) {
            return Err("RSDP extended checksum is wrong");
        }
    }
    // SAFETY: the RSDP is valid (checked above) and physical memory is mapped.
    let tables = unsafe { AcpiTables::from_rsdp(PhysMap, rsdp as usize) }
        .map_err(|_| "cannot read the RSDT/XSDT")?;
    let madt = tables.find_table::<Madt>().ok_or("no MADT (APIC) table")?;
    // SAFETY: the mapping covers the whole table (the crate maps `length`).
    unsafe { madt.get().header.validate(Signature::MADT) }
        .map_err(|_| "MADT signature or checksum is wrong")?;

    let mut info = MadtInfo {
        lapic_address: madt.get().local_apic_address as u64,
        apic_ids: ApicIds::default(),
        disabled: 0,
        hpet_address: acpi::HpetInfo::new(&tables)
            .ok()
            .map(|h| h.base_address as u64),
    };
    // Flags bit 0: enabled; bit 1: online capable (may be brought up).
    let usable = |flags: u32| flags & 0b11 != 0;
    for entry in madt.get().entries() {
        match entry {
            MadtEntry::LocalApic(e) => {
                if usable(e.flags) {
                    info.apic_ids.push(e.apic_id as u32);
                } else {
                    info.disabled += 1;
                }
            }
            MadtEntry::LocalX2Apic(e) => {
                if usable(e.flags) {
                    info.apic_ids.push(e.x2apic_id);
                } else {
                    info.disabled += 1;
                }
            }
            MadtEntry::LocalApicAddressOverride(e) => {
                info.lapic_address = e.local_apic_address;
            }
            _ => {}
        }
    }
    Ok(info)
}
