#!/usr/bin/env bash
# Makes sure the chaos suite can give each NATS node a network namespace of its own: iproute2
# installed, and the right to create a namespace (root, or CAP_NET_ADMIN).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

command -v ip >/dev/null 2>&1 || apt_install iproute2
probe="bsprobe$$"
if ! ip netns add "$probe" 2>/dev/null; then
    die "cannot create a network namespace ('ip netns add' failed): the chaos suite needs root
  (or CAP_NET_ADMIN) for its NATS nodes' namespaces"
fi
ip netns del "$probe"
log "network namespaces: available"
