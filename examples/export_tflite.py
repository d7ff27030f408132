"""Prune a digits classifier and export it for a phone and for a microcontroller.

    python examples/export_tflite.py [--out build/]

Trains a small Dense-heavy CNN on sklearn's bundled 8x8 digits (offline), prunes its Dense
layers to 90% in 1x16 blocks (the block shape TFLite's int8 sparse kernel keeps; float keeps
it too), then writes three verified files: `mobile/` (float32, sparse), `mobile-int8/`
(int8, sparse) and `mcu/` (int8, dense, plus `model_data.cc/.h` and `model_data_ops.h`).
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

import keras_prune as kp  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description="Prune and export a digits CNN.")
    parser.add_argument("--out", default="build", help="output directory (default: build)")
    args = parser.parse_args()

    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]
    y = digits.target
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.3, random_state=0, stratify=y
    )

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ],
        name="digits",
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=15, batch_size=32, verbose=0)
    print(f"Keras test accuracy, dense: {100 * model.evaluate(x_test, y_test, verbose=0)[1]:.2f}%")

    steps = -(-len(x_train) // 32)
    pruned = kp.prune(
        model,
        schedule=kp.PolynomialDecay(
            0.0, 0.9, begin_step=0, end_step=8 * steps, frequency=steps // 2
        ),
        granularity=kp.granularity.Block((1, 16)),
        filters="dense",  # the convs stay dense: they hold 1% of the weights
    )
    pruned.compile(
        keras.optimizers.Adam(5e-4), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    pruned.fit(
        x_train, y_train, epochs=10, batch_size=32, verbose=0, callbacks=[kp.PruningCallback()]
    )
    kp.summary(pruned)
    accuracy = pruned.evaluate(x_test, y_test, verbose=0)[1]
    print(f"Keras test accuracy, pruned 90%: {100 * accuracy:.2f}%\n")

    labels = [str(digit) for digit in range(10)]
    for target in ("mobile", "mobile-int8", "mcu"):
        # The wrapped model is passed as is: to_tflite strips the wrappers itself.
        result = kp.export.to_tflite(
            pruned,
            os.path.join(args.out, target, "digits.tflite"),
            target=target,
            calibration_data=x_train[:300],
            verification_data=x_test[:100],
            labels=labels,
            normalization=(0.0, 1.0),
            description="8x8 digits, pruned 90%",
        )
        print(result, end="\n\n")
        runtime = "tflm" if target == "mcu" else "litert"
        outputs = kp.export.predict(
            result.path, x_test, runtime=runtime, arena_bytes=result.arena_bytes
        )
        interpreter_accuracy = np.mean(np.argmax(outputs, axis=1) == y_test)
        print(f"{target}: test accuracy through {runtime}: {100 * interpreter_accuracy:.2f}%\n")


if __name__ == "__main__":
    main()
