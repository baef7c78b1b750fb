#!/usr/bin/env bash
# Builds roomfeed and roomfeed-bench, then measures roomfeed on this machine
# (cmd/roomfeed-bench: fan-out latency, saturation against a bare net/http SSE
# broadcaster, 10,000 subscribers over 1,000 rooms, catch-up, idle memory per
# subscriber, write throughput) on SQLite and, when they answer, PostgreSQL +
# Redis. Writes docs/perf/results.json and docs/perf/fanout-latency.svg and
# prints the table. Any argument is passed to the tool, e.g.
#   scripts/bench.sh --full                    # longer phases (about 15 min)
#   scripts/bench.sh --backends sqlite         # embedded default only
#   scripts/bench.sh --scenarios 1,4 --out /tmp/r.json --svg ''
#   scripts/bench.sh --target http://127.0.0.1:8080 --target-pid "$(pgrep -n roomfeed)"
#   scripts/bench.sh --backends postgres --scenarios 10   # scale-out, below
# Scenario 10 (scale-out: 100,000 subscribers across 6 nodes sharing PostgreSQL
# and Redis, 1,000 writes/s through them) is heavy and never part of the
# default set, not even with --full: it runs only when --scenarios names it,
# on the postgres backend; --scale-nodes, --scale-subs, --scale-rate and
# --scale-duration shape it.
# File descriptors: the tool raises its soft RLIMIT_NOFILE to the hard limit
# and the servers it starts inherit it; 10,000 subscribers need about 10,100
# in each process. Scenario 10 spreads its subscribers over one
# load-generator process per node, each needing its share + about 1,000. If
# the hard limit is lower, raise it first (as root:
# `ulimit -Hn 65536`, or `prlimit --nofile=65536:65536 --pid $$`, or
# LimitNOFILE= in a systemd unit).
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
BIN=${BENCH_BIN_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/roomfeed-bench-bin.XXXXXX")}
trap '[ -z "${BENCH_BIN_DIR:-}" ] && rm -rf "$BIN"' EXIT

echo "bench: building into $BIN" >&2
CGO_ENABLED=0 "$GO" build -trimpath -o "$BIN/roomfeed" ./cmd/roomfeed
CGO_ENABLED=0 "$GO" build -trimpath -o "$BIN/roomfeed-bench" ./cmd/roomfeed-bench

hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt 20500 ]; then
  echo "bench: the hard RLIMIT_NOFILE is $hard; 10,000 subscribers need about 10,100 per process (see the comment at the top of this script)" >&2
fi
load=$(cut -d' ' -f1 /proc/loadavg)
echo "bench: load average $load (the figures are flagged when it is above 1.5; others' work on this machine skews them)" >&2

label="$(git describe --always --dirty 2>/dev/null || echo unknown)"
"$BIN/roomfeed-bench" --server-bin "$BIN/roomfeed" --label "roomfeed at $label" "$@"
