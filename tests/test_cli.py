"""The sequences.cli package: entry points, a parser built without torch, and command modules that
depend on each other only through public names, without cycles."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import sequences.cli

CLI_DIR = Path(sequences.cli.__file__).parent
REPO = CLI_DIR.parent.parent


def _cli_imports(path: Path) -> list[tuple[str, list[str]]]:
    """``(sibling CLI module, imported names)`` for every import of another sequences.cli module."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level == 1 and node.module:
            out.append((node.module, [a.name for a in node.names]))
        elif node.level == 0 and (node.module or "").startswith("sequences.cli."):
            out.append((node.module.split(".")[2], [a.name for a in node.names]))
    return out


def test_python_m_sequences_cli_runs_the_command_line():
    r = subprocess.run([sys.executable, "-m", "sequences.cli", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "usage: viewgp" in r.stdout and "reconstruct" in r.stdout and "age" in r.stdout


def test_building_the_parser_does_not_import_torch():
    code = "import sys; from sequences.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"  # `viewgp --help` stays fast


@pytest.mark.parametrize("path", sorted(CLI_DIR.glob("*.py")), ids=lambda p: p.name)
def test_command_modules_share_only_public_names(path):
    for module, names in _cli_imports(path):
        assert not [n for n in names if n.startswith("_")], f"{path.name} imports private names of {module}"


def test_command_modules_have_no_import_cycle():
    graph = {p.stem: {m for m, _ in _cli_imports(p)} for p in CLI_DIR.glob("*.py")}

    def reaches(start, goal, seen=()):
        return any(m == goal or (m not in seen and reaches(m, goal, seen + (m,))) for m in graph.get(start, ()))

    assert not [m for m in graph if reaches(m, m)]
