#!/usr/bin/env bash
# The main job: installs what it needs, then runs the whole notebook chain on the built-in demo corpus (CPU).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/install.sh"
cd "$ROOT"
exec python -m spotifai.cli chain "$@"
