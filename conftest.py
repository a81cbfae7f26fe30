"""pytest configuration shared by the test suite and the doctests.

Authors
 * speechbrain-meta developers 2026
"""

import pytest
import torch


@pytest.fixture(autouse=True)
def add_torch_to_doctest_namespace(doctest_namespace):
    """Doctests may use ``torch`` without importing it, as in SpeechBrain."""
    doctest_namespace["torch"] = torch


def _forget_unloaded_lazy_modules():
    """Removes SpeechBrain's not-yet-imported lazy modules from sys.modules.

    hypothesis reads ``__file__`` of every module in ``sys.modules``; on a
    ``LazyModule`` that imports the target, which fails for optional
    integrations (k2, ...). An unloaded lazy module is only a placeholder:
    a later import of it imports it for real.
    """
    import sys

    from speechbrain.utils.importutils import LazyModule

    for name, module in list(sys.modules.items()):
        if isinstance(module, LazyModule) and module.lazy_module is None:
            del sys.modules[name]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """Before hypothesis's own collection hook (see above)."""
    _forget_unloaded_lazy_modules()


@pytest.fixture(autouse=True)
def _no_lazy_placeholders():
    """The same before each test (tests import more of SpeechBrain)."""
    _forget_unloaded_lazy_modules()
