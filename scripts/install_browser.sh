#!/usr/bin/env bash
# Installs headless Chromium (Debian package `chromium`) for tests/test_htmlreport.py, which renders
# OUT/report.html and checks that it shows its plots without console errors. Idempotent; the test
# is skipped (with its reason) where no chromium is installed.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
command -v chromium
