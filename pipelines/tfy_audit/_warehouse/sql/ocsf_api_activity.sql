-- Every dated event as an OCSF 1.1.0 event, one row each, flat: a column named a__b__c holds
-- the event's attribute a.b.c, and resources_0__ / resources_1__ the first and second element
-- of the resources array. `tfy-audit export --format ocsf` writes these rows, nested, as
-- Parquet (tfy_audit/_ocsf/nest.py); its class_uid picks the class (API Activity 6003, or
-- Account Change 3001 for account lifecycle actions), and a column a class does not carry is
-- NULL on its rows. The mapping is the tables of tfy_audit/_ocsf/*.csv, inlined as VALUES
-- lists; docs/ocsf.md lists it action by action.
--
-- The class and activity: an action named in actions.csv takes its row; any other is API
-- Activity with the activity of its longest listed verb prefix (verbs.csv), else 99 (Other).
-- A prefix is matched as verb || '_' with substr(), not LIKE, where '_' is a wildcard.
-- time is createdAt in epoch milliseconds, truncated: DuckDB's EXTRACT(EPOCH) is a double,
-- whose error stays far below the half microsecond added before the floor.
-- Empty strings (the spec's required strings carry '' for "none") become NULL: absent.
-- metaData and keys the spec does not list are JSON text, as the warehouse renders them
-- (PostgreSQL's jsonb orders keys its own way: the same JSON, other text).
CREATE OR REPLACE VIEW {dataset}.ocsf_api_activity AS
SELECT
    m.class_uid,
    c.class_name,
    c.category_uid,
    c.category_name,
    m.activity_id,
    a.activity_name,
    CAST(m.class_uid * 100 + m.activity_id AS BIGINT) AS type_uid,
    c.class_name || ': ' || a.activity_name AS type_name,
    CAST(1 AS INTEGER) AS severity_id,
    'Informational' AS severity,
    m.time,
    nullif(m.message, '') AS message,
    {ocsf_version} AS metadata__version,
    {ocsf_product} AS metadata__product__name,
    {ocsf_vendor} AS metadata__product__vendor_name,
    'audit-logs' AS metadata__log_name,
    m.id AS metadata__uid,
    nullif(m.tenant_name, '') AS metadata__tenant_uid,
    CAST(floor(EXTRACT(EPOCH FROM m.updated_at) * 1000 + 0.0005) AS BIGINT)
        AS metadata__modified_time,
    nullif(m.subject__subject_id, '') AS actor__user__uid,
    nullif(m.subject__subject_slug, '') AS actor__user__name,
    nullif(m.subject__subject_display_name, '') AS actor__user__full_name,
    CASE WHEN m.subject__subject_type IS NULL THEN CAST(0 AS INTEGER)
        ELSE coalesce(st.type_id, CAST(99 AS INTEGER)) END AS actor__user__type_id,
    CASE WHEN m.subject__subject_type IS NULL THEN 'Unknown'
        ELSE coalesce(st.type, m.subject__subject_type) END AS actor__user__type,
    nullif(m.subject__subject_pat_name, '') AS actor__user__credential_uid,
    nullif(m.subject__subject_external_identity_slug, '') AS actor__user__uid_alt,
    nullif(m.subject__subject_controller_name, '') AS actor__invoked_by,
    CASE WHEN m.class_uid = 6003 THEN m.action END AS api__operation,
    CASE WHEN m.class_uid = 6003 THEN {ocsf_product} END AS api__service__name,
    nullif(m.request_path, '') AS http_request__url__path,
    CASE WHEN m.class_uid = 6003 THEN 'unknown' END AS src_endpoint__name,
    CASE WHEN m.class_uid = 6003 THEN nullif(m.resource_id, '') END AS resources_0__uid,
    CASE WHEN m.class_uid = 6003 THEN nullif(m.resource_name, '') END AS resources_0__name,
    CASE WHEN m.class_uid = 6003 THEN nullif(m.resource_type, '') END AS resources_0__type,
    CASE WHEN m.class_uid = 6003 THEN nullif(m.parent_resource_id, '') END AS resources_1__uid,
    CASE WHEN m.class_uid = 6003 AND nullif(m.parent_resource_id, '') IS NOT NULL
        THEN nullif(m.parent_resource_type, '') END AS resources_1__type,
    CASE WHEN m.class_uid = 3001 THEN nullif(m.resource_id, '') END AS user__uid,
    CASE WHEN m.class_uid = 3001 THEN nullif(m.resource_name, '') END AS user__name,
    CASE WHEN m.class_uid = 3001 THEN coalesce(rt.type_id, CAST(99 AS INTEGER)) END
        AS user__type_id,
    CASE WHEN m.class_uid = 3001 THEN coalesce(rt.type, m.resource_type) END AS user__type,
    CASE WHEN m.class_uid = 3001 THEN m.action END AS unmapped__action,
    nullif(m.resource_fqn, '') AS unmapped__resource_fqn,
    CASE WHEN m.class_uid = 3001 THEN nullif(m.resource_type, '') END AS unmapped__resource_type,
    nullif(m.tenant_name, '') AS unmapped__tenant_name,
    nullif(m.cluster_id, '') AS unmapped__cluster_id,
    nullif(m.workspace_id, '') AS unmapped__workspace_id,
    m.subject__subject_type AS unmapped__subject_type,
    CAST(m.meta_data AS TEXT) AS unmapped__meta_data,
    CAST(m.extra_fields AS TEXT) AS unmapped__extra_fields
FROM (
    SELECT
        e.*,
        CAST(floor(EXTRACT(EPOCH FROM e.created_at) * 1000 + 0.0005) AS BIGINT) AS time,
        coalesce(x.class_uid, CAST(6003 AS INTEGER)) AS class_uid,
        coalesce(
            x.activity_id,
            (
                SELECT v.activity_id
                FROM (VALUES
        {ocsf_verbs}
                ) AS v (verb, activity_id)
                WHERE upper(e.action) = v.verb
                    OR substr(upper(e.action), 1, length(v.verb) + 1) = v.verb || '_'
                ORDER BY length(v.verb) DESC
                LIMIT 1
            ),
            CAST(99 AS INTEGER)
        ) AS activity_id
    FROM {dataset}.audit_logs AS e
    LEFT JOIN (VALUES
        {ocsf_actions}
    ) AS x (action, class_uid, activity_id) ON upper(e.action) = x.action
    WHERE e.created_at IS NOT NULL
) AS m
JOIN (VALUES
        {ocsf_classes}
) AS c (class_uid, class_name, category_uid, category_name) ON c.class_uid = m.class_uid
JOIN (VALUES
        {ocsf_activities}
) AS a (class_uid, activity_id, activity_name)
    ON a.class_uid = m.class_uid AND a.activity_id = m.activity_id
LEFT JOIN (VALUES
        {ocsf_user_types}
) AS st (name, type_id, type) ON st.name = lower(m.subject__subject_type)
LEFT JOIN (VALUES
        {ocsf_user_types}
) AS rt (name, type_id, type) ON rt.name = lower(m.resource_type)
