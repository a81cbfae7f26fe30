#!/usr/bin/env bash
# The main job: synthesise the SynthDigits corpus (espeak-ng, offline),
# train the joint baseline, meta-train MAML / first-order MAML / Reptile /
# ANIL from it, and score every method (baselines included) on the same
# few-shot episodes of unseen languages and unseen voices.
# Usage: bash scripts/run_main.sh [--quick] [--methods joint,maml,...]
#        [--output_folder DIR] [--device cuda:0]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$SBM_ROOT"
exec python recipes/SynthDigits/meta_asr/run_benchmark.py "$@"
