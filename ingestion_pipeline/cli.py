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
    from .pipeline import pending_by_partition, stale_tables, uncommitted_days
    from .streams import STREAMS
    from .warehouse import Warehouse

    store = open_landing(settings.landing_url)
    groups = pending_by_partition(settings, store)
    for part in uncommitted_days(settings):
        # e.g. a reprocess killed between its batch and its ledger segment
        groups.setdefault(part, [])
    if not groups and not stale_tables(settings):
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
    # A run killed between committing a day and rebuilding a table leaves the table
    # behind its batches while the ledger counts the day as done: rebuild it.
    stale = stale_tables(settings)
    if stale:
        tables = [STREAMS[s].table for s in stale]
        echo(f"rebuilding {', '.join(tables)}: behind the committed batches (an earlier run stopped before rebuilding)", err=True)
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
@click.option(
    "--warehouse",
    "warehouse",
    envvar="INGEST_WAREHOUSE_DIR",
    type=click.Path(file_okay=False),
    help="Warehouse folder [INGEST_WAREHOUSE_DIR, default data/warehouse]",
)
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
@click.option(
    "--warehouse",
    "warehouse",
    envvar="INGEST_WAREHOUSE_DIR",
    type=click.Path(file_okay=False),
    help="Warehouse folder [INGEST_WAREHOUSE_DIR, default data/warehouse]",
)
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.argument("sql")
def query(warehouse: str | None, fmt: str, sql: str) -> None:
    """Run SQL with DuckDB over the warehouse tables (contacts, accounts,
    contact_events, account_events, crm_leads, rejected_records, ingested_files,
    erasures)."""
    import duckdb

    from .warehouse import Warehouse

    settings = Settings.from_env(warehouse_dir=warehouse)
    if not settings.warehouse_dir.is_dir():
        raise click.ClickException(f"no warehouse at {settings.warehouse_dir}: run `ingestion-pipeline ingest` first")
    con = Warehouse(settings.warehouse_dir).connect()
    try:
        cursor = con.execute(sql)
    except duckdb.Error as exc:
        raise click.ClickException(str(exc)) from exc
    if cursor.description is None:
        return
    columns = [d[0] for d in cursor.description]
    rows = cursor.fetchall()
    if fmt == "json":
        click.echo(json.dumps([{c: _jsonable(v) for c, v in zip(columns, row)} for row in rows], ensure_ascii=False))
    elif fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[_jsonable(v) if v is not None else "" for v in row] for row in rows])
    else:
        _print_table(columns, rows)


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
@click.option(
    "--warehouse",
    "warehouse",
    envvar="INGEST_WAREHOUSE_DIR",
    type=click.Path(file_okay=False),
    help="Warehouse folder [INGEST_WAREHOUSE_DIR, default data/warehouse]",
)
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
    if not settings.warehouse_dir.is_dir():
        raise click.ClickException(f"no warehouse at {settings.warehouse_dir}: nothing to erase from")
    from .warehouse import LockTimeout

    try:
        report = erase_contact(settings, contact_id=contact_id, email=email, log=lambda msg: click.echo(msg, err=True))
    except ErasureError as exc:
        raise click.BadParameter(str(exc), param_hint="'--email'" if email is not None else "'--contact-id'") from exc
    except LockTimeout as exc:
        raise click.ClickException(f"{exc}; nothing was erased") from exc
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
            if name not in ("batches", "staging"):
                click.echo(f"  {name:<{width}}  {n}")
        click.echo(
            f"  (and {report.rows_removed['batches']} stored row(s) in day batches, {report.rows_removed['staging']} in staged files)"
        )
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
