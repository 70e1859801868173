-- Corrections from `mailfold replay`: events re-derived from mailfold.raw whose ledger row an
-- adapter fix changes (same event_id, different fields). Run at the start of a fold batch, before
-- insert_new_events; the recipients they touch are taken out of every counter and folded again
-- from the corrected ledger by the batch's usual statements, whole-set rules included.

-- name: create_replay_staging
-- Per-connection staging for corrections; emptied at every commit, never WAL-logged.
CREATE TEMP TABLE IF NOT EXISTS corrections (LIKE incoming) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS corrected (LIKE incoming) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS affected (
    account_id text, delivery_id text, recipient_key text
) ON COMMIT DELETE ROWS;

-- name: find_corrections
-- The replayed events that differ from their ledger row (the verdict compared with the ledger's
-- own per-event verdict, before any whole-set rule), and every recipient they touch, under the
-- delivery they had and the one they now have.
WITH replayed AS (
    SELECT DISTINCT ON (event_id, occurred_at) * FROM corrections ORDER BY event_id, occurred_at
),
changed AS (
    SELECT c.event_id, c.occurred_at, c.account_id, c.source, c.type, c.native_type,
           coalesce(c.campaign_id, e.campaign_id) AS campaign_id,
           coalesce(c.delivery_id, e.delivery_id) AS delivery_id, c.message_id, c.recipient_key,
           c.email, c.contact_id, c.client_contact_id, c.first_name, c.surname, c.bounce_class,
           c.bounce_code, c.bounce_reason, c.url, c.ip, c.user_agent, c.machine,
           c.machine_reason, c.agent_class, c.ab_version, c.amount, c.currency, c.name,
           c.payload, c.provider_event_id, e.received_at, e.occurred_at_estimated, c.client,
           c.country, e.delivery_id AS old_delivery_id
    FROM replayed c
    JOIN events e ON e.event_id = c.event_id AND e.occurred_at = c.occurred_at
    WHERE (c.type, c.native_type, coalesce(c.campaign_id, e.campaign_id),
           coalesce(c.delivery_id, e.delivery_id), c.message_id, c.email, c.contact_id,
           c.client_contact_id, c.first_name, c.surname, c.bounce_class, c.bounce_code,
           c.bounce_reason, c.ip, c.user_agent, c.ab_version, c.amount, c.currency, c.name,
           c.payload, c.provider_event_id, c.machine, c.machine_reason, c.agent_class)
          IS DISTINCT FROM
          (e.type, e.native_type, e.campaign_id, e.delivery_id, e.message_id, e.email,
           e.contact_id, e.client_contact_id, e.first_name, e.surname, e.bounce_class,
           e.bounce_code, e.bounce_reason, e.ip, e.user_agent, e.ab_version, e.amount,
           e.currency, e.name, e.payload, e.provider_event_id,
           CASE WHEN e.overridden IS NULL THEN e.machine
                ELSE (e.overridden ->> 'machine')::boolean END,
           CASE WHEN e.overridden IS NULL THEN e.machine_reason
                ELSE e.overridden ->> 'reason' END,
           CASE WHEN e.overridden IS NULL THEN e.agent_class
                ELSE e.overridden ->> 'agent_class' END)
),
staged AS (
    INSERT INTO corrected
    SELECT event_id, occurred_at, account_id, source, type, native_type, campaign_id,
           delivery_id, message_id, recipient_key, email, contact_id, client_contact_id,
           first_name, surname, bounce_class, bounce_code, bounce_reason, url, ip, user_agent,
           machine, machine_reason, agent_class, ab_version, amount, currency, name, payload,
           provider_event_id, received_at, occurred_at_estimated, client, country
    FROM changed
)
INSERT INTO affected
SELECT account_id, old_delivery_id, recipient_key FROM changed WHERE old_delivery_id IS NOT NULL
UNION
SELECT account_id, delivery_id, recipient_key FROM changed WHERE delivery_id IS NOT NULL;

-- name: unfold_affected
-- Take the affected recipients out of the counters: their events' share of the hourly delivery
-- counters and of the report rollups' opens and clicks, their link counts and their rows (folded
-- again below from the corrected ledger; the rows' own report counters leave with them).
WITH report_folded AS MATERIALIZED (
    SELECT e.account_id, date_trunc('hour', e.occurred_at, 'UTC') AS hour,
           coalesce(e.campaign_id, '') AS campaign_id, e.delivery_id, e.source,
           coalesce(e.ab_version, '') AS ab_version, coalesce(e.client, '') AS client,
           coalesce(e.country, '') AS country,
           count(*) FILTER (WHERE e.type = 'opened') AS opened,
           count(*) FILTER (WHERE e.type = 'opened' AND e.machine IS FALSE) AS opened_human,
           count(*) FILTER (WHERE e.type = 'clicked') AS clicked,
           count(*) FILTER (WHERE e.type = 'clicked' AND e.machine IS FALSE) AS clicked_human
    FROM events e JOIN affected a USING (account_id, delivery_id, recipient_key)
    WHERE e.type IN ('opened', 'clicked')
      AND current_setting('mailfold.reports', true) IS DISTINCT FROM 'off'
    GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
),
report_hours_folded AS (
    UPDATE report_hours t
       SET opened = t.opened - f.opened, opened_human = t.opened_human - f.opened_human,
           clicked = t.clicked - f.clicked, clicked_human = t.clicked_human - f.clicked_human
      FROM (SELECT account_id, hour, campaign_id, delivery_id, source, ab_version,
                   sum(opened) AS opened, sum(opened_human) AS opened_human,
                   sum(clicked) AS clicked, sum(clicked_human) AS clicked_human
            FROM report_folded GROUP BY 1, 2, 3, 4, 5, 6) f
     WHERE t.account_id = f.account_id AND t.hour = f.hour AND t.campaign_id = f.campaign_id
       AND t.delivery_id = f.delivery_id AND t.source = f.source AND t.ab_version = f.ab_version
),
report_days_folded AS (
    UPDATE report_days t
       SET opened = t.opened - f.opened, opened_human = t.opened_human - f.opened_human,
           clicked = t.clicked - f.clicked, clicked_human = t.clicked_human - f.clicked_human
      FROM (SELECT account_id, date_trunc('day', hour, 'UTC') AS hour, campaign_id, delivery_id,
                   source, ab_version, sum(opened) AS opened, sum(opened_human) AS opened_human,
                   sum(clicked) AS clicked, sum(clicked_human) AS clicked_human
            FROM report_folded GROUP BY 1, 2, 3, 4, 5, 6) f
     WHERE t.account_id = f.account_id AND t.hour = f.hour AND t.campaign_id = f.campaign_id
       AND t.delivery_id = f.delivery_id AND t.source = f.source AND t.ab_version = f.ab_version
),
report_audience_folded AS (
    UPDATE report_audience t
       SET opened = t.opened - f.opened, opened_human = t.opened_human - f.opened_human,
           clicked = t.clicked - f.clicked, clicked_human = t.clicked_human - f.clicked_human
      FROM report_folded f
     WHERE t.account_id = f.account_id AND t.hour = f.hour AND t.campaign_id = f.campaign_id
       AND t.delivery_id = f.delivery_id AND t.source = f.source AND t.ab_version = f.ab_version
       AND t.client = f.client AND t.country = f.country
),
folded AS (
    SELECT e.account_id, e.delivery_id, date_trunc('hour', e.occurred_at, 'UTC') AS hour, e.type,
           count(*) AS n, count(*) FILTER (WHERE e.machine) AS machine,
           count(*) FILTER (WHERE e.machine IS FALSE) AS human,
           count(*) FILTER (WHERE e.bounce_class = 'hard') AS hard,
           coalesce(sum(e.amount), 0) AS amount
    FROM events e JOIN affected a USING (account_id, delivery_id, recipient_key)
    GROUP BY 1, 2, 3, 4
),
stats AS (
    UPDATE delivery_stats s
       SET event_count = s.event_count - f.n, machine_count = s.machine_count - f.machine,
           human_count = s.human_count - f.human, hard_count = s.hard_count - f.hard,
           amount = s.amount - f.amount
      FROM folded f
     WHERE s.account_id = f.account_id AND s.delivery_id = f.delivery_id AND s.hour = f.hour
       AND s.type = f.type
),
links AS (
    DELETE FROM link_stats l USING affected a
     WHERE l.account_id = a.account_id AND l.delivery_id = a.delivery_id
       AND l.recipient_key = a.recipient_key
)
DELETE FROM recipients r USING affected a
 WHERE r.account_id = a.account_id AND r.delivery_id = a.delivery_id
   AND r.recipient_key = a.recipient_key;

-- name: restore_own_verdicts
-- The affected recipients' events go back to their per-event verdicts; the whole-set rules run
-- again over the corrected set when the batch folds them.
UPDATE events e
   SET machine = (e.overridden ->> 'machine')::boolean, machine_reason = e.overridden ->> 'reason',
       agent_class = e.overridden ->> 'agent_class', overridden = NULL
  FROM affected a
 WHERE e.account_id = a.account_id AND e.delivery_id = a.delivery_id
   AND e.recipient_key = a.recipient_key AND e.overridden IS NOT NULL;

-- name: apply_corrections
-- Write the corrected fields into the ledger.
UPDATE events e
   SET type = c.type, native_type = c.native_type, campaign_id = c.campaign_id,
       delivery_id = c.delivery_id, message_id = c.message_id, email = c.email,
       contact_id = c.contact_id, client_contact_id = c.client_contact_id,
       first_name = c.first_name, surname = c.surname, bounce_class = c.bounce_class,
       bounce_code = c.bounce_code, bounce_reason = c.bounce_reason, ip = c.ip,
       user_agent = c.user_agent, machine = c.machine, machine_reason = c.machine_reason,
       agent_class = c.agent_class, ab_version = c.ab_version, amount = c.amount,
       currency = c.currency, name = c.name, payload = c.payload,
       provider_event_id = c.provider_event_id, client = c.client, country = c.country,
       overridden = NULL
  FROM corrected c
 WHERE e.event_id = c.event_id AND e.occurred_at = c.occurred_at;

-- name: refold_affected
-- Stage every folded event of the affected recipients, as corrected, to be folded again.
INSERT INTO fresh
SELECT e.event_id, e.occurred_at, e.account_id, e.source, e.type, e.native_type, e.campaign_id,
       e.delivery_id, e.message_id, e.recipient_key, e.email, e.contact_id, e.client_contact_id,
       e.first_name, e.surname, e.bounce_class, e.bounce_code, e.bounce_reason, e.url, e.ip,
       e.user_agent, e.machine, e.machine_reason, e.agent_class, e.ab_version, e.amount,
       e.currency, e.name, e.payload, e.provider_event_id, e.received_at, e.occurred_at_estimated,
       e.client, e.country
FROM events e JOIN affected a USING (account_id, delivery_id, recipient_key);
