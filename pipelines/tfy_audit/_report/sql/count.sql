-- Rows of one range.
SELECT count(*)
FROM $source
WHERE $within
