"""Answer schedule and mask questions with tensorflow-model-optimization itself.

Run by `tests/test_tfmot_parity.py` as a subprocess, because tfmot 0.8.1 only works with
`tf_keras` (`TF_USE_LEGACY_KERAS=1`), which cannot share a process with Keras 3 tests.

Reads one JSON request on stdin and writes one JSON response on stdout:

```
request  = {"schedules": [{"kind": "ConstantSparsity" | "PolynomialDecay",
                           "config": {...tfmot constructor kwargs...},
                           "steps": [int, ...]}, ...],
            "masks": [{"layer": "dense" | "conv2d",
                       "kernel": nested list (the Keras kernel layout),
                       "sparsity": float,             # ConstantSparsity target
                       "m_by_n": [2, 4] | null}, ...]}
response = {"versions": {...},
            "schedules": [[[should_prune, sparsity], ...], ...],
            "masks": [nested list of 0/1, ...]}
```

Masks come from tfmot's own training path: every case becomes one `prune_low_magnitude` layer of
a single multi-input tf_keras model, trained for one step (SGD with learning rate 0, so the kernels
stay as given) with tfmot's `UpdatePruningStep` callback; the mask variables are then read.

Example:

```
echo '{"schedules": [], "masks": []}' | TF_USE_LEGACY_KERAS=1 python tests/tfmot_oracle.py
```
"""

import json
import os
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_model_optimization as tfmot  # noqa: E402
import tf_keras  # noqa: E402

sparsity = tfmot.sparsity.keras


def schedule_answers(request):
    schedule = getattr(sparsity, request["kind"])(**request["config"])
    answers = []
    for step in request["steps"]:
        should_prune, value = schedule(tf.constant(step, tf.int64))
        answers.append([bool(should_prune.numpy()), float(value.numpy())])
    return answers


def pruned_branch(case, index):
    kernel = np.asarray(case["kernel"], dtype="float32")
    if case["layer"] == "dense":
        inputs = tf_keras.Input((kernel.shape[0],), name=f"input_{index}")
        layer = tf_keras.layers.Dense(kernel.shape[1], name=f"layer_{index}")
    elif case["layer"] == "conv2d":
        height, width, channels_in, channels_out = kernel.shape
        inputs = tf_keras.Input((height + 2, width + 2, channels_in), name=f"input_{index}")
        layer = tf_keras.layers.Conv2D(
            channels_out, (height, width), padding="same", name=f"layer_{index}"
        )
    else:
        raise ValueError(f"Unknown layer {case['layer']!r}; expected 'dense' or 'conv2d'.")
    schedule = sparsity.ConstantSparsity(case["sparsity"], begin_step=0, frequency=1)
    m_by_n = tuple(case["m_by_n"]) if case.get("m_by_n") else None
    wrapper = sparsity.prune_low_magnitude(layer, pruning_schedule=schedule, sparsity_m_by_n=m_by_n)
    outputs = tf_keras.layers.Flatten()(wrapper(inputs))
    return inputs, outputs, wrapper, kernel


def mask_answers(cases):
    if not cases:
        return []
    branches = [pruned_branch(case, index) for index, case in enumerate(cases)]
    inputs = [branch[0] for branch in branches]
    outputs = [branch[1] for branch in branches]
    merged = outputs[0] if len(outputs) == 1 else tf_keras.layers.Concatenate()(outputs)
    model = tf_keras.Model(inputs, merged)
    for _, _, wrapper, kernel in branches:
        wrapper.layer.kernel.assign(kernel)
    model.compile(optimizer=tf_keras.optimizers.SGD(learning_rate=0.0), loss="mse")
    rng = np.random.default_rng(0)
    features = [rng.standard_normal((1, *each.shape[1:])).astype("float32") for each in inputs]
    targets = np.zeros((1, merged.shape[-1]), "float32")
    model.fit(
        features,
        targets,
        epochs=1,
        batch_size=1,
        verbose=0,
        callbacks=[sparsity.UpdatePruningStep()],
    )
    answers = []
    for _, _, wrapper, kernel in branches:
        steps = int(wrapper.pruning_step.numpy())
        if steps != 1:
            raise RuntimeError(f"Expected exactly one pruning step, got {steps}.")
        ((weight, mask, _),) = wrapper.pruning_vars
        if not np.array_equal(weight.numpy(), kernel * mask.numpy()):
            raise RuntimeError("tfmot did not apply its mask to the kernel as expected.")
        answers.append(mask.numpy().astype(int).tolist())
    return answers


def main():
    request = json.load(sys.stdin)
    response = {
        "versions": {"tfmot": tfmot.__version__, "tf_keras": tf_keras.__version__},
        "schedules": [schedule_answers(each) for each in request.get("schedules", [])],
        "masks": mask_answers(request.get("masks", [])),
    }
    json.dump(response, sys.stdout)


if __name__ == "__main__":
    main()
