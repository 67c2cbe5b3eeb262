#!/usr/bin/env bash
# Stops a demo left behind by deploy/run-demo.sh (for example after its terminal was closed),
# using the process ids it recorded in .run/*.pid.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$repo/deploy/lib.sh"

stop_grace_secs=15
for pid_file in "$repo"/.run/billsync.pid "$repo"/.run/sandbox.pid; do
    [ -f "$pid_file" ] || continue
    pid=$(cat "$pid_file")
    # Only a process that still is one of ours: pids get reused.
    if [[ $pid =~ ^[0-9]+$ ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q billsync; then
        log "stopping pid $pid ($(basename "$pid_file" .pid))"
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < stop_grace_secs * 5; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "pid $pid did not stop within ${stop_grace_secs}s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$pid_file"
done
