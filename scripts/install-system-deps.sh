#!/usr/bin/env bash
# Install the system programs some tests drive, idempotently:
#   - Debian's Chromium at /usr/bin/chromium for the web UI's browser tests (apt; never a
#     Playwright browser download), and gradio + playwright (the Python package only) in
#     the project's virtualenv;
#   - FluidSynth, the renderer of `timbre dataset-from-sf2` / `drums dataset-from-sf2`
#     (its tests build a tiny SoundFont themselves; no font is downloaded).
# Tests that need one of these skip, with the reason, when it is missing.
# Usage: scripts/install-system-deps.sh [VENV]   (default: .venv)
set -euo pipefail

VENV="${1:-.venv}"
PIP="$VENV/bin/pip"

MISSING=()
[ -x /usr/bin/chromium ] || MISSING+=(chromium)
command -v fluidsynth >/dev/null || MISSING+=(fluidsynth)
if [ ${#MISSING[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    echo "install-system-deps: installing ${MISSING[*]} with apt-get"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${MISSING[@]}"
else
    echo "install-system-deps: chromium and fluidsynth present"
fi

if [ ! -x "$PIP" ]; then
    echo "install-system-deps: no virtualenv at $VENV (run 'make setup' first)" >&2
    exit 1
fi
if "$VENV/bin/python" -c "import gradio, playwright" 2>/dev/null; then
    echo "install-system-deps: gradio and playwright present"
else
    echo "install-system-deps: installing gradio and playwright into $VENV"
    # PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD: the tests drive /usr/bin/chromium, never a download.
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 "$PIP" install -q "gradio>=5.0" playwright
fi
