-- One row per subject (user, team, service account, ...): how much it did and what it did last.
-- Type, slug and display name come from the subject's latest event, the same rule the
-- `subjects` table follows, so the view needs nothing but `audit_logs`.
CREATE OR REPLACE VIEW {dataset}.subject_activity AS
SELECT
    latest.subject_id,
    latest.subject_type,
    latest.subject_slug,
    latest.subject_display_name,
    totals.events,
    totals.distinct_actions,
    totals.first_seen_at,
    totals.last_seen_at,
    latest.action AS last_action
FROM (
    SELECT
        subject__subject_id AS subject_id,
        count(*) AS events,
        count(DISTINCT action) AS distinct_actions,
        min(created_at) AS first_seen_at,
        max(created_at) AS last_seen_at
    FROM {dataset}.audit_logs
    WHERE subject__subject_id IS NOT NULL
    GROUP BY subject__subject_id
) AS totals
JOIN (
    SELECT
        subject__subject_id AS subject_id,
        subject__subject_type AS subject_type,
        subject__subject_slug AS subject_slug,
        subject__subject_display_name AS subject_display_name,
        action,
        -- events sharing a timestamp are ordered by id, so "last" is the same on every run
        -- and on every destination (NULLS LAST spelled out: the defaults differ)
        row_number() OVER (
            PARTITION BY subject__subject_id
            ORDER BY created_at DESC NULLS LAST, id DESC
        ) AS recency
    FROM {dataset}.audit_logs
    WHERE subject__subject_id IS NOT NULL
) AS latest
    ON latest.subject_id = totals.subject_id AND latest.recency = 1
