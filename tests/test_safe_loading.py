"""Every file the project reads is loaded without running code from it: torch files with ``weights_only=True``,
YAML with ``safe_load``, numpy files without pickles, and no ``pickle`` at all (the tests, which read only what
they wrote, are not scanned)."""

import ast

import pytest
from conftest import REPO_ROOT

SOURCES = sorted(path for path in REPO_ROOT.rglob("*.py")
                 if not {".venv", "tests", "build"} & set(path.relative_to(REPO_ROOT).parts[:-1])
                 and not any(part.startswith(".") for part in path.relative_to(REPO_ROOT).parts))
SAFE_YAML = {"safe_load", "safe_load_all", "safe_dump", "safe_dump_all", "dump", "dump_all"}


def keyword(call: ast.Call, name: str) -> object:
    """The constant value of keyword ``name`` of ``call`` (None if absent, ``...`` if not a constant)."""
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value.value if isinstance(kw.value, ast.Constant) else ...
    return None


def unsafe_loads(tree: ast.AST) -> list[str]:
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in ("torch", "yaml", "pickle", "numpy"):
            names = {alias.name for alias in node.names} & {"load", "loads", "full_load", "unsafe_load"}
            problems += [f"line {node.lineno}: from {node.module} import {name}" for name in sorted(names)]
        elif isinstance(node, ast.Import):
            problems += [f"line {node.lineno}: import pickle" for alias in node.names if alias.name == "pickle"]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and isinstance(node.func.value, ast.Name):
            module, function = node.func.value.id, node.func.attr
            if module == "torch" and function == "load" and keyword(node, "weights_only") is not True:
                problems.append(f"line {node.lineno}: torch.load without weights_only=True")
            elif module == "yaml" and function not in SAFE_YAML:
                problems.append(f"line {node.lineno}: yaml.{function} (use yaml.safe_load)")
            elif module in ("np", "numpy") and function == "load" \
                    and keyword(node, "allow_pickle") not in (None, False):
                problems.append(f"line {node.lineno}: np.load with allow_pickle")
    return problems


def test_the_scan_covers_the_project():
    names = {path.relative_to(REPO_ROOT).as_posix() for path in SOURCES}
    assert {"restore_gym/toolbox.py", "restore_gym/records.py", "restore_gym/data.py"} <= names
    assert not any(name.startswith(("tests/", ".venv/")) for name in names)


def test_the_scan_sees_unsafe_loads():
    code = """
import pickle
from yaml import load
torch.load(path)
torch.load(path, weights_only=False)
torch.load(path, weights_only=flag)
yaml.load(text, Loader=yaml.Loader)
yaml.unsafe_load(text)
np.load(path, allow_pickle=True)
torch.load(path, map_location="cpu", weights_only=True)
yaml.safe_load(text)
np.load(path)
"""
    assert len(unsafe_loads(ast.parse(code))) == 8


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: path.relative_to(REPO_ROOT).as_posix())
def test_no_file_is_loaded_unsafely(path):
    assert unsafe_loads(ast.parse(path.read_text(), str(path))) == []
