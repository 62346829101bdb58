//! The boot CPU's path from the bootloader to the selected benchmark.
//!
//! Order matters: the per-CPU area first (the console lock needs the CPU
//! index), then the console and the descriptor tables (so every later fault
//! is reported), then the command line (it sizes the heap), memory, and
//! finally whatever `bench=` selected.

use core::cell::UnsafeCell;

use bootloader_api::BootInfo;
use bootloader_api::config::{BootloaderConfig, Mapping};
use bootloader_api::info::MemoryRegionKind;
use pidlab_abi::console::ERROR_PREFIX;
use pidlab_abi::fw_cfg::{CMDLINE_FILE, CMDLINE_MAX, SCRIPT_FILE, SCRIPT_MAX};

use crate::arch::qemu::{self, ExitCode};
use crate::arch::{
    acpi, apic, cpu, fw_cfg, gdt, idt, irq, percpu, pit, serial, smp, time, watchdog,
};
use crate::bench::locks::{LocksBenchParams, run_locks_bench};
use crate::cmdline::{self, Bench, Cmdline, HeapSize};
use crate::mm::frame::{FrameAllocator, PhysRange};
use crate::mm::{self, heap::HEAP};
use crate::selftest;
use crate::sync::choice::{self, LockAlgo, Machine};
use crate::sync::{debug, lockstat, pvticket};
use crate::task::sched::Cpus;

/// How the bootloader must set the machine up for us.
pub static BOOTLOADER_CONFIG: BootloaderConfig = {
    let mut config = BootloaderConfig::new_default();
    config.mappings.physical_memory = Some(Mapping::Dynamic);
    config.kernel_stack_size = mm::stack::BOOT_STACK_SIZE;
    config
};

struct CmdlineBuf(UnsafeCell<[u8; CMDLINE_MAX]>);

// SAFETY: written once by the boot CPU before any other CPU runs; read-only
// afterwards.
unsafe impl Sync for CmdlineBuf {}

static CMDLINE_BUF: CmdlineBuf = CmdlineBuf(UnsafeCell::new([0; CMDLINE_MAX]));

/// The console as a `core::fmt::Write` (for report code that writes to
/// any sink).
struct ConsoleOut;

impl core::fmt::Write for ConsoleOut {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        print!("{s}");
        Ok(())
    }
}

/// Prints a failure message and exits QEMU with failure (for errors the
/// user caused, which deserve a message rather than a panic's backtrace
/// location).
pub(crate) fn fail(args: core::fmt::Arguments<'_>) -> ! {
    println!("{ERROR_PREFIX} {args}");
    qemu::exit(ExitCode::Failure)
}

/// The kernel's entry, called by the bootloader on the boot CPU.
pub fn kernel_main(boot_info: &'static mut BootInfo) -> ! {
    let rsp: u64;
    // SAFETY: reads the stack pointer.
    unsafe {
        core::arch::asm!("mov {}, rsp", out(reg) rsp, options(nomem, nostack, preserves_flags))
    };
    mm::stack::set_boot_stack(rsp);
    // SAFETY: first code on the boot CPU, which takes per-CPU slot 0.
    unsafe { percpu::init_this_cpu(0, 0) };
    serial::init();
    // SAFETY: once, on the boot CPU, with its own index.
    unsafe { gdt::init_this_cpu(0) };
    idt::init();
    crate::arch::hooks::register(crate::arch::hooks::ArchHooks {
        task_name: crate::task::sched::current_name,
        waiting_for: debug::waiting_for,
        panic_report: mm::heap::panic_report,
        stack_guard: mm::stack::guard_hit,
        console_wait: debug::console_wait,
        profile_nmi: crate::perf::sample,
        idle_exit: crate::task::nohz::idle_exit,
    });
    crate::arch::irq::set_tick_work(crate::rcu::rcu_sched_clock_irq);
    crate::platform::set_cond_resched(crate::task::sched::cond_resched);

    println!(
        "pidlab {}: Linux pid allocation and task release paths on SMP x86_64",
        crate::VERSION
    );
    println!(
        "build: debug-assertions {}",
        if cfg!(debug_assertions) { "on" } else { "off" }
    );

    let cmd = read_cmdline();
    crate::console::init_log(cmd.loglevel);
    debug::set_wait_bound_ms(cmd.lock_wait_ms);

    let frames = init_memory(boot_info, &cmd);
    // Built here, before any other CPU runs, so its lazy initialisation
    // never has a CPU spinning on another.
    let _ = crate::pid::namespace::init_pid_ns();
    mm::install_frames(frames);
    if let Err(e) = mm::stack::init() {
        fail(format_args!("stacks: {e}"));
    }
    set_soft_tlb_target(&cmd);
    init_smp(boot_info, &cmd);
    wait_for_ap_idle_tasks();
    println!(
        "stacks: guarded region at {:#x}: {} KiB per task, {} KiB per AP, at least {} KiB \
         unmapped below each; {} KiB mapped",
        mm::stack::base(),
        crate::task::STACK_SIZE / 1024,
        smp::AP_STACK_SIZE / 1024,
        (mm::stack::SLOT - mm::stack::MAX_STACK) / 1024,
        mm::stack::mapped_bytes() / 1024
    );
    let _init = match crate::task::sched::init_boot_cpu("init") {
        Ok(t) => t,
        Err(_) => fail(format_args!("no memory for the boot task")),
    };
    if let Err(e) = crate::task::fork::init_task_pids(&_init) {
        fail(format_args!("init: no pid 1: {e:?}"));
    }

    if let Err(e) = selftest::validate(cmd.tests) {
        fail(format_args!("test={}: {e}", cmd.tests));
    }
    watchdog::start(cmd.softlockup_ms, cmd.hardlockup_ms);
    let off_or = |ms: u64| {
        if ms == 0 {
            alloc::string::String::from("off")
        } else {
            alloc::format!("{ms} ms")
        }
    };
    println!(
        "watchdog: lock and spin waits {}, soft lockup {} without a scheduling point, hard \
         lockup {} without a timer tick, rcu stall {}",
        off_or(debug::wait_bound_ms()),
        off_or(cmd.softlockup_ms.into()),
        off_or(cmd.hardlockup_ms.into()),
        off_or(crate::rcu::stall_ms())
    );
    crate::task::nohz::set_enabled(cmd.nohz);
    match (cmd.nohz, watchdog::idle_check_us()) {
        (false, _) => println!("nohz: off: idle CPUs take every timer tick (nohz=)"),
        (true, None) => println!("nohz: on: idle CPUs stop their tick (nohz=)"),
        (true, Some(us)) => println!(
            "nohz: on: idle CPUs stop their tick, waking every {} ms to check their \
             hard-lockup buddy (nohz=)",
            us / 1000
        ),
    }
    if cmd.profile.on {
        match crate::perf::start(cmd.profile.hz) {
            Ok(timer) => println!(
                "profile: on, {} Hz per CPU, NMI from HPET timer {timer} (broadcast), kernel_main at {:#x}",
                cmd.profile.hz, kernel_main as *const () as usize
            ),
            Err(e) => fail(format_args!("profile=on: {e}")),
        }
    }
    report_soft_tlb(&cmd);
    selftest::run(cmd.tests);
    root_namespace_like_a_booted_system(&cmd);

    match cmd.bench {
        Bench::None => println!("bench none: boot complete"),
        Bench::Threadspawn => {
            if let Err(e) =
                crate::bench::threadspawn::run(&cmd.threadspawn, cmd.accel, cmd.host_cpus)
            {
                fail(format_args!("threadspawn: {e}"));
            }
        }
        Bench::Locks => bench_locks(&cmd),
        Bench::Pidalloc => {
            let live: Option<alloc::vec::Vec<usize>> = cmd
                .pidalloc_live
                .as_ref()
                .map(|l| l.iter().map(|&n| n as usize).collect());
            let cfg = crate::bench::pidalloc::PidallocConfig {
                live: live
                    .as_deref()
                    .unwrap_or(&crate::bench::pidalloc::PIDALLOC_DEFAULT_LIVE),
                level: cmd.threadspawn.ns_depth,
                strategies: &cmd.threadspawn.strategies,
                ..Default::default()
            };
            if let Err(e) = crate::bench::pidalloc::pidalloc(&cfg, &mut ConsoleOut) {
                fail(format_args!(
                    "pidalloc: {e:?} (give QEMU more memory with --mem)"
                ));
            }
        }
        Bench::Script => {
            let mut buf = alloc::vec![0u8; SCRIPT_MAX];
            let len = match fw_cfg::read_file(SCRIPT_FILE, &mut buf) {
                Ok(len) => len,
                Err(fw_cfg::FwCfgError::TooLarge(size)) => fail(format_args!(
                    "pidctl script: {size} bytes, more than the {SCRIPT_MAX} the kernel accepts"
                )),
                Err(_) => fail(format_args!(
                    "bench=script: no script; run with --script FILE"
                )),
            };
            let Ok(text) = core::str::from_utf8(&buf[..len]) else {
                fail(format_args!("pidctl script: not UTF-8"));
            };
            if !crate::pidctl::exec::run_script(text, cmd.pidctl_version) {
                fail(format_args!("pidctl: the invariant check failed"));
            }
        }
        Bench::Soak => {
            if let Err(e) = crate::bench::soak::run(&cmd.soak, cmd.accel) {
                fail(format_args!("soak: {e}"));
            }
        }
        Bench::Shell => {
            if !crate::pidctl::exec::run_shell(cmd.pidctl_version) {
                fail(format_args!("pidctl: the invariant check failed"));
            }
        }
    }
    if cmd.profile.on {
        crate::perf::stop();
        crate::perf::print_report(&mut ConsoleOut);
    }
    qemu::exit(ExitCode::Success)
}

/// How long the boot CPU waits for an AP that came up to reach its idle
/// loop (it grows its software TLB first).
const AP_IDLE_WAIT_MS: u64 = 30_000;

/// Waits until every AP has made its idle task. Each is a live task from
/// then on, so nothing that counts tasks (an invariant check's baseline)
/// may start before: an AP whose vCPU the host ran late used to add its
/// idle task after the baseline ("3 tasks alive, expected 2").
fn wait_for_ap_idle_tasks() {
    let deadline = time::now_ns() + AP_IDLE_WAIT_MS * 1_000_000;
    for cpu in 1..smp::online() {
        while !crate::task::sched::has_idle_task(cpu) {
            if time::now_ns() > deadline {
                fail(format_args!(
                    "cpu {cpu} came up but did not reach its idle loop within {AP_IDLE_WAIT_MS} ms"
                ));
            }
            core::hint::spin_loop();
        }
    }
}

/// Sets the entries every CPU grows its QEMU software TLB to as it comes
/// up (see `arch::softtlb`); a size the RAM cannot hold fails the boot.
fn set_soft_tlb_target(cmd: &Cmdline<'_>) {
    let n = u64::from(cmd.softtlb());
    let max = crate::arch::softtlb::max_entries();
    if n > max {
        fail(format_args!(
            "softtlb={n}: growing to {n} entries reads {n} pages of one memory region; the \
             largest has room for {max} (a power of two): give QEMU more memory (--mem) or ask \
             for fewer"
        ));
    }
    crate::arch::softtlb::set_target(n);
}

/// Grows the boot CPU's software TLB and says what every CPU's is (the APs
/// grew theirs as they came up).
fn report_soft_tlb(cmd: &Cmdline<'_>) {
    let line = match cmd.softtlb() {
        0 if cmd.accel == Some(cmdline::Accel::Kvm) => Ok(alloc::string::String::from(
            "softtlb: off (KVM: the host's TLB, no software one)",
        )),
        0 => crate::bench::softtlb::probe_every_cpu(cmdline::SOFTTLB_DEFAULT.into()).map(|sizes| {
            alloc::format!(
                "softtlb: off: every CPU keeps the software TLB QEMU left at boot: {sizes} \
                 entries (softtlb=)"
            )
        }),
        _ => Ok(crate::bench::softtlb::grow_boot_cpu()),
    };
    match line {
        Ok(line) => println!("{line}"),
        Err(e) => fail(format_args!("softtlb: {e}")),
    }
}

/// The root namespace as a booted Linux has it for the bench: `pid_max`
/// (systemd sets 4194304) and a few hundred live tasks (`root_pids=`). The
/// parked tasks never exit.
fn root_namespace_like_a_booted_system(cmd: &Cmdline<'_>) {
    let (n, pid_max) = (cmd.root_pids(), cmd.pid_max());
    if let Err(e) = crate::pid::namespace::init_pid_ns().set_pid_max(pid_max as i32) {
        fail(format_args!("pid_max={pid_max}: {e:?}"));
    }
    match crate::task::fork::park_in_root(n) {
        Ok(parked) => core::mem::forget(parked),
        Err(e) => fail(format_args!("root_pids={n}: {e:?} parking them")),
    }
    println!(
        "root pid namespace: pid_max {pid_max}, {n} parked tasks besides init (pid_max=, root_pids=)"
    );
}

/// Milliseconds each contended point of `bench=locks` runs.
const LOCKS_BENCH_MS: u64 = 500;

/// `bench=locks`: the lock microbenchmark on this machine's CPUs.
fn bench_locks(cmd: &Cmdline<'_>) {
    let params = LocksBenchParams {
        millis: LOCKS_BENCH_MS,
        ..LocksBenchParams::default()
    };
    println!(
        "bench locks: accel {}, {} cpus online, timer {} Hz, lock wait bound {} ms",
        crate::bench::accel_name(cmd.accel),
        smp::online(),
        cmd.timer_hz,
        debug::wait_bound_ms()
    );
    let t0 = time::now_ns();
    run_locks_bench(&Cpus, &params);
    // What the `ticket+lockstat` points recorded, wait-max included: how
    // close an oversubscribed hand-off came to the wait bound.
    lockstat::print_table();
    println!(
        "bench locks: done in {} ms",
        (time::now_ns() - t0) / 1_000_000
    );
}

/// Sets the spinlock algorithm (`lock=`) before any CPU takes a spinlock,
/// and says which and why.
fn choose_lock(cmd: &Cmdline<'_>, madt: &acpi::MadtInfo) {
    let machine = Machine {
        vcpus: (madt.apic_ids.as_slice().len() + madt.apic_ids.dropped).min(percpu::MAX_CPUS),
        host_cpus: cmd.host_cpus,
        hypervisor: cpu::hypervisor_present(),
    };
    let (algo, line) = choice::decide(cmd.lock, machine);
    choice::set_lock_algo(algo);
    if algo == LockAlgo::PvTicket {
        irq::set_lock_tick(Some(pvticket::timer_tick));
    }
    println!(
        "locks: {line}; a wait longer than {} ms panics naming the lock (lockwait_ms=)",
        cmd.lock_wait_ms
    );
}

/// Calibrates the clock, brings up the local APICs and starts the APs.
fn init_smp(boot_info: &BootInfo, cmd: &Cmdline<'_>) {
    pit::disable_legacy_pic();
    let tsc_hz = time::calibrate_tsc();
    let Some(rsdp) = boot_info.rsdp_addr.into_option() else {
        fail(format_args!("the bootloader found no ACPI RSDP"));
    };
    let madt = match acpi::read_madt(rsdp) {
        Ok(madt) => madt,
        Err(e) => fail(format_args!("ACPI: {e}")),
    };
    if let Some(hpet) = madt.hpet_address {
        crate::arch::hpet::init(hpet);
    }
    choose_lock(cmd, &madt);
    smp::init_boot_cpu(&madt, cmd.timer_hz);
    percpu::this_cpu().set_apic_id(apic::id());
    x86_64::instructions::interrupts::enable();
    let late_first_ap = cmd.tests.split(',').any(|t| t == "ap-late");
    let mem = smp::ApMemory {
        low_page: || mm::with_frames(|f| f.alloc_low_frame()),
        stack: mm::stack::alloc_stack,
    };
    let report = match smp::start_aps(&madt, crate::task::sched::run_ap_idle, &mem, late_first_ap) {
        Ok(r) => r,
        Err(e) => fail(format_args!("SMP: {e}")),
    };
    print!(
        "cpus online: {}/{} (apic ids",
        smp::online(),
        report.in_madt
    );
    for i in 0..smp::online() {
        print!(" {}", smp::apic_id_of(i));
    }
    println!(
        "), tsc {}.{:03} MHz, lapic {} v{:#x}, timer {} Hz, APs up in {} ms",
        tsc_hz / 1_000_000,
        tsc_hz / 1_000 % 1_000,
        apic::mode_name(),
        apic::version(),
        cmd.timer_hz,
        report.elapsed_ms
    );
    if !report.failed.is_empty() {
        println!("cpus failed to start: apic ids {:?}", report.failed);
    }
    if report.over_limit > 0 {
        println!(
            "cpus not started: {} beyond the kernel's limit of {}",
            report.over_limit,
            percpu::MAX_CPUS
        );
    }
}

fn read_cmdline() -> Cmdline<'static> {
    // SAFETY: only the boot CPU runs this, once, before anything else reads
    // the buffer; afterwards it is only read (through the returned borrow).
    let buf: &'static mut [u8; CMDLINE_MAX] = unsafe { &mut *CMDLINE_BUF.0.get() };
    let len = match fw_cfg::read_file(CMDLINE_FILE, buf) {
        Ok(len) => len,
        Err(fw_cfg::FwCfgError::NotFound) => 0,
        Err(fw_cfg::FwCfgError::NoDevice) => {
            println!("cmdline: no fw_cfg device; using defaults");
            0
        }
        Err(fw_cfg::FwCfgError::TooLarge(size)) => fail(format_args!(
            "cmdline: {size} bytes, more than the {CMDLINE_MAX} the kernel accepts"
        )),
    };
    let raw = match core::str::from_utf8(&buf[..len]) {
        Ok(text) => text.trim_matches(|c: char| c.is_whitespace() || c == '\0'),
        Err(e) => fail(format_args!("cmdline: not UTF-8: {e}")),
    };
    println!("cmdline: {}", if raw.is_empty() { "(empty)" } else { raw });
    match cmdline::parse(raw) {
        Ok(cmd) => cmd,
        Err(e) => fail(format_args!("cmdline: {e}")),
    }
}

const MIB: u64 = 1 << 20;

fn init_memory(boot_info: &BootInfo, cmd: &Cmdline<'_>) -> FrameAllocator {
    let Some(offset) = boot_info.physical_memory_offset.into_option() else {
        fail(format_args!("bootloader did not map physical memory"));
    };
    mm::set_phys_offset(offset);
    let usable = boot_info
        .memory_regions
        .iter()
        .filter(|r| r.kind == MemoryRegionKind::Usable)
        .map(|r| PhysRange {
            start: r.start,
            end: r.end,
        });
    let mut frames = FrameAllocator::new(usable);
    let Some(largest) = frames.largest_high_range() else {
        fail(format_args!("no usable memory above 1 MiB"));
    };
    // Read (never written) to size QEMU's software TLB.
    crate::arch::softtlb::set_window(largest.start, largest.len());
    println!(
        "memory: {} MiB usable in {} regions (largest {} MiB at {:#x}), {} regions in the map, \
         physical memory mapped at {offset:#x}",
        frames.total_bytes() / MIB,
        frames.free_ranges().len(),
        largest.len() / MIB,
        largest.start,
        boot_info.memory_regions.len(),
    );
    if frames.dropped_bytes() > 0 {
        log::warn!(
            "memory: {} KiB ignored (region table full)",
            frames.dropped_bytes() / 1024
        );
    }

    let heap_bytes = match cmd.heap {
        HeapSize::Auto => (largest.len() / 4 * 3) & !(MIB - 1),
        // The parser accepts any size up to u64::MAX; one that cannot be
        // rounded up to a page cannot fit either, and must say so rather
        // than wrap to 0.
        HeapSize::Bytes(b) => b.checked_next_multiple_of(4096).unwrap_or(!4095),
    };
    let Some(heap_phys) = frames.alloc_contiguous(heap_bytes, 2 * MIB) else {
        fail(format_args!(
            "heap={} MiB does not fit: the largest usable region is {} MiB; \
             give QEMU more memory (--mem) or ask for a smaller heap",
            heap_bytes / MIB,
            largest.len() / MIB
        ));
    };
    // SAFETY: the frames were just taken from the allocator, so nothing else
    // uses them, and the bootloader maps all physical memory writable at
    // `offset`.
    unsafe { HEAP.init(mm::phys_to_virt(heap_phys), heap_bytes as usize) };
    println!(
        "heap: {} MiB at physical {heap_phys:#x} ({}, linked_list_allocator)",
        heap_bytes / MIB,
        if cmd.heap == HeapSize::Auto {
            "heap=auto: 3/4 of the largest region"
        } else {
            "from heap="
        }
    );
    frames
}
