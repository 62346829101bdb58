//! Folded stacks and flame graphs (`inferno`) on disk, for `--profile-dir`:
//!
//! - `<version>.folded`, `<version>.svg`: the version's samples, every
//!   worker count together;
//! - `<version>.w<N>.folded`, `.svg`: one worker count, when more than one
//!   ran;
//! - `diff-stock-<version>.svg`: the differential flame graph from `stock`
//!   to the version, stock's counts scaled to the version's sample total
//!   (so a version that took more samples is not red all over): the shape
//!   is the version's profile; red grew, blue shrank;
//! - `outside.folded`, `.svg`: samples outside any benchmark sample (`-`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use inferno::differential;
use inferno::flamegraph::{self, Options, Palette, color::MultiPalette};

use super::SymStack;
use super::folded::OUTSIDE;

/// The version the differential graphs start from.
pub const BASELINE: &str = "stock";

/// Folded text (`a;b;c count` lines, sorted) of `stacks`, equal stacks
/// merged.
pub fn folded<'a>(stacks: impl IntoIterator<Item = &'a SymStack>) -> String {
    let mut merged: BTreeMap<String, u64> = BTreeMap::new();
    for s in stacks {
        *merged.entry(s.folded_frames()).or_default() += s.count;
    }
    let mut out = String::new();
    for (stack, count) in merged {
        out.push_str(&stack);
        out.push(' ');
        out.push_str(&count.to_string());
        out.push('\n');
    }
    out
}

/// The sum of a folded text's counts.
pub fn folded_total(folded: &str) -> u64 {
    folded
        .lines()
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(_, n)| n.parse::<u64>().ok())
        .sum()
}

/// A flame graph of `folded`.
pub fn svg(folded: &str, title: &str, subtitle: Option<String>) -> Result<Vec<u8>, String> {
    if folded.trim().is_empty() {
        return Err("no samples".into());
    }
    let mut opt = options(title, subtitle);
    let mut out = Vec::new();
    flamegraph::from_lines(&mut opt, folded.lines(), &mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// A differential flame graph from `before` to `after`, `before`'s counts
/// scaled to `after`'s total.
pub fn diff_svg(
    before: &str,
    after: &str,
    title: &str,
    subtitle: Option<String>,
) -> Result<Vec<u8>, String> {
    if before.trim().is_empty() || after.trim().is_empty() {
        return Err("no samples on one side".into());
    }
    let mut two_columns = Vec::new();
    let diff = differential::Options {
        normalize: true,
        strip_hex: false,
    };
    differential::from_readers(diff, before.as_bytes(), after.as_bytes(), &mut two_columns)
        .map_err(|e| e.to_string())?;
    let two_columns = String::from_utf8_lossy(&two_columns).into_owned();
    let mut opt = options(title, subtitle);
    let mut out = Vec::new();
    flamegraph::from_lines(&mut opt, two_columns.lines(), &mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

fn options(title: &str, subtitle: Option<String>) -> Options<'static> {
    let mut opt = Options::default();
    opt.title = title.to_string();
    opt.subtitle = subtitle;
    opt.count_name = "samples".into();
    // The same function gets the same colour in every graph.
    opt.deterministic = true;
    opt.colors = Palette::Multi(MultiPalette::Rust);
    opt
}

/// Writes every file of `--profile-dir` into `dir`; returns their paths.
/// `sample_cycles` (CPU cycles per sample of a version, if known) goes into
/// its subtitles.
pub fn write_all(
    dir: &Path,
    versions: &[String],
    stacks: &[SymStack],
    sample_cycles: impl Fn(&str) -> Option<u64>,
) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let mut written = Vec::new();
    let mut write = |name: String, bytes: &[u8]| -> Result<(), String> {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| format!("writing {}: {e}", path.display()))?;
        written.push(path);
        Ok(())
    };
    let subtitle = |what: &str, folded: &str, version: &str| {
        let n = folded_total(folded);
        Some(match sample_cycles(version) {
            Some(c) => format!("{what}: {n} samples, each about {c} CPU cycles"),
            None => format!("{what}: {n} samples"),
        })
    };
    let mut by_version = BTreeMap::new();
    for v in versions {
        let mine: Vec<&SymStack> = stacks.iter().filter(|s| &s.version == v).collect();
        let all = folded(mine.iter().copied());
        write(format!("{v}.folded"), all.as_bytes())?;
        if let Ok(svg) = svg(
            &all,
            &format!("pidlab profile: {v}"),
            subtitle("all worker counts", &all, v),
        ) {
            write(format!("{v}.svg"), &svg)?;
        }
        let mut workers: Vec<u32> = mine.iter().map(|s| s.workers).collect();
        workers.sort_unstable();
        workers.dedup();
        if workers.len() > 1 {
            for w in workers {
                let one = folded(mine.iter().copied().filter(|s| s.workers == w));
                write(format!("{v}.w{w}.folded"), one.as_bytes())?;
                if let Ok(svg) = svg(
                    &one,
                    &format!("pidlab profile: {v}, {w} workers"),
                    subtitle(&format!("{w} workers"), &one, v),
                ) {
                    write(format!("{v}.w{w}.svg"), &svg)?;
                }
            }
        }
        by_version.insert(v.clone(), all);
    }
    if let Some(base) = by_version.get(BASELINE) {
        for v in versions.iter().filter(|v| *v != BASELINE) {
            let title = format!("pidlab profile: {BASELINE} -> {v} (red grew, blue shrank)");
            let note = format!(
                "{BASELINE}'s {} samples scaled to {v}'s {}",
                folded_total(base),
                folded_total(&by_version[v])
            );
            if let Ok(svg) = diff_svg(base, &by_version[v], &title, Some(note)) {
                write(format!("diff-{BASELINE}-{v}.svg"), &svg)?;
            }
        }
    }
    let outside: Vec<&SymStack> = stacks.iter().filter(|s| s.version == OUTSIDE).collect();
    if !outside.is_empty() {
        let all = folded(outside);
        write("outside.folded".into(), all.as_bytes())?;
        if let Ok(svg) = svg(
            &all,
            "pidlab profile: outside the benchmark's samples",
            subtitle("warm-up, set-up, drain and reports", &all, OUTSIDE),
        ) {
            write("outside.svg".into(), &svg)?;
        }
    }
    Ok(written)
}
