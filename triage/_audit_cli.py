"""``triage audit ...`` and ``triage impact``: the decision record from the command line.

The store is chosen as the service chooses it: ``--dsn`` or ``MSCC_RECORD_DSN`` (PostgreSQL), else
``--store PATH`` or ``MSCC_RECORD_PATH`` (SQLite), else the default data folder. Exit codes: 0 success,
1 the chain is broken / a replay differs, 2 bad input (no such record, bad date), 3 a broken ruleset,
5 the store cannot be read or written.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any, Optional

import click

from ._errors import RecordUnavailable
from ._record import RecordStore, SqliteStore, open_store, time_bound
from ._ruleset import load_ruleset_data
from .settings import load_settings
from ._cli_common import handle_errors


def _store_options(func: Any) -> Any:
    func = click.option("--dsn", default=None, metavar="DSN",
                        help="PostgreSQL connection string (default: $MSCC_RECORD_DSN).")(func)
    func = click.option("--store", "store_path", default=None, type=click.Path(dir_okay=False, path_type=Path),
                        help="SQLite record file (default: $MSCC_RECORD_PATH or "
                             "~/.local/share/mscc-triage/records.sqlite3).")(func)
    return func


def _open(store_path: Optional[Path], dsn: Optional[str]) -> RecordStore:
    """The store, closed when the command ends (its connections are released). A SQLite file that does
    not exist is an error (exit 5), not an empty record made there: ``verify`` answering "ok: 0 records"
    for a mistyped path would read as a chain that verifies."""
    store = open_store(store_path, dsn)
    if isinstance(store, SqliteStore) and not store.path.exists():
        raise RecordUnavailable(f"the decision record cannot be read: there is none at {store.path} (nothing "
                                "was recorded there; --store or MSCC_RECORD_PATH names the file)")
    click.get_current_context().call_on_close(store.close)
    return store


class DateParam(click.ParamType):  # type: ignore[type-arg]
    name = "DATE"

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        try:
            return time_bound(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


DATE = DateParam()
JOBS_OPTION = click.option("--jobs", "-j", type=click.IntRange(1, 256), default=None,
                           help="Worker processes (default: every core); the report is the same for any number.")
PROGRESS_OPTION = click.option("--progress-every", "progress_every", type=click.FloatRange(0), default=5.0,
                               show_default=True, metavar="SECONDS",
                               help="A progress line on stderr this often (records done of the total, rate, "
                                    "time left), and a last one when done; 0: none. Runs shorter than this "
                                    "print nothing.")


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m{seconds % 60:02d}s" if seconds >= 3600 else \
        f"{seconds // 60}m{seconds % 60:02d}s"


class Progress:
    """The progress of a long run, one line on stderr every ``every`` seconds: records done of the total
    (``total``: an upper bound, the store's record count, or ``None`` when unknown), rate, time left."""

    def __init__(self, what: str, total: Optional[int], every: float) -> None:
        self.what, self.total, self.every = what, total, every
        self.started = self.last = time.monotonic()
        self.shown = False

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if not self.every or now - self.last < self.every:
            return
        self.last, self.shown = now, True
        rate = done / max(now - self.started, 1e-9)
        line = f"{self.what}: {done:,}"
        if self.total:
            left = max(self.total - done, 0)
            line += f"/{self.total:,} records ({100 * done / self.total:.0f}%), {rate:,.0f} records/s, " \
                    f"about {_duration(left / rate) if rate else '?'} left"
        else:
            line += f" records, {rate:,.0f} records/s"
        click.echo(line, err=True)

    def finish(self, done: int) -> None:
        if self.shown:
            elapsed = time.monotonic() - self.started
            click.echo(f"{self.what}: {done:,} records in {_duration(elapsed)}, "
                       f"{done / max(elapsed, 1e-9):,.0f} records/s", err=True)


def _progress(what: str, store: RecordStore, since: Optional[str], every: float) -> Progress:
    # the store counts every record (a few prune checkpoints too) but not those since a date: then unknown
    return Progress(what, store.count() if since is None and every else None, every)


@click.group()
def audit() -> None:
    """The decision record: verify, show, export, replay, prune."""


def _sha256(ctx: Any, param: Any, value: Optional[str]) -> Optional[str]:
    if value is not None and (len(value) != 64 or any(c not in "0123456789abcdef" for c in value.lower())):
        raise click.BadParameter("a sha256 (64 hexadecimal digits), as 'audit verify' prints the head")
    return value.lower() if value else None


def _keep_line(count: int, head_hash: str) -> str:
    return f"keep outside the store, to check later: --expect-head {head_hash} --expect-count {count}"


@audit.command()
@click.option("--expect-head", default=None, metavar="HASH", callback=_sha256,
              help="The head's sha256 kept outside the store (from an earlier verify or prune): the chain must "
                   "still hold that record.")
@click.option("--expect-count", type=click.IntRange(0), default=None, metavar="N",
              help="With --expect-head: how many records the chain held up to that head (nothing deleted since).")
@_store_options
@handle_errors
def verify(expect_head: Optional[str], expect_count: Optional[int], store_path: Optional[Path],
           dsn: Optional[str]) -> None:
    """Check the whole chain; name the first broken record (exit 1).

    The chain alone cannot tell a prune from records deleted behind a forged checkpoint by someone who
    can write to the store: keep the head it prints outside the store, and check against it with
    --expect-head and --expect-count."""
    if expect_count is not None and expect_head is None:
        raise click.UsageError("--expect-count needs --expect-head (the head it counts up to)")
    store = _open(store_path, dsn)
    report = store.verify(expect_head, expect_count)
    if report.broken is not None:
        click.echo(f"BROKEN: {report.broken}", err=True)
        click.echo(f"checked {report.count} records before stopping", err=True)
        sys.exit(1)
    first = f" from record {report.first_seq}" if report.first_seq and report.first_seq > 1 else ""
    click.echo(f"ok: {report.count} records{first}, head {report.head_seq} sha256 {report.head_hash}")
    if expect_head is not None:
        click.echo(f"the head kept outside the store is in the chain{' with its count' if expect_count is not None else ''}")
    if report.count:
        click.echo(_keep_line(report.count, report.head_hash))


@audit.command()
@click.argument("record_id")
@_store_options
@handle_errors
def show(record_id: str, store_path: Optional[Path], dsn: Optional[str]) -> None:
    """Print one record (by seq number, request id or CDS card uuid) as JSON, with its hash."""
    record = _open(store_path, dsn).get(record_id)
    click.echo(json.dumps({**record.body, "hash": record.hash}, indent=2, ensure_ascii=False, sort_keys=True))


@audit.command()
@click.option("--since", type=DATE, default=None, help="Only records at or after DATE (YYYY-MM-DD or ISO 8601).")
@click.option("--all-kinds", is_flag=True, help="Include prune checkpoints (default: decisions only).")
@_store_options
@handle_errors
def export(since: Optional[str], all_kinds: bool, store_path: Optional[Path], dsn: Optional[str]) -> None:
    """Print records as JSON lines (canonical form, with each record's hash), once the whole chain verifies."""
    store = _open(store_path, dsn)
    report = store.verify()   # first: a broken chain exports nothing (no partial or silent export)
    if report.broken is not None:
        click.echo(f"BROKEN: {report.broken}", err=True)
        click.echo("nothing exported: 'triage audit verify' shows the chain", err=True)
        sys.exit(1)
    # the records the verification covered: a server recording meanwhile appends after them
    for record in store.records(since=since, kind=None if all_kinds else "decision", through=report.head_seq):
        click.echo(record.as_json_line())


@audit.command()
@click.option("--ruleset", "rulesets", multiple=True, type=click.Path(file_okay=False, path_type=Path),
              help="A ruleset folder some records were recorded under (repeatable); the current one is always "
                   "offered. Records are matched to rulesets by sha256.")
@click.option("--since", type=DATE, default=None)
@JOBS_OPTION
@PROGRESS_OPTION
@_store_options
@handle_errors
def replay(rulesets: tuple[Path, ...], since: Optional[str], jobs: Optional[int], progress_every: float,
           store_path: Optional[Path], dsn: Optional[str]) -> None:
    """Re-evaluate recorded cases with the ruleset each was recorded under; any difference exits 1."""
    from ._reevaluate import replay as run_replay

    paths: dict[str, Optional[str]] = {load_ruleset_data(None).sha256: None}
    for folder in rulesets:
        paths[load_ruleset_data(folder).sha256] = str(folder)
    store = _open(store_path, dsn)
    progress = _progress("replay", store, since, progress_every)
    report = run_replay(store.bodies(since=since), paths, jobs, progress)
    progress.finish(report.checked)
    for seq, rid, kind, detail in report.failures:
        click.echo(f"record {seq} ({rid}): {'error' if kind == 'error' else 'not reproduced'}: {detail}", err=True)
    for sha, n in sorted(report.missing.items()):
        click.echo(f"{n} records were recorded under ruleset sha256 {sha}: give it with --ruleset PATH", err=True)
    if not report.ok:
        click.echo(f"replayed {report.checked} records: {report.failed} reproducibility failures", err=True)
        sys.exit(1)
    click.echo(f"replayed {report.checked} records: 0 differences")


def retention_bound(days: Optional[int], today: Optional[dt.date] = None) -> str:
    """The ``--before`` that ``MSCC_RECORD_RETENTION_DAYS`` means (records kept that many days)."""
    if days is None:
        raise click.UsageError("give --before DATE, or set MSCC_RECORD_RETENTION_DAYS to a whole number of days "
                               "(at least 1)")
    return time_bound(((today or dt.date.today()) - dt.timedelta(days=days)).isoformat())


@audit.command()
@click.option("--before", type=DATE, default=None,
              help="Delete the records older than DATE (default: today minus $MSCC_RECORD_RETENTION_DAYS).")
@_store_options
@handle_errors
def prune(before: Optional[str], store_path: Optional[Path], dsn: Optional[str]) -> None:
    """Delete records older than DATE, keeping the chain verifiable (a checkpoint holds the last hash).

    Without --before, the retention setting MSCC_RECORD_RETENTION_DAYS decides (run it daily, e.g.
    from cron); with neither, nothing is deleted and the command says how to set one."""
    if before is None:
        before = retention_bound(load_settings().record_retention_days)
    elif before > time_bound(dt.datetime.now(dt.timezone.utc)):
        raise click.BadParameter(f"{before} is in the future: a prune deletes records older than a past date",
                                 param_hint="'--before'")
    store = _open(store_path, dsn)
    report = store.prune(before)
    if report.checkpoint is None:
        click.echo(f"nothing to prune before {before}")
        return
    click.echo(f"pruned {report.pruned} records (through record {report.through_seq}); checkpoint record "
               f"{report.checkpoint.seq} ({report.checkpoint.id})")
    click.echo(_keep_line(report.remaining, report.checkpoint.hash))


@click.command()
@click.argument("new_rules", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--since", type=DATE, default=None, help="Only records at or after DATE.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--limit", type=click.IntRange(0), default=50, show_default=True,
              help="Changed records listed (text format); the counts cover all.")
@JOBS_OPTION
@PROGRESS_OPTION
@_store_options
@handle_errors
def impact(new_rules: Path, since: Optional[str], fmt: str, limit: int, jobs: Optional[int], progress_every: float,
           store_path: Optional[Path], dsn: Optional[str]) -> None:
    """Re-triage the recorded cases under the ruleset NEW_RULES: what would change (urgency down first)."""
    from ._reevaluate import impact as run_impact

    data = load_ruleset_data(new_rules)   # a broken candidate stops here (exit 3), before any work
    store = _open(store_path, dsn)
    progress = _progress("impact", store, since, progress_every)
    started = time.perf_counter()
    # the text report lists at most --limit changes: only those are kept (memory stays flat)
    report = run_impact(store.bodies(since=since), new_rules, jobs, progress, keep=None if fmt == "json" else limit)
    elapsed = time.perf_counter() - started
    progress.finish(report.total)
    summary = report.summary()
    if fmt == "json":
        click.echo(json.dumps({"candidate": {"name": data.name, "version": data.version, "sha256": data.sha256},
                               "summary": summary, "seconds": round(elapsed, 3),
                               "changes": [c.as_dict() for c in report.ordered()],
                               "errors": [{"seq": s, "id": i, "error": e} for s, i, e in report.errors]},
                              ensure_ascii=False))
        return
    click.echo(f"candidate {data.name} {data.version} sha256 {data.sha256}")
    click.echo(f"{summary['records']} records re-triaged in {elapsed:.1f} s: {summary['changed']} change, "
               f"{summary['unchanged']} unchanged")
    click.echo(f"  urgency DOWN     {summary['urgency_down']}")
    click.echo(f"  urgency up       {summary['urgency_up']}")
    click.echo(f"  actions changed  {summary['actions_changed']}")
    click.echo(f"  flags changed    {summary['flags_changed']}")
    if report.errors:
        click.echo(f"  errors           {summary['errors']}")
    for change in report.ordered()[:limit]:
        parts = [f"{change.old_urgency} -> {change.new_urgency}" if change.direction != "same" else change.new_urgency]
        for sign, label, items in (("+", "actions", change.added_actions), ("-", "actions", change.removed_actions),
                                   ("+", "flags", change.added_flags), ("-", "flags", change.removed_flags)):
            if items:
                parts.append(f"{sign}{label} {','.join(items)}")
        click.echo(f"{'DOWN' if change.direction == 'down' else change.direction:>4}  record {change.seq} "
                   f"({change.id}, {change.channel}, {change.time}): " + "; ".join(parts))
    for seq, rid, error in report.errors[:limit]:  # the first ones
        click.echo(f"error record {seq} ({rid}): {error}", err=True)


def register(main: click.Group) -> None:
    main.add_command(audit)
    main.add_command(impact)
