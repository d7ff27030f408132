"""Split an `EarlyExitModel` into stages that run one after the other.

Stage `i` takes the features the previous stage passed on (the model input for the first) and
returns `{"features": <output of exit layer i>, "logits": <exit head i>}`; the last stage
returns `{"logits": <final head>}`. Running the stages in order and stopping at the first
confident exit computes exactly what the full model computes up to that exit, and nothing
after it.
"""

import keras

FEATURES = "features"
LOGITS = "logits"


class StageSplitError(ValueError):
    """A tensor other than the exit layer's output crosses a stage boundary."""


def stage_models(model):
    """The stages of `model` (a `kp.dynamic.EarlyExitModel`) as Keras models.

    Returns:
        A list of `len(model.exit_names) + 1` Functional models: stage `i < n` maps its input
        to `{"features", "logits"}`, the last maps it to `{"logits"}`. Stage inputs after the
        first are named "features".

    Raises:
        StageSplitError: a residual connection (or any other tensor) crosses an exit, so the
            stage after it would need more than the exit layer's output; the message names
            the exit. Put exits at block outputs.

    Example:

    ```python
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(8, 3, activation="relu", name="block1")(inputs)
    h = keras.layers.Conv2D(16, 3, activation="relu", name="block2")(h)
    outputs = keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(h))
    early_exit = kp.dynamic.EarlyExitModel(keras.Model(inputs, outputs), exits=["block1"])
    early_exit.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    early_exit.fit(x, y, epochs=1, verbose=0)
    stages = kp.dynamic.stage_models(early_exit)
    out = stages[0](x)   # {"features": ..., "logits": ...}
    ```
    """
    backbone = model.backbone
    outputs = model.network.outputs
    boundaries = [backbone.get_layer(name).output for name in model.exit_names]
    previous = model.network.inputs[0]
    stages = []
    for index in range(len(boundaries) + 1):
        last = index == len(boundaries)
        targets = (
            {LOGITS: outputs[-1]}
            if last
            else {
                FEATURES: boundaries[index],
                LOGITS: outputs[index],
            }
        )
        try:
            inner = keras.Model(previous, targets, name=f"stage{index}_graph")
        except ValueError as error:
            where = model.exit_names[index - 1]
            raise StageSplitError(
                f"Stage {index} of {backbone.name!r} needs more than the output of exit layer "
                f"{where!r}: another tensor (a residual connection?) crosses it. Put exits at "
                f"block outputs, where a single tensor is passed on. ({error})"
            ) from error
        name = "input" if index == 0 else FEATURES
        fresh = keras.Input(batch_shape=tuple(previous.shape), dtype=previous.dtype, name=name)
        stages.append(keras.Model(fresh, inner(fresh), name=f"stage{index}"))
        if not last:
            previous = boundaries[index]
    return stages
