#!/usr/bin/env bash
# The local demo behind `make run`: Stripe and Chargebee → billsync → ActiveCampaign, all on
# this machine.
#
# Ensures NATS, PostgreSQL and the `billsync` database; builds `billsync` and
# `billsync-sandbox` (release); starts the sandbox (emulated vendor APIs: an ActiveCampaign
# account with list 1, a Chargebee site) and `billsync up`; sends a few signed demo Stripe
# webhooks and creates a few customers in the Chargebee site; prints where to look; runs until
# Ctrl-C, then stops both processes gracefully. Logs go to .run/ in the repository.
#
# Environment: BILLSYNC_DEMO_CONFIG (billsync.example.toml), BILLSYNC_DEMO_EVENTS (5),
# BILLSYNC_DEMO_WAIT_SECS (90: how long to wait for the services to become ready),
# BILLSYNC_DEMO_NO_BUILD=1 (use the binaries already built), CARGO_TARGET_DIR (cargo's;
# default target/).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source deploy/lib.sh

config=${BILLSYNC_DEMO_CONFIG:-billsync.example.toml}
events=${BILLSYNC_DEMO_EVENTS:-5}
wait_secs=${BILLSYNC_DEMO_WAIT_SECS:-90}
run_dir=$repo/.run
stop_grace_secs=15

# These match billsync.example.toml and the sandbox's command line below.
sandbox=127.0.0.1:9100
ingest=127.0.0.1:8080
errors=127.0.0.1:8090
worker_ports=(8091 8092 8093)
worker_names=(activecampaign zoho pipedrive)
stripe_connection=stripe-demo
ac_account=demo
cb_site=demo-site
cb_connection=cb-demo
zoho_org=demo-org

# Demo values only: the sandbox accepts them, no real vendor ever sees them.
export STRIPE_WEBHOOK_SECRET=whsec_demo_0123456789abcdefghijklmnopqrstuv
export AC_API_TOKEN=demo-token
export CHARGEBEE_API_KEY=cb_demo_key
export PIPEDRIVE_API_TOKEN=demo-pd-token
export BILLSYNC_ADMIN_TOKEN=demo-admin
export ZOHO_CLIENT_ID=1000.DEMOCLIENT ZOHO_CLIENT_SECRET=demo-zoho-secret \
    ZOHO_REFRESH_TOKEN=1000.demo-refresh-token
# Plain log files, without terminal colour codes.
export NO_COLOR=1

step() {
    printf '\n==> %s\n' "$*"
}

[ -f "$config" ] || die "configuration file $config not found"

for port in 8080 8090 "${worker_ports[@]}" 9100; do
    if tcp_open 127.0.0.1 "$port"; then
        die "port $port is already in use. Is an earlier 'make run' still running? ('make clean-run'
  stops one left behind; 'ss -ltnp \"sport = :$port\"' shows who holds the port.)"
    fi
done

step "Making sure NATS (JetStream) and PostgreSQL run"
deploy/ensure-nats.sh
deploy/ensure-postgres.sh
deploy/ensure-database.sh billsync

if [ "${BILLSYNC_DEMO_NO_BUILD:-0}" != 1 ]; then
    step "Building billsync and billsync-sandbox (release)"
    cargo build --release -p billsync -p billsync-sandbox
fi
target_dir=${CARGO_TARGET_DIR:-target}
case $target_dir in
    /*) ;;
    *) target_dir=$repo/$target_dir ;;
esac
bin=$target_dir/release
for b in billsync billsync-sandbox; do
    [ -x "$bin/$b" ] || die "$bin/$b was not built"
done

mkdir -p "$run_dir"
sandbox_log=$run_dir/sandbox.log
billsync_log=$run_dir/billsync.log
stripe_log=$run_dir/stripe-demo.log
chargebee_log=$run_dir/chargebee-demo.log
sandbox_pid=
billsync_pid=

# SIGTERM, then up to $stop_grace_secs for in-flight work to finish, then SIGKILL.
# shellcheck disable=SC2317 # called from the traps
stop_process() {
    local name=$1 pid=$2
    [ -n "$pid" ] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < stop_grace_secs * 5; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name did not stop within ${stop_grace_secs}s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# shellcheck disable=SC2317 # called from the traps
stop_all() {
    # billsync first: its workers finish in-flight writes to the sandbox.
    stop_process billsync "$billsync_pid"
    billsync_pid=
    stop_process sandbox "$sandbox_pid"
    sandbox_pid=
    rm -f "$run_dir/billsync.pid" "$run_dir/sandbox.pid"
}

# shellcheck disable=SC2317 # called from the traps
on_signal() {
    trap - INT TERM
    printf '\n'
    log "stopping the demo"
    stop_all
    log "stopped; logs stay in .run/"
    exit 0
}

trap on_signal INT TERM
trap stop_all EXIT

# Fails with the tail of the process's log when it died or did not become ready in time.
wait_ready() {
    local name=$1 pid=$2 logfile=$3 hostport=$4 path=$5
    local host=${hostport%:*} port=${hostport#*:}
    for ((i = 0; i < wait_secs * 4; i++)); do
        if [ "$(http_status "$host" "$port" "$path")" = 200 ]; then
            log "$name ready: http://$hostport$path"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            log "$name exited; last lines of $logfile:"
            tail -n 40 "$logfile" >&2 || true
            die "$name did not start (full log: $logfile)"
        fi
        sleep 0.25
    done
    log "last lines of $logfile:"
    tail -n 40 "$logfile" >&2 || true
    die "$name was not ready at http://$hostport$path within ${wait_secs}s (full log: $logfile)"
}

step "Starting the sandbox and billsync"
"$bin/billsync-sandbox" serve --listen "$sandbox" --ac-account "$ac_account:$AC_API_TOKEN" \
    --cb-site "$cb_site:$CHARGEBEE_API_KEY" \
    --zoho-org "$zoho_org:$ZOHO_CLIENT_ID:$ZOHO_CLIENT_SECRET:$ZOHO_REFRESH_TOKEN" \
    --pipedrive-company "demo:$PIPEDRIVE_API_TOKEN" \
    >"$sandbox_log" 2>&1 &
sandbox_pid=$!
echo "$sandbox_pid" >"$run_dir/sandbox.pid"
wait_ready sandbox "$sandbox_pid" "$sandbox_log" "$sandbox" /
# The list the Chargebee sync subscribes contacts to (list_id = 1 in $config).
"$bin/billsync-sandbox" activecampaign-list --url "http://$sandbox" --account "$ac_account" \
    --token "$AC_API_TOKEN" --name Customers >>"$sandbox_log" 2>&1 ||
    die "creating the demo's ActiveCampaign list failed; see $sandbox_log"

"$bin/billsync" up --config "$config" >"$billsync_log" 2>&1 &
billsync_pid=$!
echo "$billsync_pid" >"$run_dir/billsync.pid"
wait_ready "billsync ingest" "$billsync_pid" "$billsync_log" "$ingest" /readyz
wait_ready "billsync errors" "$billsync_pid" "$billsync_log" "$errors" /readyz

step "Sending $events signed demo Stripe webhooks to ingest"
if ! "$bin/billsync-sandbox" stripe-demo \
    --url "http://$ingest/webhooks/stripe/$stripe_connection" \
    --secret-env STRIPE_WEBHOOK_SECRET --count "$events" --interval-ms 1000 2>&1 |
    tee "$stripe_log"; then
    log "WARNING: stripe-demo failed; see $stripe_log and $billsync_log. The services keep running."
fi

step "Creating 3 customers with a subscription each in the Chargebee site '$cb_site'"
if ! "$bin/billsync-sandbox" chargebee-demo --url "http://$sandbox" --site "$cb_site" \
    --count 3 --interval-ms 1000 2>&1 | tee "$chargebee_log"; then
    log "WARNING: chargebee-demo failed; see $chargebee_log and $sandbox_log. The services keep running."
fi

metrics="    http://$ingest/metrics  (ingest)
    http://$errors/metrics  (errors)"
for i in "${!worker_ports[@]}"; do
    port=${worker_ports[$i]}
    if [ "$(http_status 127.0.0.1 "$port" /healthz)" = 200 ]; then
        metrics+="
    http://127.0.0.1:$port/metrics  (${worker_names[$i]} worker)"
    fi
done

cat <<EOF

==> The billsync demo is running. Press Ctrl-C to stop it.

What happened: $events signed Stripe webhooks went to ingest (connection '$stripe_connection'),
through JetStream to the ActiveCampaign worker, into the sandbox's emulated ActiveCampaign
account '$ac_account' (connection 'ac-demo' in $config). 3 customers were created in the
emulated Chargebee site '$cb_site' (connection '$cb_connection'): ingest polls it every 10 s,
and their contacts, with the Cb_* fields, join list 1 of the same account. The same
customers become contacts (company: account "Demo Inc.") and their subscriptions deals in the
sandbox's emulated Zoho CRM organisation '$zoho_org' (connection 'zoho-demo'). The same Stripe
and Chargebee customers are persons in the emulated Pipedrive company 'demo' (connection
'pd-demo'), Stripe's subscriptions deals worth their MRR; Chargebee's deals follow once
'billsync --config $config sync all --connection $cb_connection --to pd-demo' has run.

Where to look:
  Sandbox (emulated vendors, index):   http://$sandbox/
  ActiveCampaign account state (JSON): http://$sandbox/__sandbox/activecampaign/$ac_account
  Chargebee site state (JSON):         http://$sandbox/__sandbox/chargebee/$cb_site
  Zoho CRM organisation (JSON):        http://$sandbox/__sandbox/zoho/$zoho_org
  Pipedrive company state (JSON):      http://$sandbox/__sandbox/pipedrive/demo
  Errors service (admin API, web page): http://$errors/
    admin token (demo): $BILLSYNC_ADMIN_TOKEN
    e.g. curl -H 'Authorization: Bearer $BILLSYNC_ADMIN_TOKEN' http://$errors/
  Health: http://$ingest/readyz  http://$errors/readyz
  Metrics (Prometheus):
$metrics
  Graphs: run 'make observe' in another terminal (Prometheus on http://127.0.0.1:9090 with
    every dashboard panel recorded)

Logs:
  billsync:    $billsync_log
  sandbox:     $sandbox_log
  stripe-demo: $stripe_log
  chargebee-demo: $chargebee_log
  (follow with: tail -f $billsync_log)

Send more events:
  STRIPE_WEBHOOK_SECRET=$STRIPE_WEBHOOK_SECRET $bin/billsync-sandbox stripe-demo \\
    --url http://$ingest/webhooks/stripe/$stripe_connection --secret-env STRIPE_WEBHOOK_SECRET --count 5
Poll Chargebee now rather than within 10 s:
  CHARGEBEE_API_KEY=$CHARGEBEE_API_KEY STRIPE_WEBHOOK_SECRET=$STRIPE_WEBHOOK_SECRET \\
    $bin/billsync --config $config sync-now --connection $cb_connection
More in README.md, "Chargebee quick start".
EOF

# Runs until Ctrl-C (on_signal) or until one of the two exits by itself.
status=0
wait -n "$billsync_pid" "$sandbox_pid" || status=$?
if ! kill -0 "$billsync_pid" 2>/dev/null; then
    log "billsync exited (status $status); last lines of $billsync_log:"
    tail -n 40 "$billsync_log" >&2 || true
else
    log "the sandbox exited (status $status); last lines of $sandbox_log:"
    tail -n 40 "$sandbox_log" >&2 || true
fi
exit 1
