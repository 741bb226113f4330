"""Vignette commands of the ``triage`` CLI: ``replay`` (and, later, suites, coverage and diff)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import click

from ._vignettes import replay as replay_suite
from .cli import RULESET_OPTION, handle_errors, load_for_cli


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@RULESET_OPTION
@click.option("-q", "--quiet", is_flag=True, help="Print failures and the summary only.")
@handle_errors
def replay(paths: tuple[Path, ...], ruleset_path: Optional[Path], quiet: bool) -> None:
    """Replay vignette files or folders; exit 1 if any vignette fails."""
    ruleset = load_for_cli(ruleset_path)
    outcomes = replay_suite(paths, ruleset)
    failed = 0
    for outcome in outcomes:
        v = outcome.vignette
        if outcome.passed:
            if not quiet:
                click.echo(f"PASS {v.key}  {v.title}")
            continue
        failed += 1
        click.echo(f"FAIL {v.key}  {v.title}  ({outcome.file})")
        for mismatch in outcome.mismatches:
            click.echo(f"     {v.key}: {mismatch}")
    click.echo(f"ruleset {ruleset.name} {ruleset.version} sha256 {ruleset.sha256}")
    click.echo(f"{len(outcomes) - failed} passed, {failed} failed")
    if failed:
        sys.exit(1)



def register(group: click.Group) -> None:
    """Add the vignette commands to the ``triage`` group."""
    group.add_command(replay)
