//! Reading the kernel's profile from its serial output (the contract is
//! docs/profile.md, "What the kernel prints"): the `kernel_main at 0x...`
//! line, the folded `profile,` rows of raw addresses, the `profile_total,`
//! rows, the closing `profile:` line, and lockstat's `threadspawn_lock,`
//! rows.
//!
//! Everything else on the console is someone else's and is skipped. A line
//! of ours that does not parse becomes a [`LineError`] naming its line
//! number and what is wrong, and the rest is still read: a console can
//! lose or mangle a line, and one bad row should not cost the profile.

use std::collections::HashMap;
use std::fmt;

/// The version tag of samples taken outside any benchmark sample.
pub const OUTSIDE: &str = "-";

/// One frame of a raw stack.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RawFrame {
    /// A runtime code address.
    Addr(u64),
    /// A bracketed word: `[truncated]`, `[dropped]`, ...
    Marker(String),
}

/// A `profile,version,workers,stack,count` row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub version: String,
    pub workers: u32,
    /// Root first, leaf last.
    pub stack: Vec<RawFrame>,
    pub count: u64,
}

/// A `profile_total,version,workers,samples,ops,cpu_cycles` row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Total {
    pub version: String,
    pub workers: u32,
    pub samples: u64,
    pub ops: u64,
    /// TSC cycles between two samples of one CPU.
    /// Wall TSC cycles the tag was current times the CPUs sampled.
    pub cpu_cycles: u64,
}

/// A `threadspawn_lock,version,workers,lock,acq_per_op,contended_x10000,
/// wait_cycles,hold_cycles` row (lockstat).
#[derive(Clone, Debug, PartialEq)]
pub struct LockRow {
    pub version: String,
    pub workers: u32,
    pub lock: String,
    pub acq_per_op: f64,
    pub contended_x10000: u64,
    /// Mean wait per contended acquisition.
    pub wait_cycles: u64,
    /// Mean hold per acquisition.
    pub hold_cycles: u64,
}

impl LockRow {
    /// Cycles per op spent waiting for the lock.
    pub fn wait_per_op(&self) -> f64 {
        self.acq_per_op * self.contended_x10000 as f64 / 10_000.0 * self.wait_cycles as f64
    }

    /// Cycles per op with the lock held.
    pub fn hold_per_op(&self) -> f64 {
        self.acq_per_op * self.hold_cycles as f64
    }
}

/// The closing `profile: N samples taken, ...` line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Closing {
    pub taken: u64,
    pub in_rows: u64,
    pub dropped: u64,
    pub truncated: u64,
}

/// A line that looked like ours but did not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number in the serial output.
    pub line: usize,
    pub reason: String,
    pub text: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 120;
        let text: String = self.text.chars().take(SHOWN).collect();
        let more = if self.text.chars().count() > SHOWN {
            "..."
        } else {
            ""
        };
        write!(
            f,
            "serial line {}: {}: `{text}{more}`",
            self.line, self.reason
        )
    }
}

/// What the serial output said about the profile.
#[derive(Clone, Debug, Default)]
pub struct ProfileText {
    /// The runtime address of `kernel_main`.
    pub kernel_main: Option<u64>,
    /// The `profile: on, ...` line, as printed.
    pub banner: Option<String>,
    pub rows: Vec<Row>,
    pub totals: Vec<Total>,
    pub locks: Vec<LockRow>,
    pub closing: Option<Closing>,
    pub errors: Vec<LineError>,
}

impl ProfileText {
    /// Whether there is anything to report.
    pub fn has_rows(&self) -> bool {
        !self.rows.is_empty() || !self.totals.is_empty()
    }

    /// The versions in the order they first appear (`-` left out).
    pub fn versions(&self) -> Vec<String> {
        let mut seen = Vec::<String>::new();
        let names = self.rows.iter().map(|r| &r.version);
        for v in names.chain(self.totals.iter().map(|t| &t.version)) {
            if v != OUTSIDE && !seen.contains(v) {
                seen.push(v.clone());
            }
        }
        seen
    }

    /// The worker counts that ran, ascending (0, the outside tag, left out).
    pub fn worker_counts(&self) -> Vec<u32> {
        let mut w: Vec<u32> = self
            .rows
            .iter()
            .map(|r| r.workers)
            .chain(self.totals.iter().map(|t| t.workers))
            .filter(|&w| w != 0)
            .collect();
        w.sort_unstable();
        w.dedup();
        w
    }

    /// The total row of `(version, workers)`.
    pub fn total(&self, version: &str, workers: u32) -> Option<&Total> {
        self.totals
            .iter()
            .find(|t| t.version == version && t.workers == workers)
    }
}

/// Whether `serial` holds profile rows (cheap: no parsing).
pub fn has_profile_rows(serial: &str) -> bool {
    serial
        .lines()
        .any(|l| l.starts_with("profile,") || l.starts_with("profile_total,"))
}

const ROW_HEADER: &str = "profile,version,workers,stack,count";
const TOTAL_HEADER: &str = "profile_total,version,workers,samples,ops,cpu_cycles";
const LOCK_HEADER: &str =
    "threadspawn_lock,version,workers,lock,acq_per_op,contended_x10000,wait_cycles,hold_cycles";

/// Reads the profile out of the whole serial output.
pub fn parse(serial: &str) -> ProfileText {
    let mut p = ProfileText::default();
    // (version, workers, stack) -> index in p.rows, to catch repeats.
    let mut seen: HashMap<(String, u32, Vec<RawFrame>), usize> = HashMap::new();
    for (i, raw) in serial.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        let err = |reason: String| LineError {
            line: i + 1,
            reason,
            text: line.to_string(),
        };
        if line == ROW_HEADER || line == TOTAL_HEADER || line == LOCK_HEADER {
            continue;
        }
        if let Some(rest) = line.strip_prefix("profile,") {
            match parse_row(rest) {
                Ok(row) => {
                    let key = (row.version.clone(), row.workers, row.stack.clone());
                    if let Some(&at) = seen.get(&key) {
                        p.rows[at].count += row.count;
                        p.errors
                            .push(err("the same stack again (counts added)".into()));
                    } else {
                        seen.insert(key, p.rows.len());
                        p.rows.push(row);
                    }
                }
                Err(e) => p.errors.push(err(e)),
            }
        } else if let Some(rest) = line.strip_prefix("profile_total,") {
            match parse_total(rest) {
                Ok(t) if p.total(&t.version, t.workers).is_some() => p.errors.push(err(format!(
                    "a second total for {} at {} workers (ignored)",
                    t.version, t.workers
                ))),
                Ok(t) => p.totals.push(t),
                Err(e) => p.errors.push(err(e)),
            }
        } else if let Some(rest) = line.strip_prefix("threadspawn_lock,") {
            match parse_lock(rest) {
                Ok(l) => p.locks.push(l),
                Err(e) => p.errors.push(err(e)),
            }
        } else if let Some(rest) = line.strip_prefix("profile: ") {
            if let Some(at) = rest.find("kernel_main at ") {
                let word = rest[at + "kernel_main at ".len()..]
                    .split(|c: char| c.is_whitespace() || c == ',')
                    .next()
                    .unwrap_or("");
                match parse_hex(word) {
                    Ok(a) if p.kernel_main.is_some_and(|k| k != a) => p.errors.push(err(
                        "a second, different kernel_main address (the first is used)".into(),
                    )),
                    Ok(a) => {
                        p.kernel_main = Some(a);
                        p.banner = Some(line.to_string());
                    }
                    Err(e) => p.errors.push(err(format!("kernel_main address: {e}"))),
                }
            } else if rest.contains("samples taken") {
                match parse_closing(rest) {
                    Ok(c) => p.closing = Some(c),
                    Err(e) => p.errors.push(err(e)),
                }
            }
        }
    }
    p
}

/// Splits a row into exactly `n` comma-separated fields.
fn fields(rest: &str, n: usize, what: &str) -> Result<Vec<String>, String> {
    let f: Vec<String> = rest.split(',').map(str::to_string).collect();
    if f.len() != n {
        return Err(format!(
            "{what} row with {} fields after the tag, expected {n}",
            f.len()
        ));
    }
    Ok(f)
}

/// A version name: it names files, so letters, digits, `-`, `_`, `.`, `+`.
fn version(v: &str) -> Result<String, String> {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+');
    if v.is_empty() || v.starts_with('.') || !v.chars().all(ok) {
        return Err(format!("bad version name `{}`", shown(v)));
    }
    Ok(v.to_string())
}

fn number(v: &str, what: &str) -> Result<u64, String> {
    v.parse::<u64>()
        .map_err(|_| format!("{what} `{}` is not a whole number", shown(v)))
}

fn workers(v: &str) -> Result<u32, String> {
    v.parse::<u32>()
        .map_err(|_| format!("workers `{}` is not a whole number", shown(v)))
}

/// A field as an error quotes it: at most 40 characters.
fn shown(v: &str) -> String {
    match v.char_indices().nth(40) {
        Some((at, _)) => format!("{}...", &v[..at]),
        None => v.to_string(),
    }
}

fn parse_hex(word: &str) -> Result<u64, String> {
    let digits = word
        .strip_prefix("0x")
        .ok_or_else(|| format!("`{}` is not 0x followed by hex digits", shown(word)))?;
    if digits.is_empty() || digits.len() > 16 {
        return Err(format!("`{}` is not a 64-bit hex address", shown(word)));
    }
    u64::from_str_radix(digits, 16).map_err(|_| format!("`{}` is not a hex address", shown(word)))
}

fn parse_frame(word: &str) -> Result<RawFrame, String> {
    if word.len() > 2 && word.starts_with('[') && word.ends_with(']') {
        return Ok(RawFrame::Marker(word.to_string()));
    }
    parse_hex(word).map(RawFrame::Addr)
}

fn parse_row(rest: &str) -> Result<Row, String> {
    let f = fields(rest, 4, "profile")?;
    let stack = f[2]
        .split(';')
        .map(parse_frame)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("stack frame {e}"))?;
    Ok(Row {
        version: version(&f[0])?,
        workers: workers(&f[1])?,
        stack,
        count: number(&f[3], "count")?,
    })
}

fn parse_total(rest: &str) -> Result<Total, String> {
    let f = fields(rest, 5, "profile_total")?;
    Ok(Total {
        version: version(&f[0])?,
        workers: workers(&f[1])?,
        samples: number(&f[2], "samples")?,
        ops: number(&f[3], "ops")?,
        cpu_cycles: number(&f[4], "cpu_cycles")?,
    })
}

fn parse_lock(rest: &str) -> Result<LockRow, String> {
    let f = fields(rest, 7, "threadspawn_lock")?;
    let acq_per_op = f[3]
        .parse::<f64>()
        .ok()
        .filter(|a| a.is_finite() && *a >= 0.0)
        .ok_or_else(|| format!("acq_per_op `{}` is not a number", shown(&f[3])))?;
    if f[2].is_empty() {
        return Err("empty lock name".into());
    }
    Ok(LockRow {
        version: version(&f[0])?,
        workers: workers(&f[1])?,
        lock: f[2].clone(),
        acq_per_op,
        contended_x10000: number(&f[4], "contended_x10000")?,
        wait_cycles: number(&f[5], "wait_cycles")?,
        hold_cycles: number(&f[6], "hold_cycles")?,
    })
}

/// `N samples taken, N in rows, N dropped (...), N truncated unwinds`.
fn parse_closing(rest: &str) -> Result<Closing, String> {
    let mut c = Closing::default();
    let mut found = 0;
    for part in rest.split(',') {
        let mut words = part.split_whitespace();
        let (Some(n), Some(what)) = (words.next(), words.next()) else {
            continue;
        };
        let slot = match what {
            "samples" => &mut c.taken,
            "in" => &mut c.in_rows,
            "dropped" => &mut c.dropped,
            "truncated" => &mut c.truncated,
            _ => continue,
        };
        *slot = number(n, what)?;
        found += 1;
    }
    if found < 4 {
        return Err("closing line without its four counts".into());
    }
    Ok(c)
}
