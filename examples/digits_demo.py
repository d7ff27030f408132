"""Demo: prune a small CNN on sklearn's bundled digits to 90% sparsity with a schedule.

Trains a dense baseline, prunes it with a polynomial-decay schedule while fine-tuning, prints
keras_prune's summary table and the test accuracy before and after, and saves the stripped
(plain Keras) model. Runs offline in about a minute on a laptop CPU.

    python examples/digits_demo.py [--sparsity 0.9] [--epochs 12] [--out artifacts]
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

import keras_prune as kp  # noqa: E402


def load_data():
    digits = load_digits()
    images = (digits.images / 16.0).astype("float32")[..., None]
    labels = digits.target.astype("int32")
    order = np.random.default_rng(0).permutation(len(images))
    images, labels = images[order], labels[order]
    split = int(0.8 * len(images))
    return (images[:split], labels[:split]), (images[split:], labels[split:])


def build_cnn():
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv1"),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv2"),
            keras.layers.MaxPooling2D(name="pool"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(128, activation="relu", name="dense"),
            keras.layers.Dense(10, name="logits"),
        ],
        name="digits_cnn",
    )


def compile_model(model, learning_rate):
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--epochs", type=int, default=12, help="pruning epochs")
    parser.add_argument("--out", default="artifacts", help="where the stripped model is saved")
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = load_data()
    batch_size = 32

    dense = compile_model(build_cnn(), 1e-3)
    print("Training the dense baseline...")
    dense.fit(x_train, y_train, batch_size=batch_size, epochs=15, verbose=0)
    _, dense_accuracy = dense.evaluate(x_test, y_test, verbose=0)

    steps_per_epoch = int(np.ceil(len(x_train) / batch_size))
    end_step = steps_per_epoch * max(args.epochs - 4, 1)
    schedule = kp.PolynomialDecay(
        initial_sparsity=0.0,
        final_sparsity=args.sparsity,
        begin_step=0,
        end_step=end_step,
        frequency=steps_per_epoch // 2,
    )
    # The small first conv and the classifier stay dense: they hold few weights but matter most.
    pruned = kp.prune(dense, schedule=schedule, filters=["conv2", "^dense$"])
    print(pruned.pruning_report)
    compile_model(pruned, 5e-4)
    print(f"Pruning to {args.sparsity:.0%} over {end_step} steps while fine-tuning...")
    pruned.fit(
        x_train,
        y_train,
        batch_size=batch_size,
        epochs=args.epochs,
        verbose=2,
        callbacks=[kp.PruningCallback()],
    )
    _, pruned_accuracy = pruned.evaluate(x_test, y_test, verbose=0)

    plain = kp.strip(pruned)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "digits_pruned.keras")
    plain.save(path)

    print()
    kp.summary(plain)
    print()
    print(f"{'model':<22}{'test accuracy':>14}")
    print(f"{'dense':<22}{dense_accuracy:>14.4f}")
    print(f"{f'pruned ({args.sparsity:.0%})':<22}{pruned_accuracy:>14.4f}")
    print(f"Stripped model (plain Keras, no keras_prune needed to load) saved to {path}")


if __name__ == "__main__":
    main()
