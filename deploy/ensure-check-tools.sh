#!/usr/bin/env bash
# Makes sure the tools that check the deployment and monitoring files are installed: kubectl
# (for `kubectl kustomize`), kubernetes-validate (the Kubernetes API schemas, offline), and
# Prometheus with promtool (`make lint` runs promtool; a test in `make test` runs Prometheus
# against billsync to answer every dashboard query), and schemathesis (a test in `make test`
# checks the errors service's admin API against its OpenAPI document).
#
# kubectl and promtool: nothing to do when they are on PATH, else Debian's `kubernetes-client`
# and `prometheus`. kubernetes-validate (and PyYAML, which deploy/check-deploy.py reads the
# manifests with) and schemathesis go into a virtual environment at $BILLSYNC_TOOLS_VENV (default
# ~/.cache/billsync/tools-venv), installed from PyPI once. Prints the venv's bin directory.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

venv=${BILLSYNC_TOOLS_VENV:-$HOME/.cache/billsync/tools-venv}
# The newest release checked with this repository's manifests; its schemas are bundled.
kubernetes_validate_version=1.37.0
# The release the admin API's OpenAPI test was written against (its CLI options and checks).
schemathesis_version=4.32.5

packages=()
command -v kubectl >/dev/null 2>&1 || packages+=(kubernetes-client)
command -v promtool >/dev/null 2>&1 || packages+=(prometheus)
if [ ${#packages[@]} -gt 0 ]; then
    apt_install "${packages[@]}"
fi
# Debian's prometheus package starts a server through systemd where systemd runs; the checks
# need only its binaries.
if have_systemd && systemctl is-active --quiet prometheus 2>/dev/null &&
    [[ " ${packages[*]} " == *" prometheus "* ]]; then
    as_root systemctl disable --now prometheus >/dev/null 2>&1 || true
fi

if [ ! -x "$venv/bin/pip" ]; then
    command -v python3 >/dev/null 2>&1 || apt_install python3 python3-venv
    log "creating the tools venv $venv"
    python3 -m venv "$venv" 2>/dev/null || {
        apt_install python3-venv
        python3 -m venv "$venv"
    }
fi
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
    log "installing kubernetes-validate $kubernetes_validate_version into $venv"
    "$venv/bin/pip" install --quiet "kubernetes-validate==$kubernetes_validate_version" ||
        die "pip could not install kubernetes-validate (needs PyPI)"
fi
if [ ! -x "$venv/bin/schemathesis" ]; then
    log "installing schemathesis $schemathesis_version into $venv"
    "$venv/bin/pip" install --quiet "schemathesis==$schemathesis_version" ||
        die "pip could not install schemathesis (needs PyPI)"
fi
echo "$venv/bin"
