"""The operator's view, for real: `dg dev` (webserver + daemon + code server, as
`make run` starts it) on a free port, with a temporary DAGSTER_HOME holding a copy of
the repo's deploy/dagster.yaml (run queue, pools, run_retries). Everything is driven and
observed through the GraphQL API the UI uses; the tables are then read with DuckDB.

The landing is a dedicated SeaweedFS S3 server with its data and the warehouse in
tmp_path: stopping it is a real transient storage fault (we run as root, so file
permissions cannot make a folder unreadable), and restarting it on the same port and
data dir is the fix.

One `dg dev` serves the module (it takes ~15 s to load), and the tests build on
each other in file order (first load, outage + retries + repair, freshness). The
landing_sensor and both schedules are stopped through GraphQL first, so only the runs
launched here happen. Runs are launched with the in-process executor (a launchpad
choice; assets, checks, retries and partition statuses are the same) to keep the
file within its time budget on a 2-core machine.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ingestion_pipeline.devtools import seaweedfs
from ingestion_pipeline.devtools.dagster_dev import LOCATION, ROOT, processes_with_env
from ingestion_pipeline.devtools.dagster_dev import DagsterDev as BaseDagsterDev
from ingestion_pipeline.warehouse import Warehouse

from .conftest import contact, event, file_bytes

pytestmark = pytest.mark.slow  # one dg dev and one SeaweedFS for the module

REPO = {"repositoryName": "__repository__", "repositoryLocationName": LOCATION}
PREFIX = "ops"
# The account stream gets an 18 s deadline so that the test sees it go stale; the
# other streams keep the default (26 h).
FRESHNESS = "account=0.005"
ACCOUNT_DEADLINE = timedelta(hours=0.005)
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}

LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
    ... on PipelineNotFoundError { message }
  }
}"""

RUN = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { runId status parentRunId rootRunId tags { key value } }
  }
}"""

RUN_FAILURES = """
query Failures($runId: ID!) {
  runOrError(runId: $runId) {
    ... on Run {
      eventConnection(limit: 1000) {
        events {
          __typename
          ... on ExecutionStepFailureEvent { stepKey error { message causes { message } } }
          ... on RunFailureEvent { message }
        }
      }
    }
  }
}"""

RUN_OUTPUTS = """
query Outputs($runId: ID!) {
  runOrError(runId: $runId) {
    ... on Run { assetMaterializations { assetKey { path } } stepStats { stepKey status } }
  }
}"""

RUNS_OF_GROUP = """
query Group($root: String!) {
  runsOrError(filter: {tags: [{key: "dagster/root_run_id", value: $root}]}) {
    ... on Runs { results { runId status parentRunId tags { key value } } }
  }
}"""

ASSETS = """
query Assets($keys: [AssetKeyInput!]) {
  assetNodes(assetKeys: $keys) {
    assetKey { path }
    partitionStats { numMaterialized numFailed numMaterializing }
    assetPartitionStatuses {
      __typename
      ... on TimePartitionStatuses { ranges { status startKey endKey } }
    }
    assetChecksOrError {
      ... on AssetChecks { checks { name } }
    }
  }
}"""

CHECK_EXECUTIONS = """
query Check($key: AssetKeyInput!, $name: String!, $limit: Int!) {
  assetCheckExecutions(assetKey: $key, checkName: $name, limit: $limit) {
    runId
    status
    evaluation { success severity description metadataEntries { label ... on TextMetadataEntry { text }
      ... on FloatMetadataEntry { floatValue } ... on TimestampMetadataEntry { timestamp } } }
  }
}"""


class DagsterDev(BaseDagsterDev):
    """`dg dev` as `make run` starts it, plus what the operator does in the UI."""

    def stop_instigators(self) -> dict[str, str]:
        """Stops the landing sensor and the schedules as an operator would in the UI."""
        found = self.gql(
            """query($repo: RepositorySelector!) {
                 sensorsOrError(repositorySelector: $repo) { ... on Sensors { results { id name } } }
                 schedulesOrError(repositorySelector: $repo) { ... on Schedules { results { id name } } } }""",
            repo=REPO,
        )
        states = {}
        for sensor in found["sensorsOrError"]["results"]:
            out = self.gql(
                """mutation($id: String!) { stopSensor(id: $id) {
                     ... on StopSensorMutationResult { instigationState { status } } } }""",
                id=sensor["id"],
            )
            states[sensor["name"]] = out["stopSensor"]["instigationState"]["status"]
        for schedule in found["schedulesOrError"]["results"]:
            out = self.gql(
                """mutation($id: String!) { stopRunningSchedule(id: $id) {
                     ... on ScheduleStateResult { scheduleState { status } } } }""",
                id=schedule["id"],
            )
            states[schedule["name"]] = out["stopRunningSchedule"]["scheduleState"]["status"]
        return states

    def launch(self, job: str, partition: str | None = None, assets: list[str] | None = None) -> str:
        selector = {**REPO, "jobName": job}
        if assets is not None:
            selector["assetSelection"] = [{"path": [a]} for a in assets]
        tags = [{"key": "dagster/partition", "value": partition}] if partition else []
        params = {"selector": selector, "runConfigData": IN_PROCESS, "executionMetadata": {"tags": tags}}
        result = self.gql(LAUNCH_RUN, params=params)["launchRun"]
        assert result["__typename"] == "LaunchRunSuccess", result
        return result["run"]["runId"]

    def run(self, run_id: str) -> dict:
        run = self.gql(RUN, runId=run_id)["runOrError"]
        assert run["__typename"] == "Run", run
        return run | {"tags": {t["key"]: t["value"] for t in run["tags"]}}

    def wait_for_run(self, run_id: str, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while (run := self.run(run_id))["status"] not in FINISHED:
            assert time.monotonic() < deadline, f"run {run_id} still {run['status']} after {timeout}s:\n{self.log_tail()}"
            time.sleep(0.5)
        return run

    def failures(self, run_id: str) -> list[str]:
        events = self.gql(RUN_FAILURES, runId=run_id)["runOrError"]["eventConnection"]["events"]
        out = []
        for e in events:
            if e["__typename"] == "ExecutionStepFailureEvent":
                # The error as the UI shows it: Dagster's wrapper, then the user code's causes.
                causes = "".join(f"\n  caused by {c['message'].strip()}" for c in e["error"]["causes"])
                out.append(f"{e['stepKey']}: {e['error']['message']}{causes}")
            elif e["__typename"] == "RunFailureEvent":
                out.append(e["message"])
        return out

    def assets(self, *keys: str) -> dict[str, dict]:
        nodes = self.gql(ASSETS, keys=[{"path": [k]} for k in keys])["assetNodes"]
        return {n["assetKey"]["path"][-1]: n for n in nodes}

    def check_execution(self, asset: str, check: str, run_id: str | None = None) -> dict:
        """The latest execution of a check, or its execution in run `run_id`."""
        executions = self.gql(CHECK_EXECUTIONS, key={"path": [asset]}, name=check, limit=1 if run_id is None else 20)
        found = [e for e in executions["assetCheckExecutions"] if run_id is None or e["runId"] == run_id]
        assert found, (asset, check, run_id, executions)
        execution = found[0]
        evaluation = execution["evaluation"] = execution["evaluation"] or {}
        evaluation["metadata"] = {
            m["label"]: m.get("text", m.get("floatValue", m.get("timestamp"))) for m in evaluation.get("metadataEntries", [])
        }
        return execution


class Operator:
    """The module's world: one SeaweedFS landing, one warehouse, one `dg dev`."""

    def __init__(self, work: Path):
        self.work = work
        self.s3_port = seaweedfs.free_port()
        self.s3_dir = work / "seaweedfs"
        self.warehouse_dir = work / "warehouse"
        endpoint = f"http://127.0.0.1:{self.s3_port}"
        env = {
            "INGEST_LANDING_URL": f"s3://landing/{PREFIX}",
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": seaweedfs.DEFAULT_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": seaweedfs.DEFAULT_SECRET_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
            "INGEST_WAREHOUSE_DIR": str(self.warehouse_dir),
            "INGEST_FRESHNESS_HOURS": FRESHNESS,
            # One attempt per S3 call: the retries under test are Dagster's run retries.
            "AWS_MAX_ATTEMPTS": "1",
            # The daemon looks for failed runs to retry every second instead of every 5 s.
            "DAGSTER_EVENT_LOG_CONSUMER_DAEMON_INTERVAL_SECONDS": "1",
        }
        # dg dev loads for ~15 s; SeaweedFS starts meanwhile (the sensor is stopped
        # before anything lands, so its first ticks see an empty or absent store).
        self.dev = DagsterDev(work / "dagster_home", env, work / "dagster-dev.log")
        try:
            self.s3 = seaweedfs.start(self.s3_dir, bucket="landing", s3_port=self.s3_port)
        except BaseException:
            self.dev.stop()
            raise
        assert self.s3.env(PREFIX).items() <= env.items()
        self.client = self.s3.client()
        self.landed: dict[str, datetime] = {}
        self.day: str | None = None  # the landing day (partition) of the files landed here
        self.freshness_run_id: str | None = None

    def put(self, rel: str, records: list) -> str:
        """Lands a file; returns its landing day (the partition: LastModified's UTC date)."""
        self.client.put_object(Bucket=self.s3.bucket, Key=f"{PREFIX}/{rel}", Body=file_bytes(rel, records))
        head = self.client.head_object(Bucket=self.s3.bucket, Key=f"{PREFIX}/{rel}")
        self.landed[rel] = head["LastModified"].astimezone(UTC)
        return self.landed[rel].date().isoformat()

    def stop_store(self) -> None:
        self.s3.stop()

    def restart_store(self) -> None:
        """Same port, same data dir: the landed objects are back."""
        self.s3 = seaweedfs.start(self.s3_dir, bucket="landing", s3_port=self.s3_port)
        self.client = self.s3.client()

    def launch_freshness_job(self) -> str:
        """Launches freshness_job once the account stream's deadline has passed (a
        precondition, not a timing assertion); once per module."""
        if self.freshness_run_id is None:
            stale_from = self.landed["account/acc.jsonl"] + ACCOUNT_DEADLINE
            time.sleep(max(0.0, (stale_from - datetime.now(UTC)).total_seconds() + 1))
            self.freshness_run_id = self.dev.launch("freshness_job")
        return self.freshness_run_id

    def rows(self, sql: str) -> list[tuple]:
        with Warehouse(self.warehouse_dir).connect() as con:
            return con.sql(sql).fetchall()

    def close(self) -> None:
        try:
            self.dev.stop()
        finally:
            self.s3.stop()


@pytest.fixture(scope="module")
def operator(tmp_path_factory):
    world = Operator(tmp_path_factory.mktemp("operator"))
    try:
        world.dev.wait_for_code_location()
        states = world.dev.stop_instigators()
        assert states == {
            "landing_sensor": "STOPPED",
            "daily_sweep": "STOPPED",
            "freshness_schedule": "STOPPED",
            "maintenance_schedule": "STOPPED",
        }
        yield world
    finally:
        world.close()


INGEST_ALL = ["contact_batch", "contacts", "contact_event_batch", "contact_events", "account_batch", "accounts"]


@pytest.fixture(scope="module")
def first_load(operator):
    """Files land for three streams; the operator launches their partition (the landing
    day, S3 LastModified's UTC date: today) for those streams' batches and tables."""
    days = {
        operator.put("contact/a.jsonl", [contact("c1", "a@x.io", {"plan": "pro"}), contact("c2", "b@x.io")]),
        operator.put("contact_event/e.jsonl", [event("e1", "c1"), "not json"]),
        operator.put("account/acc.jsonl", [{"account_id": "a1", "domain": "x.io", "account_properties": {}}]),
    }
    if len(days) > 1:
        pytest.skip("the files landed on both sides of midnight UTC")
    (operator.day,) = days
    run_id = operator.dev.launch("ingest_job", partition=operator.day, assets=INGEST_ALL)
    return operator.dev.wait_for_run(run_id)


def test_the_ui_starts_without_warnings_about_its_command_or_instance_file(operator):
    # `dagster dev` warned that it is superseded by `dg dev`, and a dagster.yaml in the
    # working directory (the repository root) drew "will not be used" at every start.
    log = operator.dev.log_path.read_text(errors="replace")
    assert "Launching Dagster services" in log
    assert "superseded" not in log.lower()
    assert "dagster.yaml" not in log
    assert (operator.dev.home / "dagster.yaml").read_text() == (ROOT / "deploy" / "dagster.yaml").read_text()


def test_a_partition_run_launched_through_graphql_succeeds_and_the_ui_shows_partitions_and_checks(operator, first_load):
    dev, day = operator.dev, operator.day
    assert first_load["status"] == "SUCCESS", dev.failures(first_load["runId"])
    assert first_load["tags"]["dagster/partition"] == day

    assets = dev.assets(*INGEST_ALL, "account_events", "crm_batch")
    for batch in ("contact_batch", "contact_event_batch", "account_batch"):
        assert assets[batch]["partitionStats"] == {"numMaterialized": 1, "numFailed": 0, "numMaterializing": 0}, batch
        assert assets[batch]["assetPartitionStatuses"]["ranges"] == [{"status": "MATERIALIZED", "startKey": day, "endKey": day}]
    assert assets["crm_batch"]["partitionStats"]["numMaterialized"] == 0  # nothing launched for it
    assert {c["name"] for c in assets["contacts"]["assetChecksOrError"]["checks"]} == {
        "unique_key",
        "no_failed_files",
        "landing_freshness",
    }

    for asset, check in [
        ("contact_batch", "files_reconcile"),
        ("contact_event_batch", "files_reconcile"),
        ("account_batch", "files_reconcile"),
        ("accounts", "unique_key"),
        ("contacts", "unique_key"),
        ("contacts", "no_failed_files"),
        ("contact_events", "unique_key"),
        ("contact_events", "no_failed_files"),
        ("contacts", "landing_freshness"),
        ("contact_events", "landing_freshness"),
    ]:
        execution = dev.check_execution(asset, check)
        assert (execution["runId"], execution["status"], execution["evaluation"]["success"]) == (
            first_load["runId"],
            "SUCCEEDED",
            True,
        ), (asset, check, execution)
    freshness = dev.check_execution("contact_events", "landing_freshness")["evaluation"]
    assert freshness["severity"] == "WARN"
    assert freshness["metadata"]["deadline_hours"] == 26.0
    assert freshness["metadata"]["newest_landed_at"] == operator.landed["contact_event/e.jsonl"].timestamp()
    assert freshness["description"].startswith("fresh: the newest loaded contact_event file landed")

    assert operator.rows("select contact_id, email, properties from contacts order by 1") == [
        ("c1", "a@x.io", '{"plan":"pro"}'),
        ("c2", "b@x.io", "{}"),
    ]
    assert operator.rows("select event_id, contact_id, event from contact_events") == [("e1", "c1", "login")]
    assert operator.rows("select account_id, domain from accounts") == [("a1", "x.io")]
    assert operator.rows("select file, line, rule from rejected_records") == [("contact_event/e.jsonl", 2, "invalid_json")]
    assert operator.rows("select file, status, rows_loaded from ingested_files order by file") == [
        ("account/acc.jsonl", "loaded", 1),
        ("contact/a.jsonl", "loaded", 2),
        ("contact_event/e.jsonl", "partially_loaded", 1),
    ]


def retry_chain(dev: DagsterDev, root_run_id: str, timeout: float = 150) -> list[dict]:
    """The runs of a run group once the retry daemon is done with it: polls until a
    failed run of the group says it will not be retried (dagster/will_retry=false)."""
    deadline = time.monotonic() + timeout
    while True:
        retries = dev.gql(RUNS_OF_GROUP, root=root_run_id)["runsOrError"]["results"]  # the root has no such tag
        runs = [dev.run(root_run_id)] + [r | {"tags": {t["key"]: t["value"] for t in r["tags"]}} for r in retries]
        runs.sort(key=lambda r: int(r["tags"].get("dagster/retry_number", 0)))
        last = runs[-1]
        if last["status"] == "SUCCESS" or (last["status"] == "FAILURE" and last["tags"].get("dagster/will_retry") == "false"):
            return runs
        assert time.monotonic() < deadline, f"retries of {root_run_id} not done after {timeout}s: {runs}\n{dev.log_tail()}"
        time.sleep(1)


def test_an_unreachable_landing_store_fails_the_run_clearly_is_retried_and_repair_loads_exactly_the_missing_data(operator, first_load):
    dev, day = operator.dev, operator.day
    # New files land (a new contact, a changed one, a new event and a resent one)...
    days = {
        operator.put("contact/b.jsonl", [contact("c3", "c@x.io"), contact("c1", "a@x.io", {"seats": 3})]),
        operator.put("contact_event/f.jsonl", [event("e2", "c3", "signup"), event("e1", "c1")]),
    }
    if days != {day}:
        pytest.skip("midnight UTC passed since the first load: the new files are another partition")
    # ...and then the store goes away.
    operator.stop_store()
    selection = ["contact_batch", "contacts", "contact_event_batch", "contact_events"]
    run_id = dev.launch("ingest_job", partition=day, assets=selection)
    failed = dev.wait_for_run(run_id)
    assert failed["status"] == "FAILURE"
    messages = "\n".join(dev.failures(run_id))
    cause = (
        f"caused by ingestion_pipeline.landing.base.LandingError: S3 listing of {PREFIX}/contact/ failed: "
        f'EndpointConnectionError: Could not connect to the endpoint URL: "{operator.s3.endpoint_url}/landing?list-type=2'
    )
    assert cause in messages, messages
    # Meanwhile the hourly freshness job runs as usual: it reads only the ledger (test below).
    operator.launch_freshness_job()

    # run_retries (dagster.yaml: max_retries 2): the daemon re-executes from failure twice.
    chain = retry_chain(dev, run_id)
    assert [r["tags"].get("dagster/retry_number") for r in chain] == [None, "1", "2"]
    assert [r["status"] for r in chain] == ["FAILURE"] * 3
    assert chain[1]["parentRunId"] == run_id and chain[2]["parentRunId"] == chain[1]["runId"]
    assert [r["tags"]["dagster/will_retry"] for r in chain] == ["true", "true", "false"]
    for retry in chain[1:]:
        assert retry["tags"]["dagster/partition"] == day
        assert cause in "\n".join(dev.failures(retry["runId"]))

    # The UI shows the partition as failed.
    assets = dev.assets("contact_batch", "contact_event_batch", "account_batch")
    for batch in ("contact_batch", "contact_event_batch"):
        assert assets[batch]["partitionStats"]["numFailed"] == 1, assets[batch]
        assert assets[batch]["assetPartitionStatuses"]["ranges"] == [{"status": "FAILED", "startKey": day, "endKey": day}]
    assert assets["account_batch"]["partitionStats"] == {"numMaterialized": 1, "numFailed": 0, "numMaterializing": 0}
    # Nothing half-loaded meanwhile: the tables are as the first load left them.
    assert operator.rows("select contact_id from contacts order by 1") == [("c1",), ("c2",)]

    # The cause is fixed; the operator re-materialises the partition.
    operator.restart_store()
    repair = dev.wait_for_run(dev.launch("ingest_job", partition=day, assets=selection))
    assert repair["status"] == "SUCCESS", dev.failures(repair["runId"])
    assets = dev.assets("contact_batch", "contact_event_batch")
    for batch in ("contact_batch", "contact_event_batch"):
        assert assets[batch]["partitionStats"] == {"numMaterialized": 1, "numFailed": 0, "numMaterializing": 0}
        assert assets[batch]["assetPartitionStatuses"]["ranges"] == [{"status": "MATERIALIZED", "startKey": day, "endKey": day}]
    for asset, check in [
        ("contacts", "unique_key"),
        ("contacts", "no_failed_files"),
        ("contact_events", "unique_key"),
        ("contact_batch", "files_reconcile"),
        ("contact_events", "landing_freshness"),
    ]:
        assert dev.check_execution(asset, check, repair["runId"])["status"] == "SUCCEEDED", (asset, check)

    # Exactly the missing data, once: c3 and the newer c1 properties, e2; e1 stays one row.
    assert operator.rows("select contact_id, email, properties from contacts order by 1") == [
        ("c1", "a@x.io", '{"plan":"pro","seats":3}'),
        ("c2", "b@x.io", "{}"),
        ("c3", "c@x.io", "{}"),
    ]
    assert operator.rows("select event_id, contact_id, event, _source_file from contact_events order by 1") == [
        ("e1", "c1", "login", "contact_event/f.jsonl"),
        ("e2", "c3", "signup", "contact_event/f.jsonl"),
    ]
    assert operator.rows("select file, status, rows_read, rows_loaded from ingested_files where stream like 'contact%' order by file") == [
        ("contact/a.jsonl", "loaded", 2, 2),
        ("contact/b.jsonl", "loaded", 2, 2),
        ("contact_event/e.jsonl", "partially_loaded", 2, 1),
        ("contact_event/f.jsonl", "loaded", 2, 2),
    ]


def test_the_freshness_job_flags_a_stream_past_its_deadline_although_nothing_lands(operator, first_load):
    """freshness_job (what freshness_schedule launches hourly) selects only the
    landing_freshness checks. It was launched during the landing outage of the test
    above when that ran (it needs the warehouse, not the store), else now."""
    dev = operator.dev
    run = dev.wait_for_run(operator.launch_freshness_job())
    assert run["status"] == "SUCCESS", dev.failures(run["runId"])
    assert dev.gql(RUN_OUTPUTS, runId=run["runId"])["runOrError"] == {
        "assetMaterializations": [],  # checks only: nothing is materialised
        "stepStats": [{"stepKey": "landing_freshness_checks", "status": "SUCCESS"}],
    }

    landed = operator.landed["account/acc.jsonl"]
    stale = dev.check_execution("accounts", "landing_freshness", run["runId"])
    assert stale["status"] == "FAILED"
    assert stale["evaluation"]["severity"] == "WARN"
    assert stale["evaluation"]["description"].startswith("STALE: the newest loaded account file landed")
    metadata = stale["evaluation"]["metadata"]
    assert metadata["deadline_hours"] == 0.005
    assert metadata["newest_landed_at"] == landed.timestamp()
    assert metadata["age_hours"] > 0.005

    fresh = dev.check_execution("contacts", "landing_freshness", run["runId"])
    assert (fresh["status"], fresh["evaluation"]["metadata"]["deadline_hours"]) == ("SUCCEEDED", 26.0)
    for never_fed in ("account_events", "crm_leads"):
        quiet = dev.check_execution(never_fed, "landing_freshness", run["runId"])
        assert quiet["status"] == "SUCCEEDED"
        assert quiet["evaluation"]["metadata"]["newest_landed_at"] == "none: no files yet"
    # The UI's latest word on the accounts table's freshness is this warning.
    assert dev.check_execution("accounts", "landing_freshness")["runId"] == run["runId"]


def test_stopping_dagster_dev_leaves_no_process_behind(operator):
    home = str(operator.dev.home)
    assert processes_with_env("DAGSTER_HOME", home)  # webserver, daemon, code server
    assert operator.dev.stop() == []  # nothing had to be killed by pid: dg dev shut its children down
    assert operator.dev.process.poll() is not None
    assert processes_with_env("DAGSTER_HOME", home) == []
