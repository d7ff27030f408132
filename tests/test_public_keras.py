"""keras_prune reads Keras through its public API only: no `keras.src`, no private attributes.

Private Keras internals change between releases (the `_nodes_by_depth` / `_keras_history` /
`Sequential._functional` of Keras 3.0-3.x); graph code goes through
`keras_prune.graph.tracing.trace` instead.
"""

import pathlib
import re

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "keras_prune"

# Private attributes of Keras objects that keras_prune code once used.
FORBIDDEN_ATTRIBUTES = (
    "_nodes_by_depth",
    "_functional",
    "_keras_history",
    "_inbound_nodes",
    "_outbound_nodes",
    "_layers",
    "_operations",
    "_bias_mask_index",
    "_keras_mask",
    "_build_shapes_dict",
    "_inputs_struct",
    "_outputs_struct",
    "_tracker",
    "_self_tracked_trackables",
)
FORBIDDEN = [
    ("keras.src", re.compile(r"\bkeras\.src\b")),
    ("node.arguments.fill_in", re.compile(r"\.fill_in\(")),
] + [
    # `obj._name` and `getattr(obj, "_name")`.
    (name, re.compile(rf"(\.|[\"']){re.escape(name)}\b"))
    for name in FORBIDDEN_ATTRIBUTES
]


def test_no_keras_src_and_no_private_keras_attributes():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            for name, pattern in FORBIDDEN:
                if pattern.search(line):
                    found.append(f"{path.relative_to(PACKAGE.parent)}:{number}: {name}")
    assert not found, "Private Keras used:\n" + "\n".join(found)
