#!/bin/sh
# webhook.sh -- admission throughput and latency over HTTPS keep-alive, next
# to nginx answering a fixed AdmissionReview over HTTPS with the same
# certificate on the same core (the TLS + HTTP floor), plus the webhook's
# idle RSS. A benchmark, not a test: it prints numbers and fails only when
# something does not run.
#
#   bench/webhook.sh            (make bench builds first and runs this)
#
# Environment: MILO_WEBHOOK_BIN (build/default/contact-webhook),
# BENCH_DURATION (10s), BENCH_CONNECTIONS (32), BENCH_SERVER_CPU (0),
# BENCH_CLIENT_CPU (1), BENCH_PORT (19443; nginx gets the next one),
# BENCH_LOG_LEVEL (info: one JSON line per decision, as in production).
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/lib.sh"
bin=$webhook_bin
duration=${BENCH_DURATION:-10s}
conns=${BENCH_CONNECTIONS:-32}
server_cpu=${BENCH_SERVER_CPU:-0}
client_cpu=${BENCH_CLIENT_CPU:-1}
port=${BENCH_PORT:-19443}
nginx_port=$((port + 1))
level=${BENCH_LOG_LEVEL:-info}
path=/validate-notification-miloapis-com-v1alpha1-contact
body=$top/test/fixtures/sample-review.json

need wrk nginx taskset curl
[ -x "$bin" ] || die "no $bin (make first)"
[ -s "$certs/tls.crt" ] || sh "$top/certs/dev-cert.sh" "$certs"

tmp=$(mktemp -d)
wpid=""
npid=""
cleanup() {
	[ -n "$wpid" ] && kill "$wpid" 2>/dev/null && wait "$wpid" 2>/dev/null
	[ -n "$npid" ] && kill "$npid" 2>/dev/null && wait "$npid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

# Polls an HTTPS URL until it answers, for up to 30 s.
wait_up() {
	i=0
	until curl -fs -o /dev/null --cacert "$certs/ca.crt" -X "$2" \
		-H 'Content-Type: application/json' --data-binary "@$body" "$1"; do
		i=$((i + 1))
		[ $i -lt 300 ] || { echo "webhook.sh: $1 does not answer" >&2; exit 1; }
		sleep 0.1
	done
}

load() {
	BENCH_BODY=$body taskset -c "$client_cpu" wrk -t1 -c"$conns" \
		-d"$2" --latency -s "$top/bench/admission.lua" "$1"
}

# --- the webhook ---------------------------------------------------------
taskset -c "$server_cpu" "$bin" --cert-dir="$certs" --bind-address=127.0.0.1 \
	--secure-port="$port" --shutdown-delay=0s --log-level="$level" \
	2>"$tmp/webhook.log" &
wpid=$!
wait_up "https://localhost:$port$path" POST
sleep 1
idle_rss=$(kib "$wpid" VmRSS)
idle_anon=$(kib "$wpid" RssAnon)
idle_pss=$(kib "$wpid" Pss smaps_rollup)
curl -fs --cacert "$certs/ca.crt" -H 'Content-Type: application/json' \
	--data-binary "@$body" "https://localhost:$port$path" >"$tmp/reply.json"
load "https://127.0.0.1:$port$path" 2s >/dev/null	# warm-up
t0=$(cpu_ticks "$wpid")
load "https://127.0.0.1:$port$path" "$duration" >"$tmp/wrk-webhook.txt"
w_ticks=$(($(cpu_ticks "$wpid") - t0))
busy_rss=$(kib "$wpid" VmRSS)
kill "$wpid"
wait "$wpid" || true
wpid=""

# --- nginx: the same reply bytes, the same certificate, the same core ----
mkdir -p "$tmp/nginx"
reply=$(cat "$tmp/reply.json")
cat >"$tmp/nginx/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 1024; }
http {
	access_log off;
	client_body_temp_path $tmp/nginx/body;
	proxy_temp_path $tmp/nginx/proxy;
	fastcgi_temp_path $tmp/nginx/fastcgi;
	uwsgi_temp_path $tmp/nginx/uwsgi;
	scgi_temp_path $tmp/nginx/scgi;
	keepalive_requests 10000000;
	server {
		listen 127.0.0.1:$nginx_port ssl;
		ssl_certificate $certs/tls.crt;
		ssl_certificate_key $certs/tls.key;
		ssl_protocols TLSv1.2 TLSv1.3;
		location / {
			default_type application/json;
			return 200 '$reply';
		}
	}
}
EOF
taskset -c "$server_cpu" nginx -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" \
	2>"$tmp/nginx/stderr.log" &
npid=$!
wait_up "https://localhost:$nginx_port$path" POST
load "https://127.0.0.1:$nginx_port$path" 2s >/dev/null
t0=$(cpu_ticks "$npid")
load "https://127.0.0.1:$nginx_port$path" "$duration" >"$tmp/wrk-nginx.txt"
n_ticks=$(($(cpu_ticks "$npid") - t0))
kill "$npid"
wait "$npid" 2>/dev/null || true
npid=""

# --- report --------------------------------------------------------------
# Server CPU per request: steadier than requests/s on a shared machine,
# where the server is not always the one waiting.
wrk_summary "$tmp/wrk-webhook.txt" "$w_ticks" >"$tmp/webhook.sum"
wrk_summary "$tmp/wrk-nginx.txt" "$n_ticks" >"$tmp/nginx.sum"
read -r w_rps w_p50 w_p99 w_cpu <"$tmp/webhook.sum"
read -r n_rps n_p50 n_p99 n_cpu <"$tmp/nginx.sum"
ratio=$(awk -v a="$w_rps" -v b="$n_rps" 'BEGIN { printf "%.0f", b ? 100 * a / b : 0 }')
cpu_ratio=$(awk -v a="$w_cpu" -v b="$n_cpu" 'BEGIN { printf "%.0f", a ? 100 * b / a : 0 }')

echo "HTTPS keep-alive, $conns connections, $duration; server on CPU $server_cpu, wrk on CPU $client_cpu"
echo "body: $(wc -c <"$body") bytes in, $(wc -c <"$tmp/reply.json") bytes out"
echo
echo "| server          | requests/s | p50 ms | p99 ms | server CPU us/request |"
echo "|-----------------|-----------:|-------:|-------:|----------------------:|"
printf '| contact-webhook | %10s | %6s | %6s | %21s |\n' "$w_rps" "$w_p50" "$w_p99" "$w_cpu"
printf '| nginx (floor)   | %10s | %6s | %6s | %21s |\n' "$n_rps" "$n_p50" "$n_p99" "$n_cpu"
echo
echo "webhook / nginx: ${ratio}% of the requests/s, ${cpu_ratio}% by CPU per request (target: at least 65%, p99 at most 2 ms)"
echo "webhook idle memory: RSS $idle_rss KiB (anonymous $idle_anon KiB, PSS $idle_pss KiB); RSS after the run $busy_rss KiB (target: idle RSS at most 4096 KiB)"
