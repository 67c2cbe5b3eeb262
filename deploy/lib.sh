# shellcheck shell=bash
# Shared helpers of the deploy/*.sh scripts (sourced, never run on its own).
#
# The scripts prepare a Debian/Ubuntu development or CI machine: they install packages with
# apt, start services and wait for them. Each prints what it does, is idempotent, and is a
# fast no-op when everything is already in place.

# The calling script's name, for messages.
SCRIPT_NAME=$(basename "$0" .sh)

log() {
    printf '[%s] %s\n' "$SCRIPT_NAME" "$*" >&2
}

die() {
    printf '[%s] ERROR: %s\n' "$SCRIPT_NAME" "$*" >&2
    exit 1
}

# Runs a command as root: directly when we are root, else through sudo.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root for: $* (run as root or install sudo)"
    fi
}

# Installs Debian packages; refreshes the package lists once if the first attempt fails
# (a fresh machine or container often has none, or stale ones).
apt_install() {
    command -v apt-get >/dev/null 2>&1 ||
        die "apt-get not found: install $* yourself (this script supports Debian and Ubuntu)"
    log "installing $* (apt-get)"
    if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@"; then
        log "refreshing the package lists and retrying"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" ||
            die "apt-get install $* failed (see the apt output above)"
    fi
}

# True when systemd manages this machine (not the case in most containers).
have_systemd() {
    [ -d /run/systemd/system ]
}

# True when something accepts TCP connections on host:port.
tcp_open() {
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null
}

# The HTTP status code of GET http://host:port/path, or nothing when no answer; needs
# neither curl nor wget.
http_status() {
    local line code
    # shellcheck disable=SC2016 # expanded by the inner bash
    line=$(timeout 3 bash -c '
        exec 3<>"/dev/tcp/$0/$1" || exit 1
        printf "GET %s HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\n\r\n" "$2" "$0" "$1" >&3
        IFS= read -r line <&3 || exit 1
        cat <&3 >/dev/null
        printf "%s" "$line"' "$1" "$2" "$3" 2>/dev/null) || return 0
    read -r _ code _ <<<"$line"
    printf '%s' "$code"
}
