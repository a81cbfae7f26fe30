#!/usr/bin/env bash
# The test suite: unit, integration and recipe tests plus every doctest.
# Usage: bash scripts/run_tests.sh [pytest args]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$SBM_ROOT"
exec python -m pytest "$@"
