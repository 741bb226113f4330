"""The ``triage`` command line: evaluate cases, replay vignettes, check and list rules, serve.

Exit codes (one place, from the error tree): 0 success, 1 a vignette failed, 2 invalid input
(a case or a vignette file), 3 a broken ruleset, 4 an engine failure.
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
from ._triage import Ruleset, load_ruleset

RULESET_OPTION = click.option(
    "--ruleset", "ruleset_path", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Ruleset folder (default: $MSCC_TRIAGE_RULES or the project's rules/).",
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

    ``api.form_texts`` imports no Flask; it raises RulesetError (exit 3) naming the file, the key and
    the reason. Entries the ruleset does not know are printed as notes.
    """
    try:
        from mscc_triage_api.form_texts import load_texts
    except ModuleNotFoundError as exc:  # the api package is not installed: there is no form to check
        if exc.name not in ("mscc_triage_api", "mscc_triage_api.form_texts"):
            raise
        return
    for note in load_texts(ruleset).unused:
        click.echo(f"note: {note}", err=True)


def read_case_text(text: str, source: str) -> Any:
    """A case from JSON or YAML text; unreadable input is an invalid case, never a traceback."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CaseValidationError([Problem("", f"{source} is neither JSON nor YAML: {exc}", "unreadable")]) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mscc-triage")
def main() -> None:
    """mscc-triage: triage suspected metastatic spinal cord compression (decision support)."""


@main.command()
@click.argument("file", type=click.File("r", encoding="utf-8"))
@RULESET_OPTION
@click.option("--compact", is_flag=True, help="One line of JSON instead of an indented document.")
@handle_errors
def evaluate(file: Any, ruleset_path: Optional[Path], compact: bool) -> None:
    """Triage the case in FILE (JSON or YAML; '-' reads standard input) and print the result as JSON."""
    data = read_case_text(file.read(), file.name)
    result = load_for_cli(ruleset_path).evaluate(data)
    click.echo(result.to_json(indent=None if compact else 2))


@main.group()
def rules() -> None:
    """Check or list the rules of a ruleset."""


@rules.command("check")
@RULESET_OPTION
@handle_errors
def rules_check(ruleset_path: Optional[Path]) -> None:
    """Load, check and compile the rule files, check the form's words; print what they hold."""
    ruleset = load_for_cli(ruleset_path, with_form=True)
    data, program = ruleset.data, ruleset.program
    click.echo(f"ruleset {data.name} {data.version} ({data.path})")
    click.echo(f"sha256 {data.sha256}")
    click.echo(f"{len(data.rules)} rules in {len(data.files) - 2} files, {len(data.concepts)} concepts, "
               f"{len(data.actions)} actions, {len(data.flags)} flags")
    click.echo(f"compiled: {len(program.units)} units as {len(program.terms)} durable rules in "
               f"{len(program.stages)} stages, {program.n_chunks} facts per evaluation")
    click.echo("ok")


@main.command()
@RULESET_OPTION
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@handle_errors
def vocabulary(ruleset_path: Optional[Path], fmt: str) -> None:
    """List every action (id, timing, label) and flag (id, severity, label) a vignette may name."""
    data = load_for_cli(ruleset_path).data
    if fmt == "json":
        click.echo(json.dumps({"actions": [a.model_dump() for a in data.actions.values()],
                               "flags": [f.model_dump() for f in data.flags.values()]}, indent=2, ensure_ascii=False))
        return
    width = max(len(i) for i in [*data.actions, *data.flags])
    click.echo("actions:")
    for a in data.actions.values():
        click.echo(f"  {a.id:<{width}}  {a.timing:<13} {a.label}")
    click.echo("flags:")
    for f in data.flags.values():
        click.echo(f"  {f.id:<{width}}  {f.severity:<13} {f.label}")


@rules.command("list")
@RULESET_OPTION
@handle_errors
def rules_list(ruleset_path: Optional[Path]) -> None:
    """List every rule: id, version, title and source."""
    ruleset = load_for_cli(ruleset_path)
    width = max(len(r.id) for r in ruleset.data.rules)
    for rule in ruleset.data.rules:
        click.echo(f"{rule.id:<{width}}  v{rule.version:<3} {rule.title}  [{rule.source}]")


def _register_commands() -> None:
    # Commands kept in their own modules (vignette suites; the server), registered here.
    from ._audit_cli import register as register_audit_commands
    from ._cli_serve import serve
    from ._cli_vignettes import register as register_vignette_commands

    main.add_command(serve)
    register_vignette_commands(main)
    register_audit_commands(main)


_register_commands()
