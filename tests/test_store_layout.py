"""The store reads the same on every layer: one name per verb from the protocol to the backends'
modules and SQL blocks to the conformance tests, and the two backends in the same module layout."""

from __future__ import annotations

import ast
import inspect
import pkgutil
from collections.abc import Callable
from pathlib import Path

import stepwell.store.postgres as postgres_package
import stepwell.store.sqlite as sqlite_package
import stepwell.testing.conformance as conformance_package
from stepwell.store.base import Store
from stepwell.store.postgres.store import PostgresStore
from stepwell.store.sqlfile import load_queries
from stepwell.store.sqlite.store import SQLiteStore

REPOSITORY_CONFORMANCE = Path(__file__).resolve().parent / "conformance"
BACKENDS = {"sqlite": sqlite_package, "postgres": postgres_package}
# The machinery several verbs run (flow control, wait and fan-out resolution): its blocks are named after
# the rule step they execute (lock_keys, give_slots, waits_matching), not after one verb.
RULE_FILES = {"flow.sql", "waiting.sql"}
# Blocks of a backend's own modules (OWN_MODULES), which no Store verb runs.
OWN_BLOCKS = {"sqlite": set(), "postgres": {"configure_session", "listen", "listener_identity"}}
# Verbs with no block of their own, and why.
NO_BLOCK = {
    "close": "closes connections",
    "subscribe": "a watcher thread (SQLite) or LISTEN (PostgreSQL, listener.py)",
    "start_child": "record_step and create_children in one transaction",
    "settle_and_claim": "settle_runs and claim_runs in one transaction",
    "set_key_paused": "flow control's line rules (plan/lines.py) in flow.sql",
    "skip_key": "flow control's line rules (plan/lines.py) in flow.sql",
}
NO_BLOCK_ON = {"sqlite": {"now": "the injected clock"}, "postgres": {}}


def store_verbs() -> list[str]:
    """The Store protocol's verbs, in the order base.py declares them."""
    return [name for name, value in vars(Store).items() if callable(value) and not name.startswith("_")]


def conformance_test_names() -> set[str]:
    folders = [Path(conformance_package.__file__).parent, REPOSITORY_CONFORMANCE]
    names: set[str] = set()
    for path in (file for folder in folders for file in folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                names.add(node.name)
    return names


def modules_of(package: object) -> set[str]:
    return {info.name for info in pkgutil.iter_modules(package.__path__)}  # type: ignore[attr-defined]


def blocks_of(backend: str) -> dict[str, str]:
    """Every named SQL block of a backend: name -> the .sql file that holds it."""
    folder = Path(BACKENDS[backend].__file__).parent
    return {
        name: path.name
        for path in folder.glob("*.sql")
        for name in load_queries(f"stepwell.store.{backend}", path.name)
    }


def named_after(block: str, verbs: list[str]) -> bool:
    return any(block == verb or block.startswith(f"{verb}_") for verb in verbs)


def home_of(store: type, verb: str) -> str:
    """The module (of the backend package) that defines the verb's method."""
    method: Callable[..., object] = getattr(store, verb)
    return inspect.getmodule(method).__name__.rsplit(".", 1)[-1]  # type: ignore[union-attr]


def test_every_store_verb_has_a_conformance_test_named_after_it() -> None:
    tests = conformance_test_names()
    untested = [verb for verb in store_verbs() if not any(name.startswith(f"test_{verb}_") for name in tests)]
    assert untested == [], f"Store verbs without a conformance test named test_<verb>_...: {untested}"


def test_every_conformance_test_is_named_after_a_store_verb() -> None:
    verbs = store_verbs()
    strays = sorted(name for name in conformance_test_names() if not any(name.startswith(f"test_{v}_") for v in verbs))
    assert strays == [], f"conformance tests not named test_<verb>_... after a Store verb: {strays}"


def test_the_two_backends_have_the_same_modules_beyond_their_own() -> None:
    sqlite, postgres = modules_of(sqlite_package), modules_of(postgres_package)
    assert sqlite >= sqlite_package.OWN_MODULES, "sqlite OWN_MODULES names a module that does not exist"
    assert postgres >= postgres_package.OWN_MODULES, "postgres OWN_MODULES names a module that does not exist"
    only_sqlite = sorted(sqlite - postgres - sqlite_package.OWN_MODULES)
    only_postgres = sorted(postgres - sqlite - postgres_package.OWN_MODULES)
    assert (only_sqlite, only_postgres) == ([], []), (
        f"modules of one backend only: sqlite {only_sqlite}, postgres {only_postgres}; give the other backend "
        "the same module, or list it in the package's OWN_MODULES with why"
    )


def test_each_verb_lives_in_the_module_of_the_same_name_on_both_backends() -> None:
    moved = {
        verb: (home_of(SQLiteStore, verb), home_of(PostgresStore, verb))
        for verb in store_verbs()
        if home_of(SQLiteStore, verb) != home_of(PostgresStore, verb)
    }
    assert moved == {}, f"verbs split differently on the two backends (sqlite, postgres): {moved}"


def test_both_store_modules_stay_small() -> None:
    for module in (SQLiteStore, PostgresStore):
        lines = len(inspect.getsource(inspect.getmodule(module)).splitlines())  # type: ignore[arg-type]
        assert lines < 300, f"{module.__module__} has {lines} lines: its verbs belong in their modules"


def test_every_sql_block_outside_the_rule_files_is_named_after_its_verb() -> None:
    verbs = store_verbs()
    for backend in BACKENDS:
        strays = sorted(
            f"{name} ({file})"
            for name, file in blocks_of(backend).items()
            if file not in RULE_FILES and name not in OWN_BLOCKS[backend] and not named_after(name, verbs)
        )
        assert strays == [], f"{backend}: SQL blocks not named <verb> or <verb>_<part>: {strays}"


def test_every_verb_that_reaches_the_database_has_a_block_named_after_it() -> None:
    for backend in BACKENDS:
        blocks = list(blocks_of(backend))
        exempt = NO_BLOCK | NO_BLOCK_ON[backend]
        missing = [verb for verb in store_verbs() if verb not in exempt and not named_after_verb(verb, blocks)]
        assert missing == [], f"{backend}: verbs without a SQL block named <verb> or <verb>_<part>: {missing}"
        needless = [verb for verb in exempt if named_after_verb(verb, blocks)]
        assert needless == [], f"{backend}: verbs listed as blockless that have a block now: {needless}"


def named_after_verb(verb: str, blocks: list[str]) -> bool:
    return any(block == verb or block.startswith(f"{verb}_") for block in blocks)


# Modules allowed to read rows by position: the decoders themselves.
ROW_DECODERS = {"store/rows.py", "store/sqlite/rows.py", "store/postgres/rows.py"}


def positional_row_reads(path: Path) -> list[str]:
    """`row[3]`, `rows[0][1]`, `row[1:]`: a column by position (`rows[0]`, a whole row, is fine)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Subscript):
            continue
        base = node.value.value if isinstance(node.value, ast.Subscript) else node.value
        index = node.slice.lower if isinstance(node.slice, ast.Slice) else node.slice
        picks_a_row = isinstance(node.value, ast.Name) and node.value.id.endswith("rows")
        if isinstance(base, ast.Name) and "row" in base.id and isinstance(index, ast.Constant) and not picks_a_row:
            found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_rows_are_read_by_name_outside_their_decoders() -> None:
    store = Path(sqlite_package.__file__).parent.parent
    reads = [
        found
        for path in sorted(store.rglob("*.py"))
        if path.relative_to(store.parent).as_posix() not in ROW_DECODERS
        for found in positional_row_reads(path)
    ]
    assert reads == [], f"rows read by position (decode them once, in rows.py, or unpack them): {reads}"
