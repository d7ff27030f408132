"""Every serializable keras_prune class survives its config round trip.

The classes are enumerated, not listed: every class registered with
`@keras.saving.register_keras_serializable(package="keras_prune")`, plus every public subclass of
a registry's base class (schedules, granularities, mask types, criteria, allocations), after
importing every keras_prune module. A new class is therefore tested as soon as it exists:

- built with no arguments when it can be, otherwise from its entry in `EXAMPLES` below (the
  test fails, naming the class, until a class that needs arguments gets one);
- a registry subclass that is not registered serializable fails
  `test_registry_classes_are_registered`.

`assert_round_trip(instance)` is the shared check; other tests may import it
(`from test_round_trip import assert_round_trip`).
"""

import importlib
import inspect
import pkgutil

import keras
import numpy as np
import pytest

import keras_prune
import keras_prune as kp
from keras_prune.core.registry import Registry

PACKAGE = "keras_prune"


def _modules():
    found = []
    for info in pkgutil.walk_packages(keras_prune.__path__, PACKAGE + "."):
        try:
            found.append(importlib.import_module(info.name))
        except ImportError:  # an optional dependency (the export extra) is not installed
            continue
    return found


MODULES = _modules()
REGISTRIES = {
    f"{module.__name__}.{name}": value
    for module in MODULES
    for name, value in vars(module).items()
    if isinstance(value, Registry)
}


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def registered_classes():
    """`{registered name: class}` of every class keras_prune registers for serialization
    (packages "keras_prune" and "keras_prune.<namespace>")."""
    return {
        key: value
        for key, value in keras.saving.get_custom_objects().items()
        if key.split(">", 1)[0].split(".")[0] == PACKAGE and inspect.isclass(value)
    }


def registry_classes():
    """`{qualified name: class}` of every public keras_prune subclass of a registry's base."""
    found = {}
    for registry in REGISTRIES.values():
        for cls in _subclasses(registry.base):
            if cls.__module__.startswith(PACKAGE) and not cls.__name__.startswith("_"):
                found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return found


# -- examples for the classes that need constructor arguments -----------------------------------


@keras.saving.register_keras_serializable(package="keras_prune_tests")
def _every_tenth_step(step):
    return step % 10 == 0, 0.5


@keras.saving.register_keras_serializable(package="keras_prune_tests")
def _absolute_value(weight, statistics):
    return keras.ops.abs(weight)


@keras.saving.register_keras_serializable(package="keras_prune_tests")
class _TinyNet(keras.Model):
    """A Functional model with a config of its own, so `kp.prune` returns a `PrunedModel`."""

    def __init__(self, units=4, **kwargs):
        inputs = keras.Input((3,))
        outputs = keras.layers.Dense(units, name="dense")(inputs)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.units = units

    def get_config(self):
        return {"units": self.units, "name": self.name}


def _small_model(name):
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="logits")], name=name)


def _small_cnn(name):
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(x), name=name)


EXAMPLES = {
    "keras_prune>ConstantSparsity": lambda: kp.schedules.ConstantSparsity(
        0.5, begin_step=2, frequency=10
    ),
    "keras_prune>PolynomialDecay": lambda: kp.schedules.PolynomialDecay(
        0.1, 0.8, 0, 100, frequency=5
    ),
    "keras_prune>IterativeSparsity": lambda: kp.schedules.IterativeSparsity(
        [0.2, 0.5], frequency=10
    ),
    "keras_prune>OneShotSparsity": lambda: kp.schedules.OneShotSparsity(0.7),
    "keras_prune>FunctionSchedule": lambda: kp.schedules.FunctionSchedule(_every_tenth_step),
    "keras_prune>FunctionCriterion": lambda: kp.criteria.FunctionCriterion(_absolute_value),
    "keras_prune>PercentileAllocation": lambda: kp.allocation.PercentileAllocation(90),
    "keras_prune>ThresholdAllocation": lambda: kp.allocation.ThresholdAllocation(0.01),
    "keras_prune>DistillSchedule": lambda: kp.distill.DistillSchedule(0.9, 0.1, end_step=100),
    "keras_prune>LotteryTicket": lambda: kp.methods.LotteryTicket([0.5, 0.8], frequency=100),
    "keras_prune>SET": lambda: kp.methods.SET(0.9, frequency=50, end_step=2000),
    "keras_prune>RigL": lambda: kp.methods.RigL(0.9, frequency=50, calibration_batch_size=32),
    "keras_prune>PruneWrapper": lambda: kp.PruneWrapper(
        keras.layers.Dense(4), schedule=kp.ConstantSparsity(0.5, begin_step=0, frequency=1)
    ),
    "keras_prune>Distiller": lambda: kp.distill.Distiller(
        _small_model("student"), _small_model("teacher"), alpha=0.3, temperature=2.0
    ),
    "keras_prune>PrunedModel": lambda: kp.prune(_TinyNet(name="tiny")),
    "keras_prune>SensitivityAllocation": lambda: kp.auto.SensitivityAllocation(
        {"conv1": [0.0, 0.1], "conv2": [0.0, 0.2]}, grid=[0.5, 0.9]
    ),
    "keras_prune>EarlyExitModel": lambda: kp.dynamic.EarlyExitModel(
        _small_cnn("backbone"), exits=["pool1"], exit_weights=[0.5]
    ),
    "keras_prune>SlimmableModel": lambda: kp.dynamic.SlimmableModel(
        _small_cnn("backbone"), widths=[0.5, 1.0], num_random=0
    ),
    "keras_prune.tfmot>ConstantSparsity": lambda: kp.tfmot.ConstantSparsity(
        target_sparsity=0.5, begin_step=0
    ),
}


def example(name, cls):
    if name in EXAMPLES:
        return EXAMPLES[name]()
    try:
        return cls()
    except TypeError as error:
        pytest.fail(
            f"{cls.__module__}.{cls.__qualname__} needs constructor arguments ({error}): add a "
            "small example to EXAMPLES in tests/test_round_trip.py"
        )


# -- the check ----------------------------------------------------------------------------------


def _comparable(value):
    """Configs with arrays (weights in a model config) compared by value."""
    if isinstance(value, dict):
        return {key: _comparable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_comparable(item) for item in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def assert_round_trip(instance):
    """`get_config` / `from_config` and `keras.saving.serialize_keras_object` /
    `deserialize_keras_object` give back an object with the same config."""
    cls = type(instance)
    config = instance.get_config()
    rebuilt = cls.from_config(config)
    assert type(rebuilt) is cls
    assert _comparable(rebuilt.get_config()) == _comparable(config), cls.__name__

    serialized = keras.saving.serialize_keras_object(instance)
    restored = keras.saving.deserialize_keras_object(serialized)
    assert type(restored) is cls
    assert _comparable(keras.saving.serialize_keras_object(restored)) == _comparable(serialized)
    return restored


CLASSES = dict(sorted(registered_classes().items()))


def test_classes_were_found():
    # The enumeration must not silently turn this file into a no-op.
    assert len(CLASSES) >= 40
    names = {name.split(">", 1)[1] for name in CLASSES}
    assert {"ConstantSparsity", "NofM", "BinaryMask", "Taylor", "GlobalAllocation"} <= names
    assert len(REGISTRIES) >= 5


def test_examples_name_existing_classes():
    assert set(EXAMPLES) <= set(CLASSES), sorted(set(EXAMPLES) - set(CLASSES))


def test_registry_classes_are_registered():
    registered = set(CLASSES.values())
    missing = sorted(name for name, cls in registry_classes().items() if cls not in registered)
    assert not missing, (
        f"{missing} are not serializable: decorate them with "
        '@keras.saving.register_keras_serializable(package="keras_prune")'
    )


@pytest.mark.parametrize("name", list(CLASSES))
def test_config_round_trip(name):
    cls = CLASSES[name]
    if issubclass(cls, keras.layers.Layer):
        keras.backend.clear_session()
    assert_round_trip(example(name, cls))


@pytest.mark.parametrize("registry", list(REGISTRIES))
def test_every_alias_round_trips_through_its_registry(registry):
    registry = REGISTRIES[registry]
    for alias in registry.names():
        try:
            instance = registry.get(alias)
        except TypeError:  # the class needs arguments: `(alias, {arguments})`, tested above
            continue
        assert registry.deserialize(registry.serialize(instance)) == instance, alias
