"""``triage serve``: start the HTTP service (api/).

This module never imports Flask or the api package: it checks the ruleset with the core (a broken
rule file stops the start here, with the reason, exit 3), then replaces itself with gunicorn (or,
with ``--dev``, Flask's own server) running ``api.wsgi:app``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import click

from .cli import RULESET_OPTION, handle_errors, load_for_cli


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=None, type=click.IntRange(1, 64), help="Worker processes (default: CPU count).")
@click.option("--threads", default=2, show_default=True, type=click.IntRange(1, 64), help="Threads per worker.")
@click.option("--dev", is_flag=True, help="Flask's development server instead of gunicorn.")
@RULESET_OPTION
@handle_errors
def serve(host: str, port: int, workers: Optional[int], threads: int, dev: bool, ruleset_path: Optional[Path]) -> None:
    """Start the mscc-triage HTTP service (production server: gunicorn)."""
    ruleset = load_for_cli(ruleset_path)  # check the rules before anything starts
    env = dict(os.environ, MSCC_HOST=host, MSCC_PORT=str(port), MSCC_THREADS=str(threads))
    env["MSCC_TRIAGE_RULES"] = str(ruleset.path)
    if workers:
        env["MSCC_WORKERS"] = str(workers)
    click.echo(f"mscc-triage: ruleset {ruleset.name} {ruleset.version} ({ruleset.sha256[:12]}), "
               f"http://{host}:{port}/", err=True)
    if dev:
        argv = [sys.executable, "-m", "flask", "--app", "api.wsgi:app", "run", "--host", host, "--port", str(port)]
    else:
        conf = Path(__file__).resolve().parent.parent / "api" / "gunicorn_conf.py"
        argv = [sys.executable, "-m", "gunicorn", "-c", str(conf), "api.wsgi:app"]
    sys.stdout.flush()
    os.execve(sys.executable, argv, env)
