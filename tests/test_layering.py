"""The package layering of docs/design.md: a module imports only its own layer or lower
ones (utils < base < model, data_loader < trainer < misc; the command-line scripts sit on
top), so that the evaluations and the core never depend on what is built over them."""
import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYER = {"utils": 0, "base": 1, "model": 2, "data_loader": 2, "trainer": 3, "misc": 4}
# The dataset mirror script runs as ``python misc/sync_datasets.py`` (the original's
# command), so it imports nothing of this project and any layer may reuse its download.
STANDALONE = "misc.sync_datasets"


def project_imports(path: Path):
    """(line, module) of every import of a project package in the file ``path``."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] in LAYER:
                yield node.lineno, name


def package_modules():
    return sorted(p for package in LAYER for p in (REPO / package).rglob("*.py"))


@pytest.mark.parametrize("path", package_modules(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_module_imports_a_higher_layer(path):
    package = path.relative_to(REPO).parts[0]
    for line, name in project_imports(path):
        target = name.split(".")[0]
        if name == STANDALONE or name.startswith(STANDALONE + "."):
            continue
        assert LAYER[target] < LAYER[package] or target == package, (
            f"{path.relative_to(REPO)}:{line} imports {name}, a layer above or beside "
            f"{package}")


def test_the_standalone_script_imports_nothing_of_the_project():
    assert list(project_imports(REPO / "misc" / "sync_datasets.py")) == []


def test_the_rule_catches_an_upward_import(tmp_path):
    """The check itself: an upward import in a file is found."""
    module = tmp_path / "upward.py"
    module.write_text("import torch\nfrom trainer.matching import match_keypoints\n")
    assert list(project_imports(module)) == [(2, "trainer.matching")]
