-- The campaign and delivery lists' fixed statements. A list row stands for (delivery, campaign)
-- pairs, passed as parallel arrays ($2 deliveries, $3 campaigns, $4 the row each pair belongs
-- to); a pair's recipients are those under its campaign or under none yet, as on the
-- per-delivery endpoints. The funnel figures themselves are summary_recipients' (read.sql),
-- grouped by row in service/read/deliveries.py.

-- name: funnel_events
-- Event totals of the given deliveries by type (the funnel's event counts), from the hourly
-- counters.
SELECT delivery_id, type, sum(event_count) AS events
FROM delivery_stats
WHERE account_id = $1 AND delivery_id = ANY($2::text[])
  AND type IN ('bounced', 'unsubscribed', 'complained')
GROUP BY 1, 2;

-- name: funnel_revenue
-- Conversion revenue by currency of the recipients of (delivery, campaign) pairs.
SELECT r.conversions_currency AS currency, sum(r.conversions_amount) AS amount
FROM unnest($2::text[], $3::text[]) AS p(pair_delivery, pair_campaign)
JOIN recipients r ON r.account_id = $1 AND r.delivery_id = p.pair_delivery
                 AND (r.campaign_id = p.pair_campaign OR r.campaign_id IS NULL)
WHERE r.converted_at IS NOT NULL
GROUP BY 1
ORDER BY 1 NULLS LAST;
