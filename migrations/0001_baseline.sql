-- 0001: the schema of the first release, as it shipped. Idempotent like schema.sql, so it is
-- also a no-op on a database that release built before migrations were recorded.

-- Mailfold's PostgreSQL schema. Safe to apply again: every statement is IF NOT EXISTS or
-- CREATE OR REPLACE. Times are timestamptz (UTC on the wire); ids are text as the platform
-- sends them; counters are *_count.

-- Tenants. The secret is stored as HMAC-SHA256(MAILFOLD_SECRET_KEY, secret): a keyed hash,
-- cheap to check per request because the secret itself has 256 bits of entropy.
CREATE TABLE IF NOT EXISTS accounts (
    account_id   text PRIMARY KEY,
    name         text NOT NULL,
    login        text NOT NULL UNIQUE,
    secret_hash  bytea NOT NULL,
    allowed_ips  cidr[],                      -- NULL: any address; otherwise the allow list
    time_zone    text NOT NULL DEFAULT 'UTC',
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Per account and provider: options that are not secret (Mandrill's signed URL, SNS topic
-- ARNs, metadata keys).
CREATE TABLE IF NOT EXISTS provider_settings (
    account_id  text NOT NULL REFERENCES accounts ON DELETE CASCADE,
    provider    text NOT NULL,
    options     jsonb NOT NULL DEFAULT '{}',
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, provider)
);

-- Up to two active secrets per account and provider (slot 1 and 2) so a key can be rotated
-- without losing events; encrypted with AES-GCM under a key derived from MAILFOLD_SECRET_KEY.
CREATE TABLE IF NOT EXISTS provider_secrets (
    account_id  text NOT NULL REFERENCES accounts ON DELETE CASCADE,
    provider    text NOT NULL,
    slot        smallint NOT NULL CHECK (slot IN (1, 2)),
    secret_enc  bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, provider, slot)
);

-- SNS subscription handshakes seen for an account: confirmations done and unsubscribe notices
-- recorded for an operator to act on.
CREATE TABLE IF NOT EXISTS sns_subscriptions (
    account_id   text NOT NULL REFERENCES accounts ON DELETE CASCADE,
    topic_arn    text NOT NULL,
    status       text NOT NULL CHECK (status IN ('confirmed', 'unsubscribe_requested')),
    message_id   text,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, topic_arn)
);

-- Nonces of verified webhook requests already on the broker (Mailgun tokens, Svix and Standard
-- Webhooks message ids), shared by every service process: a repeat before expires_at is answered
-- 2xx and not produced again. Expired rows are deleted from time to time.
CREATE TABLE IF NOT EXISTS webhook_nonces (
    account_id  text NOT NULL REFERENCES accounts ON DELETE CASCADE,
    provider    text NOT NULL,
    nonce       text NOT NULL,
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (account_id, provider, nonce)
);
CREATE INDEX IF NOT EXISTS webhook_nonces_expires_at_idx ON webhook_nonces (expires_at);

-- The ledger: every distinct canonical event, once. It deduplicates (event_id is a hash that
-- includes occurred_at, so the primary key can include the partition key) and is the source of
-- timelines. Events whose delivery is not known yet have delivery_id NULL until resolved.
CREATE TABLE IF NOT EXISTS events (
    event_id           uuid NOT NULL,
    occurred_at        timestamptz NOT NULL,
    account_id         text NOT NULL,
    source             text NOT NULL,
    type               text NOT NULL CHECK (type IN ('sent', 'delivered', 'deferred', 'bounced',
                           'dropped', 'opened', 'clicked', 'unsubscribed', 'complained',
                           'converted', 'custom')),
    native_type        text NOT NULL,
    campaign_id        text,
    delivery_id        text,
    message_id         text,
    recipient_key      text NOT NULL,
    email              text,
    contact_id         text,
    client_contact_id  text,
    first_name         text,
    surname            text,
    bounce_class       text CHECK (bounce_class IN ('hard', 'soft')),
    bounce_code        text,
    bounce_reason      text,
    url                text,
    ip                 text,
    user_agent         text,
    machine            boolean,
    machine_reason     text,
    agent_class        text,
    ab_version         text,
    amount             numeric(20, 4),
    currency           text,
    name               text,
    payload            jsonb,
    provider_event_id  text,
    received_at        timestamptz,
    folded_at          timestamptz NOT NULL DEFAULT now(),
    -- the per-event verdict {machine, reason, agent_class} a whole-set rule overrode (NULL when
    -- none did), so a replay can re-run the rules over a corrected set
    overridden         jsonb,
    PRIMARY KEY (event_id, occurred_at)
) PARTITION BY RANGE (occurred_at);
ALTER TABLE events ADD COLUMN IF NOT EXISTS overridden jsonb;
-- true when the provider's event time could not be read and occurred_at is when Mailfold
-- received the event (inwise documents a month 15)
ALTER TABLE events ADD COLUMN IF NOT EXISTS occurred_at_estimated boolean NOT NULL DEFAULT false;

DO $$
DECLARE y int;
BEGIN
    FOR y IN 2015..2035 LOOP
        EXECUTE format(
            'CREATE TABLE IF NOT EXISTS events_%s PARTITION OF events FOR VALUES FROM (%L) TO (%L)',
            y, make_date(y, 1, 1), make_date(y + 1, 1, 1));
    END LOOP;
END $$;
CREATE TABLE IF NOT EXISTS events_default PARTITION OF events DEFAULT;

-- One recipient's events in one delivery (timelines, the whole-set rules) are found through
-- events_contact_idx below: a contact's events across all its deliveries are few, and one index
-- entry fewer per event is about 140 bytes of WAL less.
DROP INDEX IF EXISTS events_recipient_idx;
-- Events waiting for their message's delivery (resolve_pending). An event with neither a
-- delivery nor a message (a named custom event of a contact) never waits and is not in it.
DROP INDEX IF EXISTS events_pending_idx;
CREATE INDEX IF NOT EXISTS events_awaiting_delivery_idx
    ON events (account_id, message_id) WHERE delivery_id IS NULL AND message_id IS NOT NULL;

-- message_id -> (campaign, delivery, recipient), from any event that carries both; resolves
-- events that arrive without delivery metadata (async bounces, spam reports).
CREATE TABLE IF NOT EXISTS messages (
    account_id     text NOT NULL,
    message_id     text NOT NULL,
    recipient_key  text NOT NULL,
    campaign_id    text,
    delivery_id    text NOT NULL,
    PRIMARY KEY (account_id, message_id, recipient_key)
);

-- One row per account, delivery and recipient: the state the recipient lists show. Every
-- column is a commutative merge (sum, least, greatest), so arrival order never matters.
CREATE TABLE IF NOT EXISTS recipients (
    account_id             text NOT NULL,
    delivery_id            text NOT NULL,
    recipient_key          text NOT NULL,
    campaign_id            text,
    email                  text,
    contact_id             text,
    client_contact_id      text,
    first_name             text,
    surname                text,
    ab_version             text,
    sent_at                timestamptz,
    delivered_at           timestamptz,
    deferred_at            timestamptz,
    dropped_at             timestamptz,
    bounced_at             timestamptz,
    hard_bounced_at        timestamptz,
    bounce_pick            text,         -- "<rank><time><event_id>" of the bounce whose details show
    bounce_class           text,
    bounce_code            text,
    bounce_reason          text,
    opened_at              timestamptz,  -- first open, human or machine
    last_opened_at         timestamptz,
    human_opened_at        timestamptz,  -- first open with machine = false
    open_count             integer NOT NULL DEFAULT 0,
    open_human_count       integer NOT NULL DEFAULT 0,
    open_machine_count     integer NOT NULL DEFAULT 0,
    clicked_at             timestamptz,
    last_clicked_at        timestamptz,
    human_clicked_at       timestamptz,
    click_count            integer NOT NULL DEFAULT 0,
    click_human_count      integer NOT NULL DEFAULT 0,
    click_machine_count    integer NOT NULL DEFAULT 0,
    unsubscribed_at        timestamptz,
    complained_at          timestamptz,
    converted_at           timestamptz,
    conversions_count      integer NOT NULL DEFAULT 0,
    conversions_amount     numeric(20, 4),
    conversions_currency   text,
    status_rank            smallint NOT NULL DEFAULT 0,
    first_event_at         timestamptz,
    last_event_at          timestamptz,
    event_count            integer NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, delivery_id, recipient_key)
);

-- Updates that leave every indexed column alone are HOT (no index entry, less WAL): a repeated
-- open or click, a delivery, a status change. So the recipient indexes hold only the key and the
-- first times of the signals, each first time a partial index in the lists' default order
-- (recipient) for `signal=` pages; `sent` and `delivered`, which nearly every recipient has, are
-- read from the primary key. Room is left on each page for the HOT versions.
ALTER TABLE recipients SET (fillfactor = 80);
CREATE INDEX IF NOT EXISTS recipients_opened_idx
    ON recipients (account_id, delivery_id, recipient_key) WHERE opened_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS recipients_clicked_idx
    ON recipients (account_id, delivery_id, recipient_key) WHERE clicked_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS recipients_bounced_idx
    ON recipients (account_id, delivery_id, recipient_key) WHERE bounced_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS recipients_dropped_idx
    ON recipients (account_id, delivery_id, recipient_key) WHERE dropped_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS recipients_unsubscribed_idx
    ON recipients (account_id, delivery_id, recipient_key) WHERE unsubscribed_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS recipients_complained_idx
    ON recipients (account_id, delivery_id, recipient_key) WHERE complained_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS recipients_converted_idx
    ON recipients (account_id, delivery_id, recipient_key) WHERE converted_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS recipients_human_opened_idx
    ON recipients (account_id, delivery_id, recipient_key) WHERE human_opened_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS recipients_human_clicked_idx
    ON recipients (account_id, delivery_id, recipient_key) WHERE human_clicked_at IS NOT NULL;
-- Indexes of earlier versions: time-ordered signal indexes and sort-only ones, whose entries
-- every fold update rewrote (a sort on those fields sorts the delivery's matching rows).
DROP INDEX IF EXISTS recipients_delivered_at_idx;
DROP INDEX IF EXISTS recipients_opened_at_idx;
DROP INDEX IF EXISTS recipients_clicked_at_idx;
DROP INDEX IF EXISTS recipients_bounced_at_idx;
DROP INDEX IF EXISTS recipients_unsubscribed_at_idx;
DROP INDEX IF EXISTS recipients_complained_at_idx;
DROP INDEX IF EXISTS recipients_converted_at_idx;
DROP INDEX IF EXISTS recipients_human_opened_at_idx;
DROP INDEX IF EXISTS recipients_human_clicked_at_idx;
DROP INDEX IF EXISTS recipients_surname_idx;
DROP INDEX IF EXISTS recipients_search_idx;
DROP INDEX IF EXISTS recipients_status_idx;
DROP INDEX IF EXISTS recipients_dropped_at_idx;
DROP INDEX IF EXISTS recipients_email_idx;
DROP INDEX IF EXISTS recipients_first_name_idx;
DROP INDEX IF EXISTS recipients_contact_id_idx;
DROP INDEX IF EXISTS recipients_client_contact_id_idx;
DROP INDEX IF EXISTS recipients_sent_at_idx;
DROP INDEX IF EXISTS recipients_opened_at_sort_idx;
DROP INDEX IF EXISTS recipients_clicked_at_sort_idx;
DROP INDEX IF EXISTS recipients_clicked_at_desc_idx;
DROP INDEX IF EXISTS recipients_open_count_idx;
DROP INDEX IF EXISTS recipients_click_count_idx;

-- Funnel counters per delivery, event type and hour of event time (histograms and totals).
CREATE TABLE IF NOT EXISTS delivery_stats (
    account_id     text NOT NULL,
    delivery_id    text NOT NULL,
    hour           timestamptz NOT NULL,
    type           text NOT NULL,
    event_count    bigint NOT NULL DEFAULT 0,
    machine_count  bigint NOT NULL DEFAULT 0,  -- machine = true
    human_count    bigint NOT NULL DEFAULT 0,  -- machine = false (the rest: nothing told)
    hard_count     bigint NOT NULL DEFAULT 0,
    amount         numeric(20, 4) NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, delivery_id, hour, type)
);

-- Clicks per delivery, URL and recipient (unique clickers and human/machine splits per link).
CREATE TABLE IF NOT EXISTS link_stats (
    account_id     text NOT NULL,
    delivery_id    text NOT NULL,
    url            text NOT NULL,
    recipient_key  text NOT NULL,
    first_at       timestamptz NOT NULL,
    click_count    integer NOT NULL DEFAULT 0,
    machine_count  integer NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, delivery_id, url, recipient_key)
);

-- The fold's consumed positions, written in the same transaction as what they consumed.
CREATE TABLE IF NOT EXISTS consumer_offsets (
    group_id     text NOT NULL,
    topic        text NOT NULL,
    partition    integer NOT NULL,
    next_offset  bigint NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);

-- Status by precedence (DESIGN.md): the greatest rank any event reached.
CREATE OR REPLACE FUNCTION mailfold_status(rank smallint) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce((ARRAY['sent', 'deferred', 'dropped', 'soft_bounced', 'delivered', 'opened',
                  'clicked', 'unsubscribed', 'hard_bounced', 'complained'])[rank], 'unknown')
$$;

-- =============================================================================================
-- Read API: the feed order of events and suppressions, suppressions themselves, and the
-- indexes behind every filter and sort the read endpoints offer (service/read/).
-- =============================================================================================

CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- Feed order. A row's position is (feed_xact, feed_seq): the id of the transaction that wrote it
-- and a number drawn at that moment. Readers only take rows whose transaction is older than the
-- oldest one still running (pg_snapshot_xmin), so no row can later appear before a position
-- already handed out: a cursor never skips or repeats a row, however folds interleave.
CREATE SEQUENCE IF NOT EXISTS feed_seq AS bigint;

ALTER TABLE events ADD COLUMN IF NOT EXISTS feed_xact xid8 NOT NULL DEFAULT pg_current_xact_id();
ALTER TABLE events ADD COLUMN IF NOT EXISTS feed_seq bigint NOT NULL DEFAULT nextval('feed_seq');

-- An event that waited for its delivery enters the feed when it is attributed: its position is
-- taken anew by the attributing transaction (the feed shows attributed events only).
CREATE OR REPLACE FUNCTION mailfold_feed_restamp() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.feed_xact := pg_current_xact_id();
    NEW.feed_seq := nextval('feed_seq');
    RETURN NEW;
END $$;

CREATE OR REPLACE TRIGGER events_feed_restamp
    BEFORE UPDATE OF delivery_id ON events
    FOR EACH ROW WHEN (OLD.delivery_id IS NULL AND NEW.delivery_id IS NOT NULL)
    EXECUTE FUNCTION mailfold_feed_restamp();

-- Addresses an account must not mail again: hard bounces, spam complaints and unsubscribes, one
-- row per account and address with its strongest reason (complained > hard_bounce >
-- unsubscribed) and the earliest event of that reason. Filled by the fold (upsert_suppressions);
-- every change takes a new feed position, so GET /v1/suppressions and the Kafka relay see it.
CREATE TABLE IF NOT EXISTS suppressions (
    account_id   text NOT NULL,
    email        text NOT NULL,
    reason       text NOT NULL CHECK (reason IN ('unsubscribed', 'hard_bounce', 'complained')),
    reason_rank  smallint NOT NULL,
    reason_at    timestamptz NOT NULL,   -- when the event behind `reason` happened
    event_id     uuid NOT NULL,          -- that event
    campaign_id  text,
    delivery_id  text,
    first_at     timestamptz NOT NULL,   -- the earliest suppressing event, whatever its reason
    feed_xact    xid8 NOT NULL DEFAULT pg_current_xact_id(),
    feed_seq     bigint NOT NULL DEFAULT nextval('feed_seq'),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, email)
);
CREATE INDEX IF NOT EXISTS suppressions_feed_idx ON suppressions (account_id, feed_xact, feed_seq);
CREATE INDEX IF NOT EXISTS suppressions_relay_idx ON suppressions (feed_xact, feed_seq);

-- Where a relay that publishes a feed to Kafka (mailfold.suppressions) has got to.
CREATE TABLE IF NOT EXISTS feed_positions (
    name        text PRIMARY KEY,
    feed_xact   xid8 NOT NULL,
    feed_seq    bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Recipient search (`q`): one text per recipient, fields separated by a newline, which a search
-- term cannot contain, so a match never spans two fields. Trigram-indexed for ILIKE '%term%'.
CREATE OR REPLACE FUNCTION mailfold_search_text(
    email text, first_name text, surname text, client_contact_id text
) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT concat_ws(E'\n', email, first_name, surname, client_contact_id)
$$;

-- Ledger: the activity log (time range, campaign, delivery, contact) and the recent-activity feed.
CREATE INDEX IF NOT EXISTS events_feed_idx
    ON events (account_id, feed_xact, feed_seq) WHERE delivery_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_occurred_at_idx ON events (account_id, occurred_at);
CREATE INDEX IF NOT EXISTS events_campaign_idx ON events (account_id, campaign_id, occurred_at);
CREATE INDEX IF NOT EXISTS events_delivery_idx ON events (account_id, delivery_id, occurred_at);
-- (also one recipient's events in one delivery, filtered by delivery)
CREATE INDEX IF NOT EXISTS events_contact_idx ON events (account_id, recipient_key, occurred_at);
-- A contact's recipient keys in every delivery, found by its contact id or client contact id
-- (GET /v1/contacts/{key}/..., the activity log's `contact`). The ids are set with a recipient's
-- first event and then stay, so these entries are rewritten only by updates that are not HOT
-- anyway (a first open, click or bounce).
CREATE INDEX IF NOT EXISTS recipients_contact_idx
    ON recipients (account_id, contact_id) WHERE contact_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS recipients_client_contact_idx
    ON recipients (account_id, client_contact_id) WHERE client_contact_id IS NOT NULL;

-- Recipient lists: version filter, the undelivered list, and the latest-opens-first order.
CREATE INDEX IF NOT EXISTS recipients_ab_version_idx
    ON recipients (account_id, delivery_id, ab_version, recipient_key)
    WHERE ab_version IS NOT NULL;
CREATE INDEX IF NOT EXISTS recipients_undelivered_idx
    ON recipients (account_id, delivery_id, recipient_key)
    WHERE dropped_at IS NOT NULL OR bounced_at IS NOT NULL;
-- `sort=-openedAt,surname` (seed 000's example) in the index's own order.
CREATE INDEX IF NOT EXISTS recipients_opened_at_surname_idx
    ON recipients (account_id, delivery_id, opened_at DESC NULLS LAST, surname, recipient_key);
DROP INDEX IF EXISTS recipients_opened_at_desc_idx;

-- Recipient search (`q`) apart from the recipient rows, so a fold update never touches the
-- trigram index: one row per recipient, rewritten only when its text changes.
CREATE TABLE IF NOT EXISTS recipient_search (
    account_id     text NOT NULL,
    delivery_id    text NOT NULL,
    recipient_key  text NOT NULL,
    search_text    text NOT NULL,   -- mailfold_search_text of the recipient's fields
    PRIMARY KEY (account_id, delivery_id, recipient_key)
);
CREATE INDEX IF NOT EXISTS recipient_search_text_idx
    ON recipient_search USING gin (search_text gin_trgm_ops);

-- Recipients per delivery and campaign (NULL: not attributed to one yet) and how many of them
-- have each signal: the recipient lists' totalCount without counting rows. Exact: kept by the
-- triggers below in the transaction that changes the recipient rows.
CREATE TABLE IF NOT EXISTS delivery_counts (
    account_id             text NOT NULL,
    delivery_id            text NOT NULL,
    campaign_id            text,
    recipient_count        bigint NOT NULL DEFAULT 0,
    sent_count             bigint NOT NULL DEFAULT 0,
    delivered_count        bigint NOT NULL DEFAULT 0,
    opened_count           bigint NOT NULL DEFAULT 0,
    clicked_count          bigint NOT NULL DEFAULT 0,
    bounced_count          bigint NOT NULL DEFAULT 0,
    dropped_count          bigint NOT NULL DEFAULT 0,
    unsubscribed_count     bigint NOT NULL DEFAULT 0,
    complained_count       bigint NOT NULL DEFAULT 0,
    converted_count        bigint NOT NULL DEFAULT 0,
    human_opened_count     bigint NOT NULL DEFAULT 0,
    human_clicked_count    bigint NOT NULL DEFAULT 0,
    UNIQUE NULLS NOT DISTINCT (account_id, delivery_id, campaign_id)
);
-- The group's earliest sent_at (the delivery and campaign lists' first-send date), kept by the
-- same triggers; filled from the recipient rows when the column is added to an existing table.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM information_schema.columns
                   WHERE table_schema = current_schema() AND table_name = 'delivery_counts'
                     AND column_name = 'first_sent_at') THEN
        ALTER TABLE delivery_counts ADD COLUMN IF NOT EXISTS first_sent_at timestamptz;
        UPDATE delivery_counts c SET first_sent_at = r.first_sent_at
        FROM (SELECT account_id, delivery_id, campaign_id, min(sent_at) AS first_sent_at
              FROM recipients GROUP BY 1, 2, 3) r
        WHERE c.account_id = r.account_id AND c.delivery_id = r.delivery_id
          AND c.campaign_id IS NOT DISTINCT FROM r.campaign_id;
    END IF;
END $$;

-- The statement that sums the rows a statement changed (`changes`: +1 per row after, -1 per
-- row before) into delivery_counts; only groups whose figures moved are written. Run by the
-- trigger function below, which alone sees the transition tables.
DROP FUNCTION IF EXISTS mailfold_count_changes(text);
CREATE OR REPLACE FUNCTION mailfold_count_sql(changes text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT format($sql$
        WITH changes AS (%s),
        deltas AS (
            SELECT account_id, delivery_id, campaign_id,
                   sum(sign) AS recipient_count,
                   coalesce(sum(sign) FILTER (WHERE sent_at IS NOT NULL), 0) AS sent_count,
                   coalesce(sum(sign) FILTER (WHERE delivered_at IS NOT NULL), 0) AS delivered_count,
                   coalesce(sum(sign) FILTER (WHERE opened_at IS NOT NULL), 0) AS opened_count,
                   coalesce(sum(sign) FILTER (WHERE clicked_at IS NOT NULL), 0) AS clicked_count,
                   coalesce(sum(sign) FILTER (WHERE bounced_at IS NOT NULL), 0) AS bounced_count,
                   coalesce(sum(sign) FILTER (WHERE dropped_at IS NOT NULL), 0) AS dropped_count,
                   coalesce(sum(sign) FILTER (WHERE unsubscribed_at IS NOT NULL), 0) AS unsubscribed_count,
                   coalesce(sum(sign) FILTER (WHERE complained_at IS NOT NULL), 0) AS complained_count,
                   coalesce(sum(sign) FILTER (WHERE converted_at IS NOT NULL), 0) AS converted_count,
                   coalesce(sum(sign) FILTER (WHERE human_opened_at IS NOT NULL), 0) AS human_opened_count,
                   coalesce(sum(sign) FILTER (WHERE human_clicked_at IS NOT NULL), 0) AS human_clicked_count,
                   -- the earliest send coming in, and the earliest among the rows replaced
                   min(sent_at) FILTER (WHERE sign > 0) AS first_sent_at,
                   min(sent_at) FILTER (WHERE sign < 0) AS replaced_sent_at
            FROM changes
            GROUP BY 1, 2, 3
        )
        INSERT INTO delivery_counts AS c
            (account_id, delivery_id, campaign_id, recipient_count, sent_count, delivered_count,
             opened_count, clicked_count, bounced_count, dropped_count, unsubscribed_count,
             complained_count, converted_count, human_opened_count, human_clicked_count,
             first_sent_at)
        SELECT account_id, delivery_id, campaign_id, recipient_count, sent_count, delivered_count,
               opened_count, clicked_count, bounced_count, dropped_count, unsubscribed_count,
               complained_count, converted_count, human_opened_count, human_clicked_count,
               first_sent_at
        FROM deltas
        WHERE (recipient_count, sent_count, delivered_count, opened_count, clicked_count,
               bounced_count, dropped_count, unsubscribed_count, complained_count,
               converted_count, human_opened_count, human_clicked_count)
              <> (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
           -- a send earlier than any it replaces may be the group's new first
           OR first_sent_at < coalesce(replaced_sent_at, 'infinity')
        ORDER BY 1, 2, 3
        ON CONFLICT (account_id, delivery_id, campaign_id) DO UPDATE SET
            recipient_count = c.recipient_count + excluded.recipient_count,
            sent_count = c.sent_count + excluded.sent_count,
            delivered_count = c.delivered_count + excluded.delivered_count,
            opened_count = c.opened_count + excluded.opened_count,
            clicked_count = c.clicked_count + excluded.clicked_count,
            bounced_count = c.bounced_count + excluded.bounced_count,
            dropped_count = c.dropped_count + excluded.dropped_count,
            unsubscribed_count = c.unsubscribed_count + excluded.unsubscribed_count,
            complained_count = c.complained_count + excluded.complained_count,
            converted_count = c.converted_count + excluded.converted_count,
            human_opened_count = c.human_opened_count + excluded.human_opened_count,
            human_clicked_count = c.human_clicked_count + excluded.human_clicked_count,
            first_sent_at = least(c.first_sent_at, excluded.first_sent_at)
    $sql$, changes)
$$;

-- The statement that corrects first_sent_at of the groups a send left (`departed`: the rows
-- before, of recipients deleted, moved to another campaign or whose send is gone or later):
-- only a group whose first send was among them is read again. Run by the trigger below.
CREATE OR REPLACE FUNCTION mailfold_first_sent_sql(departed text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT format($sql$
        WITH departed AS (%s)
        UPDATE delivery_counts c
        SET first_sent_at = (SELECT min(r.sent_at) FROM recipients r
                             WHERE r.account_id = c.account_id AND r.delivery_id = c.delivery_id
                               AND r.campaign_id IS NOT DISTINCT FROM c.campaign_id)
        FROM (SELECT account_id, delivery_id, campaign_id, min(sent_at) AS sent_at
              FROM departed GROUP BY 1, 2, 3) d
        WHERE c.account_id = d.account_id AND c.delivery_id = d.delivery_id
          AND c.campaign_id IS NOT DISTINCT FROM d.campaign_id AND c.first_sent_at >= d.sent_at
    $sql$, departed)
$$;

-- After every statement that changes recipient rows (the fold's upsert, the click-burst
-- correction, anything else): move the counts, and write the search text of new recipients and
-- of those whose searched fields changed.
CREATE OR REPLACE FUNCTION mailfold_recipients_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
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
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION mailfold_recipients_truncated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE recipient_search, delivery_counts;
    RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER recipients_inserted AFTER INSERT ON recipients
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION mailfold_recipients_changed();
CREATE OR REPLACE TRIGGER recipients_updated AFTER UPDATE ON recipients
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION mailfold_recipients_changed();
CREATE OR REPLACE TRIGGER recipients_deleted AFTER DELETE ON recipients
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION mailfold_recipients_changed();
CREATE OR REPLACE TRIGGER recipients_truncated AFTER TRUNCATE ON recipients
    FOR EACH STATEMENT EXECUTE FUNCTION mailfold_recipients_truncated();

-- Dead letters re-driven by `mailfold dlq retry`: the letter stays on mailfold.dlq (Kafka's log is
-- append-only), so whether and when it was retried is kept here, by its place on that topic.
CREATE TABLE IF NOT EXISTS dead_letter_retries (
    topic       text NOT NULL,
    partition   int NOT NULL,
    "offset"    bigint NOT NULL,
    retries     int NOT NULL DEFAULT 1,
    retried_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition, "offset")
);
