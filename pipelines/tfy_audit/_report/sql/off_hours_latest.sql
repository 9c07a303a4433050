-- The latest off-hours events of the range, in the working hours' time zone.
SELECT local_time, action, resource_type, resource_name, subject_slug,
       subject_display_name, subject_type, message
FROM $off_hours
WHERE $within
ORDER BY created_at DESC NULLS LAST, id DESC
LIMIT $limit
