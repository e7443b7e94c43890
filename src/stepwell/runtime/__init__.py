"""Dispatch, the step API, the executor, the worker and maintenance: everything that runs."""
