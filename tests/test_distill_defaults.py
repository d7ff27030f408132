"""The Distiller's defaults (issue 13): what docs/distillation.md says they are, on logits and on
softmax outputs, explicit arguments and saved configs unchanged, and a default Distiller on a
pruned student that trains without diverging."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from keras import ops  # noqa: E402

import keras_prune as kp  # noqa: E402
from keras_prune import distill  # noqa: E402
from keras_prune.distill import distiller as distiller_module  # noqa: E402
from keras_prune.distill.distiller import Distiller, ends_in_softmax  # noqa: E402

CLASSES = 4


def _mlp(seed, activation=None, name=None):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((12,)),
            keras.layers.Dense(32, activation="relu", name="hidden"),
            keras.layers.Dense(CLASSES, activation=activation, name="out"),
        ],
        name=name,
    )


def _schedule(end_step=20):
    return kp.PolynomialDecay(0.0, 0.9, begin_step=2, end_step=end_step, frequency=2)


def test_documented_default_values():
    assert distiller_module.DEFAULT_TEMPERATURE == 2.0
    assert (distiller_module.DEFAULT_ALPHA_START, distiller_module.DEFAULT_ALPHA) == (0.1, 0.5)
    # SoftTargets alone keeps its own documented default.
    assert distill.SoftTargets().temperature == 4.0


def test_default_alpha_follows_the_students_pruning_schedule():
    schedule = _schedule()
    trainer = Distiller(kp.prune(_mlp(1), schedule=schedule), _mlp(0))
    assert isinstance(trainer.alpha, distill.DistillSchedule)
    assert trainer.alpha.get_config() == (
        distill.DistillSchedule.following(schedule, 0.1, 0.5).get_config()
    )
    # No distillation to speak of while the student is the dense model, 0.5 at full sparsity.
    assert float(trainer.alpha(0)) == pytest.approx(0.1)
    assert float(trainer.alpha(schedule.end_step)) == pytest.approx(0.5)
    loss = trainer.distillation_loss
    assert isinstance(loss, distill.SoftTargets)
    assert (loss.temperature, loss.from_logits) == (2.0, True)
    assert trainer.student_loss.get_config()["from_logits"] is True
    assert trainer.temperature is None


def test_default_alpha_without_a_pruning_schedule_is_constant():
    assert Distiller(_mlp(1), _mlp(0)).alpha == 0.5
    assert Distiller(_mlp(1), _mlp(0), alpha="auto").alpha == 0.5


def test_softmax_outputs_get_losses_on_probabilities():
    student = kp.prune(_mlp(1, activation="softmax"), schedule=_schedule())
    trainer = Distiller(student, _mlp(0, activation="softmax"))
    assert trainer.distillation_loss.from_logits is False
    assert trainer.student_loss.get_config()["from_logits"] is False


def test_default_loss_refuses_logits_against_probabilities():
    with pytest.raises(ValueError, match="teacher that outputs probabilities.*distillation_loss="):
        Distiller(_mlp(1), _mlp(0, activation="softmax"))
    # An explicit loss is the user's choice.
    Distiller(_mlp(1), _mlp(0, activation="softmax"), distillation_loss=distill.SoftTargets())


def test_ends_in_softmax_sees_every_way_of_writing_a_softmax():
    inputs = keras.Input((6,))
    logits = keras.layers.Dense(3)(inputs)
    assert ends_in_softmax(keras.Model(inputs, keras.layers.Softmax()(logits)))
    assert ends_in_softmax(keras.Model(inputs, keras.layers.Activation("softmax")(logits)))
    assert ends_in_softmax(keras.Model(inputs, ops.softmax(logits)))
    assert not ends_in_softmax(keras.Model(inputs, logits))
    functional = keras.Model(inputs, keras.layers.Softmax()(logits))
    # Pruned (layers wrapped, unwrapped ones shared with the original) and nested.
    assert ends_in_softmax(kp.prune(functional))
    assert ends_in_softmax(keras.Sequential([keras.Input((6,)), functional]))
    assert ends_in_softmax(kp.prune(_mlp(0, activation="softmax")))
    assert not ends_in_softmax(_mlp(0, activation="relu"))


def test_explicit_arguments_and_configs_keep_their_values():
    old = Distiller(
        _mlp(1), _mlp(0), alpha=0.5, distillation_loss=distill.SoftTargets(temperature=4.0)
    )
    assert old.alpha == 0.5 and old.distillation_loss.temperature == 4.0
    config = old.get_config()
    restored = Distiller.from_config(config)
    assert restored.alpha == 0.5
    assert restored.distillation_loss.temperature == 4.0
    # A default Distiller saves what it resolved, so a reload never re-derives it.
    default = Distiller(kp.prune(_mlp(1), schedule=_schedule()), _mlp(0))
    restored = Distiller.from_config(default.get_config())
    assert restored.alpha.get_config() == default.alpha.get_config()
    assert restored.distillation_loss.get_config() == default.distillation_loss.get_config()


def test_unknown_alpha_string_names_auto():
    with pytest.raises(ValueError, match=r"Expected `alpha` in \[0.0, 1.0\].*\"auto\".*'half'"):
        Distiller(_mlp(1), _mlp(0), alpha="half")


@pytest.mark.parametrize("activation", [None, "softmax"])
def test_default_distiller_prunes_and_trains_without_diverging(activation):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 12)).astype("float32")
    y = (x[:, :CLASSES] * np.arange(1, CLASSES + 1)).argmax(-1)
    teacher = _mlp(0, activation=activation)
    teacher.compile(
        keras.optimizers.Adam(1e-2),
        keras.losses.SparseCategoricalCrossentropy(from_logits=activation is None),
    )
    teacher.fit(x, y, epochs=15, batch_size=32, verbose=0)
    student = keras.models.clone_model(teacher)
    student.set_weights(teacher.get_weights())
    student = kp.prune(student, schedule=_schedule(end_step=40))
    trainer = Distiller(student, teacher)
    trainer.compile(keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    history = trainer.fit(
        x, y, epochs=8, batch_size=32, verbose=0, callbacks=[kp.PruningCallback()]
    ).history
    assert np.all(np.isfinite(history["loss"]))
    assert history["sparsity"][-1] == pytest.approx(0.9, abs=0.02)
    assert history["teacher_accuracy"][-1] > 0.8
    # 90% of the weights gone: far better than chance (0.25), a loss below a uniform guess's.
    assert history["accuracy"][-1] > 0.6
    assert history["loss"][-1] < np.log(CLASSES)
