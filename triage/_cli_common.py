"""What every ``triage`` command shares: the ruleset option, error handling (the exit codes of the
error tree, in one place), loading a ruleset with the form's words, and reading a case file.

Kept apart from ``cli`` so that the command modules import it without importing each other.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import click
import yaml

from ._errors import CaseValidationError, Problem, TriageError, VignetteFormatError
from ._strict_input import decode, loads_json, loads_yaml
from ._texts import load_form_texts
from ._triage import Ruleset, load_ruleset

RULESET_OPTION = click.option(
    "--ruleset", "ruleset_path", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Ruleset folder (default: $MSCC_TRIAGE_RULES, else the ruleset installed with the package).",
)


def handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Map the error tree to messages and exit codes: no traceback ever reaches the user."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except VignetteFormatError as exc:
            if [p.code for p in exc.problems] == ["not_found"]:   # a path that does not exist: say just that
                click.echo(f"error: no such file or folder: {exc.source}", err=True)
                sys.exit(exc.exit_code)
            click.echo(f"error: invalid vignette file {exc.source}:", err=True)
            for problem in exc.problems:
                click.echo(f"  {problem}", err=True)
            sys.exit(exc.exit_code)
        except CaseValidationError as exc:
            title = "invalid case"
            click.echo(f"error: {title}:", err=True)
            for problem in exc.problems:
                click.echo(f"  {problem}", err=True)
            sys.exit(exc.exit_code)
        except TriageError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)

    return wrapper


def load_for_cli(ruleset_path: Optional[Path], *, with_form: bool = False) -> Ruleset:
    ruleset = load_ruleset(ruleset_path)
    if with_form:
        check_form_texts(ruleset)
    return ruleset


def check_form_texts(ruleset: Ruleset) -> None:
    """The web form's words (form.yaml, labels.fr.yaml) belong to the ruleset: check them too.

    The core checks them (``_texts``): RulesetError (exit 3) naming the file, the key and the reason.
    Entries the ruleset does not know are printed as notes.
    """
    for note in load_form_texts(ruleset).unused:
        click.echo(f"note: {note}", err=True)


def read_case_text(text: str | bytes, source: str) -> Any:
    """A case from JSON or YAML text (or its UTF-8 bytes); unreadable input is an invalid case naming
    the file and the reason, never a traceback, and a key given twice is refused, never the last copy."""
    if not isinstance(text, str):
        try:
            text = decode(text)
        except ValueError as exc:
            raise CaseValidationError([Problem("", f"{source} {exc}", "unreadable")]) from None
    if not text.strip():
        raise CaseValidationError([Problem("", f"{source} is empty: a case is a JSON or YAML object", "unreadable")])
    try:
        return loads_json(text)
    except json.JSONDecodeError as exc:
        if source.lower().endswith(".json"):   # a JSON file that is not JSON: never guessed as YAML instead
            raise CaseValidationError([Problem("", f"{source} is not JSON: {exc}", "unreadable")]) from None
        # not JSON: read as YAML
    except ValueError as exc:   # JSON, but a key given twice or nesting too deep: never read as YAML instead
        raise CaseValidationError([Problem("", f"{source}: {exc}", "unreadable")]) from None
    try:
        return loads_yaml(text)
    except (yaml.YAMLError, ValueError) as exc:
        raise CaseValidationError([Problem("", f"{source} is neither JSON nor YAML: {exc}", "unreadable")]) from None
