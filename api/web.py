"""The triage web form (to be built: issue 4)."""

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the form blueprint."""
