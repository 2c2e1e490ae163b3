"""Data flows one way: a stage imports only the base, the store and the stages before it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "digestbot"

# Same level: may not import each other. Higher numbers may import lower ones.
LEVELS = {
    "clock": 0,
    "errors": 0,
    "states": 0,
    "config": 0,
    "periods": 0,
    "resources": 0,
    "signals": 0,
    "textutil": 0,
    "tokens": 0,
    "files": 0,
    "xmlsafe": 0,
    "store": 1,
    "ingest": 2,
    "fetch": 2,
    "scoring": 3,
    "render": 4,
    "deliver": 5,
    "pipeline": 6,
    "schedule": 7,
    "web": 7,
    "cli": 9,
}


def _unit(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "digestbot" or len(parts) < 2:
        return None
    return parts[1]


def _imports(path: Path) -> list[tuple[int, str]]:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    package = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append((node.lineno, name))
    return out


def test_stages_import_only_lower_levels() -> None:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        rel = path.relative_to(PACKAGE)
        unit = rel.parts[0].removesuffix(".py")
        if unit in ("__init__", "__main__"):
            continue
        assert unit in LEVELS, f"{rel}: new top-level module; give it a level in LEVELS"
        for line, module in _imports(path):
            target = _unit(module)
            if target is None or target == unit:
                continue
            if LEVELS[unit] == 0 and LEVELS.get(target, 0) == 0:
                continue  # the base modules (errors, config...) may use each other
            if LEVELS.get(target, 0) >= LEVELS[unit]:
                problems.append(f"digestbot/{rel}:{line} ({unit}) imports {module}")
    assert not problems, "imports against the flow:\n" + "\n".join(problems)
