"""Bad inputs across the public API: every case raises the right error type, with a message that
names the argument, the value received and the fix, and leaves the user's models untouched
(same layers, same weights, no wrappers, constraints or in-place state left on them).

Each case id starts with its category (`schedules/...`); `docs/reliability.md` holds the table
of cases tried / handled per category, which `python tests/test_bad_inputs.py` prints.
The models are tiny and built once per module; nothing trains, and no case reaches the TFLite
converter (every export case is refused before conversion starts).
"""

import collections
import math
import re
import types

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keras_prune as kp
from keras_prune.layers.in_place import IN_PLACE_ATTRIBUTE

NAN, INF = float("nan"), float("inf")


def message(argument, value, fix):
    """A regex matching a message that holds the argument's name, the value and the fix, in any
    order (`value` is literal text, `fix` a regex)."""
    return f"(?s)(?=.*{re.escape(argument)})(?=.*{re.escape(value)})(?=.*(?:{fix}))"


def case(case_id, call, argument, value, fix, error=ValueError, xfail=None):
    marks = [pytest.mark.xfail(reason=xfail, strict=True)] if xfail else []
    return pytest.param(call, error, message(argument, value, fix), id=case_id, marks=marks)


SPARSITY = r"\[0\.0, 1\.0\)"  # the range `check_sparsity` states
INTEGER = "to be an integer"
DID_YOU_MEAN = "[Dd]id you mean"


class Subclassed(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = keras.layers.Dense(6, name="hidden")
        self.out = keras.layers.Dense(3, name="out")

    def call(self, inputs):
        return self.out(self.hidden(inputs))


def _dense_model():
    inputs = keras.Input((8,), name="features")
    hidden = keras.layers.Dense(6, activation="relu", name="hidden")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, name="out")(hidden), name="dense_model")


def _conv_model():
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(x), name="conv_model")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    keras.utils.set_random_seed(0)
    subclassed = Subclassed(name="subclassed")
    subclassed(np.zeros((1, 8), "float32"))
    rng = np.random.default_rng(0)
    return types.SimpleNamespace(
        dense=_dense_model(),
        teacher=_dense_model(),
        conv=_conv_model(),
        subclassed=subclassed,
        pruned=kp.prune(_dense_model(), schedule=kp.ConstantSparsity(0.5, frequency=1)),
        x=rng.random((16, 8), dtype=np.float32),
        y=rng.integers(0, 3, 16),
        image=rng.random((16, 8, 8, 1), dtype=np.float32),
        out=str(tmp_path_factory.mktemp("export") / "model.tflite"),
    )


def _unbuilt():
    return keras.Sequential([keras.layers.Dense(4, name="lazy")], name="unbuilt")


def _layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _layers(layer)


def _state(model):
    """Everything a failed call must leave as it was."""
    layers = list(_layers(model))
    return {
        "layers": [(layer.name, type(layer).__name__) for layer in layers],
        "weights": [(v.path, np.array(v.numpy())) for v in model.weights],
        "constraints": [v.constraint for v in model.weights],
        "in_place": [hasattr(layer, IN_PLACE_ATTRIBUTE) for layer in layers],
        "trainable": [layer.trainable for layer in layers] + [model.trainable],
    }


def _assert_untouched(before, model):
    after = _state(model)
    assert after["layers"] == before["layers"]
    assert not any(name == "PruneWrapper" for _, name in after["layers"])
    assert after["constraints"] == before["constraints"]
    assert after["in_place"] == before["in_place"]
    assert after["trainable"] == before["trainable"]
    assert [p for p, _ in after["weights"]] == [p for p, _ in before["weights"]]
    for (path, old), (_, new) in zip(before["weights"], after["weights"], strict=True):
        np.testing.assert_array_equal(new, old, err_msg=f"{path} changed")


def _run(models, call, error, pattern):
    watched = [models.dense, models.teacher, models.conv, models.subclassed, models.pruned]
    before = [_state(model) for model in watched]
    with pytest.raises(error, match=pattern):
        call(models)
    for state, model in zip(before, watched, strict=True):
        if model is models.pruned:  # wrappers are expected on this one; nothing else may change
            assert _state(model)["weights"][0][1].tobytes() == state["weights"][0][1].tobytes()
            continue
        _assert_untouched(state, model)


def _with_nan(array, value=NAN):
    array = array.copy()
    array.flat[3] = value
    return array


# --- schedules ------------------------------------------------------------------------------

SCHEDULES = [
    case(
        "schedules/constant-sparsity-1",
        lambda m: kp.ConstantSparsity(1.0),
        "sparsity",
        "1.0",
        SPARSITY,
    ),
    case(
        "schedules/constant-sparsity-1.5",
        lambda m: kp.ConstantSparsity(1.5),
        "sparsity",
        "1.5",
        SPARSITY,
    ),
    case(
        "schedules/constant-sparsity-negative",
        lambda m: kp.ConstantSparsity(-0.1),
        "sparsity",
        "-0.1",
        SPARSITY,
    ),
    case(
        "schedules/constant-sparsity-nan",
        lambda m: kp.ConstantSparsity(NAN),
        "sparsity",
        "nan",
        SPARSITY,
    ),
    case(
        "schedules/constant-sparsity-inf",
        lambda m: kp.ConstantSparsity(INF),
        "sparsity",
        "inf",
        SPARSITY,
    ),
    case(
        "schedules/constant-sparsity-minus-inf",
        lambda m: kp.ConstantSparsity(-INF),
        "sparsity",
        "-inf",
        SPARSITY,
    ),
    case(
        "schedules/constant-sparsity-str",
        lambda m: kp.ConstantSparsity("0.5"),
        "sparsity",
        "'0.5'",
        SPARSITY,
    ),
    case(
        "schedules/constant-sparsity-none",
        lambda m: kp.ConstantSparsity(None),
        "sparsity",
        "None",
        SPARSITY,
    ),
    case(
        "schedules/constant-sparsity-bool",
        lambda m: kp.ConstantSparsity(True),
        "sparsity",
        "True",
        SPARSITY,
    ),
    case(
        "schedules/constant-sparsity-list",
        lambda m: kp.ConstantSparsity([0.5]),
        "sparsity",
        "[0.5]",
        SPARSITY,
    ),
    case(
        "schedules/constant-sparsity-np-nan",
        lambda m: kp.ConstantSparsity(np.float32("nan")),
        "sparsity",
        "nan",
        SPARSITY,
    ),
    case(
        "schedules/constant-begin-negative",
        lambda m: kp.ConstantSparsity(0.5, begin_step=-1),
        "begin_step",
        "-1",
        ">= 0",
    ),
    case(
        "schedules/constant-begin-float",
        lambda m: kp.ConstantSparsity(0.5, begin_step=1.5),
        "begin_step",
        "1.5",
        INTEGER,
    ),
    case(
        "schedules/constant-begin-str",
        lambda m: kp.ConstantSparsity(0.5, begin_step="0"),
        "begin_step",
        "'0'",
        INTEGER,
    ),
    case(
        "schedules/constant-begin-none",
        lambda m: kp.ConstantSparsity(0.5, begin_step=None),
        "begin_step",
        "None",
        INTEGER,
    ),
    case(
        "schedules/constant-begin-nan",
        lambda m: kp.ConstantSparsity(0.5, begin_step=NAN),
        "begin_step",
        "nan",
        INTEGER,
    ),
    case(
        "schedules/constant-end-below-minus-1",
        lambda m: kp.ConstantSparsity(0.5, end_step=-2),
        "end_step",
        "-2",
        ">= -1",
    ),
    case(
        "schedules/constant-end-float",
        lambda m: kp.ConstantSparsity(0.5, end_step=10.5),
        "end_step",
        "10.5",
        INTEGER,
    ),
    case(
        "schedules/constant-begin-after-end",
        lambda m: kp.ConstantSparsity(0.5, begin_step=10, end_step=5),
        "end_step",
        "end_step=5",
        ">= `begin_step`",
    ),
    case(
        "schedules/constant-frequency-0",
        lambda m: kp.ConstantSparsity(0.5, frequency=0),
        "frequency",
        "0",
        ">= 1",
    ),
    case(
        "schedules/constant-frequency-negative",
        lambda m: kp.ConstantSparsity(0.5, frequency=-5),
        "frequency",
        "-5",
        ">= 1",
    ),
    case(
        "schedules/constant-frequency-float",
        lambda m: kp.ConstantSparsity(0.5, frequency=2.5),
        "frequency",
        "2.5",
        INTEGER,
    ),
    case(
        "schedules/constant-frequency-none",
        lambda m: kp.ConstantSparsity(0.5, frequency=None),
        "frequency",
        "None",
        INTEGER,
    ),
    case(
        "schedules/poly-initial-1",
        lambda m: kp.PolynomialDecay(1.0, 0.5, 0, 10),
        "initial_sparsity",
        "1.0",
        SPARSITY,
    ),
    case(
        "schedules/poly-initial-nan",
        lambda m: kp.PolynomialDecay(NAN, 0.5, 0, 10),
        "initial_sparsity",
        "nan",
        SPARSITY,
    ),
    case(
        "schedules/poly-initial-negative",
        lambda m: kp.PolynomialDecay(-0.5, 0.5, 0, 10),
        "initial_sparsity",
        "-0.5",
        SPARSITY,
    ),
    case(
        "schedules/poly-initial-str",
        lambda m: kp.PolynomialDecay("0", 0.5, 0, 10),
        "initial_sparsity",
        "'0'",
        SPARSITY,
    ),
    case(
        "schedules/poly-final-1",
        lambda m: kp.PolynomialDecay(0.0, 1.0, 0, 10),
        "final_sparsity",
        "1.0",
        SPARSITY,
    ),
    case(
        "schedules/poly-final-1.2",
        lambda m: kp.PolynomialDecay(0.0, 1.2, 0, 10),
        "final_sparsity",
        "1.2",
        SPARSITY,
    ),
    case(
        "schedules/poly-final-nan",
        lambda m: kp.PolynomialDecay(0.0, NAN, 0, 10),
        "final_sparsity",
        "nan",
        SPARSITY,
    ),
    case(
        "schedules/poly-final-inf",
        lambda m: kp.PolynomialDecay(0.0, INF, 0, 10),
        "final_sparsity",
        "inf",
        SPARSITY,
    ),
    case(
        "schedules/poly-final-none",
        lambda m: kp.PolynomialDecay(0.0, None, 0, 10),
        "final_sparsity",
        "None",
        SPARSITY,
    ),
    case(
        "schedules/poly-end-none",
        lambda m: kp.PolynomialDecay(0.0, 0.5, 0, None),
        "end_step",
        "None",
        INTEGER,
    ),
    case(
        "schedules/poly-end-before-begin",
        lambda m: kp.PolynomialDecay(0.0, 0.5, 100, 10),
        "end_step",
        "end_step=10",
        ">= `begin_step`",
    ),
    case(
        "schedules/poly-end-minus-1",
        lambda m: kp.PolynomialDecay(0.0, 0.5, 0, -1),
        "end_step",
        "-1",
        "end_step",
    ),
    case(
        "schedules/poly-begin-negative",
        lambda m: kp.PolynomialDecay(0.0, 0.5, -10, 10),
        "begin_step",
        "-10",
        ">= 0",
    ),
    case(
        "schedules/poly-power-nan",
        lambda m: kp.PolynomialDecay(0.0, 0.5, 0, 10, power=NAN),
        "power",
        "nan",
        "> 0",
    ),
    case(
        "schedules/poly-power-inf",
        lambda m: kp.PolynomialDecay(0.0, 0.5, 0, 10, power=INF),
        "power",
        "inf",
        "> 0",
    ),
    case(
        "schedules/poly-power-0",
        lambda m: kp.PolynomialDecay(0.0, 0.5, 0, 10, power=0),
        "power",
        "0",
        "> 0",
    ),
    case(
        "schedules/poly-power-negative",
        lambda m: kp.PolynomialDecay(0.0, 0.5, 0, 10, power=-1),
        "power",
        "-1",
        "> 0",
    ),
    case(
        "schedules/poly-power-str",
        lambda m: kp.PolynomialDecay(0.0, 0.5, 0, 10, power="3"),
        "power",
        "'3'",
        "> 0",
    ),
    case(
        "schedules/poly-frequency-0",
        lambda m: kp.PolynomialDecay(0.0, 0.5, 0, 10, frequency=0),
        "frequency",
        "0",
        ">= 1",
    ),
    case(
        "schedules/poly-frequency-float",
        lambda m: kp.PolynomialDecay(0.0, 0.5, 0, 10, frequency=1.5),
        "frequency",
        "1.5",
        INTEGER,
    ),
    case(
        "schedules/one-shot-1",
        lambda m: kp.schedules.OneShotSparsity(1.0),
        "sparsity",
        "1.0",
        SPARSITY,
    ),
    case(
        "schedules/one-shot-nan",
        lambda m: kp.schedules.OneShotSparsity(NAN),
        "sparsity",
        "nan",
        SPARSITY,
    ),
    case(
        "schedules/iterative-empty",
        lambda m: kp.schedules.IterativeSparsity([], 10),
        "sparsities",
        "[]",
        "non-empty|at least one",
    ),
    case(
        "schedules/iterative-scalar",
        lambda m: kp.schedules.IterativeSparsity(0.5, 10),
        "sparsities",
        "0.5",
        r"list|sequence|\[",
    ),
    case(
        "schedules/iterative-item-1",
        lambda m: kp.schedules.IterativeSparsity([0.5, 1.0], 10),
        "sparsities[1]",
        "1.0",
        SPARSITY,
    ),
    case(
        "schedules/iterative-item-nan",
        lambda m: kp.schedules.IterativeSparsity([0.5, NAN], 10),
        "sparsities[1]",
        "nan",
        SPARSITY,
    ),
    case(
        "schedules/iterative-frequency-0",
        lambda m: kp.schedules.IterativeSparsity([0.5], 0),
        "frequency",
        "0",
        ">= 1",
    ),
    case(
        "schedules/function-not-callable",
        lambda m: kp.schedules.FunctionSchedule(0.5),
        "function",
        "0.5",
        "callable|function",
        TypeError,
    ),
    case(
        "schedules/get-typo",
        lambda m: kp.schedules.get("polynomal_decay"),
        "schedule",
        "'polynomal_decay'",
        DID_YOU_MEAN,
    ),
    case(
        "schedules/get-int", lambda m: kp.schedules.get(3), "schedule", "3", "Expected", TypeError
    ),
]

# --- granularity, mask types, criteria -------------------------------------------------------

GRANULARITY = [
    case(
        "granularity/block-int",
        lambda m: kp.granularity.Block(4),
        "block_shape",
        "4",
        r"pair|\(1, 4\)",
    ),
    case(
        "granularity/block-zero",
        lambda m: kp.granularity.Block((0, 4)),
        "block_shape[0]",
        "0",
        ">= 1",
    ),
    case(
        "granularity/block-negative",
        lambda m: kp.granularity.Block((1, -4)),
        "block_shape[1]",
        "-4",
        ">= 1",
    ),
    case(
        "granularity/block-float",
        lambda m: kp.granularity.Block((1.5, 4)),
        "block_shape[0]",
        "1.5",
        INTEGER,
    ),
    case(
        "granularity/block-three",
        lambda m: kp.granularity.Block((1, 4, 1)),
        "block_shape",
        "(1, 4, 1)",
        r"pair",
    ),
    case(
        "granularity/block-str",
        lambda m: kp.granularity.Block("1x4"),
        "block_shape",
        "'1x4'",
        r"pair",
    ),
    case(
        "granularity/block-none",
        lambda m: kp.granularity.Block(None),
        "block_shape",
        "None",
        r"pair",
    ),
    case(
        "granularity/block-pooling",
        lambda m: kp.granularity.Block((1, 4), pooling="mean"),
        "pooling",
        "'mean'",
        "one of",
    ),
    case(
        "granularity/block-pooling-int",
        lambda m: kp.granularity.Block((1, 4), pooling=3),
        "pooling",
        "3",
        "one of",
    ),
    case("granularity/nofm-n-above-m", lambda m: kp.granularity.NofM(4, 2), "n", "n=4", "m"),
    case("granularity/nofm-n-equals-m", lambda m: kp.granularity.NofM(4, 4), "n", "n=4", "m"),
    case("granularity/nofm-n-zero", lambda m: kp.granularity.NofM(0, 4), "n", "0", ">= 1"),
    case("granularity/nofm-n-negative", lambda m: kp.granularity.NofM(-1, 4), "n", "-1", ">= 1"),
    case("granularity/nofm-m-zero", lambda m: kp.granularity.NofM(1, 0), "m", "0", ">="),
    case("granularity/nofm-n-float", lambda m: kp.granularity.NofM(1.5, 4), "n", "1.5", INTEGER),
    case("granularity/nofm-m-str", lambda m: kp.granularity.NofM(2, "4"), "m", "'4'", INTEGER),
    case("granularity/nofm-m-nan", lambda m: kp.granularity.NofM(2, NAN), "m", "nan", INTEGER),
    case(
        "granularity/channel-norm",
        lambda m: kp.granularity.Channel(norm="l3"),
        "norm",
        "'l3'",
        "one of",
    ),
    case(
        "granularity/channel-only-removable",
        lambda m: kp.granularity.Channel(only_removable="yes"),
        "only_removable",
        "'yes'",
        "True or False",
        TypeError,
    ),
    case(
        "granularity/get-typo",
        lambda m: kp.granularity.get("blok"),
        "granularity",
        "'blok'",
        DID_YOU_MEAN,
    ),
    case(
        "granularity/get-bad-nofm",
        lambda m: kp.granularity.get("4:2"),
        "granularity",
        "'4:2'",
        "Expected",
    ),
    case(
        "granularity/get-float",
        lambda m: kp.granularity.get(0.5),
        "granularity",
        "0.5",
        "Expected",
        TypeError,
    ),
    case(
        "granularity/get-pair-bad-args",
        lambda m: kp.granularity.get(("block", {"block_shape": (0, 4)})),
        "block_shape[0]",
        "0",
        ">= 1",
    ),
    case(
        "granularity/tfmot-block",
        lambda m: kp.granularity.from_tfmot_block((0, 1)),
        "block_size",
        "0",
        ">= 1",
    ),
    case(
        "granularity/tfmot-pooling",
        lambda m: kp.granularity.from_tfmot_block((1, 4), "MEAN"),
        "block_pooling_type",
        "'MEAN'",
        "AVG",
    ),
    case(
        "granularity/tfmot-m-by-n",
        lambda m: kp.granularity.from_tfmot_m_by_n((4, 2)),
        "sparsity_m_by_n",
        "(4, 2)",
        "m",
    ),
]

MASK_TYPES = [
    case(
        "mask_types/get-typo", lambda m: kp.mask_types.get("binar"), "mask", "'binar'", DID_YOU_MEAN
    ),
    case("mask_types/get-int", lambda m: kp.mask_types.get(3), "mask", "3", "Expected", TypeError),
    case(
        "mask_types/gate-temperature-0",
        lambda m: kp.mask_types.SigmoidGateMask(temperature=0),
        "temperature",
        "0",
        "> 0",
    ),
    case(
        "mask_types/gate-temperature-negative",
        lambda m: kp.mask_types.SigmoidGateMask(temperature=-1),
        "temperature",
        "-1",
        "> 0",
    ),
    case(
        "mask_types/gate-temperature-nan",
        lambda m: kp.mask_types.SigmoidGateMask(temperature=NAN),
        "temperature",
        "nan",
        "> 0",
    ),
    case(
        "mask_types/gate-temperature-str",
        lambda m: kp.mask_types.SigmoidGateMask(temperature="1"),
        "temperature",
        "'1'",
        "> 0",
    ),
]

CRITERIA = [
    case(
        "criteria/get-typo",
        lambda m: kp.criteria.get("magnitud"),
        "criterion",
        "'magnitud'",
        DID_YOU_MEAN,
    ),
    case(
        "criteria/get-typo-taylor",
        lambda m: kp.criteria.get("tailor"),
        "criterion",
        "'tailor'",
        DID_YOU_MEAN,
    ),
    case("criteria/get-int", lambda m: kp.criteria.get(3), "criterion", "3", "Expected", TypeError),
    case(
        "criteria/random-seed-float", lambda m: kp.criteria.Random(seed=1.5), "seed", "1.5", INTEGER
    ),
    case(
        "criteria/random-seed-str", lambda m: kp.criteria.Random(seed="0"), "seed", "'0'", INTEGER
    ),
    case(
        "criteria/function-not-callable",
        lambda m: kp.criteria.FunctionCriterion("abs"),
        "function",
        "'abs'",
        "callable|function",
        TypeError,
    ),
    case(
        "criteria/function-needs-gradients",
        lambda m: kp.criteria.FunctionCriterion(abs, needs_gradients="yes"),
        "needs_gradients",
        "'yes'",
        "True or False",
    ),
]

# --- allocation, regularizers ----------------------------------------------------------------

ALLOCATION = [
    case(
        "allocation/global-min-density-negative",
        lambda m: kp.allocation.GlobalAllocation(min_density=-0.1),
        "min_density",
        "-0.1",
        r"\[0",
    ),
    case(
        "allocation/global-min-density-1.5",
        lambda m: kp.allocation.GlobalAllocation(min_density=1.5),
        "min_density",
        "1.5",
        r"\[0",
    ),
    case(
        "allocation/global-min-density-nan",
        lambda m: kp.allocation.GlobalAllocation(min_density=NAN),
        "min_density",
        "nan",
        r"\[0",
    ),
    case(
        "allocation/threshold-nan",
        lambda m: kp.allocation.ThresholdAllocation(NAN),
        "threshold",
        "nan",
        "finite|>= 0",
    ),
    case(
        "allocation/threshold-inf",
        lambda m: kp.allocation.ThresholdAllocation(INF),
        "threshold",
        "inf",
        "finite|>= 0",
    ),
    case(
        "allocation/threshold-str",
        lambda m: kp.allocation.ThresholdAllocation("0.1"),
        "threshold",
        "'0.1'",
        "finite|>= 0",
    ),
    case(
        "allocation/percentile-nan",
        lambda m: kp.allocation.PercentileAllocation(NAN),
        "percentile",
        "nan",
        r"\[0",
    ),
    case(
        "allocation/percentile-101",
        lambda m: kp.allocation.PercentileAllocation(101),
        "percentile",
        "101",
        r"\[0",
    ),
    case(
        "allocation/percentile-negative",
        lambda m: kp.allocation.PercentileAllocation(-1),
        "percentile",
        "-1",
        r"\[0",
    ),
    case(
        "allocation/erk-nan", lambda m: kp.allocation.ERKAllocation(NAN), "power_scale", "nan", ">"
    ),
    case(
        "allocation/erk-negative",
        lambda m: kp.allocation.ERKAllocation(-1),
        "power_scale",
        "-1",
        ">",
    ),
    case(
        "allocation/per-layer-str",
        lambda m: kp.allocation.PerLayerAllocation("hidden"),
        "overrides",
        "'hidden'",
        "dict",
        TypeError,
    ),
    case(
        "allocation/per-layer-value",
        lambda m: kp.allocation.PerLayerAllocation({"hidden": 1.5}),
        "overrides",
        "1.5",
        SPARSITY,
    ),
    case(
        "allocation/per-layer-nan",
        lambda m: kp.allocation.PerLayerAllocation({"hidden": NAN}),
        "overrides",
        "nan",
        SPARSITY,
    ),
    case(
        "allocation/per-layer-bad-regex",
        lambda m: kp.allocation.PerLayerAllocation({"hidden[": 0.5}),
        "overrides",
        "'hidden['",
        "re.escape|regular expression",
    ),
    case(
        "allocation/get-typo",
        lambda m: kp.allocation.get("globl"),
        "allocation",
        "'globl'",
        DID_YOU_MEAN,
    ),
    case(
        "allocation/get-float",
        lambda m: kp.allocation.get(0.5),
        "allocation",
        "0.5",
        "Expected",
        TypeError,
    ),
    case(
        "allocation/erk-sparsities-1",
        lambda m: kp.allocation.erk_sparsities([(8, 6)], 1.0),
        "sparsity",
        "1.0",
        SPARSITY,
    ),
]

REGULARIZERS = [
    case(
        "regularizers/l1-negative", lambda m: kp.regularizers.L1(-1.0), "strength", "-1.0", ">= 0"
    ),
    case("regularizers/l1-nan", lambda m: kp.regularizers.L1(NAN), "strength", "nan", ">= 0"),
    case("regularizers/l1-str", lambda m: kp.regularizers.L1("0.1"), "strength", "'0.1'", ">= 0"),
    case(
        "regularizers/group-lasso-nan",
        lambda m: kp.regularizers.GroupLasso(NAN),
        "strength",
        "nan",
        ">= 0",
    ),
    case(
        "regularizers/group-lasso-groups",
        lambda m: kp.regularizers.GroupLasso(groups="rows"),
        "groups",
        "'rows'",
        "one of",
    ),
    case(
        "regularizers/gate-l0-strength",
        lambda m: kp.regularizers.GateL0(strength=-1e-5),
        "strength",
        "-1e-05",
        ">= 0",
    ),
    case(
        "regularizers/gate-l0-temperature",
        lambda m: kp.regularizers.GateL0(temperature=0),
        "temperature",
        "0",
        "> 0",
    ),
    case(
        "regularizers/penalize-not-regularizer",
        lambda m: kp.methods.penalize_masks(m.pruned, "l1"),
        "regularizer",
        "'l1'",
        "Expected",
        TypeError,
    ),
]

# --- prune, prune_once, strip, update_masks ----------------------------------------------------

PRUNE = [
    case("prune/model-none", lambda m: kp.prune(None), "model", "None", "keras.Model", TypeError),
    case(
        "prune/model-str",
        lambda m: kp.prune("model.keras"),
        "model",
        "'model.keras'",
        "keras.Model",
        TypeError,
    ),
    case("prune/model-int", lambda m: kp.prune(42), "model", "42", "keras.Model", TypeError),
    case(
        "prune/model-array", lambda m: kp.prune(m.x), "model", "ndarray", "keras.Model", TypeError
    ),
    case(
        "prune/schedule-float",
        lambda m: kp.prune(m.dense, schedule=0.5),
        "schedule",
        "0.5",
        "PolynomialDecay",
        TypeError,
    ),
    case(
        "prune/schedule-typo",
        lambda m: kp.prune(m.dense, schedule="constant_sparsty"),
        "schedule",
        "'constant_sparsty'",
        DID_YOU_MEAN,
    ),
    case(
        "prune/schedule-bad-sparsity",
        lambda m: kp.prune(m.dense, schedule=("constant", {"sparsity": 1.5})),
        "sparsity",
        "1.5",
        SPARSITY,
    ),
    case(
        "prune/granularity-typo",
        lambda m: kp.prune(m.dense, granularity="unstructred"),
        "granularity",
        "'unstructred'",
        DID_YOU_MEAN,
    ),
    case(
        "prune/granularity-int",
        lambda m: kp.prune(m.dense, granularity=4),
        "granularity",
        "4",
        "Expected",
        TypeError,
    ),
    case(
        "prune/mask-typo",
        lambda m: kp.prune(m.dense, mask="learnabel"),
        "mask",
        "'learnabel'",
        DID_YOU_MEAN,
    ),
    case(
        "prune/criterion-typo",
        lambda m: kp.prune(m.dense, criterion="magnitud"),
        "criterion",
        "'magnitud'",
        DID_YOU_MEAN,
    ),
    case(
        "prune/criterion-int",
        lambda m: kp.prune(m.dense, criterion=1),
        "criterion",
        "1",
        "Expected",
        TypeError,
    ),
    case(
        "prune/filters-bad-regex",
        lambda m: kp.prune(m.dense, filters="["),
        "filters",
        "'['",
        "re.escape",
    ),
    case(
        "prune/filters-int",
        lambda m: kp.prune(m.dense, filters=3),
        "filters",
        "3",
        "regex",
        TypeError,
    ),
    case(
        "prune/filters-list-with-int",
        lambda m: kp.prune(m.dense, filters=["hidden", 3]),
        "filters",
        "3",
        "regex",
        TypeError,
    ),
    case(
        "prune/filters-match-nothing",
        lambda m: kp.prune(m.dense, filters="hiden"),
        "filters",
        "'hiden'",
        "hidden",
    ),
    case(
        "prune/in-place-granularity-typo",
        lambda m: kp.prune(m.subclassed, granularity="blok"),
        "granularity",
        "'blok'",
        DID_YOU_MEAN,
    ),
    case(
        "prune/in-place-mask-typo",
        lambda m: kp.prune(m.subclassed, mask="binar"),
        "mask",
        "'binar'",
        DID_YOU_MEAN,
    ),
    case(
        "prune/in-place-filters-regex",
        lambda m: kp.prune(m.subclassed, filters="("),
        "filters",
        "'('",
        "re.escape",
    ),
    case(
        "prune/in-place-bad-schedule",
        lambda m: kp.prune(m.subclassed, schedule=1.0),
        "schedule",
        "1.0",
        "PolynomialDecay",
        TypeError,
    ),
    case(
        "prune/in-place-learnable-mask",
        lambda m: kp.prune(m.subclassed, mask="learnable"),
        "mask",
        "learnable",
        "binary",
    ),
    case("prune/mask-int", lambda m: kp.prune(m.dense, mask=0), "mask", "0", "Expected", TypeError),
    case(
        "prune/block-larger-than-weights",
        lambda m: kp.prune_once(m.dense, 0.5, granularity=kp.granularity.Block((16, 16))),
        "Block shape",
        "(16, 16)",
        "smaller block",
    ),
]

PRUNE_ONCE = [
    case(
        "prune_once/sparsity-1", lambda m: kp.prune_once(m.dense, 1.0), "sparsity", "1.0", SPARSITY
    ),
    case(
        "prune_once/sparsity-negative",
        lambda m: kp.prune_once(m.dense, -0.2),
        "sparsity",
        "-0.2",
        SPARSITY,
    ),
    case(
        "prune_once/sparsity-nan",
        lambda m: kp.prune_once(m.dense, NAN),
        "sparsity",
        "nan",
        SPARSITY,
    ),
    case(
        "prune_once/sparsity-inf",
        lambda m: kp.prune_once(m.dense, INF),
        "sparsity",
        "inf",
        SPARSITY,
    ),
    case(
        "prune_once/sparsity-str",
        lambda m: kp.prune_once(m.dense, "50%"),
        "sparsity",
        "'50%'",
        SPARSITY,
    ),
    case(
        "prune_once/sparsity-none",
        lambda m: kp.prune_once(m.dense, None),
        "sparsity",
        "None",
        SPARSITY,
    ),
    case(
        "prune_once/sparsity-percent",
        lambda m: kp.prune_once(m.dense, 50),
        "sparsity",
        "50",
        SPARSITY,
    ),
    case(
        "prune_once/model-none",
        lambda m: kp.prune_once(None, 0.5),
        "model",
        "None",
        "keras.Model",
        TypeError,
    ),
    case(
        "prune_once/model-layer",
        lambda m: kp.prune_once(keras.layers.Dense(3), 0.5),
        "model",
        "Dense",
        "keras.Model",
        TypeError,
    ),
    case(
        "prune_once/granularity-typo",
        lambda m: kp.prune_once(m.dense, 0.5, granularity="chanel"),
        "granularity",
        "'chanel'",
        DID_YOU_MEAN,
    ),
    case(
        "prune_once/criterion-typo",
        lambda m: kp.prune_once(m.dense, 0.5, criterion="magnitde"),
        "criterion",
        "'magnitde'",
        DID_YOU_MEAN,
    ),
    case(
        "prune_once/allocation-typo",
        lambda m: kp.prune_once(m.dense, 0.5, allocation="erk_"),
        "allocation",
        "'erk_'",
        DID_YOU_MEAN,
    ),
    case(
        "prune_once/allocation-float",
        lambda m: kp.prune_once(m.dense, 0.5, allocation=0.5),
        "allocation",
        "0.5",
        "Expected",
        TypeError,
    ),
    case(
        "prune_once/filters-regex",
        lambda m: kp.prune_once(m.dense, 0.5, filters="*"),
        "filters",
        "'*'",
        "re.escape",
    ),
    case(
        "prune_once/taylor-no-data",
        lambda m: kp.prune_once(m.dense, 0.5, criterion="taylor"),
        "calibration_data",
        "None",
        "[Tt]aylor",
    ),
    case(
        "prune_once/calibration-wrong-shape",
        lambda m: kp.prune_once(m.dense, 0.5, criterion="taylor", calibration_data=(m.image, m.y)),
        "calibration_data",
        "(16, 8, 8, 1)",
        r"\(None, 8\)|\(8,\)",
    ),
    case(
        "prune_once/calibration-wrong-features",
        lambda m: kp.prune_once(
            m.dense, 0.5, criterion="taylor", calibration_data=(m.x[:, :5], m.y)
        ),
        "calibration_data",
        "(16, 5)",
        r"\(None, 8\)|\(8,\)",
    ),
    case(
        "prune_once/calibration-str",
        lambda m: kp.prune_once(m.dense, 0.5, criterion="taylor", calibration_data="data.npz"),
        "calibration_data",
        "'data.npz'",
        r"\(x, y\)",
    ),
    case(
        "prune_once/calibration-empty",
        lambda m: kp.prune_once(
            m.dense, 0.5, criterion="taylor", calibration_data=(m.x[:0], m.y[:0])
        ),
        "calibration_data",
        "0",
        "empty|at least one",
    ),
    case(
        "prune_once/calibration-nan",
        lambda m: kp.prune_once(
            m.dense, 0.5, criterion="taylor", calibration_data=(_with_nan(m.x), m.y)
        ),
        "calibration_data",
        "nan",
        "finite",
    ),
    case(
        "prune_once/calibration-inf",
        lambda m: kp.prune_once(
            m.dense, 0.5, criterion="taylor", calibration_data=(_with_nan(m.x, INF), m.y)
        ),
        "calibration_data",
        "inf",
        "finite",
    ),
    case(
        "prune_once/unbuilt-model",
        lambda m: kp.prune_once(_unbuilt(), 0.5),
        "model",
        "unbuilt",
        r"keras\.Input|build",
    ),
]

STRIP = [
    case("strip/none", lambda m: kp.strip(None), "model", "None", "keras.Model", TypeError),
    case(
        "strip/str",
        lambda m: kp.strip("pruned.keras"),  # noqa: B005 (kp.strip, not str.strip)
        "model",
        "'pruned.keras'",
        "keras.Model",
        TypeError,
    ),
    case(
        "strip/layer",
        lambda m: kp.strip(keras.layers.Dense(3)),
        "model",
        "Dense",
        "keras.Model",
        TypeError,
    ),
    case(
        "strip/update-masks-str-step",
        lambda m: kp.pruning.update_masks(m.pruned, "abc"),
        "step",
        "'abc'",
        "integer",
        TypeError,
    ),
    case(
        "strip/update-masks-float-step",
        lambda m: kp.pruning.update_masks(m.pruned, 1.7),
        "step",
        "1.7",
        "integer",
        TypeError,
    ),
    case(
        "strip/update-masks-negative-step",
        lambda m: kp.pruning.update_masks(m.pruned, -1),
        "step",
        "-1",
        ">= 0",
    ),
    case(
        "strip/update-masks-not-pruned",
        lambda m: kp.pruning.update_masks(m.dense, 0),
        "model",
        "dense_model",
        r"kp\.prune",
    ),
    case(
        "strip/update-masks-allocation",
        lambda m: kp.pruning.update_masks(m.pruned, 0, allocation="globl"),
        "allocation",
        "'globl'",
        DID_YOU_MEAN,
    ),
]

# --- structured: prune_channels, shrink ------------------------------------------------------

CHANNELS = [
    case(
        "prune_channels/sparsity-1",
        lambda m: kp.prune_channels(m.conv, 1.0),
        "sparsity",
        "1.0",
        r"\[0\.0, 1\.0\)",
    ),
    case(
        "prune_channels/sparsity-nan",
        lambda m: kp.prune_channels(m.conv, NAN),
        "sparsity",
        "nan",
        r"\[0\.0, 1\.0\)",
    ),
    case(
        "prune_channels/sparsity-negative",
        lambda m: kp.prune_channels(m.conv, -0.5),
        "sparsity",
        "-0.5",
        r"\[0\.0, 1\.0\)",
    ),
    case(
        "prune_channels/sparsity-str",
        lambda m: kp.prune_channels(m.conv, "0.5"),
        "sparsity",
        "'0.5'",
        r"\[0\.0, 1\.0\)",
    ),
    case(
        "prune_channels/target-macs-nan",
        lambda m: kp.prune_channels(m.conv, target_macs=NAN),
        "target_macs",
        "nan",
        ">= 0",
    ),
    case(
        "prune_channels/target-macs-negative",
        lambda m: kp.prune_channels(m.conv, target_macs=-1),
        "target_macs",
        "-1",
        ">= 0",
    ),
    case(
        "prune_channels/target-macs-str",
        lambda m: kp.prune_channels(m.conv, target_macs="1000"),
        "target_macs",
        "'1000'",
        ">= 0",
    ),
    case(
        "prune_channels/target-params-inf",
        lambda m: kp.prune_channels(m.conv, target_params=INF),
        "target_params",
        "inf",
        ">= 0",
    ),
    case(
        "prune_channels/no-target",
        lambda m: kp.prune_channels(m.conv),
        "sparsity",
        "None",
        "target_macs",
    ),
    case(
        "prune_channels/two-targets",
        lambda m: kp.prune_channels(m.conv, 0.5, target_macs=100),
        "target_macs",
        "100",
        "one of",
    ),
    case(
        "prune_channels/norm",
        lambda m: kp.prune_channels(m.conv, 0.5, norm="l3"),
        "norm",
        "'l3'",
        "one of",
    ),
    case(
        "prune_channels/round-to-0",
        lambda m: kp.prune_channels(m.conv, 0.5, round_to=0),
        "round_to",
        "0",
        ">= 1",
    ),
    case(
        "prune_channels/round-to-float",
        lambda m: kp.prune_channels(m.conv, 0.5, round_to=1.5),
        "round_to",
        "1.5",
        INTEGER,
    ),
    case(
        "prune_channels/criterion-typo",
        lambda m: kp.prune_channels(m.conv, 0.5, criterion="magnitde"),
        "criterion",
        "'magnitde'",
        DID_YOU_MEAN,
    ),
    case(
        "prune_channels/filters-regex",
        lambda m: kp.prune_channels(m.conv, 0.5, filters="conv("),
        "filters",
        "'conv('",
        "re.escape",
    ),
    case(
        "prune_channels/taylor-no-data",
        lambda m: kp.prune_channels(m.conv, 0.5, criterion="taylor"),
        "calibration_data",
        "None",
        "taylor",
    ),
    case(
        "prune_channels/calibration-wrong-shape",
        lambda m: kp.prune_channels(m.conv, 0.5, criterion="taylor", calibration_data=(m.x, m.y)),
        "calibration_data",
        "(16, 8)",
        r"8, 8, 1",
    ),
    case(
        "prune_channels/calibration-nan",
        lambda m: kp.prune_channels(
            m.conv, 0.5, criterion="taylor", calibration_data=(_with_nan(m.image), m.y)
        ),
        "calibration_data",
        "nan",
        "finite",
    ),
    case(
        "prune_channels/verbose",
        lambda m: kp.prune_channels(m.conv, 0.5, verbose="yes"),
        "verbose",
        "'yes'",
        INTEGER,
    ),
    case(
        "prune_channels/model-none",
        lambda m: kp.prune_channels(None, 0.5),
        "model",
        "None",
        "keras.Model",
        TypeError,
    ),
    case(
        "prune_channels/model-subclassed",
        lambda m: kp.prune_channels(m.subclassed, 0.5),
        "model",
        "subclassed",
        "Functional|Sequential",
    ),
    case(
        "prune_channels/unbuilt",
        lambda m: kp.prune_channels(_unbuilt(), 0.5),
        "model",
        "unbuilt",
        r"keras\.Input|build",
    ),
]

SHRINK = [
    case("shrink/round-to-0", lambda m: kp.shrink(m.conv, round_to=0), "round_to", "0", ">= 1"),
    case(
        "shrink/round-to-negative",
        lambda m: kp.shrink(m.conv, round_to=-8),
        "round_to",
        "-8",
        ">= 1",
    ),
    case(
        "shrink/round-to-float",
        lambda m: kp.shrink(m.conv, round_to=1.5),
        "round_to",
        "1.5",
        INTEGER,
    ),
    case(
        "shrink/round-to-str", lambda m: kp.shrink(m.conv, round_to="8"), "round_to", "'8'", INTEGER
    ),
    case("shrink/model-none", lambda m: kp.shrink(None), "model", "None", "keras.Model", TypeError),
    case(
        "shrink/model-str",
        lambda m: kp.shrink("model.keras"),
        "model",
        "'model.keras'",
        "keras.Model",
        TypeError,
    ),
    case(
        "shrink/subclassed",
        lambda m: kp.shrink(m.subclassed),
        "model",
        "subclassed",
        "Functional|Sequential",
    ),
    case(
        "shrink/unbuilt", lambda m: kp.shrink(_unbuilt()), "model", "unbuilt", r"keras\.Input|build"
    ),
]

# --- PruneWrapper, PruningCallback -----------------------------------------------------------

WRAPPER = [
    case(
        "PruneWrapper/layer-none",
        lambda m: kp.PruneWrapper(None),
        "layer",
        "None",
        "keras.layers.Layer",
        TypeError,
    ),
    case(
        "PruneWrapper/layer-str",
        lambda m: kp.PruneWrapper("dense"),
        "layer",
        "'dense'",
        "keras.layers.Layer",
        TypeError,
    ),
    case(
        "PruneWrapper/layer-class",
        lambda m: kp.PruneWrapper(keras.layers.Dense),
        "layer",
        "Dense",
        "instance|keras.layers.Layer",
        TypeError,
    ),
    case(
        "PruneWrapper/wrapper",
        lambda m: kp.PruneWrapper(m.pruned.get_layer("hidden")),
        "layer",
        "hidden",
        "already",
        ValueError,
    ),
    case(
        "PruneWrapper/model",
        lambda m: kp.PruneWrapper(m.dense),
        "layer",
        "dense_model",
        r"kp\.prune",
    ),
    case(
        "PruneWrapper/schedule",
        lambda m: kp.PruneWrapper(keras.layers.Dense(3), schedule="0.5"),
        "schedule",
        "'0.5'",
        "Expected",
    ),
    case(
        "PruneWrapper/schedule-list",
        lambda m: kp.PruneWrapper(keras.layers.Dense(3), schedule=[0.5]),
        "schedule",
        "[0.5]",
        "Expected",
        TypeError,
    ),
    case(
        "PruneWrapper/granularity",
        lambda m: kp.PruneWrapper(keras.layers.Dense(3), granularity="2:5:1"),
        "granularity",
        "'2:5:1'",
        "Expected",
    ),
    case(
        "PruneWrapper/mask",
        lambda m: kp.PruneWrapper(keras.layers.Dense(3), mask="sigmoid_gat"),
        "mask",
        "'sigmoid_gat'",
        DID_YOU_MEAN,
    ),
    case(
        "PruneWrapper/criterion",
        lambda m: kp.PruneWrapper(keras.layers.Dense(3), criterion="movment"),
        "criterion",
        "'movment'",
        DID_YOU_MEAN,
    ),
    case(
        "PruneWrapper/existing-layer-of-model",
        lambda m: kp.PruneWrapper(m.dense.get_layer("hidden"), granularity="blok"),
        "granularity",
        "'blok'",
        DID_YOU_MEAN,
    ),
    case(
        "PruneWrapper/block-pair-args",
        lambda m: kp.PruneWrapper(
            m.conv.get_layer("conv"), granularity=("block", {"block_shape": 4})
        ),
        "block_shape",
        "4",
        "pair",
    ),
]

CALLBACK = [
    case(
        "PruningCallback/allocation",
        lambda m: kp.PruningCallback(allocation="global_"),
        "allocation",
        "'global_'",
        DID_YOU_MEAN,
    ),
    case(
        "PruningCallback/allocation-int",
        lambda m: kp.PruningCallback(allocation=1),
        "allocation",
        "1",
        "Expected",
        TypeError,
    ),
    case(
        "PruningCallback/batch-size-0",
        lambda m: kp.PruningCallback(calibration_batch_size=0),
        "calibration_batch_size",
        "0",
        ">= 1",
    ),
    case(
        "PruningCallback/batch-size-float",
        lambda m: kp.PruningCallback(calibration_batch_size=1.5),
        "calibration_batch_size",
        "1.5",
        INTEGER,
    ),
    case(
        "PruningCallback/batch-size-none",
        lambda m: kp.PruningCallback(calibration_batch_size=None),
        "calibration_batch_size",
        "None",
        INTEGER,
    ),
    case(
        "PruningCallback/calibration-str",
        lambda m: kp.PruningCallback(calibration_data="x.npy"),
        "calibration_data",
        "'x.npy'",
        r"\(x, y\)",
    ),
    case(
        "PruningCallback/calibration-int",
        lambda m: kp.PruningCallback(calibration_data=3),
        "calibration_data",
        "3",
        r"\(x, y\)",
    ),
    case(
        "PruningCallback/calibration-nan",
        lambda m: kp.PruningCallback(calibration_data=(_with_nan(m.x), m.y)),
        "calibration_data",
        "nan",
        "finite",
    ),
    case(
        "PruningCallback/summaries-log-dir",
        lambda m: kp.callbacks.PruningSummaries(log_dir=3),
        "log_dir",
        "3",
        "path",
    ),
    case(
        "PruningCallback/step-windows",
        lambda m: kp.callbacks.StepWindows(steps_per_call=0),
        "steps_per_call",
        "0",
        ">= 1",
    ),
    case(
        "PruningCallback/layer-sparsity-not-wrapper",
        lambda m: kp.callbacks.layer_sparsity(m.dense.get_layer("hidden")),
        "wrapper",
        "hidden",
        "PruneWrapper",
        TypeError,
    ),
]

# --- methods ------------------------------------------------------------------------------------

METHODS = [
    case(
        "methods/lottery-scalar",
        lambda m: kp.methods.LotteryTicket(0.5, 10),
        "sparsities",
        "0.5",
        r"list|\[",
    ),
    case(
        "methods/lottery-sparsity-1",
        lambda m: kp.methods.LotteryTicket([0.5, 1.0], 10),
        "sparsities[1]",
        "1.0",
        SPARSITY,
    ),
    case(
        "methods/lottery-sparsity-nan",
        lambda m: kp.methods.LotteryTicket([NAN], 10),
        "sparsities[0]",
        "nan",
        SPARSITY,
    ),
    case(
        "methods/lottery-frequency-0",
        lambda m: kp.methods.LotteryTicket([0.5], 0),
        "frequency",
        "0",
        ">= 1",
    ),
    case(
        "methods/lottery-frequency-float",
        lambda m: kp.methods.LotteryTicket([0.5], 2.5),
        "frequency",
        "2.5",
        INTEGER,
    ),
    case(
        "methods/lottery-rewind-negative",
        lambda m: kp.methods.LotteryTicket([0.5], 10, rewind_step=-1),
        "rewind_step",
        "-1",
        ">= 0",
    ),
    case(
        "methods/lottery-rewind-after",
        lambda m: kp.methods.LotteryTicket([0.5], 10, rewind_step=10),
        "rewind_step",
        "10",
        "< `frequency`",
    ),
    case(
        "methods/lottery-allocation",
        lambda m: kp.methods.LotteryTicket([0.5], 10, allocation="globl"),
        "allocation",
        "'globl'",
        DID_YOU_MEAN,
    ),
    case(
        "methods/lottery-reset-optimizer",
        lambda m: kp.methods.LotteryTicket([0.5], 10, reset_optimizer="no"),
        "reset_optimizer",
        "'no'",
        "True or False",
    ),
    case("methods/set-sparsity-1", lambda m: kp.methods.SET(1.0), "sparsity", "1.0", SPARSITY),
    case("methods/set-sparsity-nan", lambda m: kp.methods.SET(NAN), "sparsity", "nan", SPARSITY),
    case(
        "methods/set-frequency-0",
        lambda m: kp.methods.SET(0.5, frequency=0),
        "frequency",
        "0",
        ">= 1",
    ),
    case(
        "methods/set-drop-fraction-1.5",
        lambda m: kp.methods.SET(0.5, drop_fraction=1.5),
        "drop_fraction",
        "1.5",
        r"\(0",
    ),
    case(
        "methods/set-drop-fraction-nan",
        lambda m: kp.methods.SET(0.5, drop_fraction=NAN),
        "drop_fraction",
        "nan",
        r"\(0",
    ),
    case(
        "methods/set-drop-fraction-0",
        lambda m: kp.methods.SET(0.5, drop_fraction=0),
        "drop_fraction",
        "0",
        r"\(0",
    ),
    case(
        "methods/set-end-step-negative",
        lambda m: kp.methods.SET(0.5, end_step=-5),
        "end_step",
        "-5",
        ">= ",
    ),
    case(
        "methods/set-distribution",
        lambda m: kp.methods.SET(0.5, distribution="ekr"),
        "distribution",
        "'ekr'",
        "one of",
    ),
    case("methods/set-seed", lambda m: kp.methods.SET(0.5, seed=0.5), "seed", "0.5", INTEGER),
    case("methods/rigl-sparsity-1", lambda m: kp.methods.RigL(1.0), "sparsity", "1.0", SPARSITY),
    case(
        "methods/rigl-calibration-str",
        lambda m: kp.methods.RigL(0.5, calibration_data="x"),
        "calibration_data",
        "'x'",
        r"\(x, y\)",
    ),
    case(
        "methods/rigl-calibration-no-labels",
        lambda m: kp.methods.RigL(0.5, calibration_data=m.x),
        "calibration_data",
        "(16, 8)",
        r"\(x, y\)",
    ),
    case(
        "methods/rigl-calibration-nan",
        lambda m: kp.methods.RigL(0.5, calibration_data=(_with_nan(m.x), m.y)),
        "calibration_data",
        "nan",
        "finite",
    ),
    case(
        "methods/rigl-batch-size",
        lambda m: kp.methods.RigL(0.5, calibration_batch_size=0),
        "calibration_batch_size",
        "0",
        ">= 1",
    ),
    case(
        "methods/rigl-unknown-kwarg",
        lambda m: kp.methods.RigL(0.5, drop_fracton=0.3),
        "drop_fracton",
        "drop_fracton",
        "drop_fraction",
        TypeError,
    ),
    case(
        "methods/drop-and-grow-count",
        lambda m: kp.methods.drop_and_grow(np.ones((4,)), np.ones((4,)), np.ones((4,)), -1),
        "count",
        "-1",
        ">= 0",
    ),
    case(
        "methods/penalize-not-pruned",
        lambda m: kp.methods.penalize_masks(m.dense, kp.regularizers.L1()),
        "Model",
        "dense_model",
        "mask='learnable'",
    ),
]

# --- distill --------------------------------------------------------------------------------------

DISTILL = [
    case(
        "distill/student-none",
        lambda m: kp.distill.Distiller(None, m.teacher),
        "student",
        "None",
        "keras.Model",
    ),
    case(
        "distill/teacher-str",
        lambda m: kp.distill.Distiller(m.dense, "teacher.keras"),
        "teacher",
        "'teacher.keras'",
        "keras.Model",
    ),
    case(
        "distill/teacher-is-student",
        lambda m: kp.distill.Distiller(m.dense, m.dense),
        "teacher",
        "dense_model",
        "different|copy",
    ),
    case(
        "distill/alpha-1.5",
        lambda m: kp.distill.Distiller(m.dense, m.teacher, alpha=1.5),
        "alpha",
        "1.5",
        r"\[0",
    ),
    case(
        "distill/alpha-nan",
        lambda m: kp.distill.Distiller(m.dense, m.teacher, alpha=NAN),
        "alpha",
        "nan",
        r"\[0",
    ),
    case(
        "distill/alpha-str",
        lambda m: kp.distill.Distiller(m.dense, m.teacher, alpha="0.5"),
        "alpha",
        "'0.5'",
        r"\[0",
    ),
    case(
        "distill/alpha-schedule",
        lambda m: kp.distill.Distiller(
            m.dense, m.teacher, alpha=kp.distill.DistillSchedule(0.5, 1.5)
        ),
        "alpha",
        "1.5",
        r"\[0",
    ),
    case(
        "distill/temperature-0",
        lambda m: kp.distill.Distiller(m.dense, m.teacher, temperature=0),
        "temperature",
        "0",
        "> 0",
    ),
    case(
        "distill/temperature-nan",
        lambda m: kp.distill.Distiller(m.dense, m.teacher, temperature=NAN),
        "temperature",
        "nan",
        "> 0",
    ),
    case(
        "distill/hint-weight-nan",
        lambda m: kp.distill.Distiller(
            m.dense, m.teacher, hints=[("hidden", "hidden")], hint_weight=NAN
        ),
        "hint_weight",
        "nan",
        "> 0",
    ),
    case(
        "distill/hint-unknown-layer",
        lambda m: kp.distill.Distiller(m.dense, m.teacher, hints=[("hiden", "hidden")]),
        "hiden",
        "hiden",
        "Available layer names.*hidden",
    ),
    case(
        "distill/hint-not-pairs",
        lambda m: kp.distill.Distiller(m.dense, m.teacher, hints="hidden"),
        "hints",
        "'hidden'",
        "pair",
    ),
    case(
        "distill/projection",
        lambda m: kp.distill.Distiller(m.dense, m.teacher, projection="linear"),
        "projection",
        "'linear'",
        "auto",
    ),
    case(
        "distill/distillation-loss",
        lambda m: kp.distill.Distiller(m.dense, m.teacher, distillation_loss=3),
        "distillation_loss",
        "3",
        "loss function",
    ),
    case(
        "distill/input-shape-mismatch",
        lambda m: kp.distill.Distiller(m.conv, m.teacher),
        "teacher",
        "(8, 8, 1)",
        "same inputs",
    ),
    case(
        "distill/soft-targets-temperature-0",
        lambda m: kp.distill.SoftTargets(temperature=0),
        "temperature",
        "0",
        "> 0",
    ),
    case(
        "distill/soft-targets-temperature-nan",
        lambda m: kp.distill.SoftTargets(temperature=NAN),
        "temperature",
        "nan",
        "> 0",
    ),
    case(
        "distill/soft-targets-from-logits",
        lambda m: kp.distill.SoftTargets(from_logits="yes"),
        "from_logits",
        "'yes'",
        "True or False",
    ),
    case("distill/attention-p-0", lambda m: kp.distill.AttentionTransfer(p=0), "p", "0", "> 0"),
    case(
        "distill/attention-p-nan", lambda m: kp.distill.AttentionTransfer(p=NAN), "p", "nan", "> 0"
    ),
    case(
        "distill/feature-matching-normalize",
        lambda m: kp.distill.FeatureMatching(normalize="l2"),
        "normalize",
        "'l2'",
        "True or False",
    ),
    case(
        "distill/schedule-initial-nan",
        lambda m: kp.distill.DistillSchedule(NAN, 0.5),
        "initial",
        "nan",
        "finite",
    ),
    case(
        "distill/schedule-end-before-begin",
        lambda m: kp.distill.DistillSchedule(0.5, 0.1, begin_step=10, end_step=5),
        "end_step",
        "5",
        "begin_step",
    ),
    case(
        "distill/schedule-power-nan",
        lambda m: kp.distill.DistillSchedule(0.5, 0.1, power=NAN),
        "power",
        "nan",
        "> 0",
    ),
    case(
        "distill/schedule-frequency-0",
        lambda m: kp.distill.DistillSchedule(0.5, 0.1, frequency=0),
        "frequency",
        "0",
        ">= 1",
    ),
    case(
        "distill/soft-target-loss-temperature",
        lambda m: kp.distill.soft_target_loss(m.y, m.y, temperature=-1.0),
        "temperature",
        "-1",
        "> 0",
    ),
]

# --- export.to_tflite ------------------------------------------------------------------------------

EXPORT = [
    case(
        "export/model-none",
        lambda m: kp.export.to_tflite(None, m.out),
        "model",
        "None",
        "keras.Model",
        TypeError,
    ),
    case(
        "export/model-path",
        lambda m: kp.export.to_tflite("model.keras", m.out),
        "model",
        "'model.keras'",
        "load_model",
        TypeError,
    ),
    case("export/path-none", lambda m: kp.export.to_tflite(m.dense, None), "path", "None", "path"),
    case("export/path-empty", lambda m: kp.export.to_tflite(m.dense, ""), "path", "''", "path"),
    case("export/path-int", lambda m: kp.export.to_tflite(m.dense, 3), "path", "3", "path"),
    case(
        "export/path-suffix",
        lambda m: kp.export.to_tflite(m.dense, m.out[:-7] + ".keras"),
        "path",
        ".keras",
        r"\.tflite",
    ),
    case(
        "export/target-typo",
        lambda m: kp.export.to_tflite(m.dense, m.out, target="mobil"),
        "target",
        "'mobil'",
        DID_YOU_MEAN,
    ),
    case(
        "export/target-int",
        lambda m: kp.export.to_tflite(m.dense, m.out, target=8),
        "target",
        "8",
        "one of",
    ),
    case(
        "export/int8-no-calibration",
        lambda m: kp.export.to_tflite(m.dense, m.out, target="mobile-int8"),
        "calibration_data",
        "mobile-int8",
        "Pass an array",
    ),
    case(
        "export/calibration-wrong-shape",
        lambda m: kp.export.to_tflite(
            m.dense, m.out, target="mobile-int8", calibration_data=m.image
        ),
        "calibration_data",
        "(16, 8, 8, 1)",
        "8",
    ),
    case(
        "export/calibration-wrong-rank",
        lambda m: kp.export.to_tflite(m.conv, m.out, target="mobile-int8", calibration_data=m.x),
        "calibration_data",
        "(16, 8)",
        r"8, 8, 1",
    ),
    case(
        "export/calibration-inf",
        lambda m: kp.export.to_tflite(
            m.dense, m.out, target="mobile-int8", calibration_data=_with_nan(m.x, INF)
        ),
        "calibration_data",
        "inf",
        "finite",
    ),
    case(
        "export/calibration-nan",
        lambda m: kp.export.to_tflite(
            m.dense, m.out, target="mcu", calibration_data=_with_nan(m.x)
        ),
        "calibration_data",
        "nan",
        "finite",
    ),
    case(
        "export/calibration-all-nan",
        lambda m: kp.export.to_tflite(
            m.dense, m.out, target="mobile-int8", calibration_data=np.full((8, 8), NAN, "float32")
        ),
        "calibration_data",
        "nan",
        "finite",
    ),
    case(
        "export/calibration-str",
        lambda m: kp.export.to_tflite(
            m.dense, m.out, target="mobile-int8", calibration_data="x.npy"
        ),
        "calibration_data",
        "<U5",
        "real numbers",
    ),
    case(
        "export/calibration-empty",
        lambda m: kp.export.to_tflite(
            m.dense, m.out, target="mobile-int8", calibration_data=m.x[:0]
        ),
        "calibration_data",
        "0",
        "sample",
    ),
    case(
        "export/verification-nan",
        lambda m: kp.export.to_tflite(m.dense, m.out, verification_data=_with_nan(m.x)),
        "verification_data",
        "nan",
        "finite",
    ),
    case(
        "export/verification-wrong-shape",
        lambda m: kp.export.to_tflite(m.dense, m.out, verification_data=m.x[:, :4]),
        "verification_data",
        "(16, 4)",
        "8",
    ),
    case(
        "export/on-mismatch",
        lambda m: kp.export.to_tflite(m.dense, m.out, on_mismatch="ignore"),
        "on_mismatch",
        "'ignore'",
        "warn",
    ),
    case(
        "export/latency-runs-negative",
        lambda m: kp.export.to_tflite(m.dense, m.out, latency_runs=-1),
        "latency_runs",
        "-1",
        ">= 0",
    ),
    case(
        "export/latency-runs-float",
        lambda m: kp.export.to_tflite(m.dense, m.out, latency_runs=1.5),
        "latency_runs",
        "1.5",
        "integer|>= 0",
    ),
    case(
        "export/normalization-nan",
        lambda m: kp.export.to_tflite(m.dense, m.out, normalization=(0.0, NAN)),
        "normalization",
        "nan",
        "finite|> 0",
    ),
    case(
        "export/normalization-std-0",
        lambda m: kp.export.to_tflite(m.dense, m.out, normalization=(0.0, 0.0)),
        "normalization",
        "0.0",
        "> 0",
    ),
    case(
        "export/normalization-one",
        lambda m: kp.export.to_tflite(m.dense, m.out, normalization=(0.5,)),
        "normalization",
        "(0.5,)",
        r"\(mean, std\)|pair",
    ),
    case(
        "export/labels-count",
        lambda m: kp.export.to_tflite(m.dense, m.out, labels=["a", "b"]),
        "labels",
        "2",
        "3",
    ),
    case(
        "export/labels-str",
        lambda m: kp.export.to_tflite(m.dense, m.out, labels="abc"),
        "labels",
        "'abc'",
        "list",
    ),
    case(
        "export/name-int", lambda m: kp.export.to_tflite(m.dense, m.out, name=3), "name", "3", "str"
    ),
    case(
        "export/get-target-typo",
        lambda m: kp.export.get_target("mcuu"),
        "target",
        "'mcuu'",
        DID_YOU_MEAN,
    ),
    case(
        "export/predict-runtime",
        lambda m: kp.export.predict(b"", m.x, runtime="tflite"),
        "runtime",
        "'tflite'",
        "litert",
    ),
    case(
        "export/measure-latency-runs",
        lambda m: kp.export.measure_latency(b"", runs=0),
        "runs",
        "0",
        ">= 1",
    ),
]

# --- reporting ----------------------------------------------------------------------------------------

REPORTING = [
    case(
        "reporting/summary-none",
        lambda m: kp.summary(None),
        "model",
        "None",
        "keras.Model",
        TypeError,
    ),
    case(
        "reporting/summary-str",
        lambda m: kp.summary("model.keras"),
        "model",
        "'model.keras'",
        "keras.Model",
        TypeError,
    ),
    case(
        "reporting/summary-layer",
        lambda m: kp.summary(keras.layers.Dense(3)),
        "model",
        "Dense",
        "keras.Model",
        TypeError,
    ),
    case(
        "reporting/summary-print-fn",
        lambda m: kp.summary(m.dense, print_fn="stdout"),
        "print_fn",
        "'stdout'",
        "callable",
        TypeError,
    ),
    case(
        "reporting/summary-unbuilt",
        lambda m: kp.summary(_unbuilt()),
        "model",
        "unbuilt",
        r"keras\.Input|build",
    ),
    case(
        "reporting/macs-count-none",
        lambda m: kp.reporting.macs.count(None),
        "model",
        "None",
        "keras.Model",
        TypeError,
    ),
    case(
        "reporting/macs-count-unbuilt",
        lambda m: kp.reporting.macs.count(_unbuilt()),
        "model",
        "unbuilt",
        r"keras\.Input|build",
    ),
    case(
        "reporting/layer-costs-str",
        lambda m: kp.reporting.layer_costs("model"),
        "model",
        "'model'",
        "keras.Model",
        TypeError,
    ),
    case(
        "reporting/layer-costs-size-of",
        lambda m: kp.reporting.layer_costs(m.dense, size_of=4),
        "size_of",
        "4",
        "callable",
        TypeError,
    ),
    case(
        "reporting/compare-none",
        lambda m: kp.reporting.compare(m.dense, None),
        "model_b",
        "None",
        "keras.Model",
        TypeError,
    ),
    case(
        "reporting/weight-rows-none",
        lambda m: kp.reporting.weight_rows(None),
        "model",
        "None",
        "keras.Model",
        TypeError,
    ),
    case(
        "reporting/groups-svg-none",
        lambda m: kp.reporting.groups_svg(None),
        "model",
        "None",
        "keras.Model",
        TypeError,
    ),
]

# --- tfmot entry points ---------------------------------------------------------------------------------

TFMOT = [
    case(
        "tfmot/prune-none",
        lambda m: kp.tfmot.prune_low_magnitude(None),
        "to_prune",
        "None",
        "keras.Model|layer",
        TypeError,
    ),
    case(
        "tfmot/schedule-str",
        lambda m: kp.tfmot.prune_low_magnitude(m.dense, pruning_schedule="poly"),
        "schedule",
        "'poly'",
        DID_YOU_MEAN,
    ),
    case(
        "tfmot/block-size-zero",
        lambda m: kp.tfmot.prune_low_magnitude(m.dense, block_size=(0, 1)),
        "block_size",
        "0",
        ">= 1",
    ),
    case(
        "tfmot/block-size-int",
        lambda m: kp.tfmot.prune_low_magnitude(m.dense, block_size=4),
        "block_size",
        "4",
        "pair",
    ),
    case(
        "tfmot/block-pooling",
        lambda m: kp.tfmot.prune_low_magnitude(
            m.dense, block_size=(1, 4), block_pooling_type="MEAN"
        ),
        "block_pooling_type",
        "'MEAN'",
        "AVG",
    ),
    case(
        "tfmot/m-by-n",
        lambda m: kp.tfmot.prune_low_magnitude(m.dense, sparsity_m_by_n=(4, 2)),
        "sparsity_m_by_n",
        "(4, 2)",
        "m",
    ),
    case(
        "tfmot/m-by-n-int",
        lambda m: kp.tfmot.prune_low_magnitude(m.dense, sparsity_m_by_n=2),
        "sparsity_m_by_n",
        "2",
        "pair",
    ),
    case(
        "tfmot/policy",
        lambda m: kp.tfmot.prune_low_magnitude(m.dense, pruning_policy="xnnpack"),
        "pruning_policy",
        "'xnnpack'",
        "PruneForLatencyOnXNNPack",
        TypeError,
    ),
    case(
        "tfmot/unknown-kwarg",
        lambda m: kp.tfmot.prune_low_magnitude(m.dense, block_sise=(1, 4)),
        "block_sise",
        "block_sise",
        "block_size",
        TypeError,
    ),
    case(
        "tfmot/constant-target",
        lambda m: kp.tfmot.ConstantSparsity(1.5),
        "target_sparsity",
        "1.5",
        SPARSITY,
    ),
    case(
        "tfmot/constant-target-nan",
        lambda m: kp.tfmot.ConstantSparsity(NAN),
        "target_sparsity",
        "nan",
        SPARSITY,
    ),
    case(
        "tfmot/poly-end-none",
        lambda m: kp.tfmot.PolynomialDecay(0.0, 0.5, 0, None),
        "end_step",
        "None",
        INTEGER,
    ),
    case(
        "tfmot/poly-power-np",
        lambda m: kp.tfmot.PolynomialDecay(0.0, 0.5, 0, 10, power=np.float32(-3)),
        "power",
        "-3.0",
        "> 0",
    ),
    case(
        "tfmot/strip-none",
        lambda m: kp.tfmot.strip_pruning(None),
        "model",
        "None",
        "keras.Model",
        TypeError,
    ),
    case(
        "tfmot/update-step-batch-size",
        lambda m: kp.tfmot.UpdatePruningStep(calibration_batch_size=-1),
        "calibration_batch_size",
        "-1",
        ">= 1",
    ),
    case(
        "tfmot/summaries-log-dir",
        lambda m: kp.tfmot.PruningSummaries(log_dir=""),
        "log_dir",
        "''",
        "path",
    ),
]

CASES = (
    SCHEDULES
    + GRANULARITY
    + MASK_TYPES
    + CRITERIA
    + ALLOCATION
    + REGULARIZERS
    + PRUNE
    + PRUNE_ONCE
    + STRIP
    + CHANNELS
    + SHRINK
    + WRAPPER
    + CALLBACK
    + METHODS
    + DISTILL
    + EXPORT
    + REPORTING
    + TFMOT
)


@pytest.mark.parametrize("call, error, pattern", CASES)
def test_bad_input(request, models, call, error, pattern):
    if request.node.callspec.id.startswith("export/") and keras.backend.backend() != "tensorflow":
        # On other backends `kp.export` first says it needs TensorFlow (export the saved
        # .keras file in a TensorFlow process), before it reads any other argument.
        errors = error if isinstance(error, tuple) else (error,)
        with pytest.raises((*errors, RuntimeError)) as raised:
            call(models)
        message = str(raised.value)
        assert re.search(pattern, message) or "needs the TensorFlow backend" in message, message
        return
    _run(models, call, error, pattern)


def test_at_least_200_cases_with_unique_ids():
    ids = [param.id for param in CASES]
    assert len(ids) >= 200
    assert len(set(ids)) == len(ids)


# --- property-based: random invalid numbers -----------------------------------------------------

_OUTSIDE_SPARSITY = st.one_of(
    st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=True),
    st.floats(min_value=1.0, allow_nan=False, allow_infinity=True),
    st.just(NAN),
)
_PROPERTY = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@_PROPERTY
@given(sparsity=_OUTSIDE_SPARSITY)
def test_any_sparsity_outside_range_is_refused(models, sparsity):
    for build in (kp.ConstantSparsity, kp.schedules.OneShotSparsity, kp.methods.SET):
        with pytest.raises(ValueError, match="`sparsity`"):
            build(sparsity)
    with pytest.raises(ValueError, match="`final_sparsity`"):
        kp.PolynomialDecay(0.0, sparsity, 0, 10)
    _run(models, lambda m: kp.prune_once(m.dense, sparsity), ValueError, "`sparsity`")


@_PROPERTY
@given(steps=st.integers(1, 10_000).flatmap(lambda b: st.tuples(st.just(b), st.integers(0, b - 1))))
def test_any_end_before_begin_is_refused(steps):
    begin, end = steps
    with pytest.raises(ValueError, match="`end_step`"):
        kp.PolynomialDecay(0.0, 0.5, begin, end)
    with pytest.raises(ValueError, match="`end_step`"):
        kp.ConstantSparsity(0.5, begin_step=begin, end_step=end)


@_PROPERTY
@given(n=st.integers(2, 64), extra=st.integers(0, 64))
def test_any_n_not_below_m_is_refused(n, extra):
    with pytest.raises(ValueError, match="`n`"):
        kp.granularity.NofM(n + extra, n)


@_PROPERTY
@given(
    value=st.one_of(
        st.floats(allow_nan=True).filter(
            lambda v: not (v >= 1 and v == int(v) if math.isfinite(v) else False)
        ),
        st.integers(max_value=0),
        st.text(max_size=3),
        st.none(),
    )
)
def test_any_bad_frequency_is_refused(value):
    with pytest.raises(ValueError, match="`frequency`"):
        kp.ConstantSparsity(0.5, frequency=value)


@_PROPERTY
@given(rows=st.integers(-4, 0), cols=st.integers(-4, 8))
def test_any_non_positive_block_is_refused(rows, cols):
    with pytest.raises(ValueError, match=r"`block_shape\[\d\]`"):
        kp.granularity.Block((rows, cols))


@_PROPERTY
@given(valid=st.sampled_from([0.0, 0.25, np.float32(0.5), np.float64(0.75)]))
def test_numpy_scalars_are_accepted(valid):
    assert kp.ConstantSparsity(valid).sparsity == float(valid)
    assert (
        kp.PolynomialDecay(0.0, valid, np.int64(0), np.int32(10), power=np.float32(3)).power == 3.0
    )


def category_table(outcomes=None):
    """`{category: (tried, handled)}`; `outcomes` maps a case id to True (handled) / False."""
    table = collections.OrderedDict()
    for param in CASES:
        category = param.id.split("/")[0]
        tried, handled = table.get(category, (0, 0))
        ok = not param.marks if outcomes is None else outcomes.get(param.id, False)
        table[category] = (tried + 1, handled + int(ok))
    return table


if __name__ == "__main__":
    rows = category_table()
    print("| category | tried | handled |\n|---|---|---|")
    for category, (tried, handled) in rows.items():
        print(f"| {category} | {tried} | {handled} |")
    total = [sum(column) for column in zip(*rows.values(), strict=True)]
    print(f"| **total** | {total[0]} | {total[1]} |")
