-- Events of the range per ISO day of the week and local hour, in the zone of working hours.
SELECT CAST(extract(isodow FROM timezone('$zone', created_at)) AS INTEGER) AS d,
       CAST(extract(hour FROM timezone('$zone', created_at)) AS INTEGER) AS h,
       count(*)
FROM $logs
WHERE $within
GROUP BY 1, 2
