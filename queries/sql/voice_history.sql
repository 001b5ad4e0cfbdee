-- voice_history: one customer's recordings, newest first, with what they said (transcript)
-- and what the assistant did in response (actions, via recording_id).
--
-- Parameters:
--   $customer_id  BIGINT  default 1  the customer
SELECT
    r.started_at,
    r.region,
    d.device_name,
    r.intent,
    t.text,
    string_agg(a.action_type || coalesce(' → ' || a.target, '') || ' (' || a.status || ')', '; '
               ORDER BY a.executed_at) AS actions,
    r.recording_id
FROM recordings AS r
LEFT JOIN transcripts AS t
    ON t.recording_id = r.recording_id AND t.customer_id = $customer_id
LEFT JOIN actions AS a ON a.recording_id = r.recording_id
LEFT JOIN devices AS d ON d.device_id = r.device_id AND d.customer_id = $customer_id
WHERE r.customer_id = $customer_id
GROUP BY ALL
ORDER BY r.started_at DESC, r.recording_id
