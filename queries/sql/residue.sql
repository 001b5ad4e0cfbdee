-- residue: rows that still refer to the given customers, per table, region and origin,
-- replicas included. The lineage: customer_id directly; actions via recording_id (resolved
-- from recordings, audio and transcripts, so an action is found while any of them is left);
-- skill_events via skill_user_id (resolved from skill_links). An empty result means no
-- residue, within what the lineage can still resolve: an action whose recording, audio and
-- transcript are all gone can no longer be tied to anyone (the audit looks at bytes).
--
-- Parameters:
--   $customer_ids  VARCHAR  default 1  comma-separated customer ids, e.g. 17,42 or [17, 42]
WITH ids AS (
    SELECT DISTINCT CAST(trim(x) AS BIGINT) AS customer_id
    FROM unnest(string_split(trim($customer_ids, '[] '), ',')) AS s(x)
    WHERE trim(x) <> ''
),
rec_ids AS (
    SELECT recording_id FROM recordings_all WHERE customer_id IN (SELECT customer_id FROM ids)
    UNION
    SELECT recording_id FROM audio_all WHERE customer_id IN (SELECT customer_id FROM ids)
    UNION
    SELECT recording_id FROM transcripts_all WHERE customer_id IN (SELECT customer_id FROM ids)
),
pseudonyms AS (
    SELECT DISTINCT skill_user_id
    FROM skill_links
    WHERE customer_id IN (SELECT customer_id FROM ids)
),
hits AS (
    SELECT 'customers' AS table_name, 'customer_id' AS via, region, region AS origin
    FROM customers WHERE customer_id IN (SELECT customer_id FROM ids)
    UNION ALL
    SELECT 'devices', 'customer_id', region, region
    FROM devices WHERE customer_id IN (SELECT customer_id FROM ids)
    UNION ALL
    SELECT 'skill_links', 'customer_id', region, region
    FROM skill_links WHERE customer_id IN (SELECT customer_id FROM ids)
    UNION ALL
    SELECT 'recordings', 'customer_id', region, origin
    FROM recordings_all WHERE customer_id IN (SELECT customer_id FROM ids)
    UNION ALL
    SELECT 'audio', 'customer_id', region, origin
    FROM audio_all WHERE customer_id IN (SELECT customer_id FROM ids)
    UNION ALL
    SELECT 'transcripts', 'customer_id', region, origin
    FROM transcripts_all WHERE customer_id IN (SELECT customer_id FROM ids)
    UNION ALL
    SELECT 'usage_daily', 'customer_id', region, origin
    FROM usage_daily_all WHERE customer_id IN (SELECT customer_id FROM ids)
    UNION ALL
    SELECT 'actions', 'recording_id', region, origin
    FROM actions_all WHERE recording_id IN (SELECT recording_id FROM rec_ids)
    UNION ALL
    SELECT 'skill_events', 'skill_user_id', region, origin
    FROM skill_events_all WHERE skill_user_id IN (SELECT skill_user_id FROM pseudonyms)
)
SELECT table_name, via, region, origin, region <> origin AS is_replica, count(*) AS rows
FROM hits
GROUP BY ALL
ORDER BY table_name, region, origin
