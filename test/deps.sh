#!/bin/sh
# Installs the Debian packages the build and the tests need, only those that
# are missing; as root directly, otherwise through sudo. Extra package
# names on the command line are added (make bench: wrk, nginx-light).
set -eu
pkgs="build-essential pkg-config libmicrohttpd-dev libgnutls28-dev gnutls-bin
libjansson-dev libcurl4-gnutls-dev libyaml-dev check libsubunit-dev valgrind
clang curl python3 gdb $*"
missing=""
for p in $pkgs; do
	st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	case "$st" in
	*" installed") ;;
	*) missing="$missing $p" ;;
	esac
done
[ -z "$missing" ] && exit 0
echo "deps: installing$missing"
if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# shellcheck disable=SC2086
$sudo apt-get install -y -qq --no-install-recommends $missing
