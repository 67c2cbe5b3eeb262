"""Prints Prometheus recording rules for every query of the Grafana dashboard.

`make observe` loads them into the Prometheus it starts against the demo, so that each panel
of deploy/grafana/billsync-dashboard.json can be graphed in Prometheus's own UI as
`billsync_dashboard:<panel>` (Grafana's `$__rate_interval` becomes 1m, `$__range` 1h).
`make lint` checks the output with `promtool check rules`. The output is JSON, which
Prometheus reads as YAML.

Usage: python3 deploy/dashboard-rules.py [DASHBOARD_JSON] > rules.yml
"""

import json
import re
import sys


def panels(items):
    for panel in items:
        yield panel
        yield from panels(panel.get("panels", []))


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "deploy/grafana/billsync-dashboard.json"
    with open(path, encoding="utf-8") as file:
        dashboard = json.load(file)
    rules, seen = [], set()
    for panel in panels(dashboard["panels"]):
        targets = [t for t in panel.get("targets", []) if t.get("expr")]
        slug = re.sub(r"[^a-z0-9]+", "_", panel.get("title", "panel").lower()).strip("_")
        for index, target in enumerate(targets):
            name = f"billsync_dashboard:{slug}" + (f"_{target['refId'].lower()}" if len(targets) > 1 else "")
            if name in seen:
                sys.exit(f"two dashboard queries would be recorded as {name}: rename a panel")
            seen.add(name)
            expr = target["expr"].replace("$__rate_interval", "1m").replace("$__range", "1h")
            if "$" in expr:
                sys.exit(f"panel {panel.get('title')!r} uses a variable this script does not fill: {expr}")
            rules.append({"record": name, "expr": expr})
    json.dump({"groups": [{"name": "billsync-dashboard", "interval": "15s", "rules": rules}]},
              sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
