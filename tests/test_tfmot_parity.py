"""keras_prune gives exactly tensorflow-model-optimization 0.8.1's schedules and masks.

tfmot only runs on `tf_keras`, so its answers come from `tests/tfmot_oracle.py`, started once for
the whole module in a subprocess with `TF_USE_LEGACY_KERAS=1`; the same inputs go to keras_prune
here, under Keras 3.

What is compared:
- Schedules: tfmot's `schedule(step)` against keras_prune's, for every step from 0 to a few steps
  past the end, with Python-int steps and with scalar int tensor steps.
- Magnitude masks: tfmot's mask after one real training step of a `prune_low_magnitude` layer
  (with `UpdatePruningStep`) against `kp.masks.magnitude_mask`, on Dense and Conv2D kernels,
  including sizes where `n * (1 - s)` is exactly x.5 (both round half to even in float32).
- N:M masks: tfmot's `sparsity_m_by_n=(zeros, group)` against `kp.granularity.NofM(group - zeros, group)`.
  Observed: tfmot groups along the input-channel axis in TFLite layout for both Dense
  ([in, out] viewed as [out, in]) and Conv2D ([h, w, in, out] viewed as [out * h * w, in]), the
  same axis as keras_prune, so the masks are equal element-wise, also when the input channels are
  not a multiple of the group (tfmot pads with zeros, which never beat a non-zero weight).
  Note tfmot counts zeros, keras_prune counts survivors: `m_by_n=(2, 4)` is `NofM(2, 4)`,
  `m_by_n=(1, 4)` is `NofM(3, 4)`. tfmot computes N:M masks only at pruning step 1 whatever the
  schedule says; the oracle trains exactly that one step.

Known divergence, checked below rather than hidden: tfmot's `PolynomialDecay` with
`begin_step == end_step` divides 0 by 0 and returns NaN sparsity at that step (the only step at
which it prunes); keras_prune returns `initial_sparsity` there, and both agree at every other step.
"""

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import ops

import keras_prune as kp
from keras_prune.layers import layouts

for _module in ("tensorflow_model_optimization", "tf_keras"):
    if importlib.util.find_spec(_module) is None:
        pytest.skip(
            f"tfmot parity tests need `{_module}` (pip install tensorflow-model-optimization "
            "tf-keras)",
            allow_module_level=True,
        )

ORACLE = Path(__file__).with_name("tfmot_oracle.py")

# (kind, tfmot/keras_prune constructor kwargs)
SCHEDULES = [
    ("ConstantSparsity", dict(target_sparsity=0.5, begin_step=0, end_step=-1, frequency=1)),
    ("ConstantSparsity", dict(target_sparsity=0.8, begin_step=10, end_step=50, frequency=7)),
    ("ConstantSparsity", dict(target_sparsity=0.0, begin_step=0, end_step=20, frequency=5)),
    ("ConstantSparsity", dict(target_sparsity=0.95, begin_step=5, end_step=-1, frequency=100)),
    ("ConstantSparsity", dict(target_sparsity=0.3, begin_step=4, end_step=4, frequency=3)),
    (
        "PolynomialDecay",
        dict(
            initial_sparsity=0.0,
            final_sparsity=0.5,
            begin_step=0,
            end_step=100,
            power=3,
            frequency=10,
        ),
    ),
    (
        "PolynomialDecay",
        dict(
            initial_sparsity=0.1,
            final_sparsity=0.9,
            begin_step=10,
            end_step=110,
            power=1,
            frequency=10,
        ),
    ),
    (
        "PolynomialDecay",
        dict(
            initial_sparsity=0.2,
            final_sparsity=0.8,
            begin_step=7,
            end_step=40,
            power=2,
            frequency=3,
        ),
    ),
    (
        "PolynomialDecay",
        dict(
            initial_sparsity=0.0,
            final_sparsity=0.95,
            begin_step=0,
            end_step=33,
            power=3,
            frequency=1,
        ),
    ),
    (
        "PolynomialDecay",
        dict(
            initial_sparsity=0.6,
            final_sparsity=0.1,
            begin_step=2,
            end_step=22,
            power=2,
            frequency=4,
        ),
    ),
    (
        "PolynomialDecay",
        dict(
            initial_sparsity=0.5,
            final_sparsity=0.5,
            begin_step=3,
            end_step=13,
            power=3,
            frequency=2,
        ),
    ),
    (
        "PolynomialDecay",
        dict(
            initial_sparsity=0.05,
            final_sparsity=0.75,
            begin_step=1,
            end_step=30,
            power=1.5,
            frequency=6,
        ),
    ),
]
DEGENERATE_POLYNOMIAL = dict(
    initial_sparsity=0.1, final_sparsity=0.9, begin_step=5, end_step=5, power=2, frequency=1
)


def schedule_steps(config):
    """Every step from 0 to a few steps past the end (or past three updates when open-ended)."""
    end = config["end_step"]
    if end < 0:
        end = config["begin_step"] + 3 * config["frequency"]
    return list(range(0, end + 6))


def distinct_weights(shape, seed):
    """float32 normal weights whose magnitudes are all distinct (no ties to break)."""
    weights = np.random.default_rng(seed).standard_normal(shape).astype("float32")
    assert np.unique(np.abs(weights)).size == weights.size, "regenerate: tied magnitudes"
    return weights


# (layer, kernel shape, sparsity); the x.5 rows round half to even: down to even, up to even.
MAGNITUDE_CASES = [
    ("dense", (8, 4), 0.5),
    ("dense", (8, 4), 0.9),
    ("dense", (5, 4), 0.875),  # 20 * 0.125 = 2.5 -> 2
    ("dense", (5, 4), 0.625),  # 20 * 0.375 = 7.5 -> 8
    ("dense", (5, 4), 0.125),  # 20 * 0.875 = 17.5 -> 18
    ("dense", (5, 4), 0.375),  # 20 * 0.625 = 12.5 -> 12
    ("dense", (3, 1), 0.5),  # 3 * 0.5 = 1.5 -> 2
    ("dense", (5, 4), 0.99),  # round(0.2) = 0 -> at least 1 kept
    ("dense", (16, 10), 0.0),
    ("dense", (16, 10), 0.7),
    ("conv2d", (3, 3, 2, 3), 0.75),  # 54 * 0.25 = 13.5 -> 14
    ("conv2d", (3, 3, 2, 3), 0.25),  # 54 * 0.75 = 40.5 -> 40
    ("conv2d", (3, 3, 4, 8), 0.8),
    ("conv2d", (1, 1, 6, 5), 0.5),
    ("conv2d", (2, 3, 3, 4), 0.33),
]
HALF_WAY = {2: 2.5, 3: 7.5, 4: 17.5, 5: 12.5, 6: 1.5, 10: 13.5, 11: 40.5}

# (layer, kernel shape, tfmot m_by_n = (zeros, group)); keras_prune NofM(group - zeros, group).
M_BY_N_CASES = [
    ("dense", (8, 4), (2, 4)),
    ("dense", (16, 3), (2, 4)),
    ("dense", (6, 3), (2, 4)),  # 6 input channels: a trailing group of 2
    ("dense", (9, 2), (2, 4)),  # a trailing group of 1
    ("dense", (8, 5), (1, 4)),
    ("dense", (16, 4), (3, 8)),
    ("conv2d", (3, 3, 8, 4), (2, 4)),
    ("conv2d", (3, 3, 4, 2), (2, 4)),
    ("conv2d", (1, 1, 16, 8), (2, 4)),
    ("conv2d", (2, 2, 6, 3), (2, 4)),
    ("conv2d", (3, 3, 8, 2), (1, 4)),
]


def magnitude_kernel(index):
    return distinct_weights(MAGNITUDE_CASES[index][1], seed=100 + index)


def m_by_n_kernel(index):
    return distinct_weights(M_BY_N_CASES[index][1], seed=200 + index)


def oracle_request():
    schedules = [
        {"kind": kind, "config": config, "steps": schedule_steps(config)}
        for kind, config in SCHEDULES
    ]
    schedules.append(
        {
            "kind": "PolynomialDecay",
            "config": DEGENERATE_POLYNOMIAL,
            "steps": schedule_steps(DEGENERATE_POLYNOMIAL),
        }
    )
    masks = [
        {"layer": layer, "kernel": magnitude_kernel(i).tolist(), "sparsity": s, "m_by_n": None}
        for i, (layer, _, s) in enumerate(MAGNITUDE_CASES)
    ]
    masks += [
        {
            "layer": layer,
            "kernel": m_by_n_kernel(i).tolist(),
            "sparsity": 0.5,
            "m_by_n": list(m_by_n),
        }
        for i, (layer, _, m_by_n) in enumerate(M_BY_N_CASES)
    ]
    return {"schedules": schedules, "masks": masks}


@pytest.fixture(scope="module")
def tfmot_answers():
    """tfmot's answers to every case of this module, from one oracle subprocess."""
    environment = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")
    environment.pop("KERAS_BACKEND", None)
    completed = subprocess.run(
        [sys.executable, str(ORACLE)],
        input=json.dumps(oracle_request()),
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
    )
    if completed.returncode != 0:
        pytest.fail(
            f"tfmot oracle failed (exit {completed.returncode}):\n{completed.stderr[-3000:]}"
        )
    answers = json.loads(completed.stdout)
    assert answers["versions"]["tfmot"] == "0.8.1", answers["versions"]
    magnitude_count = len(MAGNITUDE_CASES)
    return {
        "schedules": answers["schedules"],
        "magnitude": answers["masks"][:magnitude_count],
        "m_by_n": answers["masks"][magnitude_count:],
    }


def make_schedule(kind, config):
    return getattr(kp.tfmot, kind)(**config)


@pytest.mark.parametrize("index", range(len(SCHEDULES)), ids=lambda i: f"{SCHEDULES[i][0]}-{i}")
def test_schedule_matches_tfmot_with_int_steps(tfmot_answers, index):
    kind, config = SCHEDULES[index]
    schedule = make_schedule(kind, config)
    expected = tfmot_answers["schedules"][index]
    for step, (tfmot_should, tfmot_sparsity) in zip(schedule_steps(config), expected, strict=True):
        should_prune, sparsity = schedule(step)
        assert should_prune == tfmot_should, f"step {step}"
        assert abs(float(sparsity) - tfmot_sparsity) <= 1e-6, f"step {step}"


@pytest.mark.parametrize("dtype", ["int32", "int64"])
@pytest.mark.parametrize("index", range(len(SCHEDULES)), ids=lambda i: f"{SCHEDULES[i][0]}-{i}")
def test_schedule_matches_tfmot_with_tensor_steps(tfmot_answers, index, dtype):
    kind, config = SCHEDULES[index]
    schedule = make_schedule(kind, config)
    expected = tfmot_answers["schedules"][index]
    for step, (tfmot_should, tfmot_sparsity) in zip(schedule_steps(config), expected, strict=True):
        should_prune, sparsity = schedule(ops.convert_to_tensor(step, dtype))
        assert bool(ops.convert_to_numpy(should_prune)) == tfmot_should, f"step {step}"
        assert abs(float(ops.convert_to_numpy(sparsity)) - tfmot_sparsity) <= 1e-6, f"step {step}"


def test_polynomial_with_begin_equal_end_differs_only_where_tfmot_is_nan(tfmot_answers):
    schedule = kp.PolynomialDecay(**DEGENERATE_POLYNOMIAL)
    expected = tfmot_answers["schedules"][len(SCHEDULES)]
    steps = schedule_steps(DEGENERATE_POLYNOMIAL)
    for step, (tfmot_should, tfmot_sparsity) in zip(steps, expected, strict=True):
        should_prune, sparsity = schedule(step)
        assert should_prune == tfmot_should, f"step {step}"
        if step == DEGENERATE_POLYNOMIAL["begin_step"]:
            assert math.isnan(tfmot_sparsity)
            assert sparsity == pytest.approx(DEGENERATE_POLYNOMIAL["initial_sparsity"], abs=1e-7)
        else:
            assert abs(sparsity - tfmot_sparsity) <= 1e-6, f"step {step}"


def test_half_way_cases_really_are_half_way():
    for index, product in HALF_WAY.items():
        _, shape, sparsity = MAGNITUDE_CASES[index]
        size = np.float32(math.prod(shape))
        assert size * (np.float32(1.0) - np.float32(sparsity)) == np.float32(product)


@pytest.mark.parametrize(
    "index",
    range(len(MAGNITUDE_CASES)),
    ids=lambda i: (
        f"{MAGNITUDE_CASES[i][0]}-{'x'.join(map(str, MAGNITUDE_CASES[i][1]))}"
        f"-s{MAGNITUDE_CASES[i][2]}"
    ),
)
def test_magnitude_mask_matches_tfmot(tfmot_answers, index):
    _, shape, sparsity = MAGNITUDE_CASES[index]
    kernel = magnitude_kernel(index)
    expected = np.asarray(tfmot_answers["magnitude"][index], dtype="float32")
    assert expected.shape == shape

    mask = ops.convert_to_numpy(kp.masks.magnitude_mask(kernel, sparsity))
    np.testing.assert_array_equal(mask, expected)

    weight = layouts.PrunableWeight(keras.Variable(kernel), -1, -2)
    granular_mask, bias_mask = kp.granularity.Unstructured().compute_mask(
        np.abs(kernel), sparsity, weight
    )
    np.testing.assert_array_equal(ops.convert_to_numpy(granular_mask), expected)
    assert bias_mask is None
    assert int(expected.sum()) == kp.masks.keep_count(expected.size, sparsity)


@pytest.mark.parametrize(
    "index",
    range(len(M_BY_N_CASES)),
    ids=lambda i: (
        f"{M_BY_N_CASES[i][0]}-{'x'.join(map(str, M_BY_N_CASES[i][1]))}"
        f"-{M_BY_N_CASES[i][2][0]}by{M_BY_N_CASES[i][2][1]}"
    ),
)
def test_n_of_m_mask_matches_tfmot_m_by_n(tfmot_answers, index):
    _, shape, (zeros, group) = M_BY_N_CASES[index]
    kernel = m_by_n_kernel(index)
    expected = np.asarray(tfmot_answers["m_by_n"][index], dtype="float32")
    assert expected.shape == shape

    weight = layouts.PrunableWeight(keras.Variable(kernel), -1, -2)
    granularity = kp.granularity.NofM(group - zeros, group)
    granularity.check(weight)
    mask, bias_mask = granularity.compute_mask(np.abs(kernel), None, weight)
    np.testing.assert_array_equal(ops.convert_to_numpy(mask), expected)
    assert bias_mask is None
