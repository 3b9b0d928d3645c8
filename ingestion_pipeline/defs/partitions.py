"""One partition per landing day (UTC date of the file's mtime / S3 LastModified)."""

import dagster as dg

FIRST_LANDING_DAY = "2020-01-01"

# end_offset=1: today's partition exists, so files landing today are ingested today.
landing_days = dg.DailyPartitionsDefinition(start_date=FIRST_LANDING_DAY, timezone="UTC", end_offset=1)
