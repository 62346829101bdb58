//! The legacy timers: the 8254 PIT as a reference clock and the 8259 PICs,
//! which we only silence.
//!
//! The PIT ticks at a fixed 1,193,182 Hz whatever the host does, so it is
//! the yardstick for calibrating the TSC. We use channel 2, whose gate and
//! output are wired to port 0x61 (the PC speaker control), in mode 0
//! (interrupt on terminal count): load a count, open the gate, and poll the
//! output bit until it goes high. No interrupt is involved.
//!
//! The PICs come out of the BIOS delivering IRQ 0-7 on vectors 8-15, which
//! collide with CPU exceptions (IRQ 0 would look like a double fault). They
//! are remapped to 0x20-0x2f and fully masked: every interrupt we use comes
//! from the local APIC.

use x86_64::instructions::port::Port;

/// PIT input clock in Hz.
pub(crate) const PIT_HZ: u64 = 1_193_182;
/// Longest one-shot wait channel 2 can do (16-bit count), in PIT ticks.
const MAX_COUNT: u64 = 0xffff;

const PIT_CH2_DATA: u16 = 0x42;
const PIT_COMMAND: u16 = 0x43;
const SPEAKER_CONTROL: u16 = 0x61;

/// Busy-waits `ticks` PIT ticks (at most 65535, about 55 ms) on channel 2.
/// Calls `before` right after the count starts and returns what `after`
/// returns right after it ends, so a caller can bracket the interval with
/// TSC reads as tightly as possible.
pub(crate) fn wait_ticks<T>(ticks: u16, before: impl FnOnce(), after: impl FnOnce() -> T) -> T {
    let mut speaker = Port::<u8>::new(SPEAKER_CONTROL);
    let mut command = Port::<u8>::new(PIT_COMMAND);
    let mut data = Port::<u8>::new(PIT_CH2_DATA);
    // SAFETY: ports 0x42/0x43/0x61 are the PIT channel 2 and its gate on
    // every PC; only this function (run by one CPU at a time at boot and in
    // the clock self-test) programs channel 2, and the speaker stays off.
    unsafe {
        // Gate off, speaker off.
        let ctl = speaker.read() & !0x03;
        speaker.write(ctl);
        // Channel 2, lobyte/hibyte, mode 0, binary.
        command.write(0b1011_0000);
        data.write((ticks & 0xff) as u8);
        data.write((ticks >> 8) as u8);
        // Open the gate: counting starts.
        speaker.write(ctl | 0x01);
        before();
        while speaker.read() & 0x20 == 0 {
            core::hint::spin_loop();
        }
        let r = after();
        speaker.write(ctl);
        r
    }
}

/// Busy-waits `ms` milliseconds by the PIT, returning the TSC cycles that
/// elapsed meanwhile (measured from the start of the first chunk to the end
/// of the last).
pub(crate) fn measure_tsc_over_ms(ms: u64) -> u64 {
    let mut remaining = PIT_HZ * ms / 1000;
    let mut start = 0;
    let mut first = true;
    let mut end = 0;
    while remaining > 0 {
        let chunk = remaining.min(MAX_COUNT);
        remaining -= chunk;
        let begin_now = first;
        end = wait_ticks(
            chunk as u16,
            || {
                if begin_now {
                    start = super::cpu::rdtsc();
                }
            },
            super::cpu::rdtsc,
        );
        first = false;
    }
    end - start
}

/// Remaps both 8259 PICs away from the exception vectors and masks every
/// line.
pub(crate) fn disable_legacy_pic() {
    let mut master_cmd = Port::<u8>::new(0x20);
    let mut master_data = Port::<u8>::new(0x21);
    let mut slave_cmd = Port::<u8>::new(0xa0);
    let mut slave_data = Port::<u8>::new(0xa1);
    // SAFETY: the standard 8259 initialisation sequence on the PC's fixed
    // PIC ports; nothing else in the kernel uses the PICs.
    unsafe {
        master_cmd.write(0x11); // ICW1: init, expect ICW4
        slave_cmd.write(0x11);
        master_data.write(0x20); // ICW2: vector offsets 0x20 / 0x28
        slave_data.write(0x28);
        master_data.write(0x04); // ICW3: slave on IRQ 2
        slave_data.write(0x02);
        master_data.write(0x01); // ICW4: 8086 mode
        slave_data.write(0x01);
        master_data.write(0xff); // mask everything
        slave_data.write(0xff);
    }
}
