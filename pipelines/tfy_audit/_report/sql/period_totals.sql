-- The headline figures of one range: events, subjects, UTC days with events, first and last.
SELECT count(*), count(DISTINCT subject__subject_id),
       count(DISTINCT CAST(timezone('UTC', created_at) AS DATE)),
       min(created_at), max(created_at)
FROM $logs
WHERE $within
