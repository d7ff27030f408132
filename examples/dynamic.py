"""Dynamic pruning end to end: one model, several widths; exits that stop early on easy inputs.

On sklearn's bundled digits (offline):

1. `kp.dynamic.SlimmableModel` trains one CNN at widths 25/50/75/100% (sandwich rule,
   in-place distillation); `kp.shrink(slim, width=0.5)` is the half-width plain Keras model;
   `kp.dynamic.export_widths` writes one verified `.tflite` file per width with its LiteRT
   latency, and `kp.dynamic.WidthPicker` picks the widest width within a latency budget.
2. `kp.dynamic.EarlyExitModel` adds an exit after the first block; `calibrate_threshold`
   chooses the confidence threshold that loses at most one point of accuracy on held-out data;
   `export_stages` writes one verified file per stage and `StagedRunner` runs them on LiteRT
   until an exit is confident.

Run: `python examples/dynamic.py [--epochs 8] [--out build/dynamic] [--quick]` (`--quick`: one
epoch, only the 50% and 100% widths exported, fewer timing runs).
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

import keras_prune as kp  # noqa: E402

layers = keras.layers


def cnn():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = layers.Conv2D(32, 3, padding="same", use_bias=False, name="conv1")(inputs)
    x = layers.ReLU(name="block1")(layers.BatchNormalization()(x))
    x = layers.Conv2D(64, 3, strides=2, padding="same", activation="relu", name="conv2")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(64, activation="relu", name="dense")(x)
    return keras.Model(inputs, layers.Dense(10, name="logits")(x), name="digits")


def compiled(model):
    model.compile(
        keras.optimizers.Adam(2e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--out", default="build/dynamic")
    parser.add_argument("--quick", action="store_true", help="a short run (tests, smoke checks)")
    args = parser.parse_args()
    epochs = 1 if args.quick else args.epochs
    exported = [0.5, 1.0] if args.quick else None  # None: every trained width
    latency_runs = 10 if args.quick else 50

    data = load_digits()
    x = (data.images / 16.0).astype("float32")[..., None]
    y = data.target.astype("int32")
    x_train, y_train = x[:1100], y[:1100]
    x_val, y_val = x[1100:1437], y[1100:1437]
    x_test, y_test = x[1437:], y[1437:]

    # 1. Runtime-adaptive width.
    slim = compiled(kp.dynamic.SlimmableModel(cnn(), widths=[0.25, 0.5, 0.75, 1.0]))
    slim.fit(x_train, y_train, epochs=epochs, batch_size=32, verbose=0)
    half = kp.shrink(slim, width=0.5)
    print(f"half width: {half.count_params():,} parameters of {slim.count_params():,}")
    manifest = kp.dynamic.export_widths(
        slim,
        os.path.join(args.out, "widths"),
        calibration_data=x_train,
        widths=exported,
        latency_runs=latency_runs,
    )
    for entry in manifest["widths"]:
        model = slim.at_width(entry["width"], calibration_data=x_train)
        accuracy = np.mean(np.argmax(model.predict(x_test, verbose=0), 1) == y_test)
        print(
            f"width {entry['width']:.0%}: test accuracy {accuracy:.3f}, {entry['params']:,} "
            f"parameters, LiteRT {entry['latency_us']['xnnpack']:.1f} us -> {entry['file']}"
        )
    picker = kp.dynamic.WidthPicker(manifest["manifest_path"])
    budget = 1.01 * picker.latencies_us[0.5]
    print(f"widest width within {budget:.1f} us: {picker.pick(budget):.0%}")

    # 2. Input-dependent early exit.
    exits = compiled(
        kp.dynamic.EarlyExitModel(cnn(), exits=["block1"], distillation=True, head="flatten")
    )
    exits.fit(x_train, y_train, epochs=epochs, batch_size=32, verbose=0)
    calibration = kp.dynamic.calibrate_threshold(
        exits.exit_predictions(x_val), y_val, max_accuracy_drop=0.01
    )
    print(
        f"threshold {calibration.threshold:.3f}: validation accuracy {calibration.accuracy:.3f} "
        f"(final head {calibration.full_accuracy:.3f}), answered by stage: "
        + " / ".join(f"{fraction:.0%}" for fraction in calibration.exit_fractions)
    )
    manifest = kp.dynamic.export_stages(
        exits,
        os.path.join(args.out, "exits"),
        calibration_data=x_train,
        threshold=calibration.threshold,
        latency_runs=latency_runs,
    )
    runner = kp.dynamic.StagedRunner(manifest["manifest_path"])
    probabilities, stages = runner.predict(x_test)
    accuracy = np.mean(np.argmax(probabilities, 1) == y_test)
    print(
        f"early exit on LiteRT: test accuracy {accuracy:.3f}, "
        f"{np.mean(stages == 0):.0%} of inputs answered by the first exit"
    )


if __name__ == "__main__":
    main()
