"""crd_schema.py -- what kube-apiserver does with a CustomResourceDefinition.

kube_standin.py serves a custom resource with the schema of the CRD stored
in it, as kube-apiserver's apiextensions server does:

* decoding: unknown fields are pruned (kube's structural pruning; their
  paths come back for fieldValidation Warn/Strict), non-nullable nulls
  without a default are dropped, and `default`s are filled in; the same
  again on what mutating webhooks return;
* validation (customResourceStrategy.Validate): the OpenAPI v3 value
  validations in kube-openapi's order and words (type, string lengths and
  pattern, format date-time, numbers, arrays, enum, object properties then
  required), x-kubernetes-list-type map/set uniqueness, then -- unless a
  "blocking" error (required, unsupported value, too long, too many, wrong
  type) was found, which adds kube's "some validation rules were not
  checked" error instead -- the x-kubernetes-validations CEL rules, run by
  a real CEL implementation (test/cel/cel_eval.mjs, @bufbuild/cel) with
  `self`, and `oldSelf` for transition rules on updates of a correlatable
  value (property paths, list-type map items by key). Updates ratchet as
  CRDValidationRatcheting does: errors of a value equal to its old value
  are dropped (CEL ones become warnings);
* selectableFields: the field set a field selector may name.

Errors are (type, field, value, detail) tuples in apimachinery's terms;
kube_standin.py renders them. The value OMIT shows no value.

Known differences from kube-apiserver: sibling properties are checked in
name order (kube-openapi iterates a Go map: any order), rule compile errors
and runtime errors carry @bufbuild/cel's words (cel-go's differ: "no such
key" is "field not found"), no CEL cost budget, no type-checking of rules
at CRD creation (only parsing), Kubernetes' CEL libraries other than the
strings extension (lists, regex extras, url, quantity, optional types) are
missing, formats other than date-time are not checked, allOf/anyOf/oneOf/
not are ignored, and metadata at the root is not coerced beyond what
kube_standin.py validates.
"""

import copy
import json
import os
import re
import subprocess
import tempfile
import threading
import unicodedata

OMIT = object()         # apimachinery's OmitValueType: no value shown
MISSING = object()      # no correlated old value (create, or not correlatable)

HERE = os.path.dirname(os.path.abspath(__file__))
CEL_DIR = os.path.normpath(os.path.join(HERE, "..", "cel"))
CEL_SCRIPT = os.path.join(CEL_DIR, "cel_eval.mjs")

BLOCKING = ("FieldValueNotSupported", "FieldValueRequired", "FieldValueTooLong",
            "FieldValueTooMany", "FieldValueTypeInvalid")
BLOCKED_DETAIL = ("some validation rules were not checked because the object was "
                  "invalid; correct the existing errors to complete validation")
DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


class CelUnavailable(Exception):
    """The CEL helper could not be started or died."""


# --------------------------------------------------------------------------
# The CRD
# --------------------------------------------------------------------------

class CRDSchema:
    """One served version of a stored CRD: schema, rules, selectable fields."""

    def __init__(self, crd, version):
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        self.group = spec.get("group", "")
        self.kind = names.get("kind", "")
        self.namespaced = spec.get("scope", "Namespaced") == "Namespaced"
        self.version = version.get("name", "")
        self.schema = ((version.get("schema") or {}).get("openAPIV3Schema")) or None
        self.has_status = "status" in (version.get("subresources") or {})
        self.selectable = [sf.get("jsonPath", "").lstrip(".")
                           for sf in version.get("selectableFields") or []
                           if isinstance(sf, dict)]
        self.rules = list(iter_rules(self.schema)) if self.schema else []

    def field_labels(self):
        """Every label a field selector may name, in kube's words."""
        labels = ["metadata.name"]
        if self.namespaced:
            labels.append("metadata.namespace")
        return labels + self.selectable

    def field_set(self, obj):
        """kube's GetAttrs field set: metadata plus each selectable field
        as fmt.Sprint of its value ("" when absent)."""
        meta = obj.get("metadata") or {}
        out = {"metadata.name": meta.get("name") or ""}
        if self.namespaced:
            out["metadata.namespace"] = meta.get("namespace") or ""
        for name in self.selectable:
            v = obj
            for part in name.split("."):
                v = v.get(part) if isinstance(v, dict) else None
            out[name] = go_sprint(v)
        return out


def iter_rules(schema, path=()):
    """(schema path tuple, index, rule) for every x-kubernetes-validations rule."""
    if not isinstance(schema, dict):
        return
    for i, rule in enumerate(schema.get("x-kubernetes-validations") or []):
        yield path, i, rule
    for k, sub in sorted((schema.get("properties") or {}).items()):
        yield from iter_rules(sub, path + ("properties", k))
    if isinstance(schema.get("additionalProperties"), dict):
        yield from iter_rules(schema["additionalProperties"], path + ("additionalProperties",))
    if isinstance(schema.get("items"), dict):
        yield from iter_rules(schema["items"], path + ("items",))


def rule_path_text(path, i):
    """kube's path of a rule inside openAPIV3Schema, e.g. properties[spec].x-kubernetes-validations[0]."""
    out = []
    it = iter(path)
    for p in it:
        if p == "properties":
            out.append("properties[%s]" % next(it))
        else:
            out.append(p)
    out.append("x-kubernetes-validations[%d]" % i)
    return ".".join(out)


def go_sprint(v):
    """fmt.Sprint of a JSON value, as kube renders a selectable field."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return go_float(v)
    if isinstance(v, (dict, list)):
        return json.dumps(v)    # not selectable in kube (scalars only); never matches
    return str(v)


def go_float(f):
    """Go's %v of a float64 (strconv 'g', shortest)."""
    if f != f or f in (float("inf"), float("-inf")):
        return {"nan": "NaN"}.get(str(f), "+Inf" if f > 0 else "-Inf")
    r = repr(float(f))
    mant, _, exp = r.partition("e")
    sign = "-" if mant.startswith("-") else ""
    mant = mant.lstrip("-")
    ip, _, fp = mant.partition(".")
    digits = (ip + fp).lstrip("0")
    lead = len(ip + fp) - len((ip + fp).lstrip("0"))
    dp = len(ip) + (int(exp) if exp else 0) - lead
    digits = digits.rstrip("0") or "0"
    if digits == "0":
        return sign + "0"
    x = dp - 1
    eprec = 6
    if eprec > len(digits) and len(digits) >= dp:
        eprec = len(digits)
    if x < -4 or x >= eprec:
        m = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return "%s%se%s%02d" % (sign, m, "-" if x < 0 else "+", abs(x))
    if dp <= 0:
        return sign + "0." + "0" * (-dp) + digits
    if dp >= len(digits):
        return sign + digits + "0" * (dp - len(digits))
    return sign + digits[:dp] + "." + digits[dp:]


# --------------------------------------------------------------------------
# Decoding: pruning, nulls, defaults
# --------------------------------------------------------------------------

def _child(path, key):
    return key if not path else path + "." + key


def prune(obj, schema, path="", unknown=None, root=True):
    """Drops fields the schema does not declare (in place); returns their paths."""
    unknown = [] if unknown is None else unknown
    if not isinstance(schema, dict):
        return unknown
    if isinstance(obj, dict):
        props = schema.get("properties") or {}
        addl = schema.get("additionalProperties")
        keep = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        meta_root = root or schema.get("x-kubernetes-embedded-resource")
        for k in list(obj):
            if meta_root and k in ("apiVersion", "kind", "metadata"):
                continue
            if k in props:
                prune(obj[k], props[k], _child(path, k), unknown, False)
            elif isinstance(addl, dict):
                prune(obj[k], addl, _child(path, k), unknown, False)
            elif addl is True or keep:
                continue
            else:
                del obj[k]
                unknown.append(_child(path, k))
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(obj):
            prune(v, schema["items"], "%s[%d]" % (path, i), unknown, False)
    return unknown


def _sub_schema(schema, key):
    props = schema.get("properties") or {}
    if key in props:
        return props[key]
    addl = schema.get("additionalProperties")
    return addl if isinstance(addl, dict) else None


def default(obj, schema, root=True):
    """Structural defaulting, after dropping non-nullable nulls without a default."""
    if not isinstance(schema, dict):
        return
    if isinstance(obj, dict):
        for k, p in (schema.get("properties") or {}).items():
            if "default" in p and (k not in obj or (obj[k] is None and not p.get("nullable"))):
                obj[k] = copy.deepcopy(p["default"])
        for k in list(obj):
            if root and k == "metadata":
                continue
            sub = _sub_schema(schema, k)
            if sub is None:
                continue
            if obj[k] is None and not sub.get("nullable"):
                if "default" in sub:
                    obj[k] = copy.deepcopy(sub["default"])
                else:
                    del obj[k]
                    continue
            default(obj[k], sub, False)
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        items = schema["items"]
        keep = []
        for v in obj:
            if v is None and not items.get("nullable"):
                if "default" in items:
                    keep.append(copy.deepcopy(items["default"]))
                continue        # kube drops such items too
            default(v, items, False)
            keep.append(v)
        obj[:] = keep


# --------------------------------------------------------------------------
# OpenAPI value validation (kube-openapi's SchemaValidator)
# --------------------------------------------------------------------------

def json_type(v):
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return "null"


def _types(schema):
    if schema.get("x-kubernetes-int-or-string"):
        return ["integer", "string"]
    t = schema.get("type")
    if not t:
        return []
    return t if isinstance(t, list) else [t]


def json_equal(a, b):
    """Equality with JSON types: true is not 1, 1 is 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    return a == b


def _list_old(schema, v, old, i):
    """The correlated old item of list item v (MISSING when not correlatable)."""
    if not isinstance(old, list):
        return MISSING
    lt = schema.get("x-kubernetes-list-type")
    if lt == "map" and isinstance(v, dict):
        keys = schema.get("x-kubernetes-list-map-keys") or []
        for o in old:
            if isinstance(o, dict) and all(json_equal(o.get(k), v.get(k)) for k in keys):
                return o
        return MISSING
    if lt == "set":
        return next((o for o in old if json_equal(o, v)), MISSING)
    return MISSING


def validate_value(v, schema, path="", old=MISSING):
    """Errors of v against schema, in kube-openapi's order. With old (the
    correlated old value) errors of an unchanged value are ratcheted away."""
    out = []
    _validate(v, schema, path, old, out)
    return out


def _name(path):
    return path


def _validate(v, s, path, old, out):
    if not isinstance(s, dict):
        return
    if old is not MISSING and json_equal(v, old):
        return          # CRDValidationRatcheting: an unchanged value keeps its errors
    types = _types(s)
    if v is None:
        if types and "null" not in types and not s.get("nullable"):
            out.append(("FieldValueTypeInvalid", path, "null",
                        '%s in body must be of type %s: "null"' % (_name(path), ",".join(types))))
        _enum(v, s, path, out)
        return
    jt = json_type(v)
    if types and not (jt in types or (jt == "number" and "integer" in types and v == int(v))
                      or (jt == "integer" and "number" in types)):
        out.append(("FieldValueTypeInvalid", path, jt,
                    '%s in body must be of type %s: "%s"' % (_name(path), ",".join(types), jt)))
    if jt == "string":
        _string(v, s, path, out)
        if s.get("format") in ("date-time", "datetime") and not DATE_TIME.match(v):
            out.append(("FieldValueTypeInvalid", path, v,
                        "%s in body must be of type %s: %s" % (_name(path), s["format"],
                                                               _go_q(v))))
    elif jt in ("integer", "number"):
        _number(v, s, path, out)
    elif jt == "array":
        _array(v, s, path, old, out)
    _enum(v, s, path, out)
    if jt == "object":
        _object(v, s, path, old, out)


_GO_ESC = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
           "\t": "\\t", "\v": "\\v", '"': '\\"', "\\": "\\\\"}


def go_quote(s):
    """Go's strconv.Quote (%q): C escapes, \\xNN for other ASCII controls,
    \\uNNNN for runes unicode.IsPrint rejects."""
    out = ['"']
    for ch in s:
        if ch in _GO_ESC:
            out.append(_GO_ESC[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append("\\x%02x" % ord(ch))
        elif ch != " " and unicodedata.category(ch)[0] in "CZ":
            out.append("\\u%04x" % ord(ch) if ord(ch) <= 0xFFFF else "\\U%08x" % ord(ch))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


_go_q = go_quote


def _string(v, s, path, out):
    n = len(v)          # runes, as utf8.RuneCount
    if "maxLength" in s and n > s["maxLength"]:
        out.append(("FieldValueTooLong", path, OMIT,
                    "may not be more than %d %s" % (s["maxLength"],
                                                     "byte" if s["maxLength"] == 1 else "bytes")))
        return
    if "minLength" in s and n < s["minLength"]:
        out.append(("FieldValueInvalid", path, v, "%s in body should be at least %d chars long"
                    % (_name(path), s["minLength"])))
        return
    if s.get("pattern"):
        try:
            ok = re.search(s["pattern"], v) is not None
        except re.error as e:
            out.append(("FieldValueInvalid", path, v, "%s in body should match '%s, but pattern "
                        "is invalid: %s'" % (_name(path), s["pattern"], e)))
            return
        if not ok:
            out.append(("FieldValueInvalid", path, v, "%s in body should match '%s'"
                        % (_name(path), s["pattern"])))


def _num_text(x, like):
    return str(int(x)) if isinstance(like, int) and not isinstance(like, bool) else go_float(float(x))


def _number(v, s, path, out):
    if "multipleOf" in s and s["multipleOf"]:
        q = v / s["multipleOf"]
        if q != int(q):
            out.append(("FieldValueInvalid", path, v, "%s in body should be a multiple of %s"
                        % (_name(path), go_float(float(s["multipleOf"])))))
    if "minimum" in s:
        m, ex = s["minimum"], bool(s.get("exclusiveMinimum"))
        if (v <= m) if ex else (v < m):
            out.append(("FieldValueInvalid", path, v, "%s in body should be greater than %s%s"
                        % (_name(path), "" if ex else "or equal to ", _num_text(m, v))))
    if "maximum" in s:
        m, ex = s["maximum"], bool(s.get("exclusiveMaximum"))
        if (v >= m) if ex else (v > m):
            out.append(("FieldValueInvalid", path, v, "%s in body should be less than %s%s"
                        % (_name(path), "" if ex else "or equal to ", _num_text(m, v))))


def _array(v, s, path, old, out):
    items = s.get("items")
    if isinstance(items, dict):
        for i, x in enumerate(v):
            _validate(x, items, "%s[%d]" % (path, i), _list_old(s, x, old, i), out)
    if "minItems" in s and len(v) < s["minItems"]:
        out.append(("FieldValueInvalid", path, len(v), "%s in body should have at least %d items"
                    % (_name(path), s["minItems"])))
    if "maxItems" in s and len(v) > s["maxItems"]:
        n = s["maxItems"]
        out.append(("FieldValueTooMany", path, len(v),
                    "must have at most %d %s" % (n, "item" if n == 1 else "items")))
    if s.get("uniqueItems"):
        seen = []
        for x in v:
            if any(json_equal(x, y) for y in seen):
                out.append(("FieldValueInvalid", path, "", "%s in body shouldn't contain "
                            "duplicates" % _name(path)))
                break
            seen.append(x)


def _enum(v, s, path, out):
    enum = s.get("enum")
    if not enum or any(json_equal(v, e) for e in enum):
        return
    values = [e if isinstance(e, str) else json.dumps(e, separators=(",", ":"))
              for e in enum]
    out.append(("FieldValueNotSupported", path, v,
                "supported values: " + ", ".join(_go_q(x) for x in values)))


def _object(v, s, path, old, out):
    n = len(v)
    if "minProperties" in s and n < s["minProperties"]:
        out.append(("FieldValueInvalid", path, n, "%s in body should have at least %d "
                    "properties" % (_name(path), s["minProperties"])))
        return
    if "maxProperties" in s and n > s["maxProperties"]:
        m = s["maxProperties"]
        out.append(("FieldValueTooMany", path, n,
                    "must have at most %d %s" % (m, "item" if m == 1 else "items")))
        return
    props = s.get("properties") or {}
    addl = s.get("additionalProperties")
    oldd = old if isinstance(old, dict) else None
    if isinstance(addl, dict):
        for k in sorted(v):
            if k not in props:
                _validate(v[k], addl, _child(path, k),
                          oldd.get(k, MISSING) if oldd is not None else MISSING, out)
    for k in sorted(props):
        if k in v:
            if not path and k == "metadata":
                continue        # ObjectMeta is validated by kube_standin.py
            _validate(v[k], props[k], _child(path, k),
                      oldd.get(k, MISSING) if oldd is not None else MISSING, out)
    for k in s.get("required") or []:
        if k not in v:
            out.append(("FieldValueRequired", _child(path, k), OMIT, ""))


def validate_lists(v, s, path="", old=MISSING):
    """x-kubernetes-list-type map and set: duplicate keys / items."""
    out = []
    _lists(v, s, path, out)
    if out and old is not MISSING:
        prev = []
        _lists(old, s, path, prev)
        if prev:
            return []       # kube ratchets these only all together
    return out


def _lists(v, s, path, out):
    if not isinstance(s, dict):
        return
    if isinstance(v, dict):
        for k in sorted(v):
            sub = _sub_schema(s, k)
            if sub is not None and not (not path and k == "metadata"):
                _lists(v[k], sub, _child(path, k), out)
    elif isinstance(v, list):
        lt = s.get("x-kubernetes-list-type")
        if lt == "set":
            for i in _non_unique(v):
                out.append(("FieldValueDuplicate", "%s[%d]" % (path, i), v[i], ""))
        elif lt == "map":
            keys = s.get("x-kubernetes-list-map-keys") or []
            bad = next((i for i, x in enumerate(v) if x is not None and not isinstance(x, dict)),
                       None)
            if bad is not None:
                out.append(("FieldValueInvalid", "%s[%d]" % (path, bad), v[bad],
                            "must be an object for an array of list-type map"))
            else:
                ks = [{k: x[k] for k in keys if k in x} if isinstance(x, dict) else {}
                      for x in v]
                for i in _non_unique(ks):
                    out.append(("FieldValueDuplicate", "%s[%d]" % (path, i), ks[i], ""))
        if isinstance(s.get("items"), dict):
            for i, x in enumerate(v):
                _lists(x, s["items"], "%s[%d]" % (path, i), out)


def _non_unique(items):
    seen, counted, out = [], [], []
    for i, x in enumerate(items):
        j = next((n for n, y in enumerate(seen) if json_equal(x, y)), None)
        if j is None:
            seen.append(x)
            counted.append(1)
        else:
            counted[j] += 1
            if counted[j] == 2:
                out.append(i)
    return out


# --------------------------------------------------------------------------
# CEL
# --------------------------------------------------------------------------

def cel_value(v, schema, root=False):
    """A JSON value as the helper's typed JSON (ints of integer fields as ints)."""
    if v is None or isinstance(v, (bool, str)):
        return v
    s = schema if isinstance(schema, dict) else {}
    if isinstance(v, (int, float)):
        if "integer" in _types(s) or (not _types(s) and isinstance(v, int)):
            return ["i", str(int(v))]
        return float(v)
    if isinstance(v, list):
        return ["l", [cel_value(x, s.get("items")) for x in v]]
    out = {}
    for k, x in v.items():
        if root and k == "metadata":
            # Rules at a resource root see only metadata.name and generateName.
            x = {m: x[m] for m in ("name", "generateName")
                 if isinstance(x, dict) and m in x}
        out[k] = cel_value(x, _sub_schema(s, k) if s else None)
    return ["m", out]


class CelHelper:
    """The long-lived `node test/cel/cel_eval.mjs`, one per Python process."""

    _lock = threading.Lock()
    _proc = None
    _err = None         # the helper's stderr, a temporary file
    _seq = 0
    _compiled = {}      # rule text -> the helper's compile answer

    @classmethod
    def call(cls, req):
        node = os.environ.get("MILO_NODE", "node")
        with cls._lock:
            for attempt in (0, 1):
                if cls._proc is None or cls._proc.poll() is not None:
                    if not os.path.isdir(os.path.join(CEL_DIR, "node_modules")):
                        raise CelUnavailable("%s/node_modules is missing: run `make deps` "
                                             "(npm ci in test/cel)" % CEL_DIR)
                    try:
                        cls._err = tempfile.TemporaryFile()
                        cls._proc = subprocess.Popen(
                            [node, CEL_SCRIPT], cwd=CEL_DIR, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=cls._err, text=True,
                            bufsize=1)
                    except OSError as e:
                        raise CelUnavailable("cannot start %s: %s (run `make deps`)" % (node, e))
                cls._seq += 1
                req = dict(req, id=cls._seq)
                try:
                    cls._proc.stdin.write(json.dumps(req, separators=(",", ":")) + "\n")
                    cls._proc.stdin.flush()
                    line = cls._proc.stdout.readline()
                except (OSError, ValueError):
                    line = ""
                if line:
                    resp = json.loads(line)
                    if resp.get("id") != req["id"]:
                        raise CelUnavailable("CEL helper answered out of turn: %s" % line[:200])
                    return resp
                err = ""
                try:
                    cls._proc.kill()
                    cls._proc.wait(5)
                    cls._err.seek(0)
                    err = cls._err.read()[-2000:].decode("utf-8", "replace")
                except (OSError, ValueError, subprocess.TimeoutExpired):
                    pass
                cls._proc = None
                if attempt:
                    raise CelUnavailable("CEL helper died: %s" % err.strip())
        raise CelUnavailable("unreachable")

    @classmethod
    def compile(cls, exprs):
        exprs = list(exprs)
        todo = sorted({e for e in exprs if e not in cls._compiled})
        if todo:
            for e, res in zip(todo, cls.call({"compile": todo})["compile"]):
                cls._compiled[e] = res
        return [cls._compiled[e] for e in exprs]

    @classmethod
    def yaml(cls, text):
        """YAML documents as JSON values (the npm yaml package)."""
        resp = cls.call({"yaml": text})
        if "error" in resp:
            raise ValueError(resp["error"])
        return resp["yaml"]

    @classmethod
    def evaluate(cls, items):
        if not items:
            return []
        return cls.call({"eval": items})["eval"]


def _walk_rule_targets(v, s, path, old, targets, ratchet_parent_equal):
    """Collects (schema, value, old, path, unchanged) for nodes that carry rules,
    in kube's order: the node's rules, then its children (map keys sorted)."""
    if not isinstance(s, dict) or v is None:
        return
    unchanged = (old is not MISSING and json_equal(v, old)) if old is not MISSING \
        else ratchet_parent_equal
    if s.get("x-kubernetes-validations"):
        targets.append((s, v, old, path, unchanged))
    if isinstance(v, dict):
        props = s.get("properties") or {}
        addl = s.get("additionalProperties")
        oldd = old if isinstance(old, dict) else None
        correlatable_map = s.get("x-kubernetes-map-type") != "atomic"
        for k in sorted(v):
            sub = props.get(k) if k in props else (addl if isinstance(addl, dict) else None)
            if sub is None:
                continue
            o = oldd.get(k, MISSING) if (oldd is not None and
                                         (k in props or correlatable_map)) else MISSING
            _walk_rule_targets(v[k], sub, _child(path, k), o, targets, unchanged)
    elif isinstance(v, list) and isinstance(s.get("items"), dict):
        for i, x in enumerate(v):
            o = _list_old(s, x, old, i) if s.get("x-kubernetes-list-type") == "map" else MISSING
            _walk_rule_targets(x, s["items"], "%s[%d]" % (path, i), o, targets, unchanged)


def validate_rules(obj, schema, old=MISSING, trace=None):
    """Runs the CEL rules. Returns (errors, warnings). trace, a list, gets
    (object path, rule text, True | False | "error") for each rule run."""
    targets = []
    _walk_rule_targets(obj, schema, "", old, targets, False)
    if not targets:
        return [], []
    compiled = CelHelper.compile(r.get("rule", "") for s, *_ in targets
                                 for r in s["x-kubernetes-validations"])
    evals, plan = [], []
    n = 0
    for s, v, o, path, unchanged in targets:
        root = s is schema
        self_v = cel_value(v, s, root)
        old_v = cel_value(o, s, root) if o is not MISSING else MISSING
        for rule in s["x-kubernetes-validations"]:
            c = compiled[n]
            n += 1
            if "error" in c:
                plan.append((rule, path, s, v, unchanged, None, c))
                continue
            if c["oldSelf"] and old_v is MISSING and not rule.get("optionalOldSelf"):
                continue        # transition rules need a correlated old value
            vars_ = {"self": self_v}
            if c["oldSelf"] or rule.get("optionalOldSelf"):
                vars_["oldSelf"] = old_v if old_v is not MISSING else None
            plan.append((rule, path, s, v, unchanged and not c["oldSelf"], len(evals), c))
            evals.append({"expr": rule.get("rule", ""), "vars": vars_,
                          "msg": rule.get("messageExpression")})
    results = CelHelper.evaluate([{"expr": e["expr"], "vars": e["vars"]} for e in evals])
    failed = [(p, results[p[5]]) for p in plan if p[5] is not None]
    msg_items, msg_for = [], {}
    for p, res in failed:
        e = evals[p[5]]
        if "error" not in res and res.get("value") is not True and e["msg"]:
            msg_for[p[5]] = len(msg_items)
            msg_items.append({"expr": e["msg"], "vars": e["vars"]})
    msgs = CelHelper.evaluate(msg_items)
    errs, warns = [], []
    for rule, path, s, v, ratchet, idx, c in plan:
        text = rule.get("rule", "").strip()
        label = (rule.get("message") or "").strip() or text
        stype = s.get("type", "")
        if idx is None:
            errs.append(("FieldValueInvalid", path, stype, "rule compile error: %s" % c["error"]))
            continue
        res = results[idx]
        if trace is not None:
            trace.append((path, text, "error" if "error" in res else res.get("value") is True))
        if "error" in res:
            errs.append(("FieldValueInvalid", path, stype,
                         "%s evaluating rule: %s" % (res["error"], label)))
            continue
        if res.get("type") != "bool":
            errs.append(("FieldValueInvalid", path, stype,
                         "rule did not evaluate to a bool (%s) evaluating rule: %s"
                         % (res.get("type"), label)))
            continue
        if res["value"] is True:
            continue
        fpath = path
        if rule.get("fieldPath"):
            fpath = _child(path, rule["fieldPath"].lstrip("."))
        detail = None
        if idx in msg_for:
            m = msgs[msg_for[idx]]
            if m.get("type") == "string" and m["value"].strip() and "\n" not in m["value"]:
                detail = m["value"].strip()
        if detail is None:
            detail = (rule.get("message") or "").strip() or "failed rule: %s" % text
        value = OMIT if stype in ("object", "array") else v
        reason = rule.get("reason")
        if reason == "FieldValueForbidden":
            e = ("FieldValueForbidden", fpath, OMIT, detail)
        elif reason == "FieldValueRequired":
            e = ("FieldValueRequired", fpath, OMIT, detail)
        elif reason == "FieldValueDuplicate":
            e = ("FieldValueDuplicate", fpath, value, "")
        else:
            e = ("FieldValueInvalid", fpath, value, detail)
        (warns if ratchet else errs).append(e)
    return errs, warns


def validate_object(cs, obj, old=None, status_only=False, trace=None):
    """kube's customResourceStrategy.Validate/ValidateUpdate for the schema
    part (ObjectMeta is kube_standin.py's). Returns (errors, warnings)."""
    s = cs.schema
    if not s:
        return [], []
    o = MISSING if old is None else old
    if status_only:
        sub = (s.get("properties") or {}).get("status")
        errs = []
        if sub is not None and "status" in obj:
            errs = [(t, _child("status", f) if f else "status", v, d)
                    for t, f, v, d in validate_value(
                        obj["status"], sub, "",
                        o.get("status", MISSING) if isinstance(o, dict) else MISSING)]
    else:
        errs = validate_value(obj, s, "", o)
    errs += validate_lists(obj, s, "", o)
    warns = []
    if cs.rules:
        if any(e[0] in BLOCKING for e in errs):
            errs.append(("FieldValueInvalid", "<nil>", None, BLOCKED_DETAIL))
        else:
            cerrs, warns = validate_rules(obj, s, o, trace)
            errs += cerrs
    return errs, warns
