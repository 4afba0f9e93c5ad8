#!/bin/sh
# Installs the Debian packages the build and the tests need, only those that
# are missing; as root directly, otherwise through sudo. Extra package
# names on the command line are added (make bench: wrk, nginx-light).
# Then the test-only npm packages of test/cel (the CEL evaluator the kube
# stand-in runs CRD rules with), from its package-lock.json, when missing.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
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
# Node.js and npm from Debian (18 on bookworm) unless some node and npm
# are already on the PATH (a newer Node.js installed otherwise will do).
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
if [ -n "$missing" ]; then
	echo "deps: installing$missing"
	if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get update -qq
	# shellcheck disable=SC2086
	$sudo apt-get install -y -qq --no-install-recommends $missing
fi
# npm ci again when package-lock.json changed since the last install.
cel="$here/cel"
if [ ! -f "$cel/node_modules/.package-lock.json" ] ||
    ! cmp -s "$cel/package-lock.json" "$cel/node_modules/.milo-lock"; then
	echo "deps: npm ci in test/cel"
	(cd "$cel" && npm ci --no-audit --no-fund --loglevel=error)
	cp "$cel/package-lock.json" "$cel/node_modules/.milo-lock"
fi
