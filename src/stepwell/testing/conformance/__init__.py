"""The store conformance suite: what every `Store` must do, written once, run on every backend.

A backend (in this repository or outside it) runs the whole suite with one fixture:

    # conftest.py
    import pytest
    from stepwell.testing.conformance.helpers import StoreFactory

    pytest_plugins = ["stepwell.testing.conformance.plugin"]

    @pytest.fixture
    def store_factory(clock) -> StoreFactory:
        database = ...  # a fresh, empty database for this test
        return lambda: MyStore(database, clock=clock)   # each call: another store on that database

    # test_conformance.py
    from stepwell.testing.conformance.suite import *  # noqa: F403 (pytest collects the tests)

The plugin provides `clock` (a VirtualClock at 2030-01-01 UTC) and `store` (a migrated store
from `store_factory`, closed after the test). A conftest that defines `store` or `clock`
itself takes precedence. Tests are grouped by the protocol verbs they exercise: basics (now,
close, subscribe), events
(append_events, create_runs), queue (claim_runs, extend_leases, record_step, settle_runs, settle_and_claim,
release_runs, rescue_expired_leases, cancel_runs, redrive), waiting (register_wait,
start_child, time_out_step, open_fan_out, create_children, seal_fan_out, fan_out_counts,
fan_out_results, wake_finished_fan_outs), maintenance (migrate, purge, list_runs, queue_stats),
cron (fire_cron_tick), keys (set_key_paused, drain_key, skip_key, fail_overdue_runs), functions
(set_function_paused, list_functions' pause state), reads
(get_run, get_run_input, get_event, list_dead_letters), insight (search_runs,
function_durations, list_fan_outs) and flow_concurrency (claim_runs under
many workers). Each test is named after the verb it exercises: test_<verb>_<what it shows>.
"""
