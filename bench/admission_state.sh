#!/bin/sh
# admission_state.sh -- admission latency of a ContactGroupMembership CREATE
# with 10 and with 100,000 cached objects (target: the same within noise).
#
# Two kube stand-ins (test/py/kube_standin.py) and two contact-webhooks
# with --kubeconfig, one of each pair holding 10 objects
# (bench/state-objects.json: the Contact and ContactGroup the review names
# and 8 others), the other the same 10 plus 99,990 memberships
# (bench/kube_load.py), so its watch cache holds 100,000 objects. Both
# webhooks run on the same core (BENCH_SERVER_CPU, as bench/webhook.sh),
# wrk on the other; the review (bench/membership-review.json) is allowed
# and is answered from the cache alone (no API call per request). wrk runs
# alternate small, big, big, small, ... so drift on a shared machine hits
# both alike; the table gives medians and the big/small ratios.
#
# A benchmark, not a test: it prints numbers and fails only when something
# does not run.
#
#   make bench-admission-state     (or sh bench/admission_state.sh after make)
#
# Environment: MILO_WEBHOOK_BIN, BENCH_OBJECTS (100000), BENCH_DURATION
# (10s), BENCH_ROUNDS (3: runs per state), BENCH_CONNECTIONS (32),
# BENCH_SERVER_CPU (0), BENCH_CLIENT_CPU (1), BENCH_PORT (19463; the
# second webhook gets the next one), BENCH_LOG_LEVEL (info).
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
. "$top/bench/lib.sh"
trap bench_cleanup EXIT INT TERM

n=${BENCH_OBJECTS:-100000}
duration=${BENCH_DURATION:-10s}
rounds=${BENCH_ROUNDS:-3}
conns=${BENCH_CONNECTIONS:-32}
server_cpu=${BENCH_SERVER_CPU:-0}
client_cpu=${BENCH_CLIENT_CPU:-1}
port=${BENCH_PORT:-19463}
body=$top/bench/membership-review.json
path=/validate-notification-miloapis-com-v1alpha1-contactgroupmembership
kind=ContactGroupMembership

need wrk curl taskset "$py"
[ -x "$webhook_bin" ] || die "no $webhook_bin (make first)"
[ -s "$certs/tls.crt" ] || sh "$top/certs/dev-cert.sh" "$certs" >/dev/null

start_standin small
start_standin big
$load objects --url "$small_url" "$top/bench/state-objects.json" 2>/dev/null
$load objects --url "$big_url" "$top/bench/state-objects.json" 2>/dev/null
start_webhook wsmall "$small_kc" "$port" "$server_cpu"
start_webhook wbig "$big_kc" "$((port + 1))" "$server_cpu"
wait_cached "$port" "$kind" 2
$load memberships --url "$big_url" --count "$((n - 10))" 2>"$tmp/load.txt"
wait_cached "$((port + 1))" "$kind" "$((n - 8))"
total_small=0
total_big=0
for k in Contact ContactGroup ContactGroupMembership ContactGroupMembershipRemoval; do
	total_small=$((total_small + $(cached "$port" "$k" | awk '{ printf "%d", $1 }')))
	total_big=$((total_big + $(cached "$((port + 1))" "$k" | awk '{ printf "%d", $1 }')))
done

# The verdict must be "allowed" from both, or the numbers mean nothing.
for p in "$port" "$((port + 1))"; do
	curl -fs --cacert "$certs/ca.crt" -H 'Content-Type: application/json' \
		--data-binary "@$body" "https://localhost:$p$path" >"$tmp/reply-$p.json"
	grep -q '"allowed":true' "$tmp/reply-$p.json" ||
		die "the webhook on :$p did not allow the review: $(cat "$tmp/reply-$p.json")"
done
# No API call per request: the stand-ins' request logs must not grow under load.
reqs() { curl -fs "$1/_standin/requests?since=0" | $py -c 'import json,sys; print(json.load(sys.stdin)["next"])'; }

run() {	# run NAME PORT DURATION -> wrk output in $tmp/NAME.N
	BENCH_BODY=$body taskset -c "$client_cpu" wrk -t1 -c"$conns" -d"$3" --latency \
		-s "$top/bench/admission.lua" "https://127.0.0.1:$2$path"
}

run small "$port" 2s >/dev/null
run big "$((port + 1))" 2s >/dev/null
before_small=$(reqs "$small_url")
before_big=$(reqs "$big_url")
r=1
while [ $r -le "$rounds" ]; do
	if [ $((r % 2)) -eq 1 ]; then order="small big"; else order="big small"; fi
	for s in $order; do
		if [ "$s" = small ]; then p=$port; pid=$wsmall_pid; else p=$((port + 1)); pid=$wbig_pid; fi
		t0=$(cpu_ticks "$pid")
		run "$s" "$p" "$duration" >"$tmp/$s.$r"
		t1=$(cpu_ticks "$pid")
		wrk_summary "$tmp/$s.$r" $((t1 - t0)) >>"$tmp/$s.sum"
	done
	r=$((r + 1))
done
after_small=$(reqs "$small_url")
after_big=$(reqs "$big_url")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a ? b / a : 0 }'; }
rps_s=$(col "$tmp/small.sum" 1); rps_b=$(col "$tmp/big.sum" 1)
p50_s=$(col "$tmp/small.sum" 2); p50_b=$(col "$tmp/big.sum" 2)
p99_s=$(col "$tmp/small.sum" 3); p99_b=$(col "$tmp/big.sum" 3)
cpu_s=$(col "$tmp/small.sum" 4); cpu_b=$(col "$tmp/big.sum" 4)

echo "ContactGroupMembership CREATE, allowed; HTTPS keep-alive, $conns connections, $rounds x $duration per state (alternating); webhooks on CPU $server_cpu, wrk on CPU $client_cpu"
echo "$(cat "$tmp/load.txt")"
echo
echo "| cached objects | requests/s | p50 ms | p99 ms | server CPU us/request | webhook RSS KiB |"
echo "|---:|---:|---:|---:|---:|---:|"
printf '| %s | %s | %s | %s | %s | %s |\n' "$total_small" "$rps_s" "$p50_s" "$p99_s" "$cpu_s" "$(kib "$wsmall_pid" VmRSS)"
printf '| %s | %s | %s | %s | %s | %s |\n' "$total_big" "$rps_b" "$p50_b" "$p99_b" "$cpu_b" "$(kib "$wbig_pid" VmRSS)"
printf '| big / small | %s | %s | %s | %s | |\n' "$(ratio "$rps_s" "$rps_b")" \
	"$(ratio "$p50_s" "$p50_b")" "$(ratio "$p99_s" "$p99_b")" "$(ratio "$cpu_s" "$cpu_b")"
echo
echo "every run (requests/s p50 p99 cpu-us):"
for s in small big; do
	printf '  %-5s %s\n' "$s" "$(tr '\n' ';' <"$tmp/$s.sum" | sed 's/;$//; s/;/; /g')"
done
echo "API requests the webhooks made while under load: $((after_small - before_small)) (10 objects), $((after_big - before_big)) (100,000)"
echo "target: the same within noise"
