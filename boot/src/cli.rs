//! The runner's command line: options for QEMU, `KEY=VALUE` words for the
//! kernel. Everything the kernel would reject for size, and every option
//! value, is checked here, so a mistake costs no boot.

use std::path::PathBuf;
use std::time::Duration;

use pidlab_abi::fw_cfg::{CMDLINE_MAX, SCRIPT_MAX};

use crate::{Accel, ProfileOptions, RunConfig, kernel_cmdline};

/// What the runner binary was asked to do (made once per process, so its
/// size does not matter).
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Cli {
    /// Boot (or, with [`ProfileOptions::log`], read a saved run), then
    /// report the profile if the serial output holds one.
    Run(RunConfig, ProfileOptions),
    Help,
}

/// Usage text for `cargo run -- --help`.
pub const USAGE: &str = "\
usage: cargo run -- [--smp N] [--mem SIZE] [--accel tcg|tcg-single|kvm] [--timeout SECONDS] [--boots N]
                    [--script FILE] [--profile-dir DIR] [--kernel-elf FILE] [KEY=VALUE ...]
       cargo run -- --profile-log FILE [--profile-dir DIR] [--kernel-elf FILE]

Boots the pidlab kernel under QEMU with the serial console on stdout.

  --smp N            virtual CPUs (1..=64, default 8)
  --mem SIZE         guest memory, e.g. 512M or 2G (default 1G)
  --accel A          QEMU accelerator: tcg (default; one host thread per vCPU),
                     tcg-single (all vCPUs on one host thread, round-robin),
                     kvm (opt-in; nested and slow on our machines)
  --boots N          boot the command N times (1 to 20) and report Linux's
                     comparisons across the boots (threadspawn)
  --timeout SECONDS  kill QEMU after this long (default 600; 1800 for bench=pidalloc,
                     whose 1M-live-pid point takes minutes)
  --script FILE      run the pidctl commands in FILE (implies bench=script)
  --profile-dir DIR  write the profile's folded stacks and flame graphs into DIR
                     (implies profile=on); the tables are printed whenever the
                     output holds profile rows
  --kernel-elf FILE  the kernel ELF that names the profile's addresses (default:
                     the one built into the disk image)
  --profile-log FILE report the profile in FILE, a saved serial log, instead of
                     booting
  KEY=VALUE          run-time parameters for the kernel, e.g. bench=none
                     (the kernel lists the keys it accepts if given a bad one)

Exit status: 0 kernel success, 1 kernel failure, 2 bad usage, 3 runner error,
124 timeout, 127 QEMU not installed.";

/// The default timeout of `bench=pidalloc`: its default run fills a root
/// namespace with a million pids and gives them back, minutes under TCG.
pub const PIDALLOC_TIMEOUT: Duration = Duration::from_secs(1800);

/// Parses the runner's arguments (without the program name).
pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Cli, String> {
    let mut config = RunConfig {
        echo: true,
        ..RunConfig::default()
    };
    let mut profile = ProfileOptions::default();
    let mut timeout_given = false;
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
                config.accel = Accel::by_name(&v)
                    .ok_or_else(|| format!("--accel {v}: expected {}", Accel::NAMES))?;
            }
            "--timeout" => {
                timeout_given = true;
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
            "--boots" => {
                let v = value("--boots")?;
                config.boots = match v.parse::<u32>() {
                    Ok(n) if (1..=20).contains(&n) => n,
                    _ => return Err(format!("--boots {v}: expected a count from 1 to 20")),
                };
            }
            "--script" => {
                let v = value("--script")?;
                let path = PathBuf::from(&v);
                let size = std::fs::File::open(&path)
                    .and_then(|f| f.metadata())
                    .map_err(|e| format!("--script {v}: cannot read it: {e}"))?
                    .len();
                if size > SCRIPT_MAX as u64 {
                    return Err(format!(
                        "--script {v}: {size} bytes, more than the {SCRIPT_MAX} the kernel accepts"
                    ));
                }
                config.script = Some(path);
            }
            "--profile-dir" => profile.dir = Some(PathBuf::from(value("--profile-dir")?)),
            "--kernel-elf" => {
                let v = value("--kernel-elf")?;
                profile.kernel_elf = readable_file("--kernel-elf", &v)?;
            }
            "--profile-log" => {
                let v = value("--profile-log")?;
                profile.log = Some(readable_file("--profile-log", &v)?);
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
                if key == Accel::CMDLINE_KEY {
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
    if profile.log.is_some() {
        if let Some(p) = config.params.first() {
            return Err(format!(
                "--profile-log reads a saved run and boots nothing; drop {p}"
            ));
        }
        if config.script.is_some() {
            return Err("--profile-log reads a saved run and boots nothing; drop --script".into());
        }
    } else if profile.dir.is_some() && !config.params.iter().any(|p| p.starts_with("profile=")) {
        config.params.push("profile=on".into());
    }
    if !timeout_given && config.params.iter().any(|p| p == "bench=pidalloc") {
        config.timeout = PIDALLOC_TIMEOUT;
    }
    let len = kernel_cmdline(&config).len();
    if len > CMDLINE_MAX {
        return Err(format!(
            "the parameters make a {len}-byte command line, more than the {CMDLINE_MAX} the kernel accepts"
        ));
    }
    Ok(Cli::Run(config, profile))
}

/// `path` if it names a file we can open.
fn readable_file(option: &str, path: &str) -> Result<PathBuf, String> {
    std::fs::File::open(path).map_err(|e| format!("{option} {path}: cannot read it: {e}"))?;
    Ok(PathBuf::from(path))
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
    use std::path::Path;

    use super::*;
    use crate::{host_cpus, is_interactive, qemu_command};

    fn parse(args: &[&str]) -> Result<RunConfig, String> {
        parse_with_profile(args).map(|(c, _)| c)
    }

    fn parse_with_profile(args: &[&str]) -> Result<(RunConfig, ProfileOptions), String> {
        match parse_args(args.iter().map(|s| s.to_string()))? {
            Cli::Run(c, p) => Ok((c, p)),
            Cli::Help => Err("help".into()),
        }
    }

    /// A file under the temporary directory, removed when dropped.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(tag: &str, contents: &[u8]) -> TempFile {
            let path =
                std::env::temp_dir().join(format!("pidlab-{tag}-test-{}", std::process::id()));
            std::fs::write(&path, contents).unwrap();
            TempFile(path)
        }

        fn arg(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn pidalloc_gets_a_timeout_that_fits_it_unless_one_is_given() {
        assert_eq!(
            parse(&["bench=pidalloc"]).unwrap().timeout,
            PIDALLOC_TIMEOUT
        );
        let given = parse(&["bench=pidalloc", "--timeout", "60"]).unwrap();
        assert_eq!(given.timeout, Duration::from_secs(60));
        let other = parse(&["bench=threadspawn"]).unwrap();
        assert_eq!(other.timeout, Duration::from_secs(600));
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
        for a in Accel::ALL {
            assert_eq!(parse(&["--accel", a.name()]).unwrap().accel, a);
        }
    }

    #[test]
    fn bad_arguments_are_errors_naming_the_argument() {
        for (args, needle) in [
            (&["--smp", "0"][..], "--smp 0"),
            (&["--smp", "x"], "--smp x"),
            (&["--smp"], "needs a value"),
            (&["--mem", "12"], "--mem 12"),
            (&["--mem", "lots"], "--mem lots"),
            (
                &["--accel", "hvf"],
                "--accel hvf: expected tcg, tcg-single or kvm",
            ),
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
        let script = TempFile::new("script", b"ps\n");
        let c = parse(&["--script", script.arg()]).unwrap();
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
        let err = parse(&["--script", script.arg(), "bench=none"]).unwrap_err();
        assert!(err.contains("drop bench=none"), "{err}");
        let err = parse(&["--script", "/nonexistent/script"]).unwrap_err();
        assert!(err.contains("cannot read"), "{err}");
        assert!(!is_interactive(&c));
        assert!(is_interactive(&parse(&["bench=shell"]).unwrap()));
    }

    #[test]
    fn what_the_kernel_would_refuse_for_size_is_refused_here() {
        let just_fits = TempFile::new("script-max", &vec![b'\n'; SCRIPT_MAX]);
        assert!(parse(&["--script", just_fits.arg()]).is_ok());
        let too_big = TempFile::new("script-big", &vec![b'\n'; SCRIPT_MAX + 1]);
        let err = parse(&["--script", too_big.arg()]).unwrap_err();
        assert!(
            err.contains(&format!(
                "{} bytes, more than the {SCRIPT_MAX}",
                SCRIPT_MAX + 1
            )),
            "{err}"
        );

        // With host_cpus given, the runner adds only the accelerator; one
        // more parameter fills the rest exactly.
        let prefix = "accel=tcg host_cpus=2 ".len();
        let fill = |len: usize| format!("k={}", "v".repeat(len - 2));
        assert!(parse(&["host_cpus=2", &fill(CMDLINE_MAX - prefix)]).is_ok());
        let err = parse(&["host_cpus=2", &fill(CMDLINE_MAX - prefix + 1)]).unwrap_err();
        assert!(
            err.contains(&format!("{}-byte command line", CMDLINE_MAX + 1)),
            "{err}"
        );
    }

    #[test]
    fn profile_options() {
        let (c, p) = parse_with_profile(&[]).unwrap();
        assert_eq!(p, ProfileOptions::default());
        assert!(c.params.is_empty());
        assert!(p.kernel_elf.is_file(), "{}", p.kernel_elf.display());

        let (c, p) = parse_with_profile(&["--profile-dir", "/tmp/prof", "workers=2"]).unwrap();
        assert_eq!(p.dir.as_deref(), Some(Path::new("/tmp/prof")));
        assert_eq!(c.params, ["workers=2", "profile=on"]);
        let (c, _) = parse_with_profile(&["--profile-dir", "d", "profile=off"]).unwrap();
        assert_eq!(c.params, ["profile=off"]);

        let log = TempFile::new("profile-log", b"profile,stock,1,0x10,1\n");
        let (c, p) =
            parse_with_profile(&["--profile-log", log.arg(), "--kernel-elf", log.arg()]).unwrap();
        assert_eq!(p.log.as_deref(), Some(log.0.as_path()));
        assert_eq!(p.kernel_elf, log.0);
        assert!(c.params.is_empty(), "a log run adds no profile=on");

        for (args, needle) in [
            (
                &["--profile-log", "/nonexistent/log"][..],
                "--profile-log /nonexistent/log: cannot read",
            ),
            (
                &["--kernel-elf", "/nonexistent/elf"],
                "--kernel-elf /nonexistent/elf: cannot read",
            ),
            (
                &["--profile-log", log.arg(), "bench=none"],
                "drop bench=none",
            ),
            (&["--profile-dir"], "needs a value"),
        ] {
            let err = parse(args).unwrap_err();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
    }
}
