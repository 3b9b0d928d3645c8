"""The Dagster layer on a real temporary instance: sensor -> runs -> tables."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from ingestion_pipeline.definitions import build_definitions, defs
from ingestion_pipeline.defs.resources import IngestResource
from ingestion_pipeline.defs.schedules import daily_sweep
from ingestion_pipeline.defs.sensors import landing_sensor

from .conftest import contact, event, utc


@pytest.fixture
def instance(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as inst:
        yield inst


@pytest.fixture
def ingest(settings) -> IngestResource:
    return IngestResource(landing_url=settings.landing_url, warehouse_dir=str(settings.warehouse_dir), settle_seconds=5)


def test_definitions_load_with_every_asset_check_sensor_and_schedule():
    dg.Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert keys == {
        "contact_batch",
        "account_batch",
        "contact_event_batch",
        "account_event_batch",
        "crm_batch",
        "contacts",
        "accounts",
        "contact_events",
        "account_events",
        "crm_leads",
        "rejected_records",
    }
    contacts_deps = repo.asset_graph.get(dg.AssetKey("contacts")).parent_keys
    assert contacts_deps == {dg.AssetKey("contact_batch"), dg.AssetKey("account_batch")}
    assert defs.get_sensor_def("landing_sensor").default_status == dg.DefaultSensorStatus.RUNNING
    assert defs.get_schedule_def("daily_sweep").default_status == dg.DefaultScheduleStatus.RUNNING
    check_names = {k.name for k in repo.asset_graph.asset_check_keys}
    assert check_names == {"files_reconcile", "unique_key", "no_failed_files", "landing_freshness"}
    tables = {"contacts", "accounts", "contact_events", "account_events", "crm_leads"}
    freshness = {k.asset_key.to_user_string() for k in repo.asset_graph.asset_check_keys if k.name == "landing_freshness"}
    assert freshness == tables
    schedule = defs.get_schedule_def("freshness_schedule")
    assert (schedule.cron_schedule, schedule.job_name, schedule.default_status) == (
        "0 * * * *",
        "freshness_job",
        dg.DefaultScheduleStatus.RUNNING,
    )
    # The freshness job runs the checks alone: no asset is materialised by it.
    freshness_job = defs.resolve_job_def("freshness_job")
    assert [n.name for n in freshness_job.graph.node_defs] == ["landing_freshness_checks"]
    assert freshness_job.asset_layer.executable_asset_keys == set()


def evaluate_sensor(instance, definitions, cursor=None):
    # A context manager: IngestResource has a nested resource (its S3Resource), set up in this scope.
    with dg.build_sensor_context(instance=instance, cursor=cursor, definitions=definitions, resources=definitions.resources) as context:
        return landing_sensor.evaluate_tick(context)


def execute(definitions, instance, request, run_config=None):
    job = definitions.resolve_job_def("ingest_job")
    return job.execute_in_process(
        partition_key=request.partition_key,
        asset_selection=request.asset_selection,
        instance=instance,
        tags=request.tags,
        run_config=run_config,
    )


def snapshot(ingest):
    con = ingest.warehouse().connect()
    tables = ["contacts", "contact_events", "rejected_records"]
    out = {t: con.sql(f"select * from {t} order by all").fetchall() for t in tables}
    out["ingested_files"] = con.sql("select * exclude (processed_at, run_id, stage_id) from ingested_files order by file").fetchall()
    return out


def test_sensor_requests_one_run_per_landing_day_and_runs_build_the_tables(instance, landing, ingest):
    landing.put("contact/2026/11/20/a.jsonl", [contact("c1", "a@x.io", {"p": 1})], utc(2026, 11, 20, 9))
    landing.put("contact_event/e.jsonl.gz", [event("e1", "c1"), "bad line"], utc(2026, 11, 20, 10))
    landing.put("contact/b.jsonl", [contact("c1", "a@x.io", {"q": 2})], utc(2026, 11, 21, 9))
    definitions = build_definitions(ingest)

    tick = evaluate_sensor(instance, definitions)
    requests = sorted(tick.run_requests, key=lambda r: r.partition_key)
    assert [r.partition_key for r in requests] == ["2026-11-20", "2026-11-21"]
    assert sorted(k.to_user_string() for k in requests[0].asset_selection) == [
        "contact_batch",
        "contact_event_batch",
        "contact_events",
        "contacts",
        "rejected_records",
    ]
    assert sorted(k.to_user_string() for k in requests[1].asset_selection) == ["contact_batch", "contacts", "rejected_records"]
    # The same pending files always give the same run keys.
    again = evaluate_sensor(instance, definitions)
    assert sorted(r.run_key for r in again.run_requests) == sorted(r.run_key for r in requests)

    for request in requests:
        result = execute(definitions, instance, request)
        assert result.success

    con = ingest.warehouse().connect()
    assert con.sql("select contact_id, email, properties from contacts").fetchall() == [("c1", "a@x.io", '{"p":1,"q":2}')]
    assert con.sql("select event_id, event from contact_events").fetchall() == [("e1", "login")]
    assert con.sql("select file, line, rule from rejected_records").fetchall() == [("contact_event/e.jsonl.gz", 2, "invalid_json")]

    materialization = instance.get_latest_materialization_event(dg.AssetKey("contact_event_batch")).asset_materialization
    assert materialization.partition == "2026-11-20"
    assert materialization.metadata["dagster/row_count"].value == 1
    assert materialization.metadata["rows_rejected"].value == 1
    table_mat = instance.get_latest_materialization_event(dg.AssetKey("contacts")).asset_materialization
    assert table_mat.metadata["dagster/row_count"].value == 1
    assert "c1" in table_mat.metadata["preview"].value

    # Nothing new: the sensor skips.
    skipped = evaluate_sensor(instance, definitions)
    assert not skipped.run_requests
    assert "No new settled files" in skipped.skip_message

    # Re-materialising an old partition from the UI (no config) changes nothing.
    before = snapshot(ingest)
    result = execute(definitions, instance, requests[0])
    assert result.success
    assert snapshot(ingest) == before
    result = execute(definitions, instance, requests[0], run_config={"ops": {"contact_batch": {"config": {"reprocess": True}}}})
    assert result.success
    assert snapshot(ingest) == before


def test_sensor_waits_until_a_file_has_settled(instance, landing, ingest):
    now = datetime.now(UTC)
    landing.put("contact/fresh.jsonl", [contact("c1", "a@x.io")], now)
    definitions = build_definitions(ingest)
    first = evaluate_sensor(instance, definitions)
    assert not first.run_requests
    assert "1 file(s) still settling" in first.skip_message
    cursor = json.loads(first.cursor)
    assert list(cursor["unsettled"]) == ["contact/fresh.jsonl"]
    # Unchanged since the previous tick: settled.
    second = evaluate_sensor(instance, definitions, cursor=first.cursor)
    assert [r.partition_key for r in second.run_requests] == [now.date().isoformat()]


def test_sensor_caps_files_per_tick_oldest_first(instance, landing, settings):
    for i in range(5):
        landing.put(f"contact/f{i}.jsonl", [contact(f"c{i}", "a@x.io")], utc(2026, 11, 10 + i))
    ingest = IngestResource(landing_url=settings.landing_url, warehouse_dir=str(settings.warehouse_dir), max_files_per_tick=2)
    tick = evaluate_sensor(instance, build_definitions(ingest))
    assert sorted(r.partition_key for r in tick.run_requests) == ["2026-11-10", "2026-11-11"]


def test_daily_sweep_requests_yesterday_and_pending_days_of_the_last_week(instance, landing, ingest):
    landing.put("contact/y.jsonl", [contact("c1", "a@x.io")], utc(2026, 11, 22, 5))
    landing.put("contact_event/old.jsonl", [event("e1", "c1")], utc(2026, 11, 18, 5))
    landing.put("contact_event/too-old.jsonl", [event("e2", "c1")], utc(2026, 11, 1, 5))
    definitions = build_definitions(ingest)
    with dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=datetime(2026, 11, 23, 0, 15, tzinfo=UTC),
        repository_def=definitions.get_repository_def(),
        resources=definitions.resources,
    ) as context:
        data = daily_sweep.evaluate_tick(context)
    assert sorted(r.partition_key for r in data.run_requests) == ["2026-11-18", "2026-11-22"]


def test_sensor_does_not_start_a_second_run_for_a_day_that_is_still_running(instance, landing, ingest):
    landing.put("contact/a.jsonl", [contact("c1", "a@x.io")], utc(2026, 11, 20, 9))
    definitions = build_definitions(ingest)
    (request,) = evaluate_sensor(instance, definitions).run_requests
    job = definitions.resolve_job_def("ingest_job")
    run = instance.create_run_for_job(job, run_config={}, tags=request.tags, status=dg.DagsterRunStatus.STARTED)
    held = evaluate_sensor(instance, definitions)
    assert not held.run_requests
    assert "waiting for the active run of 2026-11-20" in held.skip_message
    instance.report_run_failed(run)
    assert [r.partition_key for r in evaluate_sensor(instance, definitions).run_requests] == ["2026-11-20"]


@pytest.mark.parametrize(
    "command",
    [["dagster", "definitions", "validate", "-w", "workspace.yaml"], ["dg", "check", "defs"]],
    ids=["dagster-validate-workspace", "dg-check-defs"],
)
def test_code_location_loads_from_the_command_line(command, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    exe = Path(sys.executable).with_name(command[0])
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "INGEST_WAREHOUSE_DIR": str(tmp_path / "wh")}
    proc = subprocess.run([str(exe), *command[1:]], cwd=root, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_files_landed_before_the_first_partition_are_reported_not_requested(landing):
    from ingestion_pipeline.defs.sensors import settled_groups
    from ingestion_pipeline.pipeline import pending_by_partition
    from ingestion_pipeline.settings import Settings

    landing.put("contact/ancient.jsonl", [contact("c1", "a@x.io")], utc(2019, 12, 31, 23))
    landing.put("contact/new.jsonl", [contact("c2", "b@x.io")], utc(2026, 11, 20))
    groups = pending_by_partition(Settings(landing_url=str(landing.root), warehouse_dir=landing.root.parent / "wh"), landing.store)
    tick = settled_groups(groups, {}, settle_seconds=5, limit=100, now=utc(2026, 11, 23).timestamp())
    assert {part[1].isoformat(): [f.path for f in files] for part, files in tick.ready.items()} == {"2026-11-20": ["contact/new.jsonl"]}
    assert tick.before_first_day == ["contact/ancient.jsonl"]
    assert tick.unsettled == {}


def test_sensor_merges_a_table_left_behind_the_ledger_once_no_run_is_active(instance, landing, ingest):
    """A run worker that died after committing a day but before its table step
    leaves the table behind the ledger; the sensor repairs it."""
    landing.put("contact/a.jsonl", [contact("c1", "a@x.io")], utc(2026, 11, 20, 9))
    definitions = build_definitions(ingest)
    (request,) = evaluate_sensor(instance, definitions).run_requests
    job = definitions.resolve_job_def("ingest_job")
    # Only the batch step ran: the day is committed (ledger says loaded), the table is not built.
    assert job.execute_in_process(
        partition_key=request.partition_key, asset_selection=[dg.AssetKey("contact_batch")], instance=instance
    ).success
    active = instance.create_run_for_job(job_def=job, status=dg.DagsterRunStatus.STARTED, tags={"dagster/partition": "2026-11-21"})
    assert evaluate_sensor(instance, definitions).run_requests == []  # the active run rebuilds tables itself
    instance.report_run_failed(active)
    (repair,) = evaluate_sensor(instance, definitions).run_requests
    assert repair.job_name == "tables_job"
    assert [k.to_user_string() for k in repair.asset_selection] == ["contacts"]
    assert repair.tags["ingestion/repair"] == "tables_behind_ledger"
    result = definitions.resolve_job_def("tables_job").execute_in_process(asset_selection=repair.asset_selection, instance=instance)
    assert result.success
    assert ingest.warehouse().connect().sql("select contact_id, email from contacts").fetchall() == [("c1", "a@x.io")]
    assert evaluate_sensor(instance, definitions).run_requests == []


def test_the_freshness_job_warns_about_a_stream_whose_newest_file_is_past_its_deadline(instance, landing, settings):
    now = datetime.now(UTC)
    landing.put("contact/a.jsonl", [contact("c1", "a@x.io")], now - timedelta(hours=3))
    landing.put("contact_event/e.jsonl", [event("e1", "c1")], now - timedelta(hours=3))
    ingest = IngestResource(
        landing_url=settings.landing_url, warehouse_dir=str(settings.warehouse_dir), freshness_hours={"contact_event": 2}
    )
    definitions = build_definitions(ingest)
    day = (now - timedelta(hours=3)).date().isoformat()
    keys = [dg.AssetKey(k) for k in ("contact_batch", "contacts", "contact_event_batch", "contact_events")]
    assert definitions.resolve_job_def("ingest_job").execute_in_process(partition_key=day, asset_selection=keys, instance=instance).success

    result = definitions.resolve_job_def("freshness_job").execute_in_process(instance=instance)
    assert result.success  # a stale stream is a warning, not a failed run
    evaluations = {e.asset_key.to_user_string(): e for e in result.get_asset_check_evaluations()}
    assert set(evaluations) == {"contacts", "accounts", "contact_events", "account_events", "crm_leads"}
    stale = evaluations["contact_events"]
    assert (stale.passed, stale.severity) == (False, dg.AssetCheckSeverity.WARN)
    assert stale.description.startswith("STALE: the newest loaded contact_event file landed 3.0 h ago (deadline 2 h)")
    assert stale.metadata["deadline_hours"].value == 2.0
    assert 3.0 <= stale.metadata["age_hours"].value < 3.1
    assert evaluations["contacts"].passed and evaluations["contacts"].metadata["deadline_hours"].value == 26.0
    assert evaluations["accounts"].passed
    assert evaluations["accounts"].metadata["newest_landed_at"].value == "none: no files yet"
