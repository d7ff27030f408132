"""keras_prune.export.inspection: file contents, size breakdown and the XNNPACK sparse checker."""

import keras
import numpy as np
import pytest

from keras_prune.export import convert, inspect_tflite, targets
from keras_prune.export.inspection import check_xnnpack_sparse

# The files are converted in this process (TensorFlow's converter needs the TensorFlow backend).
pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="converts with TensorFlow in this process"
)


def zero_smallest(weight, fraction):
    values = weight.numpy()
    threshold = np.quantile(np.abs(values), fraction)
    weight.assign(np.where(np.abs(values) <= threshold, 0.0, values))


def mobilenet_like(*, first_padding="explicit", pointwise_sparsity=0.8, pool=False):
    """A float CNN shaped like the models XNNPACK's sparse path is built for."""
    keras.utils.set_random_seed(0)
    layers = [keras.Input((16, 16, 3))]
    if first_padding == "explicit":
        layers += [keras.layers.ZeroPadding2D(1), keras.layers.Conv2D(8, 3, strides=2)]
    else:
        layers += [keras.layers.Conv2D(8, 3, strides=2, padding="same")]
    layers += [keras.layers.ReLU(), keras.layers.Conv2D(16, 1, activation="relu")]
    if pool:
        layers += [keras.layers.MaxPooling2D()]
    layers += [
        keras.layers.DepthwiseConv2D(3, padding="same", activation="relu"),
        keras.layers.Conv2D(16, 1, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(5),
    ]
    model = keras.Sequential(layers)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D) and layer.kernel_size == (1, 1):
            zero_smallest(layer.kernel, pointwise_sparsity)
    return model


def to_bytes(model, target="mobile"):
    return convert.convert(model, targets.get_target(target))


@pytest.fixture(scope="module")
def eligible_file():
    return to_bytes(mobilenet_like())


def test_a_mobilenet_shaped_sparse_model_is_eligible(eligible_file):
    check = check_xnnpack_sparse(eligible_file)
    assert check.eligible, check.reasons
    assert check.zero_fraction_1x1 == pytest.approx(0.8, abs=0.01)


def test_same_padding_and_too_few_zeros_are_reported_per_layer():
    check = check_xnnpack_sparse(
        to_bytes(mobilenet_like(first_padding="same", pointwise_sparsity=0.5))
    )
    assert not check.eligible
    text = "\n".join(check.reasons)
    assert "needs explicit padding 1" in text and "conv2d" in text
    assert "only 50.0% of 1x1 conv weights are zero" in text


def test_pooling_inside_the_region_is_named():
    check = check_xnnpack_sparse(to_bytes(mobilenet_like(pool=True)))
    assert any("MAX_POOL_2D" in reason and "max_pooling2d" in reason for reason in check.reasons)


def test_quantized_models_are_not_eligible():
    model = mobilenet_like()
    data = np.random.default_rng(0).random((8, 16, 16, 3)).astype("float32")
    check = check_xnnpack_sparse(convert.convert(model, targets.get_target("mobile-int8"), data))
    assert any("float only" in reason for reason in check.reasons)


def test_report_lists_ops_tensors_sizes_and_latency(eligible_file):
    report = inspect_tflite(eligible_file, latency_runs=3)
    info = report.model
    assert info.op_counts()["DENSIFY"] == 2  # the two pruned 1x1 convs
    breakdown = info.size_breakdown()
    assert sum(breakdown.values()) == info.file_bytes == len(eligible_file)
    sparse = info.sparse_tensors
    assert len(sparse) == 2 and all(t.shape[1:3] == (1, 1) for t in sparse)
    assert all(t.density == pytest.approx(0.2, abs=0.02) for t in sparse)
    assert report.latency_us["xnnpack"] > 0 and report.latency_us["builtin"] > 0
    text = str(report)
    for heading in (
        "size breakdown",
        "ops",
        "constant tensors",
        "XNNPACK sparse inference",
        "latency",
    ):
        assert heading in text
    assert report.to_dict()["xnnpack"]["eligible"] is True


def test_inspect_refuses_missing_files_and_bad_runs(tmp_path):
    with pytest.raises(FileNotFoundError, match="existing .tflite file"):
        inspect_tflite(str(tmp_path / "missing.tflite"))
    with pytest.raises(ValueError, match="latency_runs"):
        inspect_tflite(b"", latency_runs=-1)


def test_xnnpack_filter_prunes_exactly_what_the_sparse_path_uses(tmp_path):
    import keras_prune as kp
    from keras_prune import export

    model = mobilenet_like(pointwise_sparsity=0.0)
    chosen = [layer.name for layer in model.layers if export.xnnpack_filter(model)(layer)]
    pointwise = [
        layer.name
        for layer in model.layers
        if isinstance(layer, keras.layers.Conv2D)
        and not isinstance(layer, keras.layers.DepthwiseConv2D)
        and layer.kernel_size == (1, 1)
    ]
    assert chosen == pointwise and len(chosen) == 2
    pruned = kp.prune(
        model,
        schedule=kp.ConstantSparsity(0.75, begin_step=0),
        filters=export.xnnpack_filter(model),
    )
    kp.pruning.update_masks(pruned, 0)
    # objective="size" keeps the sparse-encoded file whatever its speed: with "latency" the
    # kept file depends on timing (on x86 the two files tie, and noise can pick dense).
    result = export.to_tflite(
        pruned, tmp_path / "m.tflite", target="mobile", objective="size", latency_runs=0
    )
    check = check_xnnpack_sparse(result.path)
    assert check.eligible, check.reasons
    assert check.zero_fraction_1x1 == pytest.approx(0.75, abs=0.01)
