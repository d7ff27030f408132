"""kp.auto.profile: fused blocks, the latency table against the whole model, the cache; text
constraints and objectives."""

import json
import os

import keras
import pytest

import keras_prune as kp
from keras_prune import auto
from keras_prune.auto import blocks as blocks_lib
from keras_prune.auto import constraints, objectives
from keras_prune.auto.latency_profile import _CACHE_KIND


def block_cnn():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False, name="stem")(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    y = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="branch")(x)
    x = keras.layers.Add(name="residual")([x, y])
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(5, name="logits")(x)
    return keras.Model(inputs, outputs, name="block_cnn")


def test_blocks_fuse_batch_norm_and_activation():
    found = blocks_lib.blocks(block_cnn())
    assert [block.name for block in found] == ["stem", "branch", "residual", "pool", "logits"]
    assert found[0].kinds == ["Conv2D", "BatchNormalization", "ReLU"]
    assert found[0].mixing and not found[2].mixing
    assert len(found[2].inputs) == 2
    small = found[0].small_model()
    assert tuple(small.inputs[0].shape) == (1, 12, 12, 3)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("profile_cache")


def test_profile_table_check_cache_and_prediction(cache, tmp_path):
    model = block_cnn()
    table = auto.profile(model, sparsities=(), runs=5, rounds=1, cache_dir=cache, verbose=0)
    assert [row.name for row in table.blocks] == ["stem", "branch", "residual", "pool", "logits"]
    assert table.blocks[0].ops == ["CONV_2D"]  # BatchNorm folded, ReLU fused
    assert all(row.latency_us is not None and row.latency_us >= 0 for row in table.blocks)
    assert table.clock == "thread"  # the default ("auto") with one thread
    assert [check["sparsity"] for check in table.checks] == [0.0]
    assert table.latency_us > 0 and table.error is not None
    assert table.file_bytes > 0 and table.measured_blocks > 0
    text = table.table()
    assert "stem" in text and "whole model" in text and "error" in text
    groups = kp.graph.channel_groups(model)
    half = {g.index: g.size // 2 for g in groups if g.prunable}
    full = table.predict(model)
    smaller = table.predict(model, half)
    assert full["latency_us"] == pytest.approx(table.latency_us)
    assert smaller["latency_us"] < full["latency_us"]
    assert smaller["file_bytes"] < full["file_bytes"]
    again = auto.profile(model, sparsities=(), runs=5, rounds=1, cache_dir=cache, verbose=0)
    assert again.measured_blocks == 0 and again.cached_blocks == table.measured_blocks
    assert again.latency_us == table.latency_us
    restored = auto.Profile.from_dict(table.to_dict())
    assert restored.blocks == table.blocks
    pytest.importorskip("matplotlib")
    path = table.plot(os.path.join(tmp_path, "bottlenecks.png"))
    assert open(path, "rb").read(4) == b"\x89PNG"


def test_profile_refuses_open_shapes_and_unknown_targets():
    inputs = keras.Input((None, 4))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    with pytest.raises(ValueError, match="fixed input shapes"):
        auto.profile(model, verbose=0, cache_dir=False)
    with pytest.raises(ValueError, match="target"):
        auto.profile(block_cnn(), "phone", verbose=0, cache_dir=False)


@pytest.mark.slow
def test_profile_at_several_channel_sparsities(cache):
    model = block_cnn()
    table = auto.profile(model, sparsities=(0.5,), runs=10, cache_dir=cache, verbose=0)
    assert [check["sparsity"] for check in table.checks] == [0.0, 0.5]
    assert table.checks[1]["measured_us"] < table.checks[0]["measured_us"]
    assert [len(row.points) for row in table.blocks] == [2] * 5
    groups = kp.graph.channel_groups(model)
    half = table.predict(model, {g.index: g.size // 2 for g in groups if g.prunable}, False)
    assert half["latency_us"] == pytest.approx(table.checks[1]["table_us"], rel=0.2)


@pytest.mark.slow
def test_profile_for_microcontrollers(tmp_path):
    table = auto.profile(block_cnn(), "mcu", sparsities=(), cache_dir=tmp_path, verbose=0)
    assert table.arena_bytes > 0 and table.unsupported_ops == []
    assert all(row.latency_us is None for row in table.blocks)
    predicted = table.predict(block_cnn(), {0: 8})
    assert predicted["arena_bytes"] < table.arena_bytes


def test_constraints_parse_units_and_name_mistakes():
    parsed = constraints.parse("latency <= 20 ms")
    assert (parsed.name, parsed.op, parsed.value) == ("latency", "<=", 20000.0)
    assert constraints.parse("arena <= 64 KB").value == 65536
    assert constraints.parse("size<1MB").value == 1024**2
    assert constraints.parse("macs <= 5M").value == 5e6
    assert constraints.parse("accuracy >= 0.9").met(0.95)
    assert constraints.parse("latency <= 1 ms").violation(1500.0) == 500.0
    with pytest.raises(ValueError, match="Could not read the constraint"):
        constraints.parse("latency is small")
    with pytest.raises(ValueError, match="does not fit 'latency'"):
        constraints.parse("latency <= 3 KB")
    with pytest.raises(ValueError, match="Unknown unit"):
        constraints.parse("latency <= 3 hours")
    assert objectives.get("loss").maximize is False
    assert objectives.get("accuracy").maximize is True
    assert objectives.format_value(1500.0, "us") == "1.5 ms"
    assert objectives.format_value(65536, "bytes") == "64.0 KB"


def test_latencies_on_the_thread_clock():
    from keras_prune.export import convert as convert_lib
    from keras_prune.export.targets import get_target

    inputs = keras.Input((16,))
    model = keras.Model(inputs, keras.layers.Dense(64)(inputs))
    data = convert_lib.convert(model, get_target("mobile"))
    first, second = kp.export.measure_latencies([data, data], runs=5, rounds=2, clock="thread")
    assert first > 0 and second > 0
    with pytest.raises(ValueError, match="clock"):
        kp.export.measure_latencies([data], clock="thread", threads=2)
    with pytest.raises(ValueError, match="clock"):
        auto.profile(model, clock="cpu", verbose=0, cache_dir=False)
    # "auto" is the wall clock with several threads (one thread's CPU time would miss the rest)
    table = auto.profile(
        model, sparsities=(), runs=2, rounds=1, threads=2, verbose=0, cache_dir=False
    )
    assert table.clock == "wall"


def test_blocks_differing_only_in_training_settings_share_one_timing():
    # Momentum, initializers and regularizers do not change inference: one timing, one cache
    # entry. A different filter count does.
    def model(momentum, filters=8, regularizer=None):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((8, 8, 3))
        x = keras.layers.Conv2D(filters, 3, kernel_regularizer=regularizer)(inputs)
        x = keras.layers.BatchNormalization(momentum=momentum)(x)
        return keras.Model(inputs, keras.layers.ReLU()(x))

    def signatures(built):
        return [block.signature() for block in blocks_lib.blocks(built)]

    reference = signatures(model(0.99))
    assert signatures(model(0.9, regularizer="l2")) == reference
    assert signatures(model(0.99, filters=16)) != reference


def test_a_cached_table_that_misses_the_whole_model_is_measured_again(tmp_path):
    # Blocks cached by an earlier run (say, timed while other jobs loaded the machine) that no
    # longer add up to the whole model are measured again, not trusted for ever.
    model = block_cnn()
    options = dict(sparsities=(), runs=5, rounds=1, cache_dir=tmp_path, verbose=0)
    first = auto.profile(model, **options)
    folder = tmp_path / _CACHE_KIND
    stale = {}
    for path in folder.glob("*.json"):
        entry = json.loads(path.read_text())
        if "ops" in entry:  # a block, not the whole model
            entry["latency_us"] = 10 * entry["latency_us"] + 1000.0
            path.write_text(json.dumps(entry))
            stale[path] = entry["latency_us"]
    assert len(stale) == len(first.blocks)

    with pytest.warns(UserWarning, match="off the whole model's measured latency"):
        kept = auto.profile(model, remeasure=False, **options)
    assert kept.measured_blocks == 0 and kept.remeasured_error is None
    assert kept.error > 1

    again = auto.profile(model, **options)
    assert again.measured_blocks == len(first.blocks) and again.cached_blocks == 0
    assert again.remeasured_error == pytest.approx(kept.error)
    assert "measured again" in again.table()
    for path, latency in stale.items():  # the cache now holds the new measurements
        assert json.loads(path.read_text())["latency_us"] < latency - 900
    assert auto.Profile.from_dict(again.to_dict()).remeasured_error == again.remeasured_error
    # A table measured together with its whole model is not measured again on later runs, even
    # when the two disagree (each run would disagree alike, and the cache would be useless).
    for path in folder.glob("*.json"):
        entry = json.loads(path.read_text())
        if "table_us" in entry:  # the whole model, with the table sum it was checked against
            entry["latency_us"] *= 10
            path.write_text(json.dumps(entry))
    with pytest.warns(UserWarning, match="off the whole model's measured latency"):
        cached = auto.profile(model, **options)
    assert cached.measured_blocks == 0 and cached.remeasured_error is None
