-- Uses of each token in a range (the previous one, to compare with).
SELECT subject_id, token_name, count(*)
FROM $tokens
WHERE $within
GROUP BY subject_id, token_name
