-- top_intents: what customers ask for: recordings per intent and their share, most frequent
-- first, in one region or everywhere.
--
-- Parameters:
--   $region  VARCHAR  default NULL  a region (e.g. eu-west-1); NULL = all regions
SELECT
    intent,
    count(*) AS recordings,
    round(100.0 * count(*) / sum(count(*)) OVER (), 2) AS share_pct,
    count(DISTINCT customer_id) AS customers
FROM recordings
WHERE $region IS NULL OR region = $region
GROUP BY intent
ORDER BY recordings DESC, intent
