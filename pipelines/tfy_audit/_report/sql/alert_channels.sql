-- The channels any alert was ever delivered to.
SELECT DISTINCT channel
FROM $deliveries
ORDER BY channel
