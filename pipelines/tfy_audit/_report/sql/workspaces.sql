-- Activity per workspace in the range, busiest first.
SELECT workspace_id, max(workspace_name), max(cluster_id), count(*) AS n,
       count(DISTINCT subject_id), sum(CASE WHEN is_deletion THEN 1 ELSE 0 END)
FROM $scope
WHERE $within AND workspace_id IS NOT NULL
GROUP BY workspace_id
ORDER BY n DESC, workspace_id
