"""The Dagster layer: wires the core (ingestion_pipeline.pipeline) into assets,
sensors, schedules and checks. No ingestion logic lives here."""
