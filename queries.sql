-- Every statement Mailfold runs, by name. service/db.py loads them; Python refers to them by
-- name (db.QUERIES["fold_fresh"]). Values are always $n parameters.

-- name: create_fold_staging
-- Per-connection staging tables for one fold batch; emptied at every commit, never WAL-logged.
CREATE TEMP TABLE IF NOT EXISTS incoming (
    event_id uuid, occurred_at timestamptz, account_id text, source text, type text,
    native_type text, campaign_id text, delivery_id text, message_id text, recipient_key text,
    email text, contact_id text, client_contact_id text, first_name text, surname text,
    bounce_class text, bounce_code text, bounce_reason text, url text, ip text, user_agent text,
    machine boolean, machine_reason text, agent_class text, ab_version text,
    amount numeric(20, 4), currency text, name text, payload jsonb, provider_event_id text,
    received_at timestamptz, occurred_at_estimated boolean, client text, country text
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS fresh (LIKE incoming) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS marked (
    account_id text, delivery_id text, recipient_key text, type text, url text,
    occurred_at timestamptz, was_human boolean, campaign_id text, source text, ab_version text,
    client text, country text
) ON COMMIT DELETE ROWS;

-- name: insert_new_events
-- Record the batch's events not seen before in the ledger and stage those with a known delivery
-- in `fresh`. Events without delivery metadata are resolved through the message index, or
-- through a mapping carried by another event of the same batch.
WITH dedup AS (
    SELECT DISTINCT ON (event_id) * FROM incoming ORDER BY event_id
),
-- message_id -> delivery carried by this batch's own events
batch_map AS (
    SELECT DISTINCT ON (account_id, message_id, recipient_key)
           account_id, message_id, recipient_key, campaign_id, delivery_id
    FROM dedup
    WHERE message_id IS NOT NULL AND delivery_id IS NOT NULL
    ORDER BY account_id, message_id, recipient_key, delivery_id
),
-- New rows are plain inserts after a probe (OFFSET 0 keeps the probe per row): ON CONFLICT
-- would write a confirmation record per row. A fold committing the same rows meanwhile makes
-- this fail with a unique violation, and the fold tries the batch again.
remember AS (
    INSERT INTO messages (account_id, message_id, recipient_key, campaign_id, delivery_id)
    SELECT account_id, message_id, recipient_key, campaign_id, delivery_id FROM batch_map b
    WHERE NOT EXISTS (
        SELECT 1 FROM messages m
        WHERE m.account_id = b.account_id AND m.message_id = b.message_id
          AND m.recipient_key = b.recipient_key OFFSET 0)
    ORDER BY account_id, message_id, recipient_key
),
-- fill in the delivery of events that came without one
resolved AS (
    SELECT d.event_id, d.occurred_at, d.account_id, d.source, d.type, d.native_type,
           coalesce(d.campaign_id, m.campaign_id, b.campaign_id) AS campaign_id,
           coalesce(d.delivery_id, m.delivery_id, b.delivery_id) AS delivery_id,
           d.message_id, d.recipient_key, d.email, d.contact_id, d.client_contact_id,
           d.first_name, d.surname, d.bounce_class, d.bounce_code, d.bounce_reason, d.url, d.ip,
           d.user_agent, d.machine, d.machine_reason, d.agent_class, d.ab_version, d.amount,
           d.currency, d.name, d.payload, d.provider_event_id, d.received_at,
           d.occurred_at_estimated, d.client, d.country
    FROM dedup d
    -- looked up only for the events that lack a delivery (a primary-key probe each; a plain
    -- join would hash the whole table for every batch)
    LEFT JOIN LATERAL (
        SELECT m.campaign_id, m.delivery_id FROM messages m
        WHERE d.delivery_id IS NULL AND m.account_id = d.account_id
          AND m.message_id = d.message_id AND m.recipient_key = d.recipient_key
        LIMIT 1
    ) m ON true
    LEFT JOIN batch_map b
           ON d.delivery_id IS NULL AND b.account_id = d.account_id
          AND b.message_id = d.message_id AND b.recipient_key = d.recipient_key
),
-- the ledger decides what is new: a duplicate of anything already folded stops here
inserted AS (
    INSERT INTO events (event_id, occurred_at, account_id, source, type, native_type, campaign_id,
                        delivery_id, message_id, recipient_key, email, contact_id,
                        client_contact_id, first_name, surname, bounce_class, bounce_code,
                        bounce_reason, url, ip, user_agent, machine, machine_reason, agent_class,
                        ab_version, amount, currency, name, payload, provider_event_id,
                        received_at, occurred_at_estimated, client, country)
    SELECT * FROM resolved r
    WHERE NOT EXISTS (
        SELECT 1 FROM events e
        WHERE e.event_id = r.event_id AND e.occurred_at = r.occurred_at OFFSET 0)
    RETURNING event_id, occurred_at, account_id, source, type, native_type, campaign_id,
              delivery_id, message_id, recipient_key, email, contact_id, client_contact_id,
              first_name, surname, bounce_class, bounce_code, bounce_reason, url, ip, user_agent,
              machine, machine_reason, agent_class, ab_version, amount, currency, name, payload,
              provider_event_id, received_at, occurred_at_estimated, client, country
)
INSERT INTO fresh SELECT * FROM inserted WHERE delivery_id IS NOT NULL;

-- name: resolve_pending
-- Events that waited for their message's delivery and whose mapping is now known: attribute
-- them and stage them for folding. Runs in every batch and when idle, so a mapping committed by
-- another fold process is picked up too.
WITH attributed AS (
    UPDATE events e
       SET delivery_id = m.delivery_id, campaign_id = coalesce(e.campaign_id, m.campaign_id)
      FROM messages m
     WHERE e.delivery_id IS NULL AND e.message_id IS NOT NULL
       AND m.account_id = e.account_id AND m.message_id = e.message_id
       AND m.recipient_key = e.recipient_key
    RETURNING e.event_id, e.occurred_at, e.account_id, e.source, e.type, e.native_type,
              e.campaign_id, e.delivery_id, e.message_id, e.recipient_key, e.email, e.contact_id,
              e.client_contact_id, e.first_name, e.surname, e.bounce_class, e.bounce_code,
              e.bounce_reason, e.url, e.ip, e.user_agent, e.machine, e.machine_reason,
              e.agent_class, e.ab_version, e.amount, e.currency, e.name, e.payload,
              e.provider_event_id, e.received_at, e.occurred_at_estimated, e.client, e.country
)
INSERT INTO fresh SELECT * FROM attributed;

-- name: fold_fresh
-- Fold the staged events into recipient rows, delivery counters and link counts. Every merge is
-- commutative (sums, least, greatest, a max-picked bounce), so any order gives the same rows.
WITH ranked AS (
    SELECT f.*,
           CASE f.type
               WHEN 'sent' THEN 1 WHEN 'deferred' THEN 2 WHEN 'dropped' THEN 3
               WHEN 'bounced' THEN CASE WHEN f.bounce_class = 'hard' THEN 9 ELSE 4 END
               WHEN 'delivered' THEN 5 WHEN 'opened' THEN 6 WHEN 'clicked' THEN 7
               WHEN 'unsubscribed' THEN 8 WHEN 'complained' THEN 10 ELSE 0
           END AS status_rank,
           -- the bounce whose details a recipient shows: hard over soft, then the latest
           CASE WHEN f.type = 'bounced' THEN
               (CASE f.bounce_class WHEN 'hard' THEN '2' WHEN 'soft' THEN '1' ELSE '0' END)
               || to_char(f.occurred_at AT TIME ZONE 'UTC', 'YYYYMMDDHH24MISSUS')
               || f.event_id::text
           END AS bounce_pick,
           CASE WHEN f.type = 'dropped' THEN
               mailfold_drop_kind(f.native_type, f.bounce_code, f.bounce_reason)
           END AS drop_kind
    FROM fresh f
),
-- one row per recipient of this batch
per_recipient AS (
    SELECT account_id, delivery_id, recipient_key,
           max(campaign_id) AS campaign_id, max(email) AS email, max(contact_id) AS contact_id,
           max(client_contact_id) AS client_contact_id, max(first_name) AS first_name,
           max(surname) AS surname, max(ab_version) AS ab_version,
           min(occurred_at) FILTER (WHERE type = 'sent') AS sent_at,
           min(occurred_at) FILTER (WHERE type = 'delivered') AS delivered_at,
           min(occurred_at) FILTER (WHERE type = 'deferred') AS deferred_at,
           min(occurred_at) FILTER (WHERE type = 'dropped') AS dropped_at,
           min(occurred_at) FILTER (WHERE type = 'bounced') AS bounced_at,
           min(occurred_at) FILTER (WHERE type = 'bounced' AND bounce_class = 'hard')
               AS hard_bounced_at,
           max(bounce_pick) AS bounce_pick,
           (array_agg(bounce_class ORDER BY bounce_pick DESC) FILTER (WHERE type = 'bounced'))[1]
               AS bounce_class,
           (array_agg(bounce_code ORDER BY bounce_pick DESC) FILTER (WHERE type = 'bounced'))[1]
               AS bounce_code,
           (array_agg(bounce_reason ORDER BY bounce_pick DESC) FILTER (WHERE type = 'bounced'))[1]
               AS bounce_reason,
           min(occurred_at) FILTER (WHERE type = 'opened') AS opened_at,
           max(occurred_at) FILTER (WHERE type = 'opened') AS last_opened_at,
           min(occurred_at) FILTER (WHERE type = 'opened' AND machine IS FALSE) AS human_opened_at,
           count(*) FILTER (WHERE type = 'opened') AS open_count,
           count(*) FILTER (WHERE type = 'opened' AND machine IS FALSE) AS open_human_count,
           count(*) FILTER (WHERE type = 'opened' AND machine) AS open_machine_count,
           min(occurred_at) FILTER (WHERE type = 'clicked') AS clicked_at,
           max(occurred_at) FILTER (WHERE type = 'clicked') AS last_clicked_at,
           min(occurred_at) FILTER (WHERE type = 'clicked' AND machine IS FALSE)
               AS human_clicked_at,
           count(*) FILTER (WHERE type = 'clicked') AS click_count,
           count(*) FILTER (WHERE type = 'clicked' AND machine IS FALSE) AS click_human_count,
           count(*) FILTER (WHERE type = 'clicked' AND machine) AS click_machine_count,
           min(occurred_at) FILTER (WHERE type = 'unsubscribed') AS unsubscribed_at,
           min(occurred_at) FILTER (WHERE type = 'complained') AS complained_at,
           min(occurred_at) FILTER (WHERE type = 'converted') AS converted_at,
           count(*) FILTER (WHERE type = 'converted') AS conversions_count,
           sum(amount) FILTER (WHERE type = 'converted') AS conversions_amount,
           max(currency) FILTER (WHERE type = 'converted') AS conversions_currency,
           max(status_rank) AS status_rank,
           min(occurred_at) AS first_event_at, max(occurred_at) AS last_event_at,
           count(*) AS event_count,
           max(source) AS source, max(drop_kind) AS drop_kind
    FROM ranked
    GROUP BY account_id, delivery_id, recipient_key
),
upsert_recipients AS (
    INSERT INTO recipients AS r (
        account_id, delivery_id, recipient_key, campaign_id, email, contact_id, client_contact_id,
        first_name, surname, ab_version, sent_at, delivered_at, deferred_at, dropped_at,
        bounced_at, hard_bounced_at, bounce_pick, bounce_class, bounce_code, bounce_reason,
        opened_at, last_opened_at, human_opened_at, open_count, open_human_count,
        open_machine_count, clicked_at, last_clicked_at, human_clicked_at, click_count,
        click_human_count, click_machine_count, unsubscribed_at, complained_at, converted_at,
        conversions_count, conversions_amount, conversions_currency, status_rank,
        first_event_at, last_event_at, event_count, source, drop_kind)
    SELECT * FROM per_recipient
    ORDER BY account_id, delivery_id, recipient_key
    ON CONFLICT (account_id, delivery_id, recipient_key) DO UPDATE SET
        campaign_id = greatest(r.campaign_id, excluded.campaign_id),
        email = greatest(r.email, excluded.email),
        contact_id = greatest(r.contact_id, excluded.contact_id),
        client_contact_id = greatest(r.client_contact_id, excluded.client_contact_id),
        first_name = greatest(r.first_name, excluded.first_name),
        surname = greatest(r.surname, excluded.surname),
        ab_version = greatest(r.ab_version, excluded.ab_version),
        sent_at = least(r.sent_at, excluded.sent_at),
        delivered_at = least(r.delivered_at, excluded.delivered_at),
        deferred_at = least(r.deferred_at, excluded.deferred_at),
        dropped_at = least(r.dropped_at, excluded.dropped_at),
        bounced_at = least(r.bounced_at, excluded.bounced_at),
        hard_bounced_at = least(r.hard_bounced_at, excluded.hard_bounced_at),
        bounce_pick = greatest(r.bounce_pick, excluded.bounce_pick),
        bounce_class = CASE WHEN excluded.bounce_pick > coalesce(r.bounce_pick, '')
                            THEN excluded.bounce_class ELSE r.bounce_class END,
        bounce_code = CASE WHEN excluded.bounce_pick > coalesce(r.bounce_pick, '')
                           THEN excluded.bounce_code ELSE r.bounce_code END,
        bounce_reason = CASE WHEN excluded.bounce_pick > coalesce(r.bounce_pick, '')
                             THEN excluded.bounce_reason ELSE r.bounce_reason END,
        opened_at = least(r.opened_at, excluded.opened_at),
        last_opened_at = greatest(r.last_opened_at, excluded.last_opened_at),
        human_opened_at = least(r.human_opened_at, excluded.human_opened_at),
        open_count = r.open_count + excluded.open_count,
        open_human_count = r.open_human_count + excluded.open_human_count,
        open_machine_count = r.open_machine_count + excluded.open_machine_count,
        clicked_at = least(r.clicked_at, excluded.clicked_at),
        last_clicked_at = greatest(r.last_clicked_at, excluded.last_clicked_at),
        human_clicked_at = least(r.human_clicked_at, excluded.human_clicked_at),
        click_count = r.click_count + excluded.click_count,
        click_human_count = r.click_human_count + excluded.click_human_count,
        click_machine_count = r.click_machine_count + excluded.click_machine_count,
        unsubscribed_at = least(r.unsubscribed_at, excluded.unsubscribed_at),
        complained_at = least(r.complained_at, excluded.complained_at),
        converted_at = least(r.converted_at, excluded.converted_at),
        conversions_count = r.conversions_count + excluded.conversions_count,
        conversions_amount = CASE
            WHEN r.conversions_amount IS NULL THEN excluded.conversions_amount
            WHEN excluded.conversions_amount IS NULL THEN r.conversions_amount
            ELSE r.conversions_amount + excluded.conversions_amount END,
        conversions_currency = greatest(r.conversions_currency, excluded.conversions_currency),
        status_rank = greatest(r.status_rank, excluded.status_rank),
        first_event_at = least(r.first_event_at, excluded.first_event_at),
        last_event_at = greatest(r.last_event_at, excluded.last_event_at),
        event_count = r.event_count + excluded.event_count,
        source = greatest(r.source, excluded.source),
        drop_kind = greatest(r.drop_kind, excluded.drop_kind)
),
-- the report builder's per-event counters: opens and clicks per hour under each event's own
-- campaign, source, version, and client and country (the per-recipient ones move with the rows)
report_events AS MATERIALIZED (
    SELECT account_id, date_trunc('hour', occurred_at, 'UTC') AS hour,
           coalesce(campaign_id, '') AS campaign_id, delivery_id, source,
           coalesce(ab_version, '') AS ab_version, coalesce(client, '') AS client,
           coalesce(country, '') AS country,
           count(*) FILTER (WHERE type = 'opened') AS opened,
           count(*) FILTER (WHERE type = 'opened' AND machine IS FALSE) AS opened_human,
           count(*) FILTER (WHERE type = 'clicked') AS clicked,
           count(*) FILTER (WHERE type = 'clicked' AND machine IS FALSE) AS clicked_human
    FROM fresh
    WHERE type IN ('opened', 'clicked')
      AND current_setting('mailfold.reports', true) IS DISTINCT FROM 'off'
    GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
),
upsert_report_hours AS (
    INSERT INTO report_hours AS t (account_id, hour, campaign_id, delivery_id, source, ab_version,
                                   opened, opened_human, clicked, clicked_human)
    SELECT account_id, hour, campaign_id, delivery_id, source, ab_version, sum(opened),
           sum(opened_human), sum(clicked), sum(clicked_human)
    FROM report_events
    GROUP BY 1, 2, 3, 4, 5, 6
    ORDER BY 1, 2, 3, 4, 5, 6
    ON CONFLICT (account_id, hour, campaign_id, delivery_id, source, ab_version) DO UPDATE SET
        opened = t.opened + excluded.opened, opened_human = t.opened_human + excluded.opened_human,
        clicked = t.clicked + excluded.clicked,
        clicked_human = t.clicked_human + excluded.clicked_human
),
upsert_report_days AS (
    INSERT INTO report_days AS t (account_id, hour, campaign_id, delivery_id, source, ab_version,
                                  opened, opened_human, clicked, clicked_human)
    SELECT account_id, date_trunc('day', hour, 'UTC'), campaign_id, delivery_id, source,
           ab_version, sum(opened), sum(opened_human), sum(clicked), sum(clicked_human)
    FROM report_events
    GROUP BY 1, 2, 3, 4, 5, 6
    ORDER BY 1, 2, 3, 4, 5, 6
    ON CONFLICT (account_id, hour, campaign_id, delivery_id, source, ab_version) DO UPDATE SET
        opened = t.opened + excluded.opened, opened_human = t.opened_human + excluded.opened_human,
        clicked = t.clicked + excluded.clicked,
        clicked_human = t.clicked_human + excluded.clicked_human
),
upsert_report_audience AS (
    INSERT INTO report_audience AS t (account_id, hour, campaign_id, delivery_id, source,
                                      ab_version, client, country, opened, opened_human, clicked,
                                      clicked_human)
    SELECT * FROM report_events
    ORDER BY 1, 2, 3, 4, 5, 6, 7, 8
    ON CONFLICT (account_id, hour, campaign_id, delivery_id, source, ab_version, client, country)
    DO UPDATE SET
        opened = t.opened + excluded.opened, opened_human = t.opened_human + excluded.opened_human,
        clicked = t.clicked + excluded.clicked,
        clicked_human = t.clicked_human + excluded.clicked_human
),
-- funnel counters per hour of event time
upsert_stats AS (
    INSERT INTO delivery_stats AS s (account_id, delivery_id, hour, type, event_count,
                                     machine_count, human_count, hard_count, amount)
    SELECT account_id, delivery_id, date_trunc('hour', occurred_at, 'UTC'), type, count(*),
           count(*) FILTER (WHERE machine), count(*) FILTER (WHERE machine IS FALSE),
           count(*) FILTER (WHERE bounce_class = 'hard'), coalesce(sum(amount), 0)
    FROM fresh
    GROUP BY 1, 2, 3, 4
    ORDER BY 1, 2, 3, 4
    ON CONFLICT (account_id, delivery_id, hour, type) DO UPDATE SET
        event_count = s.event_count + excluded.event_count,
        machine_count = s.machine_count + excluded.machine_count,
        human_count = s.human_count + excluded.human_count,
        hard_count = s.hard_count + excluded.hard_count,
        amount = s.amount + excluded.amount
),
-- clicks per link and recipient
upsert_links AS (
    INSERT INTO link_stats AS l (account_id, delivery_id, url, recipient_key, first_at,
                                 click_count, machine_count)
    SELECT account_id, delivery_id, url, recipient_key, min(occurred_at), count(*),
           count(*) FILTER (WHERE machine)
    FROM fresh
    WHERE type = 'clicked' AND url IS NOT NULL
    GROUP BY 1, 2, 3, 4
    ORDER BY 1, 2, 3, 4
    ON CONFLICT (account_id, delivery_id, url, recipient_key) DO UPDATE SET
        first_at = least(l.first_at, excluded.first_at),
        click_count = l.click_count + excluded.click_count,
        machine_count = l.machine_count + excluded.machine_count
)
SELECT count(*) FROM fresh;

-- name: store_offsets
-- The next offset to read per partition, in the fold's own transaction; never moves back.
INSERT INTO consumer_offsets AS c (group_id, topic, partition, next_offset)
SELECT $1, $2, p, o FROM unnest($3::int[], $4::bigint[]) AS t(p, o)
ON CONFLICT (group_id, topic, partition) DO UPDATE
    SET next_offset = greatest(c.next_offset, excluded.next_offset), updated_at = now();

-- name: load_offsets
-- Where the fold resumes on start and after every rebalance.
SELECT partition, next_offset FROM consumer_offsets
WHERE group_id = $1 AND topic = $2 AND partition = ANY($3::int[]);

-- name: create_account
-- A new tenant with its keyed secret hash.
INSERT INTO accounts (account_id, name, login, secret_hash, allowed_ips)
VALUES ($1, $2, $3, $4, $5::cidr[]);

-- name: find_account_by_login
-- Basic-auth lookup.
SELECT account_id, secret_hash, allowed_ips::text[] AS allowed_ips FROM accounts WHERE login = $1;

-- name: find_account
-- An account by id (webhook URLs name it).
SELECT account_id, name, login, allowed_ips::text[] AS allowed_ips, time_zone
FROM accounts WHERE account_id = $1;

-- name: set_allowed_ips
-- Replace an account's IP allow list (NULL: any address).
UPDATE accounts SET allowed_ips = $2::cidr[] WHERE account_id = $1;

-- name: delivery_scope
-- Whether the account has the delivery under that campaign (404 otherwise; recipients not yet
-- attributed to a campaign belong to whichever campaign the caller names), and whether every
-- recipient of the delivery is under that campaign or none (the campaign condition then holds
-- for all and can be left out).
SELECT coalesce(sum(recipient_count) FILTER (WHERE campaign_id = $2 OR campaign_id IS NULL), 0)
           > 0 AS found,
       coalesce(bool_and(campaign_id = $2 OR campaign_id IS NULL), true) AS only
FROM delivery_counts
WHERE account_id = $1 AND delivery_id = $3;

-- name: get_provider_credentials
-- One account's options and active secrets for one provider.
SELECT s.options, coalesce(array_agg(k.secret_enc ORDER BY k.slot) FILTER (WHERE k.slot IS NOT NULL),
                           '{}') AS secrets
FROM provider_settings s
LEFT JOIN provider_secrets k ON k.account_id = s.account_id AND k.provider = s.provider
WHERE s.account_id = $1 AND s.provider = $2
GROUP BY s.options;

-- name: upsert_provider_settings
-- Set a provider's non-secret options for an account.
INSERT INTO provider_settings (account_id, provider, options) VALUES ($1, $2, $3::jsonb)
ON CONFLICT (account_id, provider) DO UPDATE SET options = excluded.options, updated_at = now();

-- name: upsert_provider_secret
-- Store one encrypted secret in slot 1 or 2.
INSERT INTO provider_secrets (account_id, provider, slot, secret_enc) VALUES ($1, $2, $3, $4)
ON CONFLICT (account_id, provider, slot) DO UPDATE
    SET secret_enc = excluded.secret_enc, created_at = now();

-- name: delete_provider_secret
-- Retire the secret in one slot.
DELETE FROM provider_secrets WHERE account_id = $1 AND provider = $2 AND slot = $3;

-- name: record_sns_subscription
-- Remember an SNS subscription confirmation or unsubscribe notice.
INSERT INTO sns_subscriptions (account_id, topic_arn, status, message_id) VALUES ($1, $2, $3, $4)
ON CONFLICT (account_id, topic_arn) DO UPDATE
    SET status = excluded.status, message_id = excluded.message_id, updated_at = now();

-- name: record_dlq_retries
-- Remember that these dead letters ($2 partitions, $3 offsets on topic $1) were produced again.
INSERT INTO dead_letter_retries AS r (topic, partition, "offset")
SELECT $1, p, o FROM unnest($2::int[], $3::bigint[]) AS t(p, o)
ON CONFLICT (topic, partition, "offset") DO UPDATE
    SET retries = r.retries + 1, retried_at = now();

-- name: dlq_retries
-- When and how often each retried dead letter of topic $1 was produced again.
SELECT partition, "offset", retries, retried_at FROM dead_letter_retries WHERE topic = $1;
