"""The WSGI entry point: ``mscc_triage_api.wsgi:app`` (rules loaded and checked here, at start-up)."""

from . import create_app

app = create_app()
