-- The most frequent actions of the range.
SELECT action, count(*) AS n
FROM $logs
WHERE $within
GROUP BY action
ORDER BY n DESC, action NULLS LAST
LIMIT $limit
