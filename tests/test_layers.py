"""Imports run one way: lpg core -> objectives -> training -> evaluation -> command line.

Every ``import`` statement counts, including those inside functions (a
function-level import is still a dependency, only a lazy one). A module may
import its own layer or a lower one; no two modules may import each other,
directly or through others.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("lpg", "objectives", "training", "evaluation")


def layer(module: str) -> int:
    """0 core (``lpg``), 1 objectives, 2 training, 3 evaluation, 4 the command line (``lpg.cli``, ``lpg.commands``)."""
    if module == "lpg.cli" or module.startswith("lpg.commands"):
        return 4
    return {"lpg": 0, "objectives": 1, "training": 2, "evaluation": 3}[module.split(".")[0]]


def project_modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def imports_of(path: Path, module: str, known: set[str]) -> set[str]:
    """The project modules ``path`` imports anywhere in its body (``from a import b`` counts ``a.b`` when a module)."""
    found = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def test_every_import_goes_to_the_same_or_a_lower_layer():
    modules = project_modules()
    known = set(modules)
    upward = [
        f"{module} (layer {layer(module)}) imports {target} (layer {layer(target)})"
        for module, path in sorted(modules.items())
        for target in sorted(imports_of(path, module, known))
        if layer(target) > layer(module)
    ]
    assert not upward, "imports against the layering:\n" + "\n".join(upward)


def test_there_is_no_import_cycle_between_modules():
    modules = project_modules()
    known = set(modules)
    graph = {
        module: {t for t in imports_of(path, module, known) if not module.startswith(t + ".")}
        for module, path in modules.items()
    }  # a package's __init__ importing its own submodules is not a cycle with them
    cycles, state = [], {}

    def visit(module: str, stack: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                cycles.append(" -> ".join([*stack[stack.index(target) :], target]))
            elif target not in state:
                visit(target, [*stack, target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_layer_check_sees_function_level_imports(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from training.loop import final_return\n")
    assert imports_of(source, "lpg.m", {"training", "training.loop", "lpg"}) == {"training.loop"}


DRIVER_LINES = 85  # "about 80": a driver (or any function) longer than this is split into named steps


def _code_lines(node: ast.FunctionDef) -> int:
    """Lines of a function from its ``def`` to its last statement, without its docstring."""
    body = node.body
    docstring = body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant)
    skipped = body[0].end_lineno - body[0].lineno + 1 if docstring and len(body) > 1 else 0
    return body[-1].end_lineno - node.lineno + 1 - skipped


def test_no_function_is_longer_than_about_80_lines():
    long = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({_code_lines(node)} lines)"
        for path in project_modules().values()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _code_lines(node) > DRIVER_LINES
    ]
    assert not long, "functions to split:\n" + "\n".join(long)
