-- Uses of each token in the range, busiest first.
SELECT subject_id, token_name, max(token_kind), max(subject_slug), max(subject_display_name),
       count(*) AS n, count(DISTINCT action), min(created_at), max(created_at) AS last_used
FROM $tokens
WHERE $within
GROUP BY subject_id, token_name
ORDER BY n DESC, token_name, subject_id
