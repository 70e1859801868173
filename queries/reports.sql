-- The report builder's rollups recomputed straight from the ledger, for one account ($1): the
-- relations report_hours and report_audience hold, with the same columns, from the events alone
-- (every recipient row is rebuilt from its events as the fold merges them). They are the report
-- builder's SQL baseline in scripts/bench, the oracle of tests/test_reports.py and what
-- `mailfold reports rebuild` writes; the API never reads them.

-- name: report_ledger_hours
-- each recipient row as the fold merges its events (queries.sql fold_fresh)
WITH rebuilt AS (
    SELECT account_id, delivery_id, recipient_key,
           max(campaign_id) AS campaign_id, max(source) AS source, max(ab_version) AS ab_version,
           min(occurred_at) AS first_event_at,
           min(occurred_at) FILTER (WHERE type = 'sent') AS sent_at,
           min(occurred_at) FILTER (WHERE type = 'delivered') AS delivered_at,
           min(occurred_at) FILTER (WHERE type = 'dropped') AS dropped_at,
           min(occurred_at) FILTER (WHERE type = 'bounced') AS bounced_at,
           min(occurred_at) FILTER (WHERE type = 'bounced' AND bounce_class = 'hard')
               AS hard_bounced_at,
           (array_agg(bounce_class ORDER BY bounce_pick DESC) FILTER (WHERE type = 'bounced'))[1]
               AS bounce_class,
           (array_agg(bounce_code ORDER BY bounce_pick DESC) FILTER (WHERE type = 'bounced'))[1]
               AS bounce_code,
           (array_agg(bounce_reason ORDER BY bounce_pick DESC) FILTER (WHERE type = 'bounced'))[1]
               AS bounce_reason,
           min(occurred_at) FILTER (WHERE type = 'opened') AS opened_at,
           min(occurred_at) FILTER (WHERE type = 'opened' AND machine IS FALSE) AS human_opened_at,
           min(occurred_at) FILTER (WHERE type = 'clicked') AS clicked_at,
           min(occurred_at) FILTER (WHERE type = 'clicked' AND machine IS FALSE)
               AS human_clicked_at,
           min(occurred_at) FILTER (WHERE type = 'unsubscribed') AS unsubscribed_at,
           min(occurred_at) FILTER (WHERE type = 'complained') AS complained_at,
           max(mailfold_drop_kind(native_type, bounce_code, bounce_reason))
               FILTER (WHERE type = 'dropped') AS drop_kind
    FROM (
        SELECT events.*,
               CASE WHEN type = 'bounced' THEN
                   (CASE bounce_class WHEN 'hard' THEN '2' WHEN 'soft' THEN '1' ELSE '0' END)
                   || to_char(occurred_at AT TIME ZONE 'UTC', 'YYYYMMDDHH24MISSUS')
                   || event_id::text
               END AS bounce_pick
        FROM events
        WHERE account_id = $1 AND delivery_id IS NOT NULL
    ) e
    GROUP BY account_id, delivery_id, recipient_key
),
per_recipient AS (
    SELECT r.account_id, date_trunc('hour', m.at, 'UTC') AS hour,
           coalesce(r.campaign_id, '') AS campaign_id, r.delivery_id,
           coalesce(r.source, '') AS source, coalesce(r.ab_version, '') AS ab_version,
           (mailfold_report_counters())[m.counter] AS counter, count(*) AS n
    FROM rebuilt r
    CROSS JOIN LATERAL mailfold_report_marks(
        r.first_event_at, r.sent_at, r.dropped_at, r.delivered_at, r.opened_at, r.clicked_at,
        r.human_opened_at, r.human_clicked_at, r.unsubscribed_at, r.complained_at, r.bounced_at,
        r.hard_bounced_at, r.bounce_class, r.bounce_code, r.bounce_reason, r.drop_kind) m
    GROUP BY 1, 2, 3, 4, 5, 6, 7
),
per_event AS (
    SELECT account_id, date_trunc('hour', occurred_at, 'UTC') AS hour,
           coalesce(campaign_id, '') AS campaign_id, delivery_id, source,
           coalesce(ab_version, '') AS ab_version,
           CASE WHEN machine IS FALSE THEN ARRAY[type, type || '_human'] ELSE ARRAY[type] END
               AS counters
    FROM events
    WHERE account_id = $1 AND delivery_id IS NOT NULL AND type IN ('opened', 'clicked')
),
marks AS (
    SELECT account_id, hour, campaign_id, delivery_id, source, ab_version, counter, n
    FROM per_recipient
    UNION ALL
    SELECT account_id, hour, campaign_id, delivery_id, source, ab_version, unnest(counters), 1
    FROM per_event
)
SELECT account_id, hour, campaign_id, delivery_id, source, ab_version, true AS live,
       coalesce(sum(n) FILTER (WHERE counter = 'opened'), 0) AS opened,
       coalesce(sum(n) FILTER (WHERE counter = 'opened_human'), 0) AS opened_human,
       coalesce(sum(n) FILTER (WHERE counter = 'clicked'), 0) AS clicked,
       coalesce(sum(n) FILTER (WHERE counter = 'clicked_human'), 0) AS clicked_human,
       coalesce(sum(n) FILTER (WHERE counter = 'recipients'), 0) AS recipients,
       coalesce(sum(n) FILTER (WHERE counter = 'sent'), 0) AS sent,
       coalesce(sum(n) FILTER (WHERE counter = 'delivered'), 0) AS delivered,
       coalesce(sum(n) FILTER (WHERE counter = 'opened_unique'), 0) AS opened_unique,
       coalesce(sum(n) FILTER (WHERE counter = 'opened_unique_human'), 0) AS opened_unique_human,
       coalesce(sum(n) FILTER (WHERE counter = 'clicked_unique'), 0) AS clicked_unique,
       coalesce(sum(n) FILTER (WHERE counter = 'clicked_unique_human'), 0) AS clicked_unique_human,
       coalesce(sum(n) FILTER (WHERE counter = 'clicked_opened'), 0) AS clicked_opened,
       coalesce(sum(n) FILTER (WHERE counter = 'clicked_opened_human'), 0) AS clicked_opened_human,
       coalesce(sum(n) FILTER (WHERE counter = 'unsubscribed'), 0) AS unsubscribed,
       coalesce(sum(n) FILTER (WHERE counter = 'complained'), 0) AS complained,
       coalesce(sum(n) FILTER (WHERE counter = 'churned'), 0) AS churned,
       coalesce(sum(n) FILTER (WHERE counter = 'bounced'), 0) AS bounced,
       coalesce(sum(n) FILTER (WHERE counter = 'bounced_nonexistent'), 0) AS bounced_nonexistent,
       coalesce(sum(n) FILTER (WHERE counter = 'bounced_temporary'), 0) AS bounced_temporary,
       coalesce(sum(n) FILTER (WHERE counter = 'bounced_spam'), 0) AS bounced_spam,
       coalesce(sum(n) FILTER (WHERE counter = 'dropped'), 0) AS dropped,
       coalesce(sum(n) FILTER (WHERE counter = 'dropped_invalid'), 0) AS dropped_invalid,
       coalesce(sum(n) FILTER (WHERE counter = 'dropped_nonexistent'), 0) AS dropped_nonexistent,
       coalesce(sum(n) FILTER (WHERE counter = 'dropped_complained'), 0) AS dropped_complained,
       coalesce(sum(n) FILTER (WHERE counter = 'dropped_unsubscribed'), 0) AS dropped_unsubscribed
FROM marks
GROUP BY 1, 2, 3, 4, 5, 6

-- name: report_ledger_audience
-- the opens and clicks per hour, client and country, from the ledger
SELECT account_id, date_trunc('hour', occurred_at, 'UTC') AS hour,
       coalesce(campaign_id, '') AS campaign_id, delivery_id, source,
       coalesce(ab_version, '') AS ab_version, coalesce(client, '') AS client,
       coalesce(country, '') AS country, true AS live,
       count(*) FILTER (WHERE type = 'opened') AS opened,
       count(*) FILTER (WHERE type = 'opened' AND machine IS FALSE) AS opened_human,
       count(*) FILTER (WHERE type = 'clicked') AS clicked,
       count(*) FILTER (WHERE type = 'clicked' AND machine IS FALSE) AS clicked_human
FROM events
WHERE account_id = $1 AND delivery_id IS NOT NULL AND type IN ('opened', 'clicked')
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
