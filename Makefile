# ingestion-pipeline: `make run` (UI + sensor + schedule on the samples), `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
DAGSTER_HOME_S3 ?= $(CURDIR)/.dagster_home_s3
# The instance template, copied into DAGSTER_HOME (dg dev ignores a dagster.yaml in its working directory).
INSTANCE_YAML := deploy/dagster.yaml
export INGEST_LANDING_URL ?= data/landing
export INGEST_WAREHOUSE_DIR ?= data/warehouse
SQL ?= select status, count(*) as files, sum(rows_loaded) as rows_loaded, sum(rows_rejected) as rows_rejected from ingested_files group by status order by status

.PHONY: venv landing home run run-s3 s3 serve test test-fast ingest query bench bench-latency bench-tick bench-growth clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

landing: venv
	mkdir -p $(INGEST_LANDING_URL) $(INGEST_WAREHOUSE_DIR)
	@if [ -z "$$(ls -A $(INGEST_LANDING_URL))" ]; then \
		echo "Copying data/samples/ into $(INGEST_LANDING_URL)/"; cp -R data/samples/. $(INGEST_LANDING_URL)/; fi

home:
	mkdir -p $(DAGSTER_HOME)
	cp $(INSTANCE_YAML) $(DAGSTER_HOME)/dagster.yaml

run: landing home
	$(BIN)/dg dev -w workspace.yaml -h 127.0.0.1 -p 3000

# S3 mode on this machine: SeaweedFS (S3 on :8333, data in .seaweedfs/) + the UI + the API.
run-s3: venv
	mkdir -p $(DAGSTER_HOME_S3)
	cp $(INSTANCE_YAML) $(DAGSTER_HOME_S3)/dagster.yaml
	DAGSTER_HOME=$(DAGSTER_HOME_S3) INGEST_WAREHOUSE_DIR=data/warehouse-s3 $(BIN)/python -m ingestion_pipeline.devtools.s3_dev

# SeaweedFS alone (prints the export lines for INGEST_LANDING_URL and AWS_*).
s3: venv
	$(BIN)/python -m ingestion_pipeline.devtools.seaweedfs --dir .seaweedfs --bucket landing

# The ingestion HTTP API on :8000, writing to INGEST_LANDING_URL; clients send a key
# of INGEST_API_KEYS in x-api-key (local-dev-key unless you set your own).
serve: landing
	INGEST_API_KEYS="$${INGEST_API_KEYS:-local-dev-key}" $(BIN)/ingestion-pipeline serve --host 127.0.0.1 --port 8000

# Everything: lint, format check and every test (slow ones included).
# Two test processes (the machine's 2 cores), a test file's tests in the same one.
PYTEST_PARALLEL ?= -n 2 --dist loadfile
# The semantic suites run a second time against a warehouse on S3 (SeaweedFS).
S3_SUITES = test_pipeline test_feeds test_corpus test_property_reconcile test_lakehouse test_erasure

test: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest $(PYTEST_PARALLEL)
	INGEST_TEST_WAREHOUSE=s3 $(BIN)/pytest -q $(PYTEST_PARALLEL) $(S3_SUITES:%=ingestion_pipeline_tests/%.py)

# The inner loop: lint and the tests not marked `slow` (no dg dev, SeaweedFS, crash harness,
# schemathesis or concurrent ingest processes).
test-fast: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest $(PYTEST_PARALLEL) -m "not slow"

ingest: landing home
	$(BIN)/ingestion-pipeline ingest

query: venv
	$(BIN)/ingestion-pipeline query "$(SQL)"

# Benchmark (not a test): BENCH_EVENTS="1000000 10000000" BENCH_REPS=3 by default; see bench/run.py.
bench: venv
	$(BIN)/python bench/run.py

# Landing -> queryable seconds under `make run` (starts its own dg dev on a free port,
# temp DAGSTER_HOME/landing/warehouse); e.g. LATENCY_ARGS="--files 20 --burst 5". See bench/latency.py.
bench-latency: venv
	$(BIN)/python bench/latency.py $(LATENCY_ARGS)

# One landing_sensor tick on a local folder: 100k files in the ledger + 1k new (BENCH_LOCAL_FILES,
# BENCH_LOCAL_NEW, BENCH_REPS). See bench/local_sensor_tick.py; bench/s3_sensor_tick.py is the S3 one.
bench-tick: venv
	$(BIN)/python bench/local_sensor_tick.py

# Does ingest cost follow the increment (issue 13)? (A) a 1% day into a warehouse of 5M events + 200k contacts
# against an empty one; (B) a 20-day backfill of 250k events a day, day 20 against day 1. Sizes: BENCH_GROWTH_EVENTS,
# BENCH_GROWTH_CONTACTS, BENCH_GROWTH_DAY_EVENTS, BENCH_GROWTH_DAYS, BENCH_REPS (3). See bench/growth.py.
bench-growth: venv
	$(BIN)/python bench/growth.py

clean:
	rm -rf $(INGEST_WAREHOUSE_DIR) $(DAGSTER_HOME) data/warehouse-s3 $(DAGSTER_HOME_S3) .seaweedfs
