-- The subjects most active off-hours in the range, and how much of it at weekends.
SELECT subject_id, max(subject_slug), max(subject_display_name), max(subject_type),
       count(*) AS n, sum(CASE WHEN is_weekend THEN 1 ELSE 0 END)
FROM $off_hours
WHERE $within
GROUP BY subject_id
ORDER BY n DESC, subject_id
LIMIT $limit
