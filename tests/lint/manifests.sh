#!/usr/bin/env bash
# Validates the Kubernetes manifests of container/deploy as they would be applied:
#   1. yamllint (container/deploy/.yamllint.yaml) on every manifest;
#   2. each kustomization rendered by kustomize (base, overlays/sidecar, kmm, nfd);
#   3. every rendered document validated: built-in kinds against the Kubernetes API schemas
#      (kubernetes-models) with unknown fields refused, the KMM Module and the NFD
#      NodeFeatureRule against their projects' CRDs (container/deploy/schemas, ajv);
#   4. the promises that tie the files together (the NFD label is what the DaemonSets and the
#      Module select on, the sidecar overlay changes only --build-mode of the agent, the KMM
#      build reads container/Containerfile, ...);
#   5. the sidecar's loop (its shell script as rendered) run with a stand-in for `agent build`:
#      it waits after a success and after a failure, and SIGTERM ends it at once, the running
#      build getting the signal;
#   6. every agent command line of the manifests (each container's command and args, the
#      sidecar's `agent build`, the probes) parsed by the real agent (AGENT, the first argument;
#      default build/agent/agent): run with every absolute path moved under an empty temporary
#      directory, it must get past its option parsing (run and build: "host root" missing;
#      ready: "not ready", exit 1), and a misspelt option must not;
#   7. negative controls: deliberately broken copies (a misspelt field, a wrong type, a missing
#      required field, an unknown apiVersion, a mount of no volume, an overlay patch that
#      targets no container, an overlay that drops an argument, a duplicated key) must each be
#      rejected, for the expected reason: a validator that accepts everything fails this test.
# The npm packages (tests/lint/manifests/package-lock.json) are installed with `npm ci` into
# ${AGENT_NPM_CACHE:-~/.cache/intel-gpu-agent/npm}/<digest of the lockfile>, once.
# kustomize: a `kustomize` on PATH, else `kubectl kustomize`. A missing tool fails the test.
set -euo pipefail
agent_arg=${1:-}
cd "$(dirname "$0")/../.."
repo=$PWD
agent=${agent_arg:-$repo/build/agent/agent}
deploy=$repo/container/deploy
lintdir=$repo/tests/lint/manifests
start=$SECONDS

fail() { echo "manifests: FAILED: $*" >&2; exit 1; }
[[ -x $agent ]] || fail "no agent binary at $agent (give its path: tests/lint/manifests.sh build/agent/agent)"
for tool in node npm yamllint shellcheck; do
  command -v "$tool" >/dev/null || fail "$tool not found (tests/setup.sh installs yamllint and shellcheck; node and npm come with the machine)"
done
if command -v kustomize >/dev/null; then
  kustomize_cmd=(kustomize build)
  echo "manifests: kustomize $(kustomize version 2>&1 | head -n1)"
elif command -v kubectl >/dev/null && kubectl kustomize --help >/dev/null 2>&1; then
  kustomize_cmd=(kubectl kustomize)
  echo "manifests: kubectl kustomize ($(kubectl version --client 2>/dev/null | grep -i kustomize || echo 'version unknown'))"
else
  fail "no kustomize: neither kustomize nor kubectl (with its built-in kustomize) is on PATH"
fi

# --- the validators, installed once per lockfile --------------------------------------------
digest=$(cat "$lintdir/package.json" "$lintdir/package-lock.json" | sha256sum | cut -c1-16)
npm_root=${AGENT_NPM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/intel-gpu-agent/npm}
modules_dir=$npm_root/manifest-lint-$digest
mkdir -p "$npm_root"
(
  flock 9
  if [[ ! -e $modules_dir/.installed ]]; then
    tmp=$(mktemp -d "$npm_root/.tmp-manifest-lint.XXXXXX")
    cp "$lintdir/package.json" "$lintdir/package-lock.json" "$tmp/"
    echo "manifests: npm ci into $modules_dir"
    (cd "$tmp" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >"$tmp/npm.log" 2>&1) ||
      { cat "$tmp/npm.log" >&2; rm -rf "$tmp"; exit 1; }
    touch "$tmp/.installed"
    rm -rf "$modules_dir"
    mv "$tmp" "$modules_dir"
  fi
) 9>"$npm_root/.manifest-lint.lock" || fail "npm ci of tests/lint/manifests/package-lock.json"
validate=(node "$lintdir/validate.mjs" --modules "$modules_dir/node_modules" --crds "$deploy/schemas")

work=$(mktemp -d "${TMPDIR:-/tmp}/manifests.XXXXXX")
trap 'rm -rf "$work"' EXIT

render() { # render DIR OUT [kustomize flags...]
  local dir=$1 out=$2
  shift 2
  "${kustomize_cmd[@]}" "$@" "$dir" >"$out" 2>"$out.err" || { cat "$out.err" >&2; return 1; }
}

# --- 1. yamllint ----------------------------------------------------------------------------
(cd "$deploy" && yamllint -s -c .yamllint.yaml .) || fail "yamllint on container/deploy"
nlinted=$(cd "$deploy" && find . -path ./schemas -prune -o -name '*.yaml' -print | wc -l)
echo "manifests: yamllint: $nlinted files clean"

# --- 2. render ------------------------------------------------------------------------------
[[ -f $repo/container/Containerfile ]] || fail "container/Containerfile missing: the KMM build's ConfigMap is made from it"
render "$deploy/base" "$work/base.yaml" || fail "kustomize base"
render "$deploy/overlays/sidecar" "$work/sidecar.yaml" || fail "kustomize overlays/sidecar"
# The ConfigMap of the KMM build is container/Containerfile, outside the kustomization.
render "$deploy/kmm" "$work/kmm.yaml" --load-restrictor LoadRestrictionsNone || fail "kustomize kmm"
render "$deploy/nfd" "$work/nfd.yaml" || fail "kustomize nfd"
echo "manifests: rendered base, overlays/sidecar, kmm, nfd"

# --- 3. validate what was rendered -----------------------------------------------------------
out=$("${validate[@]}" validate "$work/base.yaml" "$work/sidecar.yaml" "$work/kmm.yaml" "$work/nfd.yaml") ||
  { echo "$out"; fail "a rendered manifest is invalid"; }
echo "${out//$work\//}"
# Each kind that must be there was validated (a render that lost a document cannot pass).
for want in "base.yaml Namespace/intel-gpu-driver" "base.yaml DaemonSet/intel-gpu-driver" \
            "sidecar.yaml DaemonSet/intel-gpu-driver" "kmm.yaml Module/intel-gpu-driver" \
            "kmm.yaml ConfigMap/intel-gpu-driver-containerfile" "nfd.yaml NodeFeatureRule/intel-gpu-driver"; do
  grep -qx "ok $work/$want" <<<"$out" || fail "not validated: $want"
done

# --- 4. the promises across files -------------------------------------------------------------
consistency=(node "$lintdir/validate.mjs" --modules "$modules_dir/node_modules" consistency
             --kmm "$work/kmm.yaml" --nfd "$work/nfd.yaml" --containerfile "$repo/container/Containerfile")
"${consistency[@]}" --base "$work/base.yaml" --sidecar "$work/sidecar.yaml" || fail "the manifests break a promise (above)"

# --- 5. the sidecar's loop ----------------------------------------------------------------------
# Its script as rendered, with /usr/local/bin/agent replaced by a stand-in that logs its
# arguments and behaves as `agent build` does at its edges (exit 0 or 1 at once, or a long
# build that exits 0 on SIGTERM).
node --input-type=module -e '
  import { createRequire } from "node:module";
  const require = createRequire(process.argv[1] + "/noop.js");
  const YAML = require("yaml");
  const fs = require("node:fs");
  const ds = YAML.parseAllDocuments(fs.readFileSync(process.argv[2], "utf8")).map((d) => d.toJS()).find((d) => d.kind === "DaemonSet");
  const c = ds.spec.template.spec.containers.find((c) => c.name !== "agent");
  if (JSON.stringify(c.command) !== JSON.stringify(["/bin/sh", "-c"]) || c.args.length !== 1) process.exit(1);
  fs.writeFileSync(process.argv[3], c.args[0]);
' "$modules_dir/node_modules" "$work/sidecar.yaml" "$work/loop.sh" || fail "the sidecar container is not /bin/sh -c SCRIPT"
shellcheck -s sh -S warning "$work/loop.sh" || fail "shellcheck on the sidecar's script"
n=$(grep -c '/usr/local/bin/agent build' "$work/loop.sh" || true)
[[ $n == 1 ]] || fail "the sidecar's script runs /usr/local/bin/agent build $n times, expected once"
cat >"$work/fake-agent" <<'EOF'
#!/bin/sh
# Stand-in for `agent build`: FAKE_MODE says how it ends.
echo "$*" >>"$FAKE_LOG"
case $FAKE_MODE in
  ok) exit 0 ;;
  fail) exit 1 ;;
  long)
    trap 'kill "$s"; wait "$s"; echo TERM >>"$FAKE_LOG"; exit 0' TERM
    sleep 60 &
    s=$!
    wait "$s"
    echo timeout >>"$FAKE_LOG"
    exit 3 ;;
esac
EOF
chmod +x "$work/fake-agent"
sed "s|/usr/local/bin/agent build|$work/fake-agent build|" "$work/loop.sh" >"$work/loop-test.sh"
# The same with its waits cut to 1 s, to see it run the build again.
sed -e 's/delay=3600/delay=1/' -e 's/delay=300/delay=1/' "$work/loop-test.sh" >"$work/loop-fast.sh"
[[ $(grep -o 'delay=1;' "$work/loop-fast.sh" | wc -l) == 2 ]] || fail "the sidecar's script has not the two waits (3600 s, 300 s) this test cuts"
# loop_case SHELL SCRIPT MODE RUNS EXPECTED_LINE...: runs the loop under SHELL until the build ran
# RUNS times, signals it, checks how it ended.
loop_case() {
  local shell=$1 script=$2 mode=$3 runs=$4 pid t0 rc=0 what
  shift 4
  what="sidecar loop ($shell, $mode, $runs run(s))"
  : >"$work/fake.log"
  FAKE_MODE=$mode FAKE_LOG=$work/fake.log setsid "$shell" "$script" >"$work/loop.out" 2>&1 &
  pid=$!
  for _ in $(seq 50); do (($(grep -c -- --root "$work/fake.log") >= runs)) && break; sleep 0.1; done
  (($(grep -c -- --root "$work/fake.log") >= runs)) || fail "$what: the build ran $(grep -c -- --root "$work/fake.log") time(s)"
  sleep 0.3
  kill -0 "$pid" 2>/dev/null || fail "$what: the script exited by itself: $(cat "$work/loop.out")"
  t0=$SECONDS
  kill -TERM "$pid"
  wait "$pid" || rc=$?
  ((SECONDS - t0 <= 3)) || fail "$what: took $((SECONDS - t0)) s to stop after SIGTERM"
  ((rc == 0)) || fail "$what: exit $rc after SIGTERM, expected 0"
  pgrep -s "$pid" >/dev/null && fail "$what: processes left after SIGTERM"
  for line in "$@"; do
    grep -qF -- "$line" "$work/fake.log" "$work/loop.out" ||
      fail "$what: no \"$line\" in: $(cat "$work/fake.log" "$work/loop.out")"
  done
  if grep -q timeout "$work/fake.log"; then fail "$what: the build was not signalled"; fi
  echo "manifests: $what: SIGTERM ends it with 0 in $((SECONDS - t0)) s"
}
# dash is Debian's /bin/sh, bash the Driver Toolkit's (RHEL).
for shell in dash bash; do
  command -v "$shell" >/dev/null || fail "$shell not found"
  loop_case "$shell" "$work/loop-test.sh" ok 1 "build --root /host --cache /var/lib/intel-gpu-driver/builds" \
    "agent build exited 0; next run in 3600 s"
  loop_case "$shell" "$work/loop-test.sh" fail 1 "agent build exited 1; next run in 300 s"
  loop_case "$shell" "$work/loop-test.sh" long 1 "TERM"
  loop_case "$shell" "$work/loop-fast.sh" ok 2 "agent build exited 0; next run in 1 s"
  loop_case "$shell" "$work/loop-fast.sh" fail 2 "agent build exited 1; next run in 1 s"
done

# --- 6. the agent command lines, as the agent parses them ------------------------------------
# Each command (NUL-separated argv, the expected outcome first) with /usr/local/bin/agent as
# $agent and every absolute path (an argument, --opt=PATH, HOST_ROOT) under $work/nowhere.
node --input-type=module -e '
  import { createRequire } from "node:module";
  const require = createRequire(process.argv[1] + "/noop.js");
  const YAML = require("yaml");
  const fs = require("node:fs");
  const [, , agent, nowhere, outdir, ...files] = process.argv;
  const move = (a) => a.replace(/^(--[a-z-]+=)?(\/.*)$/, (m, opt, path) => (opt ?? "") + nowhere + path);
  let n = 0;
  const emit = (what, expect, argv, env) => {
    if (argv[0] !== "/usr/local/bin/agent") return;
    const line = [expect, what, `HOST_ROOT=${move(env.HOST_ROOT ?? "/")}`, agent, ...argv.slice(1).map(move)];
    fs.writeFileSync(`${outdir}/cmd-${String(n++).padStart(2, "0")}`, line.join("\0"));
  };
  for (const f of files) {
    for (const d of YAML.parseAllDocuments(fs.readFileSync(f, "utf8")).map((x) => x.toJS())) {
      if (d?.kind !== "DaemonSet") continue;
      for (const c of d.spec.template.spec.containers) {
        const env = Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value]));
        const argv = [...(c.command ?? []), ...(c.args ?? [])];
        const at = `${f.replace(/.*\//, "")} ${c.name}`;
        if (argv[0] === "/bin/sh") {
          const m = /(\/usr\/local\/bin\/agent build[^&;\n]*)/.exec(argv.join(" "));
          if (m) emit(`${at} (its script)`, "hostroot", m[1].trim().split(/\s+/), env);
        } else emit(at, "hostroot", argv, env);
        for (const p of ["readinessProbe", "startupProbe", "livenessProbe"]) {
          if (c[p]?.exec?.command) emit(`${at} ${p}`, "notready", c[p].exec.command, env);
        }
      }
    }
  }
' "$modules_dir/node_modules" "$agent" "$work/nowhere" "$work" "$work/base.yaml" "$work/sidecar.yaml" ||
  fail "could not extract the agent command lines"
# agent_parses EXPECT WHAT HOST_ROOT=... AGENT ARGS...: 0 when the agent got past its option
# parsing and ended as EXPECT says.
agent_parses() {
  local expect=$1 what=$2 hostroot=$3 rc=0 err
  shift 3
  err=$(env "$hostroot" timeout 20 "$@" 2>&1 >/dev/null) || rc=$?
  if grep -q "for usage\|unknown option\|unknown command\|not expected\|is required\|not in {" <<<"$err"; then
    echo "manifests: $what: the agent refuses its command line: ${err//$'\n'/ }" >&2
    return 1
  fi
  case $expect in
    hostroot) ((rc == 2)) && grep -q "host root" <<<"$err" ;;
    notready) ((rc == 1)) ;;
  esac || { echo "manifests: $what: exit $rc, not the expected end ($expect): ${err//$'\n'/ }" >&2; return 1; }
}
ncmd=0
for f in "$work"/cmd-*; do
  mapfile -d '' -t cmd <"$f"
  agent_parses "${cmd[@]}" || fail "the agent does not accept the manifest's command line: ${cmd[*]:3}"
  echo "manifests: the agent accepts: ${cmd[1]}: ${cmd[*]:4}" | sed "s|$work/nowhere||g"
  ncmd=$((ncmd + 1))
done
# base: agent run, readiness, startup; sidecar: the same and the sidecar's agent build.
((ncmd == 7)) || fail "$ncmd agent command lines found in the DaemonSets, expected 7"
[[ ! -e $work/nowhere ]] || fail "running the command lines wrote under $work/nowhere"
# The same check refuses a misspelt option, a wrong value and a missing command.
mapfile -d '' -t cmd <"$work/cmd-00"
for bad in --build-mod=sidecar --build-mode=sidecarr; do
  if agent_parses "${cmd[@]}" "$bad" 2>/dev/null; then fail "negative control: the agent accepted $bad"; fi
done
echo "manifests: rejected as it must be: agent run --build-mod=sidecar, --build-mode=sidecarr"

# --- 7. negative controls ---------------------------------------------------------------------
# broken NAME FROM EXPECTED SED-SCRIPT: a copy of FROM edited by SED-SCRIPT (which must change it)
# must be rejected by the validator with EXPECTED in its verdict (all copies in one run).
nneg=0
broken_names=()
declare -A broken_expected=()
broken() {
  local name=$1 from=$2 expected=$3 script=$4
  sed -e "$script" "$from" >"$work/broken-$name.yaml"
  cmp -s "$from" "$work/broken-$name.yaml" && fail "negative control $name: the edit changed nothing"
  broken_names+=("$name")
  broken_expected[$name]=$expected
}
check_broken() {
  local out name verdict files=()
  for name in "${broken_names[@]}"; do files+=("$work/broken-$name.yaml"); done
  out=$("${validate[@]}" validate "${files[@]}") && fail "negative controls: the validator accepted them all: $out"
  for name in "${broken_names[@]}"; do
    verdict=$(grep -F " $work/broken-$name.yaml" <<<"$out" || true)
    grep -q "^invalid " <<<"$verdict" || fail "negative control $name: not rejected: $verdict"
    grep -qF -- "${broken_expected[$name]}" <<<"$verdict" ||
      fail "negative control $name: rejected, but not for \"${broken_expected[$name]}\": $verdict"
    nneg=$((nneg + 1))
    echo "manifests: rejected as it must be: $name (${broken_expected[$name]})"
  done
}
broken misspelt-field "$work/base.yaml" "/spec/updateStrategi: unknown field" 's/^  updateStrategy:$/  updateStrategi:/'
broken misspelt-nested "$work/base.yaml" "/spec/template/spec/containers/0/readinessProb: unknown field" 's/^        readinessProbe:$/        readinessProb:/'
broken wrong-type "$work/base.yaml" "hostPID must be boolean" 's/^      hostPID: false$/      hostPID: "no"/'
broken missing-required "$work/base.yaml" "spec/containers/0 must have required property name" '/^        name: agent$/d'
broken unknown-apiversion "$work/base.yaml" 'no schema for apiVersion "apps/v2" kind "DaemonSet"' 's|^apiVersion: apps/v1$|apiVersion: apps/v2|'
broken mount-without-volume "$work/base.yaml" 'volumeMounts[4].name: Not found: "nfd-featurez"' '0,/name: nfd-features$/s//name: nfd-featurez/'
broken kmm-misspelt-field "$work/kmm.yaml" 'unknown field "kernelMapping"' 's/^      kernelMappings:$/      kernelMapping:/'
broken kmm-wrong-type "$work/kmm.yaml" "/spec/moduleLoader/container/modprobe/firmwarePath must be string" 's|^        firmwarePath: /opt/lib/firmware$|        firmwarePath: 17|'
broken kmm-missing-required "$work/kmm.yaml" "must have required property 'selector'" '/^  selector:$/,/^  [a-z]/{/^  selector:$/d;/^    /d}'
broken kmm-metadata "$work/kmm.yaml" "/metadata/namespac: unknown field" 's/^  namespace: intel-gpu-driver$/  namespac: intel-gpu-driver/'
broken nfd-misspelt-field "$work/nfd.yaml" 'unknown field "matchFeature"' 's/^    matchFeatures:$/    matchFeature:/'
broken nfd-wrong-type "$work/nfd.yaml" "/spec/rules/0/matchFeatures/0/feature must be string" 's/^    - feature: pci.device$/    - feature: 8086/'
broken nfd-missing-required "$work/nfd.yaml" "must have required property 'name'" '/^    name: intel-gpu-driver.intel-gpu$/d'
check_broken

# An overlay whose patch targets no container: a strategic merge adds a container of that name
# (kustomize accepts it), which the rendered manifest's validation must refuse.
cp -r "$deploy" "$work/deploy"
sed -i 's/^        - name: agent$/        - name: agnet/' "$work/deploy/overlays/sidecar/sidecar-patch.yaml"
cmp -s "$deploy/overlays/sidecar/sidecar-patch.yaml" "$work/deploy/overlays/sidecar/sidecar-patch.yaml" &&
  fail "negative control patch-targets-no-container: the edit changed nothing"
render "$work/deploy/overlays/sidecar" "$work/broken-overlay.yaml" || fail "kustomize on the misnamed patch"
rc=0
out=$("${validate[@]}" validate "$work/broken-overlay.yaml") || rc=$?
((rc == 1)) && grep -qF '(agnet): image: Required value' <<<"$out" ||
  fail "negative control patch-targets-no-container: not rejected for the container without an image: $out"
nneg=$((nneg + 1))
echo "manifests: rejected as it must be: patch-targets-no-container (agnet: image: Required value)"

# An overlay that drops one of the base agent's arguments: schema-valid, but not the overlay's
# promise (only --build-mode changes).
cp -r "$deploy" "$work/deploy2"
sed -i '/^            - --nfd-dir=/d' "$work/deploy2/overlays/sidecar/sidecar-patch.yaml"
cmp -s "$deploy/overlays/sidecar/sidecar-patch.yaml" "$work/deploy2/overlays/sidecar/sidecar-patch.yaml" &&
  fail "negative control overlay-drops-argument: the edit changed nothing"
render "$work/deploy2/overlays/sidecar" "$work/broken-args.yaml" || fail "kustomize on the overlay without --nfd-dir"
rc=0
out=$("${consistency[@]}" --base "$work/base.yaml" --sidecar "$work/broken-args.yaml") || rc=$?
((rc == 1)) && grep -q "^FAILED the sidecar overlay keeps the base agent's other arguments" <<<"$out" ||
  fail "negative control overlay-drops-argument: not refused: $out"
nneg=$((nneg + 1))
echo "manifests: rejected as it must be: overlay-drops-argument (the base agent's other arguments)"

# A KMM build arg the Containerfile does not declare (kaniko would ignore it without a word).
sed 's/^          - name: NODE_BASE$/          - name: NODE_BASEE/' "$work/kmm.yaml" >"$work/broken-buildarg.yaml"
cmp -s "$work/kmm.yaml" "$work/broken-buildarg.yaml" && fail "negative control undeclared-build-arg: the edit changed nothing"
rc=0
out=$(node "$lintdir/validate.mjs" --modules "$modules_dir/node_modules" consistency --kmm "$work/broken-buildarg.yaml" \
        --nfd "$work/nfd.yaml" --containerfile "$repo/container/Containerfile" --base "$work/base.yaml" --sidecar "$work/sidecar.yaml") || rc=$?
((rc == 1)) && grep -q "^FAILED KMM build arg NODE_BASEE is an ARG of the Containerfile" <<<"$out" ||
  fail "negative control undeclared-build-arg: not refused: $out"
nneg=$((nneg + 1))
echo "manifests: rejected as it must be: undeclared-build-arg (NODE_BASEE is no ARG of the Containerfile)"

# A duplicated key: yamllint and the validator's parser each refuse it.
sed 's/^  name: intel-gpu-driver$/  name: intel-gpu-driver\n  name: intel-gpu/' "$deploy/nfd/nodefeaturerule.yaml" >"$work/dup.yaml"
cmp -s "$deploy/nfd/nodefeaturerule.yaml" "$work/dup.yaml" && fail "negative control duplicated-key: the edit changed nothing"
rc=0
out=$(yamllint -c "$deploy/.yamllint.yaml" "$work/dup.yaml") || rc=$?
((rc != 0)) && grep -q "key-duplicates" <<<"$out" || fail "negative control duplicated-key: yamllint accepted it: $out"
rc=0
out=$("${validate[@]}" validate "$work/dup.yaml") || rc=$?
((rc == 1)) && grep -qi "unique" <<<"$out" || fail "negative control duplicated-key: the validator accepted it: $out"
nneg=$((nneg + 1))
echo "manifests: rejected as it must be: duplicated-key (yamllint key-duplicates, the parser's unique keys)"

echo "manifests: all manifests valid, $nneg broken copies rejected, in $((SECONDS - start)) s"
