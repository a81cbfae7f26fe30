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
