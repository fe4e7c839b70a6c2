#!/usr/bin/env bash
# JupyterHub's proxy for tests/test_jupyterhub.py: configurable-http-proxy from the npm registry
# (Node.js and npm from Debian when missing), and what the test's Unix users need (useradd,
# userdel: passwd; runuser: util-linux). Idempotent; runs as root (Debian/Ubuntu).
# JupyterHub itself comes from PyPI with the dev extra (`python3 dev.py test` installs it).
set -euo pipefail
missing=()
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
command -v useradd >/dev/null 2>&1 || missing+=(passwd)
command -v runuser >/dev/null 2>&1 || missing+=(util-linux)
if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if ! command -v configurable-http-proxy >/dev/null 2>&1; then
    # 5.x needs Node.js >= 20 (Debian 12's own nodejs is 18: 4.6 then); JupyterHub 5 and 6 use either.
    if [ "$(node -p 'process.versions.node.split(".")[0]')" -ge 20 ]; then chp="^5.3"; else chp="~4.6"; fi
    npm install --global --no-audit --no-fund --loglevel=error "configurable-http-proxy@$chp"
fi
echo "setup-hub: node $(node --version), configurable-http-proxy $(configurable-http-proxy --version)"
