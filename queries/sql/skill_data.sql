-- skill_data: what each third-party skill holds about one customer. Skills never see the
-- customer_id, only a pseudonymous skill_user_id (from skill_links); this joins their events
-- back to the customer: per linked skill, the pseudonym, event count, first and last event and
-- a few of the utterances the skill received.
--
-- Parameters:
--   $customer_id  BIGINT  default 1  the customer
SELECT
    l.skill_id,
    l.skill_name,
    l.skill_user_id,
    l.linked_at,
    count(e.event_id) AS events,
    min(e.occurred_at) AS first_event,
    max(e.occurred_at) AS last_event,
    coalesce(list_slice(list_sort(list(DISTINCT e.payload_json ->> '$.utterance')
                                  FILTER (WHERE e.event_id IS NOT NULL)), 1, 3), [])
        AS sample_utterances
FROM skill_links AS l
LEFT JOIN skill_events AS e
    ON e.skill_user_id = l.skill_user_id AND e.skill_id = l.skill_id
WHERE l.customer_id = $customer_id
GROUP BY ALL
ORDER BY events DESC, l.skill_id
