#!/bin/sh
# reconciler.sh -- contact-reconciler against the kube and Resend stand-ins:
# provider calls by route and the time to sync 50 groups x 100 contacts =
# 5,000 memberships at --resend-rate-limit 10 (stand-in --rate 10) with the
# default workers, calls in steady state over one resync, and RSS with
# 100,000 cached memberships.
# BENCH_PROVIDER=mailgun: the same sync against the Mailgun stand-in, with
# and without bulk uploads (members.json).
# The work is in bench/reconciler_bench.py (its docstring has the details).
#
# A benchmark, not a test: it prints numbers and fails only when something
# does not run. About 12 minutes with the defaults.
#
#   make bench-reconciler
#
# Environment: MILO_RECONCILER_BIN, BENCH_PROVIDER (resend), BENCH_GROUPS (50),
# BENCH_CONTACTS (100),
# BENCH_RATE (10), BENCH_SERVER_RATE (BENCH_RATE), BENCH_RESYNC (20s),
# BENCH_OBJECTS (100000; 0 skips the memory part), BENCH_SKIP_SYNC.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
: "${MILO_RECONCILER_BIN:=${MILO_BUILD:-$top/build/default}/contact-reconciler}"
export MILO_RECONCILER_BIN
[ -x "$MILO_RECONCILER_BIN" ] || { echo "reconciler.sh: no $MILO_RECONCILER_BIN (make first)" >&2; exit 1; }
[ -s "$top/certs/dev/tls.crt" ] || sh "$top/certs/dev-cert.sh" "$top/certs/dev" >/dev/null
exec "${PYTHON:-python3}" "$top/bench/reconciler_bench.py"
