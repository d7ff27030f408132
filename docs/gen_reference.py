"""Write the API reference pages, docs/reference/*.md, from the `__all__` of every namespace.

    PYTHONPATH=. python docs/gen_reference.py

One page per public namespace in `NAMESPACES`; each page renders the namespace's docstring, then
every name in its `__all__` (mkdocstrings reads the docstrings). The script also writes the
"API reference" part of mkdocs.yml's `nav`. tests/test_docs.py fails when a namespace in
`kp.__all__` has no row in `NAMESPACES`, or when a page or the nav differs from what this script
writes: after adding a namespace or changing an `__all__`, add the row and run the script.
"""

import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = pathlib.Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "reference"
MKDOCS = ROOT / "mkdocs.yml"
NAV_START = (
    "  # API reference: written by docs/gen_reference.py from its NAMESPACES; do not edit.\n"
)
NAV_END = "  # end of API reference\n"

# (page file, namespace as users write it, attribute path under keras_prune, one-line summary)
# A new namespace (kp.<name> in kp.__all__) is one more row here, then run this script.
NAMESPACES = [
    ("kp.md", "kp", "", "the everyday calls"),
    ("schedules.md", "kp.schedules", "schedules", "how sparsity grows with the training step"),
    ("granularity.md", "kp.granularity", "granularity", "what a mask removes at once"),
    ("mask_types.md", "kp.mask_types", "mask_types", "binary, learnable and gated masks"),
    ("criteria.md", "kp.criteria", "criteria", "how weights are ranked"),
    ("allocation.md", "kp.allocation", "allocation", "how sparsity is spread across layers"),
    ("masks.md", "kp.masks", "masks", "pure mask functions"),
    ("regularizers.md", "kp.regularizers", "regularizers", "sparsity-inducing penalties"),
    ("layers.md", "kp.layers", "layers", "the wrapper and which weights a layer prunes"),
    ("graph.md", "kp.graph", "graph", "tracing, copying and channel groups"),
    ("engine.md", "kp.engine", "engine", "the mask engine and gradient statistics"),
    ("pruning.md", "kp.pruning", "pruning", "whole-model prune, strip, one shot"),
    ("callbacks.md", "kp.callbacks", "callbacks", "`model.fit` callbacks"),
    ("methods.md", "kp.methods", "methods", "lottery tickets, SET, RigL, penalties"),
    ("surgery.md", "kp.surgery", "surgery", "remove channels, heads, neurons and blocks for real"),
    ("distill.md", "kp.distill", "distill", "distillation-aware pruning"),
    ("reporting.md", "kp.reporting", "reporting", "summaries, MACs, comparisons, pictures"),
    ("export.md", "kp.export", "export", "TFLite export checked on LiteRT and TFLM"),
    ("auto.md", "kp.auto", "auto", "sensitivity, latency profiles, Pareto search"),
    ("dynamic.md", "kp.dynamic", "dynamic", "slimmable widths, early exit, channel gates"),
    ("posttraining.md", "kp.posttraining", "posttraining", "SparseGPT, Wanda, magnitude one shot"),
    ("tfmot.md", "kp.tfmot", "tfmot", "tensorflow-model-optimization's names"),
]


def namespace_module(attribute):
    import keras_prune

    return keras_prune if not attribute else getattr(keras_prune, attribute)


def identifier(attribute, name=None):
    """The path mkdocstrings resolves: the namespace as users reach it (`keras_prune.schedules`
    is the alias of `keras_prune.core.schedules`)."""
    parts = ["keras_prune"] + ([attribute] if attribute else []) + ([name] if name else [])
    return ".".join(parts)


def page_for(attribute):
    """The reference page of the namespace `kp.<attribute>` (None if it has none)."""
    for page, _, known, _ in NAMESPACES:
        if known == attribute:
            return page
    return None


def render(page, title, attribute, summary):
    import inspect

    module = namespace_module(attribute)
    names = list(module.__all__)
    lines = [
        f"# `{title}`: {summary}",
        "",
        "<!-- Written by docs/gen_reference.py from the namespace's __all__; do not edit. -->",
        "",
        f"::: {identifier(attribute)}",
        "    options:",
        "      members: false",
        "      show_root_heading: false",
        "      show_root_toc_entry: false",
        "",
    ]
    namespaces = [n for n in names if inspect.ismodule(getattr(module, n))]
    members = [n for n in names if n not in namespaces]
    if namespaces:
        lines += ["## Namespaces", ""]
        for name in namespaces:
            target = page_for(name)
            if target is not None:
                lines.append(f"- [`{title}.{name}`]({target}): {dict(_summaries())[name]}")
            else:
                lines.append(f"- [`{title}.{name}`](#{identifier(attribute, name)})")
        lines.append("")
    for name in members:
        lines += [f"::: {identifier(attribute, name)}", ""]
    for name in namespaces:
        if page_for(name) is None:  # a module inside a namespace (kp.reporting.macs)
            lines += [
                f"::: {identifier(attribute, name)}",
                "    options:",
                "      members: true",
                "",
            ]
    return "\n".join(lines)


def _summaries():
    return [(attribute, summary) for _, _, attribute, summary in NAMESPACES]


def index():
    lines = [
        "# API reference",
        "",
        "<!-- Written by docs/gen_reference.py; do not edit. -->",
        "",
        "Every public name of keras_prune, one page per namespace, generated from the",
        "namespace's `__all__` and the docstrings. `import keras_prune as kp`; everything else is",
        "reached through these namespaces (see [Where is X](../architecture.md) for which layer",
        "owns what).",
        "",
        "| namespace | what it holds |",
        "| --- | --- |",
    ]
    for page, title, _, summary in NAMESPACES:
        lines.append(f"| [`{title}`]({page}) | {summary} |")
    lines.append("")
    return "\n".join(lines)


def pages():
    """`{file name: text}` of every reference page."""
    written = {"index.md": index()}
    for page, title, attribute, summary in NAMESPACES:
        written[page] = render(page, title, attribute, summary)
    return written


def nav():
    """The "API reference" entries of mkdocs.yml's `nav`, between the marker comments."""
    lines = [NAV_START, "  - API reference:\n", "      - reference/index.md\n"]
    lines += [f"      - {title}: reference/{page}\n" for page, title, _, _ in NAMESPACES]
    return "".join(lines) + NAV_END


def mkdocs_config(text):
    """`text` (mkdocs.yml) with its API reference nav replaced by `nav()`."""
    if NAV_START not in text or NAV_END not in text:
        raise ValueError(f"mkdocs.yml lost the marker comments {NAV_START!r} / {NAV_END!r}")
    before, rest = text.split(NAV_START, 1)
    after = rest.split(NAV_END, 1)[1]
    return before + nav() + after


def main():
    sys.path.insert(0, str(ROOT))
    MKDOCS.write_text(mkdocs_config(MKDOCS.read_text()))
    REFERENCE.mkdir(exist_ok=True)
    expected = pages()
    for stale in REFERENCE.glob("*.md"):
        if stale.name not in expected:
            stale.unlink()
    for name, text in expected.items():
        (REFERENCE / name).write_text(text)
    print(f"wrote {len(expected)} pages in {REFERENCE.relative_to(ROOT)} and the nav in mkdocs.yml")


if __name__ == "__main__":
    main()
