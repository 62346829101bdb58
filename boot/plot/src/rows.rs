//! Reading `threadspawn,...` rows (a serial log or the CSV extracted from
//! it) by their header's column names, so older and newer logs both work:
//! columns a log lacks (paired ratios, placement) are `None`, and columns
//! this tool does not use, or fields past the header's last, are skipped.
//! A strategy is any name: an unknown one is plotted like the others.

/// One `threadspawn` row: the fields the plot needs.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub strategy: String,
    pub workers: u32,
    pub ns_depth: u32,
    pub ops_per_sec: f64,
    pub stdev: f64,
    pub cpus: Option<u32>,
    pub placement: Option<String>,
    /// Median of the rounds' ratios to stock and its interval (1.0 = same).
    pub paired: Option<Paired>,
}

/// A paired ratio to stock with its interval, as plain ratios.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Paired {
    pub ratio: f64,
    pub lo: f64,
    pub hi: f64,
}

impl Row {
    /// What tells apart rows of one strategy and CPU count: namespace
    /// depth and placement, shown only when the inputs have several.
    pub fn variant(&self, many_depths: bool, many_placements: bool) -> String {
        let mut v = String::new();
        if many_placements && let Some(p) = &self.placement {
            v.push_str(p);
        }
        if many_depths {
            if !v.is_empty() {
                v.push(' ');
            }
            v.push_str(&format!("depth {}", self.ns_depth));
        }
        v
    }
}

/// Parses every `threadspawn,` data row of `text`, using its header row to
/// find the columns. Errors name the line.
pub fn parse_rows(text: &str) -> Result<Vec<Row>, String> {
    let mut columns: Option<Vec<&str>> = None;
    let mut rows = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if !line.starts_with("threadspawn,") {
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        if fields.get(1) == Some(&"strategy") {
            columns = Some(fields);
            continue;
        }
        let cols = columns
            .as_ref()
            .ok_or_else(|| format!("line {}: data row before the header row", n + 1))?;
        let find = |name: &str| -> Option<&str> {
            let i = cols.iter().position(|c| *c == name)?;
            fields.get(i).copied()
        };
        let get = |name: &str| -> Result<&str, String> {
            if !cols.contains(&name) {
                return Err(format!("header has no `{name}` column"));
            }
            find(name).ok_or_else(|| format!("line {}: no `{name}` field", n + 1))
        };
        let num = |name: &str| -> Result<f64, String> {
            get(name)?
                .parse::<f64>()
                .map_err(|_| format!("line {}: `{name}` is not a number", n + 1))
        };
        let x10000 = |name: &str| find(name)?.parse::<f64>().ok().map(|v| v / 10_000.0);
        let paired = match (
            x10000("paired_ratio_x10000"),
            x10000("paired_lo_x10000"),
            x10000("paired_hi_x10000"),
        ) {
            (Some(ratio), Some(lo), Some(hi)) => Some(Paired { ratio, lo, hi }),
            _ => None,
        };
        rows.push(Row {
            strategy: get("strategy")?.to_string(),
            workers: num("workers")? as u32,
            ns_depth: num("ns_depth")? as u32,
            ops_per_sec: num("ops_per_sec")?,
            stdev: num("stdev")?,
            cpus: find("cpus").and_then(|c| c.parse().ok()),
            placement: find("placement").map(str::to_string),
            paired,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD_LOG: &str = "\
boot noise
threadspawn,strategy,workers,ns_depth,ops_per_sec,stdev,samples,cpus
threadspawn,stock,1,0,1000,10,5,8
threadspawn,both,2,0,2500.5,20,5,8
other line
";

    const NEW_LOG: &str = "\
threadspawn,strategy,workers,ns_depth,ops_per_sec,stdev,paired_ratio_x10000,paired_lo_x10000,paired_hi_x10000,placement,cpus
threadspawn,both,2,3,2500,20,11000,10500,11800,spread,2
threadspawn,pidmap-once,1,3,900,20,,,,same,2
threadspawn_linux,change,workers
threadspawn_linux,exit,2
";

    #[test]
    fn rows_are_read_by_header_names() {
        let rows = parse_rows(OLD_LOG).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].strategy, "both");
        assert_eq!(rows[1].workers, 2);
        assert_eq!(rows[1].ops_per_sec, 2500.5);
        assert_eq!(rows[0].cpus, Some(8));
        assert_eq!((rows[0].paired, rows[0].placement.as_deref()), (None, None));
    }

    #[test]
    fn paired_ratios_and_placement_when_present() {
        let rows = parse_rows(NEW_LOG).unwrap();
        assert_eq!(rows.len(), 2, "threadspawn_linux rows are not plotted");
        assert_eq!(
            rows[0].paired,
            Some(Paired {
                ratio: 1.1,
                lo: 1.05,
                hi: 1.18
            })
        );
        assert_eq!(rows[0].placement.as_deref(), Some("spread"));
        assert_eq!(rows[1].paired, None, "empty fields: no paired ratio");
        assert_eq!(rows[0].variant(true, true), "spread depth 3");
        assert_eq!(rows[0].variant(false, false), "");
    }

    /// A log of today's benchmark: more columns after `placement,cpus`
    /// (`css_acq_per_op` last), the versions as the kernel names them, one
    /// this tool does not know, a row with a column its header lacks, and
    /// the other row families (`pidfs` among Linux's comparisons).
    const LOG_WITH_MORE_COLUMNS: &str = "\
threadspawn: versions: stock = Linux 6.14, v7.0 = Linux 7.0
threadspawn,strategy,workers,ns_depth,ops_per_sec,stdev,samples,min,max,ratio_to_stock_x10000,ratio_spread_x10000,paired_ratio_x10000,paired_lo_x10000,paired_hi_x10000,paired_coverage_x10000,noise,pidmap_acq_per_op,tasklist_acq_per_op,contended_x10000,wait_cycles_per_acq,hold_cycles_per_acq,steal_pct,steal_max_pct,reruns,placement,cpus,accel,lock,css_acq_per_op
threadspawn,stock,4,0,7257,1328,6,5000,9000,10000,0,10000,10000,10000,9687,-,3.00,-,,,,88.44,90.01,3,same,8,tcg,tas,3.00
threadspawn,v7.0,4,0,9100,900,6,8000,9900,12540,1500,12500,11000,14100,9687,outside,2.00,-,,,,80.10,85.00,2,same,8,tcg,tas,3.00
threadspawn,lockless,4,0,9900,700,6,9000,10500,13640,1500,13600,12000,15000,9687,outside,0.00,-,,,,80.10,85.00,2,same,8,tcg,tas,3.00,later
threadspawn,next-version,4,0,9000,700,6,8000,9500,12400,1500,12400,11000,14000,9687,outside,1.00,-,,,,80.10,85.00,2,same,8,tcg,tas,2.00
threadspawn_linux,change,workers,ns_depth,ratio_x10000,spread_x10000,noise,paired_lo_x10000,paired_hi_x10000,rounds,paired_coverage_x10000,ratio_of_means_x10000,placement,cpus,accel
threadspawn_linux,pidfs,4,0,10100,900,inside,9400,11000,6,9687,10080,same,8,tcg
threadspawn_sample,strategy,workers,ns_depth,round,attempt,ops_per_sec,steal_pct,kept,placement,cpus,accel
threadspawn_sample,v7.0,4,0,1,1,9000,80.00,yes,same,8,tcg
";

    #[test]
    fn added_columns_and_unknown_strategies_are_read() {
        let rows = parse_rows(LOG_WITH_MORE_COLUMNS).unwrap();
        let names: Vec<&str> = rows.iter().map(|r| r.strategy.as_str()).collect();
        assert_eq!(names, ["stock", "v7.0", "lockless", "next-version"]);
        assert!(rows.iter().all(|r| r.cpus == Some(8) && r.workers == 4));
        assert_eq!(rows[1].placement.as_deref(), Some("same"));
        assert_eq!(
            rows[1].paired,
            Some(Paired {
                ratio: 1.25,
                lo: 1.1,
                hi: 1.41
            })
        );
        assert_eq!(
            rows[2].ops_per_sec, 9900.0,
            "an extra trailing field is ignored"
        );
    }

    #[test]
    fn malformed_input_is_an_error_naming_the_line() {
        let e = parse_rows("threadspawn,stock,1,0,1,1\n").unwrap_err();
        assert!(e.contains("before the header"), "{e}");
        let e = parse_rows(
            "threadspawn,strategy,workers,ns_depth,ops_per_sec,stdev\nthreadspawn,stock,x,0,1,1\n",
        )
        .unwrap_err();
        assert!(e.contains("line 2") && e.contains("workers"), "{e}");
    }
}
