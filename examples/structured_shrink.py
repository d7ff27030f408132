"""Structured pruning end to end: channel groups, pruning during training, shrink, compare.

A small residual CNN on sklearn's bundled digits (offline):

1. `kp.graph.channel_groups` finds which weights share channels (and `--svg` draws them);
2. `kp.prune(..., granularity="channel")` + `kp.PruningCallback` masks half of every group's
   channels during training, BatchNorm included, so the masked channels are exactly zero;
3. `kp.shrink` removes them: a smaller plain Keras model with the same outputs;
4. `kp.prune_channels` does the same in one shot on the trained dense model;
5. `kp.reporting.compare` prints params / MACs / size before and after.

Run: `python examples/structured_shrink.py [--svg groups.svg]`
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

import keras_prune as kp  # noqa: E402

layers = keras.layers


def residual_cnn():
    """Stem conv, one residual block, a squeeze-excite gate, a classifier."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = layers.Conv2D(32, 3, padding="same", use_bias=False, name="stem")(inputs)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    y = layers.Conv2D(64, 1, use_bias=False, name="expand")(x)
    y = layers.BatchNormalization(name="expand_bn")(y)
    y = layers.ReLU(name="expand_relu")(y)
    y = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="depthwise")(y)
    y = layers.BatchNormalization(name="depthwise_bn")(y)
    y = layers.ReLU(name="depthwise_relu")(y)
    gate = layers.GlobalAveragePooling2D(keepdims=True, name="squeeze")(y)
    gate = layers.Conv2D(8, 1, activation="relu", name="se_reduce")(gate)
    gate = layers.Conv2D(64, 1, activation="sigmoid", name="se_expand")(gate)
    y = layers.Multiply(name="excite")([y, gate])
    y = layers.Conv2D(32, 1, use_bias=False, name="project")(y)
    y = layers.BatchNormalization(name="project_bn")(y)
    x = layers.Add(name="residual")([x, y])
    x = layers.MaxPooling2D(2, name="pool")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(64, activation="relu", name="hidden")(x)
    outputs = layers.Dense(10, name="logits")(x)
    return keras.Model(inputs, outputs, name="residual_cnn")


def digits():
    data = load_digits()
    images = (data.images / 16.0).astype("float32")[..., None]
    labels = data.target.astype("int32")
    order = np.random.default_rng(0).permutation(len(images))
    images, labels = images[order], labels[order]
    split = int(0.8 * len(images))
    return (images[:split], labels[:split]), (images[split:], labels[split:])


def compile_model(model, rate=1e-3):
    model.compile(
        keras.optimizers.Adam(rate),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--svg", help="write a picture of the channel groups to this path")
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()
    (x_train, y_train), (x_test, y_test) = digits()

    model = residual_cnn()
    found = kp.graph.channel_groups(model)
    print("Channel groups:")
    for group in found:
        print(" ", group)
    if args.svg:
        with open(args.svg, "w", encoding="utf-8") as handle:
            handle.write(kp.reporting.groups_svg(model, title="Channel groups of residual_cnn"))
        print(f"wrote {args.svg}")

    compile_model(model)
    model.fit(x_train, y_train, epochs=args.epochs, batch_size=32, verbose=0)
    dense_accuracy = model.evaluate(x_test, y_test, verbose=0)[1]

    # Gradual channel pruning during training: half of every group by the end.
    steps_per_epoch = int(np.ceil(len(x_train) / 32))
    pruned = kp.prune(
        model,
        schedule=kp.PolynomialDecay(
            0.0, 0.5, begin_step=0, end_step=steps_per_epoch * 5, frequency=steps_per_epoch // 2
        ),
        granularity="channel",
    )
    compile_model(pruned, 5e-4)
    pruned.fit(
        x_train,
        y_train,
        epochs=8,
        batch_size=32,
        verbose=0,
        callbacks=[kp.PruningCallback()],
    )
    small = kp.shrink(pruned, round_to=4)
    compile_model(small)
    difference = np.max(np.abs(np.asarray(pruned(x_test)) - np.asarray(small(x_test))))
    print("\nshrink report:\n" + str(small.shrink_report))
    print(f"max |pruned - shrunk| on the test set: {difference:.2e}")

    # One shot on the trained dense model, then fine-tune the small model directly.
    one_shot = kp.prune_channels(model, sparsity=0.5, criterion="bn_scale")
    compile_model(one_shot, 5e-4)
    one_shot.fit(x_train, y_train, epochs=5, batch_size=32, verbose=0)

    print("\n" + str(kp.reporting.compare(model, small)))
    gradual_accuracy = small.evaluate(x_test, y_test, verbose=0)[1]
    one_shot_accuracy = one_shot.evaluate(x_test, y_test, verbose=0)[1]
    print(f"\ntest accuracy: dense {dense_accuracy:.4f}")
    print(f"  gradual channel pruning + shrink:   {gradual_accuracy:.4f}")
    print(f"  one-shot prune_channels + 5 epochs: {one_shot_accuracy:.4f}")


if __name__ == "__main__":
    main()
