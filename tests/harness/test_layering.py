"""Layering: the leaderboard depends on the harness, never the reverse, and the nano world is one provider
among others: no core module imports it.  Checked on the import statements of every module (an AST scan)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: the nano provider: the only modules outside harness/nano/ that may import it
NANO_PROVIDER = {"plugins/nano_world.py", "plugins/nano_cli.py"}


def _imports(path: Path) -> set[str]:
    """Every module named by an import statement of ``path`` (top level or inside functions)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _modules(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def _offenders(files: list[Path], forbidden: str, allowed: set[str] = frozenset()) -> list[str]:
    out = []
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        hits = sorted(n for n in _imports(path) if n == forbidden or n.startswith(forbidden + "."))
        if hits and rel not in allowed:
            out.append(f"{rel}: {hits[0]}")
    return out


def test_the_harness_never_imports_the_leaderboard():
    assert _offenders(_modules("harness"), "filterbench.leaderboard") == []


def test_no_core_module_imports_the_nano_world():
    core = [p for p in _modules("harness", "plugins", "leaderboard", "baselines")
            if "harness/nano/" not in p.relative_to(ROOT).as_posix()]
    assert _offenders(core, "filterbench.harness.nano", NANO_PROVIDER) == []


def test_the_scan_sees_imports_inside_functions(tmp_path):
    """The scan itself: an import buried in a function body is found (so the tests above can fail)."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from filterbench.leaderboard.records import load_records\n")
    assert "filterbench.leaderboard.records" in _imports(module)
