// Validates Kubernetes manifests (multi-document YAML, as kustomize renders them):
//  - built-in kinds with kubernetes-models (its classes' validate(): types, required fields,
//    enums, formats of the Kubernetes OpenAPI schemas), and unknown fields refused as the API
//    server's strict field validation (kubectl's default) refuses them: the object is handed to
//    the same compiled validator through a Proxy that records which property names it looks up;
//    an object's key the schema never looked up is not in the schema (maps, whose keys the
//    validator enumerates, are exempt). Then three rules of the API server's own validation
//    that the OpenAPI schema does not express: every container has an image, container names
//    are unique in a pod, every volumeMount names a volume of the pod.
//  - custom resources with ajv against the openAPIV3Schema of their CRD (--crds DIR holds the
//    CRD YAML files), unknown fields refused where the schema does not preserve them, metadata
//    as ObjectMeta (kubernetes-models). CEL rules (x-kubernetes-validations) are not evaluated.
//
// node validate.mjs --modules NODE_MODULES --crds DIR validate FILE...
//   one line per document ("ok FILE Kind/name" or "invalid FILE Kind/name: why"); exit 1 when
//   any document is invalid, 2 on a usage or input error.
// node validate.mjs --modules NODE_MODULES consistency --base F --sidecar F --kmm F --nfd F --containerfile F
//   the deployment's own promises across files (see checkConsistency); exit 1 when one fails.
import { createRequire } from "node:module";
import { readFileSync, readdirSync, existsSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

function usage(msg) {
  process.stderr.write(`validate.mjs: ${msg}\n`);
  process.exit(2);
}

const argv = process.argv.slice(2);
const opts = {};
const takeOptions = () => {
  while (argv.length && argv[0].startsWith("--")) {
    const k = argv.shift().slice(2);
    if (!argv.length) usage(`--${k} needs a value`);
    opts[k] = argv.shift();
  }
};
takeOptions();
const command = argv.shift();
takeOptions(); // options may follow the command too (consistency --base F ...)
if (!opts.modules || !existsSync(join(opts.modules, "kubernetes-models"))) usage("--modules must name a node_modules with kubernetes-models");
const require = createRequire(join(opts.modules, "noop.js"));
const YAML = require("yaml");
const Ajv = require("ajv");
const addFormats = require("ajv-formats");

function readDocs(file) {
  const docs = YAML.parseAllDocuments(readFileSync(file, "utf8"), { uniqueKeys: true });
  const out = [];
  for (const d of docs) {
    if (d.errors.length) throw new Error(`${file}: YAML: ${d.errors.map((e) => e.message).join("; ")}`);
    const js = d.toJS();
    if (js !== null && js !== undefined) out.push(js);
  }
  return out;
}

// --- built-in kinds -------------------------------------------------------------------------
// apiVersion "v1" -> kubernetes-models/v1/<Kind>.js; "apps/v1" -> kubernetes-models/apps/v1/<Kind>.js
async function builtinModel(apiVersion, kind) {
  if (typeof apiVersion !== "string" || typeof kind !== "string" || !/^[A-Za-z0-9]+$/.test(kind)) return null;
  const parts = apiVersion.split("/");
  if (parts.length > 2 || parts.some((p) => !/^[a-z0-9.-]+$/.test(p))) return null;
  const file = join(opts.modules, "kubernetes-models", ...parts, `${kind}.js`);
  if (!existsSync(file)) return null;
  const mod = await import(pathToFileURL(file).href);
  return mod[kind] ?? null;
}

// Runs the model's compiled validator on a copy of obj seen through Proxies, and returns
// [schemaError or null, unknown field paths].
function strictValidate(Model, obj) {
  const plain = JSON.parse(JSON.stringify(obj));
  const looked = new WeakMap(); // object -> Set of property names the validator read or tested
  const enumerated = new WeakSet(); // objects whose keys the validator listed (maps)
  const proxies = new WeakMap();
  const note = (t, k) => {
    if (typeof k !== "string") return;
    if (!looked.has(t)) looked.set(t, new Set());
    looked.get(t).add(k);
  };
  const wrap = (v) => {
    if (v === null || typeof v !== "object") return v;
    if (proxies.has(v)) return proxies.get(v);
    const p = new Proxy(v, {
      get(t, k, r) { note(t, k); return wrap(Reflect.get(t, k, r)); },
      has(t, k) { note(t, k); return Reflect.has(t, k); },
      ownKeys(t) { enumerated.add(t); return Reflect.ownKeys(t); },
      getOwnPropertyDescriptor(t, k) { note(t, k); return Reflect.getOwnPropertyDescriptor(t, k); },
    });
    proxies.set(v, p);
    return p;
  };
  let schemaError = null;
  try {
    Model.prototype.validate.call(wrap(plain));
  } catch (e) {
    schemaError = e.message;
  }
  const unknown = [];
  const walk = (v, path) => {
    if (Array.isArray(v)) return v.forEach((x, i) => walk(x, `${path}/${i}`));
    if (v === null || typeof v !== "object") return;
    for (const k of Object.keys(v)) {
      if (!enumerated.has(v) && !looked.get(v)?.has(k)) unknown.push(`${path}/${k}`);
      else walk(v[k], `${path}/${k}`);
    }
  };
  // The top level: apiVersion and kind are the model's own, status is the server's.
  for (const k of Object.keys(plain)) {
    if (k === "apiVersion" || k === "kind") continue;
    if (!looked.get(plain)?.has(k)) unknown.push(`/${k}`);
    else walk(plain[k], `/${k}`);
  }
  return [schemaError, unknown];
}

function podSpecOf(obj) {
  if (obj.kind === "Pod") return obj.spec;
  return obj.spec?.template?.spec ?? obj.spec?.jobTemplate?.spec?.template?.spec ?? null;
}

// Rules of the API server's validation (k8s.io/kubernetes pkg/apis/core/validation) that the
// OpenAPI schema does not carry.
function podRules(obj) {
  const spec = podSpecOf(obj);
  if (!spec) return [];
  const errs = [];
  const volumes = new Set((spec.volumes ?? []).map((v) => v.name));
  const names = new Set();
  for (const [field, list] of [["initContainers", spec.initContainers], ["containers", spec.containers]]) {
    (list ?? []).forEach((c, i) => {
      const at = `spec.template.spec.${field}[${i}]`;
      if (typeof c.image !== "string" || c.image.trim() === "") errs.push(`${at} (${c.name}): image: Required value`);
      if (names.has(c.name)) errs.push(`${at}: name: Duplicate value "${c.name}"`);
      names.add(c.name);
      (c.volumeMounts ?? []).forEach((m, j) => {
        if (!volumes.has(m.name)) errs.push(`${at}.volumeMounts[${j}].name: Not found: "${m.name}"`);
      });
    });
  }
  return errs;
}

// --- custom resources -----------------------------------------------------------------------
const ajv = new Ajv({ allErrors: true, strict: false });
addFormats(ajv);
ajv.addFormat("int32", { type: "number", validate: (n) => Number.isInteger(n) && n >= -(2 ** 31) && n < 2 ** 31 });
ajv.addFormat("int64", { type: "number", validate: (n) => Number.isInteger(n) });
for (const kw of ["x-kubernetes-int-or-string", "x-kubernetes-list-type", "x-kubernetes-list-map-keys",
  "x-kubernetes-map-type", "x-kubernetes-preserve-unknown-fields", "x-kubernetes-validations",
  "x-kubernetes-embedded-resource"]) ajv.addKeyword({ keyword: kw });

// A structural schema refuses (strict field validation) what it does not declare.
function closeSchema(s) {
  if (Array.isArray(s)) return s.forEach(closeSchema);
  if (s === null || typeof s !== "object") return;
  if (s.properties && s.additionalProperties === undefined && !s["x-kubernetes-preserve-unknown-fields"]) {
    s.additionalProperties = false;
  }
  for (const v of Object.values(s)) closeSchema(v);
}

const crdSchemas = new Map(); // "group/version/Kind" -> openAPIV3Schema (compiled when first used)
const crdValidators = new Map();
function crdValidator(key) {
  if (!crdSchemas.has(key)) return null;
  if (!crdValidators.has(key)) crdValidators.set(key, ajv.compile(crdSchemas.get(key)));
  return crdValidators.get(key);
}
if (opts.crds) {
  for (const f of readdirSync(opts.crds).filter((n) => /\.ya?ml$/.test(n)).sort()) {
    for (const crd of readDocs(join(opts.crds, f))) {
      if (crd.kind !== "CustomResourceDefinition") continue;
      for (const v of crd.spec.versions) {
        if (!v.served) continue;
        const schema = structuredClone(v.schema.openAPIV3Schema);
        // metadata is the API server's ObjectMeta, validated as a built-in below.
        if (schema.properties?.metadata) schema.properties.metadata = { type: "object" };
        closeSchema(schema);
        crdSchemas.set(`${crd.spec.group}/${v.name}/${crd.spec.names.kind}`, schema);
      }
    }
  }
}

async function validateDoc(obj) {
  const errs = [];
  if (obj === null || typeof obj !== "object" || Array.isArray(obj)) return ["not an object"];
  const crd = crdValidator(`${obj.apiVersion}/${obj.kind}`);
  if (crd) {
    if (!crd(obj)) {
      for (const e of crd.errors) {
        const extra = e.keyword === "additionalProperties" ? ` (unknown field "${e.params.additionalProperty}")` : "";
        errs.push(`${e.instancePath || "/"} ${e.message}${extra}`);
      }
    }
    const ObjectMeta = (await import(pathToFileURL(join(opts.modules, "@kubernetes-models", "apimachinery",
      "apis", "meta", "v1", "ObjectMeta.js")).href)).ObjectMeta;
    const [schemaError, unknown] = strictValidate(ObjectMeta, obj.metadata ?? {});
    if (schemaError) errs.push(`metadata: ${schemaError}`);
    for (const u of unknown) errs.push(`/metadata${u}: unknown field`);
    if (!obj.metadata?.name) errs.push("/metadata/name: Required value");
    return errs;
  }
  const Model = await builtinModel(obj.apiVersion, obj.kind);
  if (!Model) return [`no schema for apiVersion ${JSON.stringify(obj.apiVersion)} kind ${JSON.stringify(obj.kind)}`];
  const [schemaError, unknown] = strictValidate(Model, obj);
  if (schemaError) errs.push(schemaError);
  for (const u of unknown) errs.push(`${u}: unknown field`);
  if (!obj.metadata?.name) errs.push("/metadata/name: Required value");
  errs.push(...podRules(obj));
  return errs;
}

// --- the deployment's own promises ------------------------------------------------------------
function one(docs, kind, file) {
  const found = docs.filter((d) => d.kind === kind);
  if (found.length !== 1) throw new Error(`${file}: ${found.length} ${kind} documents, expected 1`);
  return found[0];
}

function checkConsistency() {
  for (const k of ["base", "sidecar", "kmm", "nfd", "containerfile"]) if (!opts[k]) usage(`consistency needs --${k}`);
  const fails = [];
  const expect = (cond, what) => { if (!cond) fails.push(what); console.log(`${cond ? "ok" : "FAILED"} ${what}`); };
  const base = one(readDocs(opts.base), "DaemonSet", opts.base);
  const side = one(readDocs(opts.sidecar), "DaemonSet", opts.sidecar);
  const kmmDocs = readDocs(opts.kmm);
  const mod = one(kmmDocs, "Module", opts.kmm);
  const cm = one(kmmDocs, "ConfigMap", opts.kmm);
  const rule = one(readDocs(opts.nfd), "NodeFeatureRule", opts.nfd);
  const container = (ds, name) => (ds.spec.template.spec.containers ?? []).find((c) => c.name === name);

  // The label: NFD sets it, the DaemonSet and the Module select on it.
  const labels = Object.assign({}, ...rule.spec.rules.map((r) => r.labels ?? {}));
  expect(labels["intel.feature.node.kubernetes.io/gpu"] === "true", "the NFD rule sets intel.feature.node.kubernetes.io/gpu=true");
  for (const [what, sel] of [["base DaemonSet", base.spec.template.spec.nodeSelector], ["sidecar DaemonSet", side.spec.template.spec.nodeSelector], ["KMM Module", mod.spec.selector]]) {
    const keys = Object.keys(sel ?? {});
    expect(keys.length > 0 && keys.every((k) => labels[k] === sel[k]), `the ${what} selects only on labels the NFD rule sets (${JSON.stringify(sel)})`);
  }
  const match = rule.spec.rules.flatMap((r) => r.matchFeatures ?? []);
  const pci = match.find((m) => m.feature === "pci.device");
  expect(JSON.stringify(pci?.matchExpressions?.vendor) === JSON.stringify({ op: "In", value: ["8086"] }), "the NFD rule matches PCI vendor 8086");
  expect(JSON.stringify([...(pci?.matchExpressions?.class?.value ?? [])].sort()) === JSON.stringify(["0300", "0380"]) && pci?.matchExpressions?.class?.op === "In", "the NFD rule matches PCI class 0300 or 0380");
  expect(!match.some((m) => m.feature === "kernel.loadedmodule") && !rule.spec.rules.some((r) => r.matchAny), "the NFD rule has no condition on a loaded module");

  // The sidecar overlay: the agent's arguments are the base's with --build-mode=sidecar only.
  const ba = container(base, "agent")?.args ?? [];
  const sa = container(side, "agent")?.args ?? [];
  const strip = (args) => args.filter((a) => !a.startsWith("--build-mode"));
  expect(ba.includes("--build-mode=node") || !ba.some((a) => a.startsWith("--build-mode")), "the base agent builds on the node");
  expect(sa.filter((a) => a.startsWith("--build-mode")).join(" ") === "--build-mode=sidecar", "the sidecar overlay's agent runs --build-mode=sidecar");
  expect(JSON.stringify(strip(ba)) === JSON.stringify(strip(sa)), `the sidecar overlay keeps the base agent's other arguments (${JSON.stringify(strip(ba))})`);
  const agentBase = { ...container(base, "agent"), args: undefined, image: undefined };
  const agentSide = { ...container(side, "agent"), args: undefined, image: undefined };
  expect(JSON.stringify(agentBase) === JSON.stringify(agentSide), "the sidecar overlay changes nothing else of the agent container but its image's tag");
  const repo = (img) => (img ?? "").replace(/(@sha256:[0-9a-f]+|:[^:/]+)$/, "");
  expect(repo(container(side, "agent")?.image) === repo(container(base, "agent")?.image),
    `the sidecar overlay's agent image is a tag of the base's (${container(side, "agent")?.image})`);
  const dtk = (side.spec.template.spec.containers ?? []).filter((c) => c.name !== "agent");
  expect(dtk.length === 1 && /agent build\b/.test([...(dtk[0].command ?? []), ...(dtk[0].args ?? [])].join(" ")), "the sidecar overlay adds one container that runs `agent build`");
  if (dtk.length === 1) {
    const script = [...(dtk[0].command ?? []), ...(dtk[0].args ?? [])].join(" ");
    const cacheArg = /--cache[= ](\S+)/.exec(script)?.[1];
    const agentCache = (sa.find((a) => a.startsWith("--build-cache")) ?? "--build-cache=/var/lib/intel-gpu-driver/builds").split(/[= ]/)[1];
    expect(cacheArg === agentCache, `the sidecar builds into the cache the agent reads (${cacheArg} vs ${agentCache})`);
    const mounts = (c) => new Map((c.volumeMounts ?? []).map((m) => [m.mountPath, m]));
    const am = mounts(container(side, "agent"));
    const dm = mounts(dtk[0]);
    for (const p of ["/host", "/host/var/lib/intel-gpu-driver"]) {
      expect(dm.has(p) && am.has(p) && dm.get(p).name === am.get(p).name && !!dm.get(p).readOnly === !!am.get(p).readOnly,
        `the sidecar mounts ${p} as the agent does`);
    }
    expect(/--root \/host\b/.test(script), "the sidecar's agent build reads the node through /host");
    expect(side.spec.updateStrategy?.type === "OnDelete", "the sidecar DaemonSet keeps updateStrategy OnDelete");
  }

  // KMM: the Module's build is the repository's Containerfile, by the ConfigMap's name.
  const cf = readFileSync(opts.containerfile, "utf8");
  expect(cm.data?.dockerfile === cf, `the KMM ConfigMap's dockerfile is ${opts.containerfile}, byte for byte`);
  expect(/^ARG DTK_AUTO\b/m.test(cf) && /^FROM \$\{DTK_AUTO\} AS builder\b/mi.test(cf), "the Containerfile builds FROM ${DTK_AUTO} AS builder");
  const loader = mod.spec.moduleLoader?.container ?? {};
  const maps = loader.kernelMappings ?? [];
  expect(maps.length > 0 && maps.every((m) => typeof m.regexp === "string" && !("literal" in m)), "every KMM kernel mapping is by regexp");
  for (const m of maps) {
    let re = null;
    try { re = new RegExp(m.regexp); } catch { /* reported below */ }
    expect(re !== null, `KMM regexp ${m.regexp} compiles`);
    // Debian's release names (the kernels tests/e2e/fetch-kernels.sh resolves) and others.
    for (const [kver, want] of [["6.1.0-56-amd64", true], ["6.12.118+deb13-amd64", true], ["7.2.13+deb14-amd64", true],
      ["6.1.0-56-arm64", false], ["5.14.0-427.13.1.el9_4.x86_64", false]]) {
      expect(re !== null && re.test(kver) === want, `KMM regexp ${m.regexp} ${want ? "matches" : "does not match"} ${kver}`);
    }
    const build = m.build ?? loader.build;
    expect(build?.dockerfileConfigMap?.name === cm.metadata.name, `KMM mapping ${m.regexp} builds from the ConfigMap ${cm.metadata.name}`);
    // A build arg the Containerfile does not declare is ignored without a word.
    for (const a of build?.buildArgs ?? []) {
      expect(new RegExp(`^ARG ${a.name}(=|\\s|$)`, "m").test(cf), `KMM build arg ${a.name} is an ARG of the Containerfile`);
    }
    const sign = m.sign ?? loader.sign;
    expect(!!(sign?.keySecret?.name && sign?.certSecret?.name && sign?.filesToSign?.length), `KMM mapping ${m.regexp} signs with key and cert Secrets and names the files`);
    expect((sign?.filesToSign ?? []).every((f) => f.startsWith(`${loader.modprobe?.dirName ?? "/opt"}/`)), `KMM mapping ${m.regexp} signs files under dirName`);
  }
  expect(mod.metadata.namespace === cm.metadata.namespace, "the KMM ConfigMap is in the Module's namespace");
  expect(Array.isArray(loader.inTreeModulesToRemove) && loader.inTreeModulesToRemove.includes(loader.modprobe?.moduleName),
    "KMM removes the in-tree module of the name it loads");
  expect(loader.modprobe?.firmwarePath === "/opt/lib/firmware", "KMM copies the image's firmware (/opt/lib/firmware)");
  return fails.length ? 1 : 0;
}

async function main() {
  if (command === "validate") {
    if (!argv.length) usage("validate needs files");
    let bad = 0;
    for (const file of argv) {
      let docs;
      try {
        docs = readDocs(file);
      } catch (e) {
        console.log(`invalid ${file}: ${e.message}`);
        bad++;
        continue;
      }
      if (!docs.length) { console.log(`invalid ${file}: no documents`); bad++; continue; }
      for (const d of docs) {
        const errs = await validateDoc(d);
        const id = `${d?.kind}/${d?.metadata?.name}`;
        if (errs.length) { bad++; console.log(`invalid ${file} ${id}: ${errs.join("; ")}`); }
        else console.log(`ok ${file} ${id}`);
      }
    }
    return bad ? 1 : 0;
  }
  if (command === "consistency") return checkConsistency();
  usage(`unknown command ${JSON.stringify(command)} (validate or consistency)`);
}

main().then((rc) => process.exit(rc), (e) => { process.stderr.write(`validate.mjs: ${e.stack ?? e}\n`); process.exit(2); });
