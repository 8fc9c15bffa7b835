#!/usr/bin/env bash
# The test command: installs what it needs, then runs ruff and the whole pytest suite (slow tests included).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/install.sh"
cd "$ROOT"
ruff check spotifai tests bench scripts notebooks
exec python -m pytest "$@"
