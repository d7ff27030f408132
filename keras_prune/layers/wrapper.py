"""`PruneWrapper`: a drop-in layer that masks the prunable weights of the layer it wraps."""

import inspect

import keras
from keras import ops

from keras_prune.core import criteria as criteria_lib
from keras_prune.core import granularity as granularity_lib
from keras_prune.core import mask_types
from keras_prune.core import schedules as schedules_lib
from keras_prune.layers import layouts


class _HoldMasked:
    """Variable constraint: the layer's own constraint, then zero what the mask removes.

    Keras optimizers apply `variable.constraint` after every update, so masked weights are exactly
    zero after each step whatever the optimizer's momentum holds. Not on JAX: there `fit` runs
    the optimizer on a copy of the state in which the masks are not readable, so the forward pass
    applies the masks instead (see `PruneWrapper.masks_in_forward_pass`).
    """

    def __init__(self, mask, original=None):
        self.mask = mask
        self.original = original

    def __call__(self, value):
        if self.original is not None:
            value = self.original(value)
        return value * ops.cast(self.mask, value.dtype)


def missing_callback_message(name):
    return (
        f"PruneWrapper {name!r} is being trained but nothing updates its masks. Pass "
        "`callbacks=[kp.PruningCallback()]` to `fit` (tfmot users: `UpdatePruningStep`), or, in a "
        "custom training loop, call `kp.update_masks(model, step)` before each step."
    )


@keras.saving.register_keras_serializable(package="keras_prune")
class PruneWrapper(keras.layers.Wrapper):
    """Wraps a layer and prunes its weights on a schedule; same outputs while the mask is all ones.

    The wrapper keeps the inner layer's name, so `model.get_layer("conv1")` still finds it.
    Biases are never pruned (except with channel granularity, where a pruned channel's bias goes
    with it). With a binary mask the inner layer's weights themselves are held at exactly zero
    where masked; with a learnable mask they keep their values and the forward pass uses
    `weight * mask`, which `kp.strip` bakes in.

    Args:
        layer: the `keras.layers.Layer` to prune: a built-in weight-bearing layer (Dense,
            EinsumDense, Conv*, Conv*Transpose, DepthwiseConv*, SeparableConv*, Embedding,
            MultiHeadAttention, SimpleRNN / GRU / LSTM / Bidirectional) or any layer with
            `get_prunable_weights()`.
        schedule: a `kp.PruningSchedule`; default `ConstantSparsity(0.5, begin_step=0,
            frequency=100)` as in tfmot.
        granularity: "unstructured", "channel", "2:4", or `kp.Block(...)`, `kp.NofM(...)`,
            `kp.Channel(...)`.
        mask: "binary", "learnable" or "sigmoid", or a `kp.BinaryMask()` /
            `kp.LearnableMask()` / `kp.SigmoidGateMask(...)`.
        criterion: how binary masks rank weights: a name from `kp.criteria.ALIASES`
            ("magnitude" default, "l2", "random", "gradient", "taylor", "fisher", "obd",
            "movement"), a `kp.criteria.Criterion`, or a function `(weight, statistics) ->
            scores`. Learnable masks rank by their trainable scores instead.
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
    model.fit(x, y, callbacks=[kp.PruningCallback()])
    ```
    """

    def __init__(
        self,
        layer,
        schedule=None,
        granularity="unstructured",
        mask="binary",
        criterion="magnitude",
        **kwargs,
    ):
        if isinstance(layer, PruneWrapper):
            raise ValueError(
                f"Layer {layer.name!r} is already a PruneWrapper; wrap the original layer once."
            )
        if isinstance(layer, keras.Model):
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
        kwargs.setdefault("name", layer.name)
        super().__init__(layer, **kwargs)
        if schedule is None:
            schedule = schedules_lib.ConstantSparsity(0.5, begin_step=0, frequency=100)
        self.schedule = schedules_lib.get(schedule)
        self.granularity = granularity_lib.get(granularity)
        self.mask_type = mask_types.get(mask)
        self.criterion = criteria_lib.get(criterion)
        self.supports_masking = layer.supports_masking
        parameters = inspect.signature(layer.call).parameters
        self._inner_takes_training = "training" in parameters
        # Set by kp.PruningCallback / kp.update_masks, so training without them is caught.
        self.mask_updates_attached = False
        # Binary masks on JAX: set while gradients are taken with the masked weights held at
        # zero, so that masked weights get their gradient (see kp.collect_gradients).
        self.forward_uses_stored_weights = False

    # -- state ---------------------------------------------------------------------------------

    def build(self, input_shape=None):
        if not self.layer.built:
            self.layer.build(input_shape)
        self.targets = layouts.prunable_weights(self.layer)
        if not self.targets:
            raise ValueError(
                f"Layer {self.layer.name!r} ({type(self.layer).__name__}) has no prunable weights. "
                "Leave it unwrapped, or give it a `get_prunable_weights()` method returning the "
                "variables to prune."
            )
        for target in self.targets:
            self.granularity.check(target)
        self.masks = [
            self.add_weight(
                name=f"{target.variable.name}_mask",
                shape=target.variable.shape,
                initializer="ones",
                trainable=False,
            )
            for target in self.targets
        ]
        self.bias_masks = []
        self._bias_mask_index = {}
        if self.granularity.masks_bias:
            for index, target in enumerate(self.targets):
                if target.bias is not None:
                    self._bias_mask_index[index] = len(self.bias_masks)
                    self.bias_masks.append(
                        self.add_weight(
                            name=f"{target.bias.name}_mask",
                            shape=target.bias.shape,
                            initializer="ones",
                            trainable=False,
                        )
                    )
        self.scores = []
        if self.mask_type.learnable:
            for target in self.targets:
                scores = self.add_weight(
                    name=f"{target.variable.name}_scores",
                    shape=target.variable.shape,
                    initializer="zeros",
                    trainable=True,
                )
                scores.assign(self.mask_type.initial_scores(target.variable))
                self.scores.append(scores)
        # Filled by kp.collect_gradients for gradient criteria; not saved (recollect after loading).
        self.gradient_statistics = [criteria_lib.GradientStatistics() for _ in self.targets]
        self.sparsity = self.add_weight(
            name="sparsity", shape=(), initializer="zeros", trainable=False
        )
        # The last step at which masks were recomputed (-1: never).
        self.pruning_step = self.add_weight(
            name="pruning_step",
            shape=(),
            dtype="int64",
            initializer=keras.initializers.Constant(-1),
            trainable=False,
        )
        if not self.masks_in_forward_pass:
            for index, target in enumerate(self.targets):
                target.variable.constraint = _HoldMasked(
                    self.masks[index], target.variable.constraint
                )
                if index in self._bias_mask_index:
                    bias_mask = self.bias_masks[self._bias_mask_index[index]]
                    target.bias.constraint = _HoldMasked(bias_mask, target.bias.constraint)
        self.built = True

    @property
    def masks_in_forward_pass(self):
        """Whether `call` multiplies the weights by their masks (learnable masks, and binary
        masks on JAX) rather than relying on the weights being held at zero."""
        if self.mask_type.learnable:
            return True
        return keras.backend.backend() == "jax" and not self.forward_uses_stored_weights

    def hold_masked_weights(self):
        """Zero the weights (and channel biases) that the binary masks remove.

        The variable constraints do this after every optimizer step. On JAX, where they cannot,
        `kp.PruningCallback` calls it before each mask update and at the end of every epoch, so
        masked weights never come back and saved checkpoints are sparse.
        """
        if self.mask_type.learnable or not self.built:
            return
        for index, target in enumerate(self.targets):
            target.variable.assign(target.variable * self.masks[index])
            if index in self._bias_mask_index:
                target.bias.assign(target.bias * self.bias_masks[self._bias_mask_index[index]])

    @property
    def prunable_weights(self):
        """The inner layer's variables this wrapper prunes."""
        return [target.variable for target in self.targets]

    # -- mask updates (eager, driven by the callback) -------------------------------------------

    def importance_scores(self, index):
        """Scores ranking the weights of target `index`: trainable scores or the criterion's."""
        if self.mask_type.learnable:
            return self.scores[index]
        return self.criterion(self.targets[index].variable, self.gradient_statistics[index])

    def compute_masks(self, sparsity):
        """`[(mask, bias_mask_or_None)]` for every target from current scores.

        `sparsity` is one value for all targets, or a list with one value per target.
        """
        if isinstance(sparsity, (list, tuple)):
            if len(sparsity) != len(self.targets):
                raise ValueError(
                    f"Expected one sparsity per pruned weight of {self.name!r} "
                    f"({len(self.targets)}). Received: {len(sparsity)} values"
                )
            sparsities = sparsity
        else:
            sparsities = [sparsity] * len(self.targets)
        return [
            self.granularity.compute_mask(self.importance_scores(index), target_sparsity, target)
            for index, (target, target_sparsity) in enumerate(
                zip(self.targets, sparsities, strict=True)
            )
        ]

    def apply_sparsity(self, sparsity):
        """Recompute every mask at `sparsity` now and zero what it removes."""
        sparsity = getattr(self.granularity, "sparsity", sparsity)
        self.assign_masks(self.compute_masks(sparsity), sparsity)

    def assign_masks(self, masks, sparsity):
        """Install `[(mask, bias_mask_or_None)]` (one per target) and zero what they remove.

        `sparsity` is recorded as the layer's scheduled sparsity. Allocations that rank across
        layers (`kp.allocation`) compute masks themselves and install them here.
        """
        self.sparsity.assign(sparsity)
        for index, (mask, bias_mask) in enumerate(masks):
            target = self.targets[index]
            self.masks[index].assign(mask)
            if not self.mask_type.learnable:
                target.variable.assign(target.variable * mask)
            if bias_mask is not None and index in self._bias_mask_index:
                self.bias_masks[self._bias_mask_index[index]].assign(bias_mask)
                if not self.mask_type.learnable:
                    target.bias.assign(target.bias * bias_mask)

    def update_mask(self, step):
        """Apply the schedule at optimizer step `step`; returns True if masks were recomputed."""
        self.mask_updates_attached = True
        if not self.schedule.should_update(step):
            return False
        self.pruning_step.assign(step)
        self.apply_sparsity(self.schedule.sparsity_at(step))
        return True

    def effective_weights(self):
        """`[(variable, value)]`: the weights as the forward pass sees them (masks applied)."""
        if self.mask_type.learnable:
            hard_masks = self.compute_masks(self.sparsity)
            masks = [
                self.mask_type.forward_mask(hard, scores)
                for (hard, _), scores in zip(hard_masks, self.scores, strict=True)
            ]
            bias_masks = {index: bias_mask for index, (_, bias_mask) in enumerate(hard_masks)}
        else:
            masks = self.masks
            bias_masks = {
                index: self.bias_masks[position]
                for index, position in self._bias_mask_index.items()
            }
        pairs = []
        for index, target in enumerate(self.targets):
            pairs.append((target.variable, target.variable * masks[index]))
            if index in self._bias_mask_index and bias_masks.get(index) is not None:
                pairs.append((target.bias, target.bias * bias_masks[index]))
        return pairs

    # -- forward ---------------------------------------------------------------------------------

    def call(self, inputs, *args, training=None, **kwargs):
        # No `mask` argument on purpose: Keras would record it in the graph and replay it on
        # the plain layer after `strip`. Inner layers read masks from their inputs themselves.
        if training and not self.mask_updates_attached:
            raise RuntimeError(missing_callback_message(self.name))
        if self._inner_takes_training:
            kwargs["training"] = training
        if not self.masks_in_forward_pass:
            return self.layer(inputs, *args, **kwargs)
        substituted = {id(variable): value for variable, value in self.effective_weights()}
        # The scope sees only its own mapping, so it also carries the inner layer's other
        # variables at their current values (inside JAX's `fit` they exist only there).
        variables = self.layer.variables
        mapping = [(v, substituted.get(id(v), v.value)) for v in variables]
        with keras.StatelessScope(state_mapping=mapping) as scope:
            before = [scope.get_current_value(variable) for variable in variables]
            outputs = self.layer(inputs, *args, **kwargs)
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
            }
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        for key in ("schedule", "granularity", "mask", "criterion"):
            if key in config:
                config[key] = keras.saving.deserialize_keras_object(
                    config[key], custom_objects=custom_objects
                )
        config["layer"] = keras.layers.deserialize(config["layer"], custom_objects=custom_objects)
        return cls(**config)
