-- Alerts per rule in the range; a rule's title, severity and ATT&CK ids as its alerts hold them.
SELECT rule_id, max(title), max(severity), max(attack), count(*), sum(event_count)
FROM $alerts a
WHERE $within
GROUP BY rule_id
