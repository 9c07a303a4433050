-- The latest `tfy-audit verify` run.
SELECT verified_at, range_start, range_end, days, differing_days, missing
FROM $runs
ORDER BY verified_at DESC
LIMIT 1
