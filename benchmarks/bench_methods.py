"""Accuracy vs sparsity of keras_prune's methods on a small CNN trained on sklearn's digits.

One run, side by side: a dense baseline; per sparsity (90/95/98/99%) the default (global
magnitude), per-layer magnitude pruning, one-shot global + fine-tune, learnable (movement) masks,
the best recipe, and tfmot's prune_low_magnitude (Keras 2, in a subprocess, if installed);
then SET and RigL trained sparse from scratch at 90%.

    TF_CPP_MIN_LOG_LEVEL=3 python benchmarks/bench_methods.py            # full table
    TF_CPP_MIN_LOG_LEVEL=3 python benchmarks/bench_methods.py --quick    # fewer epochs
    python benchmarks/bench_methods.py --reselect --seeds 0,1   # learnable masks' reselect

Most parameters live in one large Dense layer (2048 x 256), as in many small deployed models:
a global ranking keeps the small convolutions dense and takes the sparsity from that layer.
"""

import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_prune as kp  # noqa: E402

SPARSITIES = (0.90, 0.95, 0.98, 0.99)


def load_data():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    images = (data.images / 16.0).astype("float32")[..., None]
    return train_test_split(
        images, data.target.astype("int32"), test_size=0.25, random_state=0, stratify=data.target
    )


def build_model(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1"),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2"),
            keras.layers.Flatten(),
            keras.layers.Dense(256, activation="relu", name="dense"),
            keras.layers.Dense(10, name="logits"),
        ],
        name="digits_cnn",
    )


def compile_model(model, learning_rate=1e-3):
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def accuracy(model, x, y):
    logits = model.predict(x, verbose=0, batch_size=256)
    return float(np.mean(np.argmax(logits, axis=1) == y))


def zero_fraction(model):
    """Fraction of exactly-zero weights over all Conv / Dense kernels of a plain model."""
    kernels = [layer.kernel for layer in model.layers if hasattr(layer, "kernel")]
    total = sum(int(np.prod(k.shape)) for k in kernels)
    zeros = sum(int(np.sum(keras.ops.convert_to_numpy(k) == 0)) for k in kernels)
    return zeros / total


def steps_per_epoch(x, batch_size):
    return -(-len(x) // batch_size)


def gradual(dense, sparsity, x, y, epochs, batch_size, **prune_kwargs):
    """Gradual pruning from the trained dense model: sparsity rises over the first 2/3 of
    fine-tuning, then the last third trains at the final mask."""
    learning_rate = prune_kwargs.pop("learning_rate", 1e-3)
    total = epochs * steps_per_epoch(x, batch_size)
    schedule = kp.PolynomialDecay(
        0.0, sparsity, begin_step=0, end_step=2 * total // 3, frequency=10
    )
    pruned = compile_model(kp.prune(dense, schedule=schedule, **prune_kwargs), learning_rate)
    callback = kp.PruningCallback()  # follows the allocation kp.prune declared
    pruned.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, callbacks=[callback])
    return kp.strip(pruned)


def one_shot(dense, sparsity, x, y, epochs, batch_size):
    pruned = kp.prune_once(dense, sparsity)  # global by default
    compile_model(pruned)
    pruned.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0)
    return kp.strip(pruned)


def best_recipe(dense, sparsity, x, y, epochs, batch_size):
    """Global magnitude, gradual, longer fine-tuning with a decaying learning rate."""
    total = 2 * epochs * steps_per_epoch(x, batch_size)
    schedule = kp.PolynomialDecay(0.0, sparsity, begin_step=0, end_step=total // 2, frequency=10)
    pruned = kp.prune(dense, schedule=schedule)  # global by default
    learning_rate = keras.optimizers.schedules.CosineDecay(2e-3, total)
    compile_model(pruned, learning_rate)
    callback = kp.PruningCallback()
    pruned.fit(x, y, epochs=2 * epochs, batch_size=batch_size, verbose=0, callbacks=[callback])
    return kp.strip(pruned)


def sparse_from_scratch(kind, sparsity, x, y, epochs, batch_size):
    total = epochs * steps_per_epoch(x, batch_size)
    model = kp.prune(build_model(seed=1))
    compile_model(model, 2e-3)
    common = dict(frequency=20, drop_fraction=0.3, end_step=3 * total // 4)
    if kind == "SET":
        callback = kp.methods.SET(sparsity, **common)
    else:
        callback = kp.methods.RigL(sparsity, calibration_data=(x[:256], y[:256]), **common)
    model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, callbacks=[callback])
    return kp.strip(model)


TFMOT_SCRIPT = r"""
import json, os, sys
import numpy as np
import tensorflow as tf
import tf_keras as keras
import tensorflow_model_optimization as tfmot
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

args = json.loads(sys.argv[1])
data = load_digits()
images = (data.images / 16.0).astype("float32")[..., None]
x, x_test, y, y_test = train_test_split(images, data.target.astype("int32"), test_size=0.25,
                                        random_state=0, stratify=data.target)
keras.utils.set_random_seed(0)
model = keras.Sequential([
    keras.Input((8, 8, 1)),
    keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
    keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
    keras.layers.Flatten(),
    keras.layers.Dense(256, activation="relu"),
    keras.layers.Dense(10),
])
loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
model.compile(keras.optimizers.Adam(1e-3), loss, metrics=["accuracy"])
model.fit(x, y, epochs=args["dense_epochs"], batch_size=args["batch_size"], verbose=0)
results = {}
steps = -(-len(x) // args["batch_size"]) * args["epochs"]
for sparsity in args["sparsities"]:
    schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, sparsity, 0, 2 * steps // 3,
                                                    frequency=10)
    pruned = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
    pruned.compile(keras.optimizers.Adam(1e-3), loss, metrics=["accuracy"])
    pruned.fit(x, y, epochs=args["epochs"], batch_size=args["batch_size"], verbose=0,
               callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    plain = tfmot.sparsity.keras.strip_pruning(pruned)
    predictions = np.argmax(plain.predict(x_test, verbose=0), axis=1)
    results[str(sparsity)] = float(np.mean(predictions == y_test))
print("RESULT" + json.dumps(results))
"""


def run_tfmot(sparsities, dense_epochs, epochs, batch_size):
    try:
        import tensorflow_model_optimization  # noqa: F401
    except ImportError:
        return None, "tfmot not installed (pip install tensorflow-model-optimization tf-keras)"
    args = json.dumps(
        {
            "sparsities": list(sparsities),
            "dense_epochs": dense_epochs,
            "epochs": epochs,
            "batch_size": batch_size,
        }
    )
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")
    completed = subprocess.run(
        [sys.executable, "-c", TFMOT_SCRIPT, args], capture_output=True, text=True, env=env
    )
    for line in completed.stdout.splitlines():
        if line.startswith("RESULT"):
            return {float(k): v for k, v in json.loads(line[len("RESULT") :]).items()}, None
    return None, "tfmot run failed: " + completed.stderr.strip().splitlines()[-1]


def compare_reselect(seeds, sparsities=(0.9, 0.98), frequencies=(10, 100), epochs=15):
    """Test accuracy of learnable masks choosing their top-k at the schedule's updates
    (`reselect="schedule"`) or at every step ("step"), per seed, sparsity and frequency, with
    the recipe of the table's learnable row."""
    x, x_test, y, y_test = load_data()
    results = {}
    for seed in seeds:
        dense = compile_model(build_model(seed))
        dense.fit(x, y, epochs=30, batch_size=32, verbose=0)
        results[("dense", seed)] = accuracy(dense, x_test, y_test)
        total = epochs * steps_per_epoch(x, 32)
        for sparsity in sparsities:
            for frequency in frequencies:
                for reselect in ("schedule", "step"):
                    keras.utils.set_random_seed(seed)
                    schedule = kp.PolynomialDecay(
                        0.0, sparsity, begin_step=0, end_step=2 * total // 3, frequency=frequency
                    )
                    mask = kp.mask_types.LearnableMask(reselect=reselect)
                    pruned = compile_model(kp.prune(dense, schedule=schedule, mask=mask))
                    pruned.fit(
                        x, y, epochs=epochs, batch_size=32, verbose=0,
                        callbacks=[kp.PruningCallback()],
                    )  # fmt: skip
                    value = accuracy(kp.strip(pruned), x_test, y_test)
                    results[(sparsity, frequency, reselect, seed)] = value
                    print(f"  seed {seed} {sparsity:.0%} frequency {frequency} {reselect}: "
                          f"{value:.4f}", flush=True)  # fmt: skip
    columns = [(reselect, seed) for reselect in ("schedule", "step") for seed in seeds]
    print("\nlearnable masks, test accuracy of the stripped model")
    print(f"{'sparsity, frequency':22s}" + "".join(f"{f'{r} s{s}':>14s}" for r, s in columns))
    print(f"{'dense':22s}" + "".join(f"{results[('dense', s)]:14.4f}" for _, s in columns))
    for sparsity in sparsities:
        for frequency in frequencies:
            cells = "".join(f"{results[(sparsity, frequency, r, s)]:14.4f}" for r, s in columns)
            print(f"{f'{sparsity:.0%}, {frequency}':22s}{cells}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs (a smoke run)")
    parser.add_argument("--no-tfmot", action="store_true", help="skip the tfmot subprocess")
    parser.add_argument(
        "--reselect",
        action="store_true",
        help="only compare learnable masks' reselect='schedule' and 'step' at 90%% and 98%%",
    )
    parser.add_argument("--seeds", default="0", help="for --reselect: comma-separated seeds")
    args = parser.parse_args()
    if args.reselect:
        compare_reselect([int(seed) for seed in args.seeds.split(",")])
        return
    dense_epochs, epochs, batch_size = (8, 4, 64) if args.quick else (30, 15, 32)
    x, x_test, y, y_test = load_data()
    started = time.time()

    dense = compile_model(build_model())
    dense.fit(x, y, epochs=dense_epochs, batch_size=batch_size, verbose=0)
    dense_accuracy = accuracy(dense, x_test, y_test)
    parameters = sum(
        int(np.prod(layer.kernel.shape)) for layer in dense.layers if hasattr(layer, "kernel")
    )

    recipes = {
        "default: kp.prune, PruningCallback()": lambda s: gradual(
            dense, s, x, y, epochs, batch_size
        ),
        'per layer (allocation="per_layer")': lambda s: gradual(
            dense, s, x, y, epochs, batch_size, allocation="per_layer"
        ),
        "one-shot global + fine-tune": lambda s: one_shot(dense, s, x, y, epochs, batch_size),
        "learnable mask (movement)": lambda s: gradual(
            dense, s, x, y, epochs, batch_size, mask="learnable"
        ),
        'learnable mask, reselect="step"': lambda s: gradual(
            dense,
            s,
            x,
            y,
            epochs,
            batch_size,
            mask=kp.mask_types.LearnableMask(reselect="step"),
        ),
        "best: global, 2x fine-tune, cosine LR": lambda s: best_recipe(
            dense, s, x, y, epochs, batch_size
        ),
    }
    table = {}
    for name, recipe in recipes.items():
        for sparsity in SPARSITIES:
            model = recipe(sparsity)
            table[(name, sparsity)] = (accuracy(model, x_test, y_test), zero_fraction(model))
            print(
                f"  {name:40s} {sparsity:.2f}: accuracy {table[(name, sparsity)][0]:.4f}",
                flush=True,
            )

    tfmot_results, tfmot_note = (None, "skipped (--no-tfmot)")
    if not args.no_tfmot:
        tfmot_results, tfmot_note = run_tfmot(SPARSITIES, dense_epochs, epochs, batch_size)

    scratch = {}
    for kind in ("SET", "RigL"):
        model = sparse_from_scratch(kind, 0.9, x, y, dense_epochs + epochs, batch_size)
        scratch[kind] = (accuracy(model, x_test, y_test), zero_fraction(model))

    print()
    print(
        f"digits CNN, {parameters} prunable weights, {len(x)} train / {len(x_test)} test images;"
        f" dense {dense_epochs} epochs, fine-tune {epochs} epochs, batch {batch_size}"
    )
    header = f"{'method':42s}" + "".join(f"{f'{s:.0%}':>16s}" for s in SPARSITIES)
    print(header)
    print("-" * len(header))
    print(f"{'dense (0%)':42s}" + f"{dense_accuracy:16.4f}" * len(SPARSITIES))
    for name in recipes:
        cells = ""
        for sparsity in SPARSITIES:
            value, realised = table[(name, sparsity)]
            cells += f"{value:.4f} ({realised:.3f})".rjust(16)
        print(f"{name:42s}{cells}")
    if tfmot_results:
        print(
            f"{'tfmot prune_low_magnitude (Keras 2)':42s}"
            + "".join(f"{tfmot_results[s]:16.4f}" for s in SPARSITIES)
        )
    else:
        print(f"tfmot: {tfmot_note}")
    print("cells: test accuracy (realised fraction of zero weights in the stripped model)")
    best = max(recipes, key=lambda name: table[(name, 0.99)][0])
    change = 100 * (table[(best, 0.99)][0] - dense_accuracy)
    print(
        f"\nbest keras_prune recipe at 99%: {best!r}, accuracy {change:+.2f} points vs dense "
        "(target: >= -1)"
    )
    print(
        "\nsparse from scratch at 90% (ERK, "
        f"{dense_epochs + epochs} epochs, no dense pre-training):"
    )
    for kind, (value, realised) in scratch.items():
        print(
            f"  {kind:5s} accuracy {value:.4f} (zeros {realised:.3f}), "
            f"accuracy {100 * (value - dense_accuracy):+.2f} points vs dense (target: >= -2)"
        )
    print(f"\ntotal time {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
