#!/usr/bin/env bash
# Makes sure PostgreSQL answers on 127.0.0.1:5432 and user `postgres` can log in over TCP
# without a password, as billsync's tests and demo expect (postgres://postgres@127.0.0.1:5432).
#
# Does nothing when that already holds. Otherwise installs Debian's `postgresql` if missing,
# creates a cluster on the port if there is none, and starts it with pg_ctlcluster; waits up
# to 30 s. On a cluster it installed or created itself, the script trusts local TCP
# connections (pg_hba.conf); on any other cluster it does so only when asked with
# BILLSYNC_PG_TRUST_LOCAL=1. Development and CI machines only.
#
# Environment: POSTGRES_HOST (127.0.0.1), POSTGRES_PORT (5432), BILLSYNC_PG_TRUST_LOCAL.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

host=${POSTGRES_HOST:-127.0.0.1}
port=${POSTGRES_PORT:-5432}
trust_local=${BILLSYNC_PG_TRUST_LOCAL:-0}
deadline_secs=30
hba_marker='# Added by billsync deploy/ensure-postgres.sh'

answers() {
    if command -v pg_isready >/dev/null 2>&1; then
        pg_isready -q -h "$host" -p "$port" -t 2
    else
        tcp_open "$host" "$port"
    fi
}

can_log_in() {
    PGCONNECT_TIMEOUT=5 psql -h "$host" -p "$port" -U postgres -d postgres -w -Atqc 'SELECT 1' \
        >/dev/null 2>&1
}

# "VERSION NAME STATUS" of the cluster configured on our port, or nothing.
cluster_on_port() {
    command -v pg_lsclusters >/dev/null 2>&1 || return 0
    pg_lsclusters --no-header 2>/dev/null |
        awk -v port="$port" '$3 == port { print $1, $2, $4; exit }'
}

pg_ctl() {
    # Under systemd pg_ctlcluster hands over to the postgresql@VERSION-NAME unit, which keeps
    # the cluster running across reboots; elsewhere (containers) it runs pg_ctl itself.
    if have_systemd; then
        as_root pg_ctlcluster "$@"
    else
        as_root pg_ctlcluster --skip-systemctl-redirect "$@"
    fi
}

# Lets every local TCP connection in without a password: first lines of pg_hba.conf win.
trust_local_tcp() {
    local version=$1 name=$2 hba tmp
    hba=/etc/postgresql/$version/$name/pg_hba.conf
    if as_root grep -qF "$hba_marker" "$hba"; then
        return 0
    fi
    log "trusting local TCP connections in $hba (development/CI setting)"
    tmp=$(mktemp)
    {
        printf '%s: local development and CI only.\n' "$hba_marker"
        printf 'host    all    all    127.0.0.1/32    trust\n'
        printf 'host    all    all    ::1/128         trust\n\n'
        as_root cat "$hba"
    } >"$tmp"
    # cp into the existing file keeps its owner and mode.
    as_root cp "$tmp" "$hba"
    rm -f "$tmp"
    hba_changed=1
}

fail() {
    local why=$1 log_file
    log_file=/var/log/postgresql/postgresql-${version:-VERSION}-${name:-main}.log
    if as_root test -r "$log_file"; then
        log "last lines of $log_file:"
        as_root tail -n 20 "$log_file" >&2 || true
    fi
    die "$why
  Check: the log above ($log_file); 'pg_lsclusters';
         what holds port $port ('ss -ltnp \"sport = :$port\"')."
}

login_or_explain() {
    if ! command -v psql >/dev/null 2>&1; then
        apt_install postgresql-client
    fi
    # A reload of pg_hba.conf takes effect a moment after pg_ctlcluster returns.
    for ((j = 0; j < 10; j++)); do
        if can_log_in; then
            log "PostgreSQL answers on $host:$port and user postgres can log in"
            exit 0
        fi
        [ "$hba_changed" = 1 ] || break
        sleep 0.5
    done
    die "PostgreSQL answers on $host:$port, but user postgres cannot log in over TCP without a
  password. billsync's tests and demo connect as postgres://postgres@$host:$port. Either run
  this script again with BILLSYNC_PG_TRUST_LOCAL=1 to add 'host all all 127.0.0.1/32 trust'
  at the top of the cluster's pg_hba.conf (development machines only), or set PGPASSWORD."
}

installed=0
created=0
hba_changed=0

if answers; then
    if [ "$trust_local" = 1 ] && ! can_log_in; then
        read -r version name _ <<<"$(cluster_on_port)"
        [ -n "${version:-}" ] || die "no local cluster on port $port to change (pg_lsclusters)"
        trust_local_tcp "$version" "$name"
        pg_ctl "$version" "$name" reload
    fi
    login_or_explain
fi

if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; then
    apt_install postgresql
    installed=1
fi

read -r version name status <<<"$(cluster_on_port)"
if [ -z "${version:-}" ]; then
    version=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n 1)
    name=main
    if [ -d "/etc/postgresql/$version/main" ]; then
        name=billsync
    fi
    log "creating cluster $version/$name on port $port"
    as_root pg_createcluster --port "$port" "$version" "$name"
    created=1
    status=down
fi

if [ "$installed" = 1 ] || [ "$created" = 1 ] || [ "$trust_local" = 1 ]; then
    trust_local_tcp "$version" "$name"
fi

if [ "$status" = online ]; then
    if [ "$hba_changed" = 1 ]; then
        pg_ctl "$version" "$name" reload
    fi
else
    log "starting cluster $version/$name"
    pg_ctl "$version" "$name" start || fail "pg_ctlcluster $version $name start failed."
fi

log "waiting for PostgreSQL on $host:$port (up to ${deadline_secs}s)"
for ((i = 0; i < deadline_secs * 4; i++)); do
    if answers; then
        login_or_explain
    fi
    sleep 0.25
done
fail "PostgreSQL did not answer on $host:$port within ${deadline_secs}s."
