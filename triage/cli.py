"""The ``triage`` command line: evaluate cases, replay vignettes, check and list rules, serve.

Exit codes (one place, from the error tree): 0 success, 1 a vignette failed, 2 invalid input
(a case or a vignette file), 3 a broken ruleset, 4 an engine failure.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import click

from ._audit_cli import register as register_audit_commands
from ._cli_common import RULESET_OPTION, check_form_texts, handle_errors, load_for_cli, read_case_text
from ._cli_serve import serve
from ._cli_vignettes import register as register_vignette_commands

__all__ = ["RULESET_OPTION", "check_form_texts", "handle_errors", "load_for_cli", "main", "read_case_text"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mscc-triage")
def main() -> None:
    """mscc-triage: triage suspected metastatic spinal cord compression (decision support)."""


@main.command()
@click.argument("file", type=click.File("rb"))
@RULESET_OPTION
@click.option("--compact", is_flag=True, help="One line of JSON instead of an indented document.")
@handle_errors
def evaluate(file: Any, ruleset_path: Optional[Path], compact: bool) -> None:
    """Triage the case in FILE (JSON or YAML; '-' reads standard input) and print the result as JSON."""
    data = read_case_text(file.read(), getattr(file, "name", "<stdin>"))
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


# Commands kept in their own modules (vignette suites, the decision record, the server).
main.add_command(serve)
register_vignette_commands(main)
register_audit_commands(main)
