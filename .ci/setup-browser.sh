#!/usr/bin/env bash
# Installs what tests/test_browser.py needs (idempotent; runs as root):
#  - Debian's headless Chromium (/usr/bin/chromium) and its driver, from apt;
#  - Playwright for Python in the repo's .venv (pinned). Playwright's own browser
#    download ("playwright install") is NOT used: the test launches /usr/bin/chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
PLAYWRIGHT_VERSION=1.65.2

if [ ! -x /usr/bin/chromium ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q chromium chromium-driver
fi

PY=.venv/bin/python
if [ ! -x "$PY" ]; then
    # Create the venv the same way as `python3 dev.py test` does (it then skips the install).
    python3 -c 'import dev; dev.install("dev")'
fi
if ! "$PY" -c "import importlib.metadata as m, sys; sys.exit(m.version('playwright') != '$PLAYWRIGHT_VERSION')" 2>/dev/null; then
    "$PY" -m pip install --disable-pip-version-check -q "playwright==$PLAYWRIGHT_VERSION"
fi
/usr/bin/chromium --version 2>/dev/null
"$PY" -c "import importlib.metadata as m; print('playwright', m.version('playwright'))"
