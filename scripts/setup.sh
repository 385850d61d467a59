#!/usr/bin/env bash
# Idempotent setup: virtualenv, torch (CPU unless told otherwise), the project, assets.
# Second run: a hash of pyproject.toml stamps the install, assets are checked by size only.
#   SFTLOOP_TORCH="torch==2.13.0"   what to install for torch (e.g. a CUDA build: see docs/setup.md)
#   SFTLOOP_SKIP_ASSETS=1           skip `just assets`
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
TORCH=${SFTLOOP_TORCH:-torch==2.13.0}

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.sftloop-installed"
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16) $TORCH"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing $TORCH and the project into $VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
  if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    # torch first: a plain `torch` requirement with nothing installed pulls a multi-GB CUDA build
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$TORCH" 2>&1 | grep -v '^WARNING: Location' || true
  fi
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[dev]" 2>&1 | grep -v '^WARNING: Location' || true
  "$VENV/bin/python" -c "import torch, transformers, peft, polars, sentence_transformers, datasketch" \
    || { echo "setup: dependency install failed" >&2; exit 1; }
  echo "$want" > "$stamp"
else
  echo "setup: $VENV up to date"
fi

# Debian chromium renders the gate report in a test (headless); installed when missing and we may.
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian chromium (headless report test)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "setup: could not install chromium; tests/evaluate/test_gate.py::test_report_renders_in_headless_chromium will fail" >&2
  else
    echo "setup: chromium not found; install Debian's chromium for the report test" >&2
  fi
fi

if [ "${SFTLOOP_SKIP_ASSETS:-0}" != "1" ]; then
  HF_HUB_OFFLINE=1 "$VENV/bin/python" -m sftloop.assets fetch
fi
