#!/usr/bin/env bash
# The real-music development corpus (README, "Real-music development corpus"): installs exactly the Debian game
# soundtrack packages it is built from, plus openmpt123 (renders the tracker modules) and ffmpeg (decodes the MP3s
# libsndfile miscounts), then runs `spotifai real-corpus DIR` (default data/real). Idempotent: a complete corpus
# is kept; pass --force to rebuild. Other music packages are reserved for an independent check: do not add any.
# Usage: bash scripts/real_corpus.sh [DIR] [--force] [--min-seconds S]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

MUSIC=(asc-music fb-music-high nexuiz-music planetblupi-music-ogg ufoai-music xblast-tnt-musics widelands-data
       freedroidrpg-data warmux-data flare-game extremetuxracer-data megaglest-data xmoto-data lincity-ng-data
       powermanga-data scorched3d-data solarwolf supertuxkart-data frozen-bubble-data)
TOOLS=(openmpt123 ffmpeg)

missing=()
for p in "${MUSIC[@]}" "${TOOLS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if (( ${#missing[@]} )); then
  SUDO=""; [[ "$(id -u)" != "0" ]] && SUDO="sudo"
  echo "[real-corpus] apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

export SPOTIFAI_SKIP_BROWSER="${SPOTIFAI_SKIP_BROWSER:-1}"   # no browser needed here
source "$ROOT/scripts/install.sh"   # the project venv (idempotent)

args=("$@")
if (( ${#args[@]} == 0 )) || [[ "${args[0]}" == --* ]]; then
  args=(data/real "${args[@]}")
fi
spotifai real-corpus "${args[@]}"
