#!/usr/bin/env bash
# Checks the deployment files with the tools that consume them (`make lint` runs this):
#
# 1. `kubectl kustomize k8s`, `k8s/monitoring` and `k8s/nats-cluster` render (the last one's
#    nats.conf must also pass `nats-server -t`);
# 2. every rendered object validates against the Kubernetes API schemas (kubernetes-validate,
#    offline, strict: unknown fields are errors) of the oldest and the newest Kubernetes
#    release billsync supports;
# 3. deploy/check-deploy.py: probes, requests and limits, a PodDisruptionBudget per
#    Deployment with more than one replica, NetworkPolicies leaving only ingest open;
# 4. the alerting rules pass `promtool check rules` and their unit tests
#    (`promtool test rules k8s/monitoring/tests/*.yaml`), and so do the dashboard's queries
#    as the recording rules `make observe` loads;
# 5. a self-test: broken copies of the manifests must fail steps 2 and 3, so a check that
#    stopped checking shows up here.
#
# Tools are installed when missing (deploy/ensure-check-tools.sh).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
tools=$(deploy/ensure-check-tools.sh | tail -n 1)
PATH="$tools:$PATH"
python="$tools/python3"
# Kubernetes releases still supported upstream when this was written, oldest and newest.
versions=(1.31.0 1.37.0)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Validates a rendered file against every supported release; quiet unless it fails.
validate() {
    local version
    for version in "${versions[@]}"; do
        kubernetes-validate --strict --quiet --no-warn -k "$version" "$1" || return 1
    done
}

kubectl kustomize k8s >"$tmp/base.yaml"
validate "$tmp/base.yaml" || die "k8s/ does not validate against the Kubernetes API (above)"
"$python" deploy/check-deploy.py <"$tmp/base.yaml" || die "k8s/ misses what billsync's deployment needs (above)"
log "k8s/: $(grep -c '^kind:' "$tmp/base.yaml") objects valid for Kubernetes ${versions[*]}"

# The reference JetStream cluster: its objects, and its nats.conf as nats-server reads it.
kubectl kustomize k8s/nats-cluster >"$tmp/nats-cluster.yaml"
validate "$tmp/nats-cluster.yaml" || die "k8s/nats-cluster does not validate against the Kubernetes API (above)"
if command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ]; then
    checked=$(SERVER_NAME=nats-0 "$(command -v nats-server || echo /usr/sbin/nats-server)" -t \
        -c k8s/nats-cluster/nats.conf 2>&1) ||
        die "k8s/nats-cluster/nats.conf: nats-server refuses it: $checked"
else
    die "nats-server not found: run deploy/ensure-nats.sh (make services) first"
fi
log "k8s/nats-cluster: $(grep -c '^kind:' "$tmp/nats-cluster.yaml") objects valid, nats.conf accepted by $(nats-server --version 2>/dev/null || /usr/sbin/nats-server --version)"

# The Prometheus Operator's kinds have no schema in kubernetes-validate; promtool checks the
# rules, which is what Prometheus loads from them.
kubectl kustomize k8s/monitoring >"$tmp/monitoring.yaml"
"$python" - "$tmp/monitoring.yaml" "$tmp/billsync-rules.yaml" <<'EOF'
import sys, yaml
rules = [o for o in yaml.safe_load_all(open(sys.argv[1])) if o and o["kind"] == "PrometheusRule"]
assert len(rules) == 1, f"expected one PrometheusRule in k8s/monitoring, found {len(rules)}"
yaml.safe_dump(rules[0]["spec"], open(sys.argv[2], "w"), sort_keys=False)
EOF
promtool check rules "$tmp/billsync-rules.yaml" >/dev/null ||
    die "k8s/monitoring/prometheus-rules.yaml: promtool refuses the rules (above)"
cp k8s/monitoring/tests/*.yaml "$tmp/"
(cd "$tmp" && promtool test rules ./*.test.yaml) >"$tmp/promtool-test.log" 2>&1 || {
    cat "$tmp/promtool-test.log" >&2
    die "k8s/monitoring/tests: an alert fires when it should not or stays quiet when it should (above)"
}
# The recording rules `make observe` loads, one per dashboard query.
"$python" deploy/dashboard-rules.py >"$tmp/dashboard-rules.yml"
promtool check rules "$tmp/dashboard-rules.yml" >/dev/null ||
    die "deploy/dashboard-rules.py: promtool refuses the dashboard's queries as rules (above)"
alerts=$(grep -c -- '- alert:' k8s/monitoring/prometheus-rules.yaml)
tested=$(grep -ho 'alertname: [A-Za-z]*' k8s/monitoring/tests/*.yaml | sort -u | wc -l)
[ "$alerts" -eq "$tested" ] ||
    die "k8s/monitoring: $alerts alerts but $tested have tests in k8s/monitoring/tests"
log "k8s/monitoring: $alerts alerts pass promtool check rules and their tests"

# Self-test: each broken copy must be refused.
sed -E 's/containerPort: ([0-9]+)/containerPort: "port \1"/' "$tmp/base.yaml" >"$tmp/bad-type.yaml"
sed -E 's/^  replicas:/  replica_count:/' "$tmp/base.yaml" >"$tmp/bad-field.yaml"
for bad in bad-type bad-field; do
    if validate "$tmp/$bad.yaml" >/dev/null 2>&1; then
        die "self-test: kubernetes-validate accepted a broken manifest ($bad)"
    fi
done
"$python" - "$tmp/base.yaml" "$tmp/no-budget.yaml" <<'EOF'
import sys, yaml
objects = [o for o in yaml.safe_load_all(open(sys.argv[1])) if o and o["kind"] != "PodDisruptionBudget"]
yaml.safe_dump_all(objects, open(sys.argv[2], "w"))
EOF
if "$python" deploy/check-deploy.py <"$tmp/no-budget.yaml" >/dev/null; then
    die "self-test: check-deploy.py accepted Deployments without PodDisruptionBudgets"
fi
log "self-test: broken copies are refused"
