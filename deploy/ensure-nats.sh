#!/usr/bin/env bash
# Makes sure a NATS server with JetStream answers on 127.0.0.1:4222.
#
# Does nothing when one already answers. Otherwise installs Debian's `nats-server` if the
# binary is missing and starts it with JetStream: through its systemd unit when systemd runs
# the machine (so it survives reboots), else as a background daemon. Waits up to 30 s.
#
# Environment: NATS_HOST (127.0.0.1), NATS_PORT (4222), NATS_STORE_DIR (/var/lib/nats-server),
# NATS_LOG_FILE (/var/log/nats-server.log).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

host=${NATS_HOST:-127.0.0.1}
port=${NATS_PORT:-4222}
store_dir=${NATS_STORE_DIR:-/var/lib/nats-server}
log_file=${NATS_LOG_FILE:-/var/log/nats-server.log}
binary=/usr/sbin/nats-server
unit_conf=/etc/nats-server.conf
pid_file=/run/billsync-nats-server-$port.pid
deadline_secs=30

# The server's INFO line (a NATS server greets every client with it), or nothing.
nats_info() {
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 2 bash -c '
        exec 3<>"/dev/tcp/$0/$1" || exit 1
        IFS= read -r line <&3 && printf "%s" "$line"' "$host" "$port" 2>/dev/null || true
}

# 0: NATS with JetStream answers; 1: nothing answers; 2: NATS answers without JetStream.
nats_state() {
    local info
    info=$(nats_info)
    case $info in
        INFO*'"jetstream":true'*) return 0 ;;
        INFO*) return 2 ;;
        *) return 1 ;;
    esac
}

state() {
    local rc=0
    nats_state || rc=$?
    echo "$rc"
}

# Debian's unit runs `nats-server -c /etc/nats-server.conf` as user nats, without JetStream;
# give it a store directory and enable JetStream there.
enable_jetstream_in_unit() {
    if ! grep -q '^[[:space:]]*jetstream' "$unit_conf" 2>/dev/null; then
        log "enabling JetStream in $unit_conf (store_dir $store_dir)"
        printf '\n# Added by billsync deploy/ensure-nats.sh\njetstream {\n  store_dir: "%s"\n}\n' \
            "$store_dir" | as_root tee -a "$unit_conf" >/dev/null
    fi
    as_root mkdir -p "$store_dir"
    if getent passwd nats >/dev/null; then
        as_root chown -R nats:nats "$store_dir"
    fi
    log "restarting nats-server.service"
    as_root systemctl enable nats-server >/dev/null 2>&1 || true
    as_root systemctl restart nats-server
}

start_daemon() {
    log "starting $binary with JetStream on $host:$port (store $store_dir, log $log_file)"
    as_root mkdir -p "$store_dir"
    # The pid file, not the executable, identifies our daemon: tests run their own
    # nats-server processes on random ports, which must not count as "already running".
    as_root start-stop-daemon --start --oknodo --background \
        --make-pidfile --pidfile "$pid_file" --exec "$binary" -- \
        -a "$host" -p "$port" -js -sd "$store_dir" -l "$log_file"
}

fail() {
    local why=$1
    log "last lines of $log_file:"
    as_root tail -n 20 "$log_file" 2>/dev/null >&2 || true
    die "$why
  Check: the log above ($log_file, or 'journalctl -u nats-server' under systemd);
         what holds port $port ('ss -ltnp \"sport = :$port\"');
         that $store_dir is writable and its disk not full."
}

case $(state) in
    0)
        log "NATS with JetStream answers on $host:$port"
        exit 0
        ;;
    2)
        if have_systemd && systemctl is-active --quiet nats-server 2>/dev/null; then
            log "nats-server.service answers on $host:$port but without JetStream"
            enable_jetstream_in_unit
        else
            die "a NATS server answers on $host:$port but without JetStream; billsync needs
  JetStream. Restart that server with '-js -sd <store dir>' (or 'jetstream {}' in its config),
  or stop it and run this script again."
        fi
        ;;
    1)
        if [ ! -x "$binary" ]; then
            apt_install nats-server
        fi
        if have_systemd; then
            # The package's unit may have started on install, without JetStream.
            enable_jetstream_in_unit
        else
            start_daemon
        fi
        ;;
esac

log "waiting for NATS with JetStream on $host:$port (up to ${deadline_secs}s)"
for ((i = 0; i < deadline_secs * 4; i++)); do
    if [ "$(state)" = 0 ]; then
        log "NATS with JetStream answers on $host:$port"
        exit 0
    fi
    sleep 0.25
done
if [ "$(state)" = 2 ]; then
    fail "NATS answers on $host:$port, but JetStream is not enabled."
fi
fail "NATS did not answer on $host:$port within ${deadline_secs}s."
