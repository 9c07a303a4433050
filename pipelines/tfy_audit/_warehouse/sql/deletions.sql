-- Every DELETE_* event, whatever the resource (substr, not LIKE, where '_' is a wildcard).
CREATE OR REPLACE VIEW {dataset}.deletions AS
SELECT
    id,
    created_at,
    action,
    resource_type,
    resource_id,
    resource_name,
    resource_fqn,
    parent_resource_type,
    parent_resource_id,
    subject__subject_id AS subject_id,
    subject__subject_type AS subject_type,
    subject__subject_slug AS subject_slug,
    subject__subject_display_name AS subject_display_name,
    subject__subject_pat_name AS subject_pat_name,
    tenant_name,
    cluster_id,
    workspace_id,
    message
FROM {dataset}.audit_logs
WHERE substr(upper(action), 1, 7) = 'DELETE_'
