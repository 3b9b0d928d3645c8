"""A corpus of bad (and borderline) landed files, each with its expected outcome.

`python -m ingestion_pipeline_tests.corpus.cases OUTDIR` writes the files to a folder.
"""
