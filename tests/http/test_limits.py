"""The depth check that runs before parsing agrees with the real nesting of any JSON document."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stepwell.http.errors import ApiError
from stepwell.http.limits import check_depth

tricky_text = st.text(alphabet='[]{}"\\abc ,:\n\u00e9', max_size=12)
documents = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | tricky_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(tricky_text, inner, max_size=3),
    max_leaves=30,
)


def depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth(item) for item in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(item) for item in value.values()), default=0)
    return 0


@given(documents, st.integers(min_value=0, max_value=8))
def test_check_depth_refuses_exactly_the_documents_deeper_than_the_limit(value: Any, limit: int) -> None:
    body = orjson.dumps(value)
    if depth(value) > limit:
        with pytest.raises(ApiError) as refused:
            check_depth(body, limit)
        assert (refused.value.status, refused.value.code) == (422, "too_deep")
    else:
        check_depth(body, limit)


def test_a_10000_deep_document_is_refused_without_parsing() -> None:
    with pytest.raises(ApiError):
        check_depth(b"[" * 10_000 + b"]" * 10_000, 64)
