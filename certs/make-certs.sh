#!/bin/sh
# make-certs.sh -- a development CA and an ECDSA P-256 serving certificate for
# the webhook's Service, made with certtool (Debian: gnutls-bin), written in
# the kubernetes.io/tls Secret layout: tls.crt, tls.key and ca.crt (plus
# ca.key so the serving certificate can be reissued from the same CA).
#
#   certs/make-certs.sh [--service NAME] [--namespace NS] [--dir DIR]
#                       [--days N] [--rotate] [--rotate-ca] [--quiet]
#
#   --service NAME    Service name (default contact-webhook)
#   --namespace NS    its namespace (default milo-contacts)
#   --dir DIR         where the files go (default certs/cluster, git-ignored)
#   --days N          serving certificate lifetime (default 365; the CA: 3650)
#   --rotate          issue a new serving key and certificate from the same CA
#                     (clients that trust ca.crt keep working)
#   --rotate-ca       also make a new CA (every caBundle must be updated:
#                     rerun certs/ca-bundle.sh and apply it)
#   --quiet           say nothing on success
#
# The serving certificate's SANs: NAME, NAME.NS, NAME.NS.svc,
# NAME.NS.svc.cluster.local, localhost and 127.0.0.1. kube-apiserver checks
# NAME.NS.svc (it dials https://NAME.NS.svc:PORT for a service reference);
# localhost and 127.0.0.1 let a developer and the test stand-in talk to it
# directly. Files that exist are kept, so rerunning is cheap and does not
# invalidate a caBundle already applied; the serving certificate is reissued
# (same CA) when --service or --namespace ask for names the existing one lacks,
# and when tls.crt and tls.key do not belong together.
#
# Next: certs/ca-bundle.sh writes a kustomize overlay (certs/cluster/overlay)
# that puts ca.crt into both webhook configurations' caBundle and tls.* into
# Secret contact-webhook-tls; `kubectl apply -k certs/cluster/overlay`.
# test/py/dev_cluster.py (make run) and test/py/test_e2e.py (make e2e) use
# both. certs/dev-cert.sh (localhost only, certs/dev) stays as it was for the
# tests and tools that use it.
set -eu

service=contact-webhook
namespace=milo-contacts
dir=
days=365
rotate=0
rotate_ca=0
quiet=0
new_ca=0

usage() { sed -n '2,34p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "make-certs.sh: $*" >&2; exit 2; }
# A flag's value, from "--flag value" or "--flag=value"; sets $val and $shift.
need() {
	case "$1" in
	*=*) val=${1#*=}; shift=1 ;;
	*) [ $# -ge 2 ] || die "$1 needs a value"; val=$2; shift=2 ;;
	esac
	[ -n "$val" ] || die "${1%%=*} needs a value"
}

while [ $# -gt 0 ]; do
	shift=1
	case "$1" in
	--service | --service=*) need "$@"; service=$val ;;
	--namespace | --namespace=*) need "$@"; namespace=$val ;;
	--dir | --dir=*) need "$@"; dir=$val ;;
	--days | --days=*) need "$@"; days=$val ;;
	--rotate) rotate=1 ;;
	--rotate-ca) rotate_ca=1; rotate=1 ;;
	--quiet | -q) quiet=1 ;;
	-h | --help) usage; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
	shift "$shift"
done

# DNS-1123 labels: what a Service and a namespace name may be.
for n in "$service" "$namespace"; do
	case "$n" in
	*[!a-z0-9-]* | -* | *-) die "\"$n\" is not a valid Service or namespace name" ;;
	esac
	[ ${#n} -le 63 ] || die "\"$n\" is longer than 63 characters"
done
case "$days" in
'' | *[!0-9]*) die "--days wants a whole number of days" ;;
esac

[ -n "$dir" ] || dir=$(dirname "$0")/cluster
command -v certtool >/dev/null 2>&1 || {
	echo "make-certs.sh: certtool not found (Debian: apt-get install gnutls-bin)" >&2
	exit 1
}

say() { [ "$quiet" = 1 ] || echo "make-certs.sh: $*"; }

umask 077
mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

# certtool is chatty; show what it said only when it fails.
run() {
	if ! "$@" >"$tmp/log" 2>&1; then
		cat "$tmp/log" >&2
		exit 1
	fi
}

newkey() {
	run certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 \
		--no-text --outfile "$1"
}

# The names the serving certificate must carry, one a line.
names() {
	printf '%s\n' "$service" "$service.$namespace" "$service.$namespace.svc" \
		"$service.$namespace.svc.cluster.local" localhost
}

# Does the existing tls.crt carry every name and 127.0.0.1?
has_names() {
	certtool --certificate-info --infile "$dir/tls.crt" 2>/dev/null |
		sed 's/^[[:space:]]*//' >"$tmp/info" || return 1
	for n in $(names); do
		grep -qxF "DNSname: $n" "$tmp/info" || return 1
	done
	grep -qxF "IPAddress: 127.0.0.1" "$tmp/info"
}

# The sha256 public key id in certtool's --certificate-info or --key-info.
keyid() {
	grep -A2 'Public Key ID:' | sed -n 's/^[[:space:]]*sha256://p' | head -n 1
}

# Do certificate $1 and key $2 belong together? (Same public key id.)
pair_matches() {
	a=$(certtool --certificate-info --infile "$1" 2>/dev/null | keyid)
	b=$(certtool --key-info --infile "$2" 2>/dev/null | keyid)
	[ -n "$a" ] && [ "$a" = "$b" ]
}

if [ "$rotate_ca" = 1 ] || [ ! -s "$dir/ca.crt" ] || [ ! -s "$dir/ca.key" ]; then
	cat >"$tmp/ca.tmpl" <<-TMPL
	cn = "milo-contacts development CA"
	organization = "milo-contacts"
	serial = $(date +%s)
	ca
	path_len = 0
	cert_signing_key
	crl_signing_key
	expiration_days = 3650
	TMPL
	newkey "$tmp/ca.key"
	run certtool --generate-self-signed --load-privkey "$tmp/ca.key" \
		--template "$tmp/ca.tmpl" --no-text --outfile "$tmp/ca.crt"
	mv "$tmp/ca.key" "$dir/ca.key"
	mv "$tmp/ca.crt" "$dir/ca.crt"
	say "new CA in $dir/ca.crt"
	new_ca=1
fi

# A CA whose key is not its own would sign certificates nothing verifies;
# replacing it silently would break every caBundle already applied.
pair_matches "$dir/ca.crt" "$dir/ca.key" ||
	die "$dir/ca.key does not belong to $dir/ca.crt (--rotate-ca makes a new CA)"

why=
if [ "$new_ca" = 1 ]; then
	why="new serving certificate"
elif [ "$rotate" = 1 ]; then
	why="rotated the serving certificate"
elif [ ! -s "$dir/tls.crt" ] || [ ! -s "$dir/tls.key" ]; then
	why="new serving certificate"
elif ! has_names; then
	why="reissued the serving certificate (it lacked a name)"
elif ! pair_matches "$dir/tls.crt" "$dir/tls.key"; then
	why="reissued the serving certificate (tls.key did not match tls.crt)"
elif ! certtool --verify --load-ca-certificate "$dir/ca.crt" \
	--infile "$dir/tls.crt" >/dev/null 2>&1; then
	# Signed by another CA, or expired.
	why="reissued the serving certificate (it did not verify against ca.crt)"
fi

if [ -n "$why" ]; then
	{
		echo "cn = \"$service.$namespace.svc\""
		echo "organization = \"milo-contacts\""
		echo "serial = $(date +%s)$$"
		for n in $(names); do
			echo "dns_name = \"$n\""
		done
		echo 'ip_address = "127.0.0.1"'
		echo "tls_www_server"
		echo "signing_key"
		echo "expiration_days = $days"
	} >"$tmp/tls.tmpl"
	newkey "$tmp/tls.key"
	run certtool --generate-certificate --load-privkey "$tmp/tls.key" \
		--load-ca-certificate "$dir/ca.crt" --load-ca-privkey "$dir/ca.key" \
		--template "$tmp/tls.tmpl" --no-text --outfile "$tmp/tls.crt"
	run certtool --verify --load-ca-certificate "$dir/ca.crt" --infile "$tmp/tls.crt"
	# Key first, then certificate: each rename is atomic, and the webhook
	# ignores a key that does not match its certificate until the pair is
	# complete, so a running server never loads half a rotation.
	mv "$tmp/tls.key" "$dir/tls.key"
	mv "$tmp/tls.crt" "$dir/tls.crt"
	say "$why: $dir/tls.crt for $(names | tr '\n' ' ')127.0.0.1"
else
	say "kept $dir/tls.crt (--rotate for a new one)"
fi
chmod 0644 "$dir/ca.crt" "$dir/tls.crt"
chmod 0600 "$dir/ca.key" "$dir/tls.key"
