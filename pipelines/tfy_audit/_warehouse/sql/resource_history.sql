-- Every event of every resource, in the order it happened, numbered per resource.
-- Events sharing a timestamp are ordered by id so the numbering is stable across runs.
CREATE OR REPLACE VIEW {dataset}.resource_history AS
SELECT
    resource_fqn,
    row_number() OVER (
        PARTITION BY resource_fqn
        ORDER BY created_at NULLS LAST, id
    ) AS seq,
    created_at,
    id,
    action,
    resource_type,
    resource_id,
    resource_name,
    subject__subject_slug AS subject_slug,
    subject__subject_id AS subject_id,
    subject__subject_type AS subject_type,
    message
FROM {dataset}.audit_logs
WHERE resource_fqn IS NOT NULL
