"""Shared fixtures: the real data of ../shared/data (fail, not skip, when CI=true and it is
missing) and the labelscope CLI binary (LABELSCOPE_BIN, set by crates/cli/tests/python.rs)."""
import json
import os
import pathlib

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]


def _need(what):
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is missing (CI=true: tests must not skip)")
    pytest.skip(f"{what} is missing")


@pytest.fixture(scope="session")
def shared():
    d = pathlib.Path(os.environ.get("LABELSCOPE_SHARED_DATA", ROOT.parent / "shared" / "data"))
    if not (d / "imagenet" / "real.json").is_file():
        _need(f"shared data folder {d}")
    return d


@pytest.fixture(scope="session")
def cli():
    b = os.environ.get("LABELSCOPE_BIN")
    if not b or not os.path.isfile(b):
        _need("the labelscope binary (LABELSCOPE_BIN)")
    return b


@pytest.fixture(scope="session")
def val_names(shared):
    """Image names of the rows of the imagenet-val prediction files (val_original.json order)."""
    with open(shared / "imagenet" / "val_original.json") as f:
        pairs = json.load(f)["image_filenames"]
    return [p[0] for p in pairs]


@pytest.fixture(scope="session")
def resnet50(shared):
    return np.load(shared / "predictions" / "imagenet-val" / "resnet50.npy")
