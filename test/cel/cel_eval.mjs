// cel_eval.mjs -- evaluates CEL expressions for the kube stand-in, one JSON
// request per line on stdin, one JSON answer per line on stdout.
//
// The stand-in (test/py/crd_schema.py) starts one of these per Python
// process and sends CustomResourceDefinition x-kubernetes-validations
// rules here, so that the rules are run by a real CEL implementation
// (@bufbuild/cel, pinned in package-lock.json) and not by imitations.
//
//   {"id": 1, "compile": ["self == oldSelf", ...]}
//     -> {"id": 1, "compile": [{"oldSelf": true}, {"error": "<input>:1:5: ..."}]}
//   {"id": 2, "eval": [{"expr": "...", "vars": {"self": V, "oldSelf": V}}]}
//     -> {"id": 2, "eval": [{"type": "bool", "value": true}, {"error": "..."}]}
//   {"id": 3, "yaml": "a: 1\n---\nb: 2\n"} -> {"id": 3, "yaml": [{"a": 1}, {"b": 2}]}
//     (manifests as JSON, for tests that stay with Python's standard library)
//
// Values V are typed JSON, because JSON alone cannot tell CEL's int from its
// double: null, booleans, strings and numbers (doubles) stand for
// themselves, and every array is a tag: ["i", "42"] an int, ["l", [V...]] a
// list, ["m", {"k": V}] a map. A variable left out of vars is not bound.
import { createInterface } from "node:readline";
import { celEnv, isCelError, parse, plan } from "@bufbuild/cel";
import { strings } from "@bufbuild/cel/ext";
import { parseAllDocuments } from "yaml";

// Kubernetes' CEL environment has the strings extension among others;
// rules that use its other libraries (lists, quantity, url, ...) fail to
// compile here and the stand-in says so.
const env = celEnv({ funcs: strings });
const PLAN_CACHE_MAX = 4096;
const plans = new Map();

function compile(expr) {
  let p = plans.get(expr);
  if (p === undefined) {
    const ast = parse(expr);      // throws on a syntax error
    p = { run: plan(env, ast), oldSelf: mentions(ast, "oldSelf") };
    if (plans.size >= PLAN_CACHE_MAX) plans.clear();
    plans.set(expr, p);
  }
  return p;
}

// Whether the parsed expression names the identifier anywhere (what makes
// a Kubernetes rule a transition rule).
function mentions(node, name) {
  if (node === null || typeof node !== "object") return false;
  if (node.case === "identExpr" && node.value && node.value.name === name) return true;
  for (const k of Object.keys(node)) {
    const v = node[k];
    if (typeof v === "object" && v !== null && mentions(v, name)) return true;
  }
  return false;
}

function decode(v) {
  if (!Array.isArray(v)) return v;
  switch (v[0]) {
    case "i": return BigInt(v[1]);
    case "l": return v[1].map(decode);
    case "m": {
      const m = new Map();
      for (const [k, x] of Object.entries(v[1])) m.set(k, decode(x));
      return m;
    }
    default: throw new Error("unknown value tag " + JSON.stringify(v[0]));
  }
}

function answer(r) {
  if (isCelError(r)) return { error: r.message };
  switch (typeof r) {
    case "boolean": return { type: "bool", value: r };
    case "string": return { type: "string", value: r };
    case "bigint": return { type: "int", value: r.toString() };
    case "number": return { type: "double", value: r };
    default: return { type: r === null ? "null_type" : "other" };
  }
}

function handle(req) {
  const out = { id: req.id };
  if (Array.isArray(req.compile)) {
    out.compile = req.compile.map((expr) => {
      try {
        return { oldSelf: compile(expr).oldSelf };
      } catch (e) {
        return { error: String(e.message || e) };
      }
    });
  }
  if (Array.isArray(req.eval)) {
    out.eval = req.eval.map((item) => {
      try {
        const vars = {};
        for (const [k, v] of Object.entries(item.vars || {})) vars[k] = decode(v);
        return answer(compile(item.expr).run(vars));
      } catch (e) {
        return { error: String(e.message || e) };
      }
    });
  }
  if (typeof req.yaml === "string") {
    out.yaml = [];
    for (const doc of parseAllDocuments(req.yaml)) {
      if (doc.errors.length) throw new Error(doc.errors[0].message);
      const v = doc.toJSON();
      if (v !== null) out.yaml.push(v);
    }
  }
  return out;
}

const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
rl.on("line", (line) => {
  let req = null;
  let out;
  try {
    req = JSON.parse(line);
    out = handle(req);
  } catch (e) {
    out = { id: req && req.id, error: String(e.message || e) };
  }
  process.stdout.write(JSON.stringify(out) + "\n");
});
rl.on("close", () => process.exit(0));
