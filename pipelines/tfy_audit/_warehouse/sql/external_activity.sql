-- Every event by a non-human or outside identity: external identities (federated through an
-- identity provider), virtual accounts, service accounts and agent identities. subject_kind
-- names the kind whatever the spelling of subject_type ('virtualaccount', 'virtual-account').
CREATE OR REPLACE VIEW {dataset}.external_activity AS
SELECT
    id,
    created_at,
    subject_kind,
    subject__subject_id AS subject_id,
    subject__subject_type AS subject_type,
    subject__subject_slug AS subject_slug,
    subject__subject_display_name AS subject_display_name,
    subject__subject_external_identity_slug AS subject_external_identity_slug,
    subject__subject_controller_name AS subject_controller_name,
    subject__subject_pat_name AS subject_pat_name,
    action,
    resource_type,
    resource_name,
    workspace_id
FROM (
    SELECT
        *,
        CASE replace(replace(lower(subject__subject_type), '-', ''), '_', '')
            WHEN 'externalidentity' THEN 'external identity'
            WHEN 'virtualaccount' THEN 'virtual account'
            WHEN 'serviceaccount' THEN 'service account'
            WHEN 'agentidentity' THEN 'agent identity'
        END AS subject_kind
    FROM {dataset}.audit_logs
) AS a
WHERE subject_kind IS NOT NULL
