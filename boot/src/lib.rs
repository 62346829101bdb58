//! The pidlab runner: boots the kernel's BIOS disk image under QEMU and judges
//! the run.
//!
//! `build.rs` makes the disk image from the kernel binary (an artifact
//! dependency built for `x86_64-unknown-none`). [`run`] starts
//! `qemu-system-x86_64` with the serial port on a pipe, passes the run-time
//! parameters through fw_cfg (`opt/pidlab/cmdline`), and waits for the kernel
//! to leave through the isa-debug-exit device, killing QEMU if it takes
//! longer than the timeout. The same function backs `cargo run` and the
//! in-QEMU tests, so what the tests check is what users run.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The BIOS disk image `build.rs` made.
pub const BIOS_IMAGE: &str = env!("PIDLAB_BIOS_IMAGE");

/// Status QEMU exits with when the kernel writes `0x10` (success) to
/// isa-debug-exit: `(0x10 << 1) | 1`.
pub const QEMU_EXIT_SUCCESS: i32 = 33;
/// ... and `0x11` (failure).
pub const QEMU_EXIT_FAILURE: i32 = 35;

/// Exit status of the runner binary when the kernel reported success.
pub const EXIT_SUCCESS: i32 = 0;
/// ... when the kernel failed (panic, fault, error, or an unexpected QEMU
/// status).
pub const EXIT_KERNEL_FAILURE: i32 = 1;
/// ... for a bad command line.
pub const EXIT_USAGE: i32 = 2;
/// ... when the run exceeded its timeout (as coreutils' `timeout`).
pub const EXIT_TIMEOUT: i32 = 124;
/// ... when QEMU is not installed (as a shell's "command not found").
pub const EXIT_NO_QEMU: i32 = 127;
/// ... when QEMU could not be started or watched for another reason.
pub const EXIT_RUNNER_ERROR: i32 = 3;

/// The Debian package that provides `qemu-system-x86_64`.
pub const QEMU_PACKAGE: &str = "qemu-system-x86";

/// QEMU accelerator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    /// Software emulation, one host thread per vCPU (MTTCG): the default
    /// (KVM here is nested and far slower). With more vCPUs than host
    /// cores, a vCPU can be descheduled by the host at any instruction.
    Tcg,
    /// Software emulation, all vCPUs round-robin on one host thread; a vCPU
    /// executing `pause` yields to the next, so spinning waiters never hold
    /// up a lock hand-off. No host parallelism.
    TcgSingle,
    /// Hardware virtualisation, opt-in.
    Kvm,
}

impl Accel {
    /// The name the kernel is told (`accel=...`).
    pub fn name(self) -> &'static str {
        match self {
            Accel::Tcg => "tcg",
            Accel::TcgSingle => "tcg-single",
            Accel::Kvm => "kvm",
        }
    }
}

/// Everything one run needs.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Number of virtual CPUs (`-smp`).
    pub smp: u32,
    /// Guest memory (`-m`), e.g. `1G`.
    pub mem: String,
    pub accel: Accel,
    /// Kill QEMU after this long.
    pub timeout: Duration,
    /// `KEY=VALUE` words for the kernel.
    pub params: Vec<String>,
    /// Copy the serial output to our stdout as it arrives.
    pub echo: bool,
    /// The QEMU binary (`PIDLAB_QEMU` overrides the default).
    pub qemu: String,
    /// The disk image to boot.
    pub image: PathBuf,
    /// A pidctl script handed to the kernel (fw_cfg `opt/pidlab/script`).
    pub script: Option<PathBuf>,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            smp: 8,
            mem: "1G".into(),
            accel: Accel::Tcg,
            timeout: Duration::from_secs(600),
            params: Vec::new(),
            echo: false,
            qemu: std::env::var("PIDLAB_QEMU").unwrap_or_else(|_| "qemu-system-x86_64".into()),
            image: PathBuf::from(BIOS_IMAGE),
            script: None,
        }
    }
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// The kernel reported success.
    Success,
    /// The kernel reported failure (panic, fault, bad parameter).
    KernelFailure,
    /// QEMU exited with a status the kernel never writes (0 after a triple
    /// fault with `-no-reboot`, a QEMU error, ...).
    UnexpectedExit(Option<i32>),
    /// Killed after the timeout.
    Timeout(Duration),
}

/// The result of one run.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub status: Status,
    /// Everything the kernel wrote to the serial port.
    pub serial: String,
    /// What QEMU itself wrote to stderr.
    pub qemu_stderr: String,
    pub elapsed: Duration,
}

impl Outcome {
    /// The runner binary's exit status for this outcome.
    pub fn exit_code(&self) -> i32 {
        match self.status {
            Status::Success => EXIT_SUCCESS,
            Status::KernelFailure | Status::UnexpectedExit(_) => EXIT_KERNEL_FAILURE,
            Status::Timeout(_) => EXIT_TIMEOUT,
        }
    }

    /// The kernel's own account of a failure: its panic or error lines.
    pub fn failure_message(&self) -> Option<String> {
        let lines: Vec<&str> = self
            .serial
            .lines()
            .filter(|l| l.starts_with("!!!") || l.starts_with("error:"))
            .collect();
        (!lines.is_empty()).then(|| lines.join("\n"))
    }

    /// The last `n` lines of serial output.
    pub fn serial_tail(&self, n: usize) -> String {
        let lines: Vec<&str> = self.serial.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// One line saying how the run ended, for humans.
    pub fn summary(&self) -> String {
        match &self.status {
            Status::Success => format!("kernel reported success after {:.1?}", self.elapsed),
            Status::KernelFailure => format!(
                "kernel reported failure after {:.1?}{}",
                self.elapsed,
                self.failure_message()
                    .map(|m| format!(":\n{m}"))
                    .unwrap_or_default()
            ),
            Status::UnexpectedExit(code) => format!(
                "QEMU exited with status {} after {:.1?} without the kernel reporting \
                 (triple fault, reset, or a QEMU error){}",
                code.map_or("(signal)".to_string(), |c| c.to_string()),
                self.elapsed,
                if self.qemu_stderr.trim().is_empty() {
                    String::new()
                } else {
                    format!("; QEMU said: {}", self.qemu_stderr.trim())
                }
            ),
            Status::Timeout(t) => format!(
                "timeout: the kernel did not finish within {} s; QEMU was killed",
                t.as_secs_f64()
            ),
        }
    }
}

/// Why QEMU could not be run at all.
#[derive(Debug)]
pub enum RunError {
    /// The QEMU binary is not installed.
    QemuMissing(String),
    /// The disk image is missing.
    NoImage(PathBuf),
    Io(String, io::Error),
}

impl RunError {
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::QemuMissing(_) => EXIT_NO_QEMU,
            _ => EXIT_RUNNER_ERROR,
        }
    }
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::QemuMissing(bin) => write!(
                f,
                "`{bin}` not found: install QEMU (Debian/Ubuntu: `apt-get install {QEMU_PACKAGE}`, \
                 or run `make setup`), or point PIDLAB_QEMU at it"
            ),
            RunError::NoImage(p) => write!(f, "disk image {} is missing; rebuild", p.display()),
            RunError::Io(what, e) => write!(f, "{what}: {e}"),
        }
    }
}

impl std::error::Error for RunError {}

/// The QEMU command line for `config`, with the cmdline file at `cmdline`.
pub fn qemu_command(config: &RunConfig, cmdline: &Path) -> Command {
    let mut cmd = Command::new(&config.qemu);
    cmd.arg("-drive")
        .arg(format!(
            "format=raw,snapshot=on,file={}",
            escape_qemu_opt(&config.image.to_string_lossy())
        ))
        .args(["-smp", &config.smp.to_string()])
        .args(["-m", &config.mem])
        .args(["-serial", "stdio", "-display", "none", "-no-reboot"])
        .args(["-monitor", "none"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .arg("-fw_cfg")
        .arg(format!(
            "name=opt/pidlab/cmdline,file={}",
            escape_qemu_opt(&cmdline.to_string_lossy())
        ));
    if let Some(script) = &config.script {
        cmd.arg("-fw_cfg").arg(format!(
            "name=opt/pidlab/script,file={}",
            escape_qemu_opt(&script.to_string_lossy())
        ));
    }
    match config.accel {
        Accel::Tcg => cmd.args(["-accel", "tcg,thread=multi"]),
        Accel::TcgSingle => cmd.args(["-accel", "tcg,thread=single"]),
        Accel::Kvm => cmd.args(["-accel", "kvm", "-cpu", "host,-arch-capabilities"]),
    };
    cmd
}

/// QEMU option values escape a comma by doubling it.
fn escape_qemu_opt(value: &str) -> String {
    value.replace(',', ",,")
}

/// The text handed to the kernel: the runner's own facts first (the
/// accelerator, and the host's core count for `lock=auto` unless the user
/// gave `host_cpus=`), then the user's parameters (`--script` implies
/// `bench=script`).
pub fn kernel_cmdline(config: &RunConfig) -> String {
    let mut words = vec![format!("accel={}", config.accel.name())];
    if !config.params.iter().any(|p| p.starts_with("host_cpus=")) {
        words.push(format!("host_cpus={}", host_cpus()));
    }
    if config.script.is_some() && !config.params.iter().any(|p| p.starts_with("bench=")) {
        words.push("bench=script".into());
    }
    words.extend(config.params.iter().cloned());
    words.join(" ")
}

/// The cores this process may run on: what the guest's vCPU threads share.
pub fn host_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Whether the kernel reads the serial console (`bench=shell`): then our
/// stdin goes to QEMU's.
pub fn is_interactive(config: &RunConfig) -> bool {
    config.params.iter().any(|p| p == "bench=shell")
}

static RUN_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Boots the kernel once and waits for it, at most `config.timeout`.
pub fn run(config: &RunConfig) -> Result<Outcome, RunError> {
    if !config.image.exists() {
        return Err(RunError::NoImage(config.image.clone()));
    }
    let cmdline_path = std::env::temp_dir().join(format!(
        "pidlab-cmdline-{}-{}.txt",
        std::process::id(),
        RUN_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&cmdline_path, kernel_cmdline(config))
        .map_err(|e| RunError::Io(format!("writing {}", cmdline_path.display()), e))?;
    let result = run_with_cmdline(config, &cmdline_path);
    let _ = std::fs::remove_file(&cmdline_path);
    result
}

fn run_with_cmdline(config: &RunConfig, cmdline: &Path) -> Result<Outcome, RunError> {
    let mut cmd = qemu_command(config, cmdline);
    cmd.stdin(if is_interactive(config) {
        Stdio::inherit()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            RunError::QemuMissing(config.qemu.clone())
        } else {
            RunError::Io(format!("starting {}", config.qemu), e)
        }
    })?;
    let serial = Arc::new(Mutex::new(Vec::new()));
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let readers = [
        pump(child.stdout.take(), serial.clone(), config.echo, false),
        pump(child.stderr.take(), stderr.clone(), config.echo, true),
    ];
    let status = wait_with_timeout(&mut child, config.timeout)
        .map_err(|e| RunError::Io("waiting for QEMU".into(), e))?;
    for r in readers {
        let _ = r.join();
    }
    let status = match status {
        None => Status::Timeout(config.timeout),
        Some(s) => classify(s),
    };
    let text = |b: &Arc<Mutex<Vec<u8>>>| String::from_utf8_lossy(&b.lock().unwrap()).into_owned();
    Ok(Outcome {
        status,
        serial: text(&serial),
        qemu_stderr: text(&stderr),
        elapsed: start.elapsed(),
    })
}

fn classify(status: ExitStatus) -> Status {
    match status.code() {
        Some(QEMU_EXIT_SUCCESS) => Status::Success,
        Some(QEMU_EXIT_FAILURE) => Status::KernelFailure,
        other => Status::UnexpectedExit(other),
    }
}

/// Waits for `child`; kills it after `timeout`. `None` means it was killed.
fn wait_with_timeout(child: &mut Child, timeout: Duration) -> io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Copies a child's output into `sink` (and to our stdout/stderr when
/// echoing) until it closes.
fn pump(
    source: Option<impl Read + Send + 'static>,
    sink: Arc<Mutex<Vec<u8>>>,
    echo: bool,
    to_stderr: bool,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let Some(mut source) = source else { return };
        let mut buf = [0u8; 4096];
        loop {
            match source.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    sink.lock().unwrap().extend_from_slice(&buf[..n]);
                    if echo {
                        let _ = if to_stderr {
                            io::stderr().write_all(&buf[..n])
                        } else {
                            let mut out = io::stdout().lock();
                            out.write_all(&buf[..n]).and_then(|_| out.flush())
                        };
                    }
                }
            }
        }
    })
}

/// What the runner binary was asked to do.
#[derive(Debug)]
pub enum Cli {
    Run(RunConfig),
    Help,
}

/// Usage text for `cargo run -- --help`.
pub const USAGE: &str = "\
usage: cargo run -- [--smp N] [--mem SIZE] [--accel tcg|tcg-single|kvm] [--timeout SECONDS]
                    [--script FILE] [KEY=VALUE ...]

Boots the pidlab kernel under QEMU with the serial console on stdout.

  --smp N            virtual CPUs (1..=64, default 8)
  --mem SIZE         guest memory, e.g. 512M or 2G (default 1G)
  --accel A          QEMU accelerator: tcg (default; one host thread per vCPU),
                     tcg-single (all vCPUs on one host thread, round-robin),
                     kvm (opt-in; nested and slow on our machines)
  --timeout SECONDS  kill QEMU after this long (default 600)
  --script FILE      run the pidctl commands in FILE (implies bench=script)
  KEY=VALUE          run-time parameters for the kernel, e.g. bench=none
                     (the kernel lists the keys it accepts if given a bad one)

Exit status: 0 kernel success, 1 kernel failure, 2 bad usage, 3 runner error,
124 timeout, 127 QEMU not installed.";

/// Parses the runner's arguments (without the program name).
pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Cli, String> {
    let mut config = RunConfig {
        echo: true,
        ..RunConfig::default()
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| format!("{name} needs a value (see --help)"))
        };
        match arg.as_str() {
            "-h" | "--help" => return Ok(Cli::Help),
            "--smp" => {
                let v = value("--smp")?;
                config.smp = match v.parse::<u32>() {
                    Ok(n) if (1..=64).contains(&n) => n,
                    _ => return Err(format!("--smp {v}: expected a CPU count from 1 to 64")),
                };
            }
            "--mem" => {
                let v = value("--mem")?;
                if !is_mem_size(&v) {
                    return Err(format!(
                        "--mem {v}: expected a size such as 512M or 2G (at least 128M)"
                    ));
                }
                config.mem = v;
            }
            "--accel" => {
                let v = value("--accel")?;
                config.accel = match v.as_str() {
                    "tcg" => Accel::Tcg,
                    "tcg-single" => Accel::TcgSingle,
                    "kvm" => Accel::Kvm,
                    _ => return Err(format!("--accel {v}: expected tcg, tcg-single or kvm")),
                };
            }
            "--timeout" => {
                let v = value("--timeout")?;
                config.timeout = match v.parse::<f64>() {
                    Ok(s) if s > 0.0 && s.is_finite() => Duration::from_secs_f64(s),
                    _ => {
                        return Err(format!(
                            "--timeout {v}: expected a positive number of seconds"
                        ));
                    }
                };
            }
            "--script" => {
                let v = value("--script")?;
                let path = PathBuf::from(&v);
                if let Err(e) = std::fs::File::open(&path) {
                    return Err(format!("--script {v}: cannot read it: {e}"));
                }
                config.script = Some(path);
            }
            _ if arg.starts_with('-') => {
                return Err(format!("unknown option {arg} (see --help)"));
            }
            _ => {
                let Some((key, _)) = arg.split_once('=') else {
                    return Err(format!("`{arg}` is not an option or a KEY=VALUE parameter"));
                };
                if key.is_empty() || arg.chars().any(char::is_whitespace) {
                    return Err(format!("`{arg}`: a parameter is KEY=VALUE without spaces"));
                }
                if key == "accel" {
                    return Err("use --accel to choose the accelerator".into());
                }
                config.params.push(arg);
            }
        }
    }
    if config.script.is_some()
        && let Some(b) = config
            .params
            .iter()
            .find(|p| p.starts_with("bench=") && *p != "bench=script")
    {
        return Err(format!("--script runs bench=script; drop {b}"));
    }
    Ok(Cli::Run(config))
}

/// `512M`, `2G`, `1024` (MiB, as QEMU reads a bare number), at least 128 MiB.
fn is_mem_size(v: &str) -> bool {
    let (digits, mib_per_unit) = match v.as_bytes().last() {
        Some(b'M' | b'm') => (&v[..v.len() - 1], 1u64),
        Some(b'G' | b'g') => (&v[..v.len() - 1], 1024),
        _ => (v, 1),
    };
    matches!(digits.parse::<u64>(), Ok(n) if n.checked_mul(mib_per_unit).is_some_and(|m| m >= 128))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<RunConfig, String> {
        match parse_args(args.iter().map(|s| s.to_string()))? {
            Cli::Run(c) => Ok(c),
            Cli::Help => Err("help".into()),
        }
    }

    #[test]
    fn defaults_are_smp8_tcg() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.smp, 8);
        assert_eq!(c.accel, Accel::Tcg);
        assert_eq!(c.mem, "1G");
        assert!(c.params.is_empty());
    }

    #[test]
    fn options_and_params() {
        let c = parse(&[
            "--smp",
            "2",
            "--mem",
            "2G",
            "--accel",
            "kvm",
            "--timeout",
            "5",
            "bench=none",
            "workers=1,2",
        ])
        .unwrap();
        assert_eq!((c.smp, c.mem.as_str(), c.accel), (2, "2G", Accel::Kvm));
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert_eq!(c.params, ["bench=none", "workers=1,2"]);
        assert_eq!(
            kernel_cmdline(&c),
            format!("accel=kvm host_cpus={} bench=none workers=1,2", host_cpus())
        );
        let own = parse(&["host_cpus=64"]).unwrap();
        assert_eq!(kernel_cmdline(&own), "accel=tcg host_cpus=64");
    }

    #[test]
    fn bad_arguments_are_errors_naming_the_argument() {
        for (args, needle) in [
            (&["--smp", "0"][..], "--smp 0"),
            (&["--smp", "x"], "--smp x"),
            (&["--smp"], "needs a value"),
            (&["--mem", "12"], "--mem 12"),
            (&["--mem", "lots"], "--mem lots"),
            (&["--accel", "hvf"], "--accel hvf"),
            (&["--timeout", "-1"], "--timeout -1"),
            (&["--frob"], "--frob"),
            (&["bench"], "`bench`"),
            (&["=x"], "KEY=VALUE"),
            (&["accel=kvm"], "--accel"),
        ] {
            let err = parse(args).unwrap_err();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
        assert_eq!(parse(&["--help"]).unwrap_err(), "help");
    }

    #[test]
    fn script_is_passed_by_fw_cfg_and_implies_bench_script() {
        let dir = std::env::temp_dir().join(format!("pidlab-script-test-{}", std::process::id()));
        std::fs::write(&dir, "ps\n").unwrap();
        let c = parse(&["--script", dir.to_str().unwrap()]).unwrap();
        assert_eq!(
            kernel_cmdline(&c),
            format!("accel=tcg host_cpus={} bench=script", host_cpus())
        );
        let args: Vec<String> = qemu_command(&c, Path::new("/c"))
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(
            args.iter()
                .any(|a| a.starts_with("name=opt/pidlab/script,file="))
        );
        let err = parse(&["--script", dir.to_str().unwrap(), "bench=none"]).unwrap_err();
        assert!(err.contains("drop bench=none"), "{err}");
        let err = parse(&["--script", "/nonexistent/script"]).unwrap_err();
        assert!(err.contains("cannot read"), "{err}");
        std::fs::remove_file(dir).unwrap();
        assert!(!is_interactive(&c));
        assert!(is_interactive(&parse(&["bench=shell"]).unwrap()));
    }

    #[test]
    fn qemu_options_escape_commas() {
        let c = RunConfig {
            image: PathBuf::from("/tmp/a,b.img"),
            ..RunConfig::default()
        };
        let cmd = qemu_command(&c, Path::new("/tmp/c,d"));
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(
            args.contains(&"format=raw,snapshot=on,file=/tmp/a,,b.img".to_string()),
            "{args:?}"
        );
        assert!(args.contains(&"name=opt/pidlab/cmdline,file=/tmp/c,,d".to_string()));
        assert!(args.windows(2).any(|w| w == ["-smp", "8"]));
    }

    #[test]
    fn exit_codes_follow_the_status() {
        let o = |status| Outcome {
            status,
            serial: "x\n!!! KERNEL PANIC on cpu 0: boom\n".into(),
            qemu_stderr: String::new(),
            elapsed: Duration::ZERO,
        };
        assert_eq!(o(Status::Success).exit_code(), 0);
        assert_eq!(o(Status::KernelFailure).exit_code(), 1);
        assert_eq!(o(Status::UnexpectedExit(Some(0))).exit_code(), 1);
        assert_eq!(o(Status::Timeout(Duration::from_secs(1))).exit_code(), 124);
        assert!(o(Status::KernelFailure).summary().contains("boom"));
    }

    #[test]
    fn missing_qemu_is_a_clear_error() {
        let c = RunConfig {
            qemu: "/nonexistent/qemu-system-x86_64".into(),
            ..RunConfig::default()
        };
        let err = run(&c).unwrap_err();
        assert_eq!(err.exit_code(), EXIT_NO_QEMU);
        assert!(err.to_string().contains(QEMU_PACKAGE), "{err}");
    }
}
