"""Packaging for keras-prune: pruning for Keras 3, exported to TFLite.

`pip install keras-prune` needs only Keras and NumPy: pruning and training run on any Keras
backend without TensorFlow. TensorFlow comes with the `export` extra, where TFLite lives.
"""

from setuptools import find_packages, setup

# TFLite conversion (TensorFlow) and the runtimes every export is checked on.
EXPORT = ["tensorflow>=2.16", "ai-edge-litert>=2.0", "tflite-micro"]
PLOTS = ["matplotlib"]
# kp.auto.search runs its studies with Optuna (NSGA-II, TPE; its GP sampler also needs torch);
# kp.auto.profile measures on the export runtimes; charts need matplotlib.
AUTO = EXPORT + PLOTS + ["optuna>=5.0"]
# What the README's first command needs: the demo and every script in examples/.
EXAMPLES = AUTO + ["scikit-learn"]
# The docs site (mkdocs.yml): theme, API reference from the docstrings, cross-references.
DOCS = [
    "mkdocs>=1.6",
    "mkdocs-material>=9.5",
    "mkdocstrings>=0.29",
    "mkdocstrings-python>=1.16",
    "mkdocs-autorefs>=1.4",
    "pymdown-extensions>=10",
]
LINT = ["ruff", "import-linter"]
TEST = EXAMPLES + LINT + DOCS + [
    "pytest",
    # The test command runs the suite on one worker process per core (2.2x faster on 2 cores:
    # much of a test's time is TensorFlow's single-threaded Python and converter subprocesses).
    "pytest-xdist",
    "hypothesis",
    # Parity oracle only: keras_prune never imports these.
    "tensorflow-model-optimization==0.8.*",
    "tf-keras",
    # A second Keras backend, so tests/test_backends.py trains on JAX too (torch's wheels are
    # too large for CI; that test skips without it).
    "jax==0.10.2",
    "jaxlib==0.10.2",
    # Backbones built from small configs (BERT, ViT, ...) for tracing, MACs and export tests.
    "keras-hub",
]

setup(
    name="keras-prune",
    version="0.1.0",
    description="Neural-network pruning for Keras 3, exported to TFLite / LiteRT.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["keras_prune", "keras_prune.*"]),
    python_requires=">=3.10",
    install_requires=["keras>=3.8", "numpy"],
    extras_require={
        "export": EXPORT,
        "plots": PLOTS,
        "examples": EXAMPLES,
        "auto": AUTO,
        "docs": DOCS,
        "lint": LINT,
        "test": TEST,
    },
    entry_points={"console_scripts": ["keras-prune=keras_prune.cli:main"]},
    license="Apache-2.0",
)
