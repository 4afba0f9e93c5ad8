#!/bin/sh
# audit.sh -- the provider audit (--provider-audit-period) of 10,000
# memberships across 50 groups at 10 requests/s: its provider calls (reads
# only when nothing drifted, about one per 100 objects), its time, and the
# reconciler's RSS during it; then the same with drift, and the repairs.
# The work is in bench/audit_bench.py (its docstring has the details).
#
# A benchmark, not a test: it prints numbers and fails only when something
# does not run. About 3 minutes with the defaults.
#
#   make bench-audit
#
# Environment: MILO_RECONCILER_BIN, BENCH_AUDIT_GROUPS (50), BENCH_AUDIT_CONTACTS
# (1000), BENCH_AUDIT_PER_CONTACT (10), BENCH_RATE (10), BENCH_AUDIT_PERIOD (15s),
# BENCH_DRIFT (100; 0 skips the drift part).
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
: "${MILO_RECONCILER_BIN:=${MILO_BUILD:-$top/build/default}/contact-reconciler}"
export MILO_RECONCILER_BIN
[ -x "$MILO_RECONCILER_BIN" ] || { echo "audit.sh: no $MILO_RECONCILER_BIN (make first)" >&2; exit 1; }
[ -s "$top/certs/dev/tls.crt" ] || sh "$top/certs/dev-cert.sh" "$top/certs/dev" >/dev/null
exec "${PYTHON:-python3}" "$top/bench/audit_bench.py"
