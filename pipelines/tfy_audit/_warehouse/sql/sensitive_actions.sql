-- Events an auditor reviews first: secrets, tokens, access control, identities, deletions.
--
-- Membership is decided by whole words of the action name AND by the resource type, so an
-- action the service adds later (ROTATE_SIGNING_KEY on a secret, say) is included without a
-- change here. Words are matched as '_WORD_' inside '_' || action || '_': PAT matches
-- CREATE_PAT but not PATCH_APPLICATION. position() rather than LIKE, where '_' is a wildcard.
--
-- The first matching category wins: token, secret, access, identity, deletion. A deletion of
-- a secret is therefore in category 'secret' with is_deletion true; category 'deletion' holds
-- the deletions of everything else.
--
-- severity is 'critical', 'high' or 'notable', from the rules in severity_rules.csv (and a
-- user's rules file) inlined as a VALUES list: the first matching rule by rank decides, and
-- a sensitive action no rule matches is 'notable'. An event that only a rule matches is
-- included with category 'other', so a rule can add an action the categories miss.
CREATE OR REPLACE VIEW {dataset}.sensitive_actions AS
SELECT
    id,
    created_at,
    coalesce(category, 'other') AS category,
    coalesce(rule_severity, 'notable') AS severity,
    is_deletion,
    action,
    resource_type,
    resource_id,
    resource_name,
    resource_fqn,
    subject_id,
    subject_type,
    subject_slug,
    subject_display_name,
    subject_pat_name,
    tenant_name,
    workspace_id,
    message
FROM (
    SELECT
        classified.*,
        (
            SELECT r.severity
            FROM {severity_rules} AS r (severity, tier_rank, action, resource_type, resource_name)
            WHERE (r.action = '*' OR r.action = classified.action_upper)
                AND (r.resource_type = '*' OR r.resource_type = classified.rtype)
                AND (r.resource_name = '*' OR r.resource_name = classified.resource_name)
            ORDER BY r.tier_rank
            LIMIT 1
        ) AS rule_severity
    FROM (
    SELECT
        e.*,
        CASE
            WHEN position('_TOKEN_' IN e.action_words) > 0
                OR position('_TOKENS_' IN e.action_words) > 0
                OR position('_PAT_' IN e.action_words) > 0
                OR position('_PATS_' IN e.action_words) > 0
                OR position('token' IN e.rtype) > 0
                THEN 'token'
            WHEN position('secret' IN e.rtype) > 0
                OR position('_SECRET_' IN e.action_words) > 0
                OR position('_SECRETS_' IN e.action_words) > 0
                THEN 'secret'
            WHEN e.rtype IN ('role', 'role-binding', 'policy', 'team')
                OR position('_ROLE_' IN e.action_words) > 0
                OR position('_ROLES_' IN e.action_words) > 0
                OR position('_BINDING_' IN e.action_words) > 0
                OR position('_POLICY_' IN e.action_words) > 0
                OR position('_POLICIES_' IN e.action_words) > 0
                OR position('_PERMISSION_' IN e.action_words) > 0
                OR position('_PERMISSIONS_' IN e.action_words) > 0
                OR position('_COLLABORATORS_' IN e.action_words) > 0
                THEN 'access'
            WHEN e.rtype IN ('user', 'virtual-account', 'service-account')
                OR position('identity' IN e.rtype) > 0
                OR position('sso' IN e.rtype) > 0
                OR position('_USER_' IN e.action_words) > 0
                OR position('_USERS_' IN e.action_words) > 0
                OR position('_PASSWORD_' IN e.action_words) > 0
                OR position('_IDENTITY_' IN e.action_words) > 0
                OR position('_SSO_' IN e.action_words) > 0
                OR position('_VIRTUAL_ACCOUNT_' IN e.action_words) > 0
                OR position('_SERVICE_ACCOUNT_' IN e.action_words) > 0
                THEN 'identity'
            WHEN e.is_deletion THEN 'deletion'
        END AS category
    FROM (
        SELECT
            id,
            created_at,
            action,
            resource_type,
            resource_id,
            resource_name,
            resource_fqn,
            subject__subject_id AS subject_id,
            subject__subject_type AS subject_type,
            subject__subject_slug AS subject_slug,
            subject__subject_display_name AS subject_display_name,
            subject__subject_pat_name AS subject_pat_name,
            tenant_name,
            workspace_id,
            message,
            upper(action) AS action_upper,
            '_' || upper(action) || '_' AS action_words,
            lower(resource_type) AS rtype,
            coalesce(substr(upper(action), 1, 7) = 'DELETE_', false) AS is_deletion
        FROM {dataset}.audit_logs
    ) AS e
) AS classified
) AS rated
WHERE category IS NOT NULL OR rule_severity IS NOT NULL
