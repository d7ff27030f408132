"""Port of tfmot's sparsity/keras/pruning_schedule_test.py.

tfmot fed `tf.Variable` steps and evaluated the returned tensors; here steps are scalar Keras
tensors and results are read with NumPy.
"""

import keras
import numpy as np
import pytest

import keras_prune as kp

SCHEDULE_TYPES = ["constant_sparsity", "polynomial_decay"]


def _step(value):
    return keras.ops.convert_to_tensor(value, "int32")


def _should_prune(result):
    return bool(np.asarray(keras.ops.convert_to_numpy(result[0])))


def _sparsity(result):
    return float(np.asarray(keras.ops.convert_to_numpy(result[1])))


def _construct_pruning_schedule(schedule_type, begin_step, end_step, frequency=10):
    # Uses default values for sparsity. We're only testing begin_step, end_step
    # and frequency here.
    if schedule_type == "constant_sparsity":
        return kp.tfmot.ConstantSparsity(0.5, begin_step, end_step, frequency)
    elif schedule_type == "polynomial_decay":
        return kp.tfmot.PolynomialDecay(0.2, 0.8, begin_step, end_step, 3, frequency)


# Argument Validation tests


@pytest.mark.parametrize("schedule_type", SCHEDULE_TYPES)
def test_begin_step_greater_than_equals_zero(schedule_type):
    with pytest.raises(ValueError):
        _construct_pruning_schedule(schedule_type, -1, 1000)
    with pytest.raises(ValueError):
        _construct_pruning_schedule(schedule_type, -5, 1000)

    _construct_pruning_schedule(schedule_type, 0, 1000)
    _construct_pruning_schedule(schedule_type, 1, 1000)
    _construct_pruning_schedule(schedule_type, 100, 1000)


@pytest.mark.parametrize("schedule_type", SCHEDULE_TYPES)
def test_end_step_greater_than_equals_zero(schedule_type):
    with pytest.raises(ValueError):
        _construct_pruning_schedule(schedule_type, 10, -5)

    _construct_pruning_schedule(schedule_type, 0, 0)
    _construct_pruning_schedule(schedule_type, 0, 1)
    _construct_pruning_schedule(schedule_type, 0, 100)


@pytest.mark.parametrize("schedule_type", SCHEDULE_TYPES)
def test_end_step_greater_than_equals_begin_step(schedule_type):
    with pytest.raises(ValueError):
        _construct_pruning_schedule(schedule_type, 10, 5)

    _construct_pruning_schedule(schedule_type, 10, 10)
    _construct_pruning_schedule(schedule_type, 10, 20)


@pytest.mark.parametrize("schedule_type", SCHEDULE_TYPES)
def test_frequency_is_positive(schedule_type):
    with pytest.raises(ValueError):
        _construct_pruning_schedule(schedule_type, 10, 1000, 0)
    with pytest.raises(ValueError):
        _construct_pruning_schedule(schedule_type, 10, 1000, -1)
    with pytest.raises(ValueError):
        _construct_pruning_schedule(schedule_type, 10, 1000, -5)

    _construct_pruning_schedule(schedule_type, 10, 1000, 1)
    _construct_pruning_schedule(schedule_type, 10, 1000, 10)


def _validate_sparsity(schedule_construct_fn):
    # Should not be < 0.0
    with pytest.raises(ValueError):
        schedule_construct_fn(-0.001)
    with pytest.raises(ValueError):
        schedule_construct_fn(-1.0)
    with pytest.raises(ValueError):
        schedule_construct_fn(-10.0)

    # Should not be >= 1.0
    with pytest.raises(ValueError):
        schedule_construct_fn(1.0)
    with pytest.raises(ValueError):
        schedule_construct_fn(10.0)

    schedule_construct_fn(0.0)
    schedule_construct_fn(0.001)
    schedule_construct_fn(0.5)
    schedule_construct_fn(0.99)


@pytest.mark.parametrize("schedule_type", SCHEDULE_TYPES)
def test_sparsity_value_is_valid(schedule_type):
    if schedule_type == "constant_sparsity":
        _validate_sparsity(lambda s: kp.tfmot.ConstantSparsity(s, 0))
    elif schedule_type == "polynomial_decay":
        _validate_sparsity(lambda s: kp.tfmot.PolynomialDecay(s, 0.8, 0, 10))
        _validate_sparsity(lambda s: kp.tfmot.PolynomialDecay(0.2, s, 0, 10))


# Tests to ensure begin_step, end_step, frequency are used correctly.


@pytest.mark.parametrize("schedule_type", SCHEDULE_TYPES)
def test_prunes_only_in_begin_end_step_range(schedule_type):
    sparsity = _construct_pruning_schedule(schedule_type, 100, 200, 1)

    # Before begin step
    step_90 = _step(90)
    step_99 = _step(99)
    # In range
    step_100 = _step(100)
    step_110 = _step(110)
    step_200 = _step(200)
    # After end step
    step_201 = _step(201)
    step_210 = _step(210)

    assert not _should_prune(sparsity(step_90))
    assert not _should_prune(sparsity(step_99))

    assert _should_prune(sparsity(step_100))
    assert _should_prune(sparsity(step_110))
    assert _should_prune(sparsity(step_200))

    assert not _should_prune(sparsity(step_201))
    assert not _should_prune(sparsity(step_210))


@pytest.mark.parametrize("schedule_type", SCHEDULE_TYPES)
def test_only_prunes_at_valid_frequency_steps(schedule_type):
    sparsity = _construct_pruning_schedule(schedule_type, 100, 200, 10)

    step_100 = _step(100)
    step_109 = _step(109)
    step_110 = _step(110)
    step_111 = _step(111)

    assert not _should_prune(sparsity(step_109))
    assert not _should_prune(sparsity(step_111))

    assert _should_prune(sparsity(step_100))
    assert _should_prune(sparsity(step_110))


# ConstantSparsityTest


def test_constant_sparsity_prunes_forever_if_end_step_is_negative_one():
    sparsity = kp.tfmot.ConstantSparsity(0.5, 0, -1, 10)

    step_10000 = _step(10000)
    step_100000000 = _step(100000000)

    assert _should_prune(sparsity(step_10000))
    assert _should_prune(sparsity(step_100000000))

    np.testing.assert_allclose(0.5, _sparsity(sparsity(step_10000)), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(0.5, _sparsity(sparsity(step_100000000)), rtol=1e-6, atol=1e-6)


def test_constant_sparsity_prunes_with_constant_sparsity():
    sparsity = kp.tfmot.ConstantSparsity(0.5, 100, 200, 10)

    step_100 = _step(100)
    step_110 = _step(110)
    step_200 = _step(200)

    np.testing.assert_allclose(0.5, _sparsity(sparsity(step_100)), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(0.5, _sparsity(sparsity(step_110)), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(0.5, _sparsity(sparsity(step_200)), rtol=1e-6, atol=1e-6)


def _deserialize(config):
    """tfmot's `quantize_utils.deserialize_keras_object(config, custom_objects=...)`."""
    return keras.saving.deserialize_keras_object(
        config,
        custom_objects={
            "ConstantSparsity": kp.tfmot.ConstantSparsity,
            "PolynomialDecay": kp.tfmot.PolynomialDecay,
        },
    )


def test_constant_sparsity_serialize_deserialize():
    sparsity = kp.tfmot.ConstantSparsity(0.7, 10, 20, 10)

    # deliberate difference: "Schedules' `get_config()` returns their constructor arguments, as
    # every Keras object's does (tfmot returned `{'class_name': ..., 'config': {...}}`);
    # `keras.saving.serialize_keras_object(schedule)` gives that shape and
    # `keras.saving.deserialize_keras_object` reads it back."
    # (tfmot: `config = sparsity.get_config()`.)
    assert kp.tfmot.ConstantSparsity(**sparsity.get_config()).__dict__ == sparsity.__dict__
    config = keras.saving.serialize_keras_object(sparsity)
    sparsity_deserialized = _deserialize(config)

    assert sparsity.__dict__ == sparsity_deserialized.__dict__


# PolynomialDecayTest


def test_polynomial_decay_raises_error_if_end_step_is_negative():
    with pytest.raises(ValueError):
        kp.tfmot.PolynomialDecay(0.4, 0.8, 10, -1)


def test_polynomial_decay_prunes_correctly():
    sparsity = kp.tfmot.PolynomialDecay(0.2, 0.8, 100, 110, 3, 2)

    step_100 = _step(100)
    step_102 = _step(102)
    step_105 = _step(105)
    step_110 = _step(110)

    # These values were generated using tf.polynomial_decay with the same
    # params in a colab to verify.
    np.testing.assert_allclose(0.2, _sparsity(sparsity(step_100)), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(0.4928, _sparsity(sparsity(step_102)), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(0.725, _sparsity(sparsity(step_105)), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(0.8, _sparsity(sparsity(step_110)), rtol=1e-6, atol=1e-6)


def test_polynomial_decay_serialize_deserialize():
    sparsity = kp.tfmot.PolynomialDecay(0.2, 0.6, 10, 20, 5, 10)

    # deliberate difference: "Schedules' `get_config()` returns their constructor arguments, as
    # every Keras object's does (tfmot returned `{'class_name': ..., 'config': {...}}`);
    # `keras.saving.serialize_keras_object(schedule)` gives that shape and
    # `keras.saving.deserialize_keras_object` reads it back."
    # (tfmot: `config = sparsity.get_config()`.)
    assert kp.tfmot.PolynomialDecay(**sparsity.get_config()).__dict__ == sparsity.__dict__
    config = keras.saving.serialize_keras_object(sparsity)
    sparsity_deserialized = _deserialize(config)

    assert sparsity.__dict__ == sparsity_deserialized.__dict__


# Not in tfmot's test files: tfmot's public `PruningSchedule` says "You can inherit this class to
# write your own custom pruning schedule"; its abstract methods are `__call__(step) ->
# (should_prune, sparsity)` and `get_config`. A migrated subclass keeps that contract.


class EveryStepHalf(kp.tfmot.PruningSchedule):
    def __call__(self, step):
        return True, 0.5

    def get_config(self):
        return {}


def test_custom_schedule_subclass_with_tfmot_contract_drives_the_masks():
    wrapper = kp.tfmot.prune_low_magnitude(keras.layers.Dense(4), pruning_schedule=EveryStepHalf())
    model = keras.Sequential([keras.Input((4,)), wrapper])

    kp.pruning.update_masks(model, 3)

    kernel = keras.ops.convert_to_numpy(wrapper.layer.kernel)
    assert np.count_nonzero(kernel) == 8
