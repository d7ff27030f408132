"""Every example runs to the end (shortened where it has a flag for it) and prints its result.

The examples are the runnable documentation of the public names, so a change that breaks one
fails here rather than in a user's hands. Each runs in its own process, as a user would run it.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

EXAMPLES = {
    # script, arguments, a line the finished run prints
    "auto_compress": (["--quick", "--out", "out"], "auto-compressed test accuracy"),
    "digits_demo": (
        # The export is covered by tests/test_demo.py (slow); here the path up to the report.
        ["--epochs", "2", "--dense-epochs", "1", "--targets", "--out", "out"],
        "nonzero parameters",
    ),
    "distill_pruning": (
        ["--epochs", "2", "--teacher-epochs", "2", "--out", "out"],
        "stripped student test accuracy",
    ),
    "dynamic": (["--quick", "--out", "out"], "early exit on LiteRT: test accuracy"),
    "export_tflite": (["--out", "out"], "test accuracy through tflm"),
    "methods_tour": (["--quick"], "hidden neurons kept"),
    "posttraining": (["--quick"], "one transformer layer removed"),
    "structured_shrink": (["--epochs", "1"], "one-shot prune_channels"),
}


def test_every_example_is_covered():
    assert set(EXAMPLES) == {path.stem for path in (ROOT / "examples").glob("*.py")}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_runs(name, tmp_path):
    arguments, expected = EXAMPLES[name]
    environment = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / f"{name}.py"), *arguments],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert expected in result.stdout, result.stdout[-3000:]
