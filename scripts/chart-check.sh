#!/usr/bin/env bash
# Checks the Helm chart in charts/eddy without a cluster, a helm binary or Docker:
#   for the chart's defaults and every values file in charts/eddy/ci/:
#     helm lint (strict) and the values schema, through helm-python-sdk (Helm's
#     own Go engine in a Python wheel); helm template (install --dry-run=client
#     with in-memory storage, which is what `helm template` runs);
#     every rendered object against the Kubernetes OpenAPI schemas of each version
#     in EDDY_KUBE_VERSIONS (kubernetes-validate's validate(strict=True), what
#     `kubernetes-validate --strict -k VERSION` runs: unknown fields fail; a kind
#     it has no schema for fails too, where its CLI only warns);
#     the KEDA ScaledObject against the CRD vendored in scripts/vendor/keda (unknown fields fail,
#     as on the API server); the ServiceMonitor against the prometheus-operator
#     models of cloudcoil; references between the objects (selectors, named
#     ports, secrets, scale targets, the controller URL KEDA polls); the
#     security and probe settings the roles' contract asks for; yamllint.
#   every values file in charts/eddy/ci-broken/ must be REJECTED by the schema
#   (and by helm lint), with each "# expect-error: <text>" line it carries found
#   in the error.
# Exits non-zero when anything fails. Python tools live in a cached venv
# (${EDDY_VENV:-.eddy/venv}); the first run installs them from PyPI.
set -euo pipefail

start=$(date +%s)
top=$(git -C "$(dirname "$0")" rev-parse --show-toplevel 2>/dev/null || (cd "$(dirname "$0")/.." && pwd))
cd "$top"

CHART=charts/eddy
# Vendored with its licence (scripts/vendor/keda), so a lone clone can run the check.
KEDA_CRD=$top/scripts/vendor/keda/keda.sh_scaledobjects.yaml
VENV=${EDDY_VENV:-.eddy/venv}
case $VENV in /*) ;; *) VENV=$top/$VENV ;; esac
# The oldest version Chart.yaml allows (kubeVersion) and the newest that
# kubernetes-validate knows.
KUBE_VERSIONS=${EDDY_KUBE_VERSIONS:-"1.30.0 1.37.0"}
OUT=${EDDY_CHART_OUT:-.eddy/chart-check}

# Pinned, so a cached venv and a fresh one check the same way. The import name of
# helm-python-sdk is helm_python; cloudcoil's prometheus-operator models newer than
# 0.80 need Python 3.14.
REQUIREMENTS=(
  "helm-python-sdk==0.2.2"
  "kubernetes-validate==1.37.0"
  "yamllint==1.38.0"
  "jsonschema==4.26.0"
  "PyYAML==6.0.3"
  "cloudcoil.models.prometheus_operator==0.80.1.0"
)

log() { printf 'chart-check: %s\n' "$*"; }

command -v python3 >/dev/null 2>&1 || { log "python3 is required"; exit 2; }
[ -f "$KEDA_CRD" ] || { log "missing $KEDA_CRD"; exit 2; }

stamp="${REQUIREMENTS[*]} / $(python3 -c 'import sys; print(sys.version.split()[0])')"

# Sets PY to a Python that has REQUIREMENTS: the cached venv, a new venv, or (no
# venv module and no way to install it) a private --user install under $VENV/user.
ensure_tools() {
  if [ "$(cat "$VENV/.eddy-stamp" 2>/dev/null)" = "$stamp" ]; then
    if [ -x "$VENV/bin/python" ]; then
      PY=$VENV/bin/python
      log "using the cached venv $VENV"
      return
    elif [ -d "$VENV/user" ]; then
      export PYTHONUSERBASE=$VENV/user
      PY=python3
      log "using the cached --user install $VENV/user"
      return
    fi
  fi
  if [ -d "$VENV" ] && [ ! -f "$VENV/.eddy-stamp" ] && [ ! -f "$VENV/pyvenv.cfg" ] && [ -n "$(ls -A "$VENV")" ]; then
    log "refusing to replace $VENV: it is not a venv this script made"
    exit 2
  fi
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
    rm -rf "$VENV"
    if command -v apt-get >/dev/null 2>&1; then
      sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo -n"
      log "python3 -m venv failed: installing python3-venv"
      $sudo apt-get update -qq >/dev/null 2>&1 || true
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null 2>&1 || true
    fi
    python3 -m venv "$VENV" >/dev/null 2>&1 || rm -rf "$VENV"
  fi
  if [ -x "$VENV/bin/python" ]; then
    PY=$VENV/bin/python
    log "installing ${REQUIREMENTS[*]} into $VENV"
    "$PY" -m pip install --quiet --disable-pip-version-check "${REQUIREMENTS[@]}"
  else
    log "no venv available: pip install --user under $VENV/user"
    export PYTHONUSERBASE=$VENV/user
    PY=python3
    "$PY" -m pip install --quiet --disable-pip-version-check --user --break-system-packages "${REQUIREMENTS[@]}" 2>/dev/null ||
      "$PY" -m pip install --quiet --disable-pip-version-check --user "${REQUIREMENTS[@]}"
    mkdir -p "$VENV"
  fi
  printf '%s' "$stamp" > "$VENV/.eddy-stamp"
}

ensure_tools
mkdir -p "$OUT"

set +e
# shellcheck disable=SC2086 # one argument per version
"$PY" - "$CHART" "$KEDA_CRD" "$OUT" $KUBE_VERSIONS <<'PYTHON'
import functools
import glob
import json
import os
import re
import sys
import traceback

import helm_python as helm
import jsonschema
import kubernetes_validate.utils as kv
import yaml
from yamllint import linter
from yamllint.config import YamlLintConfig

chart_dir, keda_crd, out_dir, *kube_versions = sys.argv[1:]
RELEASE, NAMESPACE = "eddy", "eddy"
failures = []   # (case, message)
summary = []    # (case, status, note)

# kubernetes-validate reads its schema files again for every object; read each once.
kv.schema_contents = functools.lru_cache(maxsize=None)(kv.schema_contents)


def fail(case, msg):
    failures.append((case, msg))
    print(f"  FAIL {msg}")


# ---------------------------------------------------------------- the KEDA CRD

def strict_schema(node):
    """An apiextensions openAPIV3Schema as a JSON schema that, like the API server
    with strict field validation, rejects fields the schema does not declare."""
    if isinstance(node, list):
        return [strict_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in ("properties", "patternProperties"):
            out[key] = {k: strict_schema(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = strict_schema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = strict_schema(value)
        elif key.startswith("x-kubernetes-") or key == "nullable":
            continue
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if (out.get("type") == "object" and "properties" in out
            and "additionalProperties" not in out
            and not node.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def cel_rules(node):
    """Every x-kubernetes-validations rule in the CRD (JSON schema cannot run CEL)."""
    if isinstance(node, dict):
        for rule in node.get("x-kubernetes-validations", []):
            yield rule["rule"]
        node = list(node.values())
    if isinstance(node, list):
        for value in node:
            yield from cel_rules(value)


with open(keda_crd) as f:
    crd = yaml.safe_load(f)
crd_version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
keda_schema = strict_schema(crd_version["schema"]["openAPIV3Schema"])
keda_validator = jsonschema.Draft7Validator(keda_schema)
KEDA_RULE = ("!has(self.minReplicaCount) || self.minReplicaCount <= "
             "(has(self.maxReplicaCount) ? self.maxReplicaCount : 100)")
unknown_rules = [r for r in cel_rules(crd_version["schema"]["openAPIV3Schema"])
                 if " ".join(r.split()) != KEDA_RULE]
if unknown_rules:
    print(f"chart-check: WARNING the KEDA CRD has CEL rules this script does not evaluate: {unknown_rules}")


def check_keda_cel(case, obj):
    spec = obj.get("spec", {})
    if "minReplicaCount" in spec and spec["minReplicaCount"] > spec.get("maxReplicaCount", 100):
        fail(case, "ScaledObject: minReplicaCount must be less than or equal to maxReplicaCount (CRD rule)")


# ------------------------------------------------------------ the ServiceMonitor

try:
    from cloudcoil.models.prometheus_operator.v1 import ServiceMonitor
except Exception as e:  # a platform without pydantic wheels
    ServiceMonitor = None
    print(f"chart-check: WARNING no prometheus-operator models ({e}); ServiceMonitors are not validated")


def unknown_fields(given, known, path=""):
    """Paths in `given` that a model dump (`known`) dropped: fields the CRD lacks."""
    if isinstance(given, dict):
        if not isinstance(known, dict):
            return [path or "."]
        found = []
        for k, v in given.items():
            if k not in known:
                found.append(f"{path}.{k}")
            else:
                found += unknown_fields(v, known[k], f"{path}.{k}")
        return found
    if isinstance(given, list) and isinstance(known, list):
        return [p for i, (g, k) in enumerate(zip(given, known)) for p in unknown_fields(g, k, f"{path}[{i}]")]
    return []


def check_servicemonitor(case, obj):
    if ServiceMonitor is None:
        print("  SKIP ServiceMonitor schema (models unavailable)")
        return "skipped"
    try:
        model = ServiceMonitor.model_validate(obj)
    except Exception as e:
        fail(case, f"ServiceMonitor {obj['metadata']['name']}: {e}")
        return "failed"
    dumped = model.model_dump(by_alias=True, exclude_none=True, mode="json")
    for path in unknown_fields(obj, dumped):
        fail(case, f"ServiceMonitor {obj['metadata']['name']}: unknown field {path}")
    return "validated"


# ------------------------------------------------------------------ rendering

# `helm template` is `helm install --dry-run=client`: the same through the SDK, with
# in-memory release storage and a kubeconfig that is never contacted.
OFFLINE_KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: offline, cluster: {server: "https://127.0.0.1:9"}}]
contexts: [{name: offline, context: {cluster: offline, user: offline}}]
current-context: offline
users: [{name: offline, user: {}}]
"""


def helm_template(values):
    """Returns (manifest stream, NOTES.txt) as `helm template` prints them; raises
    helm.HelmError when the values schema or a template rejects the values."""
    with helm.Config(kubeconfig_content=OFFLINE_KUBECONFIG, namespace=NAMESPACE, storage_driver="memory") as cfg:
        release = cfg.install(chart_dir, RELEASE, values, dry_run="client")
    return release["manifest"], release.get("notes", "")


def render(values):
    with helm.Chart.load(chart_dir) as chart:
        chart.validate_schema(values)
        merged = chart.merge_values(values)
    stream, notes = helm_template(values)
    return merged, stream, notes


DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
NAMESPACED_NOT = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Namespace"}


def pod_spec(obj):
    return obj.get("spec", {}).get("template", {}).get("spec") if obj["kind"] in ("Deployment", "StatefulSet") else None


def matches(selector, labels):
    """Does a LabelSelector (matchLabels, matchExpressions) select these labels?"""
    selector = selector or {}
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        return False  # an empty selector here is a chart bug, not "everything"
    for k, v in selector.get("matchLabels", {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions", []):
        if expr["operator"] == "In" and labels.get(expr["key"]) not in expr["values"]:
            return False
        if expr["operator"] == "NotIn" and labels.get(expr["key"]) in expr["values"]:
            return False
        if expr["operator"] == "Exists" and expr["key"] not in labels:
            return False
    return True


def check_object_meta(case, obj):
    """A custom resource's metadata is an ObjectMeta, which CRDs leave to the API
    server: check it as the metadata of a (strictly validated) ConfigMap."""
    for v in kube_versions:
        try:
            kv.validate({"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj["metadata"]}, v, strict=True)
        except kv.ValidationError as e:
            fail(case, f"{obj['kind']}/{obj['metadata'].get('name')} metadata: {e.message}")


def check_case(case, values):
    print(f"== {case}")
    note = []
    # helm lint (strict: warnings fail; info such as "icon is recommended" does not)
    report = helm.lint(chart_dir, values, strict=True, kube_version=f"v{kube_versions[0]}")
    bad = [m for m in report.get("messages", []) if m["severity"] >= 2] + [{"error": e} for e in report.get("errors") or []]
    for m in bad:
        fail(case, f"helm lint: {m.get('path', '')} {m['error']}")
    print(f"  helm lint: {'ok' if not bad else 'FAILED'}")

    try:
        merged, stream, notes = render(values)
    except helm.HelmError as e:
        fail(case, f"helm template: {e}")
        return "render failed"
    path = os.path.join(out_dir, f"{case}.yaml")
    with open(path, "w") as f:
        f.write(stream)
    objs = [o for o in yaml.safe_load_all(stream) if o]
    print(f"  helm template: {len(objs)} objects -> {path}")
    if not notes.strip():
        fail(case, "NOTES.txt rendered empty")

    # identity
    seen = set()
    for o in objs:
        if not all(k in o for k in ("apiVersion", "kind", "metadata")) or "name" not in o["metadata"]:
            fail(case, f"object without apiVersion/kind/metadata.name: {str(o)[:80]}")
            continue
        key = (o["apiVersion"].split("/")[0] if "/" in o["apiVersion"] else "", o["kind"], o["metadata"]["name"])
        if key in seen:
            fail(case, f"duplicate object {key}")
        seen.add(key)
        name = o["metadata"]["name"]
        if o["kind"] not in NAMESPACED_NOT and o["metadata"].get("namespace") != NAMESPACE:
            fail(case, f"{o['kind']}/{name}: metadata.namespace is not the release namespace")
        if len(name) > 63 or not DNS_LABEL.match(name):
            fail(case, f"{o['kind']}/{name}: name is not a DNS-1123 label")
        for where, labels in [("metadata.labels", o["metadata"].get("labels") or {}),
                              ("pod labels", (o.get("spec", {}).get("template", {}).get("metadata", {}) or {}).get("labels") or {})]:
            for k, v in labels.items():
                if not isinstance(v, str) or len(v) > 63 or not LABEL_VALUE.match(v):
                    fail(case, f"{o['kind']}/{name}: {where} {k}={v!r} is not a valid label value")

    # Kubernetes schemas, CRDs
    counts = {"kubernetes": 0, "crd": 0}
    sm_status = "none rendered"
    for o in objs:
        kind, name = o["kind"], o["metadata"]["name"]
        if o["apiVersion"] == "keda.sh/v1alpha1" and kind == "ScaledObject":
            errors = sorted(keda_validator.iter_errors(o), key=lambda e: list(e.absolute_path))
            for e in errors:
                fail(case, f"ScaledObject/{name} vs KEDA CRD: {'.'.join(map(str, e.absolute_path))}: {e.message}")
            check_keda_cel(case, o)
            check_object_meta(case, o)
            counts["crd"] += 1
            continue
        if o["apiVersion"] == "monitoring.coreos.com/v1" and kind == "ServiceMonitor":
            sm_status = check_servicemonitor(case, o)
            check_object_meta(case, o)
            continue
        for v in kube_versions:
            try:
                kv.validate(o, v, strict=True)
            except kv.ValidationError as e:
                fail(case, f"{kind}/{name} vs Kubernetes {e.version}: {'.'.join(map(str, e.path))}: {e.message}")
            except kv.SchemaNotFoundError:
                fail(case, f"{kind}/{name}: no Kubernetes {v} schema for {o['apiVersion']} {kind}")
        counts["kubernetes"] += 1
    print(f"  kubernetes-validate --strict ({', '.join(kube_versions)}): {counts['kubernetes']} objects;"
          f" KEDA CRD: {counts['crd']} ScaledObject(s); ServiceMonitor: {sm_status}")
    note.append(f"{len(objs)} objects")
    if sm_status != "none rendered":
        note.append(f"ServiceMonitor {sm_status}")

    check_references(case, objs, merged)
    check_contract(case, objs, merged)

    # yamllint on the rendered stream
    cfg = YamlLintConfig(file=os.path.join(chart_dir, ".yamllint"))
    problems = [p for p in linter.run(stream, cfg) if p.level == "error"]
    for p in problems:
        fail(case, f"yamllint {path}:{p.line}:{p.column}: {p.desc} ({p.rule})")
    print(f"  yamllint: {'ok' if not problems else f'{len(problems)} errors'}")
    return ", ".join(note)


def check_references(case, objs, merged):
    by_kind = {}
    for o in objs:
        by_kind.setdefault(o["kind"], {})[o["metadata"]["name"]] = o
    workloads = [o for o in objs if pod_spec(o)]

    def pods_matching(selector):
        return [w for w in workloads if matches(selector, w["spec"]["template"]["metadata"].get("labels", {}))]

    def port_names(w):
        return {p.get("name") for c in pod_spec(w)["containers"] for p in c.get("ports", [])}

    for name, svc in by_kind.get("Service", {}).items():
        targets = pods_matching({"matchLabels": svc["spec"].get("selector", {})})
        if len(targets) != 1:
            fail(case, f"Service/{name} selects {len(targets)} workloads (expected 1)")
            continue
        for p in svc["spec"]["ports"]:
            if isinstance(p.get("targetPort"), str) and p["targetPort"] not in port_names(targets[0]):
                fail(case, f"Service/{name}: targetPort {p['targetPort']} is not a port of {targets[0]['metadata']['name']}")
    for name, pdb in by_kind.get("PodDisruptionBudget", {}).items():
        if len(pods_matching(pdb["spec"]["selector"])) != 1:
            fail(case, f"PodDisruptionBudget/{name} does not select exactly one workload")
    for w in workloads:
        wname = w["metadata"]["name"]
        if not matches(w["spec"]["selector"], w["spec"]["template"]["metadata"].get("labels", {})):
            fail(case, f"{w['kind']}/{wname}: selector does not match its pod template")
        spec = pod_spec(w)
        sa = spec.get("serviceAccountName", "default")
        if sa not in by_kind.get("ServiceAccount", {}) and (merged["serviceAccount"]["create"] or sa != (merged["serviceAccount"]["name"] or "default")):
            fail(case, f"{wname}: serviceAccountName {sa} is not rendered")
        for c in spec["containers"]:
            names = {p.get("name") for p in c.get("ports", [])}
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                port = (c.get(probe) or {}).get("httpGet", {}).get("port")
                if isinstance(port, str) and port not in names:
                    fail(case, f"{wname}/{c['name']}: {probe} port {port} is not declared")
            for env in c.get("env", []):
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if not ref:
                    continue
                secret = by_kind.get("Secret", {}).get(ref["name"])
                external = {(merged["auth"]["existingSecret"], merged["auth"]["existingSecretKey"]),
                            (merged["redis"]["existingSecret"], merged["redis"]["existingSecretKey"]),
                            (merged["secrets"]["existingSecret"], merged["secrets"]["existingSecretKey"])}
                if secret is not None:
                    if ref["key"] not in (secret.get("data") or {}) and ref["key"] not in (secret.get("stringData") or {}):
                        fail(case, f"{wname}: env {env['name']} wants key {ref['key']} that Secret/{ref['name']} lacks")
                elif (ref["name"], ref["key"]) not in external:
                    fail(case, f"{wname}: env {env['name']} refers to Secret/{ref['name']} that is neither rendered nor an existingSecret")
    deployments = by_kind.get("Deployment", {})
    for kind in ("ScaledObject", "HorizontalPodAutoscaler"):
        for name, o in by_kind.get(kind, {}).items():
            target = o["spec"]["scaleTargetRef"]
            if target.get("kind") != "Deployment" or target["name"] not in deployments:
                fail(case, f"{kind}/{name}: scaleTargetRef {target} is not a rendered Deployment")
    for name, ing in by_kind.get("Ingress", {}).items():
        for rule in ing["spec"].get("rules", []):
            for p in rule["http"]["paths"]:
                svc = by_kind.get("Service", {}).get(p["backend"]["service"]["name"])
                port = p["backend"]["service"]["port"].get("name")
                if svc is None or port not in {sp.get("name") for sp in svc["spec"]["ports"]}:
                    fail(case, f"Ingress/{name}: backend {p['backend']['service']} is not a rendered Service port")
    for name, sm in by_kind.get("ServiceMonitor", {}).items():
        selected = [s for s in by_kind.get("Service", {}).values() if matches(sm["spec"]["selector"], s["metadata"].get("labels", {}))]
        served = {p.get("name") for s in selected for p in s["spec"]["ports"]}
        components = {s["metadata"]["labels"].get("app.kubernetes.io/component") for s in selected}
        if components != {"gateway", "worker", "controller"}:
            fail(case, f"ServiceMonitor/{name} selects Services of {sorted(c for c in components if c)}, expected gateway, worker, controller")
        for ep in sm["spec"]["endpoints"]:
            if ep.get("port") not in served:
                fail(case, f"ServiceMonitor/{name}: endpoint port {ep.get('port')} is on none of its Services")


def check_contract(case, objs, merged):
    """What the roles' contract asks of the deployment, per values."""
    full = {o["kind"]: [] for o in objs}
    for o in objs:
        full[o["kind"]].append(o)
    deps = {o["metadata"]["labels"].get("app.kubernetes.io/component"): o for o in full.get("Deployment", [])}
    if set(deps) != {"gateway", "worker", "controller"}:
        fail(case, f"Deployments for {sorted(deps)}, expected gateway, worker, controller")
        return
    for comp, d in deps.items():
        spec = pod_spec(d)
        c = spec["containers"][0]
        if c.get("args") != [comp]:
            fail(case, f"{comp}: args {c.get('args')} (expected [{comp!r}])")
        psc, csc = spec.get("securityContext", {}), c.get("securityContext", {})
        if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            fail(case, f"{comp}: pod seccompProfile is not RuntimeDefault")
        if not (psc.get("runAsNonRoot") or csc.get("runAsNonRoot")):
            fail(case, f"{comp}: not runAsNonRoot")
        if csc.get("readOnlyRootFilesystem") is not True or csc.get("allowPrivilegeEscalation") is not False \
                or csc.get("capabilities", {}).get("drop") != ["ALL"]:
            fail(case, f"{comp}: container securityContext is not read-only / no-escalation / drop ALL")
        if spec.get("automountServiceAccountToken") is not False:
            fail(case, f"{comp}: mounts a service-account token no role uses")
        if (c.get("livenessProbe") or {}).get("httpGet", {}).get("path") != "/healthz" \
                or (c.get("readinessProbe") or {}).get("httpGet", {}).get("path") != "/readyz":
            fail(case, f"{comp}: probes are not /healthz (liveness) and /readyz (readiness)")
        env = {e["name"]: e for e in c.get("env", [])}
        for need in ["REDIS_URL", "EDDY_LOG", "EDDY_LOG_FORMAT"] + {
                "gateway": ["EDDY_LISTEN", "EDDY_ADMIN_KEY"],
                "worker": ["EDDY_METRICS_LISTEN", "EDDY_CONCURRENCY", "EDDY_LEASE_MS", "EDDY_CACHE_DIR"],
                "controller": ["EDDY_CONTROLLER_LISTEN", "EDDY_ADMIN_KEY"]}[comp]:
            if need not in env:
                fail(case, f"{comp}: env {need} missing")
        if merged["redis"]["cluster"] != (env.get("EDDY_REDIS_CLUSTER", {}).get("value") == "true"):
            fail(case, f"{comp}: EDDY_REDIS_CLUSTER does not follow redis.cluster")
        if "EDDY_ADMIN_KEY" in env and comp == "worker":
            fail(case, f"{comp}: gets the admin key it does not need")
    worker = deps["worker"]
    wspec = pod_spec(worker)
    wc = wspec["containers"][0]
    mounts = {m["mountPath"]: m["name"] for m in wc.get("volumeMounts", [])}
    cache_dir = next(e["value"] for e in wc["env"] if e["name"] == "EDDY_CACHE_DIR")
    vols = {v["name"]: v for v in wspec.get("volumes", [])}
    if "emptyDir" not in vols.get(mounts.get(cache_dir, ""), {}):
        fail(case, "worker: EDDY_CACHE_DIR is not an emptyDir mount")
    # The kubelet's own sleep action: the image is FROM scratch (no /bin/sleep).
    sleep = (wc.get("lifecycle") or {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    if merged["worker"]["preStopSleepSeconds"] and sleep != merged["worker"]["preStopSleepSeconds"]:
        fail(case, "worker: preStop is not a sleep of preStopSleepSeconds")
    if (wc.get("lifecycle") or {}).get("preStop", {}).get("exec"):
        fail(case, "worker: preStop runs a command, and the image has none")
    if int(sleep) >= wspec["terminationGracePeriodSeconds"]:
        fail(case, "worker: terminationGracePeriodSeconds leaves no time to drain after the preStop sleep")

    mode = merged["autoscaling"]["mode"]
    scaled = full.get("ScaledObject", [])
    hpas = full.get("HorizontalPodAutoscaler", [])
    want = {"keda": (1, 0), "hpa": (0, 1), "none": (0, 0)}[mode]
    if (len(scaled), len(hpas)) != want:
        fail(case, f"autoscaling.mode={mode}: {len(scaled)} ScaledObject(s), {len(hpas)} HPA(s)")
    if mode == "none":
        if worker["spec"].get("replicas") != merged["worker"]["replicas"]:
            fail(case, "mode none: the worker Deployment does not carry worker.replicas")
    elif "replicas" in worker["spec"]:
        fail(case, f"mode {mode}: the worker Deployment sets replicas, fighting the autoscaler")
    for so in scaled:
        trig = so["spec"]["triggers"]
        ctrl = next(s for s in full["Service"] if s["metadata"]["labels"].get("app.kubernetes.io/component") == "controller")
        expect_url = f"http://{ctrl['metadata']['name']}.{NAMESPACE}.svc:{ctrl['spec']['ports'][0]['port']}/replicas"
        ok = len(trig) == 1 and trig[0]["type"] == "metrics-api" and trig[0].get("metricType") == "AverageValue" \
            and trig[0]["metadata"] == {**trig[0]["metadata"], "url": expect_url, "valueLocation": "desired", "targetValue": "1"}
        if not ok:
            fail(case, f"ScaledObject: trigger is not metrics-api {expect_url} valueLocation=desired, AverageValue 1: {trig}")
    for h in hpas:
        m = h["spec"]["metrics"]
        if len(m) != 1 or m[0]["type"] != "External" or m[0]["external"]["target"] != {"type": "AverageValue", "averageValue": "1"}:
            fail(case, f"HPA: metric is not an External AverageValue 1: {m}")
    if not merged["redis"]["bundled"]["enabled"] and full.get("StatefulSet"):
        fail(case, "an external Redis is configured but the bundled StatefulSet is rendered")
    for sts in full.get("StatefulSet", []):
        cmd = " ".join(sts["spec"]["template"]["spec"]["containers"][0]["command"])
        if "--appendonly yes" not in cmd or f"--appendfsync {merged['redis']['bundled']['appendfsync']}" not in cmd:
            fail(case, f"bundled Redis is not AOF with appendfsync {merged['redis']['bundled']['appendfsync']}")
    kinds = {o["kind"] for o in objs}
    if kinds & {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}:
        fail(case, "RBAC rendered, but no role uses the Kubernetes API")


def load_values(path):
    with open(path) as f:
        return yaml.safe_load(f) or {}


# ---------------------------------------------------------------------- main

cfg = YamlLintConfig(file=os.path.join(chart_dir, ".yamllint"))
values_files = [os.path.join(chart_dir, "values.yaml")] + sorted(glob.glob(os.path.join(chart_dir, "ci", "*.yaml"))) \
    + sorted(glob.glob(os.path.join(chart_dir, "ci-broken", "*.yaml")))
for vf in values_files:
    with open(vf) as f:
        for p in linter.run(f.read(), cfg):
            if p.level == "error":
                fail("values files", f"yamllint {vf}:{p.line}:{p.column}: {p.desc} ({p.rule})")

cases = [("defaults", {})] + [(os.path.basename(p)[:-5], load_values(p))
                              for p in sorted(glob.glob(os.path.join(chart_dir, "ci", "*.yaml")))]
if len(cases) < 2:
    fail("ci", f"no values files in {chart_dir}/ci")
for case, values in cases:
    before = len(failures)
    try:
        note = check_case(case, values)
    except Exception:
        traceback.print_exc()
        fail(case, "the check itself crashed")
        note = ""
    summary.append((case, "ok" if len(failures) == before else "FAIL", note))

# The broken values files must be rejected by the schema, for the reasons they say.
broken = sorted(glob.glob(os.path.join(chart_dir, "ci-broken", "*.yaml")))
if not broken:
    fail("ci-broken", f"no values files in {chart_dir}/ci-broken: nothing shows the schema rejects anything")
for path in broken:
    case = "broken:" + os.path.basename(path)[:-5]
    print(f"== {case} (must be rejected)")
    with open(path) as f:
        text = f.read()
    expected = re.findall(r"^# expect-error: (.+?)\s*$", text, re.M)
    values = yaml.safe_load(text) or {}
    before = len(failures)
    with helm.Chart.load(chart_dir) as chart:
        try:
            chart.validate_schema(values)
            fail(case, "the values schema ACCEPTED a broken values file")
            message = ""
        except helm.HelmValuesError as e:
            message = str(e)
            print("  rejected by values.schema.json:")
            for line in message.splitlines():
                print(f"    {line}")
    try:
        helm_template(values)
        fail(case, "helm template ACCEPTED a broken values file")
    except helm.HelmError:
        print("  helm template: rejected")
    for want in expected:
        if message and want not in message:
            fail(case, f"the rejection does not mention {want!r}")
    if not expected:
        fail(case, "no '# expect-error:' lines: say what the schema must catch")
    report = helm.lint(chart_dir, values, strict=True, kube_version=f"v{kube_versions[0]}")
    if not [m for m in report["messages"] if m["severity"] >= 3] and not report.get("errors"):
        fail(case, "helm lint passed a broken values file")
    else:
        print("  helm lint: rejected")
    summary.append((case, "rejected" if len(failures) == before else "FAIL",
                    f"{len(expected)} expected errors found" if len(failures) == before else ""))

print()
print("chart-check summary")
for case, status, note in summary:
    print(f"  {status:8} {case:40} {note}")
if failures:
    print(f"\n{len(failures)} problem(s):")
    for case, msg in failures:
        print(f"  [{case}] {msg}")
print(f"\n{sum(1 for s in summary if s[1] != 'FAIL')} passed, {sum(1 for s in summary if s[1] == 'FAIL')} failed")
sys.exit(1 if failures else 0)
PYTHON
rc=$?
set -e
log "finished in $(( $(date +%s) - start ))s (exit $rc)"
exit $rc
