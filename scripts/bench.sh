#!/usr/bin/env bash
# make bench: runs the threadspawn benchmark with --smp 8 and --smp 2 (and
# any extra KEY=VALUE given in BENCH_ARGS, e.g. "ns_depth=3 samples=3"),
# and saves under bench/results/<timestamp>/:
#   smp8.log, smp2.log      raw serial logs
#   threadspawn.csv         the machine-readable rows of both runs
#   settings.txt            QEMU settings, parameters, host, commit
#   threadspawn.png         ops/s against workers per strategy (pidlab-plot)
set -euo pipefail
cd "$(dirname "$0")/.."

ts=$(date -u +%Y%m%dT%H%M%SZ)
out=bench/results/$ts
mkdir -p "$out"
args=(${BENCH_ARGS:-})
timeout_s=${BENCH_TIMEOUT:-1800}

{
  echo "date: $(date -u +%FT%TZ)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (dirty)')"
  echo "host: $(uname -srm), $(nproc) host CPUs"
  echo "qemu: $(qemu-system-x86_64 --version | head -n 1)"
  echo "runs: --smp 8 and --smp 2, default --accel tcg (multi-threaded), --mem 1G"
  echo "parameters: bench=threadspawn ${args[*]:-}"
} > "$out/settings.txt"

cargo build -q -p pidlab-plot
# The plot needs a TrueType font (pidlab-plot looks for DejaVu Sans, or
# PIDLAB_FONT); install it like make setup installs QEMU, when we can.
if [ -z "${PIDLAB_FONT:-}" ] && ! ls /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf \
     /usr/share/fonts/TTF/DejaVuSans.ttf /usr/share/fonts/dejavu/DejaVuSans.ttf >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bench: installing fonts-dejavu-core for the plot"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends fonts-dejavu-core >/dev/null \
      || echo "bench: could not install fonts-dejavu-core; the plot will be skipped" >&2
  fi
fi
for smp in 8 2; do
  echo "bench: --smp $smp (log: $out/smp$smp.log)"
  cargo run -q -- --smp "$smp" --timeout "$timeout_s" bench=threadspawn "${args[@]}" \
    | tee "$out/smp$smp.log" | grep --line-buffered -E '^threadspawn: (workers|[0-9]+ cpus)|^invariants' || true
  if ! grep -q '^invariants: ok' "$out/smp$smp.log"; then
    echo "bench: the --smp $smp run failed; see $out/smp$smp.log" >&2
    exit 1
  fi
done

# One header, then every data row.
grep -h '^threadspawn,strategy,' "$out/smp8.log" | head -n 1 > "$out/threadspawn.csv"
grep -h '^threadspawn,' "$out"/smp*.log | grep -v '^threadspawn,strategy,' >> "$out/threadspawn.csv"
target/debug/pidlab-plot "$out/threadspawn.png" "$out/threadspawn.csv" \
  || echo "bench: no plot drawn (see the message above); the logs and CSV are saved" >&2

echo
for smp in 8 2; do
  sed -n '/^threadspawn summary/,/^$/p' "$out/smp$smp.log"
done
echo "bench: results in $out"
