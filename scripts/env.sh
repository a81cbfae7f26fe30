#!/usr/bin/env bash
# Sets up (once) and activates the project's virtual environment.
#
# The environment lives outside the clone, keyed by a hash of the
# dependencies (setup.cfg's install_requires and extras, and the constraints
# file), so a fresh clone (CI) reuses it instead of re-installing the 5.7 GB
# torch/speechbrain stack. Override its location with SBM_VENV.
# Source it: `source scripts/env.sh`.
set -euo pipefail
SBM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Dependencies (with every extra) read from setup.cfg.
mapfile -t _reqs < <(python3 - "$SBM_ROOT/setup.cfg" <<'PY'
import configparser, sys
cfg = configparser.ConfigParser()
cfg.read(sys.argv[1])
reqs = cfg["options"]["install_requires"].split("\n")
for extra in cfg["options.extras_require"].values():
    reqs += extra.split("\n")
print("\n".join(sorted({r.strip() for r in reqs if r.strip()})))
PY
)
_hash="$( (printf '%s\n' "${_reqs[@]}"; cat "$SBM_ROOT/constraints.txt") | sha256sum | cut -c1-12)"
SBM_VENV="${SBM_VENV:-$HOME/.cache/speechbrain-meta/venv-$_hash}"
if [ ! -f "$SBM_VENV/.complete" ]; then
    echo "[env] creating $SBM_VENV (first run: a few minutes)" >&2
    rm -rf "$SBM_VENV"
    mkdir -p "$(dirname "$SBM_VENV")"
    python3 -m venv "$SBM_VENV"
    "$SBM_VENV/bin/python" -m pip install --quiet --upgrade pip
    # The package itself runs from the clone (PYTHONPATH), so one
    # environment serves every clone.
    "$SBM_VENV/bin/python" -m pip install --quiet \
        -c "$SBM_ROOT/constraints.txt" "${_reqs[@]}"
    touch "$SBM_VENV/.complete"
fi
export SBM_ROOT SBM_VENV
export PATH="$SBM_VENV/bin:$PATH"
export PYTHONPATH="$SBM_ROOT${PYTHONPATH:+:$PYTHONPATH}"
