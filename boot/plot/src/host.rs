//! Which rows the host could not run at full speed. Under QEMU every
//! vCPU is a host thread; when a run keeps more vCPUs busy than the host
//! has cores, some of them wait for a core whatever the kernel does
//! (the summary's steal), so their ratios measure the host's scheduling
//! as much as the change. The figure shades those worker counts.

use crate::rows::Row;

/// The vCPUs a row keeps busy: its workers under `placement=same` (each
/// thread runs on its creator's CPU), up to twice that under `spread`
/// (each thread runs on another CPU than its creator), never more than
/// the run's CPUs. Without a known placement (older logs), its workers:
/// the least it can be.
pub fn busy_vcpus(row: &Row) -> u32 {
    let busy = match row.placement.as_deref() {
        Some("spread") => row.workers.saturating_mul(2),
        _ => row.workers,
    };
    row.cpus.map_or(busy, |cpus| busy.min(cpus))
}

/// Whether `row`'s busy vCPUs outnumber the host's `host_cpus` cores.
pub fn host_bound(row: &Row, host_cpus: u32) -> bool {
    busy_vcpus(row) > host_cpus
}

/// The host's CPU count as bench.sh records it in `settings.txt`
/// (`host: <uname -srm>, N host CPUs`), if `text` has that line.
pub fn host_cpus_in(text: &str) -> Option<u32> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("host:"))
        .find_map(|l| {
            let count = l.trim_end().strip_suffix(" host CPUs")?;
            count.rsplit([' ', ',']).next()?.parse().ok()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(workers: u32, placement: Option<&str>, cpus: Option<u32>) -> Row {
        Row {
            strategy: "stock".to_string(),
            workers,
            ns_depth: 0,
            ops_per_sec: 1000.0,
            stdev: 10.0,
            cpus,
            placement: placement.map(str::to_string),
            paired: None,
        }
    }

    #[test]
    fn busy_vcpus_follow_the_placement_up_to_the_runs_cpus() {
        assert_eq!(busy_vcpus(&row(4, Some("same"), Some(8))), 4);
        assert_eq!(busy_vcpus(&row(2, Some("spread"), Some(8))), 4);
        assert_eq!(busy_vcpus(&row(8, Some("spread"), Some(8))), 8);
        assert_eq!(busy_vcpus(&row(2, Some("spread"), Some(2))), 2);
        assert_eq!(
            busy_vcpus(&row(3, None, Some(8))),
            3,
            "unknown: the workers"
        );
        assert_eq!(busy_vcpus(&row(3, Some("spread"), None)), 6);
    }

    #[test]
    fn host_bound_when_busy_vcpus_outnumber_host_cores() {
        // A 2-core host: --smp 8 binds at 4 workers placed same, at 2 spread.
        let bound = |w, p, cpus| host_bound(&row(w, Some(p), Some(cpus)), 2);
        assert!(!bound(1, "same", 8));
        assert!(!bound(2, "same", 8), "as many busy vCPUs as cores");
        assert!(bound(4, "same", 8));
        assert!(bound(8, "same", 8));
        assert!(!bound(1, "spread", 8));
        assert!(bound(2, "spread", 8));
        // --smp 2 never outnumbers 2 cores, however placed.
        assert!(!bound(2, "spread", 2));
        assert!(!bound(2, "same", 2));
        // An 8-core host runs all of --smp 8.
        assert!(!host_bound(&row(8, Some("spread"), Some(8)), 8));
    }

    #[test]
    fn the_host_cpu_count_is_read_from_settings_txt() {
        let settings = "\
date: 2026-11-02T10:00:00Z
host: Linux 6.8.0-45-generic x86_64, 2 host CPUs
parameters: bench=threadspawn ns_depth=3
";
        assert_eq!(host_cpus_in(settings), Some(2));
        assert_eq!(
            host_cpus_in("host: Linux 6.1 aarch64, 64 host CPUs\n"),
            Some(64)
        );
        assert_eq!(host_cpus_in("threadspawn,strategy,workers\n"), None);
        assert_eq!(host_cpus_in("host: Linux, many host CPUs\n"), None);
    }
}
