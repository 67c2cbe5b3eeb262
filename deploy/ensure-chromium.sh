#!/usr/bin/env bash
# Makes sure Chromium and its WebDriver (chromedriver) are installed, for the browser tests.
#
# Does nothing when /usr/bin/chromium and chromedriver exist; else installs Debian's
# `chromium` and `chromium-driver`.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [ -x /usr/bin/chromium ] && command -v chromedriver >/dev/null 2>&1; then
    log "chromium and chromedriver are installed"
    exit 0
fi
apt_install chromium chromium-driver
[ -x /usr/bin/chromium ] ||
    die "/usr/bin/chromium is still missing after installing 'chromium' (on Ubuntu, install a
  Chromium that provides /usr/bin/chromium, e.g. from Debian's packages or a PPA)"
command -v chromedriver >/dev/null 2>&1 ||
    die "chromedriver is still missing after installing 'chromium-driver'"
log "installed: $(/usr/bin/chromium --version 2>/dev/null || echo chromium), $(chromedriver --version 2>/dev/null | head -n 1)"
