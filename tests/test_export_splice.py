"""splice: pairing the sparse and dense conversions and splicing chosen weights in sparse."""

import dataclasses

import numpy as np
import pytest

from keras_prune import export
from keras_prune.export import convert, splice
from keras_prune.export.signature import Signature
from keras_prune.export.targets import get_target
from tests.test_export_storage import mixed_model, small_model


def _both(model):
    target = get_target("mobile")
    signature = Signature(model)
    sparse = convert.convert_checked(model, target, None, signature)
    dense_target = dataclasses.replace(target, sparse_encoding=False)
    return sparse, convert.convert_checked(model, dense_target, None, signature)


@pytest.fixture(scope="module")
def files():
    return _both(mixed_model())


def test_pairs_every_sparse_weight_with_its_dense_twin(files):
    sparse, dense = files
    pairs = splice.pair_weights(sparse, dense)
    assert sorted((p.op, p.direct) for p in pairs) == [
        ("CONV_2D", False),
        ("FULLY_CONNECTED", True),
        ("FULLY_CONNECTED", True),
    ]
    s_model, d_model = splice.load(sparse), splice.load(dense)
    for pair in pairs:
        s_tensor = s_model.subgraphs[0].tensors[pair.sparse_index]
        d_tensor = d_model.subgraphs[0].tensors[pair.dense_index]
        decoded = splice.decode(splice._stored(s_model, s_tensor), pair.shape, s_tensor.sparsity)
        assert np.array_equal(decoded.reshape(-1), splice._stored(d_model, d_tensor))


def test_splice_stores_chosen_weights_sparse_and_runs_like_the_dense_file(files):
    sparse, dense = files
    direct = [p for p in splice.pair_weights(sparse, dense) if p.direct]
    mixed = splice.splice(sparse, dense, direct)
    info = export.read_model(mixed)
    assert "DENSIFY" not in info.op_names
    assert {t.name for t in info.sparse_tensors} == {p.name for p in direct}
    assert len(mixed) < len(dense)
    data = np.random.default_rng(0).standard_normal((8, 6, 6, 2)).astype("float32")
    expected = export.predict(dense, data, xnnpack=False)
    for xnnpack in (True, False):
        outputs = export.predict(mixed, data, xnnpack=xnnpack)
        np.testing.assert_allclose(outputs, expected, atol=1e-5)
    with pytest.raises(ValueError, match="DENSIFY"):
        splice.splice(sparse, dense, [p for p in splice.pair_weights(sparse, dense)])


def test_different_models_do_not_line_up(files):
    sparse, _ = files
    _, other = _both(small_model(seed=1))
    with pytest.raises(splice.MisalignedError, match="different values"):
        splice.pair_weights(sparse, other)


def test_conversions_that_do_not_line_up_fall_back_to_the_per_file_choice(files, monkeypatch):
    from keras_prune.export import storage

    sparse, dense = files

    def misaligned(*_):
        raise splice.MisalignedError("the ops differ")

    monkeypatch.setattr(splice, "pair_weights", misaligned)
    choice = storage.choose_storage(
        sparse, lambda: dense, objective="latency", latency_runs=0, warmup=0
    )
    assert choice.storage == "sparse" and choice.data == sparse and not choice.tensors
    assert "cannot be spliced (the ops differ), so the choice is per file" in choice.note
