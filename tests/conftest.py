import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.pop("MLFLOW_TRACKING_URI", None)  # tests use their own temporary stores
os.environ.pop("KDBENCH_FAULT", None)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def smoke_workdir(tmp_path_factory):
    """One work directory (and sqlite MLflow store) where the smoke matrix is run once."""
    return tmp_path_factory.mktemp("smoke-workdir")
