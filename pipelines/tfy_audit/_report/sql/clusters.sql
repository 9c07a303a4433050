-- Activity per cluster in the range, busiest first.
SELECT cluster_id, count(DISTINCT workspace_id), count(*) AS n,
       count(DISTINCT subject_id), sum(CASE WHEN is_deletion THEN 1 ELSE 0 END)
FROM $scope
WHERE $within AND cluster_id IS NOT NULL
GROUP BY cluster_id
ORDER BY n DESC, cluster_id
