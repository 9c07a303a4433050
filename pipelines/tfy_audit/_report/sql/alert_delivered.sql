-- Per channel: alerts of the range delivered there.
SELECT d.channel, count(*)
FROM $deliveries d
JOIN $alerts a ON a.alert_id = d.alert_id
WHERE $within
GROUP BY d.channel
