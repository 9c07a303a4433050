-- Events per workspace or cluster (`$column`) in a range (the previous one, to compare with).
SELECT $column, count(*)
FROM $scope
WHERE $within AND $column IS NOT NULL
GROUP BY $column
