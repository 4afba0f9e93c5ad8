#!/usr/bin/env python3
"""kube_standin.py -- a single-file stand-in for kube-apiserver, for tests.

kube-apiserver has no Debian package, so the C client tests, the webhook's
cluster-state tests, `make run` and `make e2e` talk to this instead. It uses
the Python 3 standard library only and listens on 127.0.0.1 only.

What it serves
==============
* Discovery that kubectl understands: /version, /api, /api/v1, /apis,
  /apis/<group>, /apis/<group>/<version> (plain APIGroupList/APIResourceList,
  no aggregated discovery; /openapi/v2 and /openapi/v3 answer 404, so run
  kubectl with --validate=false).
* Generic storage for
    notification.miloapis.com/v1alpha1  contacts, contactgroups,
        contactgroupmemberships, contactgroupmembershipremovals (namespaced,
        with a status subresource)
    iam.miloapis.com/v1alpha1            users (cluster-scoped)
    resourcemanager.miloapis.com/v1alpha1 organizations, projects (cluster)
    apiextensions.k8s.io/v1              customresourcedefinitions (stored;
        a CRD for a group not listed here is served as a new resource)
    admissionregistration.k8s.io/v1      validating/mutatingwebhookconfigurations
    authorization.k8s.io/v1              subjectaccessreviews,
        selfsubjectaccessreviews (answers only, nothing stored)
    authentication.k8s.io/v1             tokenreviews (answers only; see
        "Tokens and TokenReviews")
    coordination.k8s.io/v1 leases, events.k8s.io/v1 events, v1 namespaces,
    v1 events, and -- store only, so that whole manifest directories apply --
    v1 configmaps/secrets/services/serviceaccounts, apps/v1 deployments,
    policy/v1 poddisruptionbudgets, networking.k8s.io/v1 networkpolicies,
    scheduling.k8s.io/v1 priorityclasses, rbac.authorization.k8s.io/v1 roles,
    rolebindings, clusterroles, clusterrolebindings.
* CRUD with kube semantics: generateName, uid, creationTimestamp, one global
  resourceVersion counter, generation (bumped only when spec changes), 409
  AlreadyExists / Conflict, finalizers and deletionTimestamp, ownerReference
  garbage collection, namespace termination, the /status subresource (and the
  main resource ignoring status), merge patch, JSON patch (RFC 6902),
  strategic merge patch for built-in kinds (415 for custom resources, as
  kube does), server-side apply refused with 415, dryRun=All, list paging
  with limit/continue (consistent snapshots), label and field selectors,
  meta.k8s.io Table output for `kubectl get` (CRD printer columns honoured).
* Watches as a chunked JSON event stream with bookmarks, 410 Gone / Expired,
  an event history window, and label-selector ADDED/DELETED transitions.
* Admission as kube-apiserver does it: stored Mutating- and
  ValidatingWebhookConfigurations are called over HTTPS (see "Admission").
* Errors are metav1.Status objects with kube's messages, e.g.
  `contacts.notification.miloapis.com "x" not found`.

Starting it
===========
    python3 test/py/kube_standin.py --port 0 --port-file F --kubeconfig-out K \
        [--token T] [--require-token T] [--service-host name.ns.svc=127.0.0.1:9443]
        [--tls-cert C --tls-key K2 [--tls-port 0] [--tls-port-file F2]
         [--tls-ca CA --tls-kubeconfig-out K3]] [--history-size N]
        [--bookmark-interval S] [--no-auto-namespaces] [-v]

It writes the chosen port to F (atomically), a kubeconfig (http:// server,
token user, namespace default) to K, logs to stderr and exits 0 on SIGTERM or
SIGINT. --tls-cert/--tls-key add a second, HTTPS listener on the same state.
MILO_STANDIN_SERVICE_HOSTS="a.ns.svc=127.0.0.1:9443,..." adds service maps.

In-process use:
    from kube_standin import StandIn
    s = StandIn().start()        # s.url, s.port, s.state, s.write_kubeconfig(p)
    s.control("fail", {"count": 1})
    s.stop()                     # also a context manager

Control API (plain HTTP on the same port, under /_standin/, never authenticated)
=================================================================================
All bodies and answers are JSON. Keys are camelCase.
  GET  /_standin/healthz            "ok"
  GET  /_standin/state              resourceVersion, compactedResourceVersion,
                                    history length, object count, open watches,
                                    the current config
  POST /_standin/config             set config keys, any of:
        historySize (1000), bookmarkInterval (60 s; 0 = none),
        watchChunking ("event": one event per chunk | "pack": all ready
        events in one chunk | "split": each event cut in chunkSize pieces |
        "mixed": ready events joined then cut in chunkSize pieces, so chunk
        and event boundaries differ), chunkSize (7), chunkDelay (0 s: pause
        between chunks), goneMode ("http": a too-old watch gets an HTTP 410
        Status | "event": HTTP 200 then an ERROR event with a 410 Status, as
        the watch cache does), goneReason ("Expired" | "Gone"),
        defaultWatchTimeout (1800 s), continueTTL (300 s), autoCreateNamespaces
        (true), gc (true), admission (true), requiredTokens, users, sarPolicy,
        serviceHosts, maxBody (3 MiB)
  POST /_standin/fail               add a fault rule: {"count": N (omit = until
        cleared), "code": 500, "reason": "InternalError", "message": "...",
        "pathPrefix": "/apis/...", "method": "GET", "retryAfter": s,
        "drop": true (close the connection without answering)};
        {"clear": true} removes all rules. Watches are subject to it too.
  POST /_standin/latency            {"seconds": 0.2, "pathPrefix": "/apis/..",
        "request": "list" | "watch" | "other" (omit: all)} delay matching API
        requests (list: a GET without watch, e.g. an informer's initial list);
        {"seconds": 0} with the same pathPrefix and request clears.
  POST /_standin/watch-delay        {"seconds": 3, "pathPrefix": "/apis/.."}
        deliver the events of matching watches late (each batch waits);
        {"seconds": 0} clears.
  POST /_standin/cut-watches        {"mode": "abort" (reset, no final chunk) |
        "clean" (final chunk) | "expire" (ERROR 410 Expired event, then end)}
        -> {"cut": n}
  POST /_standin/compact            {"expireOpenWatches": false}: forget all
        history, so a watch from any older resourceVersion gets 410
        -> {"compactedResourceVersion": rv}
  POST /_standin/token              {"tokens": ["t1", "t2"]} accepted bearer
        tokens (401 Status otherwise); {"tokens": null} accepts any token.
  POST /_standin/users              {"tokens": {"tok": {"username": "alice",
        "uid": "1", "groups": [...], "extra": {"k": ["v"]}}}, "default": {...}}
        maps tokens to users (default user: admin, groups system:masters and
        system:authenticated). Impersonate-User/-Group/-Uid/-Extra-* honoured.
  POST /_standin/sar-policy         {"default": true, "enforce": false,
        "rules": [{"user": "alice", "group": .., "namespace": "b",
        "verb": "get", "apiGroup": .., "resource": "contacts",
        "subresource": .., "name": .., "allowed": false, "reason": ".."}]}
        First matching rule wins (a missing field or "*" matches anything; a
        field may be a list). "path" matches a non-resource URL
        (nonResourceAttributes.path, e.g. "/metrics"; "" for resource
        requests). "enforce" also applies it to API requests (403), and to
        creating SubjectAccessReviews and TokenReviews (verb create,
        apiGroup authorization.k8s.io / authentication.k8s.io), as RBAC does.
  POST /_standin/bookmarks          {"interval": seconds}
  POST /_standin/watch-mode         {"chunking": .., "chunkSize": .., "chunkDelay":
        .., "goneMode": .., "goneReason": ..}
  POST /_standin/service-hosts      {"name.ns.svc": "127.0.0.1:9443", "x.y.svc": null}
  GET  /_standin/requests?since=N   {"next": M, "items": [{seq, time, method,
        path, query, rawQuery, headers (Authorization, Content-Type, Accept,
        User-Agent, Impersonate-*), user, code, body}]}; DELETE clears.
  GET  /_standin/admission-log?since=N  every webhook call: webhook, type,
        url, operation, resource, outcome (allowed|denied|patched|error|
        ignored|skipped), error, durationMs, request, response; DELETE clears.
  GET  /_standin/objects            every stored object (debug)
  POST /_standin/reset              objects, history, logs and config back to
        defaults; open watches cut. The resourceVersion counter keeps going.

Tokens and TokenReviews
=======================
An API request's bearer token is accepted when requiredTokens is null (any
token, and none) or lists it; it then acts as the user /_standin/users maps
it to, else as the default user. A TokenReview (POST
/apis/authentication.k8s.io/v1/tokenreviews, as an HTTP server delegating
authentication to kube-apiserver sends it) answers the same way for
spec.token: status.authenticated true with status.user (username, uid,
groups, extra) and status.audiences (spec.audiences, else
["https://kubernetes.default.svc"]), or status.authenticated false and
status.error "invalid bearer token". An empty spec.token is a 400, as
kube-apiserver answers.

Admission
=========
On CREATE, UPDATE (PUT and PATCH) and DELETE of any resource except webhook
configurations, SARs and auto-created namespaces, matching mutating webhooks
are called first, one after another in configuration-name order (with one
reinvocation round for reinvocationPolicy IfNeeded), their JSONPatch applied;
then the object is defaulted and validated (a custom resource against its
CRD's schema and CEL rules), then the validating webhooks are called in
parallel. Matching: rules (operations, apiGroups, apiVersions,
resources with `*`, `*/*`, `<plural>/status`, scope), namespaceSelector
(against the namespace's labels; namespaces are auto-created with
kubernetes.io/metadata.name), objectSelector (new or old object).
matchConditions are not evaluated (every webhook behaves as if they held).
Calls are POST <path>?timeout=<N>s over HTTPS (http/1.1, keep-alive pooled),
the certificate checked against caBundle (or system roots) and, for a
service reference, the name <svc>.<ns>.svc (mapped to an address with
serviceHosts / --service-host). The response is checked as kube-apiserver
does; failures follow failurePolicy (Fail: 500 InternalError
`Internal error occurred: failed calling webhook "<name>": <why>`); a denial
returns the webhook's status with `admission webhook "<name>" denied the
request: <message>`; warnings come back as `Warning: 299 - "<text>"`.

Protobuf: kubectl sends a few built-in bodies as protobuf (auth can-i,
create namespace/configmap/secret/serviceaccount); those are decoded, and
answers are always JSON (client-go accepts it). Other protobuf bodies get 415.

Custom resources with a stored CRD
==================================
are decoded, validated and selected as kube-apiserver 1.35 does
(crd_schema.py): pruning (fieldValidation Warn/Strict/Ignore), nulls and
defaults before and after mutating webhooks, then the OpenAPI schema and
the x-kubernetes-validations CEL rules (run by test/cel/cel_eval.mjs,
@bufbuild/cel; `make deps` installs it) with kube's 422 texts, ratcheting
on updates; fieldSelector on metadata.name, metadata.namespace and the
CRD's selectableFields, 400 "field label not supported: <f>" otherwise.

Known gaps (on purpose): no OpenAPI, no server-side apply, no
matchConditions, no CEL cost budget or rule type-checking, protobuf
only as above, GC and namespace cleanup are synchronous and skip admission,
core/v1 and events.k8s.io/v1 events are stored separately.
"""

import argparse
import base64
import bisect
import collections
import copy
import hashlib
import http.client
import http.server
import json
import os
import re
import signal
import socket
import ssl
import sys
import threading
import time
import traceback
import urllib.parse
import uuid
from datetime import datetime, timezone

import crd_schema

VERSION_INFO = {
    "major": "1",
    "minor": "35",
    "gitVersion": "v1.35.0-standin",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "go1.25.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}

MAX_BODY = 3 * 1024 * 1024          # kube-apiserver's request body limit
REQUEST_LOG_MAX = 10000
REQUEST_LOG_BODY_MAX = 16384        # bytes of a request body kept in the log
ADMISSION_LOG_MAX = 2000
SNAPSHOT_MAX = 32                   # list snapshots kept for continue tokens
WARNING_ITEM_RUNES = 256
WARNING_TOTAL_RUNES = 4096
STANDARD_FINALIZERS = ("kubernetes", "orphan", "foregroundDeletion")

LOG = {"verbose": False, "cli": False}


def log(msg, *args):
    if args:
        msg = msg % args
    sys.stderr.write("kube-standin: %s\n" % msg)
    sys.stderr.flush()


def vlog(msg, *args):
    if LOG["verbose"]:
        log(msg, *args)


def event_log(msg, *args):
    """Things kube-apiserver would log: on in the CLI, quiet in-process unless verbose."""
    if LOG["cli"] or LOG["verbose"]:
        log(msg, *args)


def now_rfc3339(t=None):
    t = time.time() if t is None else t
    return datetime.fromtimestamp(int(t), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(s):
    try:
        return datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=timezone.utc).timestamp()
    except (TypeError, ValueError):
        return None


def human_duration(secs):
    """Ages the way kubectl columns show them (5s, 3m20s, 4h, 2d3h, 1y)."""
    secs = int(secs)
    if secs < 0:
        return "<invalid>"
    if secs < 120:
        return "%ds" % secs
    mins = secs // 60
    if mins < 10:
        return "%dm" % mins if secs % 60 == 0 else "%dm%ds" % (mins, secs % 60)
    if mins < 180:
        return "%dm" % mins
    hours = mins // 60
    if hours < 8:
        return "%dh" % hours if mins % 60 == 0 else "%dh%dm" % (hours, mins % 60)
    if hours < 48:
        return "%dh" % hours
    days = hours // 24
    if hours < 24 * 8:
        return "%dd" % days if hours % 24 == 0 else "%dd%dh" % (days, hours % 24)
    if hours < 24 * 365 * 2:
        return "%dd" % days
    years = days // 365
    if hours < 24 * 365 * 8:
        return "%dy" % years if days % 365 == 0 else "%dy%dd" % (years, days % 365)
    return "%dy" % years


def dumps(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def rand_suffix(n=5):
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    raw = os.urandom(n)
    return "".join(alphabet[b % len(alphabet)] for b in raw)


go_quote = crd_schema.go_quote
json_equal = crd_schema.json_equal


# --------------------------------------------------------------------------
# Errors: metav1.Status with kube's reasons and messages
# --------------------------------------------------------------------------

class ApiError(Exception):
    def __init__(self, code, reason, message, details=None, headers=None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or []
        self.warnings = []

    def status(self):
        st = {"kind": "Status", "apiVersion": "v1", "metadata": {},
              "status": "Failure", "message": self.message}
        if self.reason:
            st["reason"] = self.reason
        if self.details is not None:
            st["details"] = self.details
        st["code"] = self.code
        return st


class StatusError(ApiError):
    """An error carrying a status object verbatim (webhook denials)."""

    def __init__(self, status):
        super().__init__(status.get("code", 500), status.get("reason", ""),
                         status.get("message", ""), status.get("details"))
        self._status = status

    def status(self):
        st = {"kind": "Status", "apiVersion": "v1", "metadata": {}}
        for k, v in self._status.items():
            if k not in ("kind", "apiVersion"):
                st[k] = v
        if not isinstance(st.get("metadata"), dict):
            st["metadata"] = {}
        return st


def _details(rd, name, kind=None):
    d = {}
    if name:
        d["name"] = name
    if rd is not None and rd.group:
        d["group"] = rd.group
    if rd is not None:
        d["kind"] = kind or rd.plural
    return d


def err_not_found(rd, name):
    return ApiError(404, "NotFound", '%s "%s" not found' % (rd.qualified, name),
                    _details(rd, name))


def err_ns_not_found(name):
    return ApiError(404, "NotFound", 'namespaces "%s" not found' % name,
                    {"name": name, "kind": "namespaces"})


def err_no_route():
    return ApiError(404, "NotFound", "the server could not find the requested resource",
                    {})


def err_already_exists(rd, name):
    return ApiError(409, "AlreadyExists", '%s "%s" already exists' % (rd.qualified, name),
                    _details(rd, name))


OPTIMISTIC_LOCK_MSG = ("the object has been modified; please apply your changes to "
                       "the latest version and try again")


def err_conflict(rd, name, msg=OPTIMISTIC_LOCK_MSG):
    return ApiError(409, "Conflict", 'Operation cannot be fulfilled on %s "%s": %s'
                    % (rd.qualified, name, msg), _details(rd, name))


def err_bad_request(msg):
    return ApiError(400, "BadRequest", msg)


def err_method_not_allowed():
    return ApiError(405, "MethodNotAllowed",
                    "the server does not allow this method on the requested resource",
                    {})


def err_unsupported_media(accepted):
    return ApiError(415, "UnsupportedMediaType",
                    "the body of the request was in an unknown format - accepted media "
                    "types include: " + ", ".join(accepted))


def err_internal(msg):
    return ApiError(500, "InternalError", "Internal error occurred: %s" % msg,
                    {"causes": [{"message": msg}]})


def err_expired(msg):
    return ApiError(410, "Expired", msg)


def err_forbidden(rd, name, msg):
    if name:
        text = '%s "%s" is forbidden: %s' % (rd.qualified, name, msg)
    else:
        text = "%s is forbidden: %s" % (rd.qualified, msg)
    return ApiError(403, "Forbidden", text, _details(rd, name))


class FieldError:
    TYPES = {
        "FieldValueRequired": "Required value",
        "FieldValueInvalid": "Invalid value",
        "FieldValueNotSupported": "Unsupported value",
        "FieldValueDuplicate": "Duplicate value",
        "FieldValueNotFound": "Not found",
        "FieldValueForbidden": "Forbidden",
        "FieldValueTooLong": "Too long",
        "FieldValueTooMany": "Too many",
        "FieldValueTypeInvalid": "Invalid value",
    }
    _NO_VALUE = object()

    def __init__(self, etype, field, value=_NO_VALUE, detail=""):
        self.etype = etype
        self.field = field
        self.value = value
        self.detail = detail

    def body(self):
        """apimachinery's ErrorBody (Kubernetes 1.35): simple values with %v or
        %q, complex ones as JSON, nothing for Required/Forbidden/TooLong."""
        s = self.TYPES[self.etype]
        if self.etype not in ("FieldValueRequired", "FieldValueForbidden",
                              "FieldValueTooLong") \
                and self.value is not self._NO_VALUE and self.value is not crd_schema.OMIT:
            s += ": " + render_bad_value(self.value)
        if self.detail:
            s += ": " + self.detail
        return s

    def message(self):
        return "%s: %s" % (self.field, self.body())

    def cause(self):
        return {"reason": self.etype, "message": self.body(), "field": self.field}


def render_bad_value(v):
    if isinstance(v, str):
        return go_quote(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return crd_schema.go_float(v)
    # json.Marshal: sorted keys, no spaces, <>& escaped
    text = json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def err_invalid(rd, name, errs):
    kind = rd.kind + ("." + rd.group if rd.group else "")
    msgs = []
    for e in errs:      # ToAggregate drops repeated messages
        if e.message() not in msgs:
            msgs.append(e.message())
    joined = msgs[0] if len(msgs) == 1 else "[" + ", ".join(msgs) + "]"
    details = {"name": name} if name else {}
    if rd.group:
        details["group"] = rd.group
    details["kind"] = rd.kind
    details["causes"] = [e.cause() for e in errs]
    return ApiError(422, "Invalid", '%s "%s" is invalid: %s' % (kind, name or "", joined),
                    details)


# --------------------------------------------------------------------------
# Resource registry
# --------------------------------------------------------------------------

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


class ResDef:
    def __init__(self, group, version, plural, kind, namespaced, subresources=(),
                 singular=None, short_names=(), categories=(), builtin=True,
                 generation=False, verbs=None, virtual=False):
        self.group = group
        self.version = version
        self.plural = plural
        self.kind = kind
        self.namespaced = namespaced
        self.subresources = tuple(subresources)
        self.singular = singular or kind.lower()
        self.short_names = list(short_names)
        self.categories = list(categories)
        self.builtin = builtin          # strategic merge patch allowed
        self.generation = generation    # metadata.generation is maintained
        self.verbs = verbs or VERBS
        self.virtual = virtual          # create-only review resources
        self.dynamic = False            # registered from a stored CRD

    @property
    def gv(self):
        return "%s/%s" % (self.group, self.version) if self.group else self.version

    @property
    def key(self):
        return (self.group, self.plural)

    @property
    def qualified(self):
        return "%s.%s" % (self.plural, self.group) if self.group else self.plural

    @property
    def list_kind(self):
        return self.kind + "List"

    def discovery(self):
        out = [{
            "name": self.plural, "singularName": self.singular,
            "namespaced": self.namespaced, "kind": self.kind,
            "verbs": list(self.verbs),
        }]
        if self.short_names:
            out[0]["shortNames"] = list(self.short_names)
        if self.categories:
            out[0]["categories"] = list(self.categories)
        for sub in self.subresources:
            out.append({"name": "%s/%s" % (self.plural, sub), "singularName": "",
                        "namespaced": self.namespaced, "kind": self.kind,
                        "verbs": ["get", "patch", "update"]})
        return out


NOTIF = "notification.miloapis.com"


def builtin_resources():
    R = ResDef
    return [
        R("", "v1", "namespaces", "Namespace", False, ("status",), short_names=["ns"]),
        R("", "v1", "events", "Event", True, short_names=["ev"]),
        R("", "v1", "configmaps", "ConfigMap", True, short_names=["cm"]),
        R("", "v1", "secrets", "Secret", True),
        R("", "v1", "services", "Service", True, ("status",), short_names=["svc"]),
        R("", "v1", "serviceaccounts", "ServiceAccount", True, short_names=["sa"]),
        R("apps", "v1", "deployments", "Deployment", True, ("status",),
          short_names=["deploy"], generation=True),
        R("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True,
          ("status",), short_names=["pdb"], generation=True),
        R("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True,
          short_names=["netpol"], generation=True),
        R("scheduling.k8s.io", "v1", "priorityclasses", "PriorityClass", False,
          short_names=["pc"]),
        R("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
        R("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
        R("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
        R("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding",
          False),
        R("coordination.k8s.io", "v1", "leases", "Lease", True),
        R("events.k8s.io", "v1", "events", "Event", True, short_names=["ev"]),
        R("apiextensions.k8s.io", "v1", "customresourcedefinitions",
          "CustomResourceDefinition", False, ("status",), short_names=["crd", "crds"],
          generation=True),
        R("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations",
          "ValidatingWebhookConfiguration", False, generation=True),
        R("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations",
          "MutatingWebhookConfiguration", False, generation=True),
        R("authorization.k8s.io", "v1", "subjectaccessreviews", "SubjectAccessReview",
          False, verbs=["create"], virtual=True),
        R("authorization.k8s.io", "v1", "selfsubjectaccessreviews",
          "SelfSubjectAccessReview", False, verbs=["create"], virtual=True),
        R("authentication.k8s.io", "v1", "tokenreviews", "TokenReview", False,
          verbs=["create"], virtual=True),
        R(NOTIF, "v1alpha1", "contacts", "Contact", True, ("status",), builtin=False,
          generation=True),
        R(NOTIF, "v1alpha1", "contactgroups", "ContactGroup", True, ("status",),
          builtin=False, generation=True),
        R(NOTIF, "v1alpha1", "contactgroupmemberships", "ContactGroupMembership", True,
          ("status",), builtin=False, generation=True),
        R(NOTIF, "v1alpha1", "contactgroupmembershipremovals",
          "ContactGroupMembershipRemoval", True, ("status",), builtin=False,
          generation=True),
        R("iam.miloapis.com", "v1alpha1", "users", "User", False, ("status",),
          builtin=False, generation=True),
        R("resourcemanager.miloapis.com", "v1alpha1", "organizations", "Organization",
          False, ("status",), builtin=False, generation=True),
        R("resourcemanager.miloapis.com", "v1alpha1", "projects", "Project", False,
          ("status",), builtin=False, generation=True),
    ]


class Registry:
    def __init__(self):
        self.by_gvr = {}        # (group, version, plural) -> ResDef
        self.order = []         # group order for discovery
        for rd in builtin_resources():
            self.add(rd)

    def add(self, rd):
        self.by_gvr[(rd.group, rd.version, rd.plural)] = rd
        if rd.group not in self.order:
            self.order.append(rd.group)

    def remove_dynamic(self, group, plural):
        for k in [k for k, v in self.by_gvr.items()
                  if v.dynamic and v.group == group and v.plural == plural]:
            del self.by_gvr[k]

    def get(self, group, version, plural):
        return self.by_gvr.get((group, version, plural))

    def by_key(self, group, plural):
        for rd in self.by_gvr.values():
            if rd.group == group and rd.plural == plural:
                return rd
        return None

    def groups(self):
        """[(group, [versions])] in registration order."""
        out = collections.OrderedDict()
        for g in self.order:
            for rd in self.by_gvr.values():
                if rd.group == g:
                    out.setdefault(g, [])
                    if rd.version not in out[g]:
                        out[g].append(rd.version)
        return [(g, v) for g, v in out.items() if v]

    def resources(self, group, version):
        return [rd for rd in self.by_gvr.values()
                if rd.group == group and rd.version == version]

    def all(self):
        return list(self.by_gvr.values())


# --------------------------------------------------------------------------
# Selectors
# --------------------------------------------------------------------------

_SEL_TOKEN = re.compile(r"\s*(!=|==|=|\(|\)|,|!|[^\s!=(),]+)")


def parse_label_selector(text):
    """Label selector string -> list of (key, op, values). Raises ApiError."""
    reqs = []
    if not text or not text.strip():
        return reqs
    toks = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _SEL_TOKEN.match(text, pos)
        if not m:
            raise err_bad_request("unable to parse requirement: invalid label selector: %r"
                                  % text)
        toks.append(m.group(1))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    i = 0

    def bad():
        return err_bad_request("unable to parse requirement: found '%s', expected: "
                               "identifier" % (toks[i] if i < len(toks) else ""))

    while i < len(toks):
        if toks[i] == "!":
            if i + 1 >= len(toks):
                raise bad()
            reqs.append((toks[i + 1], "!", []))
            i += 2
        else:
            key = toks[i]
            i += 1
            if i >= len(toks) or toks[i] == ",":
                reqs.append((key, "exists", []))
            elif toks[i] in ("=", "==", "!="):
                op = "!=" if toks[i] == "!=" else "="
                if i + 1 >= len(toks) or toks[i + 1] == ",":
                    reqs.append((key, op, [""]))
                    i += 1
                else:
                    reqs.append((key, op, [toks[i + 1]]))
                    i += 2
            elif toks[i] in ("in", "notin"):
                op = toks[i]
                i += 1
                if i >= len(toks) or toks[i] != "(":
                    raise bad()
                i += 1
                vals = []
                while i < len(toks) and toks[i] != ")":
                    if toks[i] != ",":
                        vals.append(toks[i])
                    i += 1
                if i >= len(toks):
                    raise bad()
                i += 1
                reqs.append((key, op, vals))
            else:
                raise bad()
        if i < len(toks):
            if toks[i] != ",":
                raise bad()
            i += 1
    return reqs


def labels_match(reqs, labels):
    labels = labels or {}
    for key, op, vals in reqs:
        if op == "exists":
            if key not in labels:
                return False
        elif op == "!":
            if key in labels:
                return False
        elif op == "=":
            if labels.get(key) != vals[0]:
                return False
        elif op == "!=":
            if key in labels and labels[key] == vals[0]:
                return False
        elif op == "in":
            if labels.get(key) not in vals:
                return False
        elif op == "notin":
            if key in labels and labels[key] in vals:
                return False
    return True


def _split_field_terms(text):
    """apimachinery's splitTerms: commas not escaped by a backslash separate terms."""
    terms, start, in_slash = [], 0, False
    for i, c in enumerate(text):
        if in_slash:
            in_slash = False
        elif c == "\\":
            in_slash = True
        elif c == ",":
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return terms


def _unescape_field_value(s):
    """apimachinery's fields.UnescapeValue."""
    if not any(c in s for c in "\\,="):
        return s
    out, in_slash = [], False
    for c in s:
        if in_slash:
            if c not in "\\,=":
                raise err_bad_request("invalid field selector: invalid escape sequence: \\" + c)
            out.append(c)
            in_slash = False
        elif c == "\\":
            in_slash = True
        elif c in ",=":
            raise err_bad_request("invalid field selector: unescaped character in value: %d"
                                  % ord(c))
        else:
            out.append(c)
    if in_slash:
        raise err_bad_request("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def parse_field_selector(text):
    """A fieldSelector as apimachinery's fields.ParseSelector reads it: terms
    sorted, `=`/`==`/`!=` split at the first operator, values unescaped
    (nothing trimmed). Returns [(field, "=" | "!=", value)]."""
    reqs = []
    if not text:
        return reqs
    for part in sorted(_split_field_terms(text)):
        if not part:
            continue
        for i in range(len(part)):
            op = next((o for o in ("!=", "==", "=") if part.startswith(o, i)), None)
            if op:
                break
        else:
            raise err_bad_request("invalid selector: '%s'; can't understand '%s'"
                                  % (text, part))
        reqs.append((part[:i], "!=" if op == "!=" else "=",
                     _unescape_field_value(part[i + len(op):])))
    return reqs


class FieldSelector:
    """A parsed fieldSelector bound to a resource's field set (GetAttrs)."""

    def __init__(self, reqs, fieldset):
        self.reqs = reqs
        self.fieldset = fieldset

    def __len__(self):
        return len(self.reqs)

    def matches(self, obj):
        fs = self.fieldset(obj)
        return all((fs.get(f, "") == v) == (op == "=") for f, op, v in self.reqs)


def _meta_fieldset(obj):
    meta = obj.get("metadata") or {}
    return {"metadata.name": meta.get("name") or "",
            "metadata.namespace": meta.get("namespace") or ""}


def fields_match(reqs, obj):
    if isinstance(reqs, FieldSelector):
        return reqs.matches(obj)
    fs = _meta_fieldset(obj)
    return all((fs.get(f, "") == v) == (op == "=") for f, op, v in reqs)


def label_selector_object_match(sel, labels):
    """metav1.LabelSelector (matchLabels/matchExpressions); None or {} match all."""
    if not sel:
        return True
    labels = labels or {}
    for k, v in (sel.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in sel.get("matchExpressions") or []:
        key = expr.get("key")
        op = expr.get("operator")
        vals = expr.get("values") or []
        if op == "In":
            if labels.get(key) not in vals:
                return False
        elif op == "NotIn":
            if key in labels and labels[key] in vals:
                return False
        elif op == "Exists":
            if key not in labels:
                return False
        elif op == "DoesNotExist":
            if key in labels:
                return False
        else:
            return False
    return True


# --------------------------------------------------------------------------
# Patches
# --------------------------------------------------------------------------

class PatchError(Exception):
    pass


def _ptr(path):
    if path == "":
        return []
    if not isinstance(path, str) or not path.startswith("/"):
        raise PatchError("invalid JSON pointer: %r" % (path,))
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc, parts, op, path):
    cur = doc
    for p in parts:
        if isinstance(cur, dict):
            if p not in cur:
                raise PatchError("%s operation does not apply: doc is missing path: "
                                 "%s: missing value" % (op, go_quote(path)))
            cur = cur[p]
        elif isinstance(cur, list):
            idx = _index(p, len(cur), op, path, allow_end=False)
            cur = cur[idx]
        else:
            raise PatchError("%s operation does not apply: doc is missing path: "
                             "%s: missing value" % (op, go_quote(path)))
    return cur


def _index(p, n, op, path, allow_end):
    if p == "-" and allow_end:
        return n
    if not re.fullmatch(r"0|[1-9][0-9]*", p or ""):
        raise PatchError("%s operation does not apply: doc is missing path: %s: "
                         "missing value" % (op, go_quote(path)))
    i = int(p)
    if i > n or (i == n and not allow_end):
        raise PatchError("%s operation does not apply: doc is missing path: %s: "
                         "missing value" % (op, go_quote(path)))
    return i


def json_patch(doc, ops):
    """RFC 6902 on a deep copy of doc. Raises PatchError."""
    if not isinstance(ops, list):
        raise PatchError("json: cannot unmarshal object into Go value of type "
                         "jsonpatch.Patch")
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict):
            raise PatchError("invalid operation %r" % (op,))
        kind = op.get("op")
        path = op.get("path")
        if kind not in ("add", "remove", "replace", "move", "copy", "test"):
            raise PatchError("Unexpected kind: %s" % kind)
        if path is None:
            raise PatchError("%s operation missing path" % kind)
        parts = _ptr(path)
        if kind in ("add", "replace", "test") and "value" not in op:
            raise PatchError("%s operation missing value" % kind)
        if kind == "add":
            doc = _add(doc, parts, copy.deepcopy(op["value"]), path, "add")
        elif kind == "remove":
            doc, _ = _remove(doc, parts, path, "remove")
        elif kind == "replace":
            if not parts:
                doc = copy.deepcopy(op["value"])
                continue
            parent = _walk(doc, parts[:-1], "replace", path)
            last = parts[-1]
            if isinstance(parent, dict):
                if last not in parent:
                    raise PatchError("replace operation does not apply: doc is missing "
                                     "key: %s: missing value" % path)
                parent[last] = copy.deepcopy(op["value"])
            elif isinstance(parent, list):
                parent[_index(last, len(parent), "replace", path, False)] = \
                    copy.deepcopy(op["value"])
            else:
                raise PatchError("replace operation does not apply: doc is missing "
                                 "path: %s: missing value" % go_quote(path))
        elif kind in ("move", "copy"):
            src = op.get("from")
            if src is None:
                raise PatchError("%s operation missing from" % kind)
            sparts = _ptr(src)
            if kind == "move":
                if path != src and path.startswith(src + "/"):
                    raise PatchError("move operation: from path is a prefix of path")
                doc, value = _remove(doc, sparts, src, "move")
            else:
                value = copy.deepcopy(_walk(doc, sparts, "copy", src))
            doc = _add(doc, parts, value, path, kind)
        elif kind == "test":
            try:
                actual = _walk(doc, parts, "test", path)
            except PatchError:
                actual = PatchError
            if actual is PatchError or not json_equal(actual, op["value"]):
                raise PatchError("testing value %s failed: test failed" % path)
    return doc


def _add(doc, parts, value, path, op):
    if not parts:
        return value
    parent = _walk(doc, parts[:-1], op, path)
    last = parts[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(last, len(parent), op, path, True), value)
    else:
        raise PatchError("%s operation does not apply: doc is missing path: %s: "
                         "missing value" % (op, go_quote(path)))
    return doc


def _remove(doc, parts, path, op):
    if not parts:
        raise PatchError("%s operation does not apply: cannot remove the root" % op)
    parent = _walk(doc, parts[:-1], op, path)
    last = parts[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError("%s operation does not apply: doc is missing path: %s: "
                             "missing value" % (op, go_quote(path)))
        return doc, parent.pop(last)
    if isinstance(parent, list):
        return doc, parent.pop(_index(last, len(parent), op, path, False))
    raise PatchError("%s operation does not apply: doc is missing path: %s: "
                     "missing value" % (op, go_quote(path)))


def merge_patch(target, patch):
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


# Strategic merge: list fields merged by key (built-in types we store).
SMP_MERGE_KEYS = {"webhooks": "name", "ownerReferences": "uid", "conditions": "type",
                  "ports": "port", "containers": "name", "env": "name",
                  "volumes": "name", "volumeMounts": "mountPath", "subjects": None,
                  "finalizers": "", "imagePullSecrets": "name"}


def strategic_merge(target, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    retain = patch.get("$retainKeys")
    orders = {}
    for k, v in patch.items():
        if k in ("$patch", "$retainKeys"):
            continue
        if k.startswith("$setElementOrder/"):
            orders[k.split("/", 1)[1]] = v
            continue
        if k.startswith("$deleteFromPrimitiveList/"):
            field = k.split("/", 1)[1]
            if isinstance(result.get(field), list):
                result[field] = [x for x in result[field] if x not in (v or [])]
            continue
        if v is None:
            result.pop(k, None)
        elif isinstance(v, dict):
            merged = strategic_merge(result.get(k), v)
            if merged is None:
                result.pop(k, None)
            else:
                result[k] = merged
        elif isinstance(v, list) and k in SMP_MERGE_KEYS and SMP_MERGE_KEYS[k] is not None:
            result[k] = _smp_list(result.get(k), v, SMP_MERGE_KEYS[k])
        else:
            result[k] = copy.deepcopy(v)
    for field, order in orders.items():
        cur = result.get(field)
        if isinstance(cur, list) and isinstance(order, list):
            key = SMP_MERGE_KEYS.get(field) or ""

            def ident(x):
                return x.get(key) if key and isinstance(x, dict) else dumps(x)
            rank = {ident(x): i for i, x in enumerate(order)}
            result[field] = sorted(cur, key=lambda x: rank.get(ident(x), len(rank)))
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain or k in patch}
    return result


def _smp_list(cur, items, key):
    cur = copy.deepcopy(cur) if isinstance(cur, list) else []
    if key == "":           # primitive list with merge strategy: union
        for x in items:
            if x not in cur:
                cur.append(copy.deepcopy(x))
        return cur
    for item in items:
        if not isinstance(item, dict) or key not in item:
            return copy.deepcopy(items)
        idx = next((i for i, x in enumerate(cur)
                    if isinstance(x, dict) and x.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                cur.pop(idx)
        elif idx is None:
            cur.append({k: copy.deepcopy(v) for k, v in item.items() if k != "$patch"})
        else:
            cur[idx] = strategic_merge(cur[idx], item)
    return cur


# --------------------------------------------------------------------------
# Object validation (the subset of apimachinery's ObjectMeta rules we need)
# --------------------------------------------------------------------------

DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                 "characters, '-' or '.', and must start and end with an alphanumeric "
                 "character (e.g. 'example.com', regex used for validation is "
                 "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric "
             "characters or '-', and must start and end with an alphanumeric character "
             "(e.g. 'my-name',  or '123-abc', regex used for validation is "
             "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
QUALIFIED_MSG = ("name part must consist of alphanumeric characters, '-', '_' or '.', "
                 "and must start and end with an alphanumeric character (e.g. 'MyName',  "
                 "or 'my.name',  or '123-abc', regex used for validation is "
                 "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")


def validate_name(rd, name):
    errs = []
    if rd.key[0] == "rbac.authorization.k8s.io":
        # RBAC names are path segments only (apimachinery's ValidatePathSegmentName):
        # "milo-contacts:contact-webhook" is a valid ClusterRole name.
        if name in (".", ".."):
            errs.append(FieldError("FieldValueInvalid", "metadata.name", name,
                                   "may not be '%s'" % name))
        for bad in ("/", "%"):
            if bad in name:
                errs.append(FieldError("FieldValueInvalid", "metadata.name", name,
                                       "may not contain '%s'" % bad))
        return errs
    if rd.key == ("", "namespaces"):
        if len(name) > 63:
            errs.append(FieldError("FieldValueInvalid", "metadata.name", name,
                                   "must be no more than 63 characters"))
        elif not DNS1123_LABEL.match(name):
            errs.append(FieldError("FieldValueInvalid", "metadata.name", name, LABEL_MSG))
    else:
        if len(name) > 253:
            errs.append(FieldError("FieldValueInvalid", "metadata.name", name,
                                   "must be no more than 253 characters"))
        elif not DNS1123_SUBDOMAIN.match(name):
            errs.append(FieldError("FieldValueInvalid", "metadata.name", name,
                                   SUBDOMAIN_MSG))
    return errs


def validate_finalizers(meta):
    """Returns (errors, warnings) for metadata.finalizers."""
    errs, warns = [], []
    fins = meta.get("finalizers")
    if fins is None:
        return errs, warns
    if not isinstance(fins, list):
        return [FieldError("FieldValueInvalid", "metadata.finalizers", dumps(fins),
                           "must be a list of strings")], warns
    seen = set()
    for i, f in enumerate(fins):
        path = "metadata.finalizers[%d]" % i
        if not isinstance(f, str):
            errs.append(FieldError("FieldValueInvalid", path, dumps(f), "must be a string"))
            continue
        prefix, _, namepart = f.rpartition("/")
        if prefix and not (len(prefix) <= 253 and DNS1123_SUBDOMAIN.match(prefix)):
            errs.append(FieldError("FieldValueInvalid", path, f,
                                   "prefix part " + SUBDOMAIN_MSG))
        elif not namepart or len(namepart) > 63 or not QUALIFIED_NAME.match(namepart):
            errs.append(FieldError("FieldValueInvalid", path, f, QUALIFIED_MSG))
        elif not prefix and f not in STANDARD_FINALIZERS:
            warns.append('metadata.finalizers: "%s": prefer a domain-qualified finalizer '
                         'name including a path (/) to avoid accidental conflicts with '
                         'other finalizer writers' % f)
        if f in seen:
            errs.append(FieldError("FieldValueDuplicate", path, f))
        seen.add(f)
    return errs, warns


def default_webhook_config(obj, mutating):
    for wh in obj.get("webhooks") or []:
        if not isinstance(wh, dict):
            continue
        wh.setdefault("failurePolicy", "Fail")
        wh.setdefault("matchPolicy", "Equivalent")
        wh.setdefault("namespaceSelector", {})
        wh.setdefault("objectSelector", {})
        wh.setdefault("timeoutSeconds", 10)
        if mutating:
            wh.setdefault("reinvocationPolicy", "Never")
        for rule in wh.get("rules") or []:
            if isinstance(rule, dict):
                rule.setdefault("scope", "*")
        svc = (wh.get("clientConfig") or {}).get("service")
        if isinstance(svc, dict):
            svc.setdefault("port", 443)


def validate_webhook_config(obj):
    errs = []
    names = set()
    for i, wh in enumerate(obj.get("webhooks") or []):
        p = "webhooks[%d]" % i
        if not isinstance(wh, dict):
            errs.append(FieldError("FieldValueInvalid", p, dumps(wh), "must be an object"))
            continue
        name = wh.get("name") or ""
        if not name:
            errs.append(FieldError("FieldValueRequired", p + ".name"))
        elif len(name.split(".")) < 3:
            errs.append(FieldError("FieldValueInvalid", p + ".name", name,
                                   "should be a domain with at least three segments "
                                   "separated by dots"))
        elif name in names:
            errs.append(FieldError("FieldValueDuplicate", p + ".name", name))
        names.add(name)
        se = wh.get("sideEffects")
        if se is None:
            errs.append(FieldError("FieldValueRequired", p + ".sideEffects",
                                   detail='must specify one of "None", "NoneOnDryRun"'))
        elif se not in ("None", "NoneOnDryRun"):
            errs.append(FieldError("FieldValueNotSupported", p + ".sideEffects", se,
                                   'supported values: "None", "NoneOnDryRun"'))
        arv = wh.get("admissionReviewVersions")
        if not arv:
            errs.append(FieldError("FieldValueRequired", p + ".admissionReviewVersions",
                                   detail="must specify one of v1, v1beta1"))
        elif not any(v in ("v1", "v1beta1") for v in arv):
            errs.append(FieldError("FieldValueInvalid", p + ".admissionReviewVersions",
                                   dumps(arv), "must include at least one of v1, v1beta1"))
        fp = wh.get("failurePolicy")
        if fp not in ("Fail", "Ignore"):
            errs.append(FieldError("FieldValueNotSupported", p + ".failurePolicy", fp,
                                   'supported values: "Fail", "Ignore"'))
        ts = wh.get("timeoutSeconds")
        if not isinstance(ts, int) or isinstance(ts, bool) or not 1 <= ts <= 30:
            errs.append(FieldError("FieldValueInvalid", p + ".timeoutSeconds", ts,
                                   "the timeout value must be between 1 and 30 seconds"))
        cc = wh.get("clientConfig") or {}
        has_url = "url" in cc and cc["url"] is not None
        has_svc = "service" in cc and cc["service"] is not None
        if has_url == has_svc:
            errs.append(FieldError("FieldValueRequired", p + ".clientConfig",
                                   detail="exactly one of url or service is required"))
        elif has_url:
            u = urllib.parse.urlsplit(cc["url"])
            if u.scheme != "https":
                errs.append(FieldError("FieldValueInvalid", p + ".clientConfig.url",
                                       cc["url"], "'https' is the only allowed URL scheme"))
            elif u.query or u.fragment or u.username:
                errs.append(FieldError("FieldValueInvalid", p + ".clientConfig.url",
                                       cc["url"], "query, fragment and user info are not "
                                       "allowed"))
        else:
            svc = cc["service"]
            if not svc.get("name"):
                errs.append(FieldError("FieldValueRequired", p + ".clientConfig.service.name"))
            if not svc.get("namespace"):
                errs.append(FieldError("FieldValueRequired",
                                       p + ".clientConfig.service.namespace"))
            path = svc.get("path")
            if path is not None and not str(path).startswith("/"):
                errs.append(FieldError("FieldValueInvalid", p + ".clientConfig.service.path",
                                       path, "must start with a '/'"))
        cab = cc.get("caBundle")
        if cab:
            try:
                base64.b64decode(cab, validate=True)
            except (ValueError, TypeError):
                errs.append(FieldError("FieldValueInvalid", p + ".clientConfig.caBundle",
                                       "<bytes>", "illegal base64 data"))
        for j, rule in enumerate(wh.get("rules") or []):
            rp = "%s.rules[%d]" % (p, j)
            ops = rule.get("operations") or []
            if not ops:
                errs.append(FieldError("FieldValueRequired", rp + ".operations"))
            for op in ops:
                if op not in ("*", "CREATE", "UPDATE", "DELETE", "CONNECT"):
                    errs.append(FieldError("FieldValueNotSupported", rp + ".operations",
                                           op, 'supported values: "*", "CONNECT", '
                                           '"CREATE", "DELETE", "UPDATE"'))
            if not rule.get("resources"):
                errs.append(FieldError("FieldValueRequired", rp + ".resources"))
            if rule.get("scope") not in ("*", "Cluster", "Namespaced"):
                errs.append(FieldError("FieldValueNotSupported", rp + ".scope",
                                       rule.get("scope"),
                                       'supported values: "*", "Cluster", "Namespaced"'))
    return errs


# --------------------------------------------------------------------------
# A tiny JSONPath for CRD printer columns: .a.b, [0], [*], [?(@.k=="v")]
# --------------------------------------------------------------------------

_JP_TOKEN = re.compile(r"""\.([A-Za-z0-9_\-$]+)|\[(\d+|\*)\]|\[\?\(@\.([A-Za-z0-9_.\-]+)\s*==\s*["']([^"']*)["']\)\]""")


def jsonpath(obj, expr):
    expr = (expr or "").strip()
    if expr.startswith("{") and expr.endswith("}"):
        expr = expr[1:-1]
    if expr.startswith("$"):
        expr = expr[1:]
    cur = [obj]
    pos = 0
    while pos < len(expr):
        m = _JP_TOKEN.match(expr, pos)
        if not m:
            return []
        pos = m.end()
        nxt = []
        for c in cur:
            if m.group(1) is not None:
                if isinstance(c, dict) and m.group(1) in c:
                    nxt.append(c[m.group(1)])
            elif m.group(2) is not None:
                if isinstance(c, list):
                    if m.group(2) == "*":
                        nxt.extend(c)
                    elif int(m.group(2)) < len(c):
                        nxt.append(c[int(m.group(2))])
            else:
                if isinstance(c, list):
                    for item in c:
                        v = item
                        for part in m.group(3).split("."):
                            v = v.get(part) if isinstance(v, dict) else None
                        if v is not None and str(v) == m.group(4):
                            nxt.append(item)
        cur = nxt
    return cur


# --------------------------------------------------------------------------
# State: objects, history, watchers, config, logs
# --------------------------------------------------------------------------

DEFAULT_USER = {"username": "admin", "groups": ["system:masters", "system:authenticated"]}


def default_config():
    return {
        "historySize": 1000,
        "bookmarkInterval": 60.0,
        "watchChunking": "event",
        "chunkSize": 7,
        "chunkDelay": 0.0,
        "goneMode": "http",
        "goneReason": "Expired",
        "defaultWatchTimeout": 1800.0,
        "continueTTL": 300.0,
        "autoCreateNamespaces": True,
        "gc": True,
        "admission": True,
        "requiredTokens": None,
        "users": {},
        "defaultUser": copy.deepcopy(DEFAULT_USER),
        "sarPolicy": {"default": True, "enforce": False, "rules": []},
        "serviceHosts": {},
        "maxBody": MAX_BODY,
    }


CONFIG_CHOICES = {
    "watchChunking": ("event", "pack", "split", "mixed"),
    "goneMode": ("http", "event"),
    "goneReason": ("Expired", "Gone"),
}


class WatchEvent:
    __slots__ = ("rv", "key", "ns", "etype", "obj", "prev", "line")

    def __init__(self, rv, key, ns, etype, obj, prev):
        self.rv = rv
        self.key = key
        self.ns = ns
        self.etype = etype
        self.obj = obj          # immutable snapshot, never modified after commit
        self.prev = prev
        self.line = None


class Watcher:
    def __init__(self, wid, rd, ns, label_reqs, field_reqs):
        self.id = wid
        self.rd = rd
        self.ns = ns
        self.label_reqs = label_reqs
        self.field_reqs = field_reqs
        self.pos = 0
        self.cut = None         # None | "abort" | "clean" | "expire"
        self.sock = None

    def translate(self, ev):
        """The event this watcher sees for a history entry, or None."""
        if ev.key != self.rd.key or (self.ns is not None and ev.ns != self.ns):
            return None

        def ok(o):
            return (o is not None
                    and labels_match(self.label_reqs, (o.get("metadata") or {}).get("labels"))
                    and fields_match(self.field_reqs, o))
        cur_ok = ok(ev.obj)
        if ev.etype != "MODIFIED" or not (self.label_reqs or self.field_reqs):
            return (ev.etype, ev.obj) if cur_ok else None
        prev_ok = ok(ev.prev)
        if cur_ok and prev_ok:
            return ("MODIFIED", ev.obj)
        if cur_ok:
            return ("ADDED", ev.obj)
        if prev_ok:
            gone = copy.deepcopy(ev.prev)
            gone["metadata"]["resourceVersion"] = str(ev.rv)
            return ("DELETED", gone)
        return None


def obj_meta(obj):
    m = obj.get("metadata")
    if not isinstance(m, dict):
        m = {}
        obj["metadata"] = m
    return m


def strip_for_generation(obj):
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


class State:
    def __init__(self, service_hosts=None):
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.registry = Registry()
        self.cfg = default_config()
        self.base_service_hosts = dict(service_hosts or {})
        self.cfg["serviceHosts"].update(self.base_service_hosts)
        self.rv = 0
        self.compacted_rv = 0
        self.objects = {}
        self.by_uid = {}            # uid -> (resource key, namespace, name)
        self.dependents = {}        # owner uid -> {dependent uid}
        self.history = []
        self.printer_columns = {}
        self.crd_schemas = {}       # (group, version, plural) -> crd_schema.CRDSchema
        self.watchers = {}
        self.watch_seq = 0
        self.snapshots = collections.OrderedDict()
        self.faults = []
        self.latency = []
        self.watch_delay = []
        self.request_log = []
        self.request_seq = 0
        self.admission_log = []
        self.admission_seq = 0
        self.stopping = False
        self.admission = Admission(self)
        with self.lock:
            for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
                self._create_namespace_locked(ns)

    # ---- config and control ------------------------------------------------

    def configure(self, changes):
        if not isinstance(changes, dict):
            raise err_bad_request("config must be a JSON object")
        with self.lock:
            for k, v in changes.items():
                if k not in self.cfg:
                    raise err_bad_request("unknown config key %r" % k)
                if k in CONFIG_CHOICES and v not in CONFIG_CHOICES[k]:
                    raise err_bad_request("%s must be one of %s" % (k, CONFIG_CHOICES[k]))
                if k == "serviceHosts":
                    for sk, sv in (v or {}).items():
                        if sv is None:
                            self.cfg["serviceHosts"].pop(sk, None)
                        else:
                            self.cfg["serviceHosts"][sk] = sv
                    continue
                self.cfg[k] = v
            if "historySize" in changes:
                self._trim_history()
            self.cond.notify_all()
            return copy.deepcopy(self.cfg)

    def state_summary(self):
        with self.lock:
            return {
                "resourceVersion": str(self.rv),
                "compactedResourceVersion": str(self.compacted_rv),
                "history": len(self.history),
                "objects": sum(len(v) for v in self.objects.values()),
                "watches": len(self.watchers),
                "faults": copy.deepcopy(self.faults),
                "latency": copy.deepcopy(self.latency),
                "watchDelay": copy.deepcopy(self.watch_delay),
                "config": copy.deepcopy(self.cfg),
            }

    def add_fault(self, rule):
        if rule.get("clear"):
            with self.lock:
                self.faults = []
            return
        r = {"count": rule.get("count"), "code": int(rule.get("code", 500)),
             "reason": rule.get("reason"), "message": rule.get("message"),
             "pathPrefix": rule.get("pathPrefix", ""), "method": rule.get("method"),
             "retryAfter": rule.get("retryAfter"), "drop": bool(rule.get("drop"))}
        with self.lock:
            self.faults.append(r)

    def take_fault(self, method, path):
        with self.lock:
            for r in self.faults:
                if not path.startswith(r["pathPrefix"]):
                    continue
                if r["method"] and r["method"].upper() != method:
                    continue
                if r["count"] is not None:
                    if r["count"] <= 0:
                        continue
                    r["count"] -= 1
                self.faults = [f for f in self.faults
                               if f["count"] is None or f["count"] > 0]
                return dict(r)
        return None

    def set_latency(self, rule):
        secs = float(rule.get("seconds", 0))
        prefix = rule.get("pathPrefix", "")
        request = rule.get("request")
        if request not in (None, "list", "watch", "other"):
            raise err_bad_request("request must be list, watch or other")
        with self.lock:
            self.latency = [r for r in self.latency
                            if (r["pathPrefix"], r.get("request")) != (prefix, request)]
            if secs > 0:
                r = {"seconds": secs, "pathPrefix": prefix}
                if request:
                    r["request"] = request
                self.latency.append(r)

    def latency_for(self, path, method="GET", query=None):
        """The delay of a request: list = GET without watch, watch, other."""
        q = query or {}
        if method == "GET" and q.get("watch") in ("1", "true", "True"):
            request = "watch"
        elif method == "GET":
            request = "list"
        else:
            request = "other"
        with self.lock:
            return max([r["seconds"] for r in self.latency
                        if path.startswith(r["pathPrefix"]) and
                        r.get("request") in (None, request)] or [0])

    def set_watch_delay(self, rule):
        secs = float(rule.get("seconds", 0))
        prefix = rule.get("pathPrefix", "")
        with self.lock:
            self.watch_delay = [r for r in self.watch_delay if r["pathPrefix"] != prefix]
            if secs > 0:
                self.watch_delay.append({"seconds": secs, "pathPrefix": prefix})

    def watch_delay_for(self, path):
        with self.lock:
            return max([r["seconds"] for r in self.watch_delay
                        if path.startswith(r["pathPrefix"])] or [0])

    def cut_watches(self, mode="abort"):
        if mode not in ("abort", "clean", "expire"):
            raise err_bad_request("mode must be abort, clean or expire")
        with self.lock:
            n = 0
            for w in self.watchers.values():
                if w.cut is None:
                    w.cut = mode
                    n += 1
                if mode == "abort" and w.sock is not None:
                    try:
                        w.sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
            self.cond.notify_all()
            return n

    def compact(self, expire_open=False):
        with self.lock:
            self.compacted_rv = self.rv
            self.history = []
            if expire_open:
                for w in self.watchers.values():
                    if w.cut is None:
                        w.cut = "expire"
            self.cond.notify_all()
            return self.compacted_rv

    def reset(self):
        self.cut_watches("abort")
        with self.lock:
            self.cfg = default_config()
            self.cfg["serviceHosts"].update(self.base_service_hosts)
            self.objects = {}
            self.by_uid = {}
            self.dependents = {}
            self.history = []
            self.compacted_rv = self.rv
            self.registry = Registry()
            self.printer_columns = {}
            self.crd_schemas = {}
            self.snapshots.clear()
            self.faults = []
            self.latency = []
            self.watch_delay = []
            self.request_log = []
            self.admission_log = []
            for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
                self._create_namespace_locked(ns)
            self.compacted_rv = self.rv
            self.history = []
            self.cond.notify_all()

    def log_request(self, rec):
        with self.lock:
            self.request_seq += 1
            rec["seq"] = self.request_seq
            self.request_log.append(rec)
            if len(self.request_log) > REQUEST_LOG_MAX:
                del self.request_log[:len(self.request_log) - REQUEST_LOG_MAX]
            return rec

    def log_admission(self, rec):
        with self.lock:
            self.admission_seq += 1
            rec["seq"] = self.admission_seq
            self.admission_log.append(rec)
            if len(self.admission_log) > ADMISSION_LOG_MAX:
                del self.admission_log[:len(self.admission_log) - ADMISSION_LOG_MAX]

    @staticmethod
    def _since(items, since):
        return [copy.deepcopy(r) for r in items if r["seq"] > since]

    # ---- users, auth, policy -------------------------------------------------

    def authenticate(self, token):
        """Returns the user for a bearer token, or None (-> 401)."""
        with self.lock:
            required = self.cfg["requiredTokens"]
            if required is not None and token not in required:
                return None
            u = self.cfg["users"].get(token) if token else None
            return copy.deepcopy(u if u else self.cfg["defaultUser"])

    def authorize(self, user, attrs):
        """SAR policy: (allowed, reason). attrs: resource attributes dict."""
        with self.lock:
            pol = copy.deepcopy(self.cfg["sarPolicy"])
        groups = user.get("groups") or []

        def m(rule, field, value, many=False):
            want = rule.get(field)
            if want is None or want == "*":
                return True
            want = want if isinstance(want, list) else [want]
            if "*" in want:
                return True
            if many:
                return any(v in want for v in value)
            return value in want
        for rule in pol.get("rules") or []:
            if (m(rule, "user", user.get("username", ""))
                    and m(rule, "group", groups, many=True)
                    and m(rule, "namespace", attrs.get("namespace", ""))
                    and m(rule, "verb", attrs.get("verb", ""))
                    and m(rule, "apiGroup", attrs.get("group", ""))
                    and m(rule, "resource", attrs.get("resource", ""))
                    and m(rule, "subresource", attrs.get("subresource", ""))
                    and m(rule, "name", attrs.get("name", ""))
                    and m(rule, "path", attrs.get("path", ""))):
                return bool(rule.get("allowed", True)), rule.get("reason", "")
        return bool(pol.get("default", True)), ""

    def enforce_enabled(self):
        with self.lock:
            return bool(self.cfg["sarPolicy"].get("enforce"))

    # ---- low-level storage (call with the lock held) ---------------------------

    def _store(self, rd):
        return self.objects.setdefault(rd.key, {})

    def _get(self, rd, ns, name):
        return self.objects.get(rd.key, {}).get((ns or "", name))

    def _trim_history(self):
        size = max(1, int(self.cfg["historySize"]))
        if len(self.history) > size:
            drop = len(self.history) - size
            self.compacted_rv = self.history[drop - 1].rv
            del self.history[:drop]

    def _commit(self, rd, etype, obj, prev=None):
        self.rv += 1
        meta = obj_meta(obj)
        meta["resourceVersion"] = str(self.rv)
        key = (meta.get("namespace", "") if rd.namespaced else "", meta["name"])
        store = self._store(rd)
        old = store.get(key)
        if old is not None:
            self._unindex(old)
        if etype == "DELETED":
            store.pop(key, None)
        else:
            store[key] = obj
            self._index(rd, key, obj)
        self.history.append(WatchEvent(self.rv, rd.key, key[0] if rd.namespaced else None,
                                       etype, obj, prev))
        self._trim_history()
        self.cond.notify_all()
        if rd.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            self._crd_changed(obj, etype == "DELETED")
        return obj

    def _index(self, rd, key, obj):
        uid = obj["metadata"].get("uid")
        if not uid:
            return
        self.by_uid[uid] = (rd.key, key[0], key[1])
        for ref in obj["metadata"].get("ownerReferences") or []:
            if isinstance(ref, dict) and ref.get("uid"):
                self.dependents.setdefault(ref["uid"], set()).add(uid)

    def _unindex(self, obj):
        uid = obj["metadata"].get("uid")
        if not uid:
            return
        self.by_uid.pop(uid, None)
        for ref in obj["metadata"].get("ownerReferences") or []:
            if isinstance(ref, dict) and ref.get("uid") in self.dependents:
                deps = self.dependents[ref["uid"]]
                deps.discard(uid)
                if not deps:
                    del self.dependents[ref["uid"]]

    def _create_namespace_locked(self, name, labels=None):
        rd = self.registry.get("", "v1", "namespaces")
        obj = {"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": name, "uid": str(uuid.uuid4()),
                            "creationTimestamp": now_rfc3339(),
                            "labels": dict(labels or {}, **{"kubernetes.io/metadata.name": name})},
               "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}
        return self._commit(rd, "ADDED", obj)

    def _ns_check(self, rd, ns, name, create_missing):
        """Namespace lifecycle for a create in ns: auto-create, 404, or 403."""
        nsrd = self.registry.get("", "v1", "namespaces")
        nsobj = self._get(nsrd, None, ns)
        if nsobj is None:
            if not self.cfg["autoCreateNamespaces"]:
                raise err_ns_not_found(ns)
            if create_missing:
                self._create_namespace_locked(ns)
            return
        if (nsobj.get("metadata") or {}).get("deletionTimestamp"):
            raise err_forbidden(rd, name, "unable to create new content in namespace %s "
                                "because it is being terminated" % ns)

    def namespace_labels(self, ns):
        with self.lock:
            nsobj = self._get(self.registry.get("", "v1", "namespaces"), None, ns)
            if nsobj is None:
                return {"kubernetes.io/metadata.name": ns}
            return dict((nsobj.get("metadata") or {}).get("labels") or {})

    def webhook_configs(self, plural):
        with self.lock:
            store = self.objects.get(("admissionregistration.k8s.io", plural), {})
            return [store[k] for k in sorted(store)]

    def _crd_changed(self, crd, deleted):
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        group, plural = spec.get("group"), names.get("plural")
        if not group or not plural or not names.get("kind"):
            return
        for k in [k for k in self.crd_schemas if (k[0], k[2]) == (group, plural)]:
            del self.crd_schemas[k]
        if deleted:
            self.printer_columns.pop((group, plural), None)
            self.registry.remove_dynamic(group, plural)
            return
        cols = None
        for v in spec.get("versions") or []:
            if not v.get("served", True):
                continue
            self.crd_schemas[(group, v.get("name"), plural)] = crd_schema.CRDSchema(crd, v)
            if cols is None or v.get("storage"):
                cols = v.get("additionalPrinterColumns")
            existing = self.registry.get(group, v.get("name"), plural)
            if existing is not None and not existing.dynamic:
                continue
            subs = ("status",) if "status" in ((v.get("subresources") or {})) else ()
            rd = ResDef(group, v.get("name"), plural, names["kind"],
                        spec.get("scope", "Namespaced") == "Namespaced", subs,
                        singular=names.get("singular"), short_names=names.get("shortNames") or (),
                        categories=names.get("categories") or (), builtin=False,
                        generation=True)
            rd.dynamic = True
            self.registry.add(rd)
        if cols:
            self.printer_columns[(group, plural)] = cols
        else:
            self.printer_columns.pop((group, plural), None)

    def schema_for(self, rd):
        """The stored CRD's schema for a custom resource, or None."""
        with self.lock:
            return self.crd_schemas.get((rd.group, rd.version, rd.plural))

    def field_selector(self, rd, text):
        """A fieldSelector for rd, refused as kube-apiserver refuses a label
        the resource does not support (custom resources: metadata.name,
        metadata.namespace if namespaced, and the CRD's selectableFields)."""
        reqs = parse_field_selector(text)
        if rd.builtin:
            for field, _, _ in reqs:
                if field not in ("metadata.name", "metadata.namespace"):
                    raise err_bad_request('"%s" is not a known field selector: only '
                                          '"metadata.name", "metadata.namespace"' % field)
            return FieldSelector(reqs, _meta_fieldset)
        cs = self.schema_for(rd)
        if cs is not None:
            labels, fieldset = cs.field_labels(), cs.field_set
        else:
            labels = ["metadata.name"] + (["metadata.namespace"] if rd.namespaced else [])
            fieldset = _meta_fieldset
        for field, _, _ in reqs:
            if field not in labels:
                raise err_bad_request("field label not supported: %s" % field)
        return FieldSelector(reqs, fieldset)

    # ---- reads ---------------------------------------------------------------

    def get(self, rd, ns, name):
        with self.lock:
            obj = self._get(rd, ns, name)
            if obj is None:
                raise err_not_found(rd, name)
            return copy.deepcopy(obj)

    def list(self, rd, ns, label_reqs, field_reqs, limit=0, cont=None):
        """Returns (items, resourceVersion, continue, remaining)."""
        with self.lock:
            start_after = None
            snap = None
            if cont:
                try:
                    tok = json.loads(base64.urlsafe_b64decode(cont + "=" * (-len(cont) % 4)))
                    list_rv = int(tok["rv"])
                    start_after = tuple(tok["start"])
                    snap_id = tok.get("snap")
                    issued = float(tok.get("t", 0))
                except (ValueError, KeyError, TypeError):
                    raise err_bad_request("continue key is not valid: incorrect encoded start "
                                          "resourceVersion (version meta.k8s.io/v1)")
                if (list_rv < self.compacted_rv
                        or time.time() - issued > float(self.cfg["continueTTL"])):
                    raise err_expired(
                        "The provided continue parameter is too old to display a consistent "
                        "list result. You can start a new list without the continue parameter,"
                        " or use the continue token in this response to retrieve the "
                        "remainder of the results. Continuing with the provided token results "
                        "in an inconsistent list - objects that were created, modified, or "
                        "deleted between the time the first chunk was returned and now may "
                        "show up in the list.")
                snap = self.snapshots.get(snap_id)
                issued_at = issued
            else:
                list_rv = self.rv
                issued_at = time.time()
            if snap is None:
                store = self.objects.get(rd.key, {})
                snap = [(k, store[k]) for k in sorted(store)]
            if ns is not None:
                snap_ns = [(k, o) for k, o in snap if k[0] == ns]
            else:
                snap_ns = snap
            matched = [(k, o) for k, o in snap_ns
                       if (start_after is None or k > start_after)
                       and labels_match(label_reqs, (o.get("metadata") or {}).get("labels"))
                       and fields_match(field_reqs, o)]
            token = None
            remaining = None
            if limit and len(matched) > limit:
                page = matched[:limit]
                snap_id = None
                if cont and tok.get("snap") in self.snapshots:
                    snap_id = tok.get("snap")
                else:
                    snap_id = uuid.uuid4().hex
                    self.snapshots[snap_id] = snap
                    while len(self.snapshots) > SNAPSHOT_MAX:
                        self.snapshots.popitem(last=False)
                token = base64.urlsafe_b64encode(dumps(
                    {"v": "meta.k8s.io/v1", "rv": list_rv, "start": list(page[-1][0]),
                     "snap": snap_id, "t": issued_at}).encode()).decode().rstrip("=")
                if not label_reqs and not field_reqs:
                    remaining = len(matched) - limit
                matched = page
            return [copy.deepcopy(o) for _, o in matched], str(list_rv), token, remaining

    def all_objects(self):
        with self.lock:
            out = []
            for key in sorted(self.objects):
                for k in sorted(self.objects[key]):
                    out.append(copy.deepcopy(self.objects[key][k]))
            return out

    # ---- watch -----------------------------------------------------------------

    def watch_open(self, rd, ns, label_reqs, field_reqs, rv_param, initial):
        """Registers a watcher. Returns (watcher, initial_objects, gone_message)."""
        with self.lock:
            self.watch_seq += 1
            w = Watcher(self.watch_seq, rd, ns, label_reqs, field_reqs)
            objs = []
            if rv_param in (None, "", "0") or initial:
                store = self.objects.get(rd.key, {})
                objs = [store[k] for k in sorted(store)
                        if (ns is None or k[0] == ns)
                        and labels_match(label_reqs, (store[k].get("metadata") or {}).get("labels"))
                        and fields_match(field_reqs, store[k])]
                w.pos = self.rv
            else:
                try:
                    rv = int(rv_param)
                except ValueError:
                    raise err_bad_request("invalid resource version %s" % go_quote(rv_param))
                if rv < self.compacted_rv:
                    return None, [], "too old resource version: %d (%d)" % (rv, self.compacted_rv)
                w.pos = rv
            self.watchers[w.id] = w
            return w, objs, None

    def watch_close(self, w):
        with self.lock:
            self.watchers.pop(w.id, None)

    def watch_wait(self, w, deadline, next_bookmark):
        """Blocks until something is due. Returns (kind, payload):
        ("events", [(type, obj, ev)]), ("bookmark", rv), ("expired", msg), ("cut", mode),
        ("timeout", None)."""
        with self.cond:
            while True:
                if self.stopping:
                    return "cut", "clean"
                if w.cut:
                    if w.cut == "expire":
                        return "expired", "too old resource version: %d (%d)" % (
                            w.pos, max(self.compacted_rv, w.pos + 1))
                    return "cut", w.cut
                if w.pos < self.compacted_rv:
                    return "expired", "too old resource version: %d (%d)" % (
                        w.pos, self.compacted_rv)
                idx = bisect.bisect_right(self.history, w.pos, key=lambda e: e.rv)
                out = []
                for ev in self.history[idx:]:
                    t = w.translate(ev)
                    if t is not None:
                        out.append((t[0], t[1], ev if t[1] is ev.obj else None))
                if self.history:
                    w.pos = max(w.pos, self.history[-1].rv)
                if out:
                    return "events", out
                now = time.monotonic()
                if next_bookmark is not None and now >= next_bookmark:
                    return "bookmark", self.rv
                if now >= deadline:
                    return "timeout", None
                wake = deadline if next_bookmark is None else min(deadline, next_bookmark)
                self.cond.wait(max(0.001, min(wake - now, 1.0)))

    def bookmark_interval(self):
        with self.lock:
            return float(self.cfg["bookmarkInterval"] or 0)

    def watch_settings(self):
        with self.lock:
            return (self.cfg["watchChunking"], max(1, int(self.cfg["chunkSize"])),
                    float(self.cfg["chunkDelay"] or 0), self.cfg["goneMode"],
                    self.cfg["goneReason"], float(self.cfg["defaultWatchTimeout"]))

    def shutdown(self):
        with self.lock:
            self.stopping = True
            socks = [w.sock for w in self.watchers.values() if w.sock is not None]
            self.cond.notify_all()
        return socks

    # ---- writes ------------------------------------------------------------------

    def _check_body(self, rd, obj):
        if not isinstance(obj, dict):
            raise err_bad_request("the object provided is unrecognized (must be of type %s)"
                                  % rd.kind)
        if not obj.get("kind"):
            raise err_bad_request("Object 'Kind' is missing in '%s'" % dumps(obj)[:512])
        av = obj.get("apiVersion")
        if av and av != rd.gv:
            raise err_bad_request("the API version in the data (%s) does not match the "
                                  "expected API version (%s)" % (av, rd.gv))
        if obj["kind"] != rd.kind:
            raise err_bad_request('%s in version "%s" cannot be handled as a %s: the kind in '
                                  'the data does not match' % (obj["kind"], rd.version, rd.kind))
        obj["apiVersion"] = rd.gv
        obj_meta(obj)

    def _kind_hooks(self, rd, obj, old=None):
        """Per-kind defaulting the real registry does; returns extra field errors."""
        errs = []
        meta = obj_meta(obj)
        if rd.key == ("", "namespaces"):
            labels = meta.get("labels") or {}
            labels["kubernetes.io/metadata.name"] = meta.get("name", "")
            meta["labels"] = labels
            spec = obj.setdefault("spec", {})
            if old is None:
                spec["finalizers"] = ["kubernetes"]
            else:
                spec.setdefault("finalizers", ["kubernetes"])
        elif rd.group == "admissionregistration.k8s.io":
            default_webhook_config(obj, rd.plural == "mutatingwebhookconfigurations")
            errs += validate_webhook_config(obj)
        elif rd.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            spec = obj.get("spec") or {}
            names = spec.get("names") or {}
            if not spec.get("group"):
                errs.append(FieldError("FieldValueRequired", "spec.group"))
            if not names.get("plural"):
                errs.append(FieldError("FieldValueRequired", "spec.names.plural"))
            if not names.get("kind"):
                errs.append(FieldError("FieldValueRequired", "spec.names.kind"))
            if names.get("plural") and spec.get("group"):
                want = "%s.%s" % (names["plural"], spec["group"])
                if meta.get("name") and meta["name"] != want:
                    errs.append(FieldError("FieldValueInvalid", "metadata.name",
                                           meta["name"], "must be spec.names.plural+\".\"+"
                                           "spec.group"))
            if old is None:
                n = dict(names)
                n.setdefault("singular", (names.get("kind") or "").lower())
                n.setdefault("listKind", (names.get("kind") or "") + "List")
                t = now_rfc3339()
                storage = [v.get("name") for v in spec.get("versions") or [] if v.get("storage")]
                obj["status"] = {
                    "acceptedNames": n,
                    "conditions": [
                        {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                         "message": "no conflicts found", "lastTransitionTime": t},
                        {"type": "Established", "status": "True",
                         "reason": "InitialNamesAccepted",
                         "message": "the initial names have been accepted",
                         "lastTransitionTime": t}],
                    "storedVersions": storage}
        return errs

    def _prepare_create(self, rd, obj, ns, warnings, cs=None):
        meta = obj_meta(obj)
        if rd.namespaced:
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        errs = []
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = meta["generateName"] + rand_suffix()
            else:
                errs.append(FieldError("FieldValueRequired", "metadata.name",
                                       detail="name or generateName is required"))
        for k in ("deletionTimestamp", "deletionGracePeriodSeconds", "resourceVersion",
                  "selfLink", "managedFields"):
            meta.pop(k, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        if rd.generation:
            meta["generation"] = 1
        else:
            meta.pop("generation", None)
        if "status" in rd.subresources:
            if rd.key == ("", "namespaces"):
                obj["status"] = {"phase": "Active"}
            else:
                obj.pop("status", None)
        if meta.get("name"):
            errs += validate_name(rd, meta["name"])
        ferrs, fwarn = validate_finalizers(meta)
        errs += ferrs
        warnings.extend(fwarn)
        errs += self._kind_hooks(rd, obj)
        errs += schema_errors(cs, obj, None, False, warnings)
        if errs:
            raise err_invalid(rd, meta.get("name", ""), errs)
        return obj

    def _prepare_update(self, rd, sub, new, cur, warnings, cs=None):
        if sub == "status":
            out = copy.deepcopy(cur)
            if "status" in new:
                out["status"] = copy.deepcopy(new["status"])
            else:
                out.pop("status", None)
            errs = schema_errors(cs, out, cur, True, warnings)
            if errs:
                raise err_invalid(rd, cur["metadata"].get("name", ""), errs)
            return out
        meta = obj_meta(new)
        cmeta = cur["metadata"]
        for k in ("uid", "creationTimestamp", "deletionTimestamp",
                  "deletionGracePeriodSeconds", "generation", "namespace", "name"):
            if k in cmeta:
                meta[k] = cmeta[k]
            else:
                meta.pop(k, None)
        meta["resourceVersion"] = cmeta["resourceVersion"]
        new["apiVersion"] = rd.gv
        new["kind"] = rd.kind
        if "status" in rd.subresources:
            if "status" in cur:
                new["status"] = copy.deepcopy(cur["status"])
            else:
                new.pop("status", None)
        errs = self._kind_hooks(rd, new, old=cur)
        ferrs, fwarn = validate_finalizers(meta)
        errs += ferrs
        warnings.extend(fwarn)
        if cmeta.get("deletionTimestamp"):
            added = [f for f in meta.get("finalizers") or []
                     if f not in (cmeta.get("finalizers") or [])]
            if added:
                errs.append(FieldError(
                    "FieldValueForbidden", "metadata.finalizers",
                    detail="no new finalizers can be added if the object is being deleted, "
                           "found new finalizers []string{%s}"
                           % ", ".join(go_quote(f) for f in added)))
        errs += schema_errors(cs, new, cur, False, warnings)
        if errs:
            raise err_invalid(rd, meta.get("name", ""), errs)
        if rd.generation and not json_equal(strip_for_generation(new),
                                            strip_for_generation(cur)):
            meta["generation"] = int(cmeta.get("generation") or 0) + 1
        return new

    def create(self, rd, ns, body, user, dry_run, query):
        self._check_body(rd, body)
        obj = body
        meta = obj_meta(obj)
        if rd.namespaced:
            if meta.get("namespace") and meta["namespace"] != ns:
                raise err_bad_request("the namespace of the provided object does not match "
                                      "the namespace sent on the request")
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        with self.lock:
            if rd.namespaced:
                self._ns_check(rd, ns, meta.get("name", ""), create_missing=not dry_run)
        warnings = []
        cs = self.schema_for(rd)
        decode_custom(cs, rd, obj, query, warnings)
        attrs = AdmissionAttrs("CREATE", rd, "", ns if rd.namespaced else "",
                               meta.get("name", ""), obj, None, user, dry_run,
                               request_options("CreateOptions", query, dry_run))
        obj = self.admission.run(attrs, warnings, mutating=True)
        decode_custom(cs, rd, obj, None, None)
        obj = self._prepare_create(rd, obj, ns, warnings, cs)
        attrs.obj = obj
        self.admission.run(attrs, warnings, mutating=False)
        name = obj["metadata"]["name"]
        with self.lock:
            if rd.namespaced:
                self._ns_check(rd, ns, name, create_missing=not dry_run)
            if self._get(rd, ns if rd.namespaced else "", name) is not None:
                raise err_already_exists(rd, name)
            if dry_run:
                return copy.deepcopy(obj), warnings
            stored = self._commit(rd, "ADDED", obj)
            return copy.deepcopy(stored), warnings

    def update(self, rd, ns, name, sub, user, dry_run, query, body=None, patch=None):
        """PUT (body) or PATCH (patch=(content_type, parsed, raw))."""
        nskey = ns if rd.namespaced else ""
        for _attempt in range(8):
            with self.lock:
                cur = self._get(rd, nskey, name)
                if cur is None:
                    raise err_not_found(rd, name)
                cur = copy.deepcopy(cur)
            explicit_rv = False
            if patch is not None:
                new = apply_patch(rd, cur, patch)
                if not isinstance(new, dict):
                    raise err_bad_request("the patch produced an object that is not a JSON "
                                          "object")
                nmeta = obj_meta(new)
                explicit_rv = b'"resourceVersion"' in patch[2]
                new.setdefault("apiVersion", rd.gv)
                new.setdefault("kind", rd.kind)
            else:
                new = copy.deepcopy(body)
                self._check_body(rd, new)
                nmeta = obj_meta(new)
                explicit_rv = bool(nmeta.get("resourceVersion"))
            if nmeta.get("name") and nmeta["name"] != name:
                raise err_bad_request("the name of the object (%s) does not match the name on "
                                      "the URL (%s)" % (nmeta["name"], name))
            if rd.namespaced and nmeta.get("namespace") and nmeta["namespace"] != ns:
                raise err_bad_request("the namespace of the provided object does not match "
                                      "the namespace sent on the request")
            nmeta["name"] = name
            if rd.namespaced:
                nmeta["namespace"] = ns
            rv = nmeta.get("resourceVersion")
            if rv and rv != cur["metadata"]["resourceVersion"]:
                raise err_conflict(rd, name)
            nmeta["resourceVersion"] = cur["metadata"]["resourceVersion"]
            warnings = []
            cs = self.schema_for(rd)
            decode_custom(cs, rd, new, query, warnings)
            adm_ns = ns if rd.namespaced else (name if rd.key == ("", "namespaces") else "")
            attrs = AdmissionAttrs("UPDATE", rd, sub or "", adm_ns, name, new, cur, user,
                                   dry_run, request_options("UpdateOptions", query, dry_run))
            new = self.admission.run(attrs, warnings, mutating=True)
            decode_custom(cs, rd, new, None, None)
            new = self._prepare_update(rd, sub, new, cur, warnings, cs)
            attrs.obj = new
            self.admission.run(attrs, warnings, mutating=False)
            with self.lock:
                now = self._get(rd, nskey, name)
                if now is None:
                    raise err_not_found(rd, name)
                if now["metadata"]["resourceVersion"] != cur["metadata"]["resourceVersion"]:
                    if explicit_rv:
                        raise err_conflict(rd, name)
                    continue
                if dry_run:
                    return copy.deepcopy(new), warnings
                if json_equal(new, now):
                    return copy.deepcopy(now), warnings
                meta = new["metadata"]
                if meta.get("deletionTimestamp") and not meta.get("finalizers"):
                    gone = self._commit(rd, "DELETED", new, prev=now)
                    self._after_remove(rd, gone)
                    return copy.deepcopy(gone), warnings
                stored = self._commit(rd, "MODIFIED", new, prev=now)
                return copy.deepcopy(stored), warnings
        raise err_conflict(rd, name)

    def delete(self, rd, ns, name, user, dry_run, opts):
        nskey = ns if rd.namespaced else ""
        with self.lock:
            cur = self._get(rd, nskey, name)
            if cur is None:
                raise err_not_found(rd, name)
            cur = copy.deepcopy(cur)
        pre = (opts or {}).get("preconditions") or {}
        cm = cur["metadata"]
        if pre.get("uid") and pre["uid"] != cm.get("uid"):
            raise err_conflict(rd, name, "Precondition failed: UID in precondition: %s, UID in "
                               "object meta: %s" % (pre["uid"], cm.get("uid")))
        if pre.get("resourceVersion") and pre["resourceVersion"] != cm.get("resourceVersion"):
            raise err_conflict(rd, name, "Precondition failed: ResourceVersion in precondition: "
                               "%s, ResourceVersion in object meta: %s"
                               % (pre["resourceVersion"], cm.get("resourceVersion")))
        warnings = []
        options = {"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1"}
        for k, v in (opts or {}).items():
            if k not in ("kind", "apiVersion"):
                options[k] = v
        if dry_run:
            options["dryRun"] = ["All"]
        adm_ns = ns if rd.namespaced else (name if rd.key == ("", "namespaces") else "")
        attrs = AdmissionAttrs("DELETE", rd, "", adm_ns, name, None, cur, user, dry_run,
                               options)
        self.admission.run(attrs, warnings, mutating=True)
        self.admission.run(attrs, warnings, mutating=False)
        with self.lock:
            now = self._get(rd, nskey, name)
            if now is None:
                raise err_not_found(rd, name)
            if dry_run:
                return copy.deepcopy(now), warnings
            return self._delete_locked(rd, now), warnings

    def _delete_locked(self, rd, now):
        """Deletes or marks for deletion; returns the response object."""
        meta = now["metadata"]
        is_ns = rd.key == ("", "namespaces")
        if meta.get("finalizers") or is_ns:
            if meta.get("deletionTimestamp"):
                return copy.deepcopy(now)
            new = copy.deepcopy(now)
            nm = new["metadata"]
            nm["deletionTimestamp"] = now_rfc3339()
            nm["deletionGracePeriodSeconds"] = 0
            if rd.generation and nm.get("generation"):
                nm["generation"] = int(nm["generation"]) + 1
            if is_ns:
                new.setdefault("status", {})["phase"] = "Terminating"
            stored = self._commit(rd, "MODIFIED", new, prev=now)
            if is_ns:
                self._finish_namespace(meta["name"])
                cur = self._get(rd, None, meta["name"])
                return copy.deepcopy(cur if cur is not None else stored)
            return copy.deepcopy(stored)
        gone = self._commit(rd, "DELETED", copy.deepcopy(now), prev=now)
        self._after_remove(rd, gone)
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": dict(_details(rd, meta["name"]), uid=meta.get("uid"))}

    def _finish_namespace(self, ns):
        """Namespace controller: delete the contents, drop the namespace when empty."""
        nsrd = self.registry.get("", "v1", "namespaces")
        nsobj = self._get(nsrd, None, ns)
        if nsobj is None or not nsobj["metadata"].get("deletionTimestamp"):
            return
        remaining = 0
        for key in list(self.objects):
            rd = self.registry.by_key(*key)
            if rd is None or not rd.namespaced:
                continue
            for (ons, _), obj in list(self.objects[key].items()):
                if ons != ns:
                    continue
                if not obj["metadata"].get("deletionTimestamp"):
                    self._delete_locked(rd, obj)
                if self._get(rd, ns, obj["metadata"]["name"]) is not None:
                    remaining += 1
        nsobj = self._get(nsrd, None, ns)
        if remaining == 0 and nsobj is not None:
            self._commit(nsrd, "DELETED", copy.deepcopy(nsobj), prev=nsobj)

    def _after_remove(self, rd, gone):
        if self.cfg["gc"]:
            # Garbage collector (background propagation): a dependent goes once none
            # of its owners exists; its own removal cascades through _after_remove.
            owner = gone["metadata"].get("uid")
            for dep_uid in sorted(self.dependents.get(owner, ())):
                loc = self.by_uid.get(dep_uid)
                if loc is None:
                    continue
                drd = self.registry.by_key(loc[0][0], loc[0][1])
                obj = self.objects.get(loc[0], {}).get((loc[1], loc[2]))
                if drd is None or obj is None or obj["metadata"].get("deletionTimestamp"):
                    continue
                refs = obj["metadata"].get("ownerReferences") or []
                if any(r.get("uid") in self.by_uid for r in refs if isinstance(r, dict)):
                    continue
                self._delete_locked(drd, obj)
        ns = gone["metadata"].get("namespace")
        if rd.namespaced and ns:
            self._finish_namespace(ns)

    def delete_collection(self, rd, ns, label_reqs, field_reqs, user, dry_run, opts):
        items, _, _, _ = self.list(rd, ns, label_reqs, field_reqs)
        warnings = []
        for o in items:
            try:
                _, w = self.delete(rd, o["metadata"].get("namespace"), o["metadata"]["name"],
                                   user, dry_run, opts)
                warnings += w
            except ApiError as e:
                if e.code != 404:
                    raise
        return ({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"},
                warnings)


def decode_custom(cs, rd, obj, query, warnings):
    """What kube-apiserver's decoder does to a custom resource body: prune
    fields the schema does not declare, drop non-nullable nulls, fill in
    defaults. With query (a client's body, not a webhook's patch result),
    fieldValidation decides about the pruned fields: Strict refuses them
    (400), Warn (the default) warns, Ignore says nothing."""
    if cs is None or cs.schema is None or not isinstance(obj, dict):
        return
    unknown = crd_schema.prune(obj, cs.schema)
    crd_schema.default(obj, cs.schema)
    if query is None or not unknown:
        return
    mode = query.get("fieldValidation") or "Warn"
    if mode not in ("Ignore", "Warn", "Strict"):
        raise err_bad_request('fieldValidation: Unsupported value: "%s": supported values: '
                              '"Ignore", "Warn", "Strict"' % mode)
    texts = ['unknown field "%s"' % u for u in unknown]
    if mode == "Strict":
        raise err_bad_request('%s in version "%s" cannot be handled as a %s: strict decoding '
                              'error: %s' % (rd.kind, rd.version, rd.kind, ", ".join(texts)))
    if mode == "Warn":
        warnings.extend(texts)


def schema_errors(cs, obj, old, status_only, warnings):
    """The CRD schema's and CEL rules' field errors (FieldError list);
    ratcheted CEL errors go to warnings."""
    if cs is None:
        return []
    try:
        errs, warns = crd_schema.validate_object(cs, obj, old, status_only)
    except crd_schema.CelUnavailable as e:
        raise err_internal("kube-standin: CEL evaluator unavailable: %s" % e)
    for w in warns:
        warnings.append(FieldError(*w).message())
    return [FieldError(*e) for e in errs]


def request_options(kind, query, dry_run):
    opts = {"kind": kind, "apiVersion": "meta.k8s.io/v1"}
    if dry_run:
        opts["dryRun"] = ["All"]
    fm = query.get("fieldManager")
    if fm:
        opts["fieldManager"] = fm
    fv = query.get("fieldValidation")
    if fv:
        opts["fieldValidation"] = fv
    return opts


def apply_patch(rd, cur, patch):
    ctype, parsed, _raw = patch
    try:
        if ctype == "application/json-patch+json":
            return json_patch(cur, parsed)
        if ctype == "application/merge-patch+json":
            if not isinstance(parsed, dict):
                raise err_bad_request("json: cannot unmarshal %s into Go value of type "
                                      "map[string]interface {}" % type(parsed).__name__)
            return merge_patch(cur, parsed)
        if ctype == "application/strategic-merge-patch+json":
            if not isinstance(parsed, dict):
                raise err_bad_request("json: cannot unmarshal into Go value of type "
                                      "map[string]interface {}")
            return strategic_merge(cur, parsed)
    except PatchError as e:
        raise ApiError(422, "Invalid", str(e))
    raise err_bad_request("unsupported patch type")


# --------------------------------------------------------------------------
# Admission: calling webhooks the way kube-apiserver does
# --------------------------------------------------------------------------

class AdmissionAttrs:
    def __init__(self, op, rd, sub, ns, name, obj, old, user, dry_run, options):
        self.op = op
        self.rd = rd
        self.sub = sub
        self.ns = ns
        self.name = name
        self.obj = obj
        self.old = old
        self.user = user
        self.dry_run = bool(dry_run)
        self.options = options


class CallError(Exception):
    """An ErrCallingWebhook: failurePolicy decides."""


def to_status_err(name, status):
    """kube-apiserver's normalisation of a denial's status."""
    denied = 'admission webhook "%s" denied the request' % name
    st = copy.deepcopy(status) if isinstance(status, dict) else {"status": "Failure"}
    code = st.get("code")
    if not isinstance(code, int) or isinstance(code, bool) or code < 400:
        st["code"] = 400
    if st.get("status") in (None, "", "Success"):
        st["status"] = "Failure"
    if st.get("message"):
        st["message"] = "%s: %s" % (denied, st["message"])
    elif st.get("reason"):
        st["message"] = "%s: %s" % (denied, st["reason"])
    else:
        st["message"] = "%s without explanation" % denied
    return st


class _HookConnection(http.client.HTTPSConnection):
    """Dials an address but speaks TLS to (and verifies) another name."""

    def __init__(self, dial_host, dial_port, sni, context, timeout):
        super().__init__(dial_host, dial_port, timeout=timeout, context=context)
        self._sni = sni

    def connect(self):
        sock = socket.create_connection((self.host, self.port), self.timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock = self._context.wrap_socket(sock, server_hostname=self._sni)
        except BaseException:
            sock.close()
            raise


def _go_net_error(exc, dial):
    if isinstance(exc, ssl.SSLCertVerificationError):
        vm = (getattr(exc, "verify_message", "") or str(exc)).lower()
        if "hostname mismatch" in vm or "ip address mismatch" in vm:
            why = "x509: certificate is not valid for the requested name"
        elif "expired" in vm or "not yet valid" in vm:
            why = "x509: certificate has expired or is not yet valid"
        else:
            why = "x509: certificate signed by unknown authority"
        return "tls: failed to verify certificate: %s" % why
    if isinstance(exc, ssl.SSLError):
        return "remote error: tls: %s" % (exc.reason or str(exc)).lower().replace("_", " ")
    if isinstance(exc, ConnectionRefusedError):
        return "dial tcp %s:%d: connect: connection refused" % dial
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "context deadline exceeded"
    if isinstance(exc, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)):
        return "EOF"
    if isinstance(exc, socket.gaierror):
        return "dial tcp: lookup %s: no such host" % dial[0]
    return str(exc)


class Admission:
    def __init__(self, state):
        self.state = state
        self.pool = {}
        self.pool_lock = threading.Lock()
        self.contexts = {}

    # ---- matching ------------------------------------------------------------

    @staticmethod
    def rule_matches(rule, attrs):
        ops = rule.get("operations") or []
        if "*" not in ops and attrs.op not in ops:
            return False
        rd = attrs.rd
        groups = rule.get("apiGroups") or []
        if "*" not in groups and rd.group not in groups:
            return False
        versions = rule.get("apiVersions") or []
        if "*" not in versions and rd.version not in versions:
            return False
        ok = False
        for r in rule.get("resources") or []:
            if r == "*/*":
                ok = True
            elif "/" in r:
                res, sub = r.split("/", 1)
                ok = (res in ("*", rd.plural)) and (sub == "*" or sub == attrs.sub) \
                    and attrs.sub != ""
            else:
                ok = r in ("*", rd.plural) and attrs.sub == ""
            if ok:
                break
        if not ok:
            return False
        scope = rule.get("scope") or "*"
        if scope == "*":
            return True
        is_ns = rd.key == ("", "namespaces")
        if scope == "Cluster":
            return is_ns or not rd.namespaced
        return rd.namespaced and not is_ns

    def matches(self, wh, attrs):
        if not any(self.rule_matches(r, attrs) for r in wh.get("rules") or []
                   if isinstance(r, dict)):
            return False
        sel = wh.get("namespaceSelector")
        if sel:
            if attrs.rd.key == ("", "namespaces"):
                o = attrs.obj if attrs.obj is not None else attrs.old
                labels = ((o or {}).get("metadata") or {}).get("labels")
                if not label_selector_object_match(sel, labels):
                    return False
            elif attrs.rd.namespaced:
                if not label_selector_object_match(sel, self.state.namespace_labels(attrs.ns)):
                    return False
        sel = wh.get("objectSelector")
        if sel:
            hit = False
            for o in (attrs.obj, attrs.old):
                if o is not None and label_selector_object_match(
                        sel, (o.get("metadata") or {}).get("labels")):
                    hit = True
            if not hit:
                return False
        return True

    # ---- dispatch ------------------------------------------------------------

    def run(self, attrs, warnings, mutating):
        """Runs one phase; returns the (possibly patched) object."""
        with self.state.lock:
            enabled = self.state.cfg["admission"]
        if (not enabled or attrs.rd.group == "admissionregistration.k8s.io"
                or attrs.rd.virtual):
            return attrs.obj
        plural = "mutatingwebhookconfigurations" if mutating else \
            "validatingwebhookconfigurations"
        hooks = []
        for cfg in self.state.webhook_configs(plural):
            for wh in cfg.get("webhooks") or []:
                if isinstance(wh, dict) and self.matches(wh, attrs):
                    hooks.append(wh)
        if not hooks:
            return attrs.obj
        if mutating:
            return self._mutate(hooks, attrs, warnings)
        self._validate(hooks, attrs, warnings)
        return attrs.obj

    def _mutate(self, hooks, attrs, warnings):
        obj = attrs.obj
        last_change = -1
        called = []
        for i, wh in enumerate(hooks):
            changed = self._mutate_one(wh, attrs, obj, warnings)
            called.append(i)
            if changed is not None:
                obj = changed
                last_change = i
        # One reinvocation round for IfNeeded hooks a later hook changed things after.
        again = [i for i in called if hooks[i].get("reinvocationPolicy") == "IfNeeded"
                 and last_change > i]
        for i in again:
            changed = self._mutate_one(hooks[i], attrs, obj, warnings)
            if changed is not None:
                obj = changed
        return obj

    def _mutate_one(self, wh, attrs, obj, warnings):
        resp = self.call(wh, attrs, obj, True, warnings)
        if resp is None:
            return None
        patch_b64 = resp.get("patch")
        if not patch_b64:
            return None
        name = wh.get("name")
        try:
            ops = json.loads(base64.b64decode(patch_b64, validate=True))
        except (ValueError, TypeError) as e:
            return self._fail(wh, attrs, "error decoding patch in webhook response: %s" % e,
                              resp)
        if not isinstance(ops, list):
            return self._fail(wh, attrs, "error decoding patch in webhook response: "
                              "json: cannot unmarshal object into Go value of type "
                              "jsonpatch.Patch", resp)
        if not ops:
            return None
        if obj is None:
            raise err_internal('admission webhook "%s" attempted to modify the object, which '
                               'is not supported for this operation' % name)
        try:
            patched = json_patch(obj, ops)
        except PatchError as e:
            raise err_internal(str(e))
        if not isinstance(patched, dict):
            raise err_internal('admission webhook "%s" returned a patch that does not produce '
                               'an object' % name)
        return None if json_equal(patched, obj) else patched

    def _validate(self, hooks, attrs, warnings):
        errors = []
        lock = threading.Lock()

        def one(wh):
            try:
                self.call(wh, attrs, attrs.obj, False, warnings)
            except ApiError as e:
                with lock:
                    errors.append(e)
            except Exception as e:     # a bug here must not hang the request
                with lock:
                    errors.append(err_internal(str(e)))
        if len(hooks) == 1:
            one(hooks[0])
        else:
            threads = [threading.Thread(target=one, args=(wh,), daemon=True) for wh in hooks]
            for t in threads:
                t.start()
            limit = time.monotonic() + 35
            for t in threads:
                t.join(max(0.0, limit - time.monotonic()))
        if errors:
            raise errors[0]

    def _fail(self, wh, attrs, why, resp=None):
        """Applies failurePolicy to a calling error; returns None when ignored."""
        msg = 'failed calling webhook "%s": %s' % (wh.get("name"), why)
        if wh.get("failurePolicy", "Fail") == "Ignore":
            event_log("failed calling webhook, failing open %s: %s", wh.get("name"), why)
            return None
        event_log("failed calling webhook, failing closed %s: %s", wh.get("name"), why)
        raise err_internal(msg)

    # ---- one call ------------------------------------------------------------

    def build_request(self, attrs, obj, uid):
        rd = attrs.rd
        gvk = {"group": rd.group, "version": rd.version, "kind": rd.kind}
        gvr = {"group": rd.group, "version": rd.version, "resource": rd.plural}
        req = {"uid": uid, "kind": gvk, "resource": gvr}
        if attrs.sub:
            req["subResource"] = attrs.sub
        req["requestKind"] = dict(gvk)
        req["requestResource"] = dict(gvr)
        if attrs.sub:
            req["requestSubResource"] = attrs.sub
        if attrs.name:
            req["name"] = attrs.name
        if attrs.ns:
            req["namespace"] = attrs.ns
        req["operation"] = attrs.op
        u = attrs.user or {}
        ui = {"username": u.get("username", "")}
        if u.get("uid"):
            ui["uid"] = u["uid"]
        if u.get("groups"):
            ui["groups"] = list(u["groups"])
        if u.get("extra"):
            ui["extra"] = copy.deepcopy(u["extra"])
        req["userInfo"] = ui
        req["object"] = copy.deepcopy(obj)
        req["oldObject"] = copy.deepcopy(attrs.old)
        req["dryRun"] = attrs.dry_run
        req["options"] = copy.deepcopy(attrs.options)
        return req

    def call(self, wh, attrs, obj, mutating, warnings):
        """Calls one webhook. Returns its response, or None if a failure was ignored.
        Raises ApiError for a denial or a failure under failurePolicy Fail."""
        name = wh.get("name", "")
        rec = {"time": time.time(), "webhook": name,
               "type": "mutating" if mutating else "validating", "operation": attrs.op,
               "resource": attrs.rd.qualified, "subResource": attrs.sub,
               "namespace": attrs.ns, "name": attrs.name, "dryRun": attrs.dry_run}
        if attrs.dry_run and wh.get("sideEffects") not in ("None", "NoneOnDryRun"):
            rec["outcome"] = "error"
            rec["error"] = "does not support dry run"
            self.state.log_admission(rec)
            raise ApiError(400, "BadRequest",
                           'admission webhook "%s" does not support dry run' % name)
        versions = [v for v in wh.get("admissionReviewVersions") or []
                    if v in ("v1", "v1beta1")]
        t0 = time.monotonic()
        uid = str(uuid.uuid4())
        review = None
        try:
            if not versions:
                raise CallError("webhook does not accept known AdmissionReview versions")
            version = versions[0]
            review = {"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/" + version,
                      "request": self.build_request(attrs, obj, uid)}
            rec["request"] = review
            url, status, data = self._post(wh, review)
            rec["url"] = url
            rec["httpStatus"] = status
            resp = self._decode(status, data)
            rec["response"] = resp
            self._verify(resp, uid, mutating, version)
        except CallError as e:
            rec["outcome"] = "ignored" if wh.get("failurePolicy", "Fail") == "Ignore" \
                else "error"
            rec["error"] = str(e)
            rec["durationMs"] = round((time.monotonic() - t0) * 1000, 3)
            self.state.log_admission(rec)
            return self._fail(wh, attrs, str(e))
        response = resp["response"]
        rec["durationMs"] = round((time.monotonic() - t0) * 1000, 3)
        for w in response.get("warnings") or []:
            if isinstance(w, str):
                warnings.append(w)
        if not response.get("allowed"):
            rec["outcome"] = "denied"
            self.state.log_admission(rec)
            raise StatusError(to_status_err(name, response.get("status")))
        rec["outcome"] = "patched" if response.get("patch") else "allowed"
        self.state.log_admission(rec)
        return response

    def _decode(self, status, data):
        if status < 200 or status > 206:
            text = data.decode("utf-8", "replace")
            try:
                st = json.loads(text)
            except ValueError:
                st = None
            if isinstance(st, dict) and st.get("kind") == "Status" and st.get("message"):
                why = st["message"]
            elif status == 404:
                why = "the server could not find the requested resource"
            elif status >= 500:
                why = 'an error on the server (%s) has prevented the request from ' \
                      'succeeding' % go_quote(text.strip()[:1024])
            else:
                why = ("the server responded with the status code %d but did not return "
                       "more information" % status)
            raise CallError("failed to call webhook: %s" % why)
        try:
            resp = json.loads(data)
        except ValueError as e:
            raise CallError("failed to call webhook: couldn't get version/kind; json parse "
                            "error: %s" % e)
        if not isinstance(resp, dict):
            raise CallError("failed to call webhook: couldn't get version/kind; json parse "
                            "error: json: cannot unmarshal %s into Go value of type "
                            "struct { APIVersion string \"json:\\\"apiVersion,omitempty\\\"\"; "
                            "Kind string \"json:\\\"kind,omitempty\\\"\" }"
                            % type(resp).__name__)
        return resp

    @staticmethod
    def _verify(resp, uid, mutating, version):
        def bad(msg):
            return CallError("received invalid webhook response: " + msg)
        r = resp.get("response")
        if not isinstance(r, dict):
            raise bad("webhook response was absent")
        if version == "v1":
            if r.get("uid", "") != uid:
                raise bad("expected response.uid=%s, got %s" % (go_quote(uid),
                                                               go_quote(str(r.get("uid", "")))))
            av = resp.get("apiVersion") or ""
            g, _, v = av.rpartition("/") if "/" in av else ("", "", av)
            if av != "admission.k8s.io/v1" or resp.get("kind") != "AdmissionReview":
                raise bad("expected webhook response of admission.k8s.io/v1, "
                          "Kind=AdmissionReview, got %s/%s, Kind=%s"
                          % (g, v, resp.get("kind") or ""))
            has_pt = "patchType" in r and r["patchType"] is not None
            pt = r.get("patchType") or ""
            if has_pt and pt != "JSONPatch":
                raise bad('expected response.patchType to be one of [JSONPatch], got %s'
                          % go_quote(str(pt)))
            if mutating:
                if r.get("patch") and not pt:
                    raise bad("expected response.patchType to be set if response.patch is "
                              "present")
                if has_pt and not r.get("patch"):
                    raise bad("expected response.patch to be set if response.patchType is "
                              "present")
            else:
                if r.get("patch"):
                    raise bad("validating webhook may not return response.patch")
                if has_pt:
                    raise bad("validating webhook may not return response.patchType")
        elif not mutating and r.get("patch"):
            raise bad("validating webhook may not return response.patch")
        if not isinstance(r.get("allowed", False), bool):
            raise bad("response.allowed must be a boolean")

    def _target(self, wh, timeout):
        cc = wh.get("clientConfig") or {}
        with self.state.lock:
            hosts = dict(self.state.cfg["serviceHosts"])

        def mapped(*keys):
            for k in keys:
                if k in hosts:
                    return hosts[k]
            return None

        if cc.get("url"):
            u = urllib.parse.urlsplit(cc["url"])
            host = u.hostname or ""
            port = u.port or 443
            path = u.path or "/"
            m = mapped("%s:%d" % (host, port), host)
            url = "%s?timeout=%ds" % (cc["url"], timeout)
            host_header = u.netloc
        else:
            svc = cc.get("service") or {}
            host = "%s.%s.svc" % (svc.get("name"), svc.get("namespace"))
            port = int(svc.get("port") or 443)
            path = svc.get("path") or "/"
            url = "https://%s:%d%s?timeout=%ds" % (host, port, path, timeout)
            m = mapped("%s:%d" % (host, port), host, "%s.%s" % (svc.get("name"),
                                                              svc.get("namespace")))
            if m is None:
                raise CallError('failed to call webhook: Post "%s": service "%s" not found'
                                % (url, svc.get("name")))
            host_header = "%s:%d" % (host, port)
        if m is not None:
            dh, _, dp = str(m).rpartition(":") if ":" in str(m) else (str(m), "", "")
            dial = (dh, int(dp) if dp else port)
        else:
            dial = (host, port)
        return url, dial, host, host_header, path + "?timeout=%ds" % timeout

    def _context(self, ca_b64):
        key = ca_b64 or ""
        with self.pool_lock:
            ctx = self.contexts.get(key)
        if ctx is not None:
            return ctx
        if ca_b64:
            try:
                pem = base64.b64decode(ca_b64).decode("ascii")
                ctx = ssl.create_default_context(cadata=pem)
            except (ValueError, ssl.SSLError, UnicodeDecodeError) as e:
                raise CallError("failed to call webhook: unable to load root certificates: %s"
                                % e)
        else:
            ctx = ssl.create_default_context()
        ctx.set_alpn_protocols(["http/1.1"])
        with self.pool_lock:
            self.contexts[key] = ctx
        return ctx

    def _post(self, wh, review):
        timeout = int(wh.get("timeoutSeconds") or 10)
        url, dial, sni, host_header, path_q = self._target(wh, timeout)
        ca = (wh.get("clientConfig") or {}).get("caBundle")
        ctx = self._context(ca)
        body = dumps(review).encode()
        key = (dial, sni, hashlib.sha256((ca or "").encode()).hexdigest())
        deadline = time.monotonic() + timeout
        for attempt in (0, 1):
            with self.pool_lock:
                idle = self.pool.get(key) or []
                conn = idle.pop() if idle else None
            reused = conn is not None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CallError('failed to call webhook: Post "%s": context deadline exceeded'
                                % url)
            if conn is None:
                conn = _HookConnection(dial[0], dial[1], sni, ctx, remaining)
            try:
                conn.timeout = remaining
                if conn.sock is not None:
                    conn.sock.settimeout(remaining)
                else:
                    conn.connect()
                    conn.sock.settimeout(max(0.001, deadline - time.monotonic()))
                conn.putrequest("POST", path_q, skip_host=True, skip_accept_encoding=True)
                conn.putheader("Host", host_header)
                conn.putheader("Content-Type", "application/json")
                conn.putheader("Accept", "application/json, */*")
                conn.putheader("User-Agent", "kube-apiserver-admission")
                conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body)
                resp = conn.getresponse()
                data = resp.read()
                if resp.will_close:
                    conn.close()
                else:
                    with self.pool_lock:
                        lst = self.pool.setdefault(key, [])
                        if len(lst) < 16:
                            lst.append(conn)
                        else:
                            conn.close()
                return url, resp.status, data
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                # A pooled connection the server already closed: try once on a new one.
                if reused and attempt == 0 and not isinstance(e, (socket.timeout,
                                                                  TimeoutError)):
                    continue
                raise CallError('failed to call webhook: Post "%s": %s'
                                % (url, _go_net_error(e, dial)))
        raise CallError('failed to call webhook: Post "%s": EOF' % url)

    def close(self):
        with self.pool_lock:
            for lst in self.pool.values():
                for c in lst:
                    c.close()
            self.pool = {}


# --------------------------------------------------------------------------
# Protobuf, just enough for the access reviews kubectl sends that way
# (`kubectl auth can-i`); answers are JSON, which client-go accepts.
# --------------------------------------------------------------------------

def _pb_fields(data):
    """Wire-format fields -> {number: [value]} (bytes for LEN, int for VARINT)."""
    out = {}
    i = 0
    n = len(data)

    def varint():
        nonlocal i
        shift = result = 0
        while True:
            if i >= n:
                raise ValueError("truncated varint")
            b = data[i]
            i += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
    while i < n:
        key = varint()
        num, wt = key >> 3, key & 7
        if wt == 0:
            val = varint()
        elif wt == 2:
            ln = varint()
            val = bytes(data[i:i + ln])
            i += ln
        elif wt == 1:
            val = bytes(data[i:i + 8])
            i += 8
        elif wt == 5:
            val = bytes(data[i:i + 4])
            i += 4
        else:
            raise ValueError("unsupported wire type %d" % wt)
        out.setdefault(num, []).append(val)
    return out


def _pb_str(fields, num):
    v = fields.get(num)
    return v[-1].decode("utf-8") if v else ""


def decode_review_protobuf(body, rd):
    try:
        if not body.startswith(b"k8s\x00"):
            raise ValueError("missing k8s envelope")
        unknown = _pb_fields(body[4:])
        raw = (unknown.get(2) or [b""])[-1]
        review = _pb_fields(raw)
        spec = _pb_fields((review.get(2) or [b""])[-1])
        out = {}
        if spec.get(1):
            ra = _pb_fields(spec[1][-1])
            out["resourceAttributes"] = {k: _pb_str(ra, i) for i, k in enumerate(
                ("namespace", "verb", "group", "version", "resource", "subresource",
                 "name"), start=1) if _pb_str(ra, i)}
        if spec.get(2):
            nra = _pb_fields(spec[2][-1])
            out["nonResourceAttributes"] = {"path": _pb_str(nra, 1), "verb": _pb_str(nra, 2)}
        if rd.plural == "subjectaccessreviews":
            if spec.get(3):
                out["user"] = _pb_str(spec, 3)
            if spec.get(4):
                out["groups"] = [g.decode("utf-8") for g in spec[4]]
            if spec.get(6):
                out["uid"] = _pb_str(spec, 6)
        return {"kind": rd.kind, "apiVersion": rd.gv, "spec": out}
    except (ValueError, IndexError, UnicodeDecodeError) as e:
        raise err_bad_request("unable to decode protobuf %s: %s" % (rd.kind, e))


def _pb_map(entries, as_bytes=False):
    out = {}
    for e in entries or []:
        f = _pb_fields(e)
        k = _pb_str(f, 1)
        v = (f.get(2) or [b""])[-1]
        out[k] = base64.b64encode(v).decode() if as_bytes else v.decode("utf-8")
    return out


def _pb_object_meta(data):
    f = _pb_fields(data)
    meta = {}
    for num, key in ((1, "name"), (2, "generateName"), (3, "namespace"),
                     (6, "resourceVersion"), (5, "uid")):
        if _pb_str(f, num):
            meta[key] = _pb_str(f, num)
    if f.get(11):
        meta["labels"] = _pb_map(f[11])
    if f.get(12):
        meta["annotations"] = _pb_map(f[12])
    if f.get(14):
        meta["finalizers"] = [x.decode("utf-8") for x in f[14]]
    return meta


PROTOBUF_KINDS = ("namespaces", "configmaps", "secrets", "serviceaccounts")


def decode_object_protobuf(body, rd):
    """The built-in objects kubectl creates imperatively (create namespace, ...)."""
    if rd.group != "" or rd.plural not in PROTOBUF_KINDS:
        raise err_unsupported_media(["application/json", "application/yaml"])
    try:
        if not body.startswith(b"k8s\x00"):
            raise ValueError("missing k8s envelope")
        raw = (_pb_fields(body[4:]).get(2) or [b""])[-1]
        f = _pb_fields(raw)
        obj = {"apiVersion": "v1", "kind": rd.kind,
               "metadata": _pb_object_meta((f.get(1) or [b""])[-1])}
        if rd.plural == "namespaces" and f.get(2):
            spec = _pb_fields(f[2][-1])
            obj["spec"] = {"finalizers": [x.decode("utf-8") for x in spec.get(1) or []]}
        elif rd.plural == "configmaps":
            if f.get(2):
                obj["data"] = _pb_map(f[2])
            if f.get(3):
                obj["binaryData"] = _pb_map(f[3], as_bytes=True)
        elif rd.plural == "secrets":
            if f.get(2):
                obj["data"] = _pb_map(f[2], as_bytes=True)
            if _pb_str(f, 3):
                obj["type"] = _pb_str(f, 3)
            if f.get(4):
                obj["stringData"] = _pb_map(f[4])
        return obj
    except (ValueError, IndexError, UnicodeDecodeError) as e:
        raise err_bad_request("unable to decode protobuf %s: %s" % (rd.kind, e))


# --------------------------------------------------------------------------
# Tables (kubectl get asks for meta.k8s.io/v1 Table)
# --------------------------------------------------------------------------

def _cell(value, ctype):
    if value is None:
        return None
    if ctype == "date":
        ts = parse_rfc3339(value) if isinstance(value, str) else None
        return human_duration(time.time() - ts) if ts is not None else str(value)
    if ctype == "integer":
        return value if isinstance(value, int) else None
    if ctype == "number":
        return value if isinstance(value, (int, float)) else None
    if ctype == "boolean":
        return value if isinstance(value, bool) else None
    if isinstance(value, (dict, list)):
        return dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def table_columns(state, rd):
    defs = [({"name": "Name", "type": "string", "format": "name",
              "description": "Object name, unique within its namespace.", "priority": 0},
             lambda o: o["metadata"].get("name"))]
    with state.lock:
        cols = copy.deepcopy(state.printer_columns.get(rd.key))
    if cols:
        for c in cols:
            path, ctype = c.get("jsonPath", ""), c.get("type", "string")
            defs.append(({"name": c.get("name", ""), "type": ctype,
                          "format": c.get("format", ""),
                          "description": c.get("description", ""),
                          "priority": int(c.get("priority", 0))},
                         lambda o, p=path, t=ctype: _cell((jsonpath(o, p) or [None])[0], t)))
        return defs
    if rd.key == ("", "namespaces"):
        defs.append(({"name": "Status", "type": "string", "format": "",
                      "description": "Namespace phase.", "priority": 0},
                     lambda o: (o.get("status") or {}).get("phase")))
    defs.append(({"name": "Age", "type": "string", "format": "",
                  "description": "Time since the object was created.", "priority": 0},
                 lambda o: _cell(o["metadata"].get("creationTimestamp"), "date")))
    return defs


def to_table(state, rd, objs, list_meta, include):
    defs = table_columns(state, rd)
    rows = []
    for o in objs:
        row = {"cells": [fn(o) for _, fn in defs]}
        if include == "Object":
            row["object"] = o
        elif include != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": o.get("metadata") or {}}
        rows.append(row)
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta,
            "columnDefinitions": [d for d, _ in defs], "rows": rows}


# --------------------------------------------------------------------------
# Control API (shared by HTTP /_standin/ and StandIn.control)
# --------------------------------------------------------------------------

def control_dispatch(state, method, action, body, query):
    """Returns (http_code, json_payload)."""
    since = int(query.get("since", "0") or 0)
    if action == "healthz":
        return 200, "ok"
    if action == "state" and method == "GET":
        return 200, state.state_summary()
    if action == "objects" and method == "GET":
        return 200, {"items": state.all_objects()}
    if action == "requests":
        if method == "DELETE":
            with state.lock:
                state.request_log = []
            return 200, {"cleared": True}
        with state.lock:
            items = State._since(state.request_log, since)
            nxt = state.request_seq
        return 200, {"next": nxt, "items": items}
    if action == "admission-log":
        if method == "DELETE":
            with state.lock:
                state.admission_log = []
            return 200, {"cleared": True}
        with state.lock:
            items = State._since(state.admission_log, since)
            nxt = state.admission_seq
        return 200, {"next": nxt, "items": items}
    if method != "POST":
        return 405, {"error": "use POST for %s" % action}
    body = body if isinstance(body, dict) else {}
    if action == "config":
        return 200, state.configure(body)
    if action == "fail":
        state.add_fault(body)
        return 200, {"faults": state.state_summary()["faults"]}
    if action == "latency":
        state.set_latency(body)
        return 200, {"latency": state.state_summary()["latency"]}
    if action == "watch-delay":
        state.set_watch_delay(body)
        return 200, {"watchDelay": state.state_summary()["watchDelay"]}
    if action == "cut-watches":
        return 200, {"cut": state.cut_watches(body.get("mode", "abort"))}
    if action == "compact":
        return 200, {"compactedResourceVersion":
                     str(state.compact(bool(body.get("expireOpenWatches"))))}
    if action == "token":
        toks = body.get("tokens")
        if toks is not None and not isinstance(toks, list):
            toks = [toks]
        state.configure({"requiredTokens": toks})
        return 200, {"requiredTokens": toks}
    if action == "users":
        with state.lock:
            for tok, u in (body.get("tokens") or {}).items():
                if u is None:
                    state.cfg["users"].pop(tok, None)
                else:
                    state.cfg["users"][tok] = u
            if body.get("default"):
                state.cfg["defaultUser"] = body["default"]
            return 200, {"users": copy.deepcopy(state.cfg["users"]),
                         "default": copy.deepcopy(state.cfg["defaultUser"])}
    if action == "sar-policy":
        with state.lock:
            pol = state.cfg["sarPolicy"]
            for k in ("default", "enforce", "rules"):
                if k in body:
                    pol[k] = body[k]
            return 200, copy.deepcopy(pol)
    if action == "bookmarks":
        state.configure({"bookmarkInterval": float(body.get("interval", 0))})
        return 200, {"bookmarkInterval": float(body.get("interval", 0))}
    if action == "watch-mode":
        m = {"chunking": "watchChunking", "chunkSize": "chunkSize",
             "chunkDelay": "chunkDelay", "goneMode": "goneMode", "goneReason": "goneReason"}
        return 200, state.configure({m[k]: v for k, v in body.items() if k in m})
    if action == "service-hosts":
        state.configure({"serviceHosts": body})
        with state.lock:
            return 200, copy.deepcopy(state.cfg["serviceHosts"])
    if action == "reset":
        state.reset()
        return 200, {"reset": True, "resourceVersion": str(state.rv)}
    return 404, {"error": "unknown control action %r" % action}


# --------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------

LOGGED_HEADERS = ("Authorization", "Content-Type", "Accept", "User-Agent",
                  "Impersonate-User", "Impersonate-Group", "Impersonate-Uid")
FAULT_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
                 405: "MethodNotAllowed", 409: "Conflict", 410: "Gone", 422: "Invalid",
                 429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable",
                 504: "Timeout"}


def warning_headers(warnings):
    """Warning: 299 - "text" headers, deduplicated and truncated as kube does."""
    out, seen, total = [], set(), 0
    for w in warnings:
        if w in seen or any(ord(c) < 0x20 or ord(c) == 0x7F for c in w):
            continue
        seen.add(w)
        out.append(w)
        total += len(w)
    if total > WARNING_TOTAL_RUNES:
        out = [w[:WARNING_ITEM_RUNES] for w in out]
        kept, total = [], 0
        for w in out:
            if total + len(w) > WARNING_TOTAL_RUNES:
                break
            kept.append(w)
            total += len(w)
        out = kept
    return [("Warning", '299 - "%s"' % w.replace("\\", "\\\\").replace('"', '\\"'))
            for w in out]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kube-standin"
    sys_version = ""
    timeout = 120

    def setup(self):
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self.server.track(self.connection, True)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    _rec = None     # this request's log entry, once logged

    def log_message(self, fmt, *args):
        vlog("%s %s", self.address_string(), fmt % args)

    @property
    def state(self):
        return self.server.state

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def do_HEAD(self):
        self._dispatch("HEAD")

    # ---- plumbing ----------------------------------------------------------------

    def _read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        limit = int(self.state.cfg["maxBody"])
        if te == "chunked":
            data = b""
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                if len(data) + size > limit:
                    raise ApiError(413, "RequestEntityTooLarge",
                                   "Request entity too large: limit is %d" % limit)
                data += self.rfile.read(size)
                self.rfile.readline(65537)
        n = int(self.headers.get("Content-Length") or 0)
        if n > limit:
            self.close_connection = True
            raise ApiError(413, "RequestEntityTooLarge",
                           "Request entity too large: limit is %d" % limit)
        return self.rfile.read(n) if n > 0 else b""

    def _send(self, code, payload, ctype="application/json", headers=()):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Audit-Id", str(uuid.uuid4()))
        for k, v in headers:
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        # Headers and body in one write: no Nagle/delayed-ACK stall between them.
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD":
            self._headers_buffer.append(payload)
        self._answered(code)    # before the bytes leave: the client may read the log next
        self.flush_headers()

    def _answered(self, code):
        """Records the answer's code in this request's log entry, if any."""
        self._code = code
        if self._rec is not None:
            self._rec["code"] = code

    def _send_json(self, code, obj, headers=()):
        self._send(code, (dumps(obj) + "\n").encode(), headers=headers)

    def _send_error(self, e, warnings=()):
        hdrs = list(e.headers) + warning_headers(list(warnings) + list(e.warnings))
        self._send_json(e.code, e.status(), hdrs)

    def _dispatch(self, method):
        self._code = 0
        self._rec = None
        split = urllib.parse.urlsplit(self.path)
        path = split.path
        query = {k: v[-1] for k, v in
                 urllib.parse.parse_qs(split.query, keep_blank_values=True).items()}
        try:
            body = self._read_body()
        except ApiError as e:
            self._send_error(e)
            return
        except (ValueError, OSError):
            self.close_connection = True
            return
        if path.startswith("/_standin/") or path == "/_standin":
            self._control(method, path, query, body)
            return
        rec = {"time": time.time(), "method": method, "path": path, "query": query,
               "rawQuery": split.query,
               "headers": {h: self.headers.get(h) for h in LOGGED_HEADERS
                           if self.headers.get(h) is not None}}
        if body and method in ("POST", "PUT", "PATCH", "DELETE"):
            rec["body"] = body[:REQUEST_LOG_BODY_MAX].decode("utf-8", "replace")
            if len(body) > REQUEST_LOG_BODY_MAX:
                rec["bodyTruncated"] = True
        self._rec = self.state.log_request(rec)
        warnings = []
        try:
            delay = self.state.latency_for(path, method, query)
            if delay > 0:
                time.sleep(delay)
            fault = self.state.take_fault(method, path)
            if fault:
                self._fault(fault)
                return
            user = self._authenticate()
            rec["user"] = user.get("username")
            self._api(method, path, query, body, user, warnings)
        except ApiError as e:
            try:
                self._send_error(e, warnings)
            except OSError:
                self.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:      # a stand-in bug: say so loudly, answer 500
            log("internal error on %s %s: %s\n%s", method, path, e, traceback.format_exc())
            try:
                self._send_error(err_internal("kube-standin: %s" % e))
            except OSError:
                self.close_connection = True
        finally:
            rec["code"] = self._code

    def _fault(self, f):
        if f["drop"]:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._code = -1
            return
        code = f["code"]
        reason = f["reason"] or FAULT_REASONS.get(code, "")
        msg = f["message"] or ("Too many requests, please try again later." if code == 429
                               else "kube-standin: injected fault")
        details = None
        headers = []
        if f["retryAfter"] is not None:
            details = {"retryAfterSeconds": int(f["retryAfter"])}
            headers.append(("Retry-After", str(int(f["retryAfter"]))))
        if code == 500 and reason == "InternalError" and not f["message"]:
            msg = "Internal error occurred: kube-standin: injected fault"
        raise ApiError(code, reason, msg, details, headers)

    def _control(self, method, path, query, body):
        action = path[len("/_standin/"):].strip("/")
        try:
            parsed = json.loads(body) if body.strip() else {}
        except ValueError:
            self._send_json(400, {"error": "body is not JSON"})
            return
        try:
            code, payload = control_dispatch(self.state, method, action, parsed, query)
        except ApiError as e:
            code, payload = e.code, {"error": e.message}
        if isinstance(payload, str):
            self._send(code, payload.encode(), "text/plain; charset=utf-8")
        else:
            self._send_json(code, payload)

    def _authenticate(self):
        auth = self.headers.get("Authorization") or ""
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        user = self.state.authenticate(token)
        if user is None:
            raise ApiError(401, "Unauthorized", "Unauthorized")
        imp = self.headers.get("Impersonate-User")
        if imp:
            groups = self.headers.get_all("Impersonate-Group") or []
            if imp != "system:anonymous" and "system:authenticated" not in groups:
                groups = groups + ["system:authenticated"]
            user = {"username": imp, "groups": groups}
            if self.headers.get("Impersonate-Uid"):
                user["uid"] = self.headers.get("Impersonate-Uid")
            extra = {}
            for k, v in self.headers.items():
                if k.lower().startswith("impersonate-extra-"):
                    extra.setdefault(urllib.parse.unquote(k[18:]).lower(), []).append(v)
            if extra:
                user["extra"] = extra
        return user

    # ---- the API ---------------------------------------------------------------

    def _api(self, method, path, query, body, user, warnings):
        reg = self.state.registry
        if path in ("/healthz", "/livez", "/readyz") or path.startswith(("/healthz/",
                                                                          "/livez/",
                                                                          "/readyz/")):
            self._send(200, b"ok", "text/plain; charset=utf-8")
            return
        if path == "/version":
            self._send_json(200, VERSION_INFO)
            return
        parts = [urllib.parse.unquote(p) for p in path.split("/") if p]
        if not parts:
            self._send_json(200, {"paths": ["/api", "/api/v1", "/apis", "/healthz",
                                            "/livez", "/readyz", "/version"]})
            return
        if parts[0] == "api":
            if len(parts) == 1:
                addr = "%s:%d" % self.server.server_address[:2]
                self._send_json(200, {"kind": "APIVersions", "versions": ["v1"],
                                      "serverAddressByClientCIDRs": [
                                          {"clientCIDR": "0.0.0.0/0", "serverAddress": addr}]})
                return
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis":
            if len(parts) == 1:
                self._send_json(200, {"kind": "APIGroupList", "apiVersion": "v1",
                                      "groups": [self._group_doc(g, vs) for g, vs in reg.groups()
                                                 if g]})
                return
            group = parts[1]
            if len(parts) == 2:
                for g, vs in reg.groups():
                    if g == group:
                        doc = self._group_doc(g, vs)
                        doc.update({"kind": "APIGroup", "apiVersion": "v1"})
                        self._send_json(200, doc)
                        return
                raise err_no_route()
            version, rest = parts[2], parts[3:]
        else:
            raise err_no_route()
        resources = reg.resources(group, version)
        if not resources:
            raise err_no_route()
        if not rest:
            if method not in ("GET", "HEAD"):
                raise err_method_not_allowed()
            out = []
            for rd in sorted(resources, key=lambda r: r.plural):
                out.extend(rd.discovery())
            self._send_json(200, {"kind": "APIResourceList", "apiVersion": "v1",
                                  "groupVersion": "%s/%s" % (group, version) if group else version,
                                  "resources": out})
            return
        watch = query.get("watch") in ("1", "true", "True")
        if rest[0] == "watch":
            watch = True
            rest = rest[1:]
        ns = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            cand = reg.get(group, version, rest[2])
            if cand is not None and cand.namespaced:
                ns, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            raise err_no_route()
        rd = reg.get(group, version, rest[0])
        if rd is None or (ns is not None and not rd.namespaced):
            raise err_no_route()
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if rd.namespaced and name is not None and ns is None:
            raise err_no_route()
        if sub is not None and sub not in rd.subresources:
            raise err_no_route()
        dry = query.get("dryRun")
        if dry not in (None, "", "All"):
            raise err_bad_request('dryRun: Unsupported value: "%s": supported values: "All"'
                                  % dry)
        dry_run = dry == "All"
        if rd.virtual:
            if method != "POST" or name is not None:
                raise err_method_not_allowed()
            if rd.plural != "selfsubjectaccessreviews":
                self._enforce(user, rd, "create", None, None, None)
            if rd.plural == "tokenreviews":
                self._token_review(rd, body)
            else:
                self._review(rd, body, user)
            return
        verb = self._verb(method, name, watch)
        self._enforce(user, rd, verb, ns, name, sub)
        table = "as=Table" in (self.headers.get("Accept") or "")
        if name is None:
            if method in ("GET", "HEAD"):
                lreqs = parse_label_selector(query.get("labelSelector"))
                freqs = self.state.field_selector(rd, query.get("fieldSelector"))
                if watch:
                    self._watch(rd, ns, query, lreqs, freqs, table)
                    return
                self._list(rd, ns, query, lreqs, freqs, table)
            elif method == "POST":
                if rd.namespaced and ns is None:
                    raise err_method_not_allowed()
                obj = self._json_body(body, method, rd=rd)
                out, w = self.state.create(rd, ns, obj, user, dry_run, query)
                warnings += w
                self._send_json(201, out, warning_headers(warnings))
            elif method == "DELETE":
                opts = self._json_body(body, method, optional=True) or {}
                lreqs = parse_label_selector(query.get("labelSelector"))
                freqs = self.state.field_selector(rd, query.get("fieldSelector"))
                if "All" in (opts.get("dryRun") or []):
                    dry_run = True
                out, w = self.state.delete_collection(rd, ns, lreqs, freqs, user, dry_run,
                                                      opts)
                warnings += w
                self._send_json(200, out, warning_headers(warnings))
            else:
                raise err_method_not_allowed()
            return
        if method in ("GET", "HEAD"):
            obj = self.state.get(rd, ns, name)
            if table:
                obj = to_table(self.state, rd, [obj],
                               {"resourceVersion": obj["metadata"].get("resourceVersion")},
                               query.get("includeObject", "Metadata"))
            self._send_json(200, obj)
        elif method == "PUT":
            obj = self._json_body(body, method, rd=rd)
            out, w = self.state.update(rd, ns, name, sub, user, dry_run, query, body=obj)
            warnings += w
            self._send_json(200, out, warning_headers(warnings))
        elif method == "PATCH":
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            accepted = ["application/json-patch+json", "application/merge-patch+json"]
            if rd.builtin:
                accepted.append("application/strategic-merge-patch+json")
            if ctype not in accepted:
                raise err_unsupported_media(accepted)
            try:
                parsed = json.loads(body)
            except ValueError as e:
                raise err_bad_request("error decoding patch: %s" % e)
            out, w = self.state.update(rd, ns, name, sub, user, dry_run, query,
                                       patch=(ctype, parsed, body))
            warnings += w
            self._send_json(200, out, warning_headers(warnings))
        elif method == "DELETE" and sub is None:
            opts = self._json_body(body, method, optional=True) or {}
            if query.get("propagationPolicy"):
                opts.setdefault("propagationPolicy", query["propagationPolicy"])
            if "All" in (opts.get("dryRun") or []):
                dry_run = True
            out, w = self.state.delete(rd, ns, name, user, dry_run, opts)
            warnings += w
            self._send_json(200, out, warning_headers(warnings))
        else:
            raise err_method_not_allowed()

    @staticmethod
    def _group_doc(g, versions):
        vs = [{"groupVersion": "%s/%s" % (g, v), "version": v} for v in versions]
        return {"name": g, "versions": vs, "preferredVersion": vs[0]}

    @staticmethod
    def _verb(method, name, watch):
        if method in ("GET", "HEAD"):
            return "get" if name is not None else ("watch" if watch else "list")
        if method == "DELETE" and name is None:
            return "deletecollection"
        return {"POST": "create", "PUT": "update", "PATCH": "patch",
                "DELETE": "delete"}.get(method, method.lower())

    def _enforce(self, user, rd, verb, ns, name, sub):
        if not self.state.enforce_enabled():
            return
        attrs = {"namespace": ns or "", "verb": verb, "group": rd.group,
                 "resource": rd.plural, "subresource": sub or "", "name": name or ""}
        allowed, _ = self.state.authorize(user, attrs)
        if allowed:
            return
        res = rd.plural + ("/" + sub if sub else "")
        where = ('in the namespace "%s"' % ns) if ns else "at the cluster scope"
        msg = 'User "%s" cannot %s resource "%s" in API group "%s" %s' % (
            user.get("username", ""), verb, res, rd.group, where)
        raise err_forbidden(rd, name, msg)

    def _json_body(self, body, method, optional=False, rd=None):
        if not body.strip():
            if optional:
                return None
            raise err_bad_request("the body of the request was empty")
        ctype = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip()
        if ctype == "application/vnd.kubernetes.protobuf" and rd is not None:
            return decode_object_protobuf(body, rd)
        if ctype not in ("application/json", "*/*", ""):
            raise err_unsupported_media(["application/json", "application/yaml"])
        try:
            return json.loads(body)
        except ValueError as e:
            raise err_bad_request("couldn't get version/kind; json parse error: %s" % e)

    def _list(self, rd, ns, query, lreqs, freqs, table):
        try:
            limit = int(query.get("limit") or 0)
        except ValueError:
            raise err_bad_request("limit must be an integer")
        cont = query.get("continue") or None
        if cont and query.get("resourceVersion") not in (None, ""):
            raise err_bad_request("specifying resource version is not allowed when using "
                                  "continue")
        items, rv, token, remaining = self.state.list(rd, ns, lreqs, freqs, max(0, limit), cont)
        meta = {"resourceVersion": rv}
        if token:
            meta["continue"] = token
        if remaining is not None:
            meta["remainingItemCount"] = remaining
        if table:
            self._send_json(200, to_table(self.state, rd, items, meta,
                                          query.get("includeObject", "Metadata")))
            return
        for o in items:
            o.setdefault("apiVersion", rd.gv)
            o.setdefault("kind", rd.kind)
        self._send_json(200, {"apiVersion": rd.gv, "kind": rd.list_kind, "metadata": meta,
                              "items": items})

    def _review(self, rd, body, user):
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        if ctype == "application/vnd.kubernetes.protobuf":
            obj = decode_review_protobuf(body, rd)
        else:
            obj = self._json_body(body, "POST")
        if not isinstance(obj, dict) or obj.get("kind") not in (None, rd.kind):
            raise err_bad_request("the object provided is unrecognized (must be of type %s)"
                                  % rd.kind)
        spec = obj.get("spec") or {}
        ra, nra = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
        errs = []
        if rd.plural == "selfsubjectaccessreviews":
            subject = user
        else:
            subject = {"username": spec.get("user") or "", "groups": spec.get("groups") or [],
                       "uid": spec.get("uid") or "", "extra": spec.get("extra") or {}}
            if not subject["username"] and not subject["groups"]:
                errs.append(FieldError("FieldValueInvalid", "spec.user", "",
                                       "at least one of user or group must be specified"))
        if (ra is None) == (nra is None):
            errs.append(FieldError("FieldValueInvalid", "spec.resourceAttributes", "null",
                                   "exactly one of nonResourceAttributes or "
                                   "resourceAttributes must be specified"))
        if errs:
            raise err_invalid(rd, "", errs)
        if ra is not None:
            attrs = {"namespace": ra.get("namespace") or "", "verb": ra.get("verb") or "",
                     "group": ra.get("group") or "", "resource": ra.get("resource") or "",
                     "subresource": ra.get("subresource") or "", "name": ra.get("name") or ""}
        else:
            attrs = {"verb": nra.get("verb") or "", "path": nra.get("path") or "",
                     "resource": "", "namespace": "", "group": "", "subresource": "",
                     "name": ""}
        allowed, reason = self.state.authorize(subject, attrs)
        status = {"allowed": allowed}
        if reason:
            status["reason"] = reason
        out = {"kind": rd.kind, "apiVersion": rd.gv,
               "metadata": {"creationTimestamp": None}, "spec": spec, "status": status}
        self._send_json(201, out)

    def _token_review(self, rd, body):
        obj = self._json_body(body, "POST")
        if not isinstance(obj, dict) or obj.get("kind") not in (None, rd.kind):
            raise err_bad_request("the object provided is unrecognized (must be of type %s)"
                                  % rd.kind)
        spec = obj.get("spec") or {}
        token = spec.get("token") or ""
        if not isinstance(token, str) or not token:
            raise err_bad_request("token is required for TokenReview in authentication")
        user = self.state.authenticate(token)
        if user is None:
            status = {"user": {}, "error": "invalid bearer token"}
        else:
            status = {"authenticated": True,
                      "user": {k: user[k] for k in ("username", "uid", "groups", "extra")
                               if user.get(k)},
                      "audiences": spec.get("audiences") or ["https://kubernetes.default.svc"]}
        self._send_json(201, {"kind": rd.kind, "apiVersion": rd.gv,
                              "metadata": {"creationTimestamp": None}, "spec": spec,
                              "status": status})

    # ---- watch ---------------------------------------------------------------------

    def _write_chunks(self, lines, mode, size, delay):
        if not lines:
            return
        if mode == "event":
            pieces = lines
        elif mode == "pack":
            pieces = [b"".join(lines)]
        elif mode == "split":
            pieces = [ln[i:i + size] for ln in lines for i in range(0, len(ln), size)]
        else:
            data = b"".join(lines)
            pieces = [data[i:i + size] for i in range(0, len(data), size)]
        for p in pieces:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(p), p))
            if delay:
                self.wfile.flush()
                time.sleep(delay)
        self.wfile.flush()

    def _end_chunks(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _watch(self, rd, ns, query, lreqs, freqs, table):
        st = self.state
        mode, size, delay, gone_mode, gone_reason, default_to = st.watch_settings()
        try:
            timeout = float(query.get("timeoutSeconds") or default_to)
        except ValueError:
            raise err_bad_request("timeoutSeconds must be a number")
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1", "True")
        initial = query.get("sendInitialEvents") == "true"
        include = query.get("includeObject", "Metadata")
        w, objs, gone = st.watch_open(rd, ns, lreqs, freqs, query.get("resourceVersion"),
                                      initial)
        if gone and gone_mode == "http":
            raise ApiError(410, gone_reason, gone)

        def line(etype, obj, ev=None):
            if table and etype in ("ADDED", "MODIFIED", "DELETED"):
                obj = to_table(st, rd, [obj], {"resourceVersion":
                                               obj["metadata"].get("resourceVersion")}, include)
                return (dumps({"type": etype, "object": obj}) + "\n").encode()
            if ev is not None:
                if ev.line is None or not ev.line.startswith(b'{"type":"%s"' % etype.encode()):
                    ev.line = (dumps({"type": etype, "object": obj}) + "\n").encode()
                return ev.line
            return (dumps({"type": etype, "object": obj}) + "\n").encode()

        def bookmark(rv, end_initial=False):
            meta = {"resourceVersion": str(rv)}
            if end_initial:
                meta["annotations"] = {"k8s.io/initial-events-end": "true"}
            return line("BOOKMARK", {"kind": rd.kind, "apiVersion": rd.gv, "metadata": meta})

        def expired(msg):
            return line("ERROR", {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                  "status": "Failure", "message": msg,
                                  "reason": gone_reason, "code": 410})

        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Audit-Id", str(uuid.uuid4()))
        self._answered(200)
        self.end_headers()
        if gone:
            self._write_chunks([expired(gone)], mode, size, delay)
            self._end_chunks()
            return
        w.sock = self.connection
        try:
            lines = [line("ADDED", o) for o in objs]
            if initial and bookmarks:
                lines.append(bookmark(w.pos, end_initial=True))
            self._write_chunks(lines, mode, size, delay)
            deadline = time.monotonic() + timeout
            interval = st.bookmark_interval()
            next_bm = time.monotonic() + interval if bookmarks and interval > 0 else None
            while True:
                kind, payload = st.watch_wait(w, deadline, next_bm)
                if kind == "events":
                    late = st.watch_delay_for(self.path.split("?", 1)[0])
                    if late > 0:
                        time.sleep(late)
                    self._write_chunks([line(t, o, ev) for t, o, ev in payload], mode, size,
                                       delay)
                elif kind == "bookmark":
                    self._write_chunks([bookmark(payload)], mode, size, delay)
                    interval = st.bookmark_interval()
                    next_bm = time.monotonic() + interval if interval > 0 else None
                elif kind == "expired":
                    self._write_chunks([expired(payload)], mode, size, delay)
                    self._end_chunks()
                    return
                elif kind == "cut" and payload == "abort":
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                else:
                    self._end_chunks()
                    return
                if bookmarks and next_bm is None:
                    interval = st.bookmark_interval()
                    if interval > 0:
                        next_bm = time.monotonic() + interval
        except OSError:
            self.close_connection = True
        finally:
            st.watch_close(w)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, state, ssl_ctx=None):
        self.state = state
        self.ssl_ctx = ssl_ctx
        self.conns = set()
        self.conns_lock = threading.Lock()
        super().__init__(addr, Handler)

    def finish_request(self, request, client_address):
        if self.ssl_ctx is None:
            self.RequestHandlerClass(request, client_address, self)
            return
        request.settimeout(30)
        try:
            tls = self.ssl_ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            vlog("TLS handshake from %s failed: %s", client_address, e)
            return
        try:
            tls.settimeout(None)
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            tls.close()

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError,
                            ssl.SSLError, socket.timeout, TimeoutError)):
            vlog("connection from %s ended: %s", client_address, exc)
            return
        log("internal error on connection from %s: %s\n%s", client_address, exc,
            traceback.format_exc())

    def track(self, sock, add):
        with self.conns_lock:
            if add:
                self.conns.add(sock)
            else:
                self.conns.discard(sock)

    def close_all(self):
        with self.conns_lock:
            socks = list(self.conns)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class StandIn:
    """In-process stand-in: StandIn(**config).start(); .url; .control(...); .stop()."""

    def __init__(self, port=0, host="127.0.0.1", tls_cert=None, tls_key=None, tls_port=0,
                 service_hosts=None, token="standin-token", **config):
        self.host = host
        self.req_port = port
        self.tls_cert = tls_cert
        self.tls_key = tls_key
        self.req_tls_port = tls_port
        self.token = token
        self.state = State(service_hosts)
        if config:
            self.state.configure(config)
        self.httpd = None
        self.httpsd = None
        self.threads = []

    def start(self):
        self.httpd = _Server((self.host, self.req_port), self.state)
        servers = [self.httpd]
        if self.tls_cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.tls_cert, self.tls_key)
            ctx.set_alpn_protocols(["http/1.1"])
            self.httpsd = _Server((self.host, self.req_tls_port), self.state, ctx)
            servers.append(self.httpsd)
        for srv in servers:
            t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                                 name="kube-standin-%d" % srv.server_address[1], daemon=True)
            t.start()
            self.threads.append(t)
        return self

    @property
    def port(self):
        return self.httpd.server_address[1]

    @property
    def tls_port(self):
        return self.httpsd.server_address[1] if self.httpsd else None

    @property
    def url(self):
        return "http://%s:%d" % (self.host, self.port)

    @property
    def tls_url(self):
        return "https://%s:%d" % (self.host, self.tls_port) if self.httpsd else None

    def control(self, action, body=None, method="POST", query=None):
        code, payload = control_dispatch(self.state, method, action, body or {}, query or {})
        if code >= 400:
            raise RuntimeError("control %s: %s" % (action, payload))
        return payload

    def kubeconfig(self, tls=False, ca_file=None, token=None, namespace="default"):
        server = self.tls_url if tls else self.url
        cluster = "    server: %s\n" % server
        if tls and ca_file:
            cluster += "    certificate-authority: %s\n" % ca_file
        return ("apiVersion: v1\nkind: Config\nclusters:\n- name: standin\n  cluster:\n"
                + cluster +
                "contexts:\n- name: standin\n  context:\n    cluster: standin\n"
                "    user: standin\n    namespace: %s\ncurrent-context: standin\n"
                "preferences: {}\nusers:\n- name: standin\n  user:\n    token: %s\n"
                % (namespace, token or self.token))

    def write_kubeconfig(self, path, **kw):
        write_atomic(path, self.kubeconfig(**kw))
        return path

    def stop(self):
        self.state.shutdown()
        for srv in (self.httpd, self.httpsd):
            if srv is None:
                continue
            srv.shutdown()
            srv.close_all()
            srv.server_close()
        self.state.admission.close()
        for t in self.threads:
            t.join(5)
        self.threads = []

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def write_atomic(path, text):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def parse_service_hosts(items):
    out = {}
    for item in items:
        for part in item.split(","):
            part = part.strip()
            if not part:
                continue
            k, sep, v = part.partition("=")
            if not sep:
                raise SystemExit("--service-host wants name.ns.svc=host:port, got %r" % part)
            out[k.strip()] = v.strip()
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description="kube-apiserver stand-in for tests")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--kubeconfig-out")
    ap.add_argument("--token", default="standin-token",
                    help="bearer token written into the kubeconfig")
    ap.add_argument("--require-token", action="append",
                    help="accept only this bearer token (repeatable)")
    ap.add_argument("--service-host", action="append", default=[],
                    help="name.ns.svc[:port]=host:port for webhook service references")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--tls-port", type=int, default=0)
    ap.add_argument("--tls-port-file")
    ap.add_argument("--tls-ca", help="CA file written into --tls-kubeconfig-out")
    ap.add_argument("--tls-kubeconfig-out")
    ap.add_argument("--history-size", type=int)
    ap.add_argument("--bookmark-interval", type=float)
    ap.add_argument("--no-auto-namespaces", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    LOG["verbose"] = args.verbose
    LOG["cli"] = True
    hosts = parse_service_hosts([os.environ.get("MILO_STANDIN_SERVICE_HOSTS", "")]
                                + args.service_host)
    config = {}
    if args.history_size:
        config["historySize"] = args.history_size
    if args.bookmark_interval is not None:
        config["bookmarkInterval"] = args.bookmark_interval
    if args.no_auto_namespaces:
        config["autoCreateNamespaces"] = False
    if args.require_token:
        config["requiredTokens"] = args.require_token
    if bool(args.tls_cert) != bool(args.tls_key):
        ap.error("--tls-cert and --tls-key go together")
    s = StandIn(port=args.port, tls_cert=args.tls_cert, tls_key=args.tls_key,
                tls_port=args.tls_port, service_hosts=hosts, token=args.token, **config)
    stop = threading.Event()

    def on_signal(signum, _frame):
        stop.set()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    s.start()
    if args.kubeconfig_out:
        s.write_kubeconfig(args.kubeconfig_out)
    if args.tls_kubeconfig_out and s.tls_port:
        s.write_kubeconfig(args.tls_kubeconfig_out, tls=True, ca_file=args.tls_ca)
    if args.tls_port_file and s.tls_port:
        write_atomic(args.tls_port_file, "%d\n" % s.tls_port)
    if args.port_file:
        write_atomic(args.port_file, "%d\n" % s.port)
    log("listening on %s%s", s.url, (" and " + s.tls_url) if s.tls_url else "")
    while not stop.wait(0.5):
        pass
    log("stopping")
    s.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
