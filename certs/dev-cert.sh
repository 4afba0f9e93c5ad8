#!/bin/sh
# dev-cert.sh -- a development CA and an ECDSA P-256 serving certificate for
# localhost, 127.0.0.1 and ::1, in the Kubernetes Secret layout: tls.crt,
# tls.key and ca.crt (plus ca.key, so the certificate can be reissued).
#
#   certs/dev-cert.sh [--rotate] [--client] [DIR]      DIR: certs/dev
#
# Files that exist are kept. --rotate issues a new serving key and
# certificate from the same CA (what a rotation looks like to clients);
# --client also issues client.crt/client.key for trying --client-ca-file.
set -eu

rotate=0
client=0
while [ $# -gt 0 ]; do
	case "$1" in
	--rotate) rotate=1 ;;
	--client) client=1 ;;
	-h | --help) sed -n '2,10p' "$0"; exit 0 ;;
	-*) echo "dev-cert.sh: unknown option $1" >&2; exit 2 ;;
	*) break ;;
	esac
	shift
done
dir=${1:-$(dirname "$0")/dev}

command -v certtool >/dev/null 2>&1 || {
	echo "dev-cert.sh: certtool not found (Debian: apt-get install gnutls-bin)" >&2
	exit 1
}
umask 077
mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# certtool is chatty; show what it said only when it fails.
run() {
	if ! "$@" >"$tmp/log" 2>&1; then
		cat "$tmp/log" >&2
		exit 1
	fi
}

newkey() {
	run certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 \
		--outfile "$1"
}

# A certificate signed by the CA: $1 template, $2 key, $3 output.
issue() {
	run certtool --generate-certificate --load-privkey "$2" \
		--load-ca-certificate "$dir/ca.crt" --load-ca-privkey "$dir/ca.key" \
		--template "$1" --outfile "$3"
}

if [ ! -s "$dir/ca.crt" ] || [ ! -s "$dir/ca.key" ]; then
	cat >"$tmp/ca.tmpl" <<-TMPL
	cn = "milo-contacts development CA"
	ca
	cert_signing_key
	expiration_days = 3650
	TMPL
	newkey "$tmp/ca.key"
	run certtool --generate-self-signed --load-privkey "$tmp/ca.key" \
		--template "$tmp/ca.tmpl" --outfile "$tmp/ca.crt"
	mv "$tmp/ca.key" "$dir/ca.key"
	mv "$tmp/ca.crt" "$dir/ca.crt"
	rotate=1
fi

if [ "$rotate" = 1 ] || [ ! -s "$dir/tls.crt" ] || [ ! -s "$dir/tls.key" ]; then
	cat >"$tmp/tls.tmpl" <<-TMPL
	cn = "localhost"
	dns_name = "localhost"
	ip_address = "127.0.0.1"
	ip_address = "::1"
	tls_www_server
	signing_key
	expiration_days = 365
	TMPL
	newkey "$tmp/tls.key"
	issue "$tmp/tls.tmpl" "$tmp/tls.key" "$tmp/tls.crt"
	# Each rename is atomic; the server ignores a key that does not
	# match its certificate until the pair is complete.
	mv "$tmp/tls.key" "$dir/tls.key"
	mv "$tmp/tls.crt" "$dir/tls.crt"
fi

if [ "$client" = 1 ]; then
	cat >"$tmp/client.tmpl" <<-TMPL
	cn = "kube-apiserver"
	tls_www_client
	signing_key
	expiration_days = 365
	TMPL
	newkey "$tmp/client.key"
	issue "$tmp/client.tmpl" "$tmp/client.key" "$tmp/client.crt"
	mv "$tmp/client.key" "$dir/client.key"
	mv "$tmp/client.crt" "$dir/client.crt"
fi
chmod 0644 "$dir/ca.crt" "$dir/tls.crt"
