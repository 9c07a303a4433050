-- Every event that belongs to a workspace or a cluster, with the workspace's name (from the
-- latest event on the workspace itself, when one is loaded). Account-level events carry no
-- workspace and no cluster ('' in the API) and are left out.
CREATE OR REPLACE VIEW {dataset}.workspace_activity AS
SELECT
    a.id,
    a.created_at,
    nullif(a.cluster_id, '') AS cluster_id,
    nullif(a.workspace_id, '') AS workspace_id,
    w.workspace_name,
    a.action,
    a.resource_type,
    a.resource_name,
    a.subject__subject_id AS subject_id,
    coalesce(substr(upper(a.action), 1, 7) = 'DELETE_', false) AS is_deletion
FROM {dataset}.audit_logs AS a
LEFT JOIN (
    SELECT workspace_id, resource_name AS workspace_name
    FROM (
        SELECT
            resource_id AS workspace_id,
            resource_name,
            row_number() OVER (
                PARTITION BY resource_id ORDER BY created_at DESC NULLS LAST, id DESC
            ) AS recency
        FROM {dataset}.audit_logs
        WHERE lower(resource_type) = 'workspace'
    ) AS named
    WHERE recency = 1
) AS w
    ON w.workspace_id = nullif(a.workspace_id, '')
WHERE nullif(a.workspace_id, '') IS NOT NULL OR nullif(a.cluster_id, '') IS NOT NULL
