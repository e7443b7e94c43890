"""The CLI meets a newcomer's mistakes with one clear line (issue 9). Real `stepwell` processes.

Read commands create nothing and name the database; silent successes became errors or warnings
(docs/reference/cli.md lists which); import mistakes and PostgreSQL problems read as one line.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import database_url_for

APP_SOURCE = """
import stepwell

app = stepwell.App("shop")

@app.function("ship", trigger=stepwell.on_event("order.placed"), retries=0)
def ship(ctx: stepwell.Context) -> object:
    return ctx.step.run("label", lambda: ctx.event.data["order"])
"""


def stepwell(folder: Path, *args: str, python_prelude: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("STEPWELL_DATABASE_URL", "STEPWELL_APP")}
    command = f"{python_prelude}from stepwell.cli import main; main()"
    return subprocess.run(
        [sys.executable, "-c", command, *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "COLUMNS": "200"},
    )


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    (tmp_path / "shop.py").write_text(APP_SOURCE)
    return tmp_path


@pytest.mark.parametrize(
    "command",
    [["runs", "ls"], ["runs", "show", "r1"], ["dlq", "ls"], ["runs", "cancel", "r1"], ["dlq", "redrive", "r1"]],
)
def test_read_commands_in_a_folder_without_a_database_create_nothing_and_name_the_path(
    tmp_path: Path, command: list[str]
) -> None:
    done = stepwell(tmp_path, *command)
    assert done.returncode == 1
    assert f"no Stepwell database at {tmp_path / '.stepwell' / 'stepwell.db'}" in done.stderr
    assert list(tmp_path.iterdir()) == []  # not even the .stepwell folder


def test_read_commands_create_no_schema_in_an_empty_postgres_schema(tmp_path: Path) -> None:
    url = database_url_for("postgres", tmp_path)
    done = stepwell(tmp_path, "runs", "ls", "--database-url", url)
    assert done.returncode == 1 and "no Stepwell schema in PostgreSQL postgres@" in done.stderr, done.stderr
    assert stepwell(tmp_path, "runs", "ls", "--database-url", url).returncode == 1  # still nothing created


def test_replay_with_the_users_app_creates_no_schema_either(shop: Path, tmp_path: Path) -> None:
    url = database_url_for("postgres", tmp_path)
    done = stepwell(shop, "runs", "replay", "--app", "shop:app", "r1", "--database-url", url)
    assert done.returncode == 1 and "no Stepwell schema in PostgreSQL" in done.stderr, done.stderr
    assert "no Stepwell schema" in stepwell(shop, "runs", "ls", "--database-url", url).stderr


def test_an_empty_result_names_the_database_it_read(shop: Path) -> None:
    assert stepwell(shop, "migrate").returncode == 0
    missing = stepwell(shop, "runs", "show", "r1")
    assert missing.returncode == 1
    assert f"no run id starts with 'r1' (database: SQLite {shop}" in missing.stderr
    done = stepwell(shop, "runs", "ls")
    assert done.returncode == 0
    assert done.stdout.strip() == f"no runs in SQLite {shop / '.stepwell' / 'stepwell.db'}"
    assert stepwell(shop, "dlq", "ls").stdout.strip().startswith("no dead letters in SQLite ")


def test_send_refuses_data_that_is_not_a_json_object_and_stores_nothing(shop: Path) -> None:
    for data, said in (("[1,2]", "got an array"), ("42", "got a number"), ("", "not valid JSON"), ("null", "got null")):
        done = stepwell(shop, "send", "--app", "shop:app", "order.placed", data)
        assert done.returncode == 2 and said in done.stderr, (data, done.stderr)
    assert not (shop / ".stepwell").exists()


def test_send_warns_when_no_function_listens_and_still_stores_the_event(shop: Path) -> None:
    done = stepwell(shop, "send", "--app", "shop:app", "order.placd", '{"order": 1}')
    assert done.returncode == 0
    assert "no_match" in done.stdout
    assert (
        "warning: no registered function listens to 'order.placd' (the registry's functions listen to: order.placed)"
        in done.stderr
    )
    listened = stepwell(shop, "send", "--app", "shop:app", "order.placed", '{"order": 1}')
    assert listened.returncode == 0 and listened.stderr == "" and "started" in listened.stdout


def test_redrive_of_an_unknown_id_is_an_error_that_names_it_and_redrives_nothing(shop: Path) -> None:
    assert stepwell(shop, "migrate").returncode == 0
    done = stepwell(shop, "dlq", "redrive", "nope-1", "nope-2")
    assert done.returncode == 1
    assert "no runs 'nope-1', 'nope-2' in SQLite" in done.stderr and "nothing was redriven" in done.stderr


def test_redrive_of_a_run_that_is_not_a_dead_letter_is_a_warning(shop: Path) -> None:
    sent = stepwell(shop, "send", "--app", "shop:app", "order.placed", '{"order": 1}')
    run_id = sent.stdout.strip().rsplit("runs: ", 1)[1]
    done = stepwell(shop, "dlq", "redrive", run_id)
    assert done.returncode == 0, done.stderr
    assert f"run {run_id} is queued, not a dead letter" in done.stderr
    assert "redriven 0 run(s)" in done.stdout


def test_a_syntax_error_in_the_app_module_is_one_line_with_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("import stepwell\napp = stepwell.App('x')\ndef f(:\n    pass\n")
    done = stepwell(tmp_path, "worker", "broken:app")
    assert done.returncode == 2
    assert f"'broken' has a syntax error ({tmp_path / 'broken.py'}, line 3)" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) <= 4


def test_an_exception_while_importing_the_app_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "raising.py").write_text("import stepwell\napp = stepwell.App('x')\nundefined_name\n")
    done = stepwell(tmp_path, "worker", "raising:app")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "raised NameError: name 'undefined_name' is not defined (raising.py, line 3)" in done.stderr


def test_a_missing_attribute_or_module_is_named(shop: Path) -> None:
    done = stepwell(shop, "worker", "shop:nope")
    assert done.returncode == 2 and "module 'shop' has no attribute 'nope'; the App(s) there: app" in done.stderr
    done = stepwell(shop, "worker", "shops:app")
    assert done.returncode == 2 and f"no module 'shops' in {shop}" in done.stderr


def test_a_postgresql_url_without_the_extra_says_what_to_install(tmp_path: Path) -> None:
    blocked = "import sys; sys.modules['psycopg'] = None; "  # as if the extra were not installed
    done = stepwell(tmp_path, "runs", "ls", "--database-url", "postgresql://x@127.0.0.1/y", python_prelude=blocked)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip() == (
        "Error: postgresql:// URLs need the PostgreSQL extra (psycopg is not installed): "
        "pip install 'stepwell[postgres]'"
    )


def test_a_bad_postgresql_url_fails_at_once_with_its_cause_said_once(tmp_path: Path) -> None:
    started = time.monotonic()
    done = stepwell(tmp_path, "runs", "ls", "--database-url", "postgresql://no_such_role@127.0.0.1:5432/test")
    assert time.monotonic() - started < 4  # no 5 s pool wait
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert line.count('role "no_such_role" does not exist') == 1, line
    assert line.startswith("Error: cannot connect to PostgreSQL:") and "PostgreSQL no_such_role@127.0.0.1" in line


def test_a_write_command_on_a_bad_postgresql_url_says_the_cause_too(shop: Path) -> None:
    started = time.monotonic()
    url = "postgresql://no_such_role@127.0.0.1:5432/test"
    done = stepwell(shop, "send", "--app", "shop:app", "order.placed", "{}", "--database-url", url)
    assert time.monotonic() - started < 4 and done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert line.count('role "no_such_role" does not exist') == 1 and "couldn't get a connection" not in line, line


def test_every_option_has_a_help_line_and_every_command_an_example() -> None:
    import click

    from stepwell.cli import main

    def commands(group: click.Group, prefix: str) -> list[tuple[str, click.Command]]:
        found: list[tuple[str, click.Command]] = []
        for name, command in group.commands.items():
            found.append((f"{prefix} {name}", command))
            if isinstance(command, click.Group):
                found += commands(command, f"{prefix} {name}")
        return found

    for path, command in commands(main, "stepwell"):
        assert command.help and "Example" in command.help and "stepwell " in command.help, path
        for param in command.params:
            if isinstance(param, click.Option) and param.name != "help":
                assert param.help, f"{path} {param.opts[0]} has no help"
