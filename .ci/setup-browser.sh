#!/usr/bin/env bash
# Debian's headless Chromium for tests/test_browser.py (idempotent; runs as root).
# Playwright for Python comes with the dev extra (`python3 dev.py test` installs it); its
# own browser download (`playwright install`) is never used: the test launches /usr/bin/chromium.
set -euo pipefail
if [ ! -x /usr/bin/chromium ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q chromium chromium-driver
fi
/usr/bin/chromium --version
