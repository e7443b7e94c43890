"""Every ```python and ```bash sample of README.md and docs/ runs as written (issue 9).

Each Markdown file is a session: a fresh folder, its samples in order (tests/docsamples/runner.py),
python samples sharing one namespace, files written where the prose says "Write `x.py`", bash
samples with the venv's `stepwell` on PATH. A ```text block after a sample is its expected output.
`<!-- sample: skip (reason) -->` just above a fence skips it; the reason is required.
Samples that use PostgreSQL get STEPWELL_DATABASE_URL: a fresh schema on the real server.
The rules: tests/docsamples/markdown.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import pg_schemas
from tests.docsamples.markdown import Sample, samples, skip_markers

ROOT = Path(__file__).resolve().parent.parent
RUNNER = Path(__file__).parent / "docsamples" / "runner.py"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
POSTGRES = re.compile(r"postgresql://|psycopg|sqlalchemy", re.IGNORECASE)


def runnable(doc: Path, root: Path = ROOT) -> list[Sample]:
    return [s for s in samples(doc, root) if s.skip is None]


def run_samples(found: list[Sample], folder: Path, env: dict[str, str]) -> list[dict[str, object]]:
    payload = [
        {"where": s.where, "lang": s.lang, "code": s.code, "write_to": s.write_to, "expected": s.expected}
        for s in found
    ]
    done = subprocess.run(
        [sys.executable, str(RUNNER), str(folder)],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=folder,
    )
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0, f"the sample runner failed:\n{done.stdout}\n{done.stderr}"
    return results


def sample_env(found: list[Sample]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("STEPWELL_DATABASE_URL", "STEPWELL_APP", "PYTHONPATH")}
    if any(POSTGRES.search(s.code) for s in found):
        env["STEPWELL_DATABASE_URL"] = pg_schemas.create()  # dropped when the test ends
    return env


@pytest.mark.parametrize("doc", [d for d in DOCS if runnable(d)], ids=lambda d: str(d.relative_to(ROOT)))
def test_every_sample_of_the_doc_runs_as_written(doc: Path, tmp_path: Path) -> None:
    found = runnable(doc)
    results = run_samples(found, tmp_path, sample_env(found))
    for sample, result in zip(found, results, strict=False):
        assert result["ok"], f"the sample at {sample.where} failed:\n{sample.code}\n--- output ---\n{result['output']}"
    assert len(results) == len(found), f"{len(found) - len(results)} sample(s) never ran"


def test_every_skip_marker_gives_a_reason_and_sits_just_above_a_sample() -> None:
    for doc in DOCS:
        for line, reason, above_a_sample in skip_markers(doc):
            where = f"{doc.relative_to(ROOT)}:{line}"
            assert reason, f"{where}: write the reason: <!-- sample: skip (why it cannot run as written) -->"
            assert above_a_sample, f"{where}: the marker must be the line just above a ```python or ```bash fence"


def test_skipped_python_samples_still_parse() -> None:
    for doc in DOCS:
        for sample in samples(doc, ROOT):
            if sample.skip is not None and sample.lang == "python":
                compile(sample.code, sample.where, "exec")  # a SyntaxError names the doc and line


def test_the_readme_tutorial_is_run_not_skipped() -> None:
    found = samples(ROOT / "README.md", ROOT)
    assert [s.write_to for s in found if s.write_to] == ["sermons.py", "test_sermons.py"]
    assert all(s.skip is None for s in found if s.lang == "python")


def test_the_runner_reports_a_failing_sample_and_a_wrong_output(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(
        "Write `greet.py`:\n\n```python\ndef hello():\n    return 'hello'\n```\n\n"
        "```python\nfrom greet import hello\nprint(hello())\n```\n\n```text\nhello\n```\n\n"
        "```bash\necho one; echo two\n```\n\n```text\none\nt...o\n```\n\n"
        "<!-- sample: skip (a fragment) -->\n```python\nnot python at all\n```\n\n"
        "```python\nprint('bye')\n```\n\n```text\nhello\n```\n\n"
        "```python\nraise SystemExit('never reached')\n```\n"
    )
    found = runnable(doc, tmp_path)
    assert [s.write_to for s in found] == ["greet.py", None, None, None, None]
    work = tmp_path / "work"
    work.mkdir()
    results = run_samples(found, work, sample_env([]))
    assert [r["ok"] for r in results] == [True, True, True, False]  # the wrong output stops the session
    assert "expected output line not found (in order): 'hello'" in str(results[3]["output"])


def test_the_demo_names_its_database_and_runs_ls_finds_its_runs(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "examples.sermons", "--quick"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    [hint] = [line for line in done.stdout.splitlines() if "look around" in line]
    command = hint.split(": ", 1)[1].split()
    assert command[:3] == ["stepwell", "runs", "ls"]
    listed = subprocess.run(
        [sys.executable, "-c", "from stepwell.cli import main; main()", *command[1:], "--json"],
        cwd=tmp_path,  # from anywhere: the printed URL is absolute
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert len(listed.stdout.splitlines()) >= 4, listed.stdout
