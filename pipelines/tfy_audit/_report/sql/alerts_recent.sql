-- The most recent alerts of the range, by their last event.
SELECT alert_id, rule_id, severity, title, dedup_key, first_seen, last_seen, event_count
FROM $alerts a
WHERE $within
ORDER BY last_seen DESC, alert_id
LIMIT $limit
