"""Packaging for keras-prune: pruning for Keras 3, exported to TFLite."""

from setuptools import find_packages, setup

EXPORT = ["ai-edge-litert>=2.0", "tflite-micro"]
EXAMPLES = ["scikit-learn"]
# kp.auto.search runs its studies with Optuna (NSGA-II, TPE; its GP sampler also needs torch).
AUTO = ["optuna>=5.0"]
# PNG charts (sensitivity curves, latency bottlenecks, Pareto fronts).
PLOTS = ["matplotlib"]
TEST = EXPORT + EXAMPLES + AUTO + PLOTS + [
    "pytest",
    "hypothesis",
    # Parity oracle only: keras_prune never imports these.
    "tensorflow-model-optimization==0.8.*",
    "tf-keras",
    # A second Keras backend, so tests/test_backends.py trains on JAX too (torch's wheels are
    # too large for CI; that test skips without it).
    "jax==0.10.2",
    "jaxlib==0.10.2",
]

setup(
    name="keras-prune",
    version="0.1.0",
    description="Neural-network pruning for Keras 3, exported to TFLite / LiteRT.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["keras_prune", "keras_prune.*"]),
    python_requires=">=3.10",
    install_requires=["keras>=3.8", "numpy", "tensorflow>=2.16"],
    extras_require={
        "export": EXPORT,
        "examples": EXAMPLES,
        "auto": AUTO + EXPORT,
        "plots": PLOTS,
        "test": TEST,
        "lint": ["ruff"],
    },
    entry_points={"console_scripts": ["keras-prune=keras_prune.cli:main"]},
    license="Apache-2.0",
)
