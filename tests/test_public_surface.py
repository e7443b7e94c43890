"""The public surface is decided once (`stepwell.__all__`) and docs/reference/python-api.md agrees with it."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import stepwell
import stepwell.errors

API_DOC = Path(__file__).resolve().parent.parent / "docs" / "reference" / "python-api.md"
INTERNAL = {"Suspend"}  # unwinds user code when a run suspends; never raised to users


def test_every_name_in_all_is_importable_and_documented() -> None:
    documented = set(re.findall(r"`(?:stepwell\.)?([A-Za-z_][A-Za-z0-9_]*)", API_DOC.read_text()))
    for name in stepwell.__all__:
        assert hasattr(stepwell, name), f"stepwell.__all__ names {name!r}, which stepwell does not have"
        assert name in documented, f"{name} is public (stepwell.__all__) but python-api.md does not mention it"


def test_every_error_stepwell_raises_is_public() -> None:
    errors = {
        name
        for name, value in vars(stepwell.errors).items()
        if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == "stepwell.errors"
    }
    missing = sorted(errors - set(stepwell.__all__) - INTERNAL)
    assert missing == [], f"errors missing from stepwell.__all__: {missing}"


def test_every_error_the_api_doc_names_is_importable_from_stepwell() -> None:
    text = API_DOC.read_text()
    section = text[text.index("## Errors") :]
    for name in re.findall(
        r"`([A-Z][A-Za-z]*(?:Error|Expired|Found|Rejected|Timeout|Unavailable|Full|Lost|Failed))", section
    ):
        assert name in stepwell.__all__, f"python-api.md's Errors names {name}, not in stepwell.__all__"
