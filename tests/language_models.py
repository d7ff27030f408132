"""Tiny transformer language models built from Keras layers, for the post-training, head, FFN
and depth tests (seconds to build and run)."""

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="keras_prune_tests")
class AddPositions(keras.layers.Layer):
    """Adds a learned position embedding (one vector per position) to its input."""

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


def tiny_lm(vocab=32, length=12, dim=16, heads=4, ffn=32, blocks=2, seed=0):
    """A pre-LayerNorm causal transformer LM: attention and feed-forward residual branches."""
    keras.utils.set_random_seed(seed)
    tokens = keras.Input((length,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(vocab, dim, name="embed")(tokens)
    x = AddPositions(length, name="positions")(x)
    for i in range(blocks):
        h = keras.layers.LayerNormalization(name=f"ln_a{i}")(x)
        h = keras.layers.MultiHeadAttention(heads, dim // heads, name=f"attn{i}")(
            h, h, use_causal_mask=True
        )
        x = keras.layers.Add(name=f"res_a{i}")([x, h])
        h = keras.layers.LayerNormalization(name=f"ln_f{i}")(x)
        h = keras.layers.Dense(ffn, activation="gelu", name=f"ffn_in{i}")(h)
        h = keras.layers.Dense(dim, name=f"ffn_out{i}")(h)
        x = keras.layers.Add(name=f"res_f{i}")([x, h])
    x = keras.layers.LayerNormalization(name="ln_out")(x)
    return keras.Model(tokens, keras.layers.Dense(vocab, name="logits")(x), name="tiny_lm")


def token_data(count=64, length=12, vocab=32, seed=0):
    """Random token sequences and their next-token targets."""
    rng = np.random.default_rng(seed)
    sequences = rng.integers(0, vocab, (count, length + 1)).astype("int32")
    return sequences[:, :-1], sequences[:, 1:]
