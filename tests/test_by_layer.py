"""A granularity per kind of layer (`kp.granularity.ByLayer`) and the preset
`granularity="mobile"`: 1x4 blocks on fully-connected weights, channels on convolutions."""

import keras
import numpy as np
import pytest
from test_round_trip import assert_round_trip

import keras_prune as kp
from keras_prune.core import granularity as granularity_lib


def mobile_cnn():
    """Convolutions (one 1x1) with a BatchNormalization, global pooling and a fully-connected
    head; `fc2` (30 inputs) cannot be tiled by 1x4 blocks."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False, name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    x = keras.layers.Conv2D(24, 3, strides=2, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.Conv2D(16, 1, activation="relu", name="pointwise")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(32, activation="relu", name="fc1")(x)
    x = keras.layers.Dense(30, activation="relu", name="fc2")(x)
    outputs = keras.layers.Dense(10, name="logits")(x)
    return keras.Model(inputs, outputs, name="mobile_cnn")


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.random((64, 12, 12, 3), dtype=np.float32), rng.integers(0, 10, 64)


def granularities(model):
    return {w.layer.name: w.granularity for w in kp.layers.find_wrappers(model)}


def test_mobile_is_1x4_blocks_on_fully_connected_and_channels_on_convolutions():
    mobile = kp.granularity.get("mobile")
    assert mobile == kp.granularity.ByLayer(
        fully_connected=kp.granularity.Block((1, 4), partial_blocks="skip"),
        convolution="channel",
        other=None,
    )
    kinds = {
        "fully_connected": [keras.layers.Dense(4), keras.layers.EinsumDense("ab,bc->ac", 4)],
        "convolution": [
            keras.layers.Conv2D(4, 1),
            keras.layers.DepthwiseConv2D(3),
            keras.layers.SeparableConv1D(4, 3),
            keras.layers.Conv2DTranspose(4, 3),
        ],
        "other": [keras.layers.Embedding(10, 4), keras.layers.LSTM(4)],
    }
    for kind, layers in kinds.items():
        for layer in layers:
            assert kp.granularity.ByLayer.kind(layer) == kind
    assert mobile.for_layer(keras.layers.Embedding(10, 4)) is None
    assert isinstance(mobile.channel, kp.granularity.Channel)


def test_by_layer_round_trips_and_refuses_what_it_cannot_hold():
    assert_round_trip(kp.granularity.get("mobile"))
    assert_round_trip(kp.granularity.ByLayer(fully_connected="2:4", convolution=None))
    assert kp.granularity.deserialize(kp.granularity.serialize("mobile")) == (
        kp.granularity.mobile()
    )
    with pytest.raises(ValueError, match="at least one kind"):
        kp.granularity.ByLayer(None, None, None)
    with pytest.raises(ValueError, match="fully_connected"):
        kp.granularity.ByLayer(fully_connected="mobile")
    with pytest.raises(ValueError, match=r"'channel'.*Received: convolution='bogus'"):
        kp.granularity.ByLayer(convolution="bogus")
    with pytest.raises(ValueError, match="partial_blocks"):
        kp.granularity.Block((1, 4), partial_blocks="pad")


def test_a_wrapper_given_by_layer_takes_the_granularity_of_its_layer():
    wrapper = kp.PruneWrapper(keras.layers.Dense(4), granularity="mobile")
    assert wrapper.granularity == kp.granularity.Block((1, 4), partial_blocks="skip")
    with pytest.raises(ValueError, match="'emb' is a other layer|leaves unpruned"):
        kp.PruneWrapper(keras.layers.Embedding(10, 4, name="emb"), granularity="mobile")


def test_default_allocation_is_per_layer_unless_every_kind_is_unstructured():
    assert kp.pruning.default_allocation("mobile", "binary") is None
    assert isinstance(
        kp.pruning.default_allocation(kp.granularity.ByLayer(), "binary"),
        kp.allocation.GlobalAllocation,
    )


def test_prune_mobile_gives_each_layer_its_granularity_and_says_what_it_leaves():
    pruned = kp.prune(mobile_cnn(), granularity="mobile")
    found = granularities(pruned)
    channel, blocks = kp.granularity.Channel(), kp.granularity.Block((1, 4), partial_blocks="skip")
    convolutions = {name: channel for name in ("conv1", "bn1", "conv2", "pointwise")}
    assert found == {**convolutions, "fc1": blocks, "fc2": blocks}
    assert all(w.allocation is None for w in kp.layers.find_wrappers(pruned))
    assert "do not tile" in pruned.pruning_report.skipped["logits"]
    assert "fc1" in str(pruned.pruning_report) and "Block(" in str(pruned.pruning_report)


def test_channels_that_cannot_go_in_runs_of_4_lined_up_with_the_blocks_stay():
    inputs = keras.Input((6, 6, 3))
    narrow = keras.layers.Conv2D(2, 3, name="narrow")(inputs)  # channels 0-1 of the concat
    wide = keras.layers.Conv2D(6, 3, name="wide")(inputs)  # channels 2-7: runs off by 2
    x = keras.layers.Concatenate()([narrow, wide])
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(4, name="fc")(x)
    pruned = kp.prune(keras.Model(inputs, outputs), granularity="mobile")
    for name in ("narrow", "wide"):
        assert "line up" in pruned.pruning_report.skipped[name]
    assert set(granularities(pruned)) == {"fc"}


def test_mixed_granularities_train_strip_and_shrink(data):
    x, y = data
    model = mobile_cnn()
    pruned = kp.prune(
        model, schedule=kp.ConstantSparsity(0.5, 0, frequency=1), granularity="mobile"
    )
    pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruned.fit(x, y, batch_size=32, epochs=1, callbacks=[kp.PruningCallback()], verbose=0)
    wrappers = {w.layer.name: w for w in kp.layers.find_wrappers(pruned)}
    # Channels: whole filters of conv1, coupled with bn1's scales.
    conv1 = keras.ops.convert_to_numpy(wrappers["conv1"].masks[0]).astype(bool)
    kept = conv1.reshape(-1, 16).any(0)
    assert kept.sum() == 8 and (conv1.reshape(-1, 16).all(0) == kept).all()
    bn1 = keras.ops.convert_to_numpy(wrappers["bn1"].masks[0]).astype(bool)
    assert (bn1 == kept).all()
    # 1x4 blocks along fc1's input axis (Keras kernel [in, out]).
    fc1 = keras.ops.convert_to_numpy(wrappers["fc1"].masks[0]).astype(bool)
    blocks = fc1.reshape(4, 4, 32)
    assert (blocks.all(1) == blocks.any(1)).all() and fc1.mean() == 0.5

    # pointwise feeds fc1's 1x4 blocks: its channels go in aligned runs of 4.
    pointwise = keras.ops.convert_to_numpy(wrappers["pointwise"].masks[0]).astype(bool)
    runs = pointwise.reshape(-1, 4, 4).any(0).reshape(4, 4)
    assert (runs.all(1) == runs.any(1)).all() and runs.all(1).sum() == 2

    plain = kp.strip(pruned)
    # round_to=4: fc1's neurons whose 1x4 blocks were all pruned are exactly zero, and removing
    # fewer than 4 of them would leave fc2's input in partial blocks.
    small = kp.shrink(plain, round_to=4)
    shapes = {
        layer.name: tuple(layer.kernel.shape) for layer in small.layers if hasattr(layer, "kernel")
    }
    assert shapes["conv1"] == (3, 3, 3, 8)
    assert shapes["conv2"] == (3, 3, 8, 12)
    assert shapes["pointwise"] == (1, 1, 12, 8)
    # fc1 lost whole runs of 4 inputs (its blocks stay whole), and its dead neurons in fours.
    assert shapes["fc1"][0] == 8 and shapes["fc1"][1] % 4 == 0
    np.testing.assert_allclose(small.predict(x, verbose=0), plain.predict(x, verbose=0), atol=1e-5)
    fc1 = small.get_layer("fc1").kernel.numpy().T.reshape(-1, 2, 4) != 0
    assert (fc1.all(2) == fc1.any(2)).all()


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="kp.export runs on the TensorFlow backend"
)
def test_the_preset_exports_fully_connected_weights_sparse_and_matches_keras(tmp_path, data):
    x, _ = data
    model = mobile_cnn()
    small = kp.shrink(kp.strip(kp.prune_once(model, 0.5, granularity="mobile")), round_to=4)
    result = kp.export.to_tflite(
        small,
        tmp_path / "mobile.tflite",
        target="mobile",
        verification_data=x[:8],
        latency_runs=0,
    )
    stored = {t["name"].split("/")[1].rsplit("_", 1)[0]: t for t in result.tensor_storage}
    assert stored["fc1"]["storage"] == "sparse" and "block 1x4" in stored["fc1"]["encoding"]
    outputs = kp.export.predict(result.path, x[:8])
    np.testing.assert_allclose(outputs, small.predict(x[:8], verbose=0), atol=1e-4)


def test_a_model_pruned_with_the_preset_saves_and_reloads(tmp_path, data):
    x, _ = data
    pruned = kp.prune(
        mobile_cnn(), schedule=kp.ConstantSparsity(0.5, 0, frequency=1), granularity="mobile"
    )
    kp.pruning.update_masks(pruned, 0)
    path = tmp_path / "pruned.keras"
    pruned.save(path)
    loaded = keras.saving.load_model(path)
    assert granularities(loaded) == granularities(pruned)
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), pruned.predict(x, verbose=0), atol=1e-6
    )


def test_blocks_that_do_not_tile_a_weight_are_skipped_or_pooled():
    dense = keras.layers.Dense(8)
    dense.build((None, 10))
    skip = kp.PruneWrapper(dense, granularity=kp.granularity.Block((1, 4), partial_blocks="skip"))
    skip.build((None, 10))
    assert not skip.targets and "do not tile" in skip.left_alone[0][1]
    pooled = kp.PruneWrapper(dense, granularity=kp.granularity.Block((1, 4)))
    pooled.build((None, 10))
    assert len(pooled.targets) == 1


@pytest.mark.slow
def test_partial_blocks_are_stored_dense_with_the_layer_and_the_fix(tmp_path):
    # The converter encodes 1x4 blocks on a 10-wide input in a form LiteRT cannot read.
    inputs = keras.Input((10,))
    outputs = keras.layers.Dense(8, name="narrow")(keras.layers.Dense(64, name="wide")(inputs))
    model = keras.Model(inputs, outputs)
    pruned = kp.strip(kp.prune_once(model, 0.75, granularity=kp.granularity.Block((1, 4))))
    result = kp.export.to_tflite(pruned, tmp_path / "m.tflite", target="mobile", latency_runs=0)
    assert result.storage == "dense"
    notes = "\n".join(result.notes)
    assert "partial_blocks" in notes and "wide" in notes and "not a multiple of 4" in notes


def test_a_subclassed_model_keeps_its_convolutions_and_prunes_its_dense_layers():
    if keras.backend.backend() == "jax":
        pytest.skip("subclassed models are pruned in place, not on JAX")

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = keras.layers.Conv2D(8, 3, name="conv")
            self.pool = keras.layers.GlobalAveragePooling2D()
            self.dense = keras.layers.Dense(4, name="dense")

        def call(self, x):
            return self.dense(self.pool(self.conv(x)))

    net = Net()
    net(np.zeros((1, 8, 8, 3), "float32"))
    kp.prune(net, granularity="mobile")
    report = net.pruning_report
    assert report.wrapped == ["dense"]
    assert "subclassed" in report.skipped["conv"]


def test_granularity_module_names_the_preset_in_get():
    assert "mobile" in granularity_lib.REGISTRY.names()
