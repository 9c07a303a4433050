-- Anomaly records per kind, over the whole history.
SELECT kind, count(*)
FROM $records
GROUP BY kind
