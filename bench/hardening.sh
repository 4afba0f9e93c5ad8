#!/bin/sh
# hardening.sh -- what issue 15's budgets cost and what they buy, in one run:
# the webhook before them (BENCH_BASELINE, built here from git) and the one
# built now, alternating, on the same core:
#
# 1. admission rate, p50 and p99 over HTTPS keep-alive (wrk, as webhook.sh),
#    at the shipped --log-level=info (before: a line per allowed review;
#    now: none) and at --log-level=warn (neither writes per request, so the
#    difference is the budgets alone), BENCH_ROUNDS rounds each;
# 2. instructions per request, noise-free on a shared machine: each binary
#    under valgrind --tool=callgrind answers 2 x BENCH_REQUESTS reviews over
#    8 keep-alive connections, less the same answering BENCH_REQUESTS (so
#    start-up and handshakes cancel out);
# 3. peak RSS (VmHWM) of a fresh process under each attack of
#    bench/attacks.py: 16 stalled 7 MiB bodies, a review with 250,000
#    annotation keys, and 2,000 slow connections while honest reviews come.
#
# A benchmark, not a test: it prints numbers and fails only when something
# does not run. Environment: MILO_WEBHOOK_BIN (build/default/contact-webhook),
# BENCH_BASELINE (the commit before the budgets), BENCH_DURATION (10s),
# BENCH_ROUNDS (3), BENCH_CONNECTIONS (32), BENCH_SERVER_CPU (0),
# BENCH_CLIENT_CPU (1), BENCH_PORT (19543), BENCH_REQUESTS (2000),
# BENCH_PARTS ("rate instructions memory": which of the three to run).
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/lib.sh"
after=$webhook_bin
# The main branch just before the budgets were merged (issue 15).
baseline=${BENCH_BASELINE:-6c4e5de}
duration=${BENCH_DURATION:-10s}
rounds=${BENCH_ROUNDS:-3}
conns=${BENCH_CONNECTIONS:-32}
server_cpu=${BENCH_SERVER_CPU:-0}
client_cpu=${BENCH_CLIENT_CPU:-1}
port=${BENCH_PORT:-19543}
requests=${BENCH_REQUESTS:-2000}
parts=${BENCH_PARTS:-rate instructions memory}
path=/validate-notification-miloapis-com-v1alpha1-contact
body=$top/test/fixtures/sample-review.json

need wrk taskset curl git make
[ -x "$after" ] || die "no $after (make first)"
[ -s "$certs/tls.crt" ] || sh "$top/certs/dev-cert.sh" "$certs"

tmp=$(mktemp -d)
wpid=""
cleanup() {
	[ -n "$wpid" ] && kill "$wpid" 2>/dev/null && wait "$wpid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

# --- the baseline binary, from git -----------------------------------------
echo "building the baseline ($baseline)..." >&2
mkdir -p "$tmp/before"
git -C "$top" archive "$baseline" | tar -x -C "$tmp/before"
make -C "$tmp/before" -j2 build/default/contact-webhook >"$tmp/before.log" 2>&1 || {
	tail -20 "$tmp/before.log" >&2
	exit 1
}
before=$tmp/before/build/default/contact-webhook

start() {	# start BIN LEVEL [WRAPPER...]: the webhook on $port, CPU $server_cpu; sets wpid
	bin=$1 lvl=$2
	shift 2
	taskset -c "$server_cpu" "$@" "$bin" --cert-dir="$certs" --bind-address=127.0.0.1 \
		--secure-port="$port" --shutdown-delay=0s --log-level="$lvl" \
		2>"$tmp/webhook.log" &
	wpid=$!
	i=0
	until curl -fs -o /dev/null --cacert "$certs/ca.crt" "https://localhost:$port/readyz"; do
		i=$((i + 1))
		[ $i -lt 1200 ] || { echo "hardening.sh: the webhook does not answer" >&2; exit 1; }
		sleep 0.1
	done
}

stop() {
	kill "$wpid"
	wait "$wpid" 2>/dev/null || true
	wpid=""
}

load() {
	BENCH_BODY=$body taskset -c "$client_cpu" wrk -t1 -c"$conns" \
		-d"$1" --latency -s "$top/bench/admission.lua" \
		"https://127.0.0.1:$port$path"
}

run() {	# run BIN LEVEL -> one summary line
	start "$1" "$2"
	load 2s >/dev/null
	t0=$(cpu_ticks "$wpid")
	load "$duration" >"$tmp/wrk.txt"
	ticks=$(($(cpu_ticks "$wpid") - t0))
	stop
	wrk_summary "$tmp/wrk.txt" "$ticks"
}

want() {
	case " $parts " in *" $1 "*) return 0 ;; esac
	return 1
}

# --- 1. rate and latency --------------------------------------------------
echo "HTTPS keep-alive, $conns connections, $duration x $rounds rounds per side;" \
	"server on CPU $server_cpu, wrk on CPU $client_cpu; baseline $baseline"
want rate || levels=""
for level in ${levels-info warn}; do
	: >"$tmp/before-$level" && : >"$tmp/after-$level"
	for r in $(seq "$rounds"); do
		if [ $((r % 2)) -eq 1 ]; then order="before after"; else order="after before"; fi
		for side in $order; do
			eval bin=\$$side
			run "$bin" "$level" >>"$tmp/$side-$level"
		done
	done
	echo
	echo "--log-level=$level (every run: requests/s p50 p99 CPU-us/request)"
	echo "| binary | requests/s | p50 ms | p99 ms | server CPU µs/request |"
	echo "|---|---:|---:|---:|---:|"
	for side in before after; do
		printf '| %s | %s | %s | %s | %s |\n' "$side" "$(col "$tmp/$side-$level" 1)" \
			"$(col "$tmp/$side-$level" 2)" "$(col "$tmp/$side-$level" 3)" \
			"$(col "$tmp/$side-$level" 4)"
	done
	printf '| after/before | %s | %s | %s | %s |\n' \
		"$(awk -v a="$(col "$tmp/after-$level" 1)" -v b="$(col "$tmp/before-$level" 1)" 'BEGIN { printf "%.2f", a / b }')" \
		"$(awk -v a="$(col "$tmp/after-$level" 2)" -v b="$(col "$tmp/before-$level" 2)" 'BEGIN { printf "%.2f", a / b }')" \
		"$(awk -v a="$(col "$tmp/after-$level" 3)" -v b="$(col "$tmp/before-$level" 3)" 'BEGIN { printf "%.2f", a / b }')" \
		"$(awk -v a="$(col "$tmp/after-$level" 4)" -v b="$(col "$tmp/before-$level" 4)" 'BEGIN { printf "%.2f", a / b }')"
	for side in before after; do
		echo "$side runs: $(tr '\n' ';' <"$tmp/$side-$level")"
	done
done

# --- 2. instructions per request (callgrind) --------------------------------
if want instructions && command -v valgrind >/dev/null 2>&1; then
	echo
	echo "Instructions per review (callgrind, --log-level=warn: $((2 * requests)) reviews over 8 connections less $requests)"
	echo "| binary | instructions/request |"
	echo "|---|---:|"
	for side in before after; do
		eval bin=\$$side
		for n in "$requests" $((2 * requests)); do
			start "$bin" warn valgrind --tool=callgrind \
				--callgrind-out-file="$tmp/cg-$side-$n.out"
			taskset -c "$client_cpu" $py "$top/bench/attacks.py" --port "$port" \
				--pid "$wpid" --cacert "$certs/ca.crt" --requests "$n" reviews \
				>"$tmp/cg-$side-$n.txt"
			stop
		done
		awk -v n="$requests" '
		FNR == 1 { f++ }
		/^(summary|totals):/ { ir[f] = $2 }
		END { printf "%.0f\n", (ir[2] - ir[1]) / n }' \
			"$tmp/cg-$side-$requests.out" "$tmp/cg-$side-$((2 * requests)).out" \
			>"$tmp/ir-$side"
		printf '| %s | %s |\n' "$side" "$(cat "$tmp/ir-$side")"
	done
	printf '| after/before | %s |\n' "$(awk -v a="$(cat "$tmp/ir-after")" \
		-v b="$(cat "$tmp/ir-before")" 'BEGIN { printf "%.3f", a / b }')"
fi

# --- 3. peak RSS under the attacks ------------------------------------------
want memory || attacks=""
[ -n "${attacks-x}" ] && {
	echo
	echo "Peak RSS (VmHWM) of a fresh webhook under each attack (the Deployment's limit: 64 MiB)"
	echo "| attack | before KiB | after KiB | before answered | after answered |"
	echo "|---|---:|---:|---|---|"
}
for attack in ${attacks-bodies keys slowloris}; do
	for side in before after; do
		eval bin=\$$side
		start "$bin" info
		$py "$top/bench/attacks.py" --port "$port" --pid "$wpid" \
			--cacert "$certs/ca.crt" "$attack" >"$tmp/$side-$attack"
		stop
	done
	read -r _ b_kib b_ans <"$tmp/before-$attack"
	read -r _ a_kib a_ans <"$tmp/after-$attack"
	printf '| %s | %s | %s | %s | %s |\n' "$attack" "$b_kib" "$a_kib" "$b_ans" "$a_ans"
done
