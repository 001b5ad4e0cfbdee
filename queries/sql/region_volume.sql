-- region_volume: traffic per region and local day: recordings, distinct customers, audio
-- payload bytes and actions. Audio and actions are dated by their recording, so the figures
-- are the same whatever the lake's layout. Replicas are not counted.
--
-- Parameters: none
WITH rec AS (
    SELECT region, date, count(*) AS recordings, count(DISTINCT customer_id) AS customers
    FROM recordings
    GROUP BY ALL
),
aud AS (
    SELECT r.region, r.date, CAST(sum(octet_length(a.payload)) AS BIGINT) AS audio_bytes
    FROM audio AS a
    JOIN recordings AS r ON r.recording_id = a.recording_id
    GROUP BY ALL
),
act AS (
    SELECT r.region, r.date, count(*) AS actions
    FROM actions AS a
    JOIN recordings AS r ON r.recording_id = a.recording_id
    GROUP BY ALL
)
SELECT
    region,
    date,
    recordings,
    customers,
    coalesce(audio_bytes, 0) AS audio_bytes,
    coalesce(actions, 0) AS actions
FROM rec
LEFT JOIN aud USING (region, date)
LEFT JOIN act USING (region, date)
ORDER BY region, date
