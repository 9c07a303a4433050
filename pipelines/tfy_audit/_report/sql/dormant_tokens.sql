-- Tokens used before the range's end but not since `$idle_since`, longest idle first.
SELECT subject_id, token_name, max(token_kind), max(subject_slug), max(subject_display_name),
       count(*) AS n, count(DISTINCT action), min(created_at), max(created_at) AS last_used
FROM $tokens
WHERE created_at < $end
GROUP BY subject_id, token_name
HAVING max(created_at) < $idle_since
ORDER BY last_used, token_name, subject_id
