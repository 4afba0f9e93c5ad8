# lib.sh -- shell helpers the bench scripts share (sourced after top is set).
# Starts the kube stand-in and the webhook on it, reads memory and CPU time,
# sums up a wrk run, cleans up.
# Needs: top, tmp set by the caller; defines pids it kills on exit.

build=${MILO_BUILD:-$top/build/default}
webhook_bin=${MILO_WEBHOOK_BIN:-$build/contact-webhook}
certs=$top/certs/dev
py=${PYTHON:-python3}
load="$py $top/bench/kube_load.py"
bench_pids=""

bench_cleanup() {
	for p in $bench_pids; do
		kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
	done
	bench_pids=""
	[ -n "${tmp:-}" ] && rm -rf "$tmp"
	return 0
}

die() {
	echo "$(basename "$0"): $*" >&2
	exit 1
}

need() {
	for tool in "$@"; do
		command -v "$tool" >/dev/null 2>&1 || die "$tool not found"
	done
}

# start_standin NAME: the kube stand-in on a free port; sets ${NAME}_url, ${NAME}_kc, ${NAME}_pid.
start_standin() {
	d=$tmp/$1
	mkdir -p "$d"
	$py "$top/test/py/kube_standin.py" --port 0 --port-file "$d/port" \
		--kubeconfig-out "$d/kubeconfig" 2>"$d/standin.log" &
	pid=$!
	bench_pids="$bench_pids $pid"
	i=0
	until [ -s "$d/port" ] && [ -s "$d/kubeconfig" ]; do
		i=$((i + 1))
		[ $i -lt 300 ] || die "the kube stand-in did not start: $(cat "$d/standin.log")"
		sleep 0.1
	done
	eval "${1}_url=http://127.0.0.1:$(cat "$d/port")"
	eval "${1}_kc=$d/kubeconfig"
	eval "${1}_pid=$pid"
	# Nothing here calls back into a webhook: admission off.
	curl -fs -o /dev/null -H 'Content-Type: application/json' -d '{"admission": false}' \
		"http://127.0.0.1:$(cat "$d/port")/_standin/config"
}

# start_webhook NAME KUBECONFIG PORT CPU: sets ${NAME}_pid; waits for /readyz (caches synced).
# /metrics without auth: cached reads it with no token.
start_webhook() {
	taskset -c "$4" "$webhook_bin" --cert-dir="$certs" --bind-address=127.0.0.1 \
		--secure-port="$3" --shutdown-delay=0s --log-level="${BENCH_LOG_LEVEL:-info}" \
		--metrics-auth=false --kubeconfig="$2" 2>"$tmp/$1.log" &
	pid=$!
	bench_pids="$bench_pids $pid"
	eval "${1}_pid=$pid"
	i=0
	until curl -fs -o /dev/null --cacert "$certs/ca.crt" "https://localhost:$3/readyz"; do
		i=$((i + 1))
		kill -0 "$pid" 2>/dev/null || die "the webhook exited: $(tail -5 "$tmp/$1.log")"
		[ $i -lt 600 ] || die "the webhook on :$3 never became ready"
		sleep 0.1
	done
}

# cached PORT KIND: milo_webhook_cache_objects{kind=KIND} of the webhook on PORT.
cached() {
	$load metric --url "https://127.0.0.1:$1" --cacert "$certs/ca.crt" \
		milo_webhook_cache_objects "kind=$2"
}

# wait_cached PORT KIND N: until the webhook's cache holds N objects of KIND (10 minutes at most).
wait_cached() {
	i=0
	until [ "$(cached "$1" "$2" | awk '{ printf "%d", $1 }')" -eq "$3" ]; do
		i=$((i + 1))
		[ $i -lt 1200 ] || die "the cache never held $3 $2 objects (has $(cached "$1" "$2"))"
		sleep 0.5
	done
}

# kib PID FIELD [FILE]: a KiB figure from /proc/PID/status (or smaps_rollup).
kib() {
	awk -v f="$2" '$1 == f ":" { print $2 }' "/proc/$1/${3:-status}"
}

# cpu_ticks PID: the process's CPU time so far (user + system), in clock ticks.
cpu_ticks() {
	awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# wrk_summary FILE TICKS: wrk --latency output, and the server's CPU ticks over
# the run -> "requests/s p50_ms p99_ms cpu_us/request"; wrk's error lines
# (non-2xx answers, socket errors) go to stderr.
wrk_summary() {
	awk -v t="$2" -v hz="$(getconf CLK_TCK)" -v me="$(basename "$0")" '
	function ms(v) {
		if (v ~ /us$/) return v / 1000
		if (v ~ /ms$/) return v + 0
		if (v ~ /s$/) return v * 1000
		return v
	}
	/^Requests\/sec:/ { rps = $2 }
	/ requests in / { n = $1 }
	$1 == "50%" { p50 = ms($2) }
	$1 == "99%" { p99 = ms($2) }
	/Non-2xx|Socket errors/ { bad = bad " " $0 }
	END {
		if (bad != "") print me ": errors:" bad > "/dev/stderr"
		printf "%.0f %.3f %.3f %.1f\n", rps, p50, p99, n ? t * 1e6 / hz / n : 0
	}' "$1"
}

# median of the numbers on stdin
median() {
	sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.6g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# col FILE N: the median of column N of FILE
col() {
	awk -v c="$2" '{ print $c }' "$1" | median
}
