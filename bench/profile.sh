#!/bin/sh
# profile.sh -- where contact-webhook's CPU per admission request goes.
#
#  1. in process (build/default/admission_loop: admission_handle() on the
#     valid Contact review of bench/webhook.sh plus the decision's JSON log
#     line, in a loop): time per request, with and without the log line,
#     and the log line alone, typed fields vs json_pack + json_dumps (log_equiv);
#  2. valgrind --tool=callgrind over the same loop: instructions per request
#     (repeatable on a noisy machine) for the functions that matter, and the
#     top functions by their own instructions (libjansson has no symbols on
#     Debian: its internals show as addresses);
#  3. when perf works: the real webhook under wrk as in bench/webhook.sh,
#     CPU by library (kernel, jansson, libc, gnutls, ...) and by function
#     including callees, and (with strace) system calls per request.
#
# A benchmark, not a test: it prints numbers and fails only when something
# does not run. Environment: MILO_BUILD (build/default), BENCH_PORT (19473),
# BENCH_SERVER_CPU (0), BENCH_CLIENT_CPU (1).
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
. "$top/bench/lib.sh"
trap bench_cleanup EXIT INT TERM
cd "$top"

port=${BENCH_PORT:-19473}
server_cpu=${BENCH_SERVER_CPU:-0}
client_cpu=${BENCH_CLIENT_CPU:-1}
loop=$build/admission_loop
review=test/fixtures/sample-review.json
[ -x "$loop" ] || die "no $loop (make $loop)"

# --- 1. in process ---------------------------------------------------------
echo "## 1. In process: $loop ($review)"
echo
for i in 1 2 3 4 5; do
	"$loop" -n 30000 | awk '{ print $4 }' >>"$tmp/with"
	"$loop" -n 30000 -q | awk '{ print $4 }' >>"$tmp/without"
done
w=$(median <"$tmp/with")
wo=$(median <"$tmp/without")
echo "| per request (median of 5 x 30,000) | us |"
echo "|---|---:|"
echo "| admission_handle() + the decision's log line | $w |"
echo "| admission_handle() alone | $wo |"
echo
if [ -x "$build/log_equiv" ]; then
	"$build/log_equiv" -n 20000 | sed 's/^/    /'
	echo
fi

# --- 2. callgrind ------------------------------------------------------------
if command -v valgrind >/dev/null 2>&1 && command -v callgrind_annotate >/dev/null 2>&1; then
	n=2000
	valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out" "$loop" -n $n \
		>/dev/null 2>"$tmp/cg.err"
	callgrind_annotate --inclusive=yes "$tmp/cg.out" >"$tmp/incl.txt" 2>/dev/null
	callgrind_annotate --inclusive=no "$tmp/cg.out" >"$tmp/self.txt" 2>/dev/null
	total=$(awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }' "$tmp/incl.txt")
	echo "## 2. callgrind: $n iterations, $((total / n)) instructions per request in all"
	echo
	echo "Including callees (what each costs per request):"
	echo
	echo "| function | instructions/request | share |"
	echo "|---|---:|---:|"
	for f in admission_handle json_loadb json_delete json_dumps json_pack json_vpack_ex \
		resource_decode validate_object log_fields put_string admission_outcome_free; do
		awk -v f="$f" -v n=$n -v t="$total" '
		{
			line = $0
			if (!sub(/^ *[0-9,]+ +\( *[0-9.]+%\) +/, "", line))
				next
			if (index(line, ":" f " [") == 0 || done)
				next
			v = $1; gsub(",", "", v)
			printf "| %s | %d | %.1f%% |\n", f, v / n, 100 * v / t
			done = 1
		}' "$tmp/incl.txt"
	done
	echo
	echo "Own instructions, top 12:"
	echo
	echo "| function | instructions/request | share |"
	echo "|---|---:|---:|"
	awk -v n=$n -v t="$total" '
	{
		line = $0
		if (!sub(/^ *[0-9,]+ +\( *[0-9.]+%\) +/, "", line) || line ~ /PROGRAM TOTALS/ ||
		    shown >= 12)
			next
		v = $1; gsub(",", "", v)
		lib = line; sub(/^.*\//, "", lib); sub(/\]$/, "", lib)
		sub(/ \[.*$/, "", line); sub(/^.*\//, "", line)
		printf "| %s (%s) | %d | %.1f%% |\n", line, lib, v / n, 100 * v / t
		shown++
	}' "$tmp/self.txt"
	echo
else
	echo "## 2. callgrind: valgrind not installed, skipped"
	echo
fi

# --- 3. perf on the real webhook under load ---------------------------------
if command -v perf >/dev/null 2>&1 && perf record -o "$tmp/probe.data" true >/dev/null 2>&1; then
	need wrk taskset curl
	[ -s "$certs/tls.crt" ] || sh "$top/certs/dev-cert.sh" "$certs" >/dev/null
	path=/validate-notification-miloapis-com-v1alpha1-contact
	taskset -c "$server_cpu" "$webhook_bin" --cert-dir="$certs" --bind-address=127.0.0.1 \
		--secure-port="$port" --shutdown-delay=0s --log-level=info 2>"$tmp/webhook.log" &
	wpid=$!
	bench_pids="$bench_pids $wpid"
	i=0
	until curl -fs -o /dev/null --cacert "$certs/ca.crt" "https://localhost:$port/healthz"; do
		i=$((i + 1)); [ $i -lt 300 ] || die "the webhook did not start"; sleep 0.1
	done
	wrk_load() {
		BENCH_BODY=$top/$review taskset -c "$client_cpu" wrk -t1 -c32 -d"$1" \
			-s "$top/bench/admission.lua" "https://127.0.0.1:$port$path"
	}
	wrk_load 2s >/dev/null
	wrk_load 9s >"$tmp/wrk.txt" &
	lpid=$!
	sleep 2
	perf record -F 999 --call-graph dwarf,16384 -p "$wpid" -o "$tmp/perf.data" \
		-- sleep 5 >/dev/null 2>&1
	wait "$lpid"
	if command -v strace >/dev/null 2>&1; then
		wrk_load 5s >/dev/null &
		lpid=$!
		sleep 1
		timeout 3 strace -f -c -p "$wpid" -o "$tmp/strace.txt" >/dev/null 2>&1 || true
		wait "$lpid"
	fi
	echo "## 3. perf: contact-webhook under wrk (32 connections, HTTPS keep-alive), $(awk '/^Requests\/sec/ { printf "%.0f", $2 }' "$tmp/wrk.txt") requests/s while sampled"
	echo
	echo "By library (own samples):"
	echo
	echo "| library | share |"
	echo "|---|---:|"
	perf report -i "$tmp/perf.data" --no-children --sort dso -g none 2>/dev/null |
		awk '$1 ~ /%$/ && n < 8 { printf "| %s | %s |\n", $2, $1; n++ }'
	echo
	echo "By function, including callees:"
	echo
	echo "| function | share |"
	echo "|---|---:|"
	perf report -i "$tmp/perf.data" --children --sort sym -g none 2>/dev/null >"$tmp/children.txt"
	for f in serve_admission admission_handle json_loadb json_delete json_dumps json_pack \
		resource_decode log_fields __GI___libc_write gnutls_record_send2 __libc_sendmsg \
		__GI___setsockopt __libc_recv gnutls_record_recv __GI___libc_malloc \
		__GI___libc_free malloc_consolidate; do
		awk -v f="$f" '
		$1 ~ /%$/ && !done {
			sym = $0; sub(/^.*\] /, "", sym); sub(/ \(inlined\)$/, "", sym)
			if (sym == f) { printf "| %s | %s |\n", f, $1; done = 1 }
		}' \
			"$tmp/children.txt"
	done
	echo
	if [ -s "$tmp/strace.txt" ]; then
		echo "System calls per request (strace -c over 3 s under load):"
		echo
		awk '
		$NF == "write" && !w { w = $4 }
		$1 ~ /^[0-9.]+$/ && NF >= 5 { calls[$NF] = $4 }
		END {
			n = calls["write"]	# one log line per request
			if (!n) exit
			printf "| syscall | per request |\n|---|---:|\n"
			for (s in calls)
				if (calls[s] / n >= 0.05)
					printf "| %s | %.2f |\n", s, calls[s] / n
		}' "$tmp/strace.txt"
		echo
	fi
else
	echo "## 3. perf: not available here, skipped"
fi
