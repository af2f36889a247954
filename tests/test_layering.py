"""The import direction of docs/design.md ("Layering"), held by reading every module's imports (top-level and inside
functions) with pyproject's package-dir mapping applied: static tools cannot see through the mapping, so the
repository checks it itself.

    modeling_nucel <- tokenization <- core <- training <- benchmarks <- model_cards <- nucel

Each folder imports only folders to its left (and itself), no two files import each other in a circle, and
modeling_nucel/ imports nothing of the package but its own siblings (it is copied into every saved model folder).
"""

import ast
from collections import defaultdict
from pathlib import Path

import tomllib

REPOSITORY = Path(__file__).resolve().parent.parent
LAYERS = ("modeling_nucel", "tokenization", "core", "training", "benchmarks", "model_cards", "nucel")


def package_folders() -> dict[str, str]:
    """Package name -> repository folder, from pyproject.toml."""
    project = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())
    return dict(project["tool"]["setuptools"]["package-dir"])


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    modules = {}
    for package, folder in package_folders().items():
        for path in (REPOSITORY / folder).glob("*.py"):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            modules[name] = path.relative_to(REPOSITORY)
    return modules


def imported_modules(path: Path, module: str, modules: dict[str, Path]) -> set[str]:
    """The package's modules that the file at `path` imports, anywhere in it."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse((REPOSITORY / path).read_text())):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            candidates = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(name for name in candidates if name in modules and name != module)
    return found


def import_graph() -> tuple[dict[str, set[str]], dict[str, Path]]:
    modules = module_files()
    return {module: imported_modules(path, module, modules) for module, path in modules.items()}, modules


def folder_of(path: Path) -> str:
    return path.parts[0]


def test_every_package_folder_has_a_layer():
    assert sorted(package_folders().values()) == sorted(LAYERS)


def test_folders_import_only_folders_to_their_left():
    graph, modules = import_graph()
    against = []
    for module, targets in graph.items():
        source = folder_of(modules[module])
        for target in targets:
            if LAYERS.index(folder_of(modules[target])) > LAYERS.index(source):
                against.append(f"{modules[module]} imports {modules[target]}")
    assert not against, "imports against the direction " + " <- ".join(LAYERS) + ":\n" + "\n".join(sorted(against))


def test_no_file_imports_itself_in_a_circle():
    graph, modules = import_graph()
    graph = {
        module: {t for t in targets if not t.endswith("__init__") and modules[t].name != "__init__.py"}
        for module, targets in graph.items()
        if modules[module].name != "__init__.py"
    }
    state, cycles = {}, []

    def visit(module, trail):
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                cycles.append(" -> ".join(str(modules[m]) for m in trail[trail.index(target) :] + [target]))
            elif target not in state:
                visit(target, trail + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_modeling_code_imports_only_its_siblings():
    """modeling_nucel/ is copied into every saved folder: it may import torch, transformers and its own files only."""
    graph, modules = import_graph()
    outside = defaultdict(set)
    for module, targets in graph.items():
        if folder_of(modules[module]) == "modeling_nucel":
            for target in targets:
                if folder_of(modules[target]) != "modeling_nucel":
                    outside[str(modules[module])].add(str(modules[target]))
    for path in (REPOSITORY / "modeling_nucel").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "nucel":
                outside[path.name].add(node.module)
    assert not outside, dict(outside)


def test_the_space_app_runs_without_the_package():
    tree = ast.parse((REPOSITORY / "space" / "app.py").read_text())
    imported = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "nucel" not in imported
