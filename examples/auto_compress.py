"""Automated compression of the digits CNN: sensitivity, a latency table, and a search.

1. `kp.auto.sensitivity`: how much each layer's pruning costs, and an allocation that prunes
   the robust layers more (compared with the same sparsity everywhere).
2. `kp.auto.profile`: each block's latency on LiteRT (XNNPACK), checked against the whole
   model, and the bottlenecks.
3. `kp.auto.search`: channel sparsities per group for accuracy and latency under a latency
   budget; the Pareto front, and its best point built, fine-tuned and exported.

Runs offline (sklearn's digits). Writes PNG charts when matplotlib is installed.

    python examples/auto_compress.py [--trials 24] [--out artifacts] [--quick]
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


def compile_model(model, learning_rate=1e-3):
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def accuracy(model, x, y):
    compile_model(model)
    return model.evaluate(x, y, verbose=0, return_dict=True)["accuracy"]


def charts_available():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--out", default="artifacts")
    parser.add_argument("--quick", action="store_true", help="a short run (tests)")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    charts = charts_available()
    trials = 4 if args.quick else args.trials

    keras.utils.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = load_data()
    model = compile_model(build_cnn())
    model.fit(x_train, y_train, epochs=3 if args.quick else 10, batch_size=32, verbose=0)
    print(f"dense test accuracy: {accuracy(model, x_test, y_test):.4f}")

    # 1. Sensitivity: one layer pruned at a time; then an allocation for 95% overall.
    scan = kp.auto.sensitivity(model, (x_test, y_test), metric="accuracy", verbose=0)
    print(scan.table())
    if charts:
        scan.plot(os.path.join(args.out, "sensitivity.png"))
    for sparsity in (0.95, 0.99):
        uniform = kp.strip(kp.prune_once(model, sparsity))
        allocated = kp.strip(kp.prune_once(model, sparsity, allocation=scan.allocation()))
        print(
            f"one-shot {sparsity:.0%}: uniform {accuracy(uniform, x_test, y_test):.4f}, "
            f"sensitivity allocation {accuracy(allocated, x_test, y_test):.4f}"
        )

    # 2. The latency table on LiteRT with XNNPACK, one thread.
    sparsities = () if args.quick else (0.5,)
    table = kp.auto.profile(model, "mobile", sparsities=sparsities, verbose=0)
    print(table.table(limit=8))
    if charts:
        table.plot(os.path.join(args.out, "bottlenecks.png"))

    # 3. The search: accuracy after a one-epoch fine-tune vs latency, under a budget of 60%
    # of the dense model's latency.
    budget_us = 0.6 * table.latency_us
    result = kp.auto.search(
        model,
        (x_test, y_test),
        objectives=["accuracy", "latency"],
        constraints=[f"latency <= {budget_us:.1f} us"],
        fine_tune_data=(x_train, y_train),
        fine_tune_epochs=1,
        n_trials=trials,
        profile=table,
        storage=os.path.join(args.out, "auto_compress.journal"),
        remeasure=2 if args.quick else 4,
        verbose=0,
    )
    print(result.table())
    if charts:
        result.plot(os.path.join(args.out, "pareto.png"))
    best = result.best(weights={"accuracy": 1.0, "latency": 0.5})
    small = compile_model(best.materialize())
    small.fit(x_train, y_train, epochs=2, batch_size=32, verbose=0)
    exported = kp.export.to_tflite(
        small, os.path.join(args.out, "digits_auto.tflite"), latency_runs=20
    )
    print(
        f"best point: trial {best.number}, {small.count_params():,} parameters "
        f"(dense {model.count_params():,}); exported {exported.file_bytes:,} bytes, "
        f"{exported.latency_us['xnnpack']:.1f} us on XNNPACK"
    )
    print(f"auto-compressed test accuracy: {accuracy(small, x_test, y_test):.4f}")


if __name__ == "__main__":
    main()
