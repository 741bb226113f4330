"""``triage serve``: start the HTTP service (see api/). This module never imports Flask itself."""

from __future__ import annotations

import click


@click.command()
def serve() -> None:
    """Start the mscc-triage HTTP service (not built yet)."""
    raise click.ClickException("the HTTP service is not built yet")
