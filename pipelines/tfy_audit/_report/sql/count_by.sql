-- Rows of one range per value of a column (severity, category, change, subject_kind).
SELECT $column, count(*)
FROM $source
WHERE $within
GROUP BY $column
