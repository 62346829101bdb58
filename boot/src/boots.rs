//! `--boots N`: the same command booted N times, and Linux's comparisons
//! read across the boots.
//!
//! One boot's paired interval says how much its rounds disagree; it says
//! nothing about what changes from one boot to the next. So the runner
//! boots again and reports, per comparison and worker count, each boot's
//! median with its interval, the median over boots and the range they
//! span, and whether every boot's median lies inside every other boot's
//! interval (`boots agree`), only within groups of boots of like line
//! transfer (`agree at like line`: where the host ran the two vCPUs
//! changes what a change saves), or not (`boots differ`). Beside it: each
//! boot's line transfer, and whether every boot started the benchmark with
//! the guest's objects in the same places (its `layout` line).

use std::collections::BTreeMap;
use std::fmt::Write;

use pidlab_abi::comparisons::COMPARISONS;

/// One `threadspawn_linux` row: a comparison at a worker count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinuxRow {
    pub change: String,
    pub workers: u32,
    /// Paired median and interval, in parts per 10,000.
    pub ratio: u64,
    pub lo: u64,
    pub hi: u64,
    /// `inside`, `outside`, `few` or `host-bound`.
    pub noise: String,
}

/// The data rows of CSV family `family` in a run's serial output, each as
/// a lookup by the column names of the family's header row (the one whose
/// second field is `key`); rows before a header are skipped.
fn family_rows<'a>(
    serial: &'a str,
    family: &str,
    key: &str,
) -> impl Iterator<Item = impl Fn(&str) -> Option<&'a str>> {
    let prefix = format!("{family},");
    let mut cols: Option<Vec<&'a str>> = None;
    serial.lines().filter_map(move |line| {
        if !line.starts_with(&prefix) {
            return None;
        }
        let fields: Vec<&'a str> = line.split(',').collect();
        if fields.get(1) == Some(&key) {
            cols = Some(fields);
            return None;
        }
        let cols = cols.clone()?;
        Some(move |name: &str| {
            cols.iter()
                .position(|c| *c == name)
                .and_then(|i| fields.get(i).copied())
        })
    })
}

/// The `threadspawn_linux` rows of a run's serial output (by the header's
/// column names; rows that do not parse are skipped).
pub fn linux_rows(serial: &str) -> Vec<LinuxRow> {
    let mut rows = Vec::new();
    for get in family_rows(serial, "threadspawn_linux", "change") {
        let num = |name: &str| get(name).and_then(|v| v.parse::<u64>().ok());
        if let (Some(change), Some(workers), Some(ratio), Some(lo), Some(hi), Some(noise)) = (
            get("change"),
            get("workers").and_then(|w| w.parse().ok()),
            num("ratio_x10000"),
            num("paired_lo_x10000"),
            num("paired_hi_x10000"),
            get("noise"),
        ) {
            rows.push(LinuxRow {
                change: change.to_string(),
                workers,
                ratio,
                lo,
                hi,
                noise: noise.to_string(),
            });
        }
    }
    rows
}

fn x(v: u64) -> String {
    format!("{}.{:03}x", v / 10_000, v % 10_000 / 10)
}

/// Whether a line transfer of `ns` is "like" `low` (the lower one): within
/// 1.5x of it. The two host placements seen here read about 150 and 345
/// ns, so 1.5x tells them apart.
fn like_line(low: u64, ns: u64) -> bool {
    ns * 2 < low * 3
}

/// Boots whose line transfers are [`like_line`] the smallest in their
/// group. `lines[i]` is boot `i`'s; boots without one are left out. Groups
/// are in order of line, boots in each in order of number.
fn like_line_groups(lines: &[Option<u64>]) -> Vec<Vec<usize>> {
    let mut known: Vec<(u64, usize)> = lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| l.map(|ns| (ns, i)))
        .collect();
    known.sort_unstable();
    let mut groups: Vec<(u64, Vec<usize>)> = Vec::new();
    for (ns, i) in known {
        match groups.last_mut() {
            Some((first, g)) if like_line(*first, ns) => g.push(i),
            _ => groups.push((ns, vec![i])),
        }
    }
    groups
        .into_iter()
        .map(|(_, mut g)| {
            g.sort_unstable();
            g
        })
        .collect()
}

/// Whether every row's median lies in every other's interval.
fn all_agree(rows: &[&LinuxRow]) -> bool {
    rows.iter()
        .all(|a| rows.iter().all(|b| (b.lo..=b.hi).contains(&a.ratio)))
}

/// The report over boots: a table for people and `threadspawn_boots` rows.
/// `lines` holds each boot's [`line_medians`]: boots that differ are
/// compared again within groups of like line transfer (the host's
/// placement of the two vCPUs changes what a change saves).
/// `rounds` holds each boot's [`round_ratios`]: whether the boots' rounds
/// could come from one distribution ([`rounds_alike_p`]) is printed beside.
pub fn summary(
    boots: &[Vec<LinuxRow>],
    lines: &[BTreeMap<u32, u64>],
    rounds: &[BTreeMap<(u32, String), Vec<Round>>],
) -> String {
    let mut by: BTreeMap<(u32, String), Vec<(usize, &LinuxRow)>> = BTreeMap::new();
    for (boot, rows) in boots.iter().enumerate() {
        for r in rows {
            by.entry((r.workers, r.change.clone()))
                .or_default()
                .push((boot, r));
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "threadspawn over {} boots (each boot's paired median [interval]; the median over boots and their range; boots agree when every boot's median lies in every other's interval, agree at like line when they do within each group of boots of like line transfer, closer and farther placements listed apart):",
        boots.len()
    );
    let mut csv = Vec::new();
    for ((workers, change), indexed) in &by {
        let rows: Vec<&LinuxRow> = indexed.iter().map(|&(_, r)| r).collect();
        let per: Vec<String> = rows
            .iter()
            .map(|r| format!("{} [{}, {}]", x(r.ratio), x(r.lo), x(r.hi)))
            .collect();
        let mut medians: Vec<u64> = rows.iter().map(|r| r.ratio).collect();
        medians.sort_unstable();
        let mid = medians[medians.len() / 2];
        let (min, max) = (medians[0], medians[medians.len() - 1]);
        let host_bound = rows.iter().any(|r| r.noise == "host-bound");
        let groups = like_line_groups(
            &indexed
                .iter()
                .map(|&(b, _)| lines.get(b).and_then(|l| l.get(workers)).copied())
                .collect::<Vec<_>>(),
        );
        // Differing boots that agree within every group of like line,
        // with two groups or more and one of two boots or more.
        let like_line = groups.len() >= 2
            && groups.iter().any(|g| g.len() >= 2)
            && groups.iter().map(|g| g.len()).sum::<usize>() == rows.len()
            && groups
                .iter()
                .all(|g| all_agree(&g.iter().map(|&i| rows[i]).collect::<Vec<_>>()));
        let verdict = if host_bound {
            "host-bound"
        } else if rows.len() < boots.len() {
            "missing in some boots"
        } else if all_agree(&rows) {
            "boots agree"
        } else if like_line {
            "agree at like line"
        } else {
            "boots differ"
        };
        let key = (*workers, change.clone());
        let boot_rounds: Vec<&[Round]> = rounds
            .iter()
            .filter_map(|b| b.get(&key).map(|v| v.as_slice()))
            .collect();
        let p = if host_bound || boot_rounds.len() < boots.len() {
            None
        } else {
            rounds_alike_p(&boot_rounds)
        };
        let alike = match p {
            Some(p) if p < 0.05 => format!("; rounds differ across boots (p {p:.3})"),
            Some(p) => format!("; rounds alike across boots (p {p:.3})"),
            None => String::new(),
        };
        let p_x1000 = p.map_or(String::new(), |p| {
            format!("{}", (p * 1000.0).round() as u64)
        });
        let which = if verdict == "agree at like line" {
            let g: Vec<String> = groups
                .iter()
                .map(|g| {
                    g.iter()
                        .map(|&i| (indexed[i].0 + 1).to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .collect();
            format!(" (boots {})", g.join(" | "))
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "{workers:>7} {change:<8} {}  over boots {} [{}, {}]  {verdict}{which}{alike}",
            per.join("  "),
            x(mid),
            x(min),
            x(max)
        );
        for (i, r) in rows.iter().enumerate() {
            csv.push(format!(
                "threadspawn_boots,{change},{workers},{},{},{},{},{mid},{min},{max},{verdict},{p_x1000}",
                i + 1,
                r.ratio,
                r.lo,
                r.hi
            ));
        }
    }
    let _ = writeln!(
        out,
        "threadspawn_boots,change,workers,boot,ratio_x10000,lo_x10000,hi_x10000,median_over_boots_x10000,min_over_boots_x10000,max_over_boots_x10000,verdict,rounds_alike_p_x1000"
    );
    for r in csv {
        let _ = writeln!(out, "{r}");
    }
    out
}

/// Each worker count's line transfer in one boot: the median over versions
/// of their `threadspawn_line` medians (a cache line's round trip between
/// CPUs 0 and 1, ns), by worker count.
pub fn line_medians(serial: &str) -> BTreeMap<u32, u64> {
    let mut by: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for get in family_rows(serial, "threadspawn_line", "strategy") {
        let num = |name: &str| get(name).and_then(|v| v.parse::<u64>().ok());
        if let (Some(w), Some(ns)) = (num("workers"), num("line_ns_median")) {
            by.entry(w as u32).or_default().push(ns);
        }
    }
    by.into_iter()
        .map(|(w, mut v)| {
            v.sort_unstable();
            (w, v[v.len() / 2])
        })
        .collect()
}

/// Beside [`summary`]: each boot's line transfer per worker count, so a
/// boot whose host ran the two vCPUs farther apart shows as such.
pub fn line_summary(boots: &[BTreeMap<u32, u64>]) -> String {
    let mut workers: Vec<u32> = boots.iter().flat_map(|b| b.keys().copied()).collect();
    workers.sort_unstable();
    workers.dedup();
    if workers.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "line transfer per boot (a cache line's round trip between CPUs 0 and 1, ns: the median over versions of each version's median; where the host ran the two vCPU threads):\n",
    );
    let mut csv = Vec::new();
    for w in workers {
        let per: Vec<String> = boots
            .iter()
            .enumerate()
            .map(|(i, b)| match b.get(&w) {
                Some(ns) => {
                    csv.push(format!("threadspawn_boots_line,{w},{},{ns}", i + 1));
                    format!("{ns}")
                }
                None => String::from("-"),
            })
            .collect();
        let present: Vec<u64> = boots.iter().filter_map(|b| b.get(&w).copied()).collect();
        let (lo, hi) = (
            present.iter().copied().min().unwrap_or(0),
            present.iter().copied().max().unwrap_or(0),
        );
        let note = if lo > 0 && !like_line(lo, hi) {
            format!(
                "  (boots {:.1}x apart: the host ran the two vCPUs closer in some; compare boots of like line)",
                hi as f64 / lo as f64
            )
        } else {
            String::new()
        };
        let _ = writeln!(out, "{w:>7} workers: {}{note}", per.join(", "));
    }
    let _ = writeln!(out, "threadspawn_boots_line,workers,boot,line_ns");
    for r in csv {
        let _ = writeln!(out, "{r}");
    }
    out
}

/// One round of one comparison in one boot.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Round {
    /// The version with the change over the one without, ops/s.
    pub ratio: f64,
    /// The highest line transfer read around the two versions' halves
    /// (ns), with two workers or more.
    pub line_ns: Option<u64>,
}

/// Each comparison's rounds in one boot, by (workers, change), from the
/// kept `threadspawn_sample` attempts (a round's halves weighted by
/// length, as the kernel joins them), rounds in order.
pub fn round_ratios(serial: &str) -> BTreeMap<(u32, String), Vec<Round>> {
    // (workers, round, strategy) -> (sum of ops/s x ms, sum of ms, line)
    type Halves = (f64, f64, Option<u64>);
    let mut ops: BTreeMap<(u32, u32, String), Halves> = BTreeMap::new();
    for get in family_rows(serial, "threadspawn_sample", "strategy") {
        let num = |name: &str| get(name).and_then(|v| v.parse::<f64>().ok());
        if get("kept") != Some("yes") {
            continue;
        }
        if let (Some(s), Some(w), Some(r), Some(o), Some(ms)) = (
            get("strategy"),
            num("workers"),
            num("round"),
            num("ops_per_sec"),
            num("ms"),
        ) {
            let e = ops.entry((w as u32, r as u32, s.to_string())).or_default();
            e.0 += o * ms;
            e.1 += ms;
            let line = get("line_ns").and_then(|v| v.parse::<u64>().ok());
            e.2 = e.2.max(line);
        }
    }
    let mut out: BTreeMap<(u32, String), Vec<Round>> = BTreeMap::new();
    for (&(w, r, ref s), &(a, ms, line_a)) in &ops {
        for c in COMPARISONS.iter().filter(|c| c.with == s) {
            if let Some(&(b, ms_b, line_b)) = ops.get(&(w, r, c.without.to_string()))
                && b > 0.0
                && ms > 0.0
            {
                out.entry((w, c.change.to_string()))
                    .or_default()
                    .push(Round {
                        ratio: (a / ms) / (b / ms_b),
                        line_ns: line_a.max(line_b),
                    });
            }
        }
    }
    out
}

/// Kruskal-Wallis H of `groups` (ranks over all values pooled; ties get
/// their order of appearance, as ratios of ops/s rarely tie).
fn kruskal_h(groups: &[&[f64]]) -> f64 {
    let mut all: Vec<(f64, usize)> = groups
        .iter()
        .enumerate()
        .flat_map(|(g, v)| v.iter().map(move |&x| (x, g)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = all.len() as f64;
    let mut rank_sum = vec![0.0; groups.len()];
    for (rank, &(_, g)) in all.iter().enumerate() {
        rank_sum[g] += rank as f64 + 1.0;
    }
    12.0 / (n * (n + 1.0))
        * groups
            .iter()
            .zip(&rank_sum)
            .map(|(v, &r)| {
                let m = v.len() as f64;
                m * (r / m - (n + 1.0) / 2.0).powi(2)
            })
            .sum::<f64>()
}

/// Permutations in [`rounds_alike_p`].
const PERMUTATIONS: u32 = 2000;

/// Whether the boots' rounds could come from one distribution, rounds of
/// like line transfer compared with each other: the permutation p-value
/// of the Kruskal-Wallis H summed over two strata, rounds whose line is
/// within 1.5x of the lowest any round read ("near") and the rest
/// ("far"), boots relabelled at random within each stratum (the share of
/// relabellings whose sum is at least the boots'). Where the host runs
/// the two vCPUs changes what a change saves, so a boot that spent more
/// of its rounds far apart reads higher without anything else differing;
/// the strata keep that out. Rounds without a line (one worker) form one
/// stratum. A stratum counts where two boots or more have two rounds or
/// more in it. A fixed-seed generator: the same rounds give the same p.
/// `None` when no stratum counts.
///
/// Why this and not "every median inside every other boot's interval":
/// with 12 rounds per boot, three boots drawn from one and the same
/// distribution pass that check only about 6 times in 10 per comparison
/// (2 in 10 for three comparisons), so it cannot tell a boot effect from
/// chance.
pub fn rounds_alike_p(boots: &[&[Round]]) -> Option<f64> {
    let lowest = boots
        .iter()
        .flat_map(|b| b.iter().filter_map(|r| r.line_ns))
        .min();
    let near = |r: &Round| match (r.line_ns, lowest) {
        (Some(l), Some(low)) => like_line(low, l),
        _ => true,
    };
    // Per stratum, each boot's ratios there (boots with two or more).
    let strata: Vec<Vec<Vec<f64>>> = [true, false]
        .into_iter()
        .map(|want| {
            boots
                .iter()
                .map(|b| {
                    b.iter()
                        .filter(|r| near(r) == want)
                        .map(|r| r.ratio)
                        .collect::<Vec<f64>>()
                })
                .filter(|g| g.len() >= 2)
                .collect::<Vec<_>>()
        })
        .filter(|groups| groups.len() >= 2)
        .collect();
    if strata.is_empty() {
        return None;
    }
    let total_h = |strata: &[Vec<Vec<f64>>]| -> f64 {
        strata
            .iter()
            .map(|groups| kruskal_h(&groups.iter().map(|g| g.as_slice()).collect::<Vec<_>>()))
            .sum()
    };
    let observed = total_h(&strata);
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |bound: usize| {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % bound
    };
    let mut shuffled = strata.clone();
    let mut at_least = 0u32;
    for _ in 0..PERMUTATIONS {
        for (groups, orig) in shuffled.iter_mut().zip(&strata) {
            let mut pool: Vec<f64> = orig.iter().flatten().copied().collect();
            for i in (1..pool.len()).rev() {
                pool.swap(i, next(i + 1));
            }
            let mut rest = pool.as_slice();
            for g in groups.iter_mut() {
                let (head, tail) = rest.split_at(g.len());
                g.copy_from_slice(head);
                rest = tail;
            }
        }
        if total_h(&shuffled) >= observed - 1e-12 {
            at_least += 1;
        }
    }
    Some((at_least as f64 + 1.0) / (PERMUTATIONS as f64 + 1.0))
}

/// The guest's layout line of one boot (`threadspawn: layout ...`, without
/// its explanation), if it printed one.
pub fn layout(serial: &str) -> Option<String> {
    serial.lines().find_map(|l| {
        let rest = l.trim_end().strip_prefix("threadspawn: layout ")?;
        Some(rest.split(" (").next().unwrap_or(rest).to_string())
    })
}

/// Whether the boots placed the hot objects alike: one line, saying so or
/// naming the boots that differ from the first. Empty when no boot
/// printed a layout.
pub fn layout_summary(boots: &[Option<String>]) -> String {
    let Some(first) = boots.iter().flatten().next() else {
        return String::new();
    };
    let differ: Vec<String> = boots
        .iter()
        .enumerate()
        .filter(|(_, l)| l.as_ref() != Some(first))
        .map(|(i, l)| format!("boot {}: {}", i + 1, l.as_deref().unwrap_or("none")))
        .collect();
    if differ.is_empty() {
        format!(
            "guest layout: the same in every boot ({first}): each started the benchmark with the guest's objects in the same places\n"
        )
    } else {
        format!(
            "guest layout: boot 1: {first}; differs in {}\n",
            differ.join("; ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a line of `s` contains `part` and ends with `end`.
    fn has_line(s: &str, part: &str, end: &str) -> bool {
        s.lines().any(|l| l.contains(part) && l.ends_with(end))
    }

    const RUN: &str = "\
threadspawn_linux,change,workers,ns_depth,ratio_x10000,spread_x10000,noise,paired_lo_x10000,paired_hi_x10000,rounds
threadspawn_linux,exit,2,0,11180,500,outside,10680,11600,30
threadspawn_linux,pidmap,2,0,10290,400,inside,9970,10690,30
threadspawn_linux,exit,8,0,15000,9000,host-bound,9000,24000,30
threadspawn_linux,garbage
";

    #[test]
    fn rows_are_read_by_column_name() {
        let rows = linux_rows(RUN);
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[0],
            LinuxRow {
                change: "exit".into(),
                workers: 2,
                ratio: 11180,
                lo: 10680,
                hi: 11600,
                noise: "outside".into()
            }
        );
    }

    #[test]
    fn boots_agree_when_each_median_is_in_every_interval() {
        let a = linux_rows(RUN);
        let mut b = a.clone();
        b[0].ratio = 10700; // inside a's [10680, 11600] and its own
        b[0].lo = 10300;
        let s = summary(&[a.clone(), b.clone()], &[], &[]);
        assert!(has_line(&s, "exit", "boots agree"), "{s}");
        let mut c = a.clone();
        c[0].ratio = 10330;
        c[0].lo = 10000;
        c[0].hi = 10650;
        let s = summary(&[a.clone(), c], &[], &[]);
        assert!(has_line(&s, " exit", "boots differ"), "{s}");
        assert!(has_line(&s, "8 exit", "host-bound"), "{s}");
        assert!(s.contains("threadspawn_boots,exit,2,2,10330,"), "{s}");
        assert!(s.contains("over boots 1.118x [1.033x, 1.118x]"), "{s}");
    }

    #[test]
    fn differing_boots_are_compared_again_within_like_line() {
        let a = linux_rows(RUN);
        // Boot 2 reads exit lower, outside boot 1's interval; boot 3 agrees
        // with boot 2.
        let mut b = a.clone();
        (b[0].ratio, b[0].lo, b[0].hi) = (10330, 10000, 10650);
        let c = b.clone();
        let line = |ns: u64| BTreeMap::from([(2, ns)]);
        // Boot 1 far (345 ns), boots 2 and 3 close (150, 170): each group
        // agrees within itself.
        let s = summary(
            &[a.clone(), b.clone(), c.clone()],
            &[line(345), line(150), line(170)],
            &[],
        );
        assert!(
            has_line(&s, " exit", "agree at like line (boots 2, 3 | 1)"),
            "{s}"
        );
        assert!(s.contains("threadspawn_boots,exit,2,1,11180,10680,11600,10330,10330,11180,agree at like line,\n"), "{s}");
        // All three of like line: they differ, whatever the groups.
        let s = summary(
            &[a.clone(), b.clone(), c.clone()],
            &[line(150), line(160), line(170)],
            &[],
        );
        assert!(has_line(&s, " exit", "boots differ"), "{s}");
        // Each boot a group of its own: nothing to compare within.
        let s = summary(&[a.clone(), b.clone()], &[line(150), line(345)], &[]);
        assert!(has_line(&s, " exit", "boots differ"), "{s}");
        // A boot without a line: not grouped, so not "agree at like line".
        let s = summary(&[a, b, c], &[BTreeMap::new(), line(150), line(170)], &[]);
        assert!(has_line(&s, " exit", "boots differ"), "{s}");
        assert_eq!(
            like_line_groups(&[Some(345), Some(150), None, Some(224), Some(240)]),
            vec![vec![1, 3], vec![0, 4]]
        );
    }

    #[test]
    fn line_medians_take_the_middle_version_per_worker_count() {
        let serial = "\
threadspawn_line,strategy,workers,line_ns_median,line_ns_p10,line_ns_p90,ops_line_corr_x100
threadspawn_line,stock,2,400,150,600,-55
threadspawn_line,both,2,180,150,500,-40
threadspawn_line,v7.0,2,390,160,610,
threadspawn_line,stock,4,700,300,900,-10
";
        let m = line_medians(serial);
        assert_eq!(m.into_iter().collect::<Vec<_>>(), [(2, 390), (4, 700)]);
        let boots = [line_medians(serial), BTreeMap::from([(2, 170)])];
        let out = line_summary(&boots);
        assert!(
            out.contains("      2 workers: 390, 170  (boots 2.3x apart: the host ran the two vCPUs closer in some; compare boots of like line)\n"),
            "{out}"
        );
        assert!(out.contains("      4 workers: 700, -\n"), "{out}");
        assert!(out.contains("threadspawn_boots_line,2,2,170\n"), "{out}");
        // Within 1.5x of each other: no note.
        let out = line_summary(&[BTreeMap::from([(2, 300)]), BTreeMap::from([(2, 210)])]);
        assert!(out.contains("      2 workers: 300, 210\n"), "{out}");
        // One worker has no line rows: nothing to print.
        assert_eq!(line_summary(&[BTreeMap::new()]), "");
    }

    #[test]
    fn layouts_are_compared_across_boots() {
        let serial = "x\nthreadspawn: layout ns 0x10, task 0x20, stack 0x30, heap used 99 (the same in every boot of this kernel and command)\n";
        let l = layout(serial);
        assert_eq!(
            l.as_deref(),
            Some("ns 0x10, task 0x20, stack 0x30, heap used 99")
        );
        assert_eq!(layout("no such line\n"), None);
        let same = layout_summary(&[l.clone(), l.clone(), l.clone()]);
        assert!(
            same.starts_with("guest layout: the same in every boot (ns 0x10,"),
            "{same}"
        );
        let other = Some(String::from("ns 0x10, task 0x40, stack 0x30, heap used 99"));
        let differ = layout_summary(&[l.clone(), other, None]);
        assert!(
            differ.contains(
                "differs in boot 2: ns 0x10, task 0x40, stack 0x30, heap used 99; boot 3: none"
            ),
            "{differ}"
        );
        assert_eq!(layout_summary(&[None, None]), "");
    }

    #[test]
    fn round_ratios_join_halves_and_pair_each_change() {
        let serial = "\
threadspawn_sample,strategy,workers,ns_depth,round,attempt,ops_per_sec,steal_pct,kept,placement,cpus,accel,position,half,ms,line_ns
threadspawn_sample,stock,2,0,1,1,100,0,yes,same,2,tcg,1,1,100,150
threadspawn_sample,stock,2,0,1,1,300,0,yes,same,2,tcg,4,2,100,150
threadspawn_sample,exit-deferred,2,0,1,1,999,0,no,same,2,tcg,2,1,100,150
threadspawn_sample,exit-deferred,2,0,1,2,220,0,yes,same,2,tcg,2,1,100,150
threadspawn_sample,exit-deferred,2,0,1,1,220,0,yes,same,2,tcg,3,2,100,150
";
        let r = round_ratios(serial);
        // (220 + 220) / 2 against (100 + 300) / 2; the dropped attempt
        // left out; no `both`, so no pidmap.
        assert_eq!(r.len(), 1, "{r:?}");
        let exit = &r[&(2, String::from("exit"))];
        assert_eq!(exit.len(), 1);
        assert!((exit[0].ratio - 1.1).abs() < 1e-9, "{exit:?}");
        assert_eq!(exit[0].line_ns, Some(150));
    }

    fn rounds(ratios: impl Iterator<Item = f64>, line: Option<u64>) -> Vec<Round> {
        ratios
            .map(|ratio| Round {
                ratio,
                line_ns: line,
            })
            .collect()
    }

    #[test]
    fn the_rounds_test_tells_a_shifted_boot_from_chance() {
        let a = rounds((0..12).map(|i| 1.0 + i as f64 * 0.01), None);
        let b = rounds((0..12).map(|i| 1.005 + i as f64 * 0.01), None);
        let c = rounds((0..12).map(|i| 1.2 + i as f64 * 0.01), None);
        let alike = rounds_alike_p(&[&a, &b, &a]).expect("a p");
        assert!(alike > 0.5, "{alike}");
        let shifted = rounds_alike_p(&[&a, &b, &c]).expect("a p");
        assert!(shifted < 0.01, "{shifted}");
        // Deterministic: the same rounds, the same p.
        assert_eq!(rounds_alike_p(&[&a, &b, &c]), Some(shifted));
        assert_eq!(rounds_alike_p(&[&a]), None);
        assert_eq!(rounds_alike_p(&[&a, &a[..1]]), None);
        // In the report, beside the verdict, and as a CSV column.
        let rows = linux_rows(RUN);
        let boots = [rows.clone(), rows.clone(), rows];
        let by_boot: Vec<BTreeMap<(u32, String), Vec<Round>>> = [&a, &b, &c]
            .iter()
            .map(|v| BTreeMap::from([((2, String::from("exit")), v.to_vec())]))
            .collect();
        let s = summary(&boots, &[], &by_boot);
        assert!(
            s.contains("boots agree; rounds differ across boots (p 0.00"),
            "{s}"
        );
        assert!(
            s.contains(
                "threadspawn_boots,exit,2,1,11180,10680,11600,11180,11180,11180,boots agree,0\n"
            ),
            "{s}"
        );
        assert!(
            s.contains(
                "threadspawn_boots,pidmap,2,1,10290,9970,10690,10290,10290,10290,boots agree,\n"
            ),
            "{s}"
        );
    }

    #[test]
    fn rounds_are_compared_within_like_line() {
        // Every boot reads 1.00-1.11 near (150-160 ns) and 1.10-1.21 far
        // (345 ns); boot 3 spent most of its rounds far.
        let near = |from: f64| rounds((0..12).map(move |i| from + i as f64 * 0.01), Some(150));
        let far = |from: f64| rounds((0..12).map(move |i| from + i as f64 * 0.01), Some(345));
        let mut a = near(1.0);
        a.extend(far(1.1).into_iter().step_by(4));
        let mut b = near(1.005);
        b.extend(far(1.105).into_iter().step_by(4));
        let mut c: Vec<Round> = near(1.0).into_iter().step_by(4).collect();
        c.extend(far(1.1));
        let p = rounds_alike_p(&[&a, &b, &c]).expect("a p");
        assert!(p > 0.2, "like-line rounds alike, yet p {p}");
        // The same ratios with no line to tell them apart: boot 3 stands out.
        let plain = |v: &[Round]| -> Vec<Round> {
            v.iter()
                .map(|r| Round {
                    line_ns: None,
                    ..*r
                })
                .collect()
        };
        let p = rounds_alike_p(&[&plain(&a), &plain(&b), &plain(&c)]).expect("a p");
        assert!(p < 0.01, "{p}");
        // A boot whose near rounds read higher differs, at like line too.
        let mut d = near(1.08);
        d.extend(far(1.1).into_iter().step_by(4));
        let p = rounds_alike_p(&[&a, &b, &d]).expect("a p");
        assert!(p < 0.01, "{p}");
        // Only one boot with rounds in a stratum: that stratum is left out;
        // none left, no p.
        assert_eq!(rounds_alike_p(&[&near(1.0), &far(1.1)]), None);
    }
}
