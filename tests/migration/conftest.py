"""Configuration for the tfmot migration suite (see README.md in this directory)."""

import keras
import pytest


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: takes more than a few seconds; deselect with -m 'not slow'"
    )


def pytest_collection_modifyitems(config, items):
    # tfmot users ran TensorFlow; several recipes (custom training loops, TFLite conversion) use
    # TensorFlow itself, so this suite runs on the TensorFlow backend only.
    if keras.backend.backend() == "tensorflow":
        return
    skip = pytest.mark.skip(reason="the tfmot migration suite runs on the TensorFlow backend")
    for item in items:
        if "tests/migration/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(skip)
