-- The latest grants, changes and revocations of access in the range.
SELECT created_at, change, severity, action, resource_type, resource_name, resource_fqn,
       subject_slug, subject_display_name, subject_type, subject_pat_name, message
FROM $access
WHERE $within
ORDER BY created_at DESC NULLS LAST, id DESC
LIMIT $limit
