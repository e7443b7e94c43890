"""Process-wide switches: what the seams do (metrics, tracing) and the bounds of ctx.log."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Settings:
    metrics: bool = True
    tracing: bool = True  # spans are made only when an OpenTelemetry SDK is installed and configured
    log_lines_per_run: int = 1000  # ctx.log lines kept per run; the oldest are dropped first (and counted)
    log_line_chars: int = 2000  # a longer line is cut, with a marker
    log_lines_per_attempt: int = 1000  # buffered in memory before being written with the next step or settle


SETTINGS = Settings()


def configure(
    *,
    metrics: bool | None = None,
    tracing: bool | None = None,
    log_lines_per_run: int | None = None,
    log_line_chars: int | None = None,
) -> Settings:
    """Change what this process records; returns the settings now in force."""
    if metrics is not None:
        SETTINGS.metrics = metrics
    if tracing is not None:
        SETTINGS.tracing = tracing
    for name, value in (("log_lines_per_run", log_lines_per_run), ("log_line_chars", log_line_chars)):
        if value is not None:
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: {value!r} must be a positive int")
            setattr(SETTINGS, name, value)
    return SETTINGS
