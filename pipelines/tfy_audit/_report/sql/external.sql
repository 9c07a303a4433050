-- Activity of non-human and federated subjects in the range, per kind and subject.
SELECT subject_kind, subject_id, max(subject_slug), max(subject_display_name),
       max(subject_external_identity_slug), max(subject_controller_name), count(*) AS n,
       count(DISTINCT action), max(created_at)
FROM $external
WHERE $within
GROUP BY subject_kind, subject_id
ORDER BY n DESC, subject_id
