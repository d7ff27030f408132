"""Prune a trained language model without retraining, then make it smaller by structure.

A small causal Transformer LM over bytes is trained on the Python standard library's own
source files (offline, on every machine), then:

1. `kp.posttraining.prune_posttraining` prunes its attention projections and feed-forward
   layers to 50% from 64 calibration sequences by magnitude, Wanda and SparseGPT, with no
   fine-tuning;
2. `kp.surgery.heads.mask_heads` masks a quarter of the attention heads,
   `kp.surgery.ffn.mask_neurons` half of the feed-forward neurons, and `kp.shrink` removes them
   (same outputs, fewer parameters);
3. `kp.surgery.depth.prune_depth` removes the transformer layer whose absence changes the
   output least.

Held-out perplexity (on files the model never saw) after each step.

Run: `python examples/posttraining.py [--steps 300]` (`--quick` for a smoke run).
"""

import argparse
import glob
import os
import sysconfig

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

import keras_prune as kp  # noqa: E402


@keras.saving.register_keras_serializable(package="examples")
class AddPositions(keras.layers.Layer):
    """Learned position embeddings added to the token embeddings."""

    def __init__(self, length, **kwargs):
        super().__init__(**kwargs)
        self.length = length

    def build(self, input_shape):
        self.positions = self.add_weight(
            shape=(self.length, input_shape[-1]), initializer="random_normal", name="positions"
        )

    def call(self, inputs):
        return inputs + self.positions[: ops.shape(inputs)[1]]

    def get_config(self):
        return {**super().get_config(), "length": self.length}


def byte_lm(length, dim, heads, blocks):
    keras.utils.set_random_seed(0)
    tokens = keras.Input((length,), dtype="int32")
    x = AddPositions(length)(keras.layers.Embedding(256, dim)(tokens))
    for i in range(blocks):
        h = keras.layers.LayerNormalization(name=f"ln_a{i}")(x)
        h = keras.layers.MultiHeadAttention(heads, dim // heads, name=f"attn{i}")(
            h, h, use_causal_mask=True
        )
        x = keras.layers.Add(name=f"res_a{i}")([x, h])
        h = keras.layers.LayerNormalization(name=f"ln_f{i}")(x)
        h = keras.layers.Dense(4 * dim, activation="gelu", name=f"ffn_in{i}")(h)
        x = keras.layers.Add(name=f"res_f{i}")([x, keras.layers.Dense(dim, name=f"ffn_out{i}")(h)])
    x = keras.layers.LayerNormalization()(x)
    return keras.Model(tokens, keras.layers.Dense(256, name="logits")(x))


def stdlib_text():
    root = sysconfig.get_paths()["stdlib"]
    files = sorted(glob.glob(os.path.join(root, "*.py")))
    parts = [[], []]
    for index, path in enumerate(files):
        with open(path, "rb") as handle:
            parts[index % 10 == 0].append(handle.read())
    return [np.frombuffer(b"\n".join(part), np.uint8) for part in parts]


def windows(data, length, count, seed):
    starts = np.random.default_rng(seed).integers(0, len(data) - length - 1, count)
    chunks = np.stack([data[s : s + length + 1] for s in starts]).astype("int32")
    return chunks[:, :-1], chunks[:, 1:]


def perplexity(model, x, y):
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return float(np.exp(loss(y, model.predict(x, verbose=0))))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    length, dim, heads, blocks = (32, 32, 4, 2) if args.quick else (64, 128, 4, 3)
    steps = 20 if args.quick else args.steps
    train, held_out = stdlib_text()
    x, y = windows(train, length, steps * 16, seed=1)
    held_x, held_y = windows(held_out, length, 64, seed=2)
    calibration, _ = windows(train, length, 64, seed=3)

    model = byte_lm(length, dim, heads, blocks)
    model.compile(
        keras.optimizers.Adam(2e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    dense = perplexity(model, held_x, held_y)
    print(f"dense LM ({model.count_params():,} parameters): perplexity {dense:.2f}")

    for method in ("magnitude", "wanda", "sparsegpt"):
        pruned = kp.posttraining.prune_posttraining(
            model, calibration, method=method, sparsity=0.5, filters="attn|ffn", verbose=0
        )
        score = perplexity(pruned, held_x, held_y)
        print(f"{method:>9} 50%, no fine-tuning: perplexity {score:.2f}")
    print(pruned.posttraining_report)

    masked = kp.surgery.heads.mask_heads(model, 0.25, calibration)
    masked = kp.surgery.ffn.mask_neurons(masked, 0.5, calibration)
    small = kp.shrink(masked)
    gap = np.abs(small.predict(held_x, verbose=0) - masked.predict(held_x, verbose=0)).max()
    print(small.shrink_report)
    print(
        f"heads -25%, neurons -50%: {small.count_params():,} parameters, perplexity "
        f"{perplexity(small, held_x, held_y):.2f} (shrunk vs masked max difference {gap:.1e})"
    )

    shallow = kp.surgery.depth.prune_depth(model, 1, calibration, span=2)
    print(shallow.depth_report)
    print(
        f"one transformer layer removed: {shallow.count_params():,} parameters, perplexity "
        f"{perplexity(shallow, held_x, held_y):.2f}"
    )


if __name__ == "__main__":
    main()
