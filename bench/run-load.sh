#!/usr/bin/env bash
# The load test of issue 7: builds the release binaries, then runs the
# driver, which starts omnid (bench/omnid-load.toml) and the fixed-JSON
# hyper floor on 127.0.0.1, runs every scenario bounded in time (about
# seven minutes in all) and writes bench/results/load-report.md and
# bench/results/load-raw.json.
#
#   bench/run-load.sh                   # everything
#   bench/run-load.sh --quick           # 1 s per scenario (a smoke run)
#   bench/run-load.sh --only floor,omnid
#   WAIT_QUIET=1 bench/run-load.sh      # first wait (up to 30 min) for a 1-minute load average below 1.0
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${WAIT_QUIET:-0}" = 1 ]; then
  for _ in $(seq 1 180); do
    load=$(cut -d' ' -f1 /proc/loadavg)
    if awk -v l="$load" 'BEGIN { exit !(l < 1.0) }'; then break; fi
    echo "load average $load; waiting for < 1.0" >&2
    sleep 10
  done
fi
cargo build --release --locked -p omni-supervisor -p omni-bench --bins
exec timeout 900 target/release/loadtest "$@"
