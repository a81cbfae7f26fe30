#!/usr/bin/env bash
# The main job: meta-train a CTC recogniser over synthetic speakers with
# first-order MAML (SynthTones recipe), then score held-out speakers before
# and after adapting to 5 of their utterances.
# Usage: bash scripts/run_main.sh [train.py overrides, e.g. --number_of_epochs=5]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$SBM_ROOT"
exec python recipes/SynthTones/meta_asr/train.py \
    recipes/SynthTones/meta_asr/hparams/fomaml.yaml "$@"
