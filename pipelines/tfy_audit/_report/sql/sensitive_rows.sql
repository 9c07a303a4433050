-- The latest sensitive actions of one severity tier in the range.
SELECT created_at, category, action, resource_type, resource_name, resource_fqn,
       subject_slug, subject_display_name, subject_type, subject_pat_name, message
FROM $sensitive
WHERE $within AND severity = '$tier'
ORDER BY created_at DESC NULLS LAST, id DESC
LIMIT $limit
