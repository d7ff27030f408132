"""The documentation runs and is complete.

1. Every name in the `__all__` of every public namespace has a docstring and a place on its API
   reference page (docs/reference/, written by docs/gen_reference.py from those `__all__`).
2. Every ```python block in the docstrings of public objects (the namespaces, the names in
   their `__all__`, the public methods of those classes) runs, each in a fresh namespace.
3. Every ```python block of docs/*.md runs; the blocks of one page share one namespace and run
   in page order, as a reader would run them.

Fixtures: every example starts in a namespace holding these names (also listed in
docs/contributing.md), created only when the example mentions them, in a fresh temporary working
directory, after `keras.backend.clear_session()` and `keras.utils.set_random_seed(0)`:

    keras, np, ops (keras.ops), kp (keras_prune)
    model    a built Sequential CNN for 8x8x1 inputs, 10 logits: conv1 Conv2D(8, 3, "same"),
             conv2 Conv2D(16, 3), flatten, dense1 Dense(32), logits Dense(10); compiled with
             Adam, sparse categorical cross-entropy on logits and accuracy
    x, y     64 float32 images (64, 8, 8, 1) in [0, 1) and their int32 labels in [0, 10)
    pruned   kp.prune(model, schedule=kp.ConstantSparsity(0.5, begin_step=0, frequency=1)),
             compiled like `model`, its masks set to 50% (kp.pruning.update_masks(pruned, 0))

A block whose first line is `# docs: slow` (training for minutes, TFLite exports) runs only in
the tests marked `slow`; `python -m pytest tests/test_docs.py -m "not slow"` skips them.
"""

import importlib.util
import inspect
import pathlib
import re
import textwrap

import keras
import numpy as np
import pytest

import keras_prune as kp

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SLOW_MARK = "# docs: slow"
FENCE = re.compile(r"^([ \t]*)```python[^\n]*\n(.*?)^\1```", re.S | re.M)


def _load_generator():
    spec = importlib.util.spec_from_file_location("gen_reference", DOCS / "gen_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATOR = _load_generator()
NAMESPACES = [(title, attribute) for _, title, attribute, _ in GENERATOR.NAMESPACES]


def _namespace(attribute):
    return GENERATOR.namespace_module(attribute)


# -- fixtures every example may use -------------------------------------------------------------


def _model():
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1"),
            keras.layers.Conv2D(16, 3, activation="relu", name="conv2"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(32, activation="relu", name="dense1"),
            keras.layers.Dense(10, name="logits"),
        ],
        name="cnn",
    )
    return _compiled(model)


def _compiled(model):
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def _pruned(model):
    pruned = kp.prune(model, schedule=kp.ConstantSparsity(0.5, begin_step=0, frequency=1))
    kp.pruning.update_masks(pruned, 0)
    return _compiled(pruned)


def fixtures(code):
    """The starting namespace of an example: the fixtures its code mentions."""
    names = {"keras": keras, "np": np, "ops": keras.ops, "kp": kp}
    uses = set(re.findall(r"\b\w+\b", code))
    if uses & {"x", "y"}:
        rng = np.random.default_rng(0)
        names["x"] = rng.random((64, 8, 8, 1), dtype=np.float32)
        names["y"] = rng.integers(0, 10, 64).astype("int32")
    if uses & {"model", "pruned"}:
        names["model"] = _model()
    if "pruned" in uses:
        names["pruned"] = _pruned(names["model"])
    return names


# -- collecting examples ------------------------------------------------------------------------


def blocks(text):
    """The ```python blocks of a docstring or page, dedented."""
    return [textwrap.dedent(match.group(2)) for match in FENCE.finditer(text)]


def is_slow(code):
    return code.lstrip().startswith(SLOW_MARK)


def _own_doc(obj):
    """The docstring written on `obj` itself: classes and overriding methods do not inherit
    one here (a method overriding a Keras method without a docstring has none)."""
    if inspect.ismodule(obj):
        return inspect.getdoc(obj)
    doc = getattr(obj, "__doc__", None)
    return inspect.cleandoc(doc) if isinstance(doc, str) else None


def _public_members(cls):
    """Public methods and properties a keras_prune class defines (itself or its keras_prune
    bases), with their qualified names."""
    found = {}
    for base in reversed(cls.__mro__):
        if not base.__module__.startswith("keras_prune"):
            continue
        for name, value in vars(base).items():
            if name.startswith("_"):
                continue
            if isinstance(value, (staticmethod, classmethod)):
                value = value.__func__
            if inspect.isfunction(value) or isinstance(value, property):
                found[name] = (f"{base.__module__}.{base.__qualname__}.{name}", value)
    return found.values()


def documented_objects():
    """`{qualified name: (shown as, object)}` for every public object whose docstring can
    hold examples, each object once."""
    found = {}

    def add(shown, obj):
        key = getattr(obj, "__name__", None) if inspect.ismodule(obj) else None
        if key is None:
            module = getattr(obj, "__module__", None)
            qualname = getattr(obj, "__qualname__", None)
            key = f"{module}.{qualname}" if module and qualname else shown
        found.setdefault(key, (shown, obj))

    for title, attribute in NAMESPACES:
        module = _namespace(attribute)
        add(title, module)
        for name in module.__all__:
            obj = getattr(module, name)
            shown = f"{title}.{name}"
            if inspect.ismodule(obj):
                add(shown, obj)
                for member, value in vars(obj).items():
                    if not member.startswith("_") and getattr(value, "__module__", None) == (
                        obj.__name__
                    ):
                        add(f"{shown}.{member}", value)
            elif inspect.isclass(obj) or callable(obj):
                add(shown, obj)
            if inspect.isclass(obj):
                for qualified, member in _public_members(obj):
                    doc_owner = member.fget if isinstance(member, property) else member
                    found.setdefault(
                        qualified, (f"{shown}.{qualified.rsplit('.', 1)[1]}", doc_owner)
                    )
    return found


def docstring_examples():
    cases = []
    for shown, obj in documented_objects().values():
        doc = _own_doc(obj) or ""
        for number, code in enumerate(blocks(doc)):
            marks = [pytest.mark.slow] if is_slow(code) else []
            cases.append(pytest.param(code, id=f"{shown}[{number}]", marks=marks))
    return cases


def pages():
    return sorted(path for path in DOCS.glob("*.md"))


def page_cases():
    cases = []
    for path in pages():
        found = blocks(path.read_text())
        if not found:
            continue
        cases.append(pytest.param(path, False, id=f"{path.name}"))
        if any(is_slow(code) for code in found):
            cases.append(pytest.param(path, True, id=f"{path.name}[all]", marks=pytest.mark.slow))
    return cases


# -- running ------------------------------------------------------------------------------------


def run(code, namespace, where):
    try:
        exec(compile(code, where, "exec"), namespace)
    except Exception as error:
        numbered = "\n".join(f"{i + 1:3d} {line}" for i, line in enumerate(code.splitlines()))
        raise AssertionError(f"example {where} failed:\n{numbered}\n{error!r}") from error


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """A clean Keras session and an empty working directory for the files examples write."""
    monkeypatch.chdir(tmp_path)
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)


@pytest.mark.parametrize("code", docstring_examples())
def test_docstring_example_runs(code, fresh, request):
    run(code, fixtures(code), request.node.callspec.id)


@pytest.mark.parametrize(("path", "with_slow"), page_cases())
def test_page_examples_run(path, with_slow, fresh):
    found = blocks(path.read_text())
    namespace = fixtures("\n".join(found))
    for number, code in enumerate(found):
        if is_slow(code) and not with_slow:
            continue
        run(code, namespace, f"{path.name} block {number}")


# -- completeness -------------------------------------------------------------------------------


def test_every_namespace_has_a_reference_page():
    exposed = {name for name in kp.__all__ if inspect.ismodule(getattr(kp, name))}
    listed = {attribute for _, attribute in NAMESPACES if attribute}
    assert exposed == listed, (
        "every namespace in kp.__all__ needs a row in docs/gen_reference.py NAMESPACES: "
        f"missing {sorted(exposed - listed)}, unknown {sorted(listed - exposed)}"
    )


@pytest.mark.parametrize(("title", "attribute"), NAMESPACES, ids=[t for t, _ in NAMESPACES])
def test_every_public_name_is_on_its_reference_page(title, attribute):
    page = DOCS / "reference" / GENERATOR.page_for(attribute)
    text = page.read_text() if page.exists() else ""
    missing = [
        name
        for name in _namespace(attribute).__all__
        if f"::: {GENERATOR.identifier(attribute, name)}\n" not in text
        and f"]({GENERATOR.page_for(name)})" not in text
    ]
    assert not missing, (
        f"{title}: {missing} missing from {page.relative_to(ROOT)}; run "
        "`PYTHONPATH=. python docs/gen_reference.py`"
    )


def test_reference_pages_are_current():
    expected = GENERATOR.pages()
    found = {path.name: path.read_text() for path in (DOCS / "reference").glob("*.md")}
    stale = sorted(
        name for name in set(expected) | set(found) if expected.get(name) != found.get(name)
    )
    assert not stale, (
        f"docs/reference/{stale} differ from what docs/gen_reference.py writes; run "
        "`PYTHONPATH=. python docs/gen_reference.py`"
    )


def test_mkdocs_nav_lists_every_reference_page():
    text = (ROOT / "mkdocs.yml").read_text()
    assert GENERATOR.mkdocs_config(text) == text, (
        "mkdocs.yml's API reference nav differs from what docs/gen_reference.py writes; run "
        "`PYTHONPATH=. python docs/gen_reference.py`"
    )


def _attribute_docstring(module, name):
    """The string literal right after `name = ...` in `module`'s source (how mkdocstrings
    documents constants), following `from x import name` re-exports."""
    import ast

    source = inspect.getsource(module)
    tree = ast.parse(source)
    body = tree.body
    for index, node in enumerate(body):
        if isinstance(node, ast.ImportFrom) and any(
            (alias.asname or alias.name) == name for alias in node.names
        ):
            return _attribute_docstring(importlib.import_module(node.module), name)
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            following = body[index + 1] if index + 1 < len(body) else None
            if isinstance(following, ast.Expr) and isinstance(
                getattr(following, "value", None), ast.Constant
            ):
                return following.value.value
            return None
    return None


@pytest.mark.parametrize(("title", "attribute"), NAMESPACES, ids=[t for t, _ in NAMESPACES])
def test_every_public_name_has_a_docstring(title, attribute):
    module = _namespace(attribute)
    assert (module.__doc__ or "").strip(), f"{title} has no module docstring"
    undocumented = []
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.ismodule(obj) or inspect.isclass(obj) or inspect.isroutine(obj):
            doc = _own_doc(obj)
        else:
            doc = _attribute_docstring(module, name)
        if not (doc or "").strip():
            undocumented.append(name)
    assert not undocumented, f"{title}: no docstring on {undocumented}"


def test_examples_were_found():
    # A change to the block syntax must not silently turn the example tests into no-ops.
    assert len(docstring_examples()) > 100
    assert sum(len(blocks(path.read_text())) for path in pages()) > 20


def _layout_tree():
    """The module paths listed in docs/architecture.md's layout tree (indent: 2 per level)."""
    text = (DOCS / "architecture.md").read_text()
    tree = text.split("## Layout", 1)[1].split("```", 2)[1]
    listed, folders = set(), []
    for line in tree.splitlines():
        name = line.strip().split(" ", 1)[0]
        if not name:
            continue
        depth = (len(line) - len(line.lstrip())) // 2
        folders = folders[:depth]
        if name.endswith("/"):
            folders.append(name.rstrip("/"))
        else:
            listed.add("/".join(folders + [name]))
    return listed


def test_architecture_page_lists_every_module():
    package = ROOT / "keras_prune"
    modules = {
        str(path.relative_to(ROOT))
        for path in package.rglob("*.py")
        if path.name != "__init__.py" or path.parent == package
    }
    listed = _layout_tree()
    assert modules == listed, (
        "docs/architecture.md's layout tree is out of date: "
        f"missing {sorted(modules - listed)}, gone {sorted(listed - modules)}"
    )
