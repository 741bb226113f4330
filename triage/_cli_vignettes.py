"""Vignette commands of the ``triage`` CLI: replay (text, JSON, JUnit; coverage), diff, vignette new/check."""

from __future__ import annotations

import configparser
import json
import os
import sys
import tomllib
from pathlib import Path
from typing import Any, Optional

import click
import yaml

from ._errors import CaseValidationError, Problem, VignetteFormatError
from ._triage import load_ruleset
from ._vignettes import coverage as suite_coverage
from ._vignettes import diff as ruleset_diff
from ._vignettes import junit_xml, lint, skeleton
from ._vignettes import replay as replay_suite
from ._cli_common import RULESET_OPTION, handle_errors, load_for_cli, read_case_text


def _pytest_ini(folder: Path) -> Optional[tuple[Path, dict[str, Any]]]:
    """The pytest configuration file of ``folder``, as pytest picks it (pytest.ini, .pytest.ini,
    pyproject.toml with [tool.pytest.ini_options], tox.ini with [pytest], setup.cfg with [tool:pytest]),
    with its options; ``None`` when the folder has none."""
    for name in ("pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg"):
        config = folder / name
        if not config.is_file():
            continue
        try:
            if name == "pyproject.toml":
                table = tomllib.loads(config.read_text(encoding="utf-8")).get("tool", {}).get("pytest", {})
                if "ini_options" in table:
                    return config, dict(table["ini_options"])
                continue
            parser = configparser.ConfigParser(interpolation=None)
            parser.read(config, encoding="utf-8")
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, configparser.Error) as exc:
            raise click.UsageError(f"{config}: cannot be read as pytest reads it ({exc})") from None
        section = {"setup.cfg": "tool:pytest", "tox.ini": "pytest"}.get(name, "pytest")
        if parser.has_section(section):
            return config, dict(parser.items(section))
        if name in ("pytest.ini", ".pytest.ini"):   # pytest takes these even without a [pytest] section
            return config, {}
    return None


def suite_ruleset(ruleset_path: Optional[Path], paths: tuple[Path, ...]) -> Optional[Path]:
    """The ruleset a suite is replayed against, in the pytest plugin's order: ``--ruleset``, else the
    ``vignette_ruleset`` of the pytest configuration file that pytest would read for the suite (the
    nearest pytest.ini, .pytest.ini, pyproject.toml, tox.ini or setup.cfg holding pytest options, above
    the suite; relative to that file's folder), else ``$MSCC_TRIAGE_RULES`` or the installed ruleset
    (``None``). The suite's own setting comes before the environment: a server's ``MSCC_TRIAGE_RULES``
    must not replace the ruleset a hospital's suite names."""
    if ruleset_path is not None or not paths:
        return ruleset_path
    resolved = [p.resolve() for p in paths]
    start = Path(os.path.commonpath([p if p.is_dir() else p.parent for p in resolved]))
    for folder in [start, *start.parents]:
        found = _pytest_ini(folder)
        if found is None:
            continue
        config, options = found
        value = options.get("vignette_ruleset")
        if isinstance(value, str) and value.strip():
            chosen = folder / value.strip()
            click.echo(f"ruleset: {chosen} (vignette_ruleset of {config})", err=True)
            return chosen
        return None
    return None


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@RULESET_OPTION
@click.option("--format", "fmt", type=click.Choice(["text", "json", "junit"]), default="text", show_default=True)
@click.option("-q", "--quiet", is_flag=True, help="Text: print failures and the summary only.")
@click.option("--coverage", "show_coverage", is_flag=True,
              help="Report the rules the suite fires and misses, and the ids it never produces or checks.")
@click.option("--fail-on-uncovered", is_flag=True, help="Exit 1 when some rule is fired by no vignette.")
@handle_errors
def replay(paths: tuple[Path, ...], ruleset_path: Optional[Path], fmt: str, quiet: bool, show_coverage: bool,
           fail_on_uncovered: bool) -> None:
    """Replay vignette files or folders; exit 1 if any vignette fails.

    The ruleset is --ruleset, else the suite's pytest configuration (vignette_ruleset, as the pytest
    plugin reads it), else $MSCC_TRIAGE_RULES, else the installed one. A suite with no vignette exits 2."""
    ruleset = load_for_cli(suite_ruleset(ruleset_path, paths))
    outcomes = replay_suite(paths, ruleset)
    failed = sum(not o.passed for o in outcomes)
    cov = suite_coverage(outcomes, ruleset) if (show_coverage or fail_on_uncovered) else None
    if fmt == "junit":
        click.echo(junit_xml(outcomes))
    elif fmt == "json":
        body = {"ruleset": {"name": ruleset.name, "version": ruleset.version, "sha256": ruleset.sha256},
                "passed": len(outcomes) - failed, "failed": failed,
                "vignettes": [{"id": o.vignette.key, "title": o.vignette.title, "file": o.file, "passed": o.passed,
                               "mismatches": o.mismatches} for o in outcomes]}
        if cov:
            body["coverage"] = cov.as_dict()
        click.echo(json.dumps(body, indent=2, ensure_ascii=False))
    else:
        for outcome in outcomes:
            v = outcome.vignette
            if outcome.passed:
                if not quiet:
                    click.echo(f"PASS {v.key}  {v.title}")
                continue
            click.echo(f"FAIL {v.key}  {v.title}  ({outcome.file})")
            for mismatch in outcome.mismatches:
                click.echo(f"     {v.key}: {mismatch}")
        if cov and show_coverage:
            total = len(ruleset.data.rules)
            click.echo(f"coverage: {len(cov.rules_fired)}/{total} rules fired")
            for rule_id in cov.rules_unfired:
                click.echo(f"  rule never fired: {rule_id}")
            for item in cov.ids_never_produced:
                click.echo(f"  id never produced: {item}")
            for item in cov.ids_never_checked:
                click.echo(f"  id never checked by an expectation: {item}")
        click.echo(f"ruleset {ruleset.name} {ruleset.version} sha256 {ruleset.sha256} ({ruleset.path})")
        click.echo(f"{len(outcomes) - failed} passed, {failed} failed")
    if failed or (fail_on_uncovered and cov and not cov.complete):
        sys.exit(1)


@click.command()
@click.argument("old_rules", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.argument("new_rules", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.argument("suite", nargs=-1, required=True, type=click.Path(path_type=Path))
@handle_errors
def diff(old_rules: Path, new_rules: Path, suite: tuple[Path, ...]) -> None:
    """Replay SUITE against two rulesets and list every vignette whose answer changed.

    Urgency changes come first; an urgency that went down is marked '!! URGENCY DOWN' and makes the
    command exit 1 (the review sheet of a rule change). Otherwise it exits 0.
    """
    old, new = load_ruleset(old_rules), load_ruleset(new_rules)
    changes = ruleset_diff(suite, old, new)
    click.echo(f"old: {old.name} {old.version} {old.sha256[:12]}   new: {new.name} {new.version} {new.sha256[:12]}")
    for c in changes:
        head = f"{c.vignette.key}  {c.vignette.title}"
        if c.urgency_down:
            click.echo(f"!! URGENCY DOWN {c.old_urgency} -> {c.new_urgency}  {head}")
        elif c.urgency_changed:
            click.echo(f"urgency {c.old_urgency or 'rejected'} -> {c.new_urgency or 'rejected'}  {head}")
        else:
            click.echo(f"changed  {head}")
        for label, items in (("+ action", c.actions_added), ("- action", c.actions_removed),
                             ("+ flag", c.flags_added), ("- flag", c.flags_removed),
                             ("+ withheld", c.withheld_added), ("- withheld", c.withheld_removed)):
            for item in items:
                click.echo(f"    {label} {item}")
    down = sum(c.urgency_down for c in changes)
    click.echo(f"{len(changes)} vignettes changed, {sum(c.urgency_changed for c in changes)} in urgency, {down} down")
    if down:
        sys.exit(1)


@click.group()
def vignette() -> None:
    """Write and check vignette files."""


@vignette.command("new")
@click.argument("case_file", type=click.File("rb"))
@click.option("--id", "vignette_id", default="NEW-1", show_default=True)
@click.option("--title", default="", help="What the vignette checks.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here (default: stdout).")
@click.option("--force", is_flag=True, help="Replace the output file if it exists (default: refuse).")
@RULESET_OPTION
@handle_errors
def vignette_new(case_file: Any, vignette_id: str, title: str, output: Optional[Path], force: bool,
                 ruleset_path: Optional[Path]) -> None:
    """Write a vignette skeleton recording today's answer for CASE_FILE; then correct what is wrong."""
    if output and output.exists() and not force:   # a vignette corrected by hand is never overwritten silently
        raise VignetteFormatError(str(output), [Problem("", "exists already: give --force to replace it", "exists")])
    case = read_case_text(case_file.read(), getattr(case_file, "name", "<stdin>"))
    if not isinstance(case, dict):
        raise CaseValidationError([Problem("", "a case must be a JSON object", "invalid_type")])
    ruleset = load_for_cli(suite_ruleset(ruleset_path, (output,) if output else ()))
    text = yaml.safe_dump(skeleton(case, ruleset, vignette_id, title), sort_keys=False,
                          allow_unicode=True)
    text = "# Recorded from today's result: check every expectation before you rely on it.\n" + text
    if output:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise VignetteFormatError(str(output), [Problem("", f"cannot be written: {exc.strerror or exc}",
                                                            "unwritable")]) from None
    else:
        click.echo(text, nl=False)


@vignette.command("check")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@RULESET_OPTION
@handle_errors
def vignette_check(paths: tuple[Path, ...], ruleset_path: Optional[Path]) -> None:
    """Check vignette files without running them: format, unknown keys, unknown ids, duplicate ids."""
    problems = lint(paths, load_for_cli(suite_ruleset(ruleset_path, paths)))
    for problem in problems:
        click.echo(problem)
    click.echo(f"{len(problems)} problem{'' if len(problems) == 1 else 's'}" if problems else "ok")
    if problems:
        sys.exit(2)


def register(group: click.Group) -> None:
    """Add the vignette commands to the ``triage`` group."""
    for command in (replay, diff, vignette):
        group.add_command(command)
