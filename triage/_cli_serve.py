"""``triage serve``: start the HTTP service (api/).

This module never imports Flask or the api package: it checks the ruleset with the core (a broken
rule file stops the start here, with the reason, exit 3), then replaces itself with gunicorn (or,
with ``--dev``, Flask's own server) running ``mscc_triage_api.wsgi:app``.

Each instance gets its own files, named by its address, in a private per-user folder
(``$XDG_RUNTIME_DIR/mscc-triage``, else ``<tmp>/mscc-triage-<uid>``, mode 0700, refused if it is not
ours or is a symlink): the CDS store ``cds-<host>-<port>.sqlite3`` and gunicorn's control socket
``gunicorn-<host>-<port>.ctl``. Two servers on one host (different ports) never share either.
``MSCC_CDS_STORE_PATH`` and ``MSCC_CONTROL_SOCKET`` override them.
"""

from __future__ import annotations

import multiprocessing
import os
import stat
import sys
import tempfile
from pathlib import Path
from typing import Optional

import click

from .settings import SettingsError, load_settings
from ._cli_common import RULESET_OPTION, handle_errors, load_for_cli


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="TCP port to listen on.")
@click.option("--workers", default=None, type=click.IntRange(1, 64), help="Worker processes (default: CPU count).")
@click.option("--threads", default=None, type=click.IntRange(1, 64),
              help="Threads per worker (default: $MSCC_THREADS, else 8; 2 when the record is PostgreSQL).")
@click.option("--public-url", default=None, metavar="URL",
              help="The URL clients call (e.g. https://triage.example.org/ behind a TLS proxy): the CDS Hooks "
                   "JWT audience and the links in cards. Default: $MSCC_PUBLIC_BASE_URL.")
@click.option("--dev", is_flag=True, help="Flask's development server instead of gunicorn.")
@click.option("--allow-unauthenticated-cds", is_flag=True,
              help="Development only: accept CDS Hooks calls without a JWT when no trusted issuer is configured "
                   "(MSCC_CDS_ISSUERS_FILE). Same as MSCC_CDS_ALLOW_UNAUTHENTICATED=1.")
@RULESET_OPTION
@handle_errors
def serve(host: str, port: int, workers: Optional[int], threads: Optional[int], public_url: Optional[str], dev: bool,
          allow_unauthenticated_cds: bool, ruleset_path: Optional[Path]) -> None:
    """Start the mscc-triage HTTP service (production server: gunicorn)."""
    ruleset = load_for_cli(ruleset_path, with_form=True)  # check the rules and the form's words first
    env = dict(os.environ, MSCC_HOST=host, MSCC_PORT=str(port))
    env["MSCC_TRIAGE_RULES"] = str(ruleset.path)
    if workers:
        env["MSCC_WORKERS"] = str(workers)
    if threads:   # else MSCC_THREADS, if set, stands (it was overwritten by this option's default)
        env["MSCC_THREADS"] = str(threads)
    if public_url:
        env["MSCC_PUBLIC_BASE_URL"] = public_url
    folder = instance_folder()
    name = f"{host.replace(':', '_').replace('/', '_')}-{port}"
    for key, default in (("MSCC_CDS_STORE_PATH", folder / f"cds-{name}.sqlite3"),
                         ("MSCC_CONTROL_SOCKET", folder / f"gunicorn-{name}.ctl")):
        env[key] = env.get(key) or str(default)
    if allow_unauthenticated_cds:
        env["MSCC_CDS_ALLOW_UNAUTHENTICATED"] = "1"
    settings = load_settings(env)   # a bad setting stops here, in one line naming it (SettingsError, exit 2)
    if settings.cds_issuers_file and not settings.public_base_url:
        raise SettingsError("MSCC_CDS_ISSUERS_FILE needs MSCC_PUBLIC_BASE_URL (or --public-url): the CDS Hooks "
                            "JWT audience is the URL the EHR calls, never the request's Host header")
    click.echo(f"mscc-triage: ruleset {ruleset.name} {ruleset.version} ({ruleset.sha256[:12]}), "
               f"http://{host}:{port}/", err=True)
    if not dev:
        click.echo(f"mscc-triage: {settings.workers or multiprocessing.cpu_count()} worker processes x "
                   f"{settings.server_threads} threads", err=True)
    if env.get("MSCC_CDS_ISSUERS_FILE"):
        click.echo(f"mscc-triage: CDS Hooks calls need a JWT of an issuer in {env['MSCC_CDS_ISSUERS_FILE']}", err=True)
    elif env.get("MSCC_CDS_ALLOW_UNAUTHENTICATED", "") in ("1", "true", "yes"):
        click.echo("mscc-triage: WARNING: CDS Hooks accepts calls without authentication (development mode)",
                   err=True)
    else:
        click.echo("mscc-triage: CDS Hooks is closed (401) until trusted issuers are configured: set "
                   "MSCC_CDS_ISSUERS_FILE and MSCC_PUBLIC_BASE_URL (see the README's settings)", err=True)
    if dev:
        argv = [sys.executable, "-m", "flask", "--app", "mscc_triage_api.wsgi:app", "run", "--host", host, "--port", str(port)]
    else:
        argv = [sys.executable, "-m", "gunicorn", "-c", "python:mscc_triage_api.server.gunicorn_conf",
                "mscc_triage_api.wsgi:app"]
    sys.stdout.flush()
    os.execve(sys.executable, argv, env)


def instance_folder() -> Path:
    """The per-user private folder of the servers' files (created 0700; refused unless ours)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    folder = Path(runtime) / "mscc-triage" if runtime else Path(tempfile.gettempdir()) / f"mscc-triage-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        info = os.lstat(folder)
    except OSError as exc:
        raise click.ClickException(f"cannot create {folder}: {exc.strerror}") from None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise click.ClickException(f"{folder} must be a folder of yours that only you can use (mode 0700); "
                                   "set MSCC_CDS_STORE_PATH and MSCC_CONTROL_SOCKET, or remove it")
    return folder
