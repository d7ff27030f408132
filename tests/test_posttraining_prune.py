"""kp.posttraining.prune_posttraining end to end: what it prunes, in which order, with which patterns, what it
returns (a fine-tunable, strippable model) and how it refuses bad input."""

import keras
import numpy as np
import pytest
from conftest import small_cnn
from language_models import tiny_lm, token_data

import keras_prune as kp
from keras_prune.core import masks as masks_lib
from keras_prune.posttraining import methods as methods_lib
from keras_prune.posttraining.sparsegpt import sparsegpt

RNG = np.random.default_rng(0)


def _images(count=64):
    return RNG.random((count, 8, 8, 1)).astype("float32")


def _relative_error(model, pruned, x):
    dense = model.predict(x, verbose=0)
    return float(np.mean((pruned.predict(x, verbose=0) - dense) ** 2) / np.mean(dense**2))


def test_sparsegpt_writes_the_solver_result_into_the_layer():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, name="dense")])
    x = (RNG.normal(size=(40, 3)) @ RNG.normal(size=(3, 6))).astype("float32")
    pruned = kp.posttraining.prune_posttraining(
        model, x, method=kp.posttraining.SparseGPT(block_size=4), sparsity=0.5, verbose=0
    )
    kernel = np.asarray(model.get_layer("dense").kernel)
    expected, mask, _ = sparsegpt(kernel.T, 2 * x.T.astype(np.float64) @ x / 40, 0.5, block_size=4)
    wrapper = kp.layers.find_wrappers(pruned)[0]
    np.testing.assert_allclose(np.asarray(wrapper.layer.kernel), expected.T, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(wrapper.masks[0]), mask.T)
    assert float(wrapper.sparsity) == 0.5


def test_methods_rank_as_the_papers_on_a_cnn():
    model = small_cnn()
    x = _images()
    errors = {
        method: _relative_error(
            model,
            kp.posttraining.prune_posttraining(model, x, method=method, sparsity=0.6, verbose=0),
            x,
        )
        for method in ("magnitude", "wanda", "sparsegpt")
    }
    assert errors["sparsegpt"] < errors["magnitude"]
    for wrapper in kp.layers.find_wrappers(
        kp.posttraining.prune_posttraining(model, x, method="sparsegpt", sparsity=0.6, verbose=0)
    ):
        assert np.mean(np.asarray(wrapper.masks[0]) == 0) == pytest.approx(0.6, abs=0.02)


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
def test_n_of_m_and_blocks_follow_the_library_patterns(method):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 4))
    h = keras.layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    h = keras.layers.Flatten()(h)
    model = keras.Model(inputs, keras.layers.Dense(8, name="dense")(h))
    x = RNG.random((16, 6, 6, 4)).astype("float32")
    pruned = kp.posttraining.prune_posttraining(
        model, x, method=method, granularity="2:4", verbose=0
    )
    for wrapper in kp.layers.find_wrappers(pruned):
        target = wrapper.targets[0]
        # Masks are stored as uint8; as scores they are ranked as floats.
        view, _, _ = masks_lib.to_tflite_view(
            np.asarray(wrapper.masks[0]).astype("float32"), target.output_axis, target.input_axis
        )
        view = np.asarray(view)
        expected = np.asarray(masks_lib.n_of_m_mask(view, 2, 4))
        np.testing.assert_array_equal(view.reshape(view.shape[0], -1, 4).sum(-1), 2)
        assert expected.shape == view.shape
    pruned = kp.posttraining.prune_posttraining(
        model, x, method=method, granularity=kp.granularity.Block((1, 4)), sparsity=0.5, verbose=0
    )
    for wrapper in kp.layers.find_wrappers(pruned):
        target = wrapper.targets[0]
        view, _, _ = masks_lib.to_tflite_view(
            np.asarray(wrapper.masks[0]), target.output_axis, target.input_axis
        )
        blocks = np.asarray(view).reshape(np.asarray(view).shape[0], -1, 4)
        assert np.all((blocks.sum(-1) == 0) | (blocks.sum(-1) == 4))
        assert np.mean(blocks == 0) == pytest.approx(0.5, abs=0.02)


def test_transformer_lm_prunes_attention_projections_and_feed_forward():
    model = tiny_lm()
    x, _ = token_data()
    pruned = kp.posttraining.prune_posttraining(
        model, x, method="sparsegpt", sparsity=0.5, verbose=0
    )
    report = pruned.posttraining_report
    pruned_paths = [row["weight"] for row in report.weights]
    for name in ("query", "key", "value", "attention_output"):
        assert f"attn0/{name}/kernel" in pruned_paths
    assert "ffn_in1/kernel" in pruned_paths and "logits/kernel" in pruned_paths
    assert "embed" in report.left_dense
    assert "embed" in pruned.pruning_report.skipped
    assert all(row["sparsity"] == pytest.approx(0.5, abs=0.01) for row in report.weights)
    assert all(row["error"] is not None and row["error"] < 1 for row in report.weights)
    assert report.sequential
    assert _relative_error(model, pruned, x) < _relative_error(
        model, kp.posttraining.prune_posttraining(model, x, method="magnitude", verbose=0), x
    )
    assert "attn0/query/kernel" in str(report)


def test_filters_choose_layers():
    model = tiny_lm()
    x, _ = token_data(16)
    pruned = kp.posttraining.prune_posttraining(model, x, method="wanda", filters="ffn", verbose=0)
    assert sorted(w.name for w in kp.layers.find_wrappers(pruned)) == [
        "ffn_in0",
        "ffn_in1",
        "ffn_out0",
        "ffn_out1",
    ]


def test_result_fine_tunes_with_the_callback_strips_and_saves(tmp_path):
    model = small_cnn()
    x = _images(32)
    y = RNG.integers(0, 10, 32)
    pruned = kp.posttraining.prune_posttraining(
        model, x, method="sparsegpt", sparsity=0.5, verbose=0
    )
    pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruned.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[kp.PruningCallback()])
    for wrapper in kp.layers.find_wrappers(pruned):
        kernel, mask = np.asarray(wrapper.layer.kernel), np.asarray(wrapper.masks[0])
        assert np.all(kernel[mask == 0] == 0)
    plain = kp.strip(pruned)
    np.testing.assert_allclose(plain.predict(x, verbose=0), pruned.predict(x, verbose=0), atol=1e-5)
    path = tmp_path / "pruned.keras"
    pruned.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), pruned.predict(x, verbose=0))


def test_subclassed_models_are_pruned_in_one_pass():
    class Mlp(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden = keras.layers.Dense(16, activation="relu")
            self.out = keras.layers.Dense(3)

        def call(self, x):
            return self.out(self.hidden(x))

    model = Mlp()
    x = RNG.normal(size=(32, 8)).astype("float32")
    model(x[:1])
    pruned = kp.posttraining.prune_posttraining(
        model, x, method="sparsegpt", sparsity=0.5, verbose=0
    )
    assert pruned.posttraining_report.sequential is False
    assert "one pass" in str(pruned.posttraining_report)
    assert np.mean(np.asarray(model.hidden.kernel) == 0) == pytest.approx(0.5)


def test_keras_hub_backbone_is_pruned_through_its_blocks():
    keras_hub = pytest.importorskip("keras_hub")
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
        max_sequence_length=8,
    )  # fmt: skip
    x = {
        "token_ids": RNG.integers(0, 50, (8, 8)),
        "segment_ids": np.zeros((8, 8), "int32"),
        "padding_mask": np.ones((8, 8), "int32"),
    }
    pruned = kp.posttraining.prune_posttraining(backbone, x, method="sparsegpt", verbose=0)
    assert isinstance(pruned, kp.pruning.PrunedModel)
    weights = [row["weight"] for row in pruned.posttraining_report.weights]
    assert "transformer_layer_1/feedforward_output_dense/kernel" in weights
    assert "transformer_layer_0/self_attention_layer/attention_output/kernel" in weights
    plain = kp.strip(pruned)
    assert isinstance(plain, keras_hub.models.BertBackbone)


def test_progress_names_the_layer(capsys):
    model = small_cnn()
    kp.posttraining.prune_posttraining(model, _images(8), method="wanda", verbose=1)
    assert "now dense1" in capsys.readouterr().out


def test_magnitude_needs_no_data_and_equals_prune_once():
    model = small_cnn()
    pruned = kp.posttraining.prune_posttraining(model, method="magnitude", sparsity=0.7, verbose=0)
    once = kp.prune_once(model, 0.7, allocation="per_layer")
    for a, b in zip(kp.layers.find_wrappers(pruned), kp.layers.find_wrappers(once), strict=True):
        np.testing.assert_array_equal(np.asarray(a.masks[0]), np.asarray(b.masks[0]))


def test_methods_serialize():
    methods = (
        kp.posttraining.SparseGPT(64, 0.05),
        kp.posttraining.Wanda(),
        kp.posttraining.Magnitude(),
    )
    for method in methods:
        config = methods_lib.REGISTRY.serialize(method)
        assert methods_lib.REGISTRY.deserialize(config) == method
    assert methods_lib.get("sparsegpt") == kp.posttraining.SparseGPT(128, 0.01)
    # The criterion of the same class name still deserializes as the criterion.
    criterion = keras.saving.serialize_keras_object(kp.criteria.Magnitude())
    assert isinstance(keras.saving.deserialize_keras_object(criterion), kp.criteria.Magnitude)
    with pytest.raises(ValueError, match="damping"):
        kp.posttraining.SparseGPT(damping=0)
    with pytest.raises(ValueError, match="Unknown method 'obs'"):
        methods_lib.get("obs")


def test_bad_input_is_named():
    model = small_cnn()
    x = _images(8)
    with pytest.raises(ValueError, match="needs `calibration_data`"):
        kp.posttraining.prune_posttraining(model, method="sparsegpt", verbose=0)
    with pytest.raises(ValueError, match="wrong shape.*\\(batch, 8, 8, 1\\).*\\(8, 8, 8\\)"):
        kp.posttraining.prune_posttraining(model, x[..., 0], method="wanda", verbose=0)
    with pytest.raises(ValueError, match="2:4 does not divide the 1 input channels.*conv1"):
        kp.posttraining.prune_posttraining(
            model, x, method="sparsegpt", granularity="2:4", verbose=0
        )
    with pytest.raises(ValueError, match="fixes the sparsity at 0.5"):
        kp.posttraining.prune_posttraining(model, x, granularity="2:4", sparsity=0.7, verbose=0)
    with pytest.raises(ValueError, match="kp.prune_channels"):
        kp.posttraining.prune_posttraining(model, x, granularity="channel", verbose=0)
    with pytest.raises(ValueError, match="already holds kp.PruneWrappers"):
        kp.posttraining.prune_posttraining(kp.prune(model), x, verbose=0)
    with pytest.raises(ValueError, match="Expected `sparsity` in"):
        kp.posttraining.prune_posttraining(model, x, sparsity=1.0, verbose=0)
    embedding_only = keras.Sequential([keras.Input((3,)), keras.layers.Embedding(5, 2)])
    with pytest.raises(ValueError, match="no layer with a matrix product"):
        kp.posttraining.prune_posttraining(embedding_only, np.zeros((2, 3)), verbose=0)


JAX_SCRIPT = r"""
import numpy as np, keras, keras_prune as kp
assert keras.backend.backend() == "jax"
rng = np.random.default_rng(0)
x = rng.normal(size=(32, 6, 8)).astype("float32")
inputs = keras.Input((6, 8))
h = keras.layers.MultiHeadAttention(2, 4, name="mha")(inputs, inputs)
h = keras.layers.Dense(16, activation="relu", name="ffn")(h)
model = keras.Model(inputs, keras.layers.Dense(3, name="out")(h))
pruned = kp.posttraining.prune_posttraining(model, x, method="sparsegpt", verbose=0)
rows = {row["weight"]: row for row in pruned.posttraining_report.weights}
assert abs(rows["mha/query/kernel"]["sparsity"] - 0.5) < 1e-6, rows
plain = kp.strip(pruned)
assert np.abs(plain.predict(x, verbose=0) - pruned.predict(x, verbose=0)).max() < 1e-5
masked = kp.surgery.heads.mask_heads(model, 0.5, x)
small = kp.shrink(masked)
assert small.get_layer("mha").num_heads == 1
assert np.abs(small.predict(x, verbose=0) - masked.predict(x, verbose=0)).max() < 1e-5
print("OK")
"""


@pytest.mark.slow
def test_runs_on_jax():
    pytest.importorskip("jax")
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    environment = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=str(root))
    result = subprocess.run(
        [sys.executable, "-c", JAX_SCRIPT], env=environment, capture_output=True, text=True
    )
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]
