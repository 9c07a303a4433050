-- Grants and role changes: who was given what, by whom. The access events of
-- sensitive_actions (roles, role bindings, policies, teams, collaborators, user roles) with
-- the kind of change: 'revoke' for DELETE_/REMOVE_/REVOKE_/DEACTIVATE_, 'change' for
-- UPDATE_/CHANGE_, 'grant' for the rest (APPLY_, ADD_, CREATE_, BULK_APPLY_, ...).
-- resource_name is what was granted or changed; subject_* is who did it.
CREATE OR REPLACE VIEW {dataset}.access_changes AS
SELECT
    id,
    created_at,
    CASE
        WHEN substr(upper(action), 1, 7) IN ('DELETE_', 'REMOVE_', 'REVOKE_')
            OR substr(upper(action), 1, 11) = 'DEACTIVATE_'
            THEN 'revoke'
        WHEN substr(upper(action), 1, 7) IN ('UPDATE_', 'CHANGE_') THEN 'change'
        ELSE 'grant'
    END AS change,
    severity,
    action,
    resource_type,
    resource_name,
    resource_fqn,
    subject_id,
    subject_type,
    subject_slug,
    subject_display_name,
    subject_pat_name,
    message
FROM {view:sensitive_actions} AS s
WHERE category = 'access'
