"""The conformance builders, where tests in this repository have always imported them from."""

from stepwell.testing.conformance.helpers import StoreFactory, event, new_run

__all__ = ["StoreFactory", "event", "new_run"]
