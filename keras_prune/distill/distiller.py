"""`Distiller`: train a (pruned) student with knowledge from a frozen teacher in `model.fit`.

Why one long module: it is one Keras `Model` subclass. Its train and test steps, hint
projections, teacher precomputation, metrics and config all read and write the same state,
and the functions above the class only check its arguments. The losses it combines are in
losses.py and the settings that move with the pruning schedule in schedule.py.
"""

import keras
from keras import ops

from keras_prune.distill import losses as distill
from keras_prune.distill.schedule import DistillSchedule
from keras_prune.graph import tracing
from keras_prune.layers.wrapper import find_wrappers

# Keys of the dict that `Distiller.precompute_teacher` returns and `fit` accepts as `x`.
INPUTS_KEY = "inputs"
TEACHER_OUTPUTS_KEY = "teacher_outputs"
TEACHER_HINT_KEY = "teacher_hint_{}"

_PROJECTION_CHOICES = ("auto", True, False)

# The defaults (issue 13, measured in docs/distillation.md): a low temperature and a weight
# that rises with the student's sparsity. At temperature 4 the T**2-scaled soft loss pulls a
# 99%-sparse student towards the teacher's whole logit vector, which it has no capacity left to
# match, and costs accuracy; at 1-2 it does not.
DEFAULT_TEMPERATURE = 2.0
DEFAULT_ALPHA_START = 0.1
DEFAULT_ALPHA = 0.5


def _check_model(name, model):
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"Expected `{name}` to be a keras.Model. Received: {name}={model!r} of type "
            f"{type(model).__name__}. Wrap layers in a keras.Sequential or functional Model."
        )
    if not model.built:
        raise ValueError(
            f"Expected `{name}` to be built. Received the unbuilt model '{model.name}'. Call "
            f"it on a batch of data or `{name}.build(input_shape)` first."
        )
    outputs = _functional_outputs(model)
    if outputs is not None and len(outputs) != 1:
        raise ValueError(
            f"Expected `{name}` to have a single output to distill. Received model "
            f"'{model.name}' with {len(outputs)} outputs. Build a model that returns the "
            "output to distill, e.g. keras.Model(model.inputs, model.outputs[0])."
        )


def _functional_outputs(model):
    """The symbolic outputs of a Functional / Sequential model, None for a subclassed one."""
    try:
        outputs = model.outputs
    except (AttributeError, ValueError):
        return None
    return list(outputs) if outputs else None


def ends_in_softmax(model):
    """Whether `model`'s output is a softmax (probabilities rather than logits).

    True when the call producing the output (nested models inlined) is a
    `keras.layers.Softmax`, `keras.ops.softmax`, or a layer with `activation="softmax"` (a
    `Dense`, an `Activation`, a pruning wrapper around one). A subclassed model cannot be
    inspected and counts as logits.

    Args:
        model: a built `keras.Model`.

    Returns:
        A bool.

    Example:

    ```python
    import keras
    import keras_prune as kp

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    print(kp.distill.ends_in_softmax(model))  # True
    ```
    """
    try:
        graph = tracing.trace(model)
    except tracing.NotTraceable:
        return False
    if len(graph.outputs) != 1 or graph.producer(graph.outputs[0]) is None:
        return False
    operation = graph.producer(graph.outputs[0]).operation
    if isinstance(operation, keras.layers.Wrapper):
        operation = operation.layer
    if isinstance(operation, keras.Model):  # subclassed, left opaque by the trace
        return False
    # A Softmax layer, `keras.ops.softmax` on symbolic tensors, or activation="softmax".
    if type(operation).__name__ == "Softmax":
        return True
    return getattr(getattr(operation, "activation", None), "__name__", None) == "softmax"


def _default_distillation_loss(student, teacher):
    """`SoftTargets` at the default temperature, on logits or probabilities as the models
    output them."""
    student_softmax, teacher_softmax = ends_in_softmax(student), ends_in_softmax(teacher)
    if student_softmax != teacher_softmax:
        kinds = {True: "probabilities (softmax)", False: "logits"}
        raise ValueError(
            "Expected the teacher and the student to output the same kind of values for the "
            f"default distillation loss. Received: a teacher that outputs "
            f"{kinds[teacher_softmax]} and a student that outputs {kinds[student_softmax]}. "
            "End both in the same layer, or pass distillation_loss= and student_loss= "
            "explicitly."
        )
    return distill.SoftTargets(temperature=DEFAULT_TEMPERATURE, from_logits=not student_softmax)


def _default_alpha(student):
    """`alpha="auto"`: from `DEFAULT_ALPHA_START` to `DEFAULT_ALPHA` in step with the student's
    pruning schedule, or `DEFAULT_ALPHA` for a student without one."""
    for wrapper in find_wrappers(student):
        schedule = getattr(wrapper, "schedule", None)
        if hasattr(schedule, "begin_step") and hasattr(schedule, "end_step"):
            return DistillSchedule.following(schedule, DEFAULT_ALPHA_START, DEFAULT_ALPHA)
    return DEFAULT_ALPHA


def _check_input_shapes(teacher, student):
    """Both models see the same batch: their inputs must have the same shapes."""
    teacher_shapes = [tuple(tensor.shape)[1:] for tensor in teacher.inputs]
    student_shapes = [tuple(tensor.shape)[1:] for tensor in student.inputs]
    if teacher_shapes != student_shapes:
        raise ValueError(
            "Expected `teacher` and `student` to take the same inputs (both are called on "
            f"each batch). Received: teacher inputs of shape {teacher_shapes}, student inputs "
            f"of shape {student_shapes}. Give the student the teacher's keras.Input shapes."
        )


def _check_output_shapes(teacher_shape, student_shape):
    teacher_shape, student_shape = tuple(teacher_shape)[1:], tuple(student_shape)[1:]
    if teacher_shape != student_shape:
        raise ValueError(
            "Expected the teacher's and the student's outputs to have the same shape (the "
            "same classes) to distill one into the other. Received teacher output shape "
            f"{('batch',) + teacher_shape} and student output shape "
            f"{('batch',) + student_shape}. Give the student the teacher's output layer "
            "(same number of units)."
        )


def _check_weight(name, value, low, high=None, also=""):
    """`value` is a number in [low, high] (or > low when high is None) or a schedule of them;
    `also` names further accepted values in the message."""
    if isinstance(value, DistillSchedule):
        for end in (value.initial, value.final):
            _check_weight(f"{name} schedule value", end, low, high)
        return value
    if high is None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > low:
            raise ValueError(
                f"Expected `{name}` > {low} or a keras_prune.DistillSchedule. "
                f"Received: {name}={value!r}"
            )
    elif (
        isinstance(value, bool) or not isinstance(value, (int, float)) or not (low <= value <= high)
    ):
        raise ValueError(
            f"Expected `{name}` in [{low}, {high}] or a keras_prune.DistillSchedule{also}. "
            f"Received: {name}={value!r}"
        )
    return float(value)


def _check_loss(name, loss):
    if isinstance(loss, str):
        loss = keras.losses.get(loss)
    if not callable(loss):
        raise ValueError(
            f"Expected `{name}` to be a keras.losses.Loss, a loss function or its name. "
            f"Received: {name}={loss!r}"
        )
    return loss


def _apply_loss(loss, y_true, y_pred, sample_weight):
    """A scalar loss: Loss objects reduce themselves; plain functions get a weighted mean."""
    if isinstance(loss, keras.losses.Loss):
        return loss(y_true, y_pred, sample_weight=sample_weight)
    values = ops.cast(loss(y_true, y_pred), "float32")
    if sample_weight is None:
        return ops.mean(values)
    weights = ops.cast(sample_weight, values.dtype)
    trailing = (1,) * (len(values.shape) - len(weights.shape))
    weights = ops.reshape(weights, ops.shape(weights) + trailing)
    return ops.sum(values * weights) / ops.cast(ops.size(values), values.dtype)


def _schedule_value(value, step):
    return value(step) if isinstance(value, DistillSchedule) else value


def _normalize_hints(hints):
    if hints is None:
        return []
    if isinstance(hints, (str, bytes)) or not isinstance(hints, (list, tuple)):
        raise ValueError(
            "Expected `hints` to be a list of (teacher_layer_name, student_layer_name) pairs. "
            f"Received: hints={hints!r}"
        )
    pairs = []
    for pair in hints:
        if (
            not isinstance(pair, (list, tuple))
            or len(pair) != 2
            or not all(isinstance(name, str) for name in pair)
        ):
            raise ValueError(
                "Expected each hint to be a (teacher_layer_name, student_layer_name) pair of "
                f"strings. Received: {pair!r} in hints={hints!r}"
            )
        pairs.append((pair[0], pair[1]))
    return pairs


def _layer_names(layer):
    """The names a hint may use for `layer`: its own and, for a wrapper, the inner layer's."""
    names = [layer.name]
    if isinstance(layer, keras.layers.Wrapper):
        names.append(layer.layer.name)
    return names


def find_layer(model, name, role):
    """The top-level layer of `model` called `name` (a wrapper also answers to its inner name).

    Args:
        model: a keras.Model.
        name: the layer name to look up.
        role: "teacher" or "student", for the error message.

    Returns:
        The layer.

    Example:

    ```python
    import keras
    from keras_prune.distill.distiller import find_layer

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="fc")])
    find_layer(model, "fc", "student")
    ```
    """
    for layer in model.layers:
        if name in _layer_names(layer):
            return layer
    available = [n for layer in model.layers for n in _layer_names(layer)]
    raise ValueError(
        f"Hint layer '{name}' does not exist in the {role} model '{model.name}'. Available "
        f"layer names: {available}"
    )


def _feature_extractor(model, layer_names, role):
    """`keras.Model(inputs, [output, *hint layer outputs])` sharing `model`'s layers."""
    outputs = _functional_outputs(model)
    if outputs is None:
        raise ValueError(
            f"Hints need the {role} to be a Functional or Sequential model (intermediate "
            f"layer outputs are read from its graph). Received the subclassed model "
            f"'{model.name}' of type {type(model).__name__}. Drop `hints` or rebuild the "
            f"{role} with the Functional API."
        )
    features = []
    for name in layer_names:
        layer = find_layer(model, name, role)
        try:
            features.append(layer.output)
        except (AttributeError, ValueError) as error:
            raise ValueError(
                f"Cannot read the output of {role} layer '{name}': {error} Choose a layer "
                "that is called once in the model."
            ) from error
    return keras.Model(model.inputs, [outputs[0], *features], name=f"{model.name}_features")


class _FeatureExtractors:
    """Holds the teacher and student feature sub-models.

    A plain object on purpose: Keras does not track what it holds, so these views on the
    student's and teacher's layers neither duplicate their variables nor show up in
    `Distiller.layers` (where the pruning callback looks for wrappers) or in saved files.
    """

    def __init__(self, teacher, student):
        self.teacher = teacher
        self.student = student


def _projection_layer(student_shape, teacher_shape, name):
    """A learned map of the student's channels (last axis) to the teacher's width.

    `Dense` acts on the last axis at every position, which for a conv feature map is exactly
    a 1x1 convolution.
    """
    layer = keras.layers.Dense(teacher_shape[-1], name=name)
    layer.build(student_shape)
    return layer


@keras.saving.register_keras_serializable(package="keras_prune")
class Distiller(keras.Model):
    """Trains `student` with `model.fit` on hard labels plus knowledge from a frozen `teacher`.

    The loss is
    `(1 - alpha) * student_loss(y, s) + alpha * distillation_loss(t, s)
    + hint_weight * sum(hint_loss(t_i, project_i(s_i)))`, where `s`, `t` are the student's
    and teacher's outputs and `s_i`, `t_i` the outputs of the `hints` layer pairs. The teacher
    is frozen (`teacher.trainable = False`) and always run with `training=False`, so its
    BatchNorm and Dropout layers stay in inference mode and its weights never change.

    `distiller(x)` (and so `predict` and the compiled metrics) is the student's output.
    `fit` / `evaluate` log the total `loss`, its parts `student_loss`, `distillation_loss`
    (and `hint_loss`), the compiled metrics of the student and the same metrics of the
    teacher prefixed with `teacher_` (e.g. `teacher_accuracy`).

    Pruning: wrap the student with `keras_prune.prune` before building the Distiller and pass
    `keras_prune.PruningCallback()` to `fit`; train with the Distiller only, the student alone
    is saved or stripped afterwards (`keras_prune.strip(distiller.student)`). The Distiller
    round-trips through `.keras` files (student, teacher, projections, optimizer, step) so
    training can resume.

    Args:
        student: the model to train, a built `keras.Model` (e.g. a pruned one).
        teacher: a built `keras.Model` with the same output shape; it is frozen.
        distillation_loss: loss between teacher outputs (`y_true`) and student outputs
            (`y_pred`). Defaults to `keras_prune.distill.SoftTargets(temperature=2.0)`, on
            probabilities (`from_logits=False`) when the student and teacher end in a softmax
            (see `ends_in_softmax`), on logits otherwise. A low temperature: at 4 the soft
            loss costs a 99%-sparse student accuracy (docs/distillation.md).
        alpha: weight of the distillation loss in [0, 1]; the hard-label loss gets
            `1 - alpha`. A float, a `keras_prune.DistillSchedule` (e.g. more
            distillation as sparsity rises), or `"auto"` (default): a schedule from 0.1 to
            0.5 that follows the student's pruning schedule
            (`DistillSchedule.following(schedule, 0.1, 0.5)`, read from its first pruning
            wrapper), or 0.5 for a student without one. With `alpha=1` labels are optional.
        temperature: `None` to use the distillation loss's own temperature, or a float > 0
            or `DistillSchedule` that overrides it at each step (needs `SoftTargets`).
        student_loss: hard-label loss. Defaults to sparse categorical cross-entropy with the
            `from_logits` of `distillation_loss`. (`compile()` takes no `loss`: the Distiller
            owns its losses.)
        hints: list of `(teacher_layer_name, student_layer_name)` pairs of top-level layers
            whose outputs are matched by `hint_loss`. Both models must then be Functional or
            Sequential. A pruning wrapper answers to its own name and to its inner layer's.
        hint_loss: loss between teacher (`y_true`) and student (`y_pred`) hint features.
            Defaults to `keras_prune.distill.losses.FeatureMatching()`.
        hint_weight: weight of the summed hint losses, a float > 0 or a `DistillSchedule`.
        projection: `"auto"` adds a learned projection (a 1x1 conv / `Dense` on the last
            axis, trained with the student, owned by the Distiller) where a student hint is
            narrower or wider than its teacher hint and `hint_loss` compares channels; `True`
            projects every hint; `False` never does (mismatched widths are then an error).
        transfer: `None`, or a Keras layer that perturbs a batch of inputs (e.g.
            `keras.layers.RandomTranslation`, `keras.layers.GaussianNoise`, or a
            `keras.Sequential` of such layers). In training, the distillation term is then
            computed on `transfer(x)`, labelled by the teacher, instead of on `x`: a transfer
            set beyond the labelled images, where soft targets carry what hard labels cannot.
            The hard-label loss and hints stay on the clean batch. Costs one more student and
            teacher pass per step.
        **kwargs: forwarded to `keras.Model` (e.g. `name`).

    Example:

    ```python
    import keras, numpy as np
    import keras_prune as kp

    x = np.random.rand(64, 8, 8, 1).astype("float32")
    y = np.random.randint(0, 10, 64)

    def cnn(width):
        return keras.Sequential([
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(width, 3, activation="relu", name="conv"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(10, name="logits"),
        ])

    teacher, student = cnn(16), cnn(4)
    trainer = kp.distill.Distiller(student, teacher,
                        distillation_loss=kp.distill.SoftTargets(temperature=4.0),
                        alpha=0.7, hints=[("conv", "conv")])
    trainer.compile(optimizer="adam", metrics=["accuracy"])
    history = trainer.fit(x, y, epochs=1, verbose=0)
    print(sorted(history.history))  # accuracy, distillation_loss, hint_loss, ...
    ```
    """

    def __init__(
        self,
        student,
        teacher,
        distillation_loss=None,
        alpha="auto",
        temperature=None,
        student_loss=None,
        hints=None,
        hint_loss=None,
        hint_weight=1.0,
        projection="auto",
        transfer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _check_model("student", student)
        _check_model("teacher", teacher)
        if student is teacher:
            raise ValueError(
                "Expected different `student` and `teacher` models. Received the same model "
                f"'{student.name}' for both: the teacher would be frozen and the student "
                "could not train. Pass a copy, e.g. keras.models.clone_model(teacher) with "
                "its weights set."
            )
        if not student.trainable_weights:
            raise ValueError(
                f"Expected a trainable student, but the student '{student.name}' has no "
                "trainable weights (a clone of an already frozen teacher keeps "
                "`trainable=False`). Set `student.trainable = True` first."
            )
        teacher_wrappers = find_wrappers(teacher)
        if teacher_wrappers:
            raise ValueError(
                f"Expected a plain teacher, but the teacher '{teacher.name}' holds "
                f"{len(teacher_wrappers)} PruneWrapper layer(s) (e.g. "
                f"'{teacher_wrappers[0].name}'), whose masks a PruningCallback would keep "
                "updating. Pass keras_prune.strip(teacher) instead."
            )
        student_outputs, teacher_outputs = (
            _functional_outputs(student),
            _functional_outputs(teacher),
        )
        if student_outputs is not None and teacher_outputs is not None:
            _check_input_shapes(teacher, student)
            _check_output_shapes(teacher_outputs[0].shape, student_outputs[0].shape)
        if projection not in _PROJECTION_CHOICES:
            raise ValueError(
                f"Expected `projection` to be one of {_PROJECTION_CHOICES}. Received: "
                f"projection={projection!r}"
            )

        distillation_loss = _check_loss(
            "distillation_loss",
            _default_distillation_loss(student, teacher)
            if distillation_loss is None
            else distillation_loss,
        )
        if temperature is not None and not isinstance(distillation_loss, distill.SoftTargets):
            raise ValueError(
                "`temperature` overrides the temperature of a keras_prune.distill.SoftTargets "
                f"distillation loss. Received: temperature={temperature!r} with "
                f"distillation_loss={distillation_loss!r}. Set the temperature on your loss "
                "instead, or use SoftTargets."
            )
        if student_loss is None:
            student_loss = keras.losses.SparseCategoricalCrossentropy(
                from_logits=getattr(distillation_loss, "from_logits", True)
            )

        self.student = student
        self.teacher = teacher
        self.distillation_loss = distillation_loss
        if isinstance(alpha, str) and alpha == "auto":
            alpha = _default_alpha(student)
        self.alpha = _check_weight("alpha", alpha, 0.0, 1.0, also=' or "auto"')
        self.temperature = (
            None if temperature is None else _check_weight("temperature", temperature, 0.0)
        )
        self.student_loss = _check_loss("student_loss", student_loss)
        self.hint_pairs = _normalize_hints(hints)
        self.hint_loss = _check_loss(
            "hint_loss", distill.FeatureMatching() if hint_loss is None else hint_loss
        )
        self.hint_weight = _check_weight("hint_weight", hint_weight, 0.0)
        self.projection = projection
        if transfer is not None and not isinstance(transfer, keras.layers.Layer):
            raise ValueError(
                "Expected `transfer` to be None or a keras.layers.Layer that perturbs a batch "
                "of inputs (e.g. keras.layers.RandomTranslation or keras.layers.GaussianNoise). "
                f"Received: transfer={transfer!r}"
            )
        self.transfer = transfer

        self._extractors = None
        projections = []
        if self.hint_pairs:
            self._extractors = _FeatureExtractors(
                teacher=_feature_extractor(teacher, [t for t, _ in self.hint_pairs], "teacher"),
                student=_feature_extractor(student, [s for _, s in self.hint_pairs], "student"),
            )
            teacher_shapes = [t.shape for t in self._extractors.teacher.outputs[1:]]
            student_shapes = [s.shape for s in self._extractors.student.outputs[1:]]
            for index, (pair, t_shape, s_shape) in enumerate(
                zip(self.hint_pairs, teacher_shapes, student_shapes, strict=True)
            ):
                projections.append(self._make_projection(index, pair, t_shape, s_shape))
        # Identity where no projection is needed keeps one layer per hint pair.
        self.hint_projections = projections
        # Frozen only once every argument is known to be valid: a failed construction leaves
        # the user's teacher untouched.
        teacher.trainable = False

        self.step = self.add_weight(
            shape=(), dtype="int32", initializer="zeros", trainable=False, name="step"
        )
        self.student_loss_tracker = keras.metrics.Mean(name="student_loss")
        self.distillation_loss_tracker = keras.metrics.Mean(name="distillation_loss")
        self.hint_loss_tracker = keras.metrics.Mean(name="hint_loss") if self.hint_pairs else None
        self.teacher_metrics = []
        # The teacher's outputs of the evaluation step, from `compute_loss` to `compute_metrics`
        # of the same step (see `compute_metrics`).
        self._evaluated_teacher = None
        self.built = True

    def _make_projection(self, index, pair, teacher_shape, student_shape):
        teacher_name, student_name = pair
        compares_channels = getattr(self.hint_loss, "compares_channels", True)
        if tuple(teacher_shape[1:-1]) != tuple(student_shape[1:-1]) or len(teacher_shape) != len(
            student_shape
        ):
            raise ValueError(
                f"Hint ('{teacher_name}', '{student_name}'): teacher features of shape "
                f"{tuple(teacher_shape)} and student features of shape {tuple(student_shape)} "
                "differ in more than the last (channel) axis, which a projection cannot fix. "
                "Pair layers at the same spatial resolution."
            )
        widths_differ = teacher_shape[-1] != student_shape[-1]
        if self.projection is True or (
            self.projection == "auto" and compares_channels and widths_differ
        ):
            return _projection_layer(student_shape, teacher_shape, f"hint_projection_{index}")
        if compares_channels and widths_differ:
            raise ValueError(
                f"Hint ('{teacher_name}', '{student_name}'): the teacher has "
                f"{teacher_shape[-1]} channels and the student {student_shape[-1]}, and "
                f"{type(self.hint_loss).__name__} compares channels one to one. Received "
                "projection=False. Use projection='auto' to learn a projection, or "
                "keras_prune.distill.AttentionTransfer."
            )
        layer = keras.layers.Identity(name=f"hint_projection_{index}")
        layer.build(student_shape)
        return layer

    def compile(self, optimizer="rmsprop", loss=None, metrics=None, **kwargs):
        """Configures training like `keras.Model.compile`, without `loss`.

        The hard-label and distillation losses are the Distiller's own (`student_loss`,
        `distillation_loss`); each entry of `metrics` is computed for the student and, with a
        `teacher_` prefix, for the teacher.
        """
        if loss is not None:
            raise ValueError(
                "Distiller.compile() takes no `loss`: the hard-label loss is the "
                "Distiller's `student_loss` argument and the distillation loss its "
                f"`distillation_loss`. Received: loss={loss!r}. Pass "
                "Distiller(..., student_loss=...) instead."
            )
        super().compile(optimizer=optimizer, metrics=metrics, **kwargs)
        # Clear, not reassign: the tracked list drops the previous compile's metrics.
        self.teacher_metrics.clear()
        self.teacher_metrics.extend(_teacher_metric(m) for m in _flat_metrics(metrics))

    def compile_from_config(self, config):
        """Re-compiles from `get_compile_config()` when a saved Distiller is loaded."""
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.optimizer is not None:
            # Optimizer variables must exist before the saved ones are loaded into them.
            self.optimizer.build(self.trainable_variables)

    def call(self, inputs, training=None):
        """The student's output; with `training=True`, all that the losses need (a dict)."""
        if training:
            return self._forward(inputs, training=True)
        student_inputs, _ = self._split_inputs(inputs)
        return self.student(student_inputs, training=training)

    def _split_inputs(self, inputs):
        """`(student inputs, precomputed teacher dict or None)`."""
        if isinstance(inputs, dict) and TEACHER_OUTPUTS_KEY in inputs:
            required = [INPUTS_KEY] + [
                TEACHER_HINT_KEY.format(i) for i in range(len(self.hint_pairs))
            ]
            missing = [key for key in required if key not in inputs]
            if missing:
                raise ValueError(
                    "Precomputed teacher inputs must hold the keys "
                    f"'{INPUTS_KEY}', '{TEACHER_OUTPUTS_KEY}' and one teacher hint per hint "
                    f"pair. Missing: {missing}. "
                    "Build them with Distiller.precompute_teacher(x)."
                )
            return inputs[INPUTS_KEY], inputs
        return inputs, None

    def _teacher_forward(self, inputs, precomputed):
        if precomputed is not None:
            outputs = precomputed[TEACHER_OUTPUTS_KEY]
            hints = [precomputed[TEACHER_HINT_KEY.format(i)] for i in range(len(self.hint_pairs))]
        elif self._extractors is not None:
            outputs, *hints = self._extractors.teacher(inputs, training=False)
        else:
            outputs, hints = self.teacher(inputs, training=False), []
        return ops.stop_gradient(outputs), [ops.stop_gradient(h) for h in hints]

    def _forward(self, inputs, training, student_outputs=None):
        """Student and teacher outputs and hint features for the losses and metrics.

        `student_outputs`, when given (evaluation), spares a second student pass if there are
        no hints.
        """
        student_inputs, precomputed = self._split_inputs(inputs)
        if self._extractors is not None:
            student_outputs, *student_hints = self._extractors.student(
                student_inputs, training=training
            )
        else:
            if student_outputs is None:
                student_outputs = self.student(student_inputs, training=training)
            student_hints = []
        teacher_outputs, teacher_hints = self._teacher_forward(student_inputs, precomputed)
        _check_output_shapes(teacher_outputs.shape, student_outputs.shape)
        student_hints = [
            projection(h)
            for projection, h in zip(self.hint_projections, student_hints, strict=True)
        ]
        outputs = {
            "student": student_outputs,
            "teacher": teacher_outputs,
            "student_hints": student_hints,
            "teacher_hints": teacher_hints,
        }
        if training and self.transfer is not None:
            # The transfer set: perturbed copies of the batch, labelled by the teacher, seen by
            # the distillation term only (the hard-label loss stays on the clean batch).
            transfer_inputs = self.transfer(student_inputs, training=True)
            outputs["student_transfer"] = self.student(transfer_inputs, training=True)
            outputs["teacher_transfer"] = ops.stop_gradient(
                self.teacher(transfer_inputs, training=False)
            )
        return outputs

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        outputs = (
            y_pred
            if isinstance(y_pred, dict)
            else self._forward(x, training=False, student_outputs=y_pred)
        )
        self._evaluated_teacher = None if isinstance(y_pred, dict) else outputs["teacher"]
        step = ops.convert_to_tensor(self.step)
        alpha = _schedule_value(self.alpha, step)
        student_outputs = ops.cast(outputs["student"], "float32")
        teacher_outputs = ops.cast(outputs["teacher"], "float32")
        batch_size = ops.shape(student_outputs)[0]
        # With a transfer layer, training distills on the perturbed batch; evaluation on the
        # clean one.
        soft_student = ops.cast(outputs.get("student_transfer", student_outputs), "float32")
        soft_teacher = ops.cast(outputs.get("teacher_transfer", teacher_outputs), "float32")

        if y is None:
            if not (isinstance(self.alpha, float) and self.alpha == 1.0):
                raise ValueError(
                    "Received no labels (`y` is None): only pure distillation (alpha=1.0) can "
                    f"train without them. Received: alpha={self.alpha!r}. Pass labels to fit "
                    "or build the Distiller with alpha=1.0."
                )
            hard_loss = ops.zeros(())
        else:
            hard_loss = _apply_loss(self.student_loss, y, student_outputs, sample_weight)

        if self.temperature is None:
            soft_loss = _apply_loss(
                self.distillation_loss, soft_teacher, soft_student, sample_weight
            )
        else:
            temperature = _schedule_value(self.temperature, step)
            soft_loss = _apply_loss(
                lambda t, s: distill.soft_target_loss(
                    t, s, temperature, self.distillation_loss.from_logits
                ),
                soft_teacher,
                soft_student,
                sample_weight,
            )
        total = (1.0 - alpha) * hard_loss + alpha * soft_loss
        self.student_loss_tracker.update_state(hard_loss, sample_weight=batch_size)
        self.distillation_loss_tracker.update_state(soft_loss, sample_weight=batch_size)

        if self.hint_pairs:
            hint_loss = ops.sum(
                ops.stack(
                    [
                        _apply_loss(
                            self.hint_loss,
                            ops.cast(t, "float32"),
                            ops.cast(s, "float32"),
                            sample_weight,
                        )
                        for t, s in zip(
                            outputs["teacher_hints"], outputs["student_hints"], strict=True
                        )
                    ]
                )
            )
            total = total + _schedule_value(self.hint_weight, step) * hint_loss
            self.hint_loss_tracker.update_state(hint_loss, sample_weight=batch_size)

        # Weight regularizers and `add_loss` terms of the trainable side only: the frozen
        # teacher's would be constants.
        extra_losses = list(self.student.losses)
        for projection in self.hint_projections:
            extra_losses.extend(projection.losses)
        for loss in extra_losses:
            total = total + ops.cast(ops.sum(loss), "float32")
        if training:
            # Last, after every read of `step`: TF may read a variable lazily, after an
            # earlier-placed increment.
            self.step.assign_add(1)
        return total

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if isinstance(y_pred, dict):
            student_outputs, teacher_outputs = y_pred["student"], y_pred["teacher"]
        else:
            student_outputs, teacher_outputs = y_pred, None
        if teacher_outputs is None:
            # Evaluation: `compute_loss` ran the teacher on this batch just before. Its outputs
            # are reused rather than the teacher called again here, where JAX's evaluation step
            # maps only the metrics' variables (the teacher's weights are not readable there).
            teacher_outputs, self._evaluated_teacher = self._evaluated_teacher, None
        if self.teacher_metrics and y is not None:
            if teacher_outputs is None:  # called on its own, without `compute_loss`
                student_inputs, precomputed = self._split_inputs(x)
                teacher_outputs, _ = self._teacher_forward(student_inputs, precomputed)
            for metric in self.teacher_metrics:
                metric.update_state(y, teacher_outputs, sample_weight=sample_weight)
        return super().compute_metrics(x, y, student_outputs, sample_weight=sample_weight)

    def precompute_teacher(self, x, batch_size=256):
        """Runs the teacher once over `x` (in memory) and returns inputs for `fit`.

        Training on the result skips the teacher's forward pass at every step; the
        precomputed values travel with their samples through shuffling.

        Args:
            x: the training inputs (arrays, as for `fit`).
            batch_size: batch size of the teacher's inference pass.

        Returns:
            A dict `{"inputs": x, "teacher_outputs": ..., "teacher_hint_0": ..., ...}` to
            pass as `x` to `fit` / `evaluate`.

        Example:

        ```python
        trainer = kp.distill.Distiller(pruned, model)
        trainer.compile(optimizer="adam")
        teacher_x = trainer.precompute_teacher(x)
        trainer.fit(teacher_x, y, epochs=1)
        ```
        """
        model = self._extractors.teacher if self._extractors is not None else self.teacher
        predictions = model.predict(x, batch_size=batch_size, verbose=0)
        if self._extractors is None:
            predictions = [predictions]
        precomputed = {INPUTS_KEY: x, TEACHER_OUTPUTS_KEY: predictions[0]}
        for index, hint in enumerate(predictions[1:]):
            precomputed[TEACHER_HINT_KEY.format(index)] = hint
        return precomputed

    def get_config(self):
        config = super().get_config()
        serialize = keras.saving.serialize_keras_object
        config.update(
            student=serialize(self.student),
            teacher=serialize(self.teacher),
            distillation_loss=serialize(self.distillation_loss),
            alpha=serialize(self.alpha),
            temperature=serialize(self.temperature),
            student_loss=serialize(self.student_loss),
            hints=[list(pair) for pair in self.hint_pairs],
            hint_loss=serialize(self.hint_loss),
            hint_weight=serialize(self.hint_weight),
            projection=self.projection,
            transfer=serialize(self.transfer),
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        deserialize = keras.saving.deserialize_keras_object
        for key in (
            "student",
            "teacher",
            "distillation_loss",
            "alpha",
            "temperature",
            "student_loss",
            "hint_loss",
            "hint_weight",
            "transfer",
        ):
            if key in config:
                config[key] = deserialize(config[key])
        return cls(**config)


def _flat_metrics(metrics):
    if metrics is None:
        return []
    if isinstance(metrics, dict):
        return [m for value in metrics.values() for m in _flat_metrics(value)]
    if isinstance(metrics, (list, tuple)):
        return [m for value in metrics for m in _flat_metrics(value)]
    return [metrics]


def _matching_accuracy(y_true, y_pred):
    """Binary, sparse or categorical accuracy, chosen from the shapes as `compile` does."""
    y_true_rank, y_pred_rank = len(y_true.shape), len(y_pred.shape)
    if y_pred.shape[-1] == 1:
        return keras.metrics.binary_accuracy(y_true, y_pred)
    if y_true_rank < y_pred_rank or y_true.shape[-1] == 1:
        return keras.metrics.sparse_categorical_accuracy(y_true, y_pred)
    return keras.metrics.categorical_accuracy(y_true, y_pred)


def _teacher_metric(identifier):
    """A fresh metric computing `identifier` for the teacher, named `teacher_<name>`."""
    if isinstance(identifier, str) and identifier.lower() in ("accuracy", "acc"):
        return keras.metrics.MeanMetricWrapper(_matching_accuracy, name=f"teacher_{identifier}")
    metric = keras.metrics.get(identifier)
    if isinstance(metric, keras.metrics.Metric):
        config = metric.get_config()
        config["name"] = f"teacher_{metric.name}"
        return type(metric).from_config(config)
    name = identifier if isinstance(identifier, str) else getattr(metric, "__name__", "metric")
    return keras.metrics.MeanMetricWrapper(metric, name=f"teacher_{name}")
