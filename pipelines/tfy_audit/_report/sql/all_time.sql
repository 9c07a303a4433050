-- Every event loaded, and the newest.
SELECT count(*), max(created_at)
FROM $logs
