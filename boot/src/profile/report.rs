//! The tables the runner prints after a profiled run: the top functions by
//! self samples per version, and where an op's cycles go per worker count
//! (profile categories beside lockstat's view when its rows are there).
//! Each table says in its title what it counts and how.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::SymStack;
use super::categories::{Classifier, IDLE, Section};
use super::folded::{OUTSIDE, ProfileText};

/// How many functions the top table lists.
pub const TOP: usize = 15;

/// Self samples per function (the leaf after inline expansion) of
/// `version`, most first (ties by name); with the version's total.
pub fn top_functions(stacks: &[SymStack], version: &str) -> (Vec<(String, u64)>, u64) {
    let mut by_name: HashMap<&str, u64> = HashMap::new();
    let mut total = 0;
    for s in stacks.iter().filter(|s| s.version == version) {
        let leaf = s.frames.last().map_or("[empty]", |f| &*f.name);
        *by_name.entry(leaf).or_default() += s.count;
        total += s.count;
    }
    let mut v: Vec<(String, u64)> = by_name
        .into_iter()
        .map(|(n, c)| (n.to_string(), c))
        .collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    (v, total)
}

/// The top-functions tables of every version.
pub fn top_functions_text(text: &ProfileText, stacks: &[SymStack]) -> String {
    let mut out = String::new();
    for v in text.versions() {
        let (top, total) = top_functions(stacks, &v);
        let _ = writeln!(
            out,
            "profile top {TOP}: {v}, self samples by function (the interrupted function after \
             inline expansion), all worker counts, {total} samples"
        );
        let _ = writeln!(out, "{:>9} {:>6}  function", "samples", "%");
        for (name, n) in top.iter().take(TOP) {
            let pct = 100.0 * *n as f64 / total.max(1) as f64;
            let _ = writeln!(out, "{n:>9} {pct:>5.1}%  {name}");
        }
        out.push('\n');
    }
    out
}

/// Samples per category index, per (version, workers).
pub type CategoryCounts = HashMap<(String, u32), Vec<u64>>;

/// Classifies every stack.
pub fn categorise(stacks: &[SymStack], classifier: &mut Classifier) -> CategoryCounts {
    let rows = classifier.row_names().len();
    let mut counts = CategoryCounts::new();
    for s in stacks.iter().filter(|s| s.version != OUTSIDE) {
        let c = classifier.classify(&s.frames);
        counts
            .entry((s.version.clone(), s.workers))
            .or_insert_with(|| vec![0; rows])[c] += s.count;
    }
    counts
}

/// The "where the op goes" tables, one per worker count.
pub fn where_the_op_goes_text(
    text: &ProfileText,
    counts: &CategoryCounts,
    row_names: &[&str],
    sections: &[Section],
) -> String {
    let versions = text.versions();
    let mut out = String::new();
    let width = versions.iter().map(|v| v.len()).max().unwrap_or(0).max(9);
    let label = row_names.iter().map(|n| n.len()).max().unwrap_or(0).max(26);
    for w in text.worker_counts() {
        let _ = writeln!(
            out,
            "profile: where the op goes, {w} worker{}: CPU cycles per op by category \
             (a category's share of the samples x cpu_cycles / ops, every CPU; a sample counts \
             once, in the first category met from the leaf up)",
            if w == 1 { "" } else { "s" }
        );
        let mut line = format!("{:<label$}", "category");
        for v in &versions {
            let _ = write!(line, " {v:>width$}");
        }
        let _ = writeln!(out, "{line}");
        // Cycles per sample for one op, per version; None without a total.
        let per_sample: Vec<Option<f64>> = versions
            .iter()
            .map(|v| {
                text.total(v, w)
                    .filter(|t| t.ops > 0 && t.samples > 0)
                    .map(|t| t.cpu_cycles as f64 / (t.samples as f64 * t.ops as f64))
            })
            .collect();
        let cell = |v: usize, samples: u64| match per_sample[v] {
            Some(k) => format!("{:>width$.0}", samples as f64 * k),
            None => format!("{:>width$}", "-"),
        };
        let idle = row_names.iter().position(|n| *n == IDLE);
        let of = |v: &String| counts.get(&(v.clone(), w));
        for (r, name) in row_names.iter().enumerate() {
            let mut line = format!("{name:<label$}");
            for (i, v) in versions.iter().enumerate() {
                let n = of(v).map_or(0, |c| c[r]);
                line.push(' ');
                line.push_str(&cell(i, n));
            }
            let _ = writeln!(out, "{line}");
        }
        let sums: Vec<(u64, u64)> = versions
            .iter()
            .map(|v| {
                let all: u64 = of(v).map_or(0, |c| c.iter().sum());
                let idle = idle.and_then(|i| of(v).map(|c| c[i])).unwrap_or(0);
                (all, all - idle)
            })
            .collect();
        let mut total = format!("{:<label$}", "total");
        let mut busy = format!("{:<label$}", "total without idle");
        let mut samples = format!("{:<label$}", "samples");
        let mut ops = format!("{:<label$}", "ops");
        for (i, v) in versions.iter().enumerate() {
            total.push(' ');
            total.push_str(&cell(i, sums[i].0));
            busy.push(' ');
            busy.push_str(&cell(i, sums[i].1));
            let _ = write!(samples, " {:>width$}", sums[i].0);
            let t = text.total(v, w);
            let _ = write!(
                ops,
                " {:>width$}",
                t.map_or("-".into(), |t| t.ops.to_string())
            );
        }
        for l in [total, busy, samples, ops] {
            let _ = writeln!(out, "{l}");
        }
        lockstat_rows(&mut out, text, w, &versions, label, width);
        out.push('\n');
    }
    if !sections.is_empty() {
        let _ = writeln!(
            out,
            "tasklist_lock hold sections (source lines, from the kernel's DWARF paths):"
        );
        for s in sections {
            let _ = writeln!(
                out,
                "  {} {}:{}-{}",
                s.function, s.file, s.lines.0, s.lines.1
            );
        }
        out.push('\n');
    }
    out
}

/// Lockstat's wait and hold cycles per op for worker count `w`, if its
/// rows are there.
fn lockstat_rows(
    out: &mut String,
    text: &ProfileText,
    w: u32,
    versions: &[String],
    label: usize,
    width: usize,
) {
    let mut locks: Vec<&str> = Vec::new();
    for l in text.locks.iter().filter(|l| l.workers == w) {
        if !locks.contains(&l.lock.as_str()) {
            locks.push(&l.lock);
        }
    }
    if locks.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "lockstat, cycles per op (acq/op x contended share x mean wait; acq/op x mean hold):"
    );
    for lock in locks {
        for (what, f) in [
            (
                "wait",
                super::folded::LockRow::wait_per_op as fn(&super::folded::LockRow) -> f64,
            ),
            ("hold", super::folded::LockRow::hold_per_op),
        ] {
            let mut line = format!("{:<label$}", format!("{lock} {what}"));
            for v in versions {
                let row = text
                    .locks
                    .iter()
                    .find(|l| l.workers == w && &l.version == v && l.lock == lock);
                match row {
                    Some(r) => {
                        let _ = write!(line, " {:>width$.0}", f(r));
                    }
                    None => {
                        let _ = write!(line, " {:>width$}", "-");
                    }
                }
            }
            let _ = writeln!(out, "{line}");
        }
    }
}

/// Whether the rows add up: each total's samples against its rows, and
/// the closing line against all rows. One message per mismatch.
pub fn check_totals(text: &ProfileText) -> Vec<String> {
    let mut sums: HashMap<(&str, u32), u64> = HashMap::new();
    for r in &text.rows {
        *sums.entry((&r.version, r.workers)).or_default() += r.count;
    }
    let mut problems = Vec::new();
    for t in &text.totals {
        let rows = sums
            .get(&(t.version.as_str(), t.workers))
            .copied()
            .unwrap_or(0);
        if rows != t.samples {
            problems.push(format!(
                "{} at {} workers: the rows hold {rows} samples, profile_total says {}",
                t.version, t.workers, t.samples
            ));
        }
    }
    let mut without_total: Vec<(&str, u32)> = sums
        .keys()
        .filter(|(v, w)| *v != OUTSIDE && text.total(v, *w).is_none())
        .copied()
        .collect();
    without_total.sort_unstable();
    for (v, w) in without_total {
        problems.push(format!("{v} at {w} workers: rows but no profile_total row"));
    }
    if let Some(c) = &text.closing {
        let all: u64 = text.rows.iter().map(|r| r.count).sum();
        if c.in_rows != all {
            problems.push(format!(
                "the closing line counts {} samples in rows, the rows hold {all}",
                c.in_rows
            ));
        }
    }
    problems
}
