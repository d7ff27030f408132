"""Benchmark: pruning alone vs pruning + distillation on the digits CNN, side by side.

A dense CNN (the teacher) is trained on sklearn's bundled 8x8 digits. At each sparsity copies
of it are pruned with the same schedule, seeds and number of epochs: fine-tuned on the hard
labels only, and through `keras_prune.Distiller` with the dense model as a frozen teacher, once
per distillation setting `T:alpha_start:alpha` (SoftTargets at temperature T; alpha rising
from alpha_start to alpha with the sparsity schedule). A smaller dense student trained from
scratch, with and without distillation, gives the last rows. Test accuracy is averaged over
several seeds (min-max shown); "train s" is the mean wall time of one training run.

    python benchmarks/bench_distill.py [--sparsities 0.95 0.99] [--seeds 3] [--epochs 12]
        [--distill 2:0.1:0.5 4:0.5:0.5]
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

import keras_prune as kp  # noqa: E402
from keras_prune import distill  # noqa: E402
from keras_prune.distiller import Distiller  # noqa: E402

BATCH_SIZE = 32
# The small first conv and the classifier stay dense (as in examples/digits_demo.py): they
# hold few weights but matter most; the sparsity applies to conv2 and the hidden dense layer.
PRUNED_LAYERS = ["conv2", "^dense$"]


def load_data():
    digits = load_digits()
    images = (digits.images / 16.0).astype("float32")[..., None]
    labels = digits.target.astype("int32")
    order = np.random.default_rng(0).permutation(len(images))
    images, labels = images[order], labels[order]
    split = int(0.8 * len(images))
    return (images[:split], labels[:split]), (images[split:], labels[split:])


def build_cnn(widths=(32, 64, 128), name="digits_cnn"):
    conv1, conv2, hidden = widths
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(conv1, 3, padding="same", activation="relu", name="conv1"),
            keras.layers.Conv2D(conv2, 3, padding="same", activation="relu", name="conv2"),
            keras.layers.MaxPooling2D(name="pool"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(hidden, activation="relu", name="dense"),
            keras.layers.Dense(10, name="logits"),
        ],
        name=name,
    )


def hard_label_loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def accuracy(model, x, y):
    logits = model.predict(x, batch_size=256, verbose=0)
    return float(np.mean(np.argmax(logits, -1) == y))


def copy_of(model):
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    # The Distiller froze the teacher; clone_model copies that flag, the student must train.
    clone.trainable = True
    return clone


def parse_setting(text):
    """ "T:alpha_start:alpha" -> (T, alpha_start, alpha)."""
    try:
        temperature, alpha_start, alpha = (float(v) for v in text.split(":"))
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"Expected T:alpha_start:alpha, e.g. 2:0.1:0.5. Received: {text!r}"
        ) from error
    return temperature, alpha_start, alpha


def train(model, x, y, epochs, learning_rate, teacher, setting, schedule=None):
    """Fit `model` on labels, or through a Distiller when `teacher` is given; returns seconds.

    `setting` is (temperature, alpha_start, alpha); alpha follows `schedule` when one is given.
    """
    callbacks = [kp.PruningCallback()] if schedule is not None else []
    if teacher is None:
        trainer = model
        trainer.compile(keras.optimizers.Adam(learning_rate), loss=hard_label_loss())
    else:
        temperature, alpha_start, alpha = setting
        if schedule is not None:
            alpha = distill.DistillSchedule.following(schedule, alpha_start, alpha)
        trainer = Distiller(
            model,
            teacher,
            distillation_loss=distill.SoftTargets(temperature=temperature),
            alpha=alpha,
        )
        trainer.compile(keras.optimizers.Adam(learning_rate))
    start = time.perf_counter()
    trainer.fit(
        x, y, batch_size=BATCH_SIZE, epochs=epochs, verbose=0, shuffle=True, callbacks=callbacks
    )
    return time.perf_counter() - start


def pruning_schedule(sparsity, steps_per_epoch, epochs):
    return kp.PolynomialDecay(
        initial_sparsity=0.0,
        final_sparsity=sparsity,
        begin_step=0,
        end_step=steps_per_epoch * max(epochs - 4, 1),
        frequency=max(steps_per_epoch // 2, 1),
    )


def pruned_run(teacher, sparsity, seed, setting, data, args):
    (x_train, y_train), (x_test, y_test) = data
    keras.utils.set_random_seed(seed)
    steps_per_epoch = int(np.ceil(len(x_train) / BATCH_SIZE))
    schedule = pruning_schedule(sparsity, steps_per_epoch, args.epochs)
    student = kp.prune(copy_of(teacher), schedule=schedule, filters=PRUNED_LAYERS)
    seconds = train(
        student,
        x_train,
        y_train,
        args.epochs,
        5e-4,
        teacher if setting else None,
        setting,
        schedule=schedule,
    )
    plain = kp.strip(student)
    nonzero = sum(int(np.count_nonzero(w)) for w in plain.get_weights())
    return accuracy(plain, x_test, y_test), seconds, nonzero


def small_dense_run(teacher, seed, setting, data, args):
    (x_train, y_train), (x_test, y_test) = data
    keras.utils.set_random_seed(seed)
    student = build_cnn(args.small_widths, name="small_cnn")
    seconds = train(
        student, x_train, y_train, args.small_epochs, 2e-3, teacher if setting else None, setting
    )
    return accuracy(student, x_test, y_test), seconds, student.count_params()


def summarize(results):
    accuracies = np.array([r[0] for r in results])
    return (
        accuracies.mean(),
        accuracies.min(),
        accuracies.max(),
        float(np.mean([r[1] for r in results])),
        results[0][2],
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.95, 0.99])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=12, help="pruning fine-tuning epochs")
    parser.add_argument("--teacher-epochs", type=int, default=15)
    parser.add_argument("--small-epochs", type=int, default=20)
    parser.add_argument("--small-widths", type=int, nargs=3, default=[4, 8, 16])
    parser.add_argument(
        "--distill",
        type=parse_setting,
        nargs="+",
        default=[(2.0, 0.1, 0.5), (4.0, 0.5, 0.5)],
        help="distillation settings T:alpha_start:alpha for the pruned students",
    )
    parser.add_argument(
        "--small-distill",
        type=parse_setting,
        default="4:0.9:0.9",
        help="T:alpha_start:alpha for the small dense student (alpha constant)",
    )
    args = parser.parse_args(argv)

    data = load_data()
    (x_train, y_train), (x_test, y_test) = data
    keras.utils.set_random_seed(0)
    teacher = build_cnn()
    teacher.compile(keras.optimizers.Adam(1e-3), loss=hard_label_loss())
    teacher.fit(x_train, y_train, batch_size=BATCH_SIZE, epochs=args.teacher_epochs, verbose=0)
    teacher_accuracy = accuracy(teacher, x_test, y_test)

    seeds = range(args.seeds)
    rows = [
        (
            "dense teacher",
            teacher_accuracy,
            teacher_accuracy,
            teacher_accuracy,
            0.0,
            teacher.count_params(),
        )
    ]
    for sparsity in args.sparsities:
        for setting in [None, *args.distill]:
            label = f"pruned {sparsity:.0%}"
            if setting:
                label += " + distill T={:g} a={:g}->{:g}".format(*setting)
            results = [pruned_run(teacher, sparsity, seed, setting, data, args) for seed in seeds]
            rows.append((label, *summarize(results)))
            print(f"done: {label}", flush=True)
    for setting in (None, args.small_distill):
        label = "small dense {}".format("x".join(map(str, args.small_widths)))
        if setting:
            label += f" + distill T={setting[0]:g} a={setting[2]:g}"
        results = [small_dense_run(teacher, seed, setting, data, args) for seed in seeds]
        rows.append((label, *summarize(results)))
        print(f"done: {label}", flush=True)

    print()
    print(
        f"digits CNN, {len(x_train)} train / {len(x_test)} test images, {args.seeds} seeds, "
        f"{args.epochs} pruning epochs (sparsity reached after {max(args.epochs - 4, 1)}), "
        "alpha follows the sparsity schedule"
    )
    header = f"{'model':<44}{'test acc (mean)':>16}{'min':>8}{'max':>8}{'train s':>9}"
    header += f"{'nonzero weights':>17}"
    print(header)
    print("-" * len(header))
    for label, mean, low, high, seconds, weights in rows:
        print(f"{label:<44}{mean:>16.4f}{low:>8.4f}{high:>8.4f}{seconds:>9.1f}{weights:>17,}")


if __name__ == "__main__":
    main()
