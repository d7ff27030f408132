"""Tests for keras_prune.distill (losses, schedules) and the Distiller."""

import doctest
import json
import os
import re
import textwrap

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from keras import ops  # noqa: E402

import keras_prune as kp  # noqa: E402
from keras_prune import distill  # noqa: E402
from keras_prune.distill.distiller import Distiller, find_layer  # noqa: E402
from keras_prune.engine import realised_sparsity  # noqa: E402

NUM_CLASSES = 5


def _data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 6, 6, 1), dtype=np.float32)
    y = rng.integers(0, NUM_CLASSES, n)
    return x, y


def _cnn(width, seed, batchnorm=False, dropout=0.0, classes=NUM_CLASSES, name=None):
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((6, 6, 1)), keras.layers.Conv2D(width, 3, activation="relu", name="conv")]
    if batchnorm:
        layers.append(keras.layers.BatchNormalization(name="bn"))
    if dropout:
        layers.append(keras.layers.Dropout(dropout, name="drop"))
    layers += [
        keras.layers.GlobalAveragePooling2D(name="pool"),
        keras.layers.Dense(8, activation="relu", name="hidden"),
        keras.layers.Dense(classes, name="logits"),
    ]
    return keras.Sequential(layers, name=name)


def _numpy_log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _numpy_soft_targets(teacher, student, temperature):
    log_p = _numpy_log_softmax(teacher / temperature)
    log_q = _numpy_log_softmax(student / temperature)
    return (np.exp(log_p) * (log_p - log_q)).sum(-1) * temperature**2


# -- pure functions against NumPy --------------------------------------------------------------


@pytest.mark.parametrize("temperature", [1.0, 4.0, 10.0])
def test_soft_target_loss_matches_numpy_kl_scaled_by_t_squared(temperature):
    rng = np.random.default_rng(1)
    teacher, student = rng.normal(size=(2, 7, NUM_CLASSES)).astype("float32") * 3
    got = ops.convert_to_numpy(distill.soft_target_loss(teacher, student, temperature))
    np.testing.assert_allclose(got, _numpy_soft_targets(teacher, student, temperature), rtol=1e-4)


def test_soft_target_loss_from_probabilities_equals_from_logits():
    rng = np.random.default_rng(2)
    teacher, student = rng.normal(size=(2, 6, NUM_CLASSES)).astype("float32")
    from_logits = distill.soft_target_loss(teacher, student, 3.0)
    from_probs = distill.soft_target_loss(
        ops.softmax(teacher), ops.softmax(student), 3.0, from_logits=False
    )
    np.testing.assert_allclose(ops.convert_to_numpy(from_probs), from_logits, rtol=1e-4)


def test_feature_matching_loss_is_per_sample_mse_and_normalized_variant():
    rng = np.random.default_rng(3)
    teacher, student = rng.normal(size=(2, 3, 4, 4, 5)).astype("float32")
    got = ops.convert_to_numpy(distill.feature_matching_loss(teacher, student))
    np.testing.assert_allclose(got, ((teacher - student) ** 2).mean(axis=(1, 2, 3)), rtol=1e-5)
    scaled = ops.convert_to_numpy(distill.feature_matching_loss(teacher, 7 * teacher, True))
    np.testing.assert_allclose(scaled, np.zeros(3), atol=1e-6)


def test_attention_transfer_matches_reference_and_ignores_channel_count():
    rng = np.random.default_rng(4)
    teacher = rng.normal(size=(3, 4, 4, 8)).astype("float32")
    student = rng.normal(size=(3, 4, 4, 2)).astype("float32")

    def reference_map(a):
        energy = (np.abs(a) ** 2).mean(-1).reshape(len(a), -1)
        return energy / np.linalg.norm(energy, axis=-1, keepdims=True)

    expected = ((reference_map(teacher) - reference_map(student)) ** 2).mean(-1)
    got = ops.convert_to_numpy(distill.attention_transfer_loss(teacher, student))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_attention_map_rejects_dense_features():
    with pytest.raises(ValueError, match="rank >= 3"):
        distill.attention_map(np.ones((2, 8), "float32"))


# -- losses as Keras losses ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "loss",
    [
        distill.SoftTargets(temperature=2.5, from_logits=False),
        distill.FeatureMatching(normalize=True),
        distill.AttentionTransfer(p=3),
    ],
)
def test_losses_round_trip_through_json_config(loss):
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(loss)))
    restored = keras.saving.deserialize_keras_object(config)
    assert type(restored) is type(loss)
    assert restored.get_config() == loss.get_config()
    rng = np.random.default_rng(5)
    a, b = rng.random((2, 2, 3, 3, 4)).astype("float32")
    np.testing.assert_allclose(ops.convert_to_numpy(restored(a, b)), loss(a, b), rtol=1e-6)


@pytest.mark.parametrize("temperature", [0, -1.0, "4", None])
def test_soft_targets_rejects_bad_temperature(temperature):
    with pytest.raises(ValueError, match=r"Expected `temperature` > 0. Received: temperature="):
        distill.SoftTargets(temperature=temperature)


def test_soft_targets_trains_a_model_alone_as_a_keras_loss():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(64, 4)).astype("float32")
    teacher_logits = x @ rng.normal(size=(4, NUM_CLASSES)).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(NUM_CLASSES)])
    model.compile(keras.optimizers.Adam(0.1), loss=distill.SoftTargets(temperature=2.0))
    history = model.fit(x, teacher_logits, epochs=8, batch_size=64, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]


# -- DistillSchedule ---------------------------------------------------------------------------


def test_distill_schedule_follows_its_formula_with_frequency_steps():
    schedule = distill.DistillSchedule(0.2, 0.8, begin_step=10, end_step=50, power=2, frequency=5)
    for step in [0, 9, 10, 12, 15, 33, 50, 51, 400]:
        quantized = 10 + max(step - 10, 0) // 5 * 5
        progress = min(max((quantized - 10) / 40, 0.0), 1.0)
        expected = 0.8 + (0.2 - 0.8) * (1 - progress) ** 2
        assert float(schedule(step)) == pytest.approx(expected, abs=1e-6)


def test_distill_schedule_following_moves_with_the_pruning_sparsity():
    pruning = kp.PolynomialDecay(0.0, 0.9, begin_step=4, end_step=40, frequency=4)
    alpha = distill.DistillSchedule.following(pruning, initial=0.1, final=0.7)
    for step in range(0, 60, 4):  # update steps: sparsity is recomputed exactly there
        sparsity_fraction = float(pruning.sparsity_at(step)) / 0.9
        assert float(alpha(step)) == pytest.approx(0.1 + 0.6 * sparsity_fraction, abs=1e-5)
    jump = distill.DistillSchedule.following(kp.ConstantSparsity(0.5, begin_step=3), 0.0, 1.0)
    assert [float(jump(s)) for s in (0, 2, 3, 100)] == [0.0, 0.0, 1.0, 1.0]


def test_distill_schedule_round_trips_and_validates():
    schedule = distill.DistillSchedule(1.0, 4.0, begin_step=2, end_step=9, power=1.5, frequency=3)
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(schedule)))
    assert keras.saving.deserialize_keras_object(config).get_config() == schedule.get_config()
    with pytest.raises(ValueError, match="Received: end_step=1"):
        distill.DistillSchedule(0.0, 1.0, begin_step=2, end_step=1)
    with pytest.raises(ValueError, match="Received: frequency=0"):
        distill.DistillSchedule(0.0, 1.0, frequency=0)
    with pytest.raises(ValueError, match="begin_step"):
        distill.DistillSchedule.following(object(), 0.0, 1.0)


# -- Distiller: training semantics -------------------------------------------------------------


def test_teacher_weights_bit_identical_after_fit_and_logs_report_both_models():
    x, y = _data()
    teacher = _cnn(6, seed=1, batchnorm=True, dropout=0.5)
    student = _cnn(3, seed=2, batchnorm=True, dropout=0.2)
    before = [np.array(w) for w in teacher.get_weights()]  # BN moving stats included
    trainer = Distiller(student, teacher, alpha=0.6, hints=[("conv", "conv")])
    trainer.compile(optimizer="adam", metrics=["accuracy"])
    history = trainer.fit(x, y, epochs=2, batch_size=8, validation_split=0.25, verbose=0)

    assert teacher.trainable is False
    for old, new in zip(before, teacher.get_weights(), strict=True):
        assert old.tobytes() == np.asarray(new).tobytes()
    expected = {
        "loss",
        "accuracy",
        "teacher_accuracy",
        "student_loss",
        "distillation_loss",
        "hint_loss",
    }
    assert expected | {f"val_{k}" for k in expected} == set(history.history)
    teacher.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    teacher_accuracy = teacher.evaluate(x[24:], y[24:], verbose=0, return_dict=True)["accuracy"]
    assert history.history["val_teacher_accuracy"][-1] == pytest.approx(teacher_accuracy)
    np.testing.assert_allclose(
        trainer.predict(x, verbose=0), student.predict(x, verbose=0), rtol=1e-6
    )


def test_loss_mixes_hard_and_soft_terms_with_teacher_in_inference_mode():
    # Learning rate 0 keeps the weights fixed, so the logged parts can be recomputed outside.
    # A teacher run with training=True would drop half its units and change its outputs.
    x, y = _data()
    teacher = _cnn(6, seed=1, batchnorm=True, dropout=0.5)
    student = _cnn(3, seed=2)
    trainer = Distiller(
        student, teacher, distillation_loss=distill.SoftTargets(temperature=3.0), alpha=0.3
    )
    trainer.compile(optimizer=keras.optimizers.SGD(0.0))
    logs = trainer.fit(x, y, epochs=1, batch_size=32, verbose=0).history
    teacher_out, student_out = teacher.predict(x, verbose=0), student.predict(x, verbose=0)
    soft = _numpy_soft_targets(teacher_out, student_out, 3.0).mean()
    hard = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, student_out)
    # A KL term near 2.5e-4 is a difference of nearly equal logs: allow float32's rounding of it.
    assert logs["distillation_loss"][0] == pytest.approx(soft, rel=1e-4, abs=1e-6)
    assert logs["student_loss"][0] == pytest.approx(float(hard), rel=1e-4)
    assert logs["loss"][0] == pytest.approx(0.7 * float(hard) + 0.3 * soft, rel=1e-4, abs=1e-6)


def test_transfer_layer_feeds_the_distillation_term_only_in_training():
    # A deterministic "perturbation" (halving the inputs) makes the transfer set computable
    # outside: soft targets on transfer(x), hard labels on x; evaluation distills on x.
    x, y = _data()
    teacher = _cnn(6, seed=1, batchnorm=True, dropout=0.5)
    student = _cnn(3, seed=2)
    trainer = Distiller(
        student,
        teacher,
        distillation_loss=distill.SoftTargets(temperature=2.0),
        alpha=0.4,
        transfer=keras.layers.Rescaling(0.5),
    )
    trainer.compile(optimizer=keras.optimizers.SGD(0.0))
    logs = trainer.fit(x, y, epochs=1, batch_size=32, verbose=0).history
    half = x * 0.5
    soft = _numpy_soft_targets(
        teacher.predict(half, verbose=0), student.predict(half, verbose=0), 2.0
    ).mean()
    student_out = student.predict(x, verbose=0)
    hard = float(keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, student_out))
    # A KL term near 5e-4 is a difference of nearly equal logs: allow float32's rounding of it.
    assert logs["distillation_loss"][0] == pytest.approx(soft, rel=1e-4, abs=1e-6)
    assert logs["student_loss"][0] == pytest.approx(hard, rel=1e-4)
    assert logs["loss"][0] == pytest.approx(0.6 * hard + 0.4 * soft, rel=1e-4, abs=1e-6)
    clean = _numpy_soft_targets(teacher.predict(x, verbose=0), student_out, 2.0).mean()
    assert clean != pytest.approx(soft, rel=1e-3)
    evaluated = trainer.evaluate(x, y, verbose=0, return_dict=True)
    assert evaluated["distillation_loss"] == pytest.approx(clean, rel=1e-4)

    config = json.loads(json.dumps(keras.saving.serialize_keras_object(trainer)))
    restored = keras.saving.deserialize_keras_object(config)
    assert isinstance(restored.transfer, keras.layers.Rescaling)
    assert restored.transfer.get_config() == trainer.transfer.get_config()
    with pytest.raises(ValueError, match="Received: transfer=0.5"):
        Distiller(_cnn(3, seed=2), _cnn(6, seed=1), transfer=0.5)


def test_alpha_and_temperature_schedules_follow_the_step():
    x, y = _data(16)
    teacher, student = _cnn(4, seed=1), _cnn(3, seed=2)
    alpha = distill.DistillSchedule(0.0, 1.0, begin_step=0, end_step=3, power=1)
    temperature = distill.DistillSchedule(1.0, 4.0, begin_step=0, end_step=3, power=1)
    trainer = Distiller(student, teacher, alpha=alpha, temperature=temperature)
    trainer.compile(optimizer=keras.optimizers.SGD(0.0))
    logs = trainer.fit(x, y, epochs=5, batch_size=16, verbose=0).history  # one step per epoch
    teacher_out, student_out = teacher.predict(x, verbose=0), student.predict(x, verbose=0)
    hard = float(keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, student_out))
    for step in range(5):
        a, t = float(alpha(step)), float(temperature(step))
        soft = _numpy_soft_targets(teacher_out, student_out, t).mean()
        assert logs["distillation_loss"][step] == pytest.approx(soft, rel=1e-4)
        assert logs["loss"][step] == pytest.approx((1 - a) * hard + a * soft, rel=1e-4)
    assert int(ops.convert_to_numpy(trainer.step)) == 5


def test_precomputed_teacher_outputs_give_the_same_losses_as_running_the_teacher():
    x, y = _data()
    teacher, student = _cnn(6, seed=1, batchnorm=True), _cnn(3, seed=2)
    trainer = Distiller(student, teacher, alpha=0.5, hints=[("hidden", "hidden")])
    trainer.compile(optimizer="adam", metrics=["accuracy"])
    live = trainer.evaluate(x, y, verbose=0, return_dict=True)
    precomputed = trainer.precompute_teacher(x)
    assert sorted(precomputed) == ["inputs", "teacher_hint_0", "teacher_outputs"]
    cached = trainer.evaluate(precomputed, y, verbose=0, return_dict=True)
    for key in live:
        assert cached[key] == pytest.approx(live[key], rel=1e-5), key
    history = trainer.fit(precomputed, y, epochs=1, batch_size=8, verbose=0).history
    assert np.isfinite(history["loss"][0])
    with pytest.raises(ValueError, match="Missing: \\['teacher_hint_0'\\]"):
        trainer.evaluate(
            {"inputs": x, "teacher_outputs": precomputed["teacher_outputs"]}, y, verbose=0
        )


def test_pure_distillation_trains_without_labels():
    x, _ = _data()
    teacher, student = _cnn(6, seed=1), _cnn(3, seed=2)
    trainer = Distiller(student, teacher, alpha=1.0)
    trainer.compile(optimizer=keras.optimizers.Adam(0.01))
    history = trainer.fit(x, epochs=15, batch_size=32, verbose=0).history
    assert history["distillation_loss"][-1] < history["distillation_loss"][0]
    mixed = Distiller(_cnn(3, seed=3), _cnn(6, seed=1), alpha=0.5)
    mixed.compile(optimizer="adam")
    with pytest.raises(ValueError, match="alpha=0.5"):
        mixed.fit(x, epochs=1, verbose=0)


# -- hints and projections -----------------------------------------------------------------------


def test_narrower_student_hint_gets_a_trained_projection():
    x, y = _data()
    teacher, student = _cnn(6, seed=1), _cnn(2, seed=2)
    trainer = Distiller(student, teacher, hints=[("conv", "conv")], hint_weight=10.0)
    (projection,) = trainer.hint_projections
    assert isinstance(projection, keras.layers.Dense)
    assert projection.kernel.shape == (2, 6)
    assert any(w is projection.kernel for w in trainer.trainable_weights)
    before = np.array(projection.kernel)
    trainer.compile(optimizer="adam")
    trainer.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert not np.allclose(before, projection.kernel)


def test_attention_transfer_needs_no_projection_across_widths():
    x, y = _data()
    trainer = Distiller(
        _cnn(2, seed=2),
        _cnn(6, seed=1),
        hints=[("conv", "conv")],
        hint_loss=distill.AttentionTransfer(),
        hint_weight=1000.0,
    )
    assert isinstance(trainer.hint_projections[0], keras.layers.Identity)
    trainer.compile(optimizer="adam")
    assert np.isfinite(trainer.fit(x, y, epochs=1, verbose=0).history["hint_loss"][0])


def test_hint_lookup_answers_to_wrapper_and_inner_layer_names():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3, 4))
    wrapped = keras.layers.TimeDistributed(keras.layers.Dense(4, name="inner"), name="outer")
    features = wrapped(inputs)
    outputs = keras.layers.Dense(NUM_CLASSES)(keras.layers.Flatten()(features))
    student = keras.Model(inputs, outputs)
    teacher = keras.models.clone_model(student)
    for name in ("outer", "inner"):
        trainer = Distiller(student, teacher, hints=[(name, name)])
        assert trainer._extractors.student.outputs[1].shape == (None, 3, 4)


# -- bad input -----------------------------------------------------------------------------------


def test_incompatible_outputs_are_rejected():
    with pytest.raises(ValueError, match=r"teacher output shape \('batch', 7\).*\('batch', 5\)"):
        Distiller(_cnn(3, seed=2), _cnn(6, seed=1, classes=7))


def test_unknown_hint_name_lists_available_layers():
    with pytest.raises(ValueError, match=r"'nope'.*student.*Available layer names: \['conv'"):
        Distiller(_cnn(3, seed=2), _cnn(6, seed=1), hints=[("conv", "nope")])


@pytest.mark.parametrize("alpha", [-0.1, 1.5, "half"])
def test_alpha_outside_unit_interval_is_rejected(alpha):
    with pytest.raises(ValueError, match=rf"Expected `alpha` in \[0.0, 1.0\].*alpha={alpha!r}"):
        Distiller(_cnn(3, seed=2), _cnn(6, seed=1), alpha=alpha)


def test_bad_temperature_and_schedules_are_rejected():
    student, teacher = _cnn(3, seed=2), _cnn(6, seed=1)
    with pytest.raises(ValueError, match="temperature=0"):
        Distiller(student, teacher, temperature=0)
    with pytest.raises(ValueError, match="alpha schedule value"):
        Distiller(student, teacher, alpha=distill.DistillSchedule(0.5, 2.0))
    with pytest.raises(ValueError, match="SoftTargets"):
        Distiller(student, teacher, distillation_loss="kl_divergence", temperature=2.0)


def test_other_bad_arguments_are_rejected():
    student, teacher = _cnn(3, seed=2), _cnn(6, seed=1)
    with pytest.raises(ValueError, match="same model"):
        Distiller(student, student)
    with pytest.raises(ValueError, match="projection=False"):
        Distiller(_cnn(2, seed=2), teacher, hints=[("conv", "conv")], projection=False)
    with pytest.raises(ValueError, match="spatial resolution"):
        Distiller(student, teacher, hints=[("conv", "hidden")])
    with pytest.raises(ValueError, match="takes no `loss`"):
        Distiller(student, teacher).compile(optimizer="adam", loss="mse")
    with pytest.raises(ValueError, match="keras.Model"):
        Distiller(keras.layers.Dense(3), teacher)
    with pytest.raises(ValueError, match="pair"):
        Distiller(student, teacher, hints=["conv"])


# -- saving --------------------------------------------------------------------------------------


def test_distiller_json_config_round_trip():
    trainer = Distiller(
        _cnn(2, seed=2),
        _cnn(6, seed=1),
        alpha=distill.DistillSchedule(0.2, 0.9, 0, 10),
        temperature=3.0,
        hints=[("conv", "conv")],
        hint_loss=distill.FeatureMatching(True),
        hint_weight=0.5,
    )
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(trainer)))
    restored = keras.saving.deserialize_keras_object(config)
    assert isinstance(restored, Distiller)
    assert restored.hint_pairs == [("conv", "conv")]
    assert restored.alpha.get_config() == trainer.alpha.get_config()
    assert restored.get_config()["hint_loss"] == trainer.get_config()["hint_loss"]
    assert [w.shape for w in restored.weights] == [w.shape for w in trainer.weights]


def test_save_reload_resumes_pruning_distillation_like_uninterrupted_training(tmp_path):
    # Mid-schedule save: masks, pruning step, distillation step, optimizer and projection
    # must all come back for the resumed run to match the uninterrupted one.
    x, y = _data()

    def make():
        schedule = kp.PolynomialDecay(0.0, 0.75, begin_step=0, end_step=6, frequency=2)
        student = kp.prune(_cnn(2, seed=2), schedule=schedule)
        alpha = distill.DistillSchedule.following(schedule, 0.2, 0.8)
        trainer = Distiller(student, _cnn(6, seed=1), alpha=alpha, hints=[("conv", "conv")])
        trainer.compile(optimizer="adam", metrics=["accuracy"])
        return trainer

    def fit(trainer, epochs):
        trainer.fit(
            x,
            y,
            epochs=epochs,
            batch_size=8,
            shuffle=False,
            verbose=0,
            callbacks=[kp.PruningCallback()],
        )

    uninterrupted = make()
    fit(uninterrupted, 2)

    resumed = make()
    fit(resumed, 1)
    path = str(tmp_path / "distiller.keras")
    resumed.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(reloaded.predict(x, verbose=0), resumed.predict(x, verbose=0))
    assert int(ops.convert_to_numpy(reloaded.optimizer.iterations)) == 4
    fit(reloaded, 1)
    np.testing.assert_allclose(
        reloaded.predict(x, verbose=0), uninterrupted.predict(x, verbose=0), atol=1e-5
    )
    assert int(ops.convert_to_numpy(reloaded.step)) == 8
    for done, again in zip(
        kp.layers.find_wrappers(uninterrupted), kp.layers.find_wrappers(reloaded), strict=True
    ):
        for mask, mask_again in zip(done.masks, again.masks, strict=True):
            np.testing.assert_array_equal(mask, mask_again)

    plain = kp.strip(reloaded.student)  # the student alone, as plain Keras
    plain.save(str(tmp_path / "student.keras"))
    student = keras.saving.load_model(str(tmp_path / "student.keras"))
    np.testing.assert_allclose(
        student.predict(x, verbose=0), reloaded.predict(x, verbose=0), atol=1e-6
    )


# -- with keras_prune pruning --------------------------------------------------------------------


@pytest.mark.parametrize(
    "mask, granularity",
    [
        ("binary", "unstructured"),
        ("learnable", "unstructured"),
        ("sigmoid", "unstructured"),
        ("binary", "channel"),
        ("binary", "2:4"),
    ],
)
def test_pruned_student_trains_through_the_distiller_with_pruning_callback(mask, granularity):
    x, y = _data()
    teacher = _cnn(6, seed=1)
    schedule = kp.ConstantSparsity(0.75, begin_step=0, frequency=2)
    student = kp.prune(
        _cnn(6, seed=1),
        schedule=schedule,
        granularity=granularity,
        mask=mask,
        allocation="per_layer",
    )
    trainer = Distiller(student, teacher, alpha=0.7, hints=[("conv", "conv")])
    trainer.compile(optimizer="adam", metrics=["accuracy"])
    history = trainer.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[kp.PruningCallback()])
    wrappers = kp.layers.find_wrappers(trainer)
    assert wrappers and all(any(w is v for v in kp.layers.find_wrappers(student)) for w in wrappers)
    logged = history.history["sparsity"][-1]
    assert logged == pytest.approx(realised_sparsity(wrappers))
    # 2:4 keeps a whole short group, as tfmot pads: the first conv (one input channel) stays.
    assert logged > (0.2 if granularity == "2:4" else 0.3)
    plain = kp.strip(trainer.student)
    np.testing.assert_allclose(
        plain.predict(x, verbose=0), trainer.predict(x, verbose=0), atol=1e-5
    )
    assert not kp.layers.find_wrappers(trainer.teacher)
    if granularity == "unstructured":
        kernel = ops.convert_to_numpy(plain.get_layer("conv").kernel)
        assert float(np.mean(kernel == 0)) == pytest.approx(0.75, abs=0.05)


def test_pruned_teacher_is_rejected():
    teacher = kp.prune(_cnn(6, seed=1), schedule=kp.ConstantSparsity(0.5, 0))
    with pytest.raises(ValueError, match="strip"):
        Distiller(_cnn(3, seed=2), teacher)


def test_frozen_student_is_rejected():
    student = _cnn(3, seed=2)
    student.trainable = False
    with pytest.raises(ValueError, match="student.trainable = True"):
        Distiller(student, _cnn(6, seed=1))


def test_failed_construction_leaves_the_teacher_trainable():
    teacher = _cnn(6, seed=1)
    with pytest.raises(ValueError, match="Available layer names"):
        Distiller(_cnn(3, seed=2), teacher, hints=[("missing", "conv")])
    assert teacher.trainable


@pytest.mark.parametrize(
    "documented",
    [
        distill.SoftTargets,
        distill.FeatureMatching,
        distill.AttentionTransfer,
        distill.DistillSchedule,
        Distiller,
        find_layer,
    ],
)
def test_docstring_examples_run(documented):
    blocks = re.findall(r"```python\n(.*?)```", documented.__doc__, re.S)
    assert blocks
    for block in blocks:
        exec(textwrap.dedent(block), {})


def test_doctest_examples_of_pure_functions_pass():
    assert doctest.testmod(distill).failed == 0


def test_channel_pruned_and_shrunk_student_learns_hints_through_a_projection():
    from keras_prune.surgery.shrink import shrink

    x, y = _data()
    teacher = _cnn(6, seed=1)
    student = keras.models.clone_model(teacher)
    student.set_weights(teacher.get_weights())
    student = kp.prune(
        student,
        schedule=kp.ConstantSparsity(0.5, begin_step=0),
        granularity="channel",
        filters=["conv"],
    )
    kp.pruning.update_masks(student, 0)
    small = shrink(student)  # fewer conv filters: a narrower, plain Keras student
    assert small.get_layer("conv").filters == 3
    trainer = Distiller(small, teacher, hints=[("conv", "conv")])
    (projection,) = trainer.hint_projections
    assert projection.kernel.shape == (3, 6)
    trainer.compile(optimizer="adam", metrics=["accuracy"])
    history = trainer.fit(x, y, epochs=2, batch_size=8, verbose=0).history
    assert history["hint_loss"][-1] < history["hint_loss"][0]
