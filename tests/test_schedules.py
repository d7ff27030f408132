import json

import keras
import pytest
from keras import ops

import keras_prune as kp


def test_polynomial_decay_matches_formula():
    schedule = kp.PolynomialDecay(0.1, 0.9, begin_step=10, end_step=110, power=3, frequency=10)
    for step in range(0, 130):
        progress = min(max((step - 10) / 100, 0.0), 1.0)
        expected = 0.9 + (0.1 - 0.9) * (1 - progress) ** 3
        should, sparsity = schedule(step)
        assert sparsity == pytest.approx(expected, abs=1e-7)
        assert should == (10 <= step <= 110 and (step - 10) % 10 == 0)


def test_tensor_steps_agree_with_python_steps():
    schedule = kp.PolynomialDecay(0.0, 0.8, begin_step=5, end_step=45, power=2, frequency=4)
    for step in range(0, 60):
        should, sparsity = schedule(ops.convert_to_tensor(step, "int64"))
        expected_should, expected_sparsity = schedule(step)
        assert bool(ops.convert_to_numpy(should)) == expected_should
        assert float(ops.convert_to_numpy(sparsity)) == pytest.approx(expected_sparsity, abs=1e-6)


def test_constant_sparsity_open_ended():
    schedule = kp.ConstantSparsity(0.5, begin_step=3, frequency=2)
    assert schedule(2) == (False, 0.5)
    assert schedule(3) == (True, 0.5)
    assert schedule(4)[0] is False
    assert schedule(10_001) == (True, 0.5)
    assert schedule.end_sparsity() == 0.5


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: kp.PolynomialDecay(0.0, 1.0, 0, 10), "final_sparsity=1.0"),
        (lambda: kp.PolynomialDecay(-0.1, 0.5, 0, 10), "initial_sparsity=-0.1"),
        (lambda: kp.PolynomialDecay(0.0, 0.5, 20, 10), "end_step=10"),
        (lambda: kp.PolynomialDecay(0.0, 0.5, 0, 10, frequency=0), "frequency=0"),
        (lambda: kp.PolynomialDecay(0.0, 0.5, 0, 10, power=0), "power=0"),
        (lambda: kp.ConstantSparsity(1.2), "sparsity=1.2"),
        (lambda: kp.ConstantSparsity(0.5, begin_step=-1), "begin_step=-1"),
        (lambda: kp.ConstantSparsity(0.5, begin_step=1.5), "begin_step=1.5"),
    ],
)
def test_bad_arguments_name_the_value(make, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        make()


@keras.saving.register_keras_serializable(package="tests")
class Linear(kp.PruningSchedule):
    def __init__(self, target, **kwargs):
        super().__init__(**kwargs)
        self.target = target

    def sparsity_at(self, step):
        span = max(self.end_step - self.begin_step, 1)
        return self.target * min(max((step - self.begin_step) / span, 0.0), 1.0)

    def get_config(self):
        return {**super().get_config(), "target": self.target}


@pytest.mark.parametrize(
    "schedule",
    [
        kp.ConstantSparsity(0.3, begin_step=2, end_step=50, frequency=7),
        kp.PolynomialDecay(0.1, 0.95, begin_step=0, end_step=1000, power=2, frequency=50),
        Linear(0.5, begin_step=0, end_step=100, frequency=10),
    ],
)
def test_serialization_round_trip(schedule):
    config = json.loads(json.dumps(kp.schedules.serialize(schedule)))
    restored = kp.schedules.deserialize(config)
    assert restored == schedule
    assert [restored(s) for s in range(0, 120, 5)] == [schedule(s) for s in range(0, 120, 5)]


def test_aliases_and_unknown_names():
    schedule = kp.schedules.get(
        (
            "polynomial",
            {"initial_sparsity": 0.0, "final_sparsity": 0.5, "begin_step": 0, "end_step": 10},
        )
    )
    assert isinstance(schedule, kp.PolynomialDecay)
    with pytest.raises(ValueError, match="Unknown schedule 'cosine'"):
        kp.schedules.get(("cosine", {}))
    with pytest.raises(TypeError, match="schedule=0.5"):
        kp.schedules.get(0.5)


def test_base_class_requires_sparsity_at():
    with pytest.raises(NotImplementedError, match="sparsity_at"):
        kp.PruningSchedule()(0)
