"""A tour of keras_prune's pruning methods on sklearn's digits, one short run per method.

    TF_CPP_MIN_LOG_LEVEL=3 python examples/methods_tour.py [--quick]

Each line prints test accuracy and the realised fraction of zero weights. The runs are short
(a couple of minutes in total on a laptop CPU; `--quick` trains a third as long, to check that
everything runs); benchmarks/bench_methods.py trains longer.
See docs/methods.md for when to use which.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

import keras_prune as kp  # noqa: E402


def build(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1"),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2"),
            keras.layers.Flatten(),
            keras.layers.Dense(256, activation="relu", name="dense"),
            keras.layers.Dense(10, name="logits"),
        ]
    )


def compile_model(model, learning_rate=1e-3):
    model.compile(
        keras.optimizers.Adam(learning_rate),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def report(name, model, x_test, y_test):
    plain = kp.strip(model) if kp.layers.find_wrappers(model) else model
    predictions = np.argmax(plain.predict(x_test, verbose=0), axis=1)
    kernels = [layer.kernel for layer in plain.layers if hasattr(layer, "kernel")]
    zeros = sum(int(np.sum(keras.ops.convert_to_numpy(k) == 0)) for k in kernels)
    total = sum(int(np.prod(k.shape)) for k in kernels)
    print(f"{name:48s} accuracy {np.mean(predictions == y_test):.4f}  zeros {zeros / total:.3f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="train a third as long")
    args = parser.parse_args(argv)

    def epochs(count):
        return max(count // 3, 1) if args.quick else count

    data = load_digits()
    images = (data.images / 16.0).astype("float32")[..., None]
    x, x_test, y, y_test = train_test_split(
        images, data.target.astype("int32"), test_size=0.25, random_state=0
    )
    fit = dict(batch_size=32, verbose=0)
    steps = -(-len(x) // 32)

    dense = compile_model(build())
    dense.fit(x, y, epochs=epochs(10), **fit)
    report("dense", dense, x_test, y_test)

    # Gradual magnitude pruning, each layer at 95%, versus one global ranking.
    schedule = kp.PolynomialDecay(0.0, 0.95, begin_step=0, end_step=epochs(4) * steps, frequency=10)
    per_layer = compile_model(kp.prune(dense, schedule=schedule))
    per_layer.fit(x, y, epochs=epochs(6), callbacks=[kp.PruningCallback()], **fit)
    report("gradual magnitude, per layer, 95%", per_layer, x_test, y_test)
    global_model = compile_model(kp.prune(dense, schedule=schedule))
    callback = kp.PruningCallback(allocation=kp.allocation.GlobalAllocation())
    global_model.fit(x, y, epochs=epochs(6), callbacks=[callback], **fit)
    report("gradual magnitude, global, 95%", global_model, x_test, y_test)

    # A gradient criterion: Taylor |w * g| on 256 calibration images.
    taylor = compile_model(kp.prune(dense, schedule=schedule, criterion="taylor"))
    callback = kp.PruningCallback(calibration_data=(x[:256], y[:256]))
    taylor.fit(x, y, epochs=epochs(6), callbacks=[callback], **fit)
    report("gradual Taylor, per layer, 95%", taylor, x_test, y_test)

    # One shot, then fine-tune with a plain fit.
    once = kp.prune_once(dense, 0.9, allocation=kp.allocation.GlobalAllocation())
    compile_model(once).fit(x, y, epochs=epochs(3), **fit)
    report(f"one-shot global 90% + {epochs(3)} epochs", once, x_test, y_test)

    # Iterative prune-retrain cycles.
    cycles = kp.schedules.IterativeSparsity([0.5, 0.8, 0.9], frequency=epochs(2) * steps)
    iterative = compile_model(kp.prune(dense, schedule=cycles))
    iterative.fit(x, y, epochs=epochs(8), callbacks=[kp.PruningCallback()], **fit)
    report("iterative 50 -> 80 -> 90%", iterative, x_test, y_test)

    # Lottery ticket with late rewinding: 3 rounds from the same early weights.
    ticket_model = compile_model(kp.prune(build()))
    ticket = kp.methods.LotteryTicket(
        [0.5, 0.8, 0.9],
        frequency=epochs(3) * steps,
        rewind_step=10,
        allocation=kp.allocation.GlobalAllocation(),
    )
    ticket_model.fit(x, y, epochs=epochs(12), callbacks=[ticket], **fit)
    report("lottery ticket, 3 rounds to 90%", ticket_model, x_test, y_test)

    # Sparse from scratch at 90% (ERK): SET and RigL.
    for name, callback in (
        ("SET", kp.methods.SET(0.9, frequency=20, end_step=epochs(8) * steps)),
        (
            "RigL",
            kp.methods.RigL(
                0.9,
                calibration_data=(x[:256], y[:256]),
                frequency=20,
                end_step=epochs(8) * steps,
            ),
        ),
    ):
        sparse = compile_model(kp.prune(build(seed=1)), 2e-3)
        sparse.fit(x, y, epochs=epochs(12), callbacks=[callback], **fit)
        report(f"{name} from scratch, 90% ERK", sparse, x_test, y_test)

    # Sigmoid-gated learnable masks with an L0 penalty on the gates.
    gated = kp.prune(dense, schedule=schedule, mask=kp.mask_types.SigmoidGateMask())
    kp.methods.penalize_masks(gated, kp.regularizers.GateL0(1e-5))
    compile_model(gated).fit(x, y, epochs=epochs(6), callbacks=[kp.PruningCallback()], **fit)
    report("sigmoid gates + L0 penalty, 95%", gated, x_test, y_test)

    # Group lasso on neurons, then zero the neurons it shrank.
    keras.utils.set_random_seed(0)
    lasso = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Flatten(),
            keras.layers.Dense(
                64,
                activation="relu",
                name="hidden",
                kernel_regularizer=kp.regularizers.GroupLasso(3e-3),
            ),
            keras.layers.Dense(10, name="logits"),
        ]
    )
    compile_model(lasso).fit(x, y, epochs=epochs(15), **fit)
    trimmed = kp.prune_once(
        lasso,
        0.0,
        granularity="channel",
        filters="hidden",
        allocation=kp.allocation.ThresholdAllocation(0.05),
    )
    report("group lasso + threshold (neurons removed)", trimmed, x_test, y_test)
    kept = int(keras.ops.convert_to_numpy(trimmed.get_layer("hidden").bias_masks[0]).sum())
    print(f"  hidden neurons kept: {kept} of 64")


if __name__ == "__main__":
    main()
