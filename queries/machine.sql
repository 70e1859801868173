-- The fold's whole-set machine rules (MACHINE.md e3), run after fold_fresh in the same
-- transaction. service/db.py loads this file with queries.sql.
--
-- Both rules only ever add marks as events arrive, and a burst outranks the timing rule, so the
-- verdict on every open and click is a function of the recipient's set of events, whatever the
-- order, batching or duplicates: click_burst if the click is in a burst, else too_fast if it is in
-- a window, else the per-event verdict of normalize. Newly marked events are staged in `marked`,
-- and count_marked moves them to the machine counts.

-- name: mark_click_bursts
-- Clicks on 3 or more distinct links within 2 seconds from one address are a scanner's, the whole
-- burst. Re-evaluated over the ledger for every recipient this batch clicked for. A click the
-- timing rule marked is relabelled (it is already counted as a machine's).
WITH touched AS (
    SELECT DISTINCT account_id, delivery_id, recipient_key FROM fresh WHERE type = 'clicked'
),
clicks AS MATERIALIZED (
    SELECT e.event_id, e.occurred_at, e.account_id, e.delivery_id, e.recipient_key, e.url,
           coalesce(e.ip, '') AS ip, e.machine, e.machine_reason
    FROM events e JOIN touched t USING (account_id, delivery_id, recipient_key)
    WHERE e.type = 'clicked' AND e.url IS NOT NULL
),
-- a click that opens a 2-second window holding 3 or more distinct links from its address
anchors AS MATERIALIZED (
    SELECT a.account_id, a.delivery_id, a.recipient_key, a.ip, a.occurred_at AS start
    FROM clicks a
    JOIN clicks o
      ON o.account_id = a.account_id AND o.delivery_id = a.delivery_id
     AND o.recipient_key = a.recipient_key AND o.ip = a.ip
     AND o.occurred_at BETWEEN a.occurred_at AND a.occurred_at + interval '2 seconds'
    GROUP BY a.account_id, a.delivery_id, a.recipient_key, a.ip, a.occurred_at
    HAVING count(DISTINCT o.url) >= 3
),
burst AS (
    SELECT DISTINCT c.event_id, c.occurred_at, c.machine IS FALSE AS was_human,
           c.machine IS TRUE AS was_machine
    FROM clicks c
    JOIN anchors a
      ON c.account_id = a.account_id AND c.delivery_id = a.delivery_id
     AND c.recipient_key = a.recipient_key AND c.ip = a.ip
     AND c.occurred_at BETWEEN a.start AND a.start + interval '2 seconds'
    WHERE c.machine IS NOT TRUE OR c.machine_reason = 'too_fast'
),
updated AS (
    UPDATE events e
       SET machine = true, machine_reason = 'click_burst', agent_class = 'scanner',
           overridden = coalesce(e.overridden, jsonb_build_object(
               'machine', e.machine, 'reason', e.machine_reason, 'agent_class', e.agent_class))
      FROM burst b
     WHERE e.event_id = b.event_id AND e.occurred_at = b.occurred_at
    RETURNING e.account_id, e.delivery_id, e.recipient_key, e.type, e.url, e.occurred_at,
              b.was_human, b.was_machine, e.campaign_id, e.source, e.ab_version, e.client,
              e.country
)
INSERT INTO marked
SELECT account_id, delivery_id, recipient_key, type, url, occurred_at, was_human, campaign_id,
       source, ab_version, client, country
FROM updated WHERE NOT was_machine;

-- name: mark_too_fast
-- The timing rule, as supporting evidence only: an open or click less than 2 seconds after its
-- recipient's `sent` or `delivered` event is a machine's, and less than 60 seconds after when it
-- also carries no user agent (the second signal). Anchored on every send and delivery of the
-- recipient, so a late `delivered` only ever adds windows. Looks at the batch's opens and clicks
-- against the ledger's anchors, and the batch's anchors against the ledger's opens and clicks.
-- A staged event's verdict is its ledger row's unless this batch's burst rule just marked it.
WITH fast AS (
    SELECT f.event_id, f.occurred_at, f.machine IS FALSE AS was_human
    FROM fresh f
    WHERE f.type IN ('opened', 'clicked') AND f.machine IS NOT TRUE
      AND EXISTS (
          SELECT 1 FROM events a
          WHERE a.account_id = f.account_id AND a.delivery_id = f.delivery_id
            AND a.recipient_key = f.recipient_key AND a.type IN ('sent', 'delivered')
            AND a.occurred_at <= f.occurred_at
            AND a.occurred_at > f.occurred_at - CASE WHEN nullif(f.user_agent, '') IS NULL
                                                     THEN interval '60 seconds'
                                                     ELSE interval '2 seconds' END)
    UNION
    SELECT e.event_id, e.occurred_at, e.machine IS FALSE
    FROM fresh a
    JOIN events e
      ON e.account_id = a.account_id AND e.delivery_id = a.delivery_id
     AND e.recipient_key = a.recipient_key
     AND e.occurred_at >= a.occurred_at AND e.occurred_at < a.occurred_at + interval '60 seconds'
    WHERE a.type IN ('sent', 'delivered') AND e.type IN ('opened', 'clicked')
      AND e.machine IS NOT TRUE
      AND (nullif(e.user_agent, '') IS NULL OR e.occurred_at < a.occurred_at + interval '2 seconds')
),
updated AS (
    UPDATE events e
       SET machine = true, machine_reason = 'too_fast',
           overridden = jsonb_build_object(
               'machine', e.machine, 'reason', e.machine_reason, 'agent_class', e.agent_class)
      FROM fast f
     WHERE e.event_id = f.event_id AND e.occurred_at = f.occurred_at
       AND e.machine IS NOT TRUE  -- a burst this batch found wins
    RETURNING e.account_id, e.delivery_id, e.recipient_key, e.type, e.url, e.occurred_at,
              f.was_human, e.campaign_id, e.source, e.ab_version, e.client, e.country
)
INSERT INTO marked SELECT * FROM updated;

-- name: count_marked
-- Move the opens and clicks the whole-set rules marked from the human or undecided counts to the
-- machine counts, per recipient, per delivery and hour, per link, and in the report rollups.
WITH report_marked AS MATERIALIZED (
    SELECT account_id, date_trunc('hour', occurred_at, 'UTC') AS hour,
           coalesce(campaign_id, '') AS campaign_id, delivery_id, source,
           coalesce(ab_version, '') AS ab_version, coalesce(client, '') AS client,
           coalesce(country, '') AS country,
           count(*) FILTER (WHERE type = 'opened' AND was_human) AS opened_human,
           count(*) FILTER (WHERE type = 'clicked' AND was_human) AS clicked_human
    FROM marked
    WHERE was_human AND current_setting('mailfold.reports', true) IS DISTINCT FROM 'off'
    GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
),
report_hours_marked AS (
    UPDATE report_hours t
       SET opened_human = t.opened_human - m.opened_human,
           clicked_human = t.clicked_human - m.clicked_human
      FROM (SELECT account_id, hour, campaign_id, delivery_id, source, ab_version,
                   sum(opened_human) AS opened_human, sum(clicked_human) AS clicked_human
            FROM report_marked GROUP BY 1, 2, 3, 4, 5, 6) m
     WHERE t.account_id = m.account_id AND t.hour = m.hour AND t.campaign_id = m.campaign_id
       AND t.delivery_id = m.delivery_id AND t.source = m.source AND t.ab_version = m.ab_version
),
report_days_marked AS (
    UPDATE report_days t
       SET opened_human = t.opened_human - m.opened_human,
           clicked_human = t.clicked_human - m.clicked_human
      FROM (SELECT account_id, date_trunc('day', hour, 'UTC') AS hour, campaign_id, delivery_id,
                   source, ab_version, sum(opened_human) AS opened_human,
                   sum(clicked_human) AS clicked_human
            FROM report_marked GROUP BY 1, 2, 3, 4, 5, 6) m
     WHERE t.account_id = m.account_id AND t.hour = m.hour AND t.campaign_id = m.campaign_id
       AND t.delivery_id = m.delivery_id AND t.source = m.source AND t.ab_version = m.ab_version
),
report_audience_marked AS (
    UPDATE report_audience t
       SET opened_human = t.opened_human - m.opened_human,
           clicked_human = t.clicked_human - m.clicked_human
      FROM report_marked m
     WHERE t.account_id = m.account_id AND t.hour = m.hour AND t.campaign_id = m.campaign_id
       AND t.delivery_id = m.delivery_id AND t.source = m.source AND t.ab_version = m.ab_version
       AND t.client = m.client AND t.country = m.country
),
per_recipient AS (
    SELECT account_id, delivery_id, recipient_key,
           count(*) FILTER (WHERE type = 'opened') AS opens,
           count(*) FILTER (WHERE type = 'opened' AND was_human) AS human_opens,
           count(*) FILTER (WHERE type = 'clicked') AS clicks,
           count(*) FILTER (WHERE type = 'clicked' AND was_human) AS human_clicks
    FROM marked GROUP BY 1, 2, 3
),
recipient_rows AS (
    UPDATE recipients r
       SET open_machine_count = r.open_machine_count + p.opens,
           open_human_count = r.open_human_count - p.human_opens,
           human_opened_at = CASE WHEN p.human_opens = 0 THEN r.human_opened_at ELSE (
               SELECT min(e.occurred_at) FROM events e
               WHERE e.account_id = r.account_id AND e.delivery_id = r.delivery_id
                 AND e.recipient_key = r.recipient_key AND e.type = 'opened'
                 AND e.machine IS FALSE) END,
           click_machine_count = r.click_machine_count + p.clicks,
           click_human_count = r.click_human_count - p.human_clicks,
           human_clicked_at = CASE WHEN p.human_clicks = 0 THEN r.human_clicked_at ELSE (
               SELECT min(e.occurred_at) FROM events e
               WHERE e.account_id = r.account_id AND e.delivery_id = r.delivery_id
                 AND e.recipient_key = r.recipient_key AND e.type = 'clicked'
                 AND e.machine IS FALSE) END
      FROM per_recipient p
     WHERE r.account_id = p.account_id AND r.delivery_id = p.delivery_id
       AND r.recipient_key = p.recipient_key
),
stats AS (
    UPDATE delivery_stats s
       SET machine_count = s.machine_count + m.n, human_count = s.human_count - m.human
      FROM (SELECT account_id, delivery_id, date_trunc('hour', occurred_at, 'UTC') AS hour, type,
                   count(*) AS n, count(*) FILTER (WHERE was_human) AS human
            FROM marked GROUP BY 1, 2, 3, 4) m
     WHERE s.account_id = m.account_id AND s.delivery_id = m.delivery_id AND s.hour = m.hour
       AND s.type = m.type
)
UPDATE link_stats l
   SET machine_count = l.machine_count + m.n
  FROM (SELECT account_id, delivery_id, url, recipient_key, count(*) AS n
        FROM marked WHERE type = 'clicked' AND url IS NOT NULL GROUP BY 1, 2, 3, 4) m
 WHERE l.account_id = m.account_id AND l.delivery_id = m.delivery_id AND l.url = m.url
   AND l.recipient_key = m.recipient_key;
