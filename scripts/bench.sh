#!/usr/bin/env bash
# make bench: runs the threadspawn benchmark with --smp 8 and --smp 2 (and
# any extra KEY=VALUE given in BENCH_ARGS, e.g. "ns_depth=3 samples=3"),
# and saves under bench/results/<timestamp>/:
#   smp8.log, smp2.log      raw serial logs
#   threadspawn.csv         the summary rows of both runs (one header)
#   threadspawn_linux.csv   Linux's comparisons (exit change, pidmap change)
#   threadspawn_samples.csv every sample attempt (ops/s, host steal, kept)
#   settings.txt            QEMU settings, parameters, host, commit, load
#   threadspawn.png         per --smp: ops/s against workers, and each
#                           strategy's paired ratio to stock (pidlab-plot;
#                           it reads the host's CPUs from settings.txt and
#                           shades the worker counts the host cannot run)
#   boots-smp2.log, threadspawn_boots.csv
#                           the --smp 2, 2-worker run booted BENCH_BOOTS times
#                           (default 3; 1 skips it): each boot's paired
#                           medians and the range over boots, since one boot's
#                           interval says nothing of what changes between boots
#   profile-smp8/, profile-smp2/
#                           the sampling profile (profile=on, docs/profile.md):
#                           folded stacks and flame graphs per version and
#                           worker count, differential graphs from stock; its
#                           tables are at the end of each log. BENCH_PROFILE=0
#                           (or profile=off) runs without it: sampling takes
#                           time from every CPU.
set -euo pipefail
cd "$(dirname "$0")/.."

ts=$(date -u +%Y%m%dT%H%M%SZ)
out=bench/results/$ts
mkdir -p "$out"
args=(${BENCH_ARGS:-})
timeout_s=${BENCH_TIMEOUT:-1800}
profile=${BENCH_PROFILE:-1}
# profile=on unless BENCH_ARGS sets profile= itself (profile=off: no profile).
profile_key=(profile=on)
for a in ${BENCH_ARGS:-}; do
  case $a in
    profile=off) profile=0 ;;
    profile=*) profile_key=() ;;
  esac
done

{
  echo "date: $(date -u +%FT%TZ)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (dirty)')"
  echo "host: $(uname -srm), $(nproc) host CPUs"
  echo "qemu: $(qemu-system-x86_64 --version | head -n 1)"
  echo "runs: --smp 8 and --smp 2, default --accel tcg (multi-threaded), --mem 1G"
  echo "parameters: bench=threadspawn ${args[*]:-}"
  if [ "$profile" != 0 ]; then
    echo "profile: ${profile_key[*]:-as in the parameters}, --profile-dir profile-smp<N>/"
  else
    echo "profile: off (BENCH_PROFILE=0 or profile=off)"
  fi
  echo "host load before: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)"
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
  profiling=()
  if [ "$profile" != 0 ]; then
    profiling=(--profile-dir "$out/profile-smp$smp" "${profile_key[@]}")
  fi
  cargo run -q -- --smp "$smp" --timeout "$timeout_s" "${profiling[@]}" bench=threadspawn "${args[@]}" \
    | tee "$out/smp$smp.log" | grep --line-buffered -E '^threadspawn: (workers|[0-9]+ cpus)|^invariants' || true
  echo "host load after --smp $smp: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)" >> "$out/settings.txt"
  if ! grep -q '^invariants: ok' "$out/smp$smp.log"; then
    echo "bench: the --smp $smp run failed; see $out/smp$smp.log" >&2
    exit 1
  fi
done

# Per family, one header, then every data row of both runs.
csv() { # family header-second-column file
  grep -h "^$1,$2," "$out/smp8.log" | head -n 1 > "$out/$3"
  grep -h "^$1," "$out"/smp*.log | grep -v "^$1,$2," >> "$out/$3" || true
}
csv threadspawn strategy threadspawn.csv
csv threadspawn_linux change threadspawn_linux.csv
csv threadspawn_sample strategy threadspawn_samples.csv
boots=${BENCH_BOOTS:-3}
if [ "$boots" -gt 1 ]; then
  echo "bench: --smp 2, 2 workers, $boots boots (log: $out/boots-smp2.log)"
  cargo run -q -- --smp 2 --timeout "$timeout_s" --boots "$boots" bench=threadspawn workers=2 "${args[@]}" \
    > "$out/boots-smp2.log" 2>&1 || echo "bench: the boots run failed; see $out/boots-smp2.log" >&2
  grep -h '^threadspawn_boots,' "$out/boots-smp2.log" > "$out/threadspawn_boots.csv" || true
fi
target/debug/pidlab-plot "$out/threadspawn.png" "$out/threadspawn.csv" "$out/settings.txt" \
  || echo "bench: no plot drawn (see the message above); the logs and CSV are saved" >&2

echo
for smp in 8 2; do
  sed -n '/^threadspawn summary/,/^$/p' "$out/smp$smp.log"
done
if [ -f "$out/boots-smp2.log" ]; then
  sed -n '/^threadspawn over /,/^threadspawn_boots,change/p' "$out/boots-smp2.log"
fi
grep -h '^host load' "$out/settings.txt"
if [ "$profile" != 0 ]; then
  echo "bench: profiles in $out/profile-smp8/ and profile-smp2/ (tables at the end of each log)"
fi
echo "bench: results in $out"
