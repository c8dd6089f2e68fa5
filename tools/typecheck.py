"""Run mypy over razvilka as Python imports it, plus the tests and the benchmarks (`./dev.sh lint`).

Why a script: pyproject.toml maps folders to subpackages (protocol/ is razvilka.protocol, daemon/ is
razvilka.daemon, ...). The editable install keeps that map in an import hook that mypy cannot follow,
so here the package is laid out as links in .venv/typecheck/ (its folders taken from that one map),
mypy checks it there, and the paths it reports are turned back into the repository's own.
The settings (strict for razvilka.protocol, ...) live in pyproject.toml's [tool.mypy].
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / ".venv" / "typecheck"
#: Folders checked as top-level modules, as pytest, the bench scripts and dev.sh put them on sys.path.
SCRIPT_DIRS = ("tests", "bench", "tools")


def package_dirs() -> dict[str, Path]:
    """The [tool.setuptools] package-dir map: dotted package name -> folder in the repository."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        table = tomllib.load(f)["tool"]["setuptools"]["package-dir"]
    return {name: ROOT / folder for name, folder in table.items()}


def lay_out(tree: Path, dirs: dict[str, Path]) -> None:
    """Links that make tree/razvilka/protocol/... the folders that Python imports those packages from.

    A package that has mapped subpackages becomes a real folder of links to its own entries (so the
    subpackages can sit beside them); any other package is one link to its folder."""
    shutil.rmtree(tree, ignore_errors=True)
    for name in sorted(dirs, key=lambda n: n.count(".")):
        dest = tree.joinpath(*name.split("."))
        nested = [n for n in dirs if n.startswith(name + ".")]
        if not nested:
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.symlink_to(dirs[name], target_is_directory=True)
            continue
        dest.mkdir(parents=True, exist_ok=True)
        mapped = {n.rsplit(".", 1)[1] for n in nested}
        for entry in dirs[name].iterdir():
            if entry.name not in mapped and entry.name != "__pycache__":
                (dest / entry.name).symlink_to(entry)


def real_path(line: str, tree: Path) -> str:
    """A mypy report line with its file named as in the repository (protocol/bus.py, not the link)."""
    path, sep, rest = line.partition(":")
    full = ROOT / path
    if not sep or not full.is_relative_to(tree):
        return line
    return str(full.resolve().relative_to(ROOT)) + sep + rest


def main() -> int:
    lay_out(TREE, package_dirs())
    targets = ["-p", "razvilka"]
    for d in SCRIPT_DIRS:
        for p in sorted((ROOT / d).iterdir()):
            if p.suffix == ".py":
                targets += ["-m", p.stem]
            elif (p / "__init__.py").is_file():
                targets += ["-p", p.name]
    env = dict(os.environ, MYPYPATH=os.pathsep.join([str(TREE), *(str(ROOT / d) for d in SCRIPT_DIRS)]))
    cmd = [sys.executable, "-m", "mypy", "--cache-dir", str(ROOT / ".venv" / "mypy-cache"),
           *targets, *sys.argv[1:]]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        print(real_path(line, TREE))
    sys.stderr.write(proc.stderr)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
