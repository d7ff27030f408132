"""Example: distillation-aware pruning of a digits CNN with keras_prune.

Trains a dense CNN on sklearn's bundled 8x8 digits (with label smoothing, which softens its
outputs), then prunes a copy of it to high sparsity while a frozen copy of the dense model
teaches it through `keras_prune.Distiller`. It uses the recipe measured in
docs/distillation.md: soft targets at temperature 2 and a distillation weight that rises from
0.1 to 0.5 with the sparsity, plus a hint loss on the hidden layer. The student is then
stripped to plain Keras and saved alone. Runs offline in about a minute on a laptop CPU.

    python examples/distill_pruning.py [--sparsity 0.95] [--epochs 10] [--teacher-epochs 40]
        [--out artifacts]
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
    split = int(0.8 * len(images))
    train, test = order[:split], order[split:]
    return (images[train], labels[train]), (images[test], labels[test])


def build_cnn():
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv1"),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv2"),
            keras.layers.MaxPooling2D(name="pool"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(128, activation="relu", name="dense"),
            keras.layers.Dense(10, name="logits"),  # logits: SoftTargets' default
        ],
        name="digits_cnn",
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsity", type=float, default=0.95)
    parser.add_argument("--epochs", type=int, default=10, help="pruning epochs")
    parser.add_argument("--teacher-epochs", type=int, default=40)
    parser.add_argument("--out", default="artifacts")
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = load_data()

    teacher = build_cnn()
    teacher.compile(
        optimizer="adam",
        loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
        metrics=["categorical_accuracy"],
    )
    one_hot = keras.utils.to_categorical(y_train, 10)
    teacher.fit(x_train, one_hot, epochs=args.teacher_epochs, batch_size=32, verbose=0)

    # The student starts as a copy of the teacher and is pruned while it learns from it.
    student = keras.models.clone_model(teacher)
    student.set_weights(teacher.get_weights())
    steps_per_epoch = int(np.ceil(len(x_train) / 32))
    schedule = kp.PolynomialDecay(
        0.0,
        args.sparsity,
        begin_step=0,
        end_step=steps_per_epoch * max(args.epochs - 3, 1),  # then fine-tune at full sparsity
        frequency=steps_per_epoch // 2,
    )
    student = kp.prune(student, schedule=schedule, filters=["conv2", "^dense$"])

    trainer = kp.distill.Distiller(
        student,
        teacher,  # frozen by the Distiller, always run in inference mode
        distillation_loss=kp.distill.SoftTargets(temperature=2.0),
        alpha=kp.distill.DistillSchedule.following(schedule, initial=0.1, final=0.5),
        hints=[("dense", "dense")],  # a pruning wrapper answers to its inner layer's name
        hint_weight=0.1,
    )
    trainer.compile(optimizer=keras.optimizers.Adam(5e-4), metrics=["accuracy"])
    trainer.fit(
        x_train,
        y_train,
        epochs=args.epochs,
        batch_size=32,
        validation_data=(x_test, y_test),
        callbacks=[kp.PruningCallback()],
        verbose=2,  # shows loss parts, accuracy and teacher_accuracy, sparsity
    )

    plain = kp.strip(trainer.student)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "digits_distilled_pruned.keras")
    plain.save(path)
    kp.summary(plain)
    logits = plain.predict(x_test, verbose=0)
    print(f"stripped student test accuracy: {np.mean(np.argmax(logits, -1) == y_test):.4f}")
    print(f"saved to {path}")


if __name__ == "__main__":
    main()
