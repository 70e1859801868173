-- Mailfold's PostgreSQL schema. Safe to apply again: every statement is IF NOT EXISTS or
-- CREATE OR REPLACE. Times are timestamptz (UTC on the wire); ids are text as the platform
-- sends them; counters are *_count.
-- It is the whole current schema, to read; databases are built and upgraded by the numbered
-- files of migrations/ (`mailfold migrate`), and tests/test_migrations.py checks that both give
-- the same catalog.

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
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS disabled_at timestamptz;

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

-- The ledger's yearly partitions from this year to `ahead` from now, made before their events
-- arrive (`mailfold migrate` and the fold, once a day, call it). Years are UTC years: Mailfold's
-- sessions run in UTC, as the partitions of 2015 to 2035 were made. An event of a year without a
-- partition waits in events_default; PostgreSQL refuses a partition whose range has rows there,
-- so they are taken out and put back through the new partition in the same transaction, with
-- the ledger's writers held off meanwhile. A year already made costs one lookup; returns the
-- number of partitions made.
CREATE OR REPLACE FUNCTION mailfold_ensure_partitions(ahead interval DEFAULT interval '2 years')
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    this_year int := extract(year FROM now() AT TIME ZONE 'UTC');
    last_year int := extract(year FROM (now() + ahead) AT TIME ZONE 'UTC');
    made int := 0;
    y int;
    bounds text;
BEGIN
    FOR y IN this_year..last_year LOOP
        CONTINUE WHEN to_regclass(format('events_%s', y)) IS NOT NULL;
        LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE;
        -- another session may have made it while this one waited for the lock
        CONTINUE WHEN to_regclass(format('events_%s', y)) IS NOT NULL;
        bounds := format('occurred_at >= %L AND occurred_at < %L',
                        make_date(y, 1, 1), make_date(y + 1, 1, 1));
        EXECUTE 'CREATE TEMP TABLE mailfold_waiting ON COMMIT DROP AS '
                'SELECT * FROM events_default WHERE ' || bounds;
        EXECUTE 'DELETE FROM events_default WHERE ' || bounds;
        EXECUTE format('CREATE TABLE events_%s PARTITION OF events FOR VALUES FROM (%L) TO (%L)',
                       y, make_date(y, 1, 1), make_date(y + 1, 1, 1));
        EXECUTE 'INSERT INTO events SELECT * FROM mailfold_waiting';
        EXECUTE 'DROP TABLE mailfold_waiting';
        made := made + 1;
    END LOOP;
    RETURN made;
END $$;

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
-- For the report builder: the greatest source of the recipient's events, and the kind of its
-- drop (mailfold_drop_kind, the greatest when several).
ALTER TABLE recipients ADD COLUMN IF NOT EXISTS source text;
ALTER TABLE recipients ADD COLUMN IF NOT EXISTS drop_kind text;
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
-- (after the feed's columns, where upgraded ledgers have them)
-- the report builder's audience of an open or click, read by the fold (service/audience.py): the
-- mail client or browser family of user_agent and the country of ip; NULL for other events
ALTER TABLE events ADD COLUMN IF NOT EXISTS client text;
ALTER TABLE events ADD COLUMN IF NOT EXISTS country text;

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

-- The numbered migrations (migrations/NNNN_name.sql) applied to this database, each with the
-- SHA-256 of its text when applied; written by `mailfold migrate` (service/migrations.py), which
-- builds every database, new or old, by running those not yet here in order.
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
