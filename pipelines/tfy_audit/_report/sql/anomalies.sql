-- The latest anomaly records.
SELECT recorded_at, kind, action, event_id, field_path, detail
FROM $records
ORDER BY recorded_at DESC, anomaly_id
LIMIT $limit
