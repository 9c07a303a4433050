-- The deliveries of the most recent alerts of the range (the same alerts as alerts_recent).
SELECT d.alert_id, d.channel, d.delivered_at
FROM $deliveries d
JOIN (
    SELECT alert_id
    FROM $alerts a
    WHERE $within
    ORDER BY last_seen DESC, alert_id
    LIMIT $limit
) r ON r.alert_id = d.alert_id
