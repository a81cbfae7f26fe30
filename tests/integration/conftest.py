import pytest
from tiny_asr import make_datasets


@pytest.fixture(scope="session")
def tone_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tones")
    return make_datasets(
        str(folder),
        n_train_tasks=6,
        n_dev_tasks=2,
        n_test_tasks=2,
        utts_per_task=12,
        seed=7,
    )
