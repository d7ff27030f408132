"""No keras_prune module grows past about 600 lines without saying why.

A module longer than `LIMIT` lines passes only if its module docstring has a paragraph that
starts with `REASON` and explains why it stays one module (e.g. one class whose methods share
state, one parser of one file format). Otherwise split it: one concept per module, file named
after it (docs/architecture.md).
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "keras_prune"
LIMIT = 600
REASON = "Why one long module:"


def modules():
    return sorted(PACKAGE.rglob("*.py"))


def line_count(path):
    return len(path.read_text().splitlines())


def states_a_reason(path):
    docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
    return any(
        paragraph.strip().startswith(REASON) and len(paragraph.strip()) > len(REASON) + 20
        for paragraph in docstring.split("\n\n")
    )


def test_modules_were_found():
    assert len(modules()) > 50


@pytest.mark.parametrize("path", modules(), ids=lambda path: str(path.relative_to(ROOT)))
def test_module_is_short_or_says_why(path):
    lines = line_count(path)
    if lines <= LIMIT:
        return
    assert states_a_reason(path), (
        f"{path.relative_to(ROOT)} has {lines} lines (limit {LIMIT}): split it into one module "
        f"per concept, or start a paragraph of its module docstring with {REASON!r} and say why"
    )
