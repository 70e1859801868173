-- The A/B report (service/read/ab.py). Its per-version funnel figures are the delivery
-- summary's own statement (summary_recipients) grouped by version, composed in ab.py.

-- name: ab_campaign_deliveries
-- The deliveries with recipients under one campaign.
SELECT delivery_id
FROM delivery_counts
WHERE account_id = $1 AND campaign_id = $2 AND recipient_count > 0
ORDER BY delivery_id;

-- name: ab_version_events
-- Bounce, unsubscribe and complaint events per recipient version of some deliveries' recipients
-- under one campaign (or none): the summary's event totals, per version.
SELECT r.ab_version, e.type, count(*) AS events
FROM events e
JOIN recipients r
  ON r.account_id = e.account_id AND r.delivery_id = e.delivery_id
 AND r.recipient_key = e.recipient_key
WHERE e.account_id = $1 AND e.delivery_id = ANY($2::text[])
  AND e.type IN ('bounced', 'unsubscribed', 'complained')
  AND (r.campaign_id = $3 OR r.campaign_id IS NULL)
GROUP BY r.ab_version, e.type;
