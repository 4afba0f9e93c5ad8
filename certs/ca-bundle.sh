#!/bin/sh
# ca-bundle.sh -- a kustomize overlay that installs the webhook with the
# certificates from certs/make-certs.sh: the CA goes into the caBundle of
# every webhook of both the ValidatingWebhookConfiguration and the
# MutatingWebhookConfiguration, and tls.crt/tls.key/ca.crt into Secret
# contact-webhook-tls (type kubernetes.io/tls), which the Deployment mounts.
#
#   certs/ca-bundle.sh [--dir CERTDIR] [--out OVERLAY] [--base BASE]
#                      [--ca FILE]... [--no-secret] [--print]
#
#   --dir CERTDIR   the certificates (default certs/cluster)
#   --out OVERLAY   the overlay folder to write (default certs/cluster/overlay,
#                   git-ignored: it holds the private key); not inside BASE,
#                   which kustomize refuses as a cycle
#   --base BASE     the kustomization it builds on (default manifests)
#   --ca FILE       PEM CA certificate(s) to trust, instead of CERTDIR/ca.crt;
#                   repeat it to trust the old and the new CA while rotating
#   --no-secret     leave the Secret out (it is made some other way)
#   --print         also print the rendered manifests (kubectl kustomize)
#
# Then:  kubectl apply -k certs/cluster/overlay
#
# What it writes into OVERLAY (every file mode 0600):
#   kustomization.yaml  resources: BASE, ca-bundle.yaml, secret.yaml; a
#                       replacement that copies ca-bundle.yaml's data.caBundle
#                       to webhooks.*.clientConfig.caBundle of both webhook
#                       configurations named contact-webhook, so it covers
#                       every webhook without naming them
#   ca-bundle.yaml      a ConfigMap annotated config.kubernetes.io/local-config,
#                       which kustomize uses and never outputs
#   secret.yaml         Secret contact-webhook-tls in the Service's namespace
#
# The namespace of the Secret is read from the Service in BASE (kubectl
# kustomize) when kubectl is there, else milo-contacts. Rerunning rewrites the
# overlay from the current files; after `make-certs.sh --rotate` apply it
# again (the webhook reloads the Secret's files without a restart; the
# caBundle is unchanged unless the CA was rotated).
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
dir=$top/certs/cluster
out=$top/certs/cluster/overlay
base=$top/manifests
cas=
secret=1
print=0

usage() { sed -n '2,37p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "ca-bundle.sh: $*" >&2; exit 2; }
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
	--dir | --dir=*) need "$@"; dir=$val ;;
	--out | --out=*) need "$@"; out=$val ;;
	--base | --base=*) need "$@"; base=$val ;;
	--ca | --ca=*)
		need "$@"
		[ -s "$val" ] || die "$val: no such file"
		cas="$cas
$val" ;;
	--no-secret) secret=0 ;;
	--print) print=1 ;;
	-h | --help) usage; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
	shift "$shift"
done

[ -f "$base/kustomization.yaml" ] || die "$base has no kustomization.yaml"
[ -n "$cas" ] || cas=$dir/ca.crt
for f in $cas; do
	[ -s "$f" ] || die "$f is missing (run certs/make-certs.sh first)"
	grep -q -- '-----BEGIN CERTIFICATE-----' "$f" || die "$f holds no PEM certificate"
done
if [ "$secret" = 1 ]; then
	for f in tls.crt tls.key ca.crt; do
		[ -s "$dir/$f" ] || die "$dir/$f is missing (run certs/make-certs.sh first)"
	done
fi

b64() { base64 | tr -d '\n'; }

umask 077
# kustomize refuses absolute resource paths: name BASE relative to OVERLAY.
rel=$(realpath -m --relative-to="$out" "$base")
case "$rel" in
*[!./]*) ;; # a path with a name in it: BASE is not OVERLAY or above it
*)
	die "$out is inside $base: kustomize refuses an overlay inside its base (--out elsewhere)" ;;
esac
mkdir -p "$out"

namespace=milo-contacts
service=contact-webhook
if command -v kubectl >/dev/null 2>&1; then
	ns=$(kubectl kustomize "$base" 2>/dev/null | awk '
		/^---/ { svc = 0; inmeta = 0 }
		/^kind: Service$/ { svc = 1 }
		/^metadata:/ { inmeta = 1; next }
		/^[^ ]/ { inmeta = 0 }
		svc && inmeta && /^  namespace: / { print $2; exit }') || ns=
	[ -z "$ns" ] || namespace=$ns
fi

# Write each file beside itself, then rename: a reader never sees half a file.
put() { cat >"$out/.$1.tmp" && mv "$out/.$1.tmp" "$out/$1"; }

# shellcheck disable=SC2086
bundle=$(cat $cas | b64)
put ca-bundle.yaml <<-EOF
	# Written by certs/ca-bundle.sh; kustomize reads it and never outputs it.
	apiVersion: v1
	kind: ConfigMap
	metadata:
	  name: contact-webhook-ca-bundle
	  annotations:
	    config.kubernetes.io/local-config: "true"
	data:
	  caBundle: $bundle
EOF

resources="  - $rel
  - ca-bundle.yaml"
if [ "$secret" = 1 ]; then
	put secret.yaml <<-EOF
		# Written by certs/ca-bundle.sh from $dir. Holds a private key.
		apiVersion: v1
		kind: Secret
		metadata:
		  name: $service-tls
		  namespace: $namespace
		  labels:
		    app.kubernetes.io/name: $service
		    app.kubernetes.io/part-of: milo-contacts
		type: kubernetes.io/tls
		data:
		  tls.crt: $(b64 <"$dir/tls.crt")
		  tls.key: $(b64 <"$dir/tls.key")
		  ca.crt: $(b64 <"$dir/ca.crt")
	EOF
	resources="$resources
  - secret.yaml"
else
	rm -f "$out/secret.yaml"
fi

put kustomization.yaml <<EOF
# Written by certs/ca-bundle.sh (rerun it rather than editing this):
# $rel with the development CA in every webhook's caBundle
# and the serving certificate in Secret $service-tls.
#   kubectl apply -k $out
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
$resources
replacements:
  - source:
      kind: ConfigMap
      name: contact-webhook-ca-bundle
      fieldPath: data.caBundle
    targets:
      - select:
          group: admissionregistration.k8s.io
          kind: ValidatingWebhookConfiguration
          name: contact-webhook
        fieldPaths: [webhooks.*.clientConfig.caBundle]
        options: {create: true}
      - select:
          group: admissionregistration.k8s.io
          kind: MutatingWebhookConfiguration
          name: contact-webhook
        fieldPaths: [webhooks.*.clientConfig.caBundle]
        options: {create: true}
EOF

if [ "$print" = 1 ]; then
	command -v kubectl >/dev/null 2>&1 || die "--print needs kubectl (kubectl kustomize)"
	kubectl kustomize "$out"
else
	echo "ca-bundle.sh: wrote $out; apply it with: kubectl apply -k $out" >&2
fi
