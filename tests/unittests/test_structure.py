"""The package's layout: no import cycles, no private names across modules."""

import ast
import os

import speechbrain_meta

PACKAGE = os.path.dirname(speechbrain_meta.__file__)
ROOT = os.path.dirname(PACKAGE)


def _module_name(path):
    rel = os.path.relpath(path, ROOT)[: -len(".py")].replace(os.sep, ".")
    return rel[: -len(".__init__")] if rel.endswith(".__init__") else rel


def _sources(folders=(PACKAGE,)):
    for folder in folders:
        for base, _, files in os.walk(folder):
            for name in files:
                if name.endswith(".py"):
                    yield os.path.join(base, name)


def _imports(path):
    """(module imported, names imported) of every import, at any depth."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module, [a.name for a in node.names]


def _graph():
    modules = {_module_name(p): p for p in _sources()}
    graph = {}
    for name, path in modules.items():
        edges = set()
        for module, names in _imports(path):
            if not module.startswith("speechbrain_meta"):
                continue
            # "from package import submodule" imports the submodule.
            for sub in names:
                if f"{module}.{sub}" in modules:
                    edges.add(f"{module}.{sub}")
            if module in modules and module != name:
                edges.add(module)
        graph[name] = edges
    return graph


def _cycle(graph):
    """A cycle of the graph as a list of modules, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_import_graph_has_no_cycle():
    graph = _graph()
    # A package __init__ re-exports its modules (an edge down, not a cycle
    # through its users): the graph below leaves the package roots out.
    inner = {
        m: {e for e in edges if not _is_package(e)}
        for m, edges in graph.items()
        if not _is_package(m)
    }
    assert _cycle(inner) is None, _cycle(inner)
    # The checker finds a cycle when there is one.
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def _is_package(module):
    return os.path.exists(os.path.join(ROOT, *module.split("."), "__init__.py"))


def test_naming_imports_nothing_of_the_package():
    assert _graph()["speechbrain_meta.naming"] == set()


def test_the_engine_does_not_know_the_brains_or_a_loss():
    graph = _graph()
    for module in ("speechbrain_meta.inner", "speechbrain_meta.update_rules"):
        assert not any(
            e.startswith(("speechbrain_meta.brains", "speechbrain_meta.losses"))
            for e in graph[module]
        ), (module, graph[module])


def test_no_private_name_is_imported_from_another_module():
    folders = [PACKAGE] + [
        os.path.join(ROOT, d) for d in ("recipes", "benchmarks", "scripts")
    ]
    found = []
    for path in _sources(folders):
        for module, names in _imports(path):
            if module.startswith("speechbrain_meta"):
                found += [(path, module, n) for n in names if n.startswith("_")]
    assert not found
