#!/usr/bin/env bash
# `make observe`: a Prometheus on 127.0.0.1:9090 scraping the running demo (`make run`, in
# another terminal) every 5 s, with billsync's alerting rules and every query of the Grafana
# dashboard as a recording rule (`billsync_dashboard:<panel>`), so the graphs can be watched
# in Prometheus's own UI without a Grafana. Ctrl-C stops it; its data stays in
# .run/prometheus until `make clean-run`.
#
# Environment: BILLSYNC_OBSERVE_PORT (9090), BILLSYNC_OBSERVE_TARGET (127.0.0.1:8080: any
# port of `billsync up` serves the same metrics).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
port=${BILLSYNC_OBSERVE_PORT:-9090}
target=${BILLSYNC_OBSERVE_TARGET:-127.0.0.1:8080}
dir=$repo/.run/prometheus

tools=$(deploy/ensure-check-tools.sh | tail -n 1)
if ! tcp_open "${target%:*}" "${target#*:}"; then
    die "nothing listens on $target: start the demo first ('make run' in another terminal)"
fi
if tcp_open 127.0.0.1 "$port"; then
    die "port $port is taken (another Prometheus?); set BILLSYNC_OBSERVE_PORT"
fi

mkdir -p "$dir"
python3 deploy/dashboard-rules.py >"$dir/dashboard-rules.yml"
kubectl kustomize k8s/monitoring | "$tools/python3" -c '
import sys, yaml
rules = [o for o in yaml.safe_load_all(sys.stdin) if o and o["kind"] == "PrometheusRule"]
yaml.safe_dump(rules[0]["spec"], sys.stdout, sort_keys=False)' >"$dir/alert-rules.yml"
cat >"$dir/prometheus.yml" <<EOF
global:
  scrape_interval: 5s
  evaluation_interval: 15s
rule_files:
  - dashboard-rules.yml
  - alert-rules.yml
scrape_configs:
  # The alerts' BillsyncTargetDown matches jobs named billsync-*.
  - job_name: billsync-up
    static_configs:
      - targets: ['$target']
EOF
promtool check config "$dir/prometheus.yml" >/dev/null

url=http://127.0.0.1:$port
graph() {
    printf '%s/graph?g0.expr=%s&g0.tab=0&g0.range_input=15m' "$url" \
        "$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$1")"
}
cat <<EOF

==> Prometheus for the demo: $url (scraping $target every 5 s). Ctrl-C stops it.

  Every dashboard panel is a recorded series: type billsync_dashboard: in the query box.
  Webhooks by result:      $(graph 'billsync_dashboard:webhooks_received_by_result')
  Worker events:           $(graph 'billsync_dashboard:worker_events_by_destination_and_result')
  CRM requests by status:  $(graph 'billsync_dashboard:crm_requests_by_destination_and_status')
  Alerts (pending/firing): $url/alerts
  Send more events (see 'make run' output) and watch the graphs move.

  The full dashboard needs Grafana: import deploy/grafana/billsync-dashboard.json and point
  its Prometheus variable at $url (README, "Monitoring").

EOF
exec prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
    --web.listen-address="127.0.0.1:$port" --log.level=warn
