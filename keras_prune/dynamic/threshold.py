"""Choose the early-exit confidence threshold for a target accuracy on held-out data.

An input leaves at the first exit whose top class probability reaches the threshold; the final
head answers the rest. A lower threshold exits earlier (cheaper) and loses more accuracy. Given
every exit's probabilities on held-out data, `calibrate_threshold` returns the lowest threshold
whose accuracy stays within `max_accuracy_drop` of the final head's, with the fraction of
inputs leaving at each exit and, when stage costs are known, the expected cost per input.
"""

import dataclasses

import numpy as np

from keras_prune.core import validation

# Thresholds tried at most: every distinct confidence up to this many, else their quantiles.
_MAX_CANDIDATES = 2000


@dataclasses.dataclass
class ThresholdCalibration:
    """The chosen threshold and what it does on the calibration data.

    Attributes:
        threshold: confidence in [0, 1] at which an exit answers.
        accuracy: accuracy of early exit at that threshold.
        full_accuracy: accuracy of the final head alone.
        exit_fractions: fraction of inputs answered by each exit (final head last).
        expected_cost: mean cost per input (sum of the costs of the stages run), in the units
            of `stage_costs`; the fraction of the stages' total if no costs were given.
    """

    threshold: float
    accuracy: float
    full_accuracy: float
    exit_fractions: list
    expected_cost: float

    def to_dict(self):
        return dataclasses.asdict(self)


def check_threshold(threshold, name="threshold"):
    """A confidence threshold in [0, 1], as a float."""
    return validation.check_real(
        name,
        threshold,
        low=0.0,
        high=1.0,
        hint="The threshold is the top class probability an exit needs to answer.",
    )


def exit_indices(probabilities, threshold):
    """Index of the stage answering each input: the first exit whose top probability reaches
    `threshold`, else the final head (a pure function).

    Args:
        probabilities: list of `(num_samples, classes)` arrays, final head last.
        threshold: confidence in [0, 1].
    """
    threshold = check_threshold(threshold)
    confidences = np.stack(
        [np.max(p, axis=-1) for p in probabilities[:-1]] + [np.full(len(probabilities[-1]), np.inf)]
    )
    return np.argmax(confidences >= threshold, axis=0)


def simulate(probabilities, labels, threshold, stage_costs=None):
    """`(accuracy, exit_fractions, expected_cost)` of early exit at `threshold`."""
    labels = np.asarray(labels).reshape(-1)
    chosen = exit_indices(probabilities, threshold)
    predictions = np.stack([np.argmax(p, axis=-1) for p in probabilities])
    answered = predictions[chosen, np.arange(len(labels))]
    stages = len(probabilities)
    costs = np.ones(stages) / stages if stage_costs is None else np.asarray(stage_costs, float)
    fractions = np.bincount(chosen, minlength=stages) / len(labels)
    expected = float(np.sum(np.cumsum(costs)[chosen]) / len(labels))
    return float(np.mean(answered == labels)), fractions.tolist(), expected


def calibrate_threshold(probabilities, labels, *, max_accuracy_drop=0.01, stage_costs=None):
    """The lowest threshold whose early-exit accuracy is within `max_accuracy_drop` of the
    final head's on held-out data.

    Args:
        probabilities: every exit's class probabilities on held-out inputs, final head last
            (e.g. `EarlyExitModel.exit_predictions(x_val)`).
        labels: the true classes of those inputs.
        max_accuracy_drop: accuracy (a fraction, 0.005 for half a point) that may be lost.
        stage_costs: optional cost of each stage (e.g. measured latencies), for
            `expected_cost`.

    Returns:
        A `ThresholdCalibration`.

    Example:

    ```python
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(8, 3, activation="relu", name="block1")(inputs)
    h = keras.layers.Conv2D(16, 3, activation="relu", name="block2")(h)
    outputs = keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(h))
    early_exit = kp.dynamic.EarlyExitModel(keras.Model(inputs, outputs), exits=["block1"])
    early_exit.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    early_exit.fit(x, y, epochs=1, verbose=0)
    probs = early_exit.exit_predictions(x)   # held-out data in practice
    calibration = kp.dynamic.calibrate_threshold(probs, y, max_accuracy_drop=0.005)
    calibration.threshold, calibration.exit_fractions
    ```
    """
    if not isinstance(probabilities, (list, tuple)) or len(probabilities) < 2:
        raise ValueError(
            "Expected `probabilities` as a list of arrays, one per exit and the final head "
            f"last (at least 2). Received: {type(probabilities).__name__}"
        )
    probabilities = [np.asarray(p, dtype=np.float64) for p in probabilities]
    labels = np.asarray(labels).reshape(-1)
    if any(len(p) != len(labels) for p in probabilities):
        raise ValueError(
            f"Expected one row of probabilities per label ({len(labels)}). Received: "
            f"{[len(p) for p in probabilities]} rows."
        )
    drop = validation.check_real("max_accuracy_drop", max_accuracy_drop, low=0.0, high=1.0)
    if stage_costs is not None and len(stage_costs) != len(probabilities):
        raise ValueError(
            f"Expected one cost per stage ({len(probabilities)}). Received: "
            f"stage_costs={list(stage_costs)!r}"
        )
    full = float(np.mean(np.argmax(probabilities[-1], axis=-1) == labels))
    candidates = np.unique(np.concatenate([np.max(p, axis=-1) for p in probabilities[:-1]]))
    if len(candidates) > _MAX_CANDIDATES:
        candidates = np.quantile(candidates, np.linspace(0.0, 1.0, _MAX_CANDIDATES))
    candidates = np.unique(np.clip(np.concatenate([[0.0], candidates, [1.0]]), 0.0, 1.0))
    for threshold in candidates:  # ascending: the first that qualifies exits the most
        accuracy, fractions, cost = simulate(probabilities, labels, threshold, stage_costs)
        if accuracy >= full - drop - 1e-12:
            return ThresholdCalibration(float(threshold), accuracy, full, fractions, cost)
    accuracy, fractions, cost = simulate(probabilities, labels, 1.0, stage_costs)
    return ThresholdCalibration(1.0, accuracy, full, fractions, cost)
