-- The latest events of the range.
SELECT created_at, action, resource_type, resource_name, resource_fqn,
       subject__subject_slug, subject__subject_display_name, subject__subject_type, message
FROM $logs
WHERE $within
ORDER BY created_at DESC NULLS LAST, id DESC
LIMIT $limit
