-- What the syncs recorded of the windows they read, over the whole history.
SELECT count(*), sum(CASE WHEN complete THEN 0 ELSE 1 END), min(window_start),
       max(window_end), sum(rows_read), count(DISTINCT sync_id), max(fetched_at)
FROM $windows
