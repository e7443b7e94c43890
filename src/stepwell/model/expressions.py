"""CEL expressions (wait conditions; keys and priorities later), compiled once and cached.

Evaluated by the `common-expression-language` library, so that a process that never imports
the user's code could evaluate them too.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from stepwell.errors import ConfigurationError

_POSITION = re.compile(r"<input>:(\d+):(\d+): (.*?)(?:\n|$)")


@functools.lru_cache(maxsize=1024)
def compile_expression(source: str, what: str = "expression") -> Any:
    """A compiled CEL program; ConfigurationError with the line, column and reason when it is invalid."""
    if not isinstance(source, str) or not source.strip():
        raise ConfigurationError(f"{what}: {source!r} must be a non-empty CEL expression")
    import cel  # here, not at the top: the library also loads its REPL (prompt_toolkit), a third of
    # Stepwell's import time, and every worker and CLI call paid it before its first claim (issue 9)

    try:
        return cel.compile(source)
    except ValueError as err:
        found = _POSITION.search(str(err))
        where = f" at line {found.group(1)}, column {found.group(2)}: {found.group(3)}" if found else f": {err}"
        raise ConfigurationError(f"{what}: invalid CEL {source!r}{where}") from None


def evaluate(source: str, variables: dict[str, Any]) -> Any:
    return compile_expression(source).execute(variables)


def holds(source: str, variables: dict[str, Any]) -> bool:
    """True when the condition evaluates to true; a missing field or a type error counts as false."""
    try:
        return evaluate(source, variables) is True
    except (KeyError, ValueError, TypeError, RuntimeError):
        return False
