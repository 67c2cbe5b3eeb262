#!/usr/bin/env bash
# Creates PostgreSQL database NAME on 127.0.0.1:5432 (user postgres) if it does not exist.
#
# Usage: deploy/ensure-database.sh NAME
# Environment: POSTGRES_HOST (127.0.0.1), POSTGRES_PORT (5432).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ $# -eq 1 ] || die "usage: $0 NAME"
db=$1
host=${POSTGRES_HOST:-127.0.0.1}
port=${POSTGRES_PORT:-5432}

# Names become SQL identifiers; keep them to what needs no thought.
[[ $db =~ ^[A-Za-z_][A-Za-z0-9_-]{0,62}$ ]] ||
    die "invalid database name '$db': use letters, digits, '_' or '-' (at most 63)"

psql_admin() {
    PGCONNECT_TIMEOUT=5 psql -h "$host" -p "$port" -U postgres -d postgres -w \
        -v ON_ERROR_STOP=1 -Atq -v db="$db"
}

exists() {
    # psql substitutes :'db' and :"db" (quoted) only in input it reads, not in -c.
    [ "$(psql_admin <<<"SELECT 1 FROM pg_database WHERE datname = :'db';")" = 1 ]
}

command -v psql >/dev/null 2>&1 || die "psql not found: run deploy/ensure-postgres.sh first"

if exists; then
    log "database $db exists"
    exit 0
fi
log "creating database $db on $host:$port"
if ! psql_admin <<<'CREATE DATABASE :"db";'; then
    # Someone else may have created it at the same moment.
    exists || die "could not create database $db on $host:$port (see the psql error above)"
fi
log "database $db exists"
