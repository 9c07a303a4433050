-- The windows a sync could not read in full, latest first.
SELECT window_start, window_end, filter_key, planned_count, service_total, rows_read,
       fetched_at
FROM $windows
WHERE CASE WHEN complete THEN 0 ELSE 1 END = 1
ORDER BY fetched_at DESC NULLS LAST, window_start DESC
LIMIT $limit
