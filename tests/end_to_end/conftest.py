import os
import runpy

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
RECIPE = os.path.join(ROOT, "recipes", "SynthDigits", "meta_asr")


@pytest.fixture(scope="session")
def quick_benchmark(tmp_path_factory):
    """The quick main job, run once: its module, folder and results.

    ``SBM_QUICK_BENCHMARK=DIR`` runs it in DIR (a rerun there reuses what
    is done: quicker when working on these tests).
    """
    out = os.environ.get("SBM_QUICK_BENCHMARK")
    out = tmp_path_factory.mktemp("bench") if out is None else out
    from pathlib import Path

    out = Path(out)
    module = runpy.run_path(os.path.join(RECIPE, "run_benchmark.py"))
    merged = module["main"](
        ["--quick", "--methods", "all", "--output_folder", str(out)]
    )
    return module, out, merged
