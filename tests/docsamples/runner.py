"""Runs one Markdown file's samples in order, in one folder and one interpreter: a doc is a session.

Started as a script (`python runner.py FOLDER`, samples as JSON on stdin), so that neither the
checkout nor `tests` is importable: a sample sees what a user's folder sees. Python samples share
one namespace, as the prose reading them does; bash samples run in the same folder with the
venv's `stepwell` first on PATH. Prints one JSON line per sample: ok, or the error and output.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import io
import json
import os
import re
import subprocess
import sys
import traceback
import types
from pathlib import Path
from typing import Any

BASH_TIMEOUT = 90


def main() -> None:
    folder = Path(sys.argv[1])
    samples: list[dict[str, Any]] = json.load(sys.stdin)
    os.chdir(folder)
    sys.path.insert(0, str(folder))
    sample_module = types.ModuleType("__main__")  # a real module: libraries that resolve names through
    sys.modules["__main__"] = sample_module  # sys.modules[cls.__module__] (SQLAlchemy) find the sample's
    namespace: dict[str, Any] = sample_module.__dict__
    for sample in samples:
        ok, output = run(sample, folder, namespace)
        if ok and sample.get("expected"):
            ok, output = matches(sample["expected"], output)
        print(json.dumps({"where": sample["where"], "ok": ok, "output": output[-6000:]}), flush=True)
        if not ok:
            return


def run(sample: dict[str, Any], folder: Path, namespace: dict[str, Any]) -> tuple[bool, str]:
    if sample["lang"] == "bash":
        return bash(sample["code"], folder)
    if sample.get("write_to"):
        return write(sample["write_to"], sample["code"], folder)
    return python(sample["code"], namespace)


def bash(code: str, folder: Path) -> tuple[bool, str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env["COLUMNS"] = "200"
    try:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", code],
            cwd=folder,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,  # one stream, in the order a terminal shows it
            text=True,
            timeout=BASH_TIMEOUT,
        )
    except subprocess.TimeoutExpired as err:
        return False, f"timed out after {BASH_TIMEOUT}s\n{err.stdout or ''}"
    output = done.stdout
    return done.returncode == 0, output if done.returncode == 0 else f"exit status {done.returncode}\n{output}"


def write(name: str, code: str, folder: Path) -> tuple[bool, str]:
    """Save the file as the doc says; check it by importing it (or running it with pytest if it is tests)."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(code)
    if path.name.startswith("test_"):
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(path)],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=BASH_TIMEOUT,
        )
        return done.returncode == 0, done.stdout + done.stderr
    module = ".".join(Path(name).with_suffix("").parts)
    try:
        sys.modules.pop(module, None)
        importlib.import_module(module)
    except BaseException:  # noqa: BLE001 - any error of the sample is its failure, reported
        return False, traceback.format_exc()
    return True, ""


def python(code: str, namespace: dict[str, Any]) -> tuple[bool, str]:
    """Execute in the doc's namespace, then call the test_* functions this block defines."""
    buffer = io.StringIO()
    try:
        tree = ast.parse(code)
        tests = [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")]
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            exec(compile(tree, "<sample>", "exec"), namespace)
            for name in tests:
                namespace[name]()
    except BaseException:  # noqa: BLE001
        return False, buffer.getvalue() + traceback.format_exc()
    return True, buffer.getvalue()


def matches(expected: str, output: str) -> tuple[bool, str]:
    """Every non-empty expected line appears in the output, in order; `...` matches anything."""
    lines = [line.rstrip() for line in output.splitlines()]
    position = 0
    for wanted in (line.strip() for line in expected.splitlines()):
        if not wanted:
            continue
        pattern = re.compile(".*".join(re.escape(part) for part in wanted.split("...")))
        while position < len(lines) and not pattern.search(lines[position]):
            position += 1
        if position == len(lines):
            return False, f"expected output line not found (in order): {wanted!r}\n--- output ---\n{output}"
        position += 1
    return True, output


if __name__ == "__main__":
    main()
