-- Events per UTC day of the range.
SELECT CAST(timezone('UTC', created_at) AS DATE) AS day, count(*)
FROM $logs
WHERE $within
GROUP BY CAST(timezone('UTC', created_at) AS DATE)
ORDER BY day
