"""The package's layers point down only, and no modules import each other in a cycle.

Every ``import`` of an ``mjepa`` module counts, at module level or inside a function: a deferred import is still a
dependency. Layers, lowest first (a module may import its own layer and those below):

0. core: configuration schemas and small shared pieces (``config``, ``terms``, ``masks``, ``flops``,
   ``pretrain_config``, ``typed_config``, ``seeding``, ``precision``, ``distributed``, ``checkpoint_file``,
   ``commands``, ``version``)
1. ``models``, ``data`` (independent of each other)
2. ``objective``, ``cost_model``, ``packaging``
3. ``train``; beside it, never importing it: ``eval``, the embedding API (``api``, ``embedding_inputs``,
   ``extract``) and its harness adapters (``hear``, ``xares``, ``mteb_encoder``)
4. ``experiments``, the command line (``cli``) and the package's front door (``mjepa/__init__``)

Inside ``data`` the topics have layers of their own (``DATA_LAYERS``): the item schema and byte sources, then
decoding, then the model-input front end, then manifests' tools, shards and loading, then the generated datasets,
which may use everything below them and which nothing below them uses.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src"

LAYERS = {
    0: (
        "mjepa.config",
        "mjepa.terms",
        "mjepa.masks",
        "mjepa.flops",
        "mjepa.pretrain_config",
        "mjepa.typed_config",
        "mjepa.seeding",
        "mjepa.precision",
        "mjepa.distributed",
        "mjepa.checkpoint_file",
        "mjepa.commands",
        "mjepa.version",
        "mjepa.configs",
        "mjepa.grids",
    ),
    1: ("mjepa.models", "mjepa.data"),
    2: ("mjepa.objective", "mjepa.cost_model", "mjepa.packaging"),
    3: (
        "mjepa.train",
        "mjepa.eval",
        "mjepa.api",
        "mjepa.embedding_inputs",
        "mjepa.embedding_windows",
        "mjepa.extract",
        "mjepa.hear",
        "mjepa.xares",
        "mjepa.mteb_encoder",
    ),
    4: ("mjepa.experiments", "mjepa.cli", "mjepa"),
}
DATA_LAYERS = {
    0: ("mjepa.data", "mjepa.data.batch", "mjepa.data.manifests.manifest", "mjepa.data.media.members"),
    1: ("mjepa.data.media",),
    2: ("mjepa.data.preprocess",),
    3: ("mjepa.data.manifests", "mjepa.data.shards", "mjepa.data.loading"),
    4: (
        "mjepa.data.atari",
        "mjepa.data.instruments",
        "mjepa.data.open_audio",
        "mjepa.data.synthetic",
        "mjepa.data.vizdoom",
    ),
}
# Siblings that must not import each other although they share a layer.
SEPARATE = [
    ("mjepa.models", "mjepa.data"),
    ("mjepa.data", "mjepa.models"),
    *(
        (user, "mjepa.train")
        for user in (
            "mjepa.eval",
            "mjepa.api",
            "mjepa.embedding_inputs",
            "mjepa.embedding_windows",
            "mjepa.extract",
            "mjepa.hear",
            "mjepa.xares",
            "mjepa.mteb_encoder",
        )
    ),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Each mjepa module and the mjepa modules it imports (``from mjepa.x import y`` counts ``mjepa.x.y`` when that is
    a module)."""
    modules = {module_name(p): p for p in (SOURCE / "mjepa").rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "mjepa":
                targets.add(node.module)
                targets |= {
                    f"{node.module}.{alias.name}" for alias in node.names if f"{node.module}.{alias.name}" in modules
                }
            elif isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names if alias.name.split(".")[0] == "mjepa"}
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def layer_of(module: str, layers: dict[int, tuple[str, ...]] = LAYERS) -> tuple[int, str]:
    """The layer and the most specific prefix that places ``module``."""
    best = None
    for layer, prefixes in layers.items():
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > len(best[1])):
                best = (layer, prefix)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to the layers in tests/test_layering.py")
    return best


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for source, targets in graph.items():
        source_layer, source_prefix = layer_of(source)
        for target in targets:
            target_layer, target_prefix = layer_of(target)
            if target_layer > source_layer or (source_prefix, target_prefix) in SEPARATE:
                found.append(f"{source} (layer {source_layer}) imports {target} (layer {target_layer})")
    return sorted(found)


def data_upward_imports(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for source, targets in graph.items():
        if not (source == "mjepa.data" or source.startswith("mjepa.data.")):
            continue
        source_layer, _ = layer_of(source, DATA_LAYERS)
        for target in targets:
            if target.startswith("mjepa.data.") and layer_of(target, DATA_LAYERS)[0] > source_layer:
                found.append(
                    f"{source} (data layer {source_layer}) imports {target} "
                    f"(data layer {layer_of(target, DATA_LAYERS)[0]})"
                )
    return sorted(found)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_module_has_a_layer():
    for module in import_graph():
        layer_of(module)


def test_imports_point_down_only():
    assert upward_imports(import_graph()) == []


def test_data_topics_point_down_and_generated_datasets_sit_above_decoding():
    graph = import_graph()
    for module in graph:
        if module.startswith("mjepa.data."):
            layer_of(module, DATA_LAYERS)
    assert data_upward_imports(graph) == []
    assert data_upward_imports(
        {"mjepa.data.media.decode": {"mjepa.data.atari.generate"}, "mjepa.data.atari.generate": set()}
    )  # the rule catches a decoder using a dataset


def test_no_import_cycles():
    assert cycles(import_graph()) == []


@pytest.mark.parametrize(
    "graph,expected",
    [
        ({"mjepa.models.a": {"mjepa.train.b"}, "mjepa.train.b": set()}, 1),
        ({"mjepa.eval.a": {"mjepa.train.b"}, "mjepa.train.b": set()}, 1),
        ({"mjepa.train.a": {"mjepa.eval.b"}, "mjepa.eval.b": set()}, 0),
    ],
)
def test_the_rule_catches_what_it_should(graph, expected):
    assert len(upward_imports(graph)) == expected


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"mjepa.a": {"mjepa.b"}, "mjepa.b": {"mjepa.c"}, "mjepa.c": {"mjepa.a"}}) == [
        ["mjepa.a", "mjepa.b", "mjepa.c"]
    ]
