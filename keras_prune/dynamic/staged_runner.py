"""`StagedRunner`: run exported stages one after the other until an exit is confident."""

import numpy as np

from keras_prune.dynamic import manifest as manifest_lib
from keras_prune.dynamic import runtime
from keras_prune.dynamic import stages as stages_lib
from keras_prune.dynamic.threshold import check_threshold


def _softmax(logits):
    shifted = logits - np.max(logits, axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / np.sum(exp, axis=-1, keepdims=True)


class StagedRunner:
    """Early-exit inference on LiteRT: stage by stage, stopping at the first confident exit.

    Each stage is a separate interpreter (in this process: use it on files `export_stages`
    verified, see `kp.dynamic.runtime`); the features one stage returns are passed to the next
    as they are. An input leaves at the first exit whose top class probability reaches the
    threshold; the last stage answers the rest, so no input costs more than the full model plus
    the small exit heads it passed.

    Args:
        manifest: path of a `<stem>_stages.json` written by `kp.dynamic.export_stages`.
        threshold: confidence in [0, 1]; default: the one stored in the manifest.
        xnnpack: run with the XNNPACK delegate (True) or LiteRT's built-in kernels.
        num_threads: interpreter threads.

    Example:

    ```python
    # docs: slow (TFLite export, verified on LiteRT)
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(8, 3, activation="relu", name="block1")(inputs)
    h = keras.layers.Conv2D(16, 3, activation="relu", name="block2")(h)
    outputs = keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(h))
    early_exit = kp.dynamic.EarlyExitModel(keras.Model(inputs, outputs), exits=["block1"])
    early_exit.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    early_exit.fit(x, y, epochs=1, verbose=0)
    manifest = kp.dynamic.export_stages(early_exit, "build/exit", calibration_data=x)
    runner = kp.dynamic.StagedRunner(manifest["manifest_path"], threshold=0.9)
    probabilities, stage = runner.run(x[0])
    predictions, stages = runner.predict(x)
    ```
    """

    def __init__(self, manifest, *, threshold=None, xnnpack=True, num_threads=1):
        content = manifest_lib.read_manifest(manifest, manifest_lib.STAGES_KIND)
        if threshold is None:
            threshold = content.get("threshold")
            if threshold is None:
                raise ValueError(
                    "Expected `threshold`: the manifest stores none (export_stages was called "
                    "without one). Pass e.g. threshold=calibrate_threshold(...).threshold."
                )
        self.threshold = check_threshold(threshold)
        self.from_logits = bool(content["from_logits"])
        self.stages = [
            runtime.SignatureRunner(entry["path"], xnnpack=xnnpack, num_threads=num_threads)
            for entry in content["stages"]
        ]
        self.input_name = next(iter(self.stages[0].inputs))
        self._input_rank = len(self.stages[0].inputs[self.input_name].shape)

    def run(self, x):
        """`(probabilities, stage)` for one input (without a batch axis, or with one of 1):
        the answering exit's class probabilities and its index (the last stage is
        `len(self.stages) - 1`)."""
        values = np.asarray(x)[None] if np.ndim(x) == self._input_rank - 1 else x
        outputs = self.stages[0](**{self.input_name: values})
        last = len(self.stages) - 1
        for index in range(len(self.stages)):
            if index:
                outputs = self.stages[index](features=outputs[stages_lib.FEATURES])
            scores = outputs[stages_lib.LOGITS][0]
            probabilities = _softmax(scores) if self.from_logits else scores
            if index == last or float(np.max(probabilities)) >= self.threshold:
                return probabilities, index
        raise AssertionError("unreachable: the last stage always answers")

    def predict(self, x):
        """`(probabilities, stages)` for a batch: `(num_samples, classes)` and the index of the
        stage that answered each input."""
        results = [self.run(sample[None]) for sample in np.asarray(x)]
        return np.stack([r[0] for r in results]), np.array([r[1] for r in results])
