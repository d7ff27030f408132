"""`PruneWrapper`: a drop-in layer that holds the masks of the layer it wraps.

The wrapper owns every piece of pruning state as a Keras variable (so it saves, reloads and
trains under stateless JAX): one uint8 mask per pruned weight (one byte per weight, exactly 0
or 1), bias masks at channel granularity, trainable scores for learnable masks, the scheduled
sparsity and the step of the last update.
It writes that state in one method, `install`, which the mask engine (`keras_prune.engine`)
calls; it never decides masks itself.
"""

import inspect

import keras
from keras import ops

from keras_prune.core import allocation as allocation_lib
from keras_prune.core import criteria as criteria_lib
from keras_prune.core import granularity as granularity_lib
from keras_prune.core import mask_types
from keras_prune.core import schedules as schedules_lib
from keras_prune.layers import call_specs, layouts
from keras_prune.layers.in_place import IN_PLACE_ATTRIBUTE
from keras_prune.layers.mask_storage import MASK_DTYPE, HoldMasked, stored_mask


def missing_callback_message(name):
    return (
        f"PruneWrapper {name!r} is being trained but nothing updates its masks. Pass "
        "`callbacks=[kp.PruningCallback()]` to `fit` (tfmot users: `UpdatePruningStep`), or, in a "
        "custom training loop, call `kp.pruning.update_masks(model, step)` before each step."
    )


@keras.saving.register_keras_serializable(package="keras_prune")
class PruneWrapper(keras.layers.Wrapper):
    """Wraps a layer and masks its prunable weights; same outputs while the masks are all ones.

    The wrapper keeps the inner layer's name, so `model.get_layer("conv1")` still finds it, and
    forwards every call argument, so layers called with several inputs or keywords
    (`MultiHeadAttention(query=..., value=...)`) wrap as they are. Biases are never pruned
    (except with channel granularity, where a pruned channel's bias goes with it). A layer that
    keras_prune does not know but that is built from layers it does (a keras-hub transformer
    block, `TimeDistributed(Dense)`) is pruned through those sublayers.

    With a binary mask the inner weights themselves are held at exactly zero where masked; with
    a learnable mask they keep their values and the forward pass uses `weight * mask`, which
    `kp.strip` bakes in. The masks change only when the mask engine installs new ones: drive it
    with `kp.PruningCallback` in `fit`, or `kp.pruning.update_masks(model, step)` in your own loop.

    Args:
        layer: the `keras.layers.Layer` to prune: a built-in weight-bearing layer (Dense,
            EinsumDense, Conv*, Conv*Transpose, DepthwiseConv*, SeparableConv*, Embedding,
            MultiHeadAttention, recurrent layers), a layer with `get_prunable_weights()`, or a
            layer built from such layers.
        schedule: a `kp.PruningSchedule`; default `ConstantSparsity(0.5, begin_step=0,
            frequency=100)` as in tfmot.
        granularity: "unstructured", "channel", "2:4", or `kp.granularity.Block(...)`,
            `kp.granularity.NofM(...)`, `kp.granularity.Channel(...)`; a
            `kp.granularity.ByLayer` (or "mobile") gives the granularity for `layer`'s kind.
        mask: "binary", "learnable" or "sigmoid", or a `kp.mask_types.BinaryMask()` /
            `kp.mask_types.LearnableMask()` / `kp.mask_types.SigmoidGateMask(...)`.
        criterion: how binary masks rank weights: a name from `kp.criteria.ALIASES`
            ("magnitude" default, "l2", "random", "gradient", "taylor", "fisher", "obd",
            "movement"), a `kp.criteria.Criterion`, or a function `(weight, statistics) ->
            scores`. Learnable masks rank by their trainable scores instead.
        allocation: how this wrapper's scheduled sparsity is shared with the other wrappers that
            declare the same allocation: None (this tensor alone at the scheduled sparsity, as
            in tfmot) or a `kp.allocation.Allocation` / name, e.g. "global" (one ranking across
            every wrapper declaring it). `kp.prune` declares it for the whole model.
        **kwargs: base layer arguments (`name`, ...).

    Example:

    ```python
    model = keras.Sequential([
        keras.Input((16,)),
        kp.PruneWrapper(keras.layers.Dense(32, activation="relu"),
                        schedule=kp.ConstantSparsity(0.75, begin_step=0, frequency=10)),
        keras.layers.Dense(1),
    ])
    model.compile("adam", "mse")
    features = np.random.rand(64, 16).astype("float32")
    targets = np.random.rand(64, 1).astype("float32")
    model.fit(features, targets, callbacks=[kp.PruningCallback()])
    ```
    """

    def __init__(
        self,
        layer,
        schedule=None,
        granularity="unstructured",
        mask="binary",
        criterion="magnitude",
        allocation=None,
        **kwargs,
    ):
        if isinstance(layer, PruneWrapper):
            raise ValueError(
                f"Layer {layer.name!r} is already a PruneWrapper; wrap the original layer once."
            )
        if isinstance(layer, (keras.Sequential, keras.Model)) and _has_graph(layer):
            raise ValueError(
                f"PruneWrapper wraps single layers; {layer.name!r} is a model. Use "
                "`kp.prune(model, ...)`, which wraps the prunable layers inside it."
            )
        if not isinstance(layer, keras.layers.Layer):
            raise TypeError(
                "Expected `layer` to be a keras.layers.Layer instance, e.g. "
                f"PruneWrapper(keras.layers.Dense(8)). Received: layer={layer!r} "
                f"(of type {type(layer).__name__})"
            )
        layouts.check_wrappable(layer)
        kwargs.setdefault("name", layer.name)
        declared = _declared_input_shape(layer)
        if declared is not None and "input_shape" not in kwargs:
            # A Sequential starts from its first layer's `input_shape=`: keep it when wrapping.
            kwargs["input_shape"] = declared
        # Keras reads `call`'s signature once, in the base constructor, to bind call arguments.
        # Giving it the inner layer's signature makes the wrapper take exactly what the layer
        # takes: several inputs, keywords, a mix of tensors and flags (`use_causal_mask=True`).
        self.call = _mirrored_call(self, layer)
        super().__init__(layer, **kwargs)
        if schedule is None:
            schedule = schedules_lib.ConstantSparsity(0.5, begin_step=0, frequency=100)
        self.schedule = schedules_lib.get(schedule)
        self.granularity = _granularity_for(layer, granularity)
        self.mask_type = mask_types.get(mask)
        self.criterion = criteria_lib.get(criterion)
        self.allocation = None if allocation is None else allocation_lib.get(allocation)
        if self.mask_type.learnable and not _per_layer(self.allocation):
            raise ValueError(
                f"Layer {layer.name!r}: a learnable mask chooses its top-k per layer in the "
                f"forward pass, so it cannot share a ranking. Received: allocation="
                f"{allocation!r} with mask={mask!r}. Use allocation=None (per layer) with "
                "learnable masks, or mask='binary'."
            )
        self.supports_masking = layer.supports_masking
        self._call_spec = None
        # Set by the mask engine when something drives the masks (kp.PruningCallback,
        # kp.pruning.update_masks), so training without it is caught.
        self.driven = False
        # Binary masks on JAX: set while gradients are taken with the masked weights held at
        # zero, so that masked weights get their gradient (see keras_prune.engine.gradients).
        self.forward_uses_stored_weights = False
        # Set by kp.strip on wrappers it cannot remove (inside a subclassed model): the masks
        # are baked into the weights and the wrapper just calls its layer.
        self.pass_through = False

    # -- building ------------------------------------------------------------------------------

    def __call__(self, *args, **kwargs):
        # Build from the real call, whatever its signature: the inner layer sees exactly the
        # arguments it will get (several inputs, keywords), not one guessed input shape.
        if not self.built:
            self.build_from_config({"call": call_specs.call_spec(args, kwargs)})
        return super().__call__(*args, **kwargs)

    def build(self, input_shape=None):
        self.build_from_config(
            {"call": {"args": [{"__tensor__": {"shape": list(input_shape), "dtype": "float32"}}]}}
            if input_shape is not None and not self.layer.built
            else {}
        )

    def get_build_config(self):
        return {"call": self._call_spec} if self._call_spec is not None else {}

    def build_from_config(self, config):
        spec = config.get("call")
        if spec is not None:
            # Call the layer on its recorded inputs even if Keras marked it built: a layer with
            # no `build()` of its own builds its sublayers only when called.
            self.layer(
                *call_specs.symbolic(spec["args"]), **call_specs.symbolic(spec.get("kwargs", {}))
            )
        elif not self.layer.built:
            if "input_shape" not in config:
                raise ValueError(
                    f"PruneWrapper {self.name!r} cannot build {self.layer.name!r}: call it on "
                    "inputs, or build the layer before wrapping it."
                )
            self.layer.build(config["input_shape"])
        self._call_spec = spec
        self._create_state()
        self.built = True

    def _create_state(self):
        if isinstance(self.granularity, granularity_lib.Channel) and layouts.channelwise_weights(
            self.layer
        ):
            self.targets = layouts.channelwise_weights(self.layer)
        else:
            self.targets = layouts.prunable_weights(self.layer)
        if not self.targets:
            unknown = [
                v.path
                for v, why in layouts.weight_plan(self.layer).left_alone
                if why == layouts.UNKNOWN
            ]
            if unknown:
                raise ValueError(
                    f"Layer {self.layer.name!r} ({type(self.layer).__name__}) holds weights "
                    f"keras_prune does not know how to prune ({', '.join(unknown)}). Give it a "
                    "`get_prunable_weights()` method returning the variables to prune, or leave "
                    "it unwrapped."
                )
        # Weights the granularity cannot apply to (N:M on a depthwise kernel, a block larger than
        # the weight) are left alone with the reason, as tfmot leaves them.
        self.left_alone = []
        applicable = []
        for target in self.targets:
            try:
                self.granularity.check(target)
                applicable.append(target)
            except granularity_lib.NotApplicable as error:
                self.left_alone.append((target.variable, str(error)))
        self.targets = applicable
        self.masks = [
            self.add_weight(
                name=f"{_local_name(target.variable)}_mask",
                shape=target.variable.shape,
                dtype=MASK_DTYPE,
                initializer="ones",
                trainable=False,
            )
            for target in self.targets
        ]
        # bias_masks[i] masks targets[i].bias (None where there is no bias mask).
        self.bias_masks = [
            self.add_weight(
                name=f"{_local_name(target.bias)}_mask",
                shape=target.bias.shape,
                dtype=MASK_DTYPE,
                initializer="ones",
                trainable=False,
            )
            if self.granularity.masks_bias and target.bias is not None
            else None
            for target in self.targets
        ]
        self.scores = []
        if self.mask_type.learnable:
            for target in self.targets:
                # autocast=False: under a mixed precision policy the top-k must rank the
                # float32 scores, as strip does; rounded to bfloat16 many scores tie and the
                # forward pass would keep other weights than the stripped model.
                scores = self.add_weight(
                    name=f"{_local_name(target.variable)}_scores",
                    shape=target.variable.shape,
                    initializer="zeros",
                    trainable=True,
                    autocast=False,
                )
                scores.assign(self.mask_type.initial_scores(target.variable))
                self.scores.append(scores)
        # Filled by keras_prune.engine.gradients for gradient criteria; not saved.
        self.gradient_statistics = [criteria_lib.GradientStatistics() for _ in self.targets]
        self.sparsity = self.add_weight(
            name="sparsity", shape=(), initializer="zeros", trainable=False
        )
        # The last step at which masks were installed (-1: never).
        self.pruning_step = self.add_weight(
            name="pruning_step",
            shape=(),
            dtype="int64",
            initializer=keras.initializers.Constant(-1),
            trainable=False,
        )
        if not self.masks_in_forward_pass:
            for target, mask, bias_mask in zip(
                self.targets, self.masks, self.bias_masks, strict=True
            ):
                target.variable.constraint = HoldMasked(mask, target.variable.constraint)
                if bias_mask is not None:
                    target.bias.constraint = HoldMasked(bias_mask, target.bias.constraint)

    # -- state ---------------------------------------------------------------------------------

    @property
    def masks_in_forward_pass(self):
        """Whether `call` multiplies the weights by their masks (learnable masks, and binary
        masks on JAX) rather than relying on the weights being held at zero."""
        if self.pass_through:
            return False
        if self.mask_type.learnable:
            return True
        return keras.backend.backend() == "jax" and not self.forward_uses_stored_weights

    @property
    def prunable_weights(self):
        """The inner layer's variables this wrapper prunes."""
        return [target.variable for target in self.targets]

    def install(self, masks, sparsity, step=None):
        """Install new masks: the one place the wrapper's pruning state is written.

        Args:
            masks: `[(mask, bias_mask_or_None)]`, one pair per target.
            sparsity: the sparsity these masks realise the schedule at (recorded).
            step: the optimizer step of the update (recorded as `pruning_step`), or None to
                leave it.

        Binary masks also zero the weights they remove, now.
        """
        if len(masks) != len(self.targets):
            raise ValueError(
                f"Expected one mask per pruned weight of {self.name!r} ({len(self.targets)}). "
                f"Received: {len(masks)}"
            )
        self.sparsity.assign(sparsity)
        if step is not None:
            self.pruning_step.assign(step)
        for target, slot, bias_slot, (mask, bias_mask) in zip(
            self.targets, self.masks, self.bias_masks, masks, strict=True
        ):
            mask = stored_mask(mask)
            slot.assign(mask)
            if not self.mask_type.learnable:
                target.variable.assign(target.variable * ops.cast(mask, target.variable.dtype))
            if bias_mask is not None and bias_slot is not None:
                bias_mask = stored_mask(bias_mask)
                bias_slot.assign(bias_mask)
                if not self.mask_type.learnable:
                    target.bias.assign(target.bias * ops.cast(bias_mask, target.bias.dtype))
            self._forget_removed_means(target, mask)

    def _forget_removed_means(self, target, mask):
        """A BatchNormalization without gamma (`scale=False`, as in InceptionV3) outputs
        `beta - moving_mean / sqrt(moving_variance + epsilon)` for a removed channel, not zero:
        its running mean is set to zero there too. Batch statistics of a removed channel are
        zero, so training keeps it at zero, and the channel is exactly zero as shrink needs."""
        layer = self.layer
        if (
            self.mask_type.learnable
            or not isinstance(layer, keras.layers.BatchNormalization)
            or layer.gamma is not None
            or target.variable is not layer.beta
        ):
            return
        mean = layer.moving_mean
        mean.assign(mean * ops.cast(mask, mean.dtype))

    def hold_masked_weights(self):
        """Zero the weights (and channel biases) that the binary masks remove.

        The variable constraints do this after every optimizer step. On JAX, where they cannot,
        the callbacks call it before each mask update and at the end of every epoch, so masked
        weights never come back and saved checkpoints are sparse.
        """
        if self.mask_type.learnable or not self.built:
            return
        for target, mask, bias_mask in zip(self.targets, self.masks, self.bias_masks, strict=True):
            target.variable.assign(target.variable * ops.cast(mask, target.variable.dtype))
            if bias_mask is not None:
                target.bias.assign(target.bias * ops.cast(bias_mask, target.bias.dtype))

    def importance_scores(self, index):
        """Scores ranking the weights of target `index`: trainable scores or the criterion's."""
        if self.mask_type.learnable:
            return self.scores[index]
        return self.criterion(self.targets[index].variable, self.gradient_statistics[index])

    def rescore(self, index, after=None):
        """The criterion's scores of target `index` computed again (`LayerScores.rescore`);
        `after` only orders a traced computation, which the mask engine does."""
        del after
        return self.importance_scores(index)

    def layer_scores(self):
        """What an allocation sees of this layer: its granularity, weight layouts and scores."""
        return allocation_lib.LayerScores(
            self.name,
            self.granularity,
            list(self.targets),
            [self.importance_scores(index) for index in range(len(self.targets))],
            nonnegative=not self.mask_type.learnable and self.criterion.nonnegative,
            rescore=self.rescore
            if not self.mask_type.learnable and self.criterion.deterministic
            else None,
        )

    def effective_weights(self):
        """`[(variable, value)]`: the weights as the forward pass sees them (masks applied)."""
        if self.mask_type.learnable:
            if self.mask_type.reselect == "step":
                # The top-k of the current scores at the recorded sparsity, every step.
                hard = [
                    self.granularity.compute_mask(scores, self._learnable_sparsity(), target)
                    for scores, target in zip(self.scores, self.targets, strict=True)
                ]
            else:
                # The top-k the mask engine stored at the schedule's last update.
                hard = list(zip(self.masks, self.bias_masks, strict=True))
            kernels = [
                self.mask_type.masked_weight(target.variable, kernel_mask, scores)
                for target, (kernel_mask, _), scores in zip(
                    self.targets, hard, self.scores, strict=True
                )
            ]
            bias_masks = [bias_mask for _, bias_mask in hard]
        else:
            kernels = [
                target.variable * ops.cast(mask, target.variable.dtype)
                for target, mask in zip(self.targets, self.masks, strict=True)
            ]
            bias_masks = self.bias_masks
        pairs = []
        for target, kernel, bias_mask in zip(self.targets, kernels, bias_masks, strict=True):
            pairs.append((target.variable, kernel))
            if bias_mask is not None and target.bias is not None:
                pairs.append((target.bias, target.bias * ops.cast(bias_mask, target.bias.dtype)))
        return pairs

    def _learnable_sparsity(self):
        return getattr(self.granularity, "sparsity", self.sparsity)

    # -- forward ---------------------------------------------------------------------------------

    def call(self, *args, **kwargs):
        return self.masked_call(*args, **kwargs)

    def masked_call(self, *args, training=None, **kwargs):
        """Run the inner layer on the call's arguments with the masks in effect."""
        if training and not self.driven and not self.pass_through:
            raise RuntimeError(missing_callback_message(self.name))
        if training is not None:
            kwargs["training"] = training
        if not self.masks_in_forward_pass:
            return self.layer(*args, **kwargs)
        substituted = {id(variable): value for variable, value in self.effective_weights()}
        # The scope sees only its own mapping, so it also carries the inner layer's other
        # variables at their current values (inside JAX's `fit` they exist only there).
        variables = self.layer.variables
        mapping = [(v, substituted.get(id(v), v.value)) for v in variables]
        with keras.StatelessScope(state_mapping=mapping) as scope:
            before = [scope.get_current_value(variable) for variable in variables]
            outputs = self.layer(*args, **kwargs)
        # State the inner layer changed inside the scope (seed generators, statistics) is
        # recorded there instead of applied; apply it now.
        for variable, old_value in zip(variables, before, strict=True):
            value = scope.get_current_value(variable)
            if id(variable) not in substituted and value is not old_value:
                variable.assign(value)
        return outputs

    def compute_output_shape(self, *args, **kwargs):
        return self.layer.compute_output_shape(*args, **kwargs)

    def compute_output_spec(self, *args, training=None, **kwargs):
        return self.layer.compute_output_spec(*args, **kwargs)

    def compute_mask(self, inputs, mask=None):
        return self.layer.compute_mask(inputs, mask)

    # -- serialization ---------------------------------------------------------------------------

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "schedule": keras.saving.serialize_keras_object(self.schedule),
                "granularity": keras.saving.serialize_keras_object(self.granularity),
                "mask": keras.saving.serialize_keras_object(self.mask_type),
                "criterion": keras.saving.serialize_keras_object(self.criterion),
                "allocation": None
                if self.allocation is None
                else keras.saving.serialize_keras_object(self.allocation),
            }
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        for key in ("schedule", "granularity", "mask", "criterion", "allocation"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(
                    config[key], custom_objects=custom_objects
                )
        config["layer"] = keras.layers.deserialize(config["layer"], custom_objects=custom_objects)
        return cls(**config)


def _per_layer(allocation):
    return allocation is None or isinstance(allocation, allocation_lib.PerLayerAllocation)


def _declared_input_shape(layer):
    """The shape a user declared with `input_shape=` on an unbuilt layer, or None.

    Keras keeps it privately and only a Sequential reads it, so ask one: a Sequential made of
    just this layer builds from it.
    """
    if layer.built or isinstance(layer, keras.Model):
        return None
    try:
        probe = keras.Sequential([layer])
    except (TypeError, ValueError):
        return None
    return tuple(probe.inputs[0].shape[1:]) if probe.built else None


def _has_graph(model):
    """Whether `model` is Sequential or Functional (its layers can be wrapped one by one)."""
    if isinstance(model, keras.Sequential):
        return True
    try:
        return bool(model.inputs) and all(isinstance(t, keras.KerasTensor) for t in model.inputs)
    except (AttributeError, ValueError):
        return False


def _mirrored_call(wrapper, layer):
    """A `call` for `wrapper` with the signature of `layer.call` (plus `training`)."""
    signature = inspect.signature(layer.call)
    parameters = list(signature.parameters.values())
    if "training" not in signature.parameters:
        training = inspect.Parameter("training", inspect.Parameter.KEYWORD_ONLY, default=None)
        last = parameters[-1] if parameters else None
        if last is not None and last.kind is inspect.Parameter.VAR_KEYWORD:
            parameters.insert(len(parameters) - 1, training)
        else:
            parameters.append(training)

    def call(*args, **kwargs):
        return wrapper.masked_call(*args, **kwargs)

    call.__signature__ = signature.replace(parameters=parameters)
    return call


def _local_name(variable):
    """A variable name unique inside a wrapper (paths of nested weights differ, names may not)."""
    return variable.path.replace("/", "_")


def _granularity_for(layer, granularity):
    chosen = granularity_lib.get(granularity)
    if isinstance(chosen, granularity_lib.ByLayer):
        chosen = chosen.for_layer(layer)
        if chosen is None:
            raise ValueError(
                f"Layer {layer.name!r} is a {granularity_lib.ByLayer.kind(layer)} layer, which "
                f"granularity={granularity!r} leaves unpruned. Leave it unwrapped, or give that "
                "kind a granularity."
            )
    return chosen


def find_wrappers(model):
    """Every `PruneWrapper` inside `model` (nested models and subclassed containers included),
    in a stable order.

    Example:

    ```python
    [wrapper.name for wrapper in kp.layers.find_wrappers(pruned)]
    ```
    """
    found, seen = [], set()

    def visit(layer):
        if id(layer) in seen:
            return
        seen.add(id(layer))
        if isinstance(layer, PruneWrapper):
            found.append(layer)
            return
        children = (
            list(getattr(layer, "layers", None) or []) if isinstance(layer, keras.Model) else []
        )
        in_place = getattr(layer, IN_PLACE_ATTRIBUTE, None)
        if in_place is not None:
            children += in_place.wrappers
        for child in children + layouts.sublayers(layer):
            visit(child)

    visit(model)
    return found
