"""Shared fixtures: small data and models, built once per session where tests only read them."""

import contextlib
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def digits():
    """sklearn's bundled 8x8 digits (offline), scaled to [0, 1], split 80/20."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = (data.images / 16.0).astype("float32")[..., None]
    labels = data.target.astype("int32")
    split = int(0.8 * len(images))
    return (images[:split], labels[:split]), (images[split:], labels[split:])


def small_cnn(seed=0):
    """A 2-conv CNN for 8x8x1 inputs with 10 outputs."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1"),
            keras.layers.Conv2D(16, 3, activation="relu", name="conv2"),
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu", name="dense1"),
            keras.layers.Dense(10, name="logits"),
        ],
        name="small_cnn",
    )


def compile_for_digits(model, learning_rate=1e-2):
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


@pytest.fixture(scope="module")
def trained(digits):
    """`small_cnn` trained 3 epochs on digits, compiled: one per test module (the automated
    compression tests read it, never change it)."""
    (x, y), _ = digits
    model = compile_for_digits(small_cnn(), 1e-2)
    model.fit(x, y, epochs=3, batch_size=64, verbose=0)
    return model


@contextlib.contextmanager
def dtype_policy(policy):
    """Build layers under the Keras dtype `policy` (e.g. "mixed_float16"); the global policy is
    float32 again afterwards, even if the block raises."""
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy("float32")


@pytest.fixture
def random_batch():
    rng = np.random.default_rng(0)
    return rng.random((64, 8, 8, 1), dtype=np.float32), rng.integers(0, 10, 64)


# -- slow tests: deselected unless asked for -----------------------------------------------------


def pytest_addoption(parser):
    parser.addoption(
        "--runslow",
        action="store_true",
        default=False,
        help="also run tests marked slow (the whole model zoo); `-m slow` runs only those",
    )


def pytest_collection_modifyitems(config, items):
    # An explicit `-m` expression that names `slow` ("slow", "not slow", ...) decides by itself.
    if config.getoption("--runslow") or "slow" in (config.getoption("markexpr") or ""):
        return
    kept, deselected = [], []
    for item in items:
        (deselected if item.get_closest_marker("slow") else kept).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept
