-- Events per UTC day, action, resource type and subject type.
-- timezone('UTC', ts) gives the UTC wall-clock time on DuckDB and PostgreSQL alike, so the day
-- does not depend on the session's time zone.
CREATE OR REPLACE VIEW {dataset}.daily_activity AS
SELECT
    CAST(timezone('UTC', created_at) AS DATE) AS day,
    action,
    resource_type,
    subject__subject_type AS subject_type,
    count(*) AS events
FROM {dataset}.audit_logs
GROUP BY
    CAST(timezone('UTC', created_at) AS DATE),
    action,
    resource_type,
    subject__subject_type
