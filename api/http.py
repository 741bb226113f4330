"""JSON API and CDS Hooks (to be built: issue 3)."""

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the API blueprints and error handlers."""
