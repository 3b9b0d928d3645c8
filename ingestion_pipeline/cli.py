"""`ingestion-pipeline`: ingest (one synchronous pass through the Dagster assets),
query (DuckDB over the warehouse tables), erase (a privacy erasure) and serve."""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import json
import os
import sys
import uuid
from pathlib import Path

import click

from .settings import Settings

format_option = click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
warehouse_option = click.option(
    "--warehouse",
    "warehouse",
    envvar="INGEST_WAREHOUSE_DIR",
    help="Warehouse: a folder or s3://bucket/prefix [INGEST_WAREHOUSE_DIR, default data/warehouse]",
)


def existing_warehouse(settings: Settings, missing: str):
    """The settings' warehouse, or a clear error when there is none there."""
    from .warehouse import LEDGER, Warehouse

    warehouse = Warehouse(settings.warehouse_dir)
    exists = warehouse.lake.exists(LEDGER) if settings.warehouse_is_remote else Path(settings.warehouse_dir).is_dir()
    if not exists:
        raise click.ClickException(f"no warehouse at {settings.warehouse_dir}: {missing}")
    refuse_legacy(warehouse)
    return warehouse


def refuse_legacy(warehouse) -> None:
    from .warehouse import LegacyWarehouse

    try:
        warehouse.refuse_legacy()
    except LegacyWarehouse as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
def main() -> None:
    """Self-hosted customer-data ingestion: landed files -> current-state Parquet tables."""


def run_ingest(settings: Settings, echo=click.echo) -> tuple[list[dict], list[str]]:
    """Runs the ingest job once per landing day with pending files, in-process, on the
    Dagster instance of DAGSTER_HOME (or a temporary one). Returns (ledger rows, failures)."""
    import dagster as dg
    import polars as pl

    from .definitions import build_definitions
    from .defs.jobs import day_run_requests
    from .defs.resources import IngestResource
    from .landing import open_landing
    from .ledger import read_ledger
    from .pipeline import pending_by_partition, tables_behind
    from .warehouse import Warehouse

    store = open_landing(settings.landing_url)
    refuse_legacy(Warehouse(settings.warehouse_dir))
    groups = pending_by_partition(settings, store)
    if not groups and not tables_behind(settings):
        return [], []
    ingest = IngestResource(
        landing_url=settings.landing_url,
        warehouse_dir=str(settings.warehouse_dir),
        max_record_bytes=settings.max_record_bytes,
        max_decoded_bytes=settings.max_decoded_bytes,
    )
    definitions = build_definitions(ingest)
    home = os.environ.get("DAGSTER_HOME")
    instance = _open_instance(home) if home else dg.DagsterInstance.ephemeral()
    failures = []
    quiet = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    requests = day_run_requests(groups, key_prefix=f"cli:{uuid.uuid4().hex[:8]}")
    for i, request in enumerate(requests, 1):
        streams = request.tags["ingestion/streams"]
        what = f"{request.tags['ingestion/files']} new file(s)" if request.tags["ingestion/files"] != "0" else "committing staged results"
        echo(f"[{i}/{len(requests)}] landing day {request.partition_key}: {what} in {streams}", err=True)
        result = definitions.resolve_job_def("ingest_job").execute_in_process(
            partition_key=request.partition_key,
            asset_selection=request.asset_selection,
            instance=instance,
            tags={**request.tags, "ingestion/source": "cli"},
            run_config=quiet,
            raise_on_error=False,
        )
        if not result.success:
            failures.append(_run_failure(result, f"landing day {request.partition_key}"))
    # A run killed between its ledger commit and its table merge leaves tables behind
    # the ledger (the ledger counts the day as done): merge them.
    behind = tables_behind(settings)
    if behind:
        tables = behind
        echo(f"merging {', '.join(tables)}: behind the ledger (an earlier run stopped before merging)", err=True)
        result = definitions.resolve_job_def("tables_job").execute_in_process(
            asset_selection=[dg.AssetKey(t) for t in tables],
            instance=instance,
            tags={"ingestion/source": "cli"},
            run_config=quiet,
            raise_on_error=False,
        )
        if not result.success:
            failures.append(_run_failure(result, "the table rebuild"))
    wanted = {f.file_id for files in groups.values() for f in files}
    ledger = read_ledger(Warehouse(settings.warehouse_dir)).filter(pl.col("file_id").is_in(list(wanted)))
    return ledger.sort("landed_at", "file").to_dicts(), failures


def _open_instance(home: str):
    """The instance of DAGSTER_HOME, creating the folder when missing (a fresh clone under
    `make ingest`: the runs show in the UI later). Dagster creates and stamps its SQLite
    storage on first use without a lock: two processes doing that at once leave two alembic
    heads, and every later start fails ("more than one head present"). So the first use
    (and every open, which costs a few ms) happens under an exclusive lock in the home."""
    import fcntl

    import dagster as dg

    os.makedirs(home, exist_ok=True)
    with open(os.path.join(home, ".instance.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed, or the process dies
        return dg.DagsterInstance.get()


def _run_failure(result, what: str) -> str:
    """The run's failed steps, each with the error that stopped it (Dagster's
    step-wrapper exception unwrapped to its cause)."""
    reasons = []
    for ev in result.get_step_failure_events():
        error = ev.event_specific_data.error
        while error is not None and error.cause is not None and error.cls_name == "DagsterExecutionStepExecutionError":
            error = error.cause
        text = (error.message or "").strip().splitlines()[0] if error is not None else "failed"
        reasons.append(f"{ev.step_key}: {text}")
    return f"run {result.run_id} for {what} failed" + "".join(f"\n  {r}" for r in reasons)


@main.command()
@click.option(
    "--landing",
    "landing",
    envvar="INGEST_LANDING_URL",
    help="Landing folder or s3://bucket/prefix [INGEST_LANDING_URL, default data/landing]",
)
@warehouse_option
def ingest(landing: str | None, warehouse: str | None) -> None:
    """One synchronous pass over every pending landed file, with a per-file summary.

    Exits 0 when the pipeline ran (even if records were rejected), 1 when it failed."""
    settings = Settings.from_env(landing_url=landing, warehouse_dir=warehouse)
    if "://" not in settings.landing_url and not Path(settings.landing_url).is_dir():
        raise click.ClickException(f"landing folder {settings.landing_url} does not exist")
    rows, failures = run_ingest(settings)
    if not rows and not failures:
        click.echo(f"Nothing pending in {settings.landing_url}.")
        return
    for r in rows:
        line = (
            f"{r['status']:<17} {r['file']}  read={r['rows_read']} loaded={r['rows_loaded']} "
            f"rejected={r['rows_rejected']} duplicate={r['rows_duplicate']}"
        )
        if r["first_error"]:
            line += f"\n                  first error: {r['first_error']}"
        click.echo(line)
    totals = {k: sum(r[k] for r in rows) for k in ("rows_read", "rows_loaded", "rows_rejected", "rows_duplicate")}
    click.echo(
        f"{len(rows)} file(s): read={totals['rows_read']} loaded={totals['rows_loaded']} "
        f"rejected={totals['rows_rejected']} duplicate={totals['rows_duplicate']}"
    )
    if failures:
        for f in failures:
            click.echo(f"error: {f}", err=True)
        sys.exit(1)


def _jsonable(value):
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dt.timedelta):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


@main.command()
@warehouse_option
@format_option
@click.option(
    "--as-of",
    "as_of",
    multiple=True,
    help="Read an older version: VERSION (of the one table the SQL reads), TABLE=VERSION (repeatable), "
    "or a time (ISO 8601; every table as it was then). `ingestion-pipeline history TABLE` lists versions.",
)
@click.argument("sql")
def query(warehouse: str | None, fmt: str, as_of: tuple[str, ...], sql: str) -> None:
    """Run SQL with DuckDB over the warehouse tables (contacts, accounts,
    contact_events, account_events, crm_leads, rejected_records, ingested_files,
    erasures), local or on S3."""
    import duckdb

    from .lake import VersionUnavailable

    settings = Settings.from_env(warehouse_dir=warehouse)
    wh = existing_warehouse(settings, "run `ingestion-pipeline ingest` first")
    versions = _as_of_versions(as_of, sql, list(wh.table_schemas()))
    try:
        columns, rows = wh.query(sql, versions)
    except VersionUnavailable as exc:
        raise click.ClickException(f"{exc} (an erasure or the maintenance vacuum removed the files of older versions)") from exc
    except duckdb.Error as exc:
        raise click.ClickException(str(exc)) from exc
    if columns:
        _print_rows(columns, rows, fmt)


def _as_of_versions(as_of: tuple[str, ...], sql: str, tables: list[str]) -> dict:
    """--as-of values -> {table: version number or time}."""
    import duckdb

    versions: dict = {}
    for value in as_of:
        table, sep, version = value.rpartition("=")
        if sep:
            if table not in tables:
                raise click.BadParameter(f"unknown table {table!r}; tables: {', '.join(tables)}", param_hint="'--as-of'")
            versions[table] = _version(version)
            continue
        version = _version(value)
        if isinstance(version, dt.datetime):
            versions.update(dict.fromkeys(tables, version))
            continue
        read = sorted(set(duckdb.get_table_names(sql)) & set(tables))
        if len(read) != 1:
            raise click.BadParameter(
                f"a bare version number needs a query of exactly one table (this one reads {', '.join(read) or 'none'}): "
                "give TABLE=VERSION for each table, or a time",
                param_hint="'--as-of'",
            )
        versions[read[0]] = version
    return versions


def _version(text: str) -> int | dt.datetime:
    if text.strip().isdigit():
        return int(text)
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is neither a version number nor an ISO 8601 time", param_hint="'--as-of'") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _print_rows(columns: list[str], rows: list[tuple], fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps([{c: _jsonable(v) for c, v in zip(columns, row)} for row in rows], ensure_ascii=False))
    elif fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[_jsonable(v) if v is not None else "" for v in row] for row in rows])
    else:
        _print_table(columns, rows)


@main.command()
@warehouse_option
@format_option
@click.option("--limit", type=click.IntRange(1), default=None, help="Only the newest LIMIT versions")
@click.argument("table")
def history(warehouse: str | None, fmt: str, limit: int | None, table: str) -> None:
    """The versions of a table, newest first: when, which run (a Dagster run id or
    a CLI run's), what operation, and how many rows it added, updated and removed.
    Read an older version with `query --as-of`."""
    from .history import table_history

    settings = Settings.from_env(warehouse_dir=warehouse)
    wh = existing_warehouse(settings, "run `ingestion-pipeline ingest` first")
    tables = list(wh.table_schemas())
    if table not in tables and table not in wh.specs():
        raise click.BadParameter(f"unknown table {table!r}; tables: {', '.join(tables)}", param_hint="'TABLE'")
    rows = table_history(wh, table, limit)
    _print_rows(list(rows[0]) if rows else ["version"], [tuple(r.values()) for r in rows], fmt)


@main.command()
@warehouse_option
@click.option(
    "--retention-hours",
    type=click.FloatRange(0),
    default=None,
    help="Keep the files versions of the last N hours need [INGEST_RETENTION_HOURS, default 168]",
)
def maintain(warehouse: str | None, retention_hours: float | None) -> None:
    """Compact small files and vacuum old versions of every table (what the daily
    `maintenance` job does). Safe while ingests and queries run."""
    from .maintenance import maintain as run_maintenance

    settings = Settings.from_env(warehouse_dir=warehouse, retention_hours=retention_hours)
    existing_warehouse(settings, "nothing to maintain")
    report = run_maintenance(settings, log=lambda msg: click.echo(msg, err=True), run_id=f"cli-{uuid.uuid4().hex[:8]}")
    click.echo(report.describe())


def _print_table(columns: list[str], rows: list[tuple]) -> None:
    def cell(v) -> str:
        text = "NULL" if v is None else str(_jsonable(v))
        return text if len(text) <= 60 else text[:57] + "..."

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    click.echo(" | ".join(c.ljust(w) for c, w in zip(columns, widths)))
    click.echo("-+-".join("-" * w for w in widths))
    for r in cells:
        click.echo(" | ".join(v.ljust(w) for v, w in zip(r, widths)))
    click.echo(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")


@main.command()
@warehouse_option
@click.option("--contact-id", "contact_id", help="Erase the contact with this id (trimmed like ids are)")
@click.option("--email", "email", help="Erase every contact that carried this email (trimmed, lower-cased)")
def erase(warehouse: str | None, contact_id: str | None, email: str | None) -> None:
    """Privacy erasure: remove a contact, its events, its membership (account_id),
    the CRM leads and rejected records of its emails from every table, and record
    the erasure (hashes only) in the `erasures` table. Files that landed before the
    erasure never bring the contact back; files landing after it load as new data.

    Give exactly one of --contact-id and --email."""
    if (contact_id is None) == (email is None):
        raise click.UsageError("give exactly one of --contact-id or --email")
    from .erasure import ErasureError
    from .erasure import erase as erase_contact

    settings = Settings.from_env(warehouse_dir=warehouse)
    existing_warehouse(settings, "nothing to erase from")
    from .lake import CommitConflict

    try:
        report = erase_contact(settings, contact_id=contact_id, email=email, log=lambda msg: click.echo(msg, err=True))
    except ErasureError as exc:
        raise click.BadParameter(str(exc), param_hint="'--email'" if email is not None else "'--contact-id'") from exc
    except CommitConflict as exc:
        raise click.ClickException(f"{exc}; run the erase again: it finishes what this one started") from exc
    for erasure_id in report.resumed:
        click.echo(f"Finished erasure {erasure_id}, interrupted earlier (its status was in_progress).")
    resolved = f"{report.contact_ids} contact id(s), {report.emails} email(s)"
    click.echo(f"Erasure {report.erasure_id} recorded at {report.requested_at.isoformat()} (by {report.subject_kind}: {resolved}).")
    if report.nothing_matched:
        click.echo(
            "Nothing matched: no row in the warehouse belongs to this subject. The erasure is still "
            "recorded: records carrying this "
            + ("email" if email is not None else "contact id")
            + " from files that landed before it are never loaded."
        )
    else:
        click.echo("Rows removed:")
        width = max(len(name) for name in report.rows_removed)
        for name, n in report.rows_removed.items():
            if name != "batches":
                click.echo(f"  {name:<{width}}  {n}")
        click.echo(f"  (and {report.rows_removed['batches']} stored row(s) in the day batches)")
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on")
def serve(host: str, port: int) -> None:
    """Serve the ingestion HTTP API (uvicorn) on the landing store of
    INGEST_LANDING_URL; clients authenticate with a key of INGEST_API_KEYS."""
    from .api import ConfigError, create_app_from_env, run_server

    try:
        app = create_app_from_env()
    except (ConfigError, ValueError) as exc:
        raise click.ClickException(f"cannot start the ingestion API: {exc}") from exc
    run_server(app, host, port)


if __name__ == "__main__":
    main()
