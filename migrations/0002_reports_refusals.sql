-- 0002: from the first release to the report builder and the operator's tools: the accounts'
-- disabled_at, the ledger's client and country of opens and clicks, the recipients' source and
-- drop kind, the report rollups (report_hours, report_days, report_audience) with the functions and trigger
-- that keep them, and the bounded log of refused webhook requests.
-- The rollups start empty: `mailfold migrate` fills them from the ledger for every account after
-- this step (service.read.reports.rebuild), as the line below asks.
-- then: reports rebuild

ALTER TABLE accounts ADD COLUMN IF NOT EXISTS disabled_at timestamptz;

-- the report builder's audience of an open or click, read by the fold (service/audience.py): the
-- mail client or browser family of user_agent and the country of ip; NULL for other events
ALTER TABLE events ADD COLUMN IF NOT EXISTS client text;
ALTER TABLE events ADD COLUMN IF NOT EXISTS country text;

-- For the report builder: the greatest source of the recipient's events, and the kind of its
-- drop (mailfold_drop_kind, the greatest when several).
ALTER TABLE recipients ADD COLUMN IF NOT EXISTS source text;
ALTER TABLE recipients ADD COLUMN IF NOT EXISTS drop_kind text;

-- =============================================================================================
-- The report builder's rollups (service/read/reports.py), kept by the fold in its own
-- transaction: counts per account, UTC hour, campaign, delivery, source and A/B version
-- (report_hours), and opens and clicks further by client and country (report_audience).
-- Two kinds of counter:
-- report_days sums report_hours by UTC day. Two kinds of counter:
--   * per event, opens and clicks (opened, clicked and their human-only counts), from the fold's
--     new events under each event's own fields; moved by the whole-set machine rules and
--     replays like delivery_stats;
--   * per recipient (report_hours only), from the recipient rows through the trigger below: a
--     recipient counts once, in the hour it first reached each state (sent, delivered, opened,
--     clicked...), under the recipient row's campaign, source and version; moved when that
--     time or those fields change.
-- Campaign, version, source, client and country are '' when unknown (they are key columns).
-- =============================================================================================

-- A bounce's kind from its class, code and reason (the seed report's SMTP breakdown): rejected as
-- spam, address does not exist, temporarily unavailable, or other.
CREATE OR REPLACE FUNCTION mailfold_bounce_kind(class text, code text, reason text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN concat_ws(' ', code, reason) ~* '(spam|block ?list|black ?list|spamhaus|\mrbl\M|reputation|\mblocked\M|content rejected)'
            THEN 'spam'
        WHEN concat_ws(' ', code, reason) ~* '(5\.1\.[0-3]\M|5\.1\.10|user unknown|unknown user|no such (user|mailbox|recipient|address)|does not exist|doesn''t exist|not exist|mailbox (is )?(unavailable|not found)|invalid (recipient|mailbox)|recipient (address )?rejected|address rejected|unrouteable|nonexistent)'
            THEN 'nonexistent'
        WHEN class = 'soft' OR concat_ws(' ', code, reason) ~ '^\s*(4\d\d|4\.\d{1,3}\.\d{1,3})\M'
            THEN 'temporary'
        ELSE 'other'
    END
$$;

-- A drop's kind from its native type, code and reason (the seed report's quarantine breakdown):
-- on a spam-report list, unsubscribed, an invalid address, an address that bounced before, or
-- other.
CREATE OR REPLACE FUNCTION mailfold_drop_kind(native_type text, code text, reason text)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN concat_ws(' ', native_type, code, reason) ~* '(spam|complain|abuse)' THEN 'complained'
        WHEN concat_ws(' ', native_type, code, reason) ~* 'unsub' THEN 'unsubscribed'
        WHEN concat_ws(' ', native_type, code, reason) ~* '(invalid|bad ?e-?mail|malformed|syntax)'
            THEN 'invalid'
        WHEN concat_ws(' ', native_type, code, reason) ~* '(bounce|non-?existent|not exist)'
            THEN 'nonexistent'
        ELSE 'other'
    END
$$;

CREATE TABLE IF NOT EXISTS report_hours (
    account_id            text NOT NULL,
    hour                  timestamptz NOT NULL,
    campaign_id           text NOT NULL,
    delivery_id           text NOT NULL,
    source                text NOT NULL,
    ab_version            text NOT NULL,
    -- whether any count is left: a row whose counts moved to another hour stays behind as zeros
    -- (first, so that reading it does not unpack the counters)
    live                  boolean GENERATED ALWAYS AS (
        (opened, clicked, recipients, sent, delivered, opened_unique, clicked_unique,
         unsubscribed, complained, churned, bounced, dropped) <> (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    ) STORED,
    -- per event
    opened                bigint NOT NULL DEFAULT 0,
    opened_human          bigint NOT NULL DEFAULT 0,
    clicked               bigint NOT NULL DEFAULT 0,
    clicked_human         bigint NOT NULL DEFAULT 0,
    -- per recipient (mailfold_report_counters)
    recipients            bigint NOT NULL DEFAULT 0,
    sent                  bigint NOT NULL DEFAULT 0,
    delivered             bigint NOT NULL DEFAULT 0,
    opened_unique         bigint NOT NULL DEFAULT 0,
    opened_unique_human   bigint NOT NULL DEFAULT 0,
    clicked_unique        bigint NOT NULL DEFAULT 0,
    clicked_unique_human  bigint NOT NULL DEFAULT 0,
    clicked_opened        bigint NOT NULL DEFAULT 0,
    clicked_opened_human  bigint NOT NULL DEFAULT 0,
    unsubscribed          bigint NOT NULL DEFAULT 0,
    complained            bigint NOT NULL DEFAULT 0,
    churned               bigint NOT NULL DEFAULT 0,
    bounced               bigint NOT NULL DEFAULT 0,
    bounced_nonexistent   bigint NOT NULL DEFAULT 0,
    bounced_temporary     bigint NOT NULL DEFAULT 0,
    bounced_spam          bigint NOT NULL DEFAULT 0,
    dropped               bigint NOT NULL DEFAULT 0,
    dropped_invalid       bigint NOT NULL DEFAULT 0,
    dropped_nonexistent   bigint NOT NULL DEFAULT 0,
    dropped_complained    bigint NOT NULL DEFAULT 0,
    dropped_unsubscribed  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, hour, campaign_id, delivery_id, source, ab_version)
);
ALTER TABLE report_hours SET (fillfactor = 90);

-- report_hours summed by UTC day (`hour` is the day's first hour), kept beside it: a report in UTC
-- at a day's grain or coarser reads one row where report_hours has a dozen.
CREATE TABLE IF NOT EXISTS report_days (
    LIKE report_hours INCLUDING DEFAULTS INCLUDING GENERATED,
    PRIMARY KEY (account_id, hour, campaign_id, delivery_id, source, ab_version)
);
ALTER TABLE report_days SET (fillfactor = 90);

CREATE TABLE IF NOT EXISTS report_audience (
    account_id     text NOT NULL,
    hour           timestamptz NOT NULL,
    campaign_id    text NOT NULL,
    delivery_id    text NOT NULL,
    source         text NOT NULL,
    ab_version     text NOT NULL,
    client         text NOT NULL,
    country        text NOT NULL,
    live           boolean GENERATED ALWAYS AS ((opened, clicked) <> (0, 0)) STORED,
    opened         bigint NOT NULL DEFAULT 0,
    opened_human   bigint NOT NULL DEFAULT 0,
    clicked        bigint NOT NULL DEFAULT 0,
    clicked_human  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, hour, campaign_id, delivery_id, source, ab_version, client, country)
);
ALTER TABLE report_audience SET (fillfactor = 90);

-- The per-recipient counters, each with the time a recipient row counts at (NULL: not at all),
-- as in the delivery summary's funnel: sent = not dropped; delivered = sent, not hard-bounced,
-- and delivered, opened or clicked; bounced = sent with a bounce, split by the kind of the bounce
-- the row shows; churned = sent and unsubscribed, complained, hard-bounced or bounced without
-- delivery; clicked_opened = opened and clicked (CTOR's numerator).
CREATE OR REPLACE FUNCTION mailfold_report_times(
    first_event_at timestamptz, sent_at timestamptz, dropped_at timestamptz,
    delivered_at timestamptz, opened_at timestamptz, clicked_at timestamptz,
    human_opened_at timestamptz, human_clicked_at timestamptz, unsubscribed_at timestamptz,
    complained_at timestamptz, bounced_at timestamptz, hard_bounced_at timestamptz,
    bounce_class text, bounce_code text, bounce_reason text, drop_kind text)
RETURNS timestamptz[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    -- one expression, so that PostgreSQL inlines it (a sent recipient: not dropped; reached:
    -- least(delivered_at, opened_at, clicked_at); only a bounce has a kind, whose patterns cost
    -- microseconds a row)
    SELECT ARRAY[
        first_event_at,
        CASE WHEN dropped_at IS NULL THEN coalesce(sent_at, first_event_at) END,
        CASE WHEN dropped_at IS NULL AND hard_bounced_at IS NULL
             THEN least(delivered_at, opened_at, clicked_at) END,
        opened_at, human_opened_at, clicked_at, human_clicked_at,
        -- (greatest ignores a NULL: both must be there)
        CASE WHEN opened_at IS NOT NULL AND clicked_at IS NOT NULL
             THEN greatest(opened_at, clicked_at) END,
        CASE WHEN human_opened_at IS NOT NULL AND human_clicked_at IS NOT NULL
             THEN greatest(human_opened_at, human_clicked_at) END,
        unsubscribed_at, complained_at,
        CASE WHEN dropped_at IS NULL THEN
            least(unsubscribed_at, complained_at, hard_bounced_at,
                  CASE WHEN least(delivered_at, opened_at, clicked_at) IS NULL THEN bounced_at END)
        END,
        CASE WHEN dropped_at IS NULL THEN bounced_at END,
        CASE WHEN dropped_at IS NULL AND bounced_at IS NOT NULL
              AND mailfold_bounce_kind(bounce_class, bounce_code, bounce_reason) = 'nonexistent'
             THEN bounced_at END,
        CASE WHEN dropped_at IS NULL AND bounced_at IS NOT NULL
              AND mailfold_bounce_kind(bounce_class, bounce_code, bounce_reason) = 'temporary'
             THEN bounced_at END,
        CASE WHEN dropped_at IS NULL AND bounced_at IS NOT NULL
              AND mailfold_bounce_kind(bounce_class, bounce_code, bounce_reason) = 'spam'
             THEN bounced_at END,
        dropped_at,
        CASE WHEN drop_kind = 'invalid' THEN dropped_at END,
        CASE WHEN drop_kind = 'nonexistent' THEN dropped_at END,
        CASE WHEN drop_kind = 'complained' THEN dropped_at END,
        CASE WHEN drop_kind = 'unsubscribed' THEN dropped_at END
    ]
$$;

-- 1 to 21, the counter numbers.
CREATE OR REPLACE FUNCTION mailfold_report_numbers() RETURNS smallint[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT '{1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21}'::smallint[]
$$;

-- The same as (time, counter number) rows, the counters a row counts in.
CREATE OR REPLACE FUNCTION mailfold_report_marks(
    first_event_at timestamptz, sent_at timestamptz, dropped_at timestamptz,
    delivered_at timestamptz, opened_at timestamptz, clicked_at timestamptz,
    human_opened_at timestamptz, human_clicked_at timestamptz, unsubscribed_at timestamptz,
    complained_at timestamptz, bounced_at timestamptz, hard_bounced_at timestamptz,
    bounce_class text, bounce_code text, bounce_reason text, drop_kind text)
RETURNS TABLE (at timestamptz, counter smallint)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT m.at, m.counter
    FROM unnest(
        mailfold_report_times(first_event_at, sent_at, dropped_at, delivered_at, opened_at,
                              clicked_at, human_opened_at, human_clicked_at, unsubscribed_at,
                              complained_at, bounced_at, hard_bounced_at, bounce_class,
                              bounce_code, bounce_reason, drop_kind),
        mailfold_report_numbers()
    ) m (at, counter)
    WHERE m.at IS NOT NULL
$$;

-- A recipient row's arguments to mailfold_report_times and _marks, under the alias `r`.
CREATE OR REPLACE FUNCTION mailfold_report_args(r text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT format('%1$s.first_event_at, %1$s.sent_at, %1$s.dropped_at, %1$s.delivered_at, '
                  '%1$s.opened_at, %1$s.clicked_at, %1$s.human_opened_at, %1$s.human_clicked_at, '
                  '%1$s.unsubscribed_at, %1$s.complained_at, %1$s.bounced_at, '
                  '%1$s.hard_bounced_at, %1$s.bounce_class, %1$s.bounce_code, '
                  '%1$s.bounce_reason, %1$s.drop_kind', r)
$$;

-- The per-recipient counters, by the number mailfold_report_times gives each.
CREATE OR REPLACE FUNCTION mailfold_report_counters() RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['recipients', 'sent', 'delivered', 'opened_unique', 'opened_unique_human',
                 'clicked_unique', 'clicked_unique_human', 'clicked_opened',
                 'clicked_opened_human', 'unsubscribed', 'complained', 'churned', 'bounced',
                 'bounced_nonexistent', 'bounced_temporary', 'bounced_spam', 'dropped',
                 'dropped_invalid', 'dropped_nonexistent', 'dropped_complained',
                 'dropped_unsubscribed']
$$;

-- The statement that moves the per-recipient counters by `marks`: rows of (account_id, at,
-- campaign_id, delivery_id, source, ab_version, counter, sign), +1 for a counter a recipient row
-- now counts in at `at`, -1 for one it no longer does (mailfold_report_marks_sql). Groups whose
-- figures cancel out write nothing. Run by the recipients trigger. A session that sets
-- mailfold.reports to 'off' skips it (scripts/bench measures the fold with and without the
-- rollups that way).
CREATE OR REPLACE FUNCTION mailfold_report_sql(marks text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT format($sql$
        WITH moves AS (%1$s),
        marks AS (
            SELECT account_id, date_trunc('hour', at, 'UTC') AS hour,
                   coalesce(campaign_id, '') AS campaign_id, delivery_id,
                   coalesce(source, '') AS source, coalesce(ab_version, '') AS ab_version,
                   counter, sum(sign) AS n
            FROM moves
            GROUP BY 1, 2, 3, 4, 5, 6, 7
            HAVING sum(sign) <> 0
        ),
        days AS (
            INSERT INTO report_days AS t
                (account_id, hour, campaign_id, delivery_id, source, ab_version, %2$s)
            SELECT account_id, date_trunc('day', hour, 'UTC'), campaign_id, delivery_id, source,
                   ab_version, %3$s
            FROM marks
            GROUP BY 1, 2, 3, 4, 5, 6
            ORDER BY 1, 2, 3, 4, 5, 6
            ON CONFLICT (account_id, hour, campaign_id, delivery_id, source, ab_version)
            DO UPDATE SET %4$s
        )
        INSERT INTO report_hours AS t
            (account_id, hour, campaign_id, delivery_id, source, ab_version, %2$s)
        SELECT account_id, hour, campaign_id, delivery_id, source, ab_version, %3$s
        FROM marks
        GROUP BY 1, 2, 3, 4, 5, 6
        ORDER BY 1, 2, 3, 4, 5, 6
        ON CONFLICT (account_id, hour, campaign_id, delivery_id, source, ab_version)
        DO UPDATE SET %4$s
    $sql$,
    marks,
    array_to_string(mailfold_report_counters(), ', '),
    (SELECT string_agg(format('coalesce(sum(n) FILTER (WHERE counter = %s), 0)', i), ', ')
     FROM generate_subscripts(mailfold_report_counters(), 1) i),
    (SELECT string_agg(format('%1$I = t.%1$I + excluded.%1$I', c), ', ')
     FROM unnest(mailfold_report_counters()) c))
$$;

-- The marks of a trigger's transition tables (`op`: INSERT, UPDATE or DELETE). A new row counts
-- +1 in each of its counters, a deleted one -1; an updated row moves only the counters whose
-- time changed (or all of them when its campaign, source or version changed), old -1, new +1.
CREATE OR REPLACE FUNCTION mailfold_report_marks_sql(op text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE op
        WHEN 'UPDATE' THEN format($sql$
            SELECT s.*
            FROM new_rows n
            JOIN old_rows o
              ON n.account_id = o.account_id AND n.delivery_id = o.delivery_id
             AND n.recipient_key = o.recipient_key
             -- most updates (another open, a count) leave every field the counters read alone
             AND (n.campaign_id, n.source, n.ab_version, %3$s)
                 IS DISTINCT FROM (o.campaign_id, o.source, o.ab_version, %4$s)
            CROSS JOIN LATERAL unnest(mailfold_report_times(%1$s), mailfold_report_times(%2$s),
                                      mailfold_report_numbers()) u (n_at, o_at, counter)
            CROSS JOIN LATERAL (VALUES
                (n.account_id, u.n_at, n.campaign_id, n.delivery_id, n.source, n.ab_version,
                 u.counter, 1),
                (o.account_id, u.o_at, o.campaign_id, o.delivery_id, o.source, o.ab_version,
                 u.counter, -1)
            ) s (account_id, at, campaign_id, delivery_id, source, ab_version, counter, sign)
            WHERE (u.n_at IS DISTINCT FROM u.o_at
                   OR (n.campaign_id, n.source, n.ab_version)
                      IS DISTINCT FROM (o.campaign_id, o.source, o.ab_version))
              AND s.at IS NOT NULL
            $sql$, mailfold_report_args('n'), mailfold_report_args('o'),
            mailfold_report_args('n'), mailfold_report_args('o'))
        ELSE format($sql$
            SELECT r.account_id, m.at, r.campaign_id, r.delivery_id, r.source, r.ab_version,
                   m.counter, %2$s AS sign
            FROM %1$s r CROSS JOIN LATERAL mailfold_report_marks(%3$s) m
            $sql$,
            CASE op WHEN 'INSERT' THEN 'new_rows' ELSE 'old_rows' END,
            CASE op WHEN 'INSERT' THEN '1' ELSE '-1' END,
            mailfold_report_args('r'))
    END
$$;

-- After every statement that changes recipient rows (the fold's upsert, the click-burst
-- correction, anything else): move the counts, and write the search text of new recipients and
-- of those whose searched fields changed.
CREATE OR REPLACE FUNCTION mailfold_recipients_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    reports boolean := current_setting('mailfold.reports', true) IS DISTINCT FROM 'off';
BEGIN
    -- statements that changed nothing (most runs of the fold's corrections) cost nothing here
    IF TG_OP = 'INSERT' THEN
        IF NOT EXISTS (SELECT FROM new_rows) THEN
            RETURN NULL;
        END IF;
        EXECUTE mailfold_count_sql('SELECT 1 AS sign, * FROM new_rows');
        -- a plain insert: a recipient row is new once, and its deletion takes this row along
        INSERT INTO recipient_search (account_id, delivery_id, recipient_key, search_text)
        SELECT account_id, delivery_id, recipient_key,
               mailfold_search_text(email, first_name, surname, client_contact_id)
        FROM new_rows
        ORDER BY 1, 2, 3;
    ELSIF TG_OP = 'UPDATE' THEN
        IF NOT EXISTS (SELECT FROM old_rows) THEN
            RETURN NULL;
        END IF;
        EXECUTE mailfold_count_sql(
            'SELECT 1 AS sign, * FROM new_rows UNION ALL SELECT -1, * FROM old_rows');
        -- a recipient that gained its campaign leaves the NULL group, which may end up empty
        DELETE FROM delivery_counts c
        USING (SELECT DISTINCT account_id, delivery_id FROM old_rows) o
        WHERE c.account_id = o.account_id AND c.delivery_id = o.delivery_id
          AND c.recipient_count = 0;
        EXECUTE mailfold_first_sent_sql(
            'SELECT o.* FROM old_rows o JOIN new_rows n USING (account_id, delivery_id, recipient_key)
             WHERE o.sent_at IS NOT NULL AND (o.campaign_id IS DISTINCT FROM n.campaign_id
                                              OR n.sent_at IS NULL OR n.sent_at > o.sent_at)');
        INSERT INTO recipient_search AS s (account_id, delivery_id, recipient_key, search_text)
        SELECT n.account_id, n.delivery_id, n.recipient_key,
               mailfold_search_text(n.email, n.first_name, n.surname, n.client_contact_id)
        FROM new_rows n
        JOIN old_rows o USING (account_id, delivery_id, recipient_key)
        WHERE (n.email, n.first_name, n.surname, n.client_contact_id)
              IS DISTINCT FROM (o.email, o.first_name, o.surname, o.client_contact_id)
        ORDER BY 1, 2, 3
        ON CONFLICT (account_id, delivery_id, recipient_key)
            DO UPDATE SET search_text = excluded.search_text;
    ELSE
        IF NOT EXISTS (SELECT FROM old_rows) THEN
            RETURN NULL;
        END IF;
        EXECUTE mailfold_count_sql('SELECT -1 AS sign, * FROM old_rows');
        DELETE FROM delivery_counts c
        USING (SELECT DISTINCT account_id, delivery_id FROM old_rows) o
        WHERE c.account_id = o.account_id AND c.delivery_id = o.delivery_id
          AND c.recipient_count = 0;
        EXECUTE mailfold_first_sent_sql('SELECT * FROM old_rows WHERE sent_at IS NOT NULL');
        DELETE FROM recipient_search s USING old_rows o
        WHERE s.account_id = o.account_id AND s.delivery_id = o.delivery_id
          AND s.recipient_key = o.recipient_key;
    END IF;
    IF reports THEN
        EXECUTE mailfold_report_sql(mailfold_report_marks_sql(TG_OP));
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION mailfold_recipients_truncated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE recipient_search, delivery_counts, report_hours, report_days, report_audience;
    RETURN NULL;
END $$;

-- The last refused webhook requests per account and provider (service/refusals.py): when, the
-- status and reason given, where from and the request id; never the body nor a credential.
-- Bounded: each write keeps the newest KEPT (100) per account and provider.
CREATE TABLE IF NOT EXISTS webhook_refusals (
    refusal_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id   text NOT NULL REFERENCES accounts ON DELETE CASCADE,
    provider     text NOT NULL,
    refused_at   timestamptz NOT NULL,
    status       integer NOT NULL,
    reason       text NOT NULL,
    remote_addr  text,
    request_id   text
);
CREATE INDEX IF NOT EXISTS webhook_refusals_account_id_provider_refusal_id_idx
    ON webhook_refusals (account_id, provider, refusal_id);

-- Recipients from before get them from their events as the fold merges them (max of each), so
-- the rollups the recipients trigger moves later start from what reports.rebuild counts. Neither
-- field is counted nor searched, so the trigger is off for this one statement.
ALTER TABLE recipients DISABLE TRIGGER recipients_updated;
UPDATE recipients r SET source = e.source, drop_kind = e.drop_kind
FROM (SELECT account_id, delivery_id, recipient_key, max(source) AS source,
             max(mailfold_drop_kind(native_type, bounce_code, bounce_reason))
                 FILTER (WHERE type = 'dropped') AS drop_kind
      FROM events
      WHERE delivery_id IS NOT NULL
      GROUP BY 1, 2, 3) e
WHERE r.account_id = e.account_id AND r.delivery_id = e.delivery_id
  AND r.recipient_key = e.recipient_key
  AND (r.source, r.drop_kind) IS DISTINCT FROM (e.source, e.drop_kind);
ALTER TABLE recipients ENABLE TRIGGER recipients_updated;
