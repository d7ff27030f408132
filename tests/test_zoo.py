"""The model zoo acceptance test: every zoo model through every stage (tests/zoo/).

One test per (model, stage). A test fails when its stage fails and is skipped, with the
stage's reason, when the stage skips (e.g. "prune failed" for the stages after a failed
prune). Models outside `CI_MODELS` are marked slow: run them with `--runslow` (everything) or
`-m slow` (only them). `python benchmarks/model_zoo.py` runs the same stages as one table.
"""

import sys

import pytest

from tests.zoo import models as zoo_models
from tests.zoo import stages

# One model per way kp.prune has broken before, small enough for CI (about 2-3 minutes on two
# cores once every stage passes, the export child processes being most of it).
CI_MODELS = (
    "sequential_cnn",
    "residual_cnn",
    "MobileNetV3Small",
    "lstm_text",
    "transformer_encoder",
    "subclassed",
    "hub_bert",
)

CASES = [
    pytest.param(
        name,
        stage,
        id=f"{name}-{stage}",
        marks=() if name in CI_MODELS else pytest.mark.slow,
    )
    for name in zoo_models.BUILDERS
    for stage in stages.STAGES
]

# The cases of one model run one after another (model-major order), so only the current
# model's run is kept: its stages share the pruned and stripped models, then memory is freed.
_current_run = {}


def _run_for(name):
    if name not in _current_run:
        for previous in _current_run.values():
            previous.release()
        _current_run.clear()
        _current_run[name] = stages.ZooRun(name)
    return _current_run[name]


@pytest.mark.parametrize("name, stage", CASES)
def test_zoo(name, stage):
    result = _run_for(name).result(stage)
    if result.status == "skip":
        pytest.skip(result.reason)
    if result.status != "pass":
        pytest.fail(f"{name} {stage}: {result.detail}", pytrace=False)


def test_ci_models_are_in_the_zoo():
    assert set(CI_MODELS) <= set(zoo_models.BUILDERS)


# -- the harness itself ------------------------------------------------------------------------


def test_an_exception_becomes_a_fail_with_its_traceback():
    def broken(model, inputs):
        raise ZeroDivisionError("no luck")

    result = stages.run_stage(broken, None, None)

    assert result.status == "fail"
    assert result.reason == "ZeroDivisionError: no luck"
    assert "Traceback" in result.detail and "in broken" in result.detail


def test_a_crashed_child_is_reported_with_its_signal(tmp_path):
    command = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"]

    result = stages.run_child(command, str(tmp_path / "report.json"))

    assert result.status == "fail"
    assert result.reason == "converter crashed (signal 11, SIGSEGV)"


def test_a_failed_prerequisite_skips_the_stages_after_it():
    def unbuildable():
        raise ImportError("missing package")

    run = stages.ZooRun("unbuildable", builder=unbuildable)
    assert run.result("prune").status == "fail"
    assert run.result("prune").reason.startswith("model build failed: ImportError")

    def without_prune():
        return None, None, "no model"

    run = stages.ZooRun("no_model", builder=without_prune)
    assert run.result("prune").status == "fail"
    assert run.result("strip").status == "skip"
    assert run.result("export").reason == "prune failed"
