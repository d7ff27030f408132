"""Not a tfmot test: every assertion this suite adapts to a deliberate difference quotes
docs/migrating_from_tfmot.md (`# deliberate difference: "<quote>"`), and the quote must be there
word for word, so that a test cannot drift from what the guide promises users."""

import pathlib
import re

import pytest

SUITE = pathlib.Path(__file__).parent
GUIDE = SUITE.parents[1] / "docs" / "migrating_from_tfmot.md"
MARKER = '# deliberate difference: "'


def _quotes(path):
    """`(line number, quote)` for each marker in `path`; a quote may run over comment lines."""
    lines = path.read_text().splitlines()
    found = []
    for number, line in enumerate(lines):
        if MARKER not in line:
            continue
        text = line.split(MARKER, 1)[1]
        following = number + 1
        while '"' not in text and following < len(lines):
            text += " " + lines[following].strip().removeprefix("#").strip()
            following += 1
        found.append((number + 1, text.split('"', 1)[0]))
    return found


def _normalized(text):
    return re.sub(r"\s+", " ", text).strip()


CASES = [
    (f"{path.name}:{number}", quote)
    for path in sorted(SUITE.glob("test_*.py"))
    if path.name != pathlib.Path(__file__).name
    for number, quote in _quotes(path)
]


def test_the_suite_quotes_the_guide():
    assert len(CASES) > 20


@pytest.mark.parametrize("quote", [quote for _, quote in CASES], ids=[c[0] for c in CASES])
def test_quote_is_in_the_guide(quote):
    assert _normalized(quote) in _normalized(GUIDE.read_text())
