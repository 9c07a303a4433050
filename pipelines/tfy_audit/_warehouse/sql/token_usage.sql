-- Every event made with a token: a user's personal access token (PAT) or a virtual or service
-- account's token, named by subject_pat_name. A token is (subject_id, token_name); its last
-- event is its last use, so tokens unused for 30 days are those whose max(created_at) is older.
CREATE OR REPLACE VIEW {dataset}.token_usage AS
SELECT
    id,
    created_at,
    subject__subject_pat_name AS token_name,
    CASE
        WHEN lower(subject__subject_type) = 'user' THEN 'pat'
        ELSE 'account token'
    END AS token_kind,
    subject__subject_id AS subject_id,
    subject__subject_type AS subject_type,
    subject__subject_slug AS subject_slug,
    subject__subject_display_name AS subject_display_name,
    action,
    resource_type,
    resource_name,
    workspace_id
FROM {dataset}.audit_logs
WHERE subject__subject_pat_name IS NOT NULL AND subject__subject_pat_name <> ''
