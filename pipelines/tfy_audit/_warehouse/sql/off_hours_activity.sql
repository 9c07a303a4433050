-- Every event outside working hours in a time zone: at a weekend, or before {work_start}:00 or
-- from {work_end}:00 on on a weekday, local time in {timezone} (an IANA zone, daylight saving
-- included). `tfy-audit views` creates it for UTC and 08-19; `tfy-audit report --timezone
-- --work-hours` reads it with the zone and hours given. local_time is a local wall-clock
-- timestamp without zone; local_weekday is 1 (Monday) to 7 (Sunday).
CREATE OR REPLACE VIEW {dataset}.off_hours_activity AS
SELECT
    id,
    created_at,
    local_time,
    local_weekday,
    local_weekday >= 6 AS is_weekend,
    subject_id,
    subject_type,
    subject_slug,
    subject_display_name,
    action,
    resource_type,
    resource_name,
    message
FROM (
    SELECT
        id,
        created_at,
        timezone('{timezone}', created_at) AS local_time,
        CAST(extract(isodow FROM timezone('{timezone}', created_at)) AS INTEGER) AS local_weekday,
        CAST(extract(hour FROM timezone('{timezone}', created_at)) AS INTEGER) AS local_hour,
        subject__subject_id AS subject_id,
        subject__subject_type AS subject_type,
        subject__subject_slug AS subject_slug,
        subject__subject_display_name AS subject_display_name,
        action,
        resource_type,
        resource_name,
        message
    FROM {dataset}.audit_logs
    WHERE created_at IS NOT NULL
) AS e
WHERE local_weekday >= 6 OR local_hour < {work_start} OR local_hour >= {work_end}
