#!/usr/bin/env bash
# TP3 on The Littlest JupyterHub (docs/deploy.md). Run as root on the hub's server, from a
# checkout of this (instructor) repository, after TLJH's own installer:
#
#     sudo deploy/tljh/setup.sh [INSTRUCTOR]     INSTRUCTOR: hub name of the instructor (e.g. prof)
#
# Idempotent. Installs the lab into TLJH's user environment (not editable: students never read
# this checkout), fetches data + tokenizer + GPT-2 weights once into /srv/tp3/cache, creates
# nbgrader's exchange, installs the Jupyter and JupyterHub settings, applies config.yaml.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
USER_ENV="${TLJH_USER_ENV:-/opt/tljh/user}"
TLJH_CONFIG="${TLJH_CONFIG:-/opt/tljh/config}"
SRV=/srv/tp3
EXCHANGE=/srv/nbgrader/exchange
TORCH="$(python3 -c "import sys; sys.path.insert(0, '$REPO'); import dev; print(dev.TORCH)")"

[ "$(id -u)" = 0 ] || { echo "setup.sh: run as root (sudo)" >&2; exit 1; }
[ -x "$USER_ENV/bin/python" ] || { echo "setup.sh: no TLJH user environment at $USER_ENV" >&2; exit 1; }

# 1. The lab in the users' environment: PyTorch's CPU build first, then the package and its lab extra.
"$USER_ENV/bin/pip" install -q "$TORCH" --index-url https://download.pytorch.org/whl/cpu
"$USER_ENV/bin/pip" install -q "$REPO[lab]"
# Students' JupyterLab, as on Binder: Validate on, instructor panels off (sys-prefix level).
"$USER_ENV/bin/python" -m lab_utils setup-jupyter

# 2. Data, tokenizer and weights, once, readable by everyone, writable by root only.
mkdir -p "$SRV/cache"
TP3_CACHE_DIR="$SRV/cache" "$USER_ENV/bin/python" -m lab_utils prefetch
chmod -R a+rX,go-w "$SRV"

# 3. nbgrader's exchange: must exist and be writable by everyone (nbgrader's documentation).
mkdir -p "$EXCHANGE"
chmod 0777 "$EXCHANGE"

# 4. Settings every single-user server reads first (JUPYTER_CONFIG_PATH, see tp3.py).
rm -rf "$SRV/jupyter"
cp -r "$REPO/deploy/jupyter" "$SRV/jupyter"
chmod -R a+rX,go-w "$SRV/jupyter"
install -m 0644 "$HERE/jupyterhub_config.d/tp3.py" "$TLJH_CONFIG/jupyterhub_config.d/tp3.py"

# 5. config.yaml's values (tests/test_deploy.py checks these lines against config.yaml).
tljh-config set limits.memory 2G
tljh-config set limits.cpu 1
tljh-config set user_environment.default_app jupyterlab
tljh-config set services.cull.enabled true
tljh-config set services.cull.timeout 3600
tljh-config set services.cull.every 300

# 6. The instructor: admin, formgrader and course list on in their own Jupyter settings.
if [ $# -ge 1 ]; then
    tljh-config remove-item users.admin "$1" >/dev/null 2>&1 || true   # add-item appends duplicates
    tljh-config add-item users.admin "$1"
    account="jupyter-$1"
    if id "$account" >/dev/null 2>&1; then
        home="$(getent passwd "$account" | cut -d: -f6)"
        mkdir -p "$home/.jupyter"
        cp -r "$REPO/deploy/instructor/." "$home/.jupyter/"
        chown -R "$account:" "$home/.jupyter"
    else
        echo "setup.sh: $account does not exist yet: log in once as $1, then run setup.sh $1 again."
    fi
fi
tljh-config reload
echo "setup.sh: done. The instructor's course: docs/deploy.md, 'Running the course'."
