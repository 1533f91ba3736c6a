"""The package reads top to bottom: each module imports only from its own layer or the layers below, and no
modules import each other in a circle (docs/architecture.md draws the layers)."""

import ast
from pathlib import Path

import clipwhisper

PACKAGE = Path(clipwhisper.__file__).parent
# bottom to top; a module's layer is that of its first name below the package
LAYERS = [
    {"errors", "bounded_yaml", "modality", "config"},
    {"runtime"},
    {"data"},
    {"model"},
    {"training", "inference", "report", "prepare", "synth", "demo", "manifest_commands", "manifest_from_folder"},
    {"cli", "__main__", "__init__"},
]


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def _imports(path: Path) -> set[str]:
    """The package modules a file imports, at any depth of the file (lazy imports too)."""
    module, found = _module(path), set()
    base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            target = base[:len(base) - node.level + 1] + (node.module.split(".") if node.module else [])
            for alias in node.names:
                submodule = PACKAGE.joinpath(*target, alias.name)
                named = target + [alias.name] if submodule.with_suffix(".py").exists() or submodule.is_dir() else target
                found.add(".".join(named) or "__init__")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("clipwhisper."):
            found.add(node.module.removeprefix("clipwhisper."))
    return found - {module}


GRAPH = {_module(path): _imports(path) for path in PACKAGE.rglob("*.py")}


def _layer(module: str) -> int:
    head = module.split(".")[0]
    return next(index for index, names in enumerate(LAYERS) if head in names)


def test_every_module_has_a_layer():
    assert all(isinstance(_layer(module), int) for module in GRAPH)


def test_no_module_imports_from_a_layer_above_it():
    upward = sorted(f"{module} -> {target}" for module, targets in GRAPH.items() for target in targets
                    if _layer(target) > _layer(module))
    assert upward == []


def test_no_modules_import_each_other_in_a_circle():
    def reaches(start: str, goal: str, seen: set) -> bool:
        for target in GRAPH.get(start, ()):
            if target == goal or (target not in seen and not seen.add(target) and reaches(target, goal, seen)):
                return True
        return False
    circles = sorted(module for module in GRAPH if module != "__init__" and reaches(module, module, set()))
    assert circles == []
