#!/usr/bin/env bash
# Validates the deployment files without Docker, Kafka or a Kubernetes cluster:
#
#   - deploy/prometheus: `promtool check config` (the rule file path must resolve),
#     `promtool check rules`, and `promtool test rules` on alerts_test.yml (the alerts fire, and
#     stay quiet, on synthetic series);
#   - deploy/grafana: the dashboard is valid JSON, uses the datasource variable, and every query is
#     valid PromQL (promtool parses them after the Grafana variables are substituted); the
#     provisioning files are valid YAML;
#   - docker-compose.yml: `docker-compose config -q` (v1 parses without an engine) or
#     `docker compose config -q`;
#   - deploy/kubernetes: every manifest is valid YAML with apiVersion, kind and metadata.name, the
#     probes name a declared port, and `kustomize build` (kubectl's or a standalone one) renders;
#   - Cargo.lock is current, as the Dockerfile's `cargo build --locked` needs.
#
# The Dockerfile itself cannot be built here (no Docker engine). tests/deploy.rs checks that these
# files agree with the code (metric names, environment variables, topics, ports):
#   cargo test --test deploy
#
# Installs promtool (Debian's prometheus package) and docker-compose with apt-get when they are
# missing and this runs as root. Exits non-zero when any check fails.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

need() { command -v "$1" >/dev/null 2>&1; }
passed=()
failed=()
skipped=()
pass() { passed+=("$1"); echo "check-deploy: PASS $1"; }
fail() { failed+=("$1"); echo "check-deploy: FAIL $1" >&2; }
skip() { skipped+=("$1"); echo "check-deploy: SKIP $1"; }
# run NAME COMMAND...: runs the command, records the result under NAME.
run() {
  local name="$1"; shift
  local out
  if out="$("$@" 2>&1)"; then
    pass "$name"
  else
    printf '%s\n' "$out" >&2
    fail "$name"
  fi
}

# ---- tools ----------------------------------------------------------------------------------
apt_updated=
apt_install() {
  if ! need apt-get || [ "$(id -u)" != 0 ]; then
    return 1
  fi
  if [ -z "$apt_updated" ]; then
    apt-get update -qq >/dev/null || return 1
    apt_updated=1
  fi
  # The prometheus package ships a service; keep apt from starting it (only promtool is used).
  local policy=/usr/sbin/policy-rc.d created=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  local rc=$?
  if [ -n "$created" ]; then rm -f "$policy"; fi
  return $rc
}

if ! need promtool; then
  echo "check-deploy: installing promtool (Debian package prometheus)"
  apt_install prometheus || echo "check-deploy: could not install prometheus (needs root and apt-get)" >&2
fi
compose=()
if need docker-compose; then
  compose=(docker-compose)
elif need docker && docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
else
  echo "check-deploy: installing docker-compose (Debian package docker-compose)"
  if apt_install docker-compose && need docker-compose; then
    compose=(docker-compose)
  else
    echo "check-deploy: could not install docker-compose (needs root and apt-get)" >&2
  fi
fi

# A python3 with PyYAML, for the YAML checks (Debian's docker-compose brings python3-yaml).
py=
for candidate in python3 /usr/bin/python3; do
  if need "$candidate" && "$candidate" -c 'import yaml' >/dev/null 2>&1; then
    py="$candidate"
    break
  fi
done
json_py=
if need python3; then json_py=python3; fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# ---- Prometheus -----------------------------------------------------------------------------
if need promtool; then
  echo "check-deploy: $(promtool --version 2>&1 | head -n 1)"
  run "promtool check config deploy/prometheus/prometheus.yml" \
    promtool check config deploy/prometheus/prometheus.yml
  run "promtool check rules deploy/prometheus/alerts.yml" \
    promtool check rules deploy/prometheus/alerts.yml
  run "promtool test rules deploy/prometheus/alerts_test.yml" \
    promtool test rules deploy/prometheus/alerts_test.yml
else
  fail "promtool is not available: Prometheus configuration and rules not checked"
fi

# ---- Grafana --------------------------------------------------------------------------------
dashboard=deploy/grafana/dashboards/callstream.json
if [ -n "$json_py" ]; then
  # Valid JSON, the datasource variable, and every query written out as a recording rule so that
  # promtool parses its PromQL ($__rate_interval and the other Grafana variables substituted).
  if out="$("$json_py" - "$dashboard" "$tmp/dashboard_rules.yml" <<'PY' 2>&1
import json, sys

dashboard = json.load(open(sys.argv[1]))
problems = []
variables = {v.get("name"): v for v in dashboard.get("templating", {}).get("list", [])}
if variables.get("datasource", {}).get("type") != "datasource":
    problems.append("no datasource variable named 'datasource'")

exprs = []
def walk(node, where):
    if isinstance(node, dict):
        ds = node.get("datasource")
        if isinstance(ds, dict) and ds.get("type") == "prometheus" and ds.get("uid") != "${datasource}":
            problems.append(f"{where}: datasource {ds} is not the ${{datasource}} variable")
        if isinstance(node.get("expr"), str):
            exprs.append((where, node["expr"]))
        for key, value in node.items():
            walk(value, f"{where}/{node.get('title', key) if key == 'panels' else key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            walk(value, f"{where}[{i}]")
walk(dashboard, "dashboard")
if not exprs:
    problems.append("no queries found")

ids = [p.get("id") for p in dashboard.get("panels", [])]
if len(ids) != len(set(ids)):
    problems.append("duplicate panel ids")

substitutions = {
    "$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h",
    "${datasource}": "prometheus", "$instance": ".*",
}
with open(sys.argv[2], "w") as out:
    out.write("groups:\n  - name: dashboard\n    rules:\n")
    for i, (_, expr) in enumerate(exprs):
        for var, value in substitutions.items():
            expr = expr.replace(var, value)
        if "$" in expr:
            problems.append(f"unsubstituted Grafana variable in {expr!r}")
        out.write(f"      - record: dashboard:query_{i}\n        expr: {json.dumps(expr)}\n")
print(f"{len(exprs)} queries")
if problems:
    print("\n".join(problems))
    sys.exit(1)
PY
  )"; then
    pass "$dashboard is valid JSON with a datasource variable ($out)"
    if need promtool; then
      run "$dashboard: every query is valid PromQL (promtool)" promtool check rules "$tmp/dashboard_rules.yml"
    fi
  else
    printf '%s\n' "$out" >&2
    fail "$dashboard"
  fi
else
  fail "python3 is not available: $dashboard not checked"
fi

yaml_check() { # FILE...: each is valid YAML (all documents)
  "$py" -c 'import sys, yaml
for path in sys.argv[1:]:
    list(yaml.safe_load_all(open(path)))' "$@"
}
if [ -n "$py" ]; then
  run "Grafana provisioning files are valid YAML" \
    yaml_check deploy/grafana/provisioning/datasources/prometheus.yml deploy/grafana/provisioning/dashboards/callstream.yml
else
  skip "Grafana provisioning YAML (no python3 with PyYAML)"
fi

# ---- docker-compose.yml ---------------------------------------------------------------------
if [ "${#compose[@]}" -gt 0 ]; then
  echo "check-deploy: $("${compose[@]}" version 2>&1 | head -n 1)"
  run "${compose[*]} -f docker-compose.yml config -q" "${compose[@]}" -f docker-compose.yml config -q
else
  fail "docker-compose is not available: docker-compose.yml not checked"
fi

# ---- Kubernetes -----------------------------------------------------------------------------
k8s=deploy/kubernetes
if [ -n "$py" ]; then
  run "$k8s manifests: valid YAML, apiVersion/kind/metadata.name, probes on declared ports, kustomization lists every file" \
    "$py" - "$k8s" <<'PY'
import os, sys, yaml

root = sys.argv[1]
problems = []
kustomization = yaml.safe_load(open(os.path.join(root, "kustomization.yaml")))
resources = kustomization.get("resources", [])
manifests = sorted(f for f in os.listdir(root) if f.endswith(".yaml") and f != "kustomization.yaml")
if sorted(resources) != manifests:
    problems.append(f"kustomization resources {sorted(resources)} != files {manifests}")
for name in manifests:
    for doc in yaml.safe_load_all(open(os.path.join(root, name))):
        if doc is None:
            continue
        for key in ("apiVersion", "kind"):
            if not doc.get(key):
                problems.append(f"{name}: no {key}")
        if not doc.get("metadata", {}).get("name"):
            problems.append(f"{name}: no metadata.name")
        if doc.get("kind") == "Deployment":
            spec = doc["spec"]
            labels = spec["template"]["metadata"]["labels"]
            for k, v in spec["selector"]["matchLabels"].items():
                if labels.get(k) != v:
                    problems.append(f"{name}: selector {k}={v} does not match the pod labels")
            for c in spec["template"]["spec"]["containers"]:
                ports = {p.get("name") for p in c.get("ports", [])} | {p["containerPort"] for p in c.get("ports", [])}
                for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                    if probe in c and c[probe]["httpGet"]["port"] not in ports:
                        problems.append(f"{name}: {probe} port {c[probe]['httpGet']['port']} is not declared")
if problems:
    print("\n".join(problems))
    sys.exit(1)
PY
else
  skip "$k8s manifests (no python3 with PyYAML)"
fi
if need kustomize; then
  run "kustomize build $k8s" kustomize build "$k8s"
elif need kubectl && kubectl kustomize --help >/dev/null 2>&1; then
  run "kubectl kustomize $k8s" kubectl kustomize "$k8s"
else
  skip "kustomize build $k8s (neither kustomize nor kubectl is installed)"
fi

# ---- Dockerfile -----------------------------------------------------------------------------
# The image cannot be built here; what can be checked is that `cargo build --locked` will accept
# the lock file (cargo metadata resolves without building, and refuses to rewrite Cargo.lock).
if need cargo; then
  run "Cargo.lock is current for Cargo.toml (the Dockerfile builds with --locked)" \
    cargo metadata --locked --format-version 1
else
  skip "Cargo.lock check (no cargo)"
fi

# ---- summary --------------------------------------------------------------------------------
echo
echo "check-deploy: ${#passed[@]} passed, ${#failed[@]} failed, ${#skipped[@]} skipped"
echo "check-deploy: not checked here: building the Dockerfile and running the stack (no Docker engine), applying the manifests (no cluster); run 'cargo test --test deploy' for the code-consistency checks"
if [ "${#failed[@]}" -gt 0 ]; then
  for f in "${failed[@]}"; do echo "check-deploy: failed: $f" >&2; done
  exit 1
fi
