-- The busiest subjects of the range, with type, names and last action from each subject's
-- latest event in the range (ties by id).
SELECT t.subject_id, l.subject_type, l.subject_slug, l.subject_display_name,
       t.events, t.distinct_actions, t.last_seen_at, l.action
FROM (
    SELECT subject__subject_id AS subject_id, count(*) AS events,
           count(DISTINCT action) AS distinct_actions, max(created_at) AS last_seen_at
    FROM $logs
    WHERE $within AND subject__subject_id IS NOT NULL
    GROUP BY subject__subject_id
) AS t
JOIN (
    SELECT subject__subject_id AS subject_id, subject__subject_type AS subject_type,
           subject__subject_slug AS subject_slug,
           subject__subject_display_name AS subject_display_name, action,
           row_number() OVER (PARTITION BY subject__subject_id
                              ORDER BY created_at DESC NULLS LAST, id DESC) AS recency
    FROM $logs
    WHERE $within
) AS l
ON l.subject_id = t.subject_id AND l.recency = 1
ORDER BY t.events DESC, t.subject_id
LIMIT $limit
