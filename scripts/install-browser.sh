#!/usr/bin/env bash
# Install what the browser tests of the web UI need, idempotently:
#   - Debian's Chromium at /usr/bin/chromium (apt; never a Playwright browser download),
#   - gradio and playwright (the Python package only) into the project's virtualenv.
# Usage: scripts/install-browser.sh [VENV]   (default: .venv)
set -euo pipefail

VENV="${1:-.venv}"
PIP="$VENV/bin/pip"

if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    echo "install-browser: installing chromium with apt-get"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium
else
    echo "install-browser: /usr/bin/chromium present"
fi

if [ ! -x "$PIP" ]; then
    echo "install-browser: no virtualenv at $VENV (run 'make setup' first)" >&2
    exit 1
fi
if "$VENV/bin/python" -c "import gradio, playwright" 2>/dev/null; then
    echo "install-browser: gradio and playwright present"
else
    echo "install-browser: installing gradio and playwright into $VENV"
    # PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD: the tests drive /usr/bin/chromium, never a download.
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 "$PIP" install -q "gradio>=5.0" playwright
fi
