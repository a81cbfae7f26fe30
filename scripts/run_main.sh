#!/usr/bin/env bash
# The main job: synthesise the SynthDigits corpus (espeak-ng, offline),
# train the joint baseline, meta-train every method of the package from it
# (meta-initialisation, meta-optimisation, meta-transfer) and score all of
# them, baselines included, on the same few-shot episodes
# (recipes/SynthDigits/meta_asr/README.md lists the methods).
# Usage: bash scripts/run_main.sh [--quick] [--methods joint,maml,...]
#        [--output_folder DIR] [--device cuda:0]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$SBM_ROOT"
exec python recipes/SynthDigits/meta_asr/run_benchmark.py "$@"
