-- Sensitive actions per UTC day of the range.
SELECT CAST(timezone('UTC', created_at) AS DATE), count(*)
FROM $sensitive
WHERE $within
GROUP BY CAST(timezone('UTC', created_at) AS DATE)
