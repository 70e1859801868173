-- The read API's fixed statements and the fold's suppression step. Statements whose filters
-- and sorts vary are composed in service/read/ from whitelisted identifiers; these do not vary.
-- Feed positions are (feed_xact, feed_seq), compared as rows, and only rows written by
-- transactions older than the oldest one still running are handed out (schema.sql explains).

-- name: upsert_suppressions
-- The batch's hard bounces, complaints and unsubscribes become per-account suppressions. Reads
-- `incoming` (not `fresh`): a complaint suppresses its address even before its delivery is
-- known, and a duplicate changes nothing because the merge is idempotent.
WITH suppressing AS (
    SELECT account_id, lower(email) AS email, event_id, occurred_at, campaign_id, delivery_id,
           CASE type WHEN 'complained' THEN 'complained' WHEN 'bounced' THEN 'hard_bounce'
                     ELSE 'unsubscribed' END AS reason,
           CASE type WHEN 'complained' THEN 3 WHEN 'bounced' THEN 2 ELSE 1 END AS reason_rank
    FROM incoming
    WHERE email IS NOT NULL
      AND (type IN ('complained', 'unsubscribed') OR (type = 'bounced' AND bounce_class = 'hard'))
),
-- one row per address: the strongest reason and its earliest event; the earliest of any reason
per_address AS (
    SELECT DISTINCT ON (account_id, email)
           account_id, email, reason, reason_rank, occurred_at AS reason_at, event_id,
           campaign_id, delivery_id,
           min(occurred_at) OVER (PARTITION BY account_id, email) AS first_at
    FROM suppressing
    ORDER BY account_id, email, reason_rank DESC, occurred_at, event_id
)
INSERT INTO suppressions AS s (account_id, email, reason, reason_rank, reason_at, event_id,
                               campaign_id, delivery_id, first_at)
SELECT account_id, email, reason, reason_rank, reason_at, event_id, campaign_id, delivery_id,
       first_at
FROM per_address
ORDER BY account_id, email
ON CONFLICT (account_id, email) DO UPDATE SET
    -- the new event wins with a stronger reason, or the same reason earlier (then smaller id)
    reason = CASE WHEN (excluded.reason_rank, s.reason_at, s.event_id)
                     > (s.reason_rank, excluded.reason_at, excluded.event_id)
                  THEN excluded.reason ELSE s.reason END,
    reason_at = CASE WHEN (excluded.reason_rank, s.reason_at, s.event_id)
                        > (s.reason_rank, excluded.reason_at, excluded.event_id)
                     THEN excluded.reason_at ELSE s.reason_at END,
    event_id = CASE WHEN (excluded.reason_rank, s.reason_at, s.event_id)
                       > (s.reason_rank, excluded.reason_at, excluded.event_id)
                    THEN excluded.event_id ELSE s.event_id END,
    campaign_id = CASE WHEN (excluded.reason_rank, s.reason_at, s.event_id)
                          > (s.reason_rank, excluded.reason_at, excluded.event_id)
                       THEN excluded.campaign_id ELSE s.campaign_id END,
    delivery_id = CASE WHEN (excluded.reason_rank, s.reason_at, s.event_id)
                          > (s.reason_rank, excluded.reason_at, excluded.event_id)
                       THEN excluded.delivery_id ELSE s.delivery_id END,
    reason_rank = greatest(s.reason_rank, excluded.reason_rank),
    first_at = least(s.first_at, excluded.first_at),
    -- a change is news: it moves to the end of the feed
    feed_xact = pg_current_xact_id(),
    feed_seq = nextval('feed_seq'),
    updated_at = now()
WHERE (excluded.reason_rank, s.reason_at, s.event_id)
      > (s.reason_rank, excluded.reason_at, excluded.event_id)
   OR excluded.first_at < s.first_at;

-- name: find_recipient
-- One recipient of a delivery the account owns (the timeline's 404 check and its header).
SELECT recipient_key, email, contact_id, client_contact_id, first_name, surname, ab_version,
       mailfold_status(status_rank) AS status
FROM recipients
WHERE account_id = $1 AND delivery_id = $3 AND recipient_key = $4
  AND (campaign_id = $2 OR campaign_id IS NULL);

-- name: recipient_timeline
-- A page of one recipient's events in one delivery, in event-time order.
SELECT event_id, occurred_at, received_at, type, native_type, source, message_id, url, ip,
       user_agent, machine, machine_reason, agent_class, bounce_class, bounce_code,
       bounce_reason, ab_version, amount, currency, name, payload
FROM events
WHERE account_id = $1 AND delivery_id = $2 AND recipient_key = $3
ORDER BY occurred_at, event_id
LIMIT $4 OFFSET $5;

-- name: count_recipient_timeline
-- How many events one recipient has in one delivery (the timeline's totalCount).
SELECT count(*) FROM events WHERE account_id = $1 AND delivery_id = $2 AND recipient_key = $3;

-- name: recent_activities
-- The account's attributed events after a feed position, up to the oldest running transaction.
SELECT feed_xact, feed_seq, event_id, occurred_at, type, campaign_id, delivery_id,
       recipient_key, email, contact_id, client_contact_id, url, ip, user_agent, machine,
       bounce_class, bounce_code, bounce_reason, amount, currency, name
FROM events
WHERE account_id = $1 AND delivery_id IS NOT NULL
  AND (feed_xact, feed_seq) > ($2::xid8, $3::bigint)
  AND feed_xact < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY feed_xact, feed_seq
LIMIT $4;

-- name: suppressions_since
-- The account's suppressions changed after a feed position, up to the oldest running transaction.
SELECT feed_xact, feed_seq, email, reason, reason_at, first_at, campaign_id, delivery_id,
       updated_at
FROM suppressions
WHERE account_id = $1
  AND (feed_xact, feed_seq) > ($2::xid8, $3::bigint)
  AND feed_xact < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY feed_xact, feed_seq
LIMIT $4;

-- name: relay_suppressions
-- Every account's suppressions after the relay's position, for publication to Kafka.
SELECT feed_xact, feed_seq, account_id, email, reason, reason_at, first_at, campaign_id,
       delivery_id, updated_at
FROM suppressions
WHERE (feed_xact, feed_seq) > ($1::xid8, $2::bigint)
  AND feed_xact < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY feed_xact, feed_seq
LIMIT $3;

-- name: load_feed_position
-- Where a relay resumes.
SELECT feed_xact, feed_seq FROM feed_positions WHERE name = $1;

-- name: store_feed_position
-- Remember how far a relay has published; never moves back.
INSERT INTO feed_positions AS f (name, feed_xact, feed_seq) VALUES ($1, $2::xid8, $3)
ON CONFLICT (name) DO UPDATE SET feed_xact = excluded.feed_xact, feed_seq = excluded.feed_seq,
                                 updated_at = now()
WHERE (excluded.feed_xact, excluded.feed_seq) > (f.feed_xact, f.feed_seq);

-- name: summary_recipients
-- Per-recipient funnel figures of one delivery under one campaign (recipients under none count
-- with any), unique counts and per-recipient sums.
SELECT count(*) AS total,
       count(*) FILTER (WHERE dropped_at IS NULL) AS sent,
       count(*) FILTER (WHERE dropped_at IS NOT NULL) AS dropped,
       count(*) FILTER (WHERE dropped_at IS NULL AND hard_bounced_at IS NULL
                          AND coalesce(delivered_at, opened_at, clicked_at) IS NOT NULL)
           AS delivered,
       count(*) FILTER (WHERE dropped_at IS NULL AND (hard_bounced_at IS NOT NULL
                          OR (bounced_at IS NOT NULL
                              AND coalesce(delivered_at, opened_at, clicked_at) IS NULL)))
           AS failed,
       count(*) FILTER (WHERE dropped_at IS NULL AND bounced_at IS NOT NULL) AS bounces_unique,
       count(*) FILTER (WHERE dropped_at IS NULL AND hard_bounced_at IS NOT NULL)
           AS hard_bounces_unique,
       count(*) FILTER (WHERE dropped_at IS NULL AND bounced_at IS NOT NULL
                          AND hard_bounced_at IS NULL) AS soft_bounces_unique,
       coalesce(sum(open_count), 0) AS opens,
       coalesce(sum(open_human_count), 0) AS opens_human,
       coalesce(sum(open_machine_count), 0) AS opens_machine,
       count(*) FILTER (WHERE opened_at IS NOT NULL) AS opens_unique,
       count(*) FILTER (WHERE human_opened_at IS NOT NULL) AS opens_unique_human,
       count(*) FILTER (WHERE open_machine_count > 0) AS opens_unique_machine,
       coalesce(sum(click_count), 0) AS clicks,
       coalesce(sum(click_human_count), 0) AS clicks_human,
       coalesce(sum(click_machine_count), 0) AS clicks_machine,
       count(*) FILTER (WHERE clicked_at IS NOT NULL) AS clicks_unique,
       count(*) FILTER (WHERE human_clicked_at IS NOT NULL) AS clicks_unique_human,
       count(*) FILTER (WHERE click_machine_count > 0) AS clicks_unique_machine,
       count(*) FILTER (WHERE human_clicked_at IS NOT NULL AND human_opened_at IS NOT NULL)
           AS clicks_unique_human_opened,
       count(*) FILTER (WHERE clicked_at IS NOT NULL AND opened_at IS NOT NULL)
           AS clicks_unique_opened,
       count(*) FILTER (WHERE unsubscribed_at IS NOT NULL) AS unsubscribes_unique,
       count(*) FILTER (WHERE complained_at IS NOT NULL) AS spam_reports_unique,
       count(*) FILTER (WHERE dropped_at IS NULL AND (unsubscribed_at IS NOT NULL
                          OR complained_at IS NOT NULL OR hard_bounced_at IS NOT NULL
                          OR (bounced_at IS NOT NULL
                              AND coalesce(delivered_at, opened_at, clicked_at) IS NULL)))
           AS churn,
       count(*) FILTER (WHERE converted_at IS NOT NULL) AS conversions_unique,
       coalesce(sum(conversions_count), 0) AS conversions
FROM recipients
WHERE account_id = $1 AND delivery_id = $2 AND (campaign_id = $3 OR campaign_id IS NULL);

-- name: summary_events
-- Event totals of one delivery by type, from the hourly counters.
SELECT type, sum(event_count) AS events, sum(machine_count) AS machine, sum(hard_count) AS hard
FROM delivery_stats
WHERE account_id = $1 AND delivery_id = $2
GROUP BY type;

-- name: summary_revenue
-- Conversion revenue of one delivery under one campaign (or none) by currency.
SELECT conversions_currency AS currency, sum(conversions_amount) AS amount
FROM recipients
WHERE account_id = $1 AND delivery_id = $2 AND (campaign_id = $3 OR campaign_id IS NULL)
  AND converted_at IS NOT NULL
GROUP BY conversions_currency
ORDER BY conversions_currency NULLS LAST;

-- name: histogram_from_stats
-- Event counts per bucket of local time ($3: hour, day or month; $4: time zone) from the hourly
-- counters, and whether every hour starts a local hour (false in zones with :30 or :45 offsets).
SELECT date_trunc($3, hour, $4) AS bucket, type, sum(event_count) AS events,
       sum(machine_count) AS machine, sum(human_count) AS human, sum(hard_count) AS hard,
       sum(amount) AS amount,
       bool_and(date_trunc('hour', hour, $4) = hour) AS aligned
FROM delivery_stats
WHERE account_id = $1 AND delivery_id = $2
  AND hour >= coalesce($5::timestamptz, '-infinity')
  AND hour <= coalesce($6::timestamptz, 'infinity')
GROUP BY 1, 2
ORDER BY 1, 2;

-- name: histogram_from_events
-- The same counts from the ledger, for zones whose hours do not start on UTC hours.
SELECT date_trunc($3, occurred_at, $4) AS bucket, type, count(*) AS events,
       count(*) FILTER (WHERE machine) AS machine,
       count(*) FILTER (WHERE machine IS FALSE) AS human,
       count(*) FILTER (WHERE bounce_class = 'hard') AS hard,
       coalesce(sum(amount), 0) AS amount, true AS aligned
FROM events
WHERE account_id = $1 AND delivery_id = $2
  AND occurred_at >= coalesce($5::timestamptz, '-infinity')
  AND occurred_at <= coalesce($6::timestamptz, 'infinity')
GROUP BY 1, 2
ORDER BY 1, 2;

-- name: account_time_zone
-- The account's own time zone, the histograms' default.
SELECT time_zone FROM accounts WHERE account_id = $1;

-- name: count_links
-- How many distinct links of a delivery were clicked (when the page asked for is past the end).
SELECT count(DISTINCT url) FROM link_stats WHERE account_id = $1 AND delivery_id = $2;
