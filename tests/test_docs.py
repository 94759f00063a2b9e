"""The documentation matches the code: README.md and docs/*.md.

- ``docs/config-reference.md`` is exactly what ``misc/make_config_reference.py`` writes now.
- Every ``python ...`` or ``pip ...`` line in a code block is exercised (a line ending in
  ``\\`` continues on the next; ``&&`` chains several commands; ``VAR=value`` prefixes and
  ``# comments`` are dropped):

  * ``python train.py ...`` without a placeholder runs ``train.main([..., "--dry-run"])``
    with the same flags, from an empty temporary folder (repository paths made absolute,
    so nothing is written into the repository and no local run is picked up); without
    CUDA, a ``--device`` value becomes ``cpu``.
  * every other ``python SCRIPT.py`` / ``python -m misc.X`` command, and ``train.py`` with
    a placeholder, runs the script's ``main()`` up to its argument parsing: the real
    parser runs on the command's arguments and the script stops there.
  * a script or module that does not exist, a config (``.json``) argument that does not
    exist, a ``pip install -r`` file that does not exist, or an unknown command form fails.

  Placeholders (docs/command-line.md, "Conventions"): lower-case words in angle brackets
  (``<run>``) inside an argument, and the words of :data:`PLACEHOLDERS` as a whole
  argument. Any other all-capitals argument that is no registered name is an error.
- Every relative link points at a file (and heading) inside the repository.
- The README fits on a front page and keeps the two quick-start commands verbatim.
"""
import argparse
import importlib
import re
import shlex
import sys
from pathlib import Path
from typing import List, Tuple

import pytest
import torch

import train
from misc.make_config_reference import OUTPUT, REGISTRIES, render

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
PLACEHOLDERS = frozenset({"CKPT", "EMBEDDING", "REGRESSOR", "CONFIG", "TYPE", "DIR"})
ANGLE_PLACEHOLDER = re.compile(r"<[a-z][a-z0-9_ -]*>")
QUICK_START = (
    "pip install -r requirements/requirements.txt && "
    "python train.py --config configs/synthetic/smallnet-16d-dve.json",
    "pip install -r requirements/dev.txt && python -m pytest tests",
)
README_MAX_LINES = 150


def code_block_commands(text: str) -> List[Tuple[int, str]]:
    """(line number, command) of each line of a fenced code block that starts with
    ``python `` or ``pip ``, continuation lines joined."""
    commands, in_block, pending = [], False, None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            in_block = not in_block
            continue
        if pending is not None:
            pending = (pending[0], pending[1] + " " + stripped.rstrip("\\").strip())
        elif in_block and re.match(r"([A-Z_]+=\S+ )*(python|pip) ", stripped):
            pending = (number, stripped.rstrip("\\").strip())
        if pending is not None and not stripped.endswith("\\"):
            commands.append(pending)
            pending = None
    return commands


def documented_commands():
    params = []
    for page in PAGES:
        for number, command in code_block_commands(page.read_text()):
            params.append(pytest.param(command, id=f"{page.relative_to(REPO)}:{number}"))
    return params


def registered_names() -> set:
    return {name for registry, *_ in REGISTRIES for name in registry}


def placeholders_in(args: List[str]) -> List[str]:
    """The placeholders of ``args``; fails on an all-capitals word that is not one."""
    found = []
    for arg in args:
        value = arg.split("=", 1)[-1]
        found += ANGLE_PLACEHOLDER.findall(arg)
        if "<" in ANGLE_PLACEHOLDER.sub("", arg) or ">" in ANGLE_PLACEHOLDER.sub("", arg):
            pytest.fail(f"{arg}: a placeholder in angle brackets is lower-case words, e.g. <run>")
        if value in PLACEHOLDERS:
            found.append(value)
        elif re.fullmatch(r"[A-Z][A-Z0-9_]+", value) and value not in registered_names():
            pytest.fail(f"{arg}: {value} is not a documented placeholder "
                        f"({', '.join(sorted(PLACEHOLDERS))}; see docs/command-line.md)")
    return found


def check_configs_exist(args: List[str]) -> None:
    for arg in args:
        value = arg.split("=", 1)[-1]
        if value.endswith(".json") and not ANGLE_PLACEHOLDER.search(value):
            assert (REPO / value).is_file(), f"{value} does not exist in the repository"


class _Parsed(Exception):
    """Raised in place of returning from ``ArgumentParser.parse_args``: the script's
    arguments parsed, and it stops before doing anything."""


def parse_only(module_name: str, args: List[str], monkeypatch) -> None:
    """Run the script's ``main()`` with ``args`` as its command line, up to the point
    where its real argument parser has accepted them."""
    module = importlib.import_module(module_name)
    real_parse_args = argparse.ArgumentParser.parse_args

    def parse_and_stop(parser, argv=None, namespace=None):
        raise _Parsed(real_parse_args(parser, argv, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_and_stop)
    monkeypatch.setattr(sys, "argv", [str(module.__file__), *args])
    try:
        module.main()
    except _Parsed:
        return
    except SystemExit as exit_:
        pytest.fail(f"{module_name} {' '.join(args)}: argparse refused the arguments "
                    f"(exit status {exit_.code}; its message is in the captured stderr)")
    pytest.fail(f"{module_name}.main() returned without parsing its arguments with argparse")


def dry_run(args: List[str], tmp_path: Path, monkeypatch, capsys) -> None:
    """``train.main(args + ["--dry-run"])`` from an empty folder."""
    args = [str(REPO / a) if not a.startswith("-") and (REPO / a).exists() else a
            for a in args]
    if not torch.cuda.is_available():
        args = ["cpu" if i and args[i - 1] in ("-d", "--device") else a
                for i, a in enumerate(args)]
    monkeypatch.chdir(tmp_path)
    status = train.main(args + ["--dry-run"])
    captured = capsys.readouterr()
    assert status == 0, f"train.py {' '.join(args)} --dry-run: {captured.out}{captured.err}"
    assert not any(tmp_path.iterdir()), "a dry run wrote files"


def check_python(words: List[str], tmp_path, monkeypatch, capsys) -> None:
    if words[1] == "-m":
        module_name, args = words[2], words[3:]
        if module_name == "pytest":
            assert importlib.util.find_spec("pytest"), "pytest is not installed"
            for arg in (a for a in args if not a.startswith("-")):
                assert (REPO / arg).exists(), f"pytest {arg}: no such path"
            return
        script = module_name.replace(".", "/") + ".py"
    elif words[1].endswith(".py"):
        script, args = words[1], words[2:]
        module_name = script[:-3].replace("/", ".")
    else:
        pytest.fail(f"unsupported command form: {' '.join(words)}")
    assert (REPO / script).is_file(), f"{script} does not exist in the repository"
    placeholders = placeholders_in(args)
    check_configs_exist(args)
    if module_name == "train" and not placeholders:
        dry_run(args, tmp_path, monkeypatch, capsys)
    else:
        parse_only(module_name, args, monkeypatch)


def check_pip(words: List[str]) -> None:
    assert words[1:3] == ["install", "-r"] and len(words) == 4, \
        f"unsupported pip command: {' '.join(words)}"
    requirements = REPO / words[3]
    assert requirements.is_file(), f"{words[3]} does not exist"
    for line in requirements.read_text().splitlines():
        if line.startswith("-r"):
            assert (requirements.parent / line[2:].strip()).is_file(), f"{words[3]}: {line}"


@pytest.mark.parametrize("command", documented_commands())
def test_documented_command_runs(command, tmp_path, monkeypatch, capsys):
    words = shlex.split(command, comments=True)
    chain: List[List[str]] = [[]]
    for word in words:
        if word == "&&":
            chain.append([])
        else:
            chain[-1].append(word)
    for words in chain:
        while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
            words = words[1:]
        if words[0] == "pip":
            check_pip(words)
        elif words[0] == "python":
            check_python(words, tmp_path, monkeypatch, capsys)
        else:
            pytest.fail(f"unsupported command: {' '.join(words)}")


def test_the_pages_hold_commands():
    """The collection above sees the README's examples (a broken parser would see none)."""
    readme = [command for _, command in code_block_commands((REPO / "README.md").read_text())]
    assert list(QUICK_START) == readme[:2]
    for script in ("train.py", "test_matching.py", "test_keypoints.py", "predict.py",
                   "misc/sync_datasets.py", "-m misc.sync_models"):
        assert any(command.startswith(f"python {script} ") for command in readme), script


def test_config_reference_is_current():
    assert OUTPUT.read_text() == render(), \
        "docs/config-reference.md is out of date: run python -m misc.make_config_reference"


def heading_anchors(page: Path) -> set:
    """GitHub's anchors of the page's headings (lower case, punctuation dropped,
    spaces as hyphens)."""
    headings = re.findall(r"^#+ (.+)$", page.read_text(), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_links_stay_in_the_repository(page):
    text = page.read_text()
    assert not re.search(r"\bSPEC\b|shared/", text), f"{page.name} refers outside the repository"
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.is_relative_to(REPO), f"{page.name}: {target} leaves the repository"
        assert linked.exists(), f"{page.name}: {target} does not exist"
        if anchor and linked.suffix == ".md":
            assert anchor in heading_anchors(linked), f"{page.name}: no heading for {target}"


def test_readme_is_a_front_page():
    assert len((REPO / "README.md").read_text().splitlines()) <= README_MAX_LINES
