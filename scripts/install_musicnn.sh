#!/usr/bin/env bash
# Optional extra: a SEPARATE venv with musicnn 0.1.0 (the off-the-shelf reference of `evaluate`).
# musicnn pins old releases of everything, so it gets its own interpreter: tensorflow-cpu 2.15.1, keras 2.15,
# numpy 1.26 and librosa, then musicnn itself with --no-deps. Its MSD/MTT checkpoints ship inside the wheel
# (musicnn/MSD_musicnn/...), so nothing is downloaded at run time. Idempotent: does nothing when up to date.
#   bash scripts/install_musicnn.sh            # -> .venv-musicnn/ (or $SPOTIFAI_MUSICNN_VENV)
# spotifai/reference.py finds it there (or via SPOTIFAI_MUSICNN_PYTHON=/path/to/python).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SPOTIFAI_MUSICNN_VENV:-$ROOT/.venv-musicnn}"
PYTHON="${PYTHON:-python3.11}"

if [[ ! -x "$VENV/bin/python" ]]; then
  echo "[install_musicnn] creating venv $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
STAMP="$VENV/.musicnn-installed"
WANT="tensorflow-cpu==2.15.1 keras==2.15.* numpy==1.26.* librosa musicnn==0.1.0"
# pip, quiet, less this machine's warnings about absent local index folders; pipefail keeps pip's status.
pipq() { "$VENV/bin/pip" install -q "$@" 2>&1 | { grep -v "is ignored: it is neither" || true; }; }
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$WANT" ]]; then
  echo "[install_musicnn] pip install tensorflow-cpu==2.15.1 keras==2.15.* numpy==1.26.* librosa"
  pipq "tensorflow-cpu==2.15.1" "keras==2.15.*" "numpy==1.26.*" librosa
  echo "[install_musicnn] pip install --no-deps musicnn==0.1.0"
  pipq --no-deps "musicnn==0.1.0"
  # Import check, and the MSD checkpoint must be inside the installed package (no hub at run time).
  TF_CPP_MIN_LOG_LEVEL=2 "$VENV/bin/python" - <<'EOF' || { echo "[install_musicnn] import check failed" >&2; exit 1; }
import os, numpy, librosa, tensorflow as tf, musicnn, musicnn.models, musicnn.configuration
# The wheel's checkpoint files are MSD_musicnn/.index and .data-*: prefix "MSD_musicnn/" (its `checkpoint`
# file names the author's disk, so tf.train.latest_checkpoint finds nothing; the prefix is what to restore).
prefix = os.path.join(os.path.dirname(musicnn.__file__), "MSD_musicnn", "")
names = tf.compat.v1.train.NewCheckpointReader(prefix).get_variable_to_shape_map()
assert names.get("dense/kernel") == [1506, 200], sorted(names)[:5]
assert numpy.__version__.startswith("1.26"), numpy.__version__
print(f"[install_musicnn] ok: tensorflow {tf.__version__}, numpy {numpy.__version__}, "
      f"librosa {librosa.__version__}, {len(names)} variables in {prefix}")
EOF
  echo "$WANT" > "$STAMP"
fi
