#!/usr/bin/env bash
# Sets up (once) and activates the project's virtual environment.
#
# The environment lives outside the clone, keyed by a hash of the core
# dependencies (setup.cfg's install_requires and the constraints file), so a
# fresh clone (CI) reuses it instead of re-installing the 5.7 GB
# torch/speechbrain stack; a change of the extras is installed into it.
# Override its location with SBM_VENV.
# Source it: `source scripts/env.sh`.
set -euo pipefail
SBM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Dependencies read from setup.cfg: the core (install_requires), and all
# (with every extra but bench: the peer libraries of benchmarks/peers.py,
# never a runtime or CI dependency).
_deps() {
    python3 - "$SBM_ROOT/setup.cfg" "$1" <<'PY'
import configparser, sys
cfg = configparser.ConfigParser()
cfg.read(sys.argv[1])
reqs = cfg["options"]["install_requires"].split("\n")
if sys.argv[2] == "all":
    for name, extra in cfg["options.extras_require"].items():
        if name != "bench":
            reqs += extra.split("\n")
print("\n".join(sorted({r.strip() for r in reqs if r.strip()})))
PY
}
mapfile -t _core < <(_deps core)
mapfile -t _reqs < <(_deps all)
_hash() { (printf '%s\n' "$@"; cat "$SBM_ROOT/constraints.txt") | sha256sum | cut -c1-12; }
# The environment is keyed by the core dependencies (the heavy torch stack);
# extras are added to it when they change.
SBM_VENV="${SBM_VENV:-$HOME/.cache/speechbrain-meta/venv-$(_hash "${_core[@]}")}"
_marker="$SBM_VENV/.complete-$(_hash "${_reqs[@]}")"
if [ ! -f "$_marker" ]; then
    if [ ! -x "$SBM_VENV/bin/python" ]; then
        echo "[env] creating $SBM_VENV (first run: a few minutes)" >&2
        rm -rf "$SBM_VENV"
        mkdir -p "$(dirname "$SBM_VENV")"
        python3 -m venv "$SBM_VENV"
        "$SBM_VENV/bin/python" -m pip install --quiet --upgrade pip
    else
        echo "[env] updating $SBM_VENV (dependencies changed)" >&2
    fi
    # The package itself runs from the clone (PYTHONPATH), so one
    # environment serves every clone.
    "$SBM_VENV/bin/python" -m pip install --quiet \
        -c "$SBM_ROOT/constraints.txt" "${_reqs[@]}"
    touch "$_marker"
fi
export SBM_ROOT SBM_VENV
export PATH="$SBM_VENV/bin:$PATH"
export PYTHONPATH="$SBM_ROOT${PYTHONPATH:+:$PYTHONPATH}"
