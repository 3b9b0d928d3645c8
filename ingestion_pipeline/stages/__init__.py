"""The stages a landed file goes through, each a module: `stage_file` (one file
version -> its staged result, local), `commit_day` (a run's staged results -> the
batch tables, then the day's ledger rows: the commit point) and `merge_tables`
(committed batches -> current-state tables, costing the increment)."""
