-- Completed dlt loads, and when the last one was recorded.
SELECT count(*), max(inserted_at)
FROM $loads
WHERE status = 0
