#!/bin/sh
# cache.sh -- memory per cached object (target: at most 1 KiB), two ways:
#
#  1. in process: build/default/cache_bench fills a cache with N memberships
#     (and N contacts, N groups) the way the informers do, and reports heap
#     and RSS growth per object, plus lookup times at 10 and N objects;
#  2. end to end: the real contact-webhook with --kubeconfig to the kube
#     stand-in (test/py/kube_standin.py); N memberships are created in the
#     stand-in (bench/kube_load.py, keep-alive POSTs), the webhook's watch
#     caches them, /metrics milo_webhook_cache_objects reaches N, and the
#     webhook's RSS growth is divided by N. Then the stand-in's history is
#     compacted with the watches expired, so the webhook relists all N in
#     pages (the 410 Gone path): RSS after it and the peak (VmHWM).
#
# A benchmark, not a test: it prints numbers and fails only when something
# does not run.
#
#   make bench-cache      (or: sh bench/cache.sh after make build/default/cache_bench)
#
# Environment: MILO_BUILD (build/default), MILO_WEBHOOK_BIN, BENCH_OBJECTS
# (100000), BENCH_PORT (19453), BENCH_SERVER_CPU (0), BENCH_LOAD_THREADS (4).
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
. "$top/bench/lib.sh"
trap bench_cleanup EXIT INT TERM

n=${BENCH_OBJECTS:-100000}
port=${BENCH_PORT:-19453}
server_cpu=${BENCH_SERVER_CPU:-0}
threads=${BENCH_LOAD_THREADS:-4}
kind=ContactGroupMembership

need curl taskset "$py"
[ -x "$build/cache_bench" ] || die "no $build/cache_bench (make $build/cache_bench)"
[ -x "$webhook_bin" ] || die "no $webhook_bin (make first)"
[ -s "$certs/tls.crt" ] || sh "$top/certs/dev-cert.sh" "$certs" >/dev/null

# --- 1. in process -------------------------------------------------------
echo "## 1. In process: build/default/cache_bench -n $n"
echo
"$build/cache_bench" -n "$n" -m upsert -r 5 >"$tmp/upsert.txt"
"$build/cache_bench" -n "$n" -m replace -r 1 >"$tmp/replace.txt"
"$build/cache_bench" -n "$n" -k contact -r 1 >"$tmp/contact.txt"
"$build/cache_bench" -n "$n" -k group -r 1 >"$tmp/group.txt"
val() { awk -v k="$2" '$1 == k { print $2 }' "$1"; }
echo "| kind, path | heap bytes/object | RSS bytes/object |"
echo "|---|---:|---:|"
for f in upsert replace contact group; do
	case $f in
	upsert) what="ContactGroupMembership, watch events (cache_upsert)" ;;
	replace) what="ContactGroupMembership, relist (cache_replace)" ;;
	contact) what="Contact, watch events" ;;
	group) what="ContactGroup, watch events" ;;
	esac
	printf '| %s | %s | %s |\n' "$what" "$(val "$tmp/$f.txt" heap_bytes_per_object)" \
		"$(val "$tmp/$f.txt" rss_bytes_per_object)"
done
echo
sed -n '/^lookup ns/,/^$/p' "$tmp/upsert.txt"

# --- 2. the real webhook -------------------------------------------------
echo "## 2. End to end: contact-webhook watching the kube stand-in, $n memberships"
echo
start_standin kube
start_webhook webhook "$kube_kc" "$port" "$server_cpu"
sleep 2
rss0=$(kib "$webhook_pid" VmRSS)
anon0=$(kib "$webhook_pid" RssAnon)
c0=$(cpu_ticks "$webhook_pid")
t0=$(date +%s.%N)
$load memberships --url "$kube_url" --count "$n" --threads "$threads" 2>"$tmp/load.txt"
wait_cached "$port" "$kind" "$n"
t1=$(date +%s.%N)
c1=$(cpu_ticks "$webhook_pid")
sleep 2
rss1=$(kib "$webhook_pid" VmRSS)
anon1=$(kib "$webhook_pid" RssAnon)
hwm1=$(kib "$webhook_pid" VmHWM)
relists0=$(grep -c '"cache: listed".*contactgroupmemberships' "$tmp/webhook.log" || true)

# Force the relist path: history forgotten, open watches expired (410).
c2=$(cpu_ticks "$webhook_pid")
curl -fs -o /dev/null -H 'Content-Type: application/json' \
	-d '{"expireOpenWatches": true}' "$kube_url/_standin/compact"
t2=$(date +%s.%N)
i=0
until [ "$(grep -c '"cache: listed".*contactgroupmemberships' "$tmp/webhook.log" || true)" -gt "$relists0" ]; do
	i=$((i + 1))
	[ $i -lt 1200 ] || die "no relist of the memberships after the compaction"
	sleep 0.25
done
t3=$(date +%s.%N)
c3=$(cpu_ticks "$webhook_pid")
wait_cached "$port" "$kind" "$n"
sleep 2
rss2=$(kib "$webhook_pid" VmRSS)
anon2=$(kib "$webhook_pid" RssAnon)
hwm2=$(kib "$webhook_pid" VmHWM)

per() { awk -v a="$1" -v b="$2" -v n="$n" 'BEGIN { printf "%.0f", (b - a) * 1024 / n }'; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
echo "$(cat "$tmp/load.txt"); cached by the webhook $(secs "$t0" "$t1") s after the first POST"
echo
echo "| webhook state | VmRSS KiB | RssAnon KiB | bytes/object (RSS) | bytes/object (anon) |"
echo "|---|---:|---:|---:|---:|"
printf '| synced, empty | %s | %s | | |\n' "$rss0" "$anon0"
printf '| %s memberships by watch events | %s | %s | %s | %s |\n' "$n" "$rss1" "$anon1" \
	"$(per "$rss0" "$rss1")" "$(per "$anon0" "$anon1")"
printf '| after a relist of all %s (410 Gone) | %s | %s | %s | %s |\n' "$n" "$rss2" "$anon2" \
	"$(per "$rss0" "$rss2")" "$(per "$anon0" "$anon2")"
echo
echo "peak RSS (VmHWM): $hwm1 KiB after the watch fill, $hwm2 KiB after the relist ($(secs "$t2" "$t3") s from compaction to the relist's end)"
hz=$(getconf CLK_TCK)
us() { awk -v a="$1" -v b="$2" -v hz="$hz" -v n="$n" 'BEGIN { printf "%.1f", (b - a) * 1e6 / hz / n }'; }
echo "webhook CPU per object: $(us "$c0" "$c1") us from a watch event (includes polling /metrics), $(us "$c2" "$c3") us in the relist"
echo "target: at most 1024 bytes per cached object"
