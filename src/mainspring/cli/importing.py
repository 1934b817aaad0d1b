"""``mainspring import crontab|celery-beat``, ``mainspring export`` and ``mainspring apply``:
moving jobs in, and keeping them as code.

Every command shows the plan as a diff before it changes anything (``--dry-run`` stops
there). An import reports each entry it skipped with its place and reason and still imports
the rest, unless ``--strict``; its exit code is 3 when anything was skipped.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from mainspring.cli.main import CliState, pass_state
from mainspring.context import AppContext
from mainspring.core.triggers import zone
from mainspring.errors import ConflictError, ValidationError
from mainspring.migrate_in import Imported
from mainspring.migrate_in.celery_beat import BeatOptions, load_app_schedule, read_beat_schedule
from mainspring.migrate_in.crontab import CrontabOptions, read_crontab
from mainspring.migrate_in.django_beat import read_django_beat
from mainspring.services import jobs_code
from mainspring.services.audit import Actor
from mainspring.services.jobs import validate_queue
from mainspring.services.jobs_document import Selector, document_schema, load_document
from mainspring.worker.routing import check_hostname

SKIPPED_EXIT = 3
SYSTEM_CRONTABS = (Path("/etc/crontab"), Path("/etc/cron.d"))


def _read_text(path: str) -> str:
    """The file's text (``-``: standard input); a missing or non-UTF-8 file is one line."""
    try:
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise ValidationError("FILE", f"cannot read {path}: {exc.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError("FILE", f"{path} is not UTF-8 text (byte {exc.start})") from None


def _check_target(timezone: str, queue: str, worker: str | None) -> None:
    """Options that apply to every entry are checked once, not reported on each line."""
    zone(timezone)
    validate_queue(queue, "--queue")
    if worker is not None:
        try:
            check_hostname(worker)
        except ValueError as exc:
            raise ValidationError("--worker", str(exc)) from None


def _finish_import(
    state: CliState, imported: Imported, note: str, dry_run: bool, strict: bool
) -> None:
    """Report, plan, show and (unless a dry run) apply; exit 3 when entries were skipped."""
    for problem in imported.skipped:
        click.echo(f"skipped {problem}", err=True)
    for problem in imported.notes:
        click.echo(f"note {problem}", err=True)
    if strict and imported.skipped:
        click.echo(f"error: {len(imported.skipped)} skipped; nothing imported (--strict)", err=True)
        sys.exit(SKIPPED_EXIT)
    ctx = AppContext.open(state.settings())
    try:
        with ctx.session() as session:
            result = jobs_code.plan(session, imported.specs, manage=False)
            click.echo(jobs_code.render(result))
            if not dry_run:
                jobs_code.execute(session, result, Actor.cli(), note=note)
    finally:
        ctx.close()
    click.echo("dry run: nothing changed" if dry_run else f"imported {len(imported.specs)} job(s)")
    if imported.skipped:
        click.echo(f"{len(imported.skipped)} entr(y/ies) skipped, see above", err=True)
        sys.exit(SKIPPED_EXIT)


@click.group("import")
def import_() -> None:
    """Move jobs in from a crontab, a Celery beat_schedule or django-celery-beat."""


_dry_run = click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
_strict = click.option("--strict", is_flag=True, help="Import nothing if any entry is skipped.")
_paused = click.option("--paused", is_flag=True, help="Create the jobs paused.")
_timezone = click.option("--timezone", help="IANA zone of the schedules (default: configured).")


@import_.command("crontab")
@click.argument("file")
@click.option("--system/--user", default=None, help="Lines have a user field (default: by path).")
@_timezone
@click.option("--queue", help="Queue the jobs run on (default: the default queue).")
@click.option("--worker", help="Run every job on this worker only (its host queue).")
@click.option("--host", "source", help="Host name used in job names (default: worker or file).")
@click.option("--prefix", default="cron", show_default=True, help="First word of job names.")
@_paused
@_dry_run
@_strict
@pass_state
def crontab(
    state: CliState,
    file: str,
    system: bool | None,
    timezone: str | None,
    queue: str | None,
    worker: str | None,
    source: str | None,
    prefix: str,
    paused: bool,
    dry_run: bool,
    strict: bool,
) -> None:
    """Import a crontab FILE (- for standard input) as shell jobs, one per schedule line."""
    settings = state.settings()
    options = CrontabOptions(
        source=source or (worker.rpartition("@")[2] if worker else None) or _stem(file),
        timezone=timezone or settings.timezone,
        queue=queue or settings.default_queue,
        worker=worker,
        prefix=prefix,
        system=system if system is not None else _is_system(file),
        enabled=not paused,
        origin="standard input" if file == "-" else file,
    )
    _check_target(options.timezone, options.queue, worker)
    imported = read_crontab(_read_text(file), options)
    _finish_import(state, imported, f"import crontab {file}", dry_run, strict)


def _stem(file: str) -> str:
    return "stdin" if file == "-" else Path(file).stem or Path(file).name


def _is_system(file: str) -> bool:
    path = Path(file)
    return path == SYSTEM_CRONTABS[0] or path.parent == SYSTEM_CRONTABS[1]


@import_.command("celery-beat")
@click.option("--app", "app_ref", help="Celery app (or beat_schedule dict) as module:attribute.")
@click.option("--django-db", "django_db", help="URL of the Django database (django-celery-beat).")
@_timezone
@click.option("--queue", help="Queue of entries that name none (default: the default queue).")
@click.option("--prefix", default="", help="Text put before every entry's name.")
@_paused
@_dry_run
@_strict
@pass_state
def celery_beat(
    state: CliState,
    app_ref: str | None,
    django_db: str | None,
    timezone: str | None,
    queue: str | None,
    prefix: str,
    paused: bool,
    dry_run: bool,
    strict: bool,
) -> None:
    """Import periodic tasks from a Celery app's beat_schedule or a django-celery-beat DB."""
    if (app_ref is None) == (django_db is None):
        raise ValidationError("--app", "give exactly one of --app or --django-db")
    settings = state.settings()
    queue = queue or settings.default_queue
    if app_ref is not None:
        schedule, app_tz = load_app_schedule(app_ref)
        tz = timezone or app_tz or settings.timezone
        _check_target(tz, queue, None)
        options = BeatOptions(tz, queue, prefix, not paused, "celery-beat")
        imported = read_beat_schedule(schedule, options)
        note = f"import celery beat {app_ref}"
    else:
        assert django_db is not None
        tz = timezone or settings.timezone
        _check_target(tz, queue, None)
        options = BeatOptions(tz, queue, prefix, not paused, "django-celery-beat")
        imported = read_django_beat(django_db, options)
        note = "import django-celery-beat"
    _finish_import(state, imported, note, dry_run, strict)


@click.command("export")
@click.option("--tag", help="Only jobs with this tag.")
@click.option("--queue", help="Only jobs on this queue.")
@click.option("--task", help="Only jobs running this task.")
@click.option("--text", help="Only jobs with this in their name or description.")
@click.option("--state", "job_state", type=click.Choice(["enabled", "paused"]))
@click.option("--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml")
@click.option("--schema", is_flag=True, help="Print the document's JSON Schema instead.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here, not stdout.")
@pass_state
def export(
    state: CliState,
    tag: str | None,
    queue: str | None,
    task: str | None,
    text: str | None,
    job_state: str | None,
    fmt: str,
    schema: bool,
    output: str | None,
) -> None:
    """Write the jobs as a YAML document that `mainspring apply -f` reads back."""
    if schema:
        _write(json.dumps(document_schema(), indent=2, ensure_ascii=False) + "\n", output)
        return
    enabled = None if job_state is None else job_state == "enabled"
    selector = Selector(tag=tag, queue=queue, task=task, text=text, enabled=enabled)
    ctx = AppContext.open(state.settings())
    try:
        with ctx.session() as session:
            doc = jobs_code.export_document(session, selector)
    finally:
        ctx.close()
    if fmt == "json":
        _write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", output)
    else:
        _write(jobs_code.export_yaml(doc), output)


def _write(text: str, output: str | None) -> None:
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ValidationError("--output", f"cannot write {output}: {exc.strerror}") from None


@click.command("apply")
@click.option("-f", "--file", "file", required=True, help="The document (YAML or JSON; - stdin).")
@click.option("--dry-run", is_flag=True, help="Only show the diff.")
@click.option("--prune", is_flag=True, help="Delete managed jobs the document leaves out.")
@click.option("--yes", is_flag=True, help="Do not ask before deleting.")
@pass_state
def apply(state: CliState, file: str, dry_run: bool, prune: bool, yes: bool) -> None:
    """Create and update jobs to match a document, showing the diff first."""
    settings = state.settings()
    doc = load_document(_read_text(file), settings.timezone, settings.default_queue)
    ctx = AppContext.open(settings)
    try:
        with ctx.session() as session:
            planned = jobs_code.plan(session, doc.specs, prune=prune, selector=doc.selector)
            click.echo(jobs_code.render(planned))
            ask = bool(planned.count("delete")) and not yes
            if planned.writes and not dry_run and not ask:
                jobs_code.execute(session, planned, Actor.cli())
        if dry_run or not planned.writes:
            click.echo("dry run: nothing changed" if dry_run else "nothing to change")
            return
        if ask:
            _confirm_deletes(planned.count("delete"), file)
            with ctx.session() as session:  # a new transaction: nothing held while asking
                again = jobs_code.plan(session, doc.specs, prune=prune, selector=doc.selector)
                if _shape(again) != _shape(planned):
                    raise ConflictError("the jobs changed since the plan above; run apply again")
                jobs_code.execute(session, again, Actor.cli())
        click.echo(f"applied {len(planned.writes)} change(s)")
    finally:
        ctx.close()


def _confirm_deletes(count: int, file: str) -> None:
    """Deleting asks first: at a terminal a question, otherwise ``--yes`` is required."""
    if file == "-" or not sys.stdin.isatty():
        raise ValidationError("--yes", f"the plan deletes {count} job(s): add --yes to confirm")
    click.confirm(f"delete {count} job(s)?", abort=True)


def _shape(result: jobs_code.Plan) -> list[tuple[str, str, int | None]]:
    return [(c.action, c.name, c.version) for c in result.writes]
