"""What billsync's rendered Kubernetes manifests must keep, beyond the API schemas.

Reads the output of `kubectl kustomize k8s` on stdin and prints one line per problem, naming
the object and what to fix; exits 1 when there is any. deploy/check-deploy.sh runs it after
kubernetes-validate has checked every object against the Kubernetes API schemas.

- every Deployment's containers have liveness and readiness probes, CPU and memory requests
  and a memory limit;
- every Deployment with more than one replica has a PodDisruptionBudget selecting its pods;
- every Deployment's pods are selected by a NetworkPolicy that restricts ingress, and the
  only policy rule open to every source selects ingest's pods alone (Stripe's webhooks).
"""

import sys

import yaml


def selects(selector, labels):
    """Whether a LabelSelector with matchLabels only selects pods with these labels."""
    if selector is None:
        return False
    if selector.get("matchExpressions"):
        raise ValueError("matchExpressions are not supported by this check")
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def open_to_everyone(rule):
    """A NetworkPolicy ingress rule with no `from` (or an ipBlock of 0.0.0.0/0)."""
    peers = rule.get("from")
    if not peers:
        return True
    return any((p.get("ipBlock") or {}).get("cidr") in ("0.0.0.0/0", "::/0") for p in peers)


def problems(objects):
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    budgets = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    ingest_labels = None
    for deployment in deployments:
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]
        labels = pod["metadata"].get("labels") or {}
        if labels.get("app.kubernetes.io/component") == "ingest":
            ingest_labels = labels
        for container in pod["spec"]["containers"]:
            where = f"Deployment {name}, container {container['name']}"
            for probe in ("livenessProbe", "readinessProbe"):
                if probe not in container:
                    yield f"{where}: no {probe} (add one on /healthz or /readyz)"
            resources = container.get("resources") or {}
            for kind in ("cpu", "memory"):
                if kind not in (resources.get("requests") or {}):
                    yield f"{where}: no resources.requests.{kind}"
            if "memory" not in (resources.get("limits") or {}):
                yield f"{where}: no resources.limits.memory"
        if deployment["spec"].get("replicas", 1) > 1 and not any(
            selects(b["spec"].get("selector"), labels) for b in budgets
        ):
            yield (
                f"Deployment {name}: {deployment['spec']['replicas']} replicas and no "
                "PodDisruptionBudget selecting its pods (add one with maxUnavailable: 1)"
            )
        if not any(
            "Ingress" in p["spec"].get("policyTypes", [])
            and selects(p["spec"].get("podSelector"), labels)
            for p in policies
        ):
            yield f"Deployment {name}: no NetworkPolicy restricts ingress to its pods"
    for policy in policies:
        for rule in policy["spec"].get("ingress") or []:
            if not open_to_everyone(rule):
                continue
            selector = policy["spec"].get("podSelector")
            if ingest_labels is None or not selects(selector, ingest_labels) or any(
                selects(selector, d["spec"]["template"]["metadata"].get("labels") or {})
                for d in deployments
                if d["spec"]["template"]["metadata"].get("labels") != ingest_labels
            ):
                yield (
                    f"NetworkPolicy {policy['metadata']['name']}: a rule open to every source "
                    "selects pods other than ingest's; only Stripe's webhooks come from outside"
                )


def main():
    objects = [o for o in yaml.safe_load_all(sys.stdin) if o]
    found = list(problems(objects))
    for problem in found:
        print(f"ERROR {problem}")
    kinds = sorted({o["kind"] for o in objects})
    print(f"checked {len(objects)} objects ({', '.join(kinds)}): {len(found)} problem(s)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
