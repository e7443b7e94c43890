"""Pages of runs that an index serves, whatever the filter: the statement is picked by its most
selective filter (an event's runs are few, a status's many), and the others filter what it reads."""

from __future__ import annotations

from stepwell.store.base import RunFilter
from stepwell.store.sqlfile import load_queries

B = load_queries("stepwell.store.sqlite", "browse.sql")


def statement_for(query: RunFilter) -> str:
    """The name of the statement whose leading, indexed filter is the query's most selective one."""
    if query.event_id is not None:
        return "list_runs_by_event"
    if query.parent_id is not None:
        return "list_runs_by_parent"
    if query.ordering_key is not None:
        return "list_runs_by_key"
    if query.function is not None:
        return "list_runs_by_function"
    if query.status is not None:
        return "list_runs_by_status"
    return "list_runs_by_newest"
