"""kp.auto.sensitivity: curves per layer / group, the cache, the equal-drop allocation."""

import os

import keras
import numpy as np
import pytest
from conftest import small_cnn

import keras_prune as kp
from keras_prune import auto
from keras_prune.auto.replay import Replay, predict


def test_replay_from_any_cut_matches_the_model(trained, digits):
    _, (x, y) = digits
    replay = Replay(trained, x[:50], batch_size=16)
    expected = np.asarray(trained.predict(x[:50], verbose=0))
    for layer in trained.layers:
        replay.advance(replay.first_call_of(layer))
        np.testing.assert_allclose(replay.predict_from(replay.position), expected, atol=1e-5)
    with pytest.raises(ValueError, match="only moves forward"):
        replay.advance(0)
    np.testing.assert_allclose(predict(trained, x[:50], 7), expected, atol=1e-5)


def test_unstructured_curves_cache_and_table(trained, digits, tmp_path):
    _, validation = digits
    weights_before = [w.copy() for w in trained.get_weights()]
    scan = auto.sensitivity(
        trained,
        validation,
        sparsities=(0.5, 0.99),
        samples=200,
        cache_dir=tmp_path,
        verbose=0,
    )
    for before, after in zip(weights_before, trained.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)  # the model is never changed
    assert [unit["name"] for unit in scan.units] == ["conv1", "conv2", "dense1", "logits"]
    assert scan.metric == "loss" and not scan.higher_is_better and scan.samples == 200
    for unit in scan.units:
        assert len(unit["drops"]) == 2
        assert unit["drops"][1] > unit["drops"][0] - 1e-3  # 99% hurts at least as much as 50%
    assert scan.units[3]["drops"][1] > 0.1  # the classifier at 99% is hurt
    assert "conv2" in scan.table() and "0.99" in scan.table()
    files = os.listdir(tmp_path / "sensitivity")
    assert len(files) == 1
    again = auto.sensitivity(
        trained, validation, sparsities=(0.5, 0.99), samples=200, cache_dir=tmp_path, verbose=0
    )
    assert again == scan  # read from the cache
    pytest.importorskip("matplotlib")
    path = scan.plot(tmp_path / "curves.png")
    assert open(path, "rb").read(4) == b"\x89PNG"


def test_channel_curves_and_metric_names(trained, digits):
    _, validation = digits
    scan = auto.sensitivity(
        trained,
        validation,
        granularity="channel",
        metric="accuracy",
        sparsities=(0.25, 0.75),
        samples=150,
        cache_dir=False,
        verbose=0,
    )
    assert scan.higher_is_better
    names = [unit["name"] for unit in scan.units]
    assert names == ["group 0: conv1", "group 1: conv2", "group 2: dense1"]
    assert scan.layer_curves().keys() == {"conv1", "conv2", "dense1"}

    def error_rate(y_true, y_pred):
        return float(np.mean(np.argmax(y_pred, -1) != y_true))

    custom = auto.sensitivity(
        trained,
        validation,
        metric=error_rate,
        higher_is_better=False,
        sparsities=(0.9,),
        filters="dense1",
        cache_dir=False,
        verbose=0,
    )
    assert [unit["name"] for unit in custom.units] == ["dense1"]


def test_equal_drop_sparsities_math():
    grid = [0.5, 0.9]
    curves = {"robust": [0.0, 0.01], "fragile": [0.2, 0.9]}
    sizes = {"robust": 300, "fragile": 100}
    chosen = auto.equal_drop_sparsities(curves, grid, sizes, 0.6)
    mean = (300 * chosen["robust"] + 100 * chosen["fragile"]) / 400
    assert mean == pytest.approx(0.6, abs=1e-6)
    assert chosen["robust"] > 0.6 > chosen["fragile"]
    # Flat curves share the sparsity equally.
    flat = auto.equal_drop_sparsities({"a": [0, 0], "b": [0, 0]}, grid, {"a": 1, "b": 3}, 0.4)
    assert flat["a"] == pytest.approx(0.4, abs=1e-3) and flat["b"] == pytest.approx(0.4, abs=1e-3)
    # Beyond every layer at the cap: all at the cap.
    capped = auto.equal_drop_sparsities(curves, grid, sizes, 0.95)
    assert capped == {"robust": 0.9, "fragile": 0.9}


def test_allocation_prunes_and_round_trips(trained, digits):
    _, validation = digits
    scan = auto.sensitivity(
        trained, validation, sparsities=(0.5, 0.9, 0.99), cache_dir=False, verbose=0
    )
    allocation = scan.allocation()
    config = keras.saving.serialize_keras_object(allocation)
    assert keras.saving.deserialize_keras_object(config) == allocation
    callback = kp.PruningCallback(allocation=allocation)
    assert kp.PruningCallback(**callback.get_config()).allocation == allocation
    pruned = kp.prune_once(trained, 0.9, allocation=allocation)
    rows = [row for row in kp.reporting.weight_rows(pruned)]
    total = sum(row.params for row in rows)
    zeros = sum(row.params - row.nonzeros for row in rows)
    assert zeros / total == pytest.approx(0.9, abs=0.01)
    by_layer = {row.layer: row.sparsity for row in rows}
    expected = scan.sparsities_for(0.9)
    for name, sparsity in expected.items():
        assert by_layer[name] == pytest.approx(sparsity, abs=0.01)
    assert by_layer["logits"] < 0.9  # the most sensitive layer keeps more


def test_sensitivity_errors_name_the_argument(trained, digits):
    _, (x, y) = digits
    with pytest.raises(ValueError, match=r"validation_data.*\(num_samples, 8, 8, 1\)"):
        auto.sensitivity(trained, (x[:, :4], y), verbose=0, cache_dir=False)
    with pytest.raises(ValueError, match="validation_data"):
        auto.sensitivity(trained, x, verbose=0, cache_dir=False)
    with pytest.raises(ValueError, match="sparsities"):
        auto.sensitivity(trained, (x, y), sparsities=(0.9, 0.5), verbose=0, cache_dir=False)
    with pytest.raises(ValueError, match="compile"):
        auto.sensitivity(small_cnn(), (x, y), verbose=0, cache_dir=False)
    with pytest.raises(ValueError, match="higher_is_better"):
        auto.sensitivity(trained, (x, y), metric=lambda a, b: 0.0, verbose=0, cache_dir=False)
    with pytest.raises(ValueError, match="metric"):
        auto.sensitivity(trained, (x, y), metric="f1", verbose=0, cache_dir=False)


def test_plots_say_how_to_install_matplotlib(monkeypatch, tmp_path):
    from keras_prune.reporting import plots

    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install keras-prune\[plots\]"):
        plots.bar_chart(["a"], [1.0], tmp_path / "bars.png")
