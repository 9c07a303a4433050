-- Subjects whose first event falls in the range, newest first.
SELECT first_seen_at, subject_id, subject_type, subject_slug, subject_display_name,
       events, last_seen_at, last_action
FROM $subjects
WHERE $within
ORDER BY first_seen_at DESC, subject_id
LIMIT $limit
