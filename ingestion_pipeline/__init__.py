"""ingestion-pipeline: landed files -> validated, deduplicated, current-state Parquet tables."""
