#!/usr/bin/env bash
# Installs what the dashboard's browser end-to-end test needs: Debian's chromium and
# Playwright's Python package (Playwright drives that chromium through executable_path;
# its own browser download cannot be used here). Idempotent; any failure fails loudly.
#
# Usage: scripts/install_browser.sh [PYTHON]   (PYTHON defaults to .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${1:-.venv/bin/python}
PLAYWRIGHT_SPEC=${PLAYWRIGHT_SPEC:-"playwright>=1.45,<2"}

if ! command -v chromium >/dev/null 2>&1; then
  SUDO=()
  if [[ $(id -u) != 0 ]]; then
    command -v sudo >/dev/null || { echo "error: installing chromium needs root or sudo" >&2; exit 1; }
    SUDO=(sudo)
  fi
  echo "installing chromium (apt-get) for the dashboard's browser test" >&2
  "${SUDO[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends \
    chromium fonts-liberation fonts-dejavu-core >/dev/null
fi
chromium --headless --no-sandbox --disable-gpu --version >/dev/null 2>&1 || chromium --version >/dev/null \
  || { echo "error: chromium is installed but does not start" >&2; exit 1; }

command -v "$PYTHON" >/dev/null || { echo "error: $PYTHON not found: create the venv first (make install)" >&2; exit 1; }
if ! "$PYTHON" -c "import playwright.sync_api" >/dev/null 2>&1; then
  echo "installing $PLAYWRIGHT_SPEC (pip) for the dashboard's browser test" >&2
  "$PYTHON" -m pip install --quiet "$PLAYWRIGHT_SPEC"
fi
"$PYTHON" -c "import playwright.sync_api" || { echo "error: playwright did not install" >&2; exit 1; }
echo "browser test ready: $(command -v chromium) ($(chromium --version 2>/dev/null || echo '?'))" >&2
