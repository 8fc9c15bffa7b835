#!/usr/bin/env bash
# Idempotent set-up: Debian packages (ffmpeg, chromium for browser tests) and the project venv.
# Sourced by scripts/main.sh and scripts/test.sh; safe to run again (does nothing when up to date).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SPOTIFAI_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3.11}"

need_apt=()
command -v ffmpeg >/dev/null 2>&1 || need_apt+=(ffmpeg)
if [[ "${SPOTIFAI_SKIP_BROWSER:-0}" != "1" ]]; then
  command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
fi
if (( ${#need_apt[@]} )); then
  SUDO=""; [[ "$(id -u)" != "0" ]] && SUDO="sudo"
  echo "[install] apt-get install ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
  echo "[install] creating venv $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
STAMP="$VENV/.spotifai-installed"
WANT="$(cat "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$WANT" ]]; then
  echo "[install] pip install (torch 2.14.1, torchaudio 2.11.0, torchcodec 0.17.0, spotifai[dev])"
  # torch first and pinned: torchaudio 2.11 has no torch pin, and a looser resolve could pick another build.
  "$VENV/bin/pip" install -q torch==2.14.1 torchaudio==2.11.0 torchcodec==0.17.0 2>&1 | grep -v "is ignored: it is neither" || true
  "$VENV/bin/pip" install -q -e "$ROOT[dev]" 2>&1 | grep -v "is ignored: it is neither" || true
  "$VENV/bin/python" -c "import torch, torchaudio, soundfile, chromadb, papermill, spotifai" \
    || { echo "[install] import check failed" >&2; exit 1; }
  echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
