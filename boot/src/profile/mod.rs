//! The runner's half of the sampling profiler: with `profile=on` the
//! kernel samples every CPU from an NMI and prints folded stacks of raw
//! addresses with totals (docs/profile.md holds the format); here they
//! become names, flame graphs and tables.
//!
//! [`analyze`] reads the serial output ([`folded`]), names every address
//! from the kernel ELF with inlined frames expanded ([`symbols`]), writes
//! folded stacks and flame graphs when asked ([`flame`]), and makes the
//! report: top functions by self samples and where an op's cycles go
//! ([`report`], by the [`categories`] list).

pub mod categories;
pub mod flame;
pub mod folded;
pub mod names;
pub mod report;
pub mod symbols;

use std::path::{Path, PathBuf};

use categories::{CATEGORIES, Classifier};
use folded::{ProfileText, RawFrame};
use symbols::{Frame, Symbolizer};

/// The kernel ELF `build.rs` put in the disk image.
pub const KERNEL_ELF: &str = env!("PIDLAB_KERNEL_ELF");

/// What the runner does with a profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileOptions {
    /// The kernel ELF that ran (`--kernel-elf`).
    pub kernel_elf: PathBuf,
    /// Where to write folded stacks and flame graphs (`--profile-dir`).
    pub dir: Option<PathBuf>,
    /// A saved serial log to report on instead of booting (`--profile-log`).
    pub log: Option<PathBuf>,
}

impl Default for ProfileOptions {
    fn default() -> Self {
        ProfileOptions {
            kernel_elf: PathBuf::from(KERNEL_ELF),
            dir: None,
            log: None,
        }
    }
}

/// One stack of one (version, workers), named.
#[derive(Clone, Debug)]
pub struct SymStack {
    pub version: String,
    pub workers: u32,
    /// Root first; every raw frame expanded to its inline chain.
    pub frames: Vec<Frame>,
    pub count: u64,
}

impl SymStack {
    /// The frames as a folded stack (`a;b;c`).
    pub fn folded_frames(&self) -> String {
        let names: Vec<&str> = self.frames.iter().map(|f| &*f.name).collect();
        names.join(";")
    }
}

/// Names every row's frames. The last frame of a row is the interrupted
/// instruction, the others return addresses.
pub fn symbolize(text: &ProfileText, sym: &mut Symbolizer) -> Vec<SymStack> {
    text.rows
        .iter()
        .map(|row| {
            let mut frames = Vec::new();
            let last = row.stack.len().saturating_sub(1);
            for (i, f) in row.stack.iter().enumerate() {
                match f {
                    RawFrame::Marker(m) => frames.push(Frame::named(m)),
                    RawFrame::Addr(a) => frames.extend(sym.frames(*a, i == last).iter().cloned()),
                }
            }
            SymStack {
                version: row.version.clone(),
                workers: row.workers,
                frames,
                count: row.count,
            }
        })
        .collect()
}

/// What [`analyze`] made.
#[derive(Debug, Default)]
pub struct Report {
    /// The tables, for stdout.
    pub text: String,
    /// Bad lines, sums that do not add up, what the ELF lacks.
    pub warnings: Vec<String>,
    /// Files written under `--profile-dir`.
    pub files: Vec<PathBuf>,
}

/// Reads the profile out of `serial`, names it from `opts.kernel_elf`,
/// writes `opts.dir`'s files and makes the tables. An error is what stops
/// the report (no ELF, an unwritable directory); everything else is a
/// warning.
pub fn analyze(serial: &str, opts: &ProfileOptions) -> Result<Report, String> {
    let text = folded::parse(serial);
    let mut warnings: Vec<String> = text.errors.iter().map(|e| e.to_string()).collect();
    if !text.has_rows() {
        return Err(
            "no profile rows in the serial output (the kernel prints them with profile=on)".into(),
        );
    }
    warnings.extend(report::check_totals(&text));
    let mut sym = Symbolizer::open(&opts.kernel_elf)?;
    warnings.append(&mut sym.notes);
    match text.kernel_main {
        Some(k) => {
            sym.set_runtime_kernel_main(k)?;
            let slide = sym.slide();
            if slide % 0x1000 != 0 {
                warnings.push(format!(
                    "the load slide {slide:#x} is not page aligned: is {} the kernel that ran?",
                    opts.kernel_elf.display()
                ));
            }
        }
        None => warnings.push(
            "no `kernel_main at 0x...` line: addresses are taken as ELF addresses (no slide)"
                .into(),
        ),
    }
    let stacks = symbolize(&text, &mut sym);
    warnings.extend(unknown_share(&stacks, &opts.kernel_elf));

    let mut classifier = Classifier::new(CATEGORIES);
    let counts = report::categorise(&stacks, &mut classifier);
    warnings.append(&mut classifier.notes);
    let mut out = report::top_functions_text(&text, &stacks);
    out.push_str(&report::where_the_op_goes_text(
        &text,
        &counts,
        &classifier.row_names(),
        &classifier.sections(),
    ));
    let files = match &opts.dir {
        Some(dir) => {
            let cycles = |v: &str| {
                text.totals
                    .iter()
                    .find(|t| t.version == v)
                    .filter(|t| t.samples > 0)
                    .map(|t| t.cpu_cycles / t.samples)
            };
            flame::write_all(dir, &text.versions(), &stacks, cycles)?
        }
        None => Vec::new(),
    };
    Ok(Report {
        text: out,
        warnings,
        files,
    })
}

/// A warning when many sampled addresses are unknown to the ELF (the wrong
/// ELF, or a wrong slide).
fn unknown_share(stacks: &[SymStack], elf: &Path) -> Option<String> {
    let (mut unknown, mut all) = (0u64, 0u64);
    for s in stacks {
        for f in &s.frames {
            all += s.count;
            if f.name.starts_with("[unknown ") {
                unknown += s.count;
            }
        }
    }
    (all > 0 && unknown * 10 > all).then(|| {
        format!(
            "{:.0}% of sampled frames are unknown to {}: is it the kernel that ran?",
            100.0 * unknown as f64 / all as f64,
            elf.display()
        )
    })
}
