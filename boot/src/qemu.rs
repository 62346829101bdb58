//! Running QEMU once: its command line, the fw_cfg files that carry the
//! run-time parameters and the script, the serial output on a pipe, and a
//! timeout after which QEMU is killed.

use std::io::{self, Read, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pidlab_abi::debug_exit::{self, ExitCode};
use pidlab_abi::fw_cfg::{CMDLINE_FILE, SCRIPT_FILE};

use crate::{Accel, Outcome, RunConfig, RunError, Status, is_interactive, kernel_cmdline};

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
        // The HPET may deliver its interrupts as messages: the profiler
        // (profile=on) gets its NMIs that way.
        .args(["-global", "hpet.msi=on"])
        .arg("-device")
        .arg(format!(
            "isa-debug-exit,iobase={:#x},iosize={:#04x}",
            debug_exit::PORT,
            debug_exit::IOSIZE
        ))
        .arg("-fw_cfg")
        .arg(fw_cfg_file(CMDLINE_FILE, cmdline));
    if let Some(script) = &config.script {
        cmd.arg("-fw_cfg").arg(fw_cfg_file(SCRIPT_FILE, script));
    }
    match config.accel {
        Accel::Tcg => cmd.args(["-accel", "tcg,thread=multi"]),
        Accel::TcgSingle => cmd.args(["-accel", "tcg,thread=single"]),
        Accel::Kvm => cmd.args(["-accel", "kvm", "-cpu", "host,-arch-capabilities"]),
    };
    cmd
}

/// `-fw_cfg` option value making `path` the guest's file `name`.
fn fw_cfg_file(name: &str, path: &Path) -> String {
    format!(
        "name={name},file={}",
        escape_qemu_opt(&path.to_string_lossy())
    )
}

/// QEMU option values escape a comma by doubling it.
fn escape_qemu_opt(value: &str) -> String {
    value.replace(',', ",,")
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
    let code = status.code();
    match code.and_then(ExitCode::from_qemu_status) {
        Some(ExitCode::Success) => Status::Success,
        Some(ExitCode::Failure) => Status::KernelFailure,
        None => Status::UnexpectedExit(code),
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::EXIT_NO_QEMU;

    fn args_of(cmd: &Command) -> Vec<String> {
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn qemu_options_escape_commas() {
        let c = RunConfig {
            image: PathBuf::from("/tmp/a,b.img"),
            ..RunConfig::default()
        };
        let args = args_of(&qemu_command(&c, Path::new("/tmp/c,d")));
        assert!(
            args.contains(&"format=raw,snapshot=on,file=/tmp/a,,b.img".to_string()),
            "{args:?}"
        );
        assert!(args.contains(&"name=opt/pidlab/cmdline,file=/tmp/c,,d".to_string()));
        assert!(args.windows(2).any(|w| w == ["-smp", "8"]));
    }

    #[test]
    fn the_exit_device_is_where_the_kernel_writes() {
        let args = args_of(&qemu_command(&RunConfig::default(), Path::new("/c")));
        assert!(
            args.windows(2)
                .any(|w| w == ["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]),
            "{args:?}"
        );
    }

    #[test]
    fn missing_qemu_is_a_clear_error() {
        let c = RunConfig {
            qemu: "/nonexistent/qemu-system-x86_64".into(),
            ..RunConfig::default()
        };
        let err = run(&c).unwrap_err();
        assert_eq!(err.exit_code(), EXIT_NO_QEMU);
        assert!(err.to_string().contains(crate::QEMU_PACKAGE), "{err}");
    }
}
