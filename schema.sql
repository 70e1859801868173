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

CREATE INDEX IF NOT EXISTS events_recipient_idx
    ON events (account_id, delivery_id, recipient_key, occurred_at);
CREATE INDEX IF NOT EXISTS events_pending_idx
    ON events (account_id, message_id) WHERE delivery_id IS NULL;

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

CREATE INDEX IF NOT EXISTS recipients_delivered_at_idx
    ON recipients (account_id, delivery_id, delivered_at, recipient_key);
CREATE INDEX IF NOT EXISTS recipients_opened_at_idx
    ON recipients (account_id, delivery_id, opened_at, recipient_key) WHERE opened_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS recipients_clicked_at_idx
    ON recipients (account_id, delivery_id, clicked_at, recipient_key) WHERE clicked_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS recipients_bounced_at_idx
    ON recipients (account_id, delivery_id, bounced_at, recipient_key) WHERE bounced_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS recipients_unsubscribed_at_idx
    ON recipients (account_id, delivery_id, unsubscribed_at, recipient_key)
    WHERE unsubscribed_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS recipients_complained_at_idx
    ON recipients (account_id, delivery_id, complained_at, recipient_key)
    WHERE complained_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS recipients_converted_at_idx
    ON recipients (account_id, delivery_id, converted_at, recipient_key)
    WHERE converted_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS recipients_human_opened_at_idx
    ON recipients (account_id, delivery_id, human_opened_at, recipient_key)
    WHERE human_opened_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS recipients_human_clicked_at_idx
    ON recipients (account_id, delivery_id, human_clicked_at, recipient_key)
    WHERE human_clicked_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS recipients_surname_idx
    ON recipients (account_id, delivery_id, surname, recipient_key);

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
CREATE INDEX IF NOT EXISTS events_contact_idx ON events (account_id, recipient_key, occurred_at);

-- Recipient lists: search, flag and version filters, the undelivered list, and the sorts.
CREATE INDEX IF NOT EXISTS recipients_search_idx ON recipients
    USING gin (mailfold_search_text(email, first_name, surname, client_contact_id) gin_trgm_ops);
CREATE INDEX IF NOT EXISTS recipients_ab_version_idx
    ON recipients (account_id, delivery_id, ab_version, recipient_key)
    WHERE ab_version IS NOT NULL;
CREATE INDEX IF NOT EXISTS recipients_status_idx
    ON recipients (account_id, delivery_id, status_rank, recipient_key);
CREATE INDEX IF NOT EXISTS recipients_dropped_at_idx
    ON recipients (account_id, delivery_id, dropped_at, recipient_key)
    WHERE dropped_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS recipients_undelivered_idx
    ON recipients (account_id, delivery_id, recipient_key)
    WHERE dropped_at IS NOT NULL OR bounced_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS recipients_email_idx
    ON recipients (account_id, delivery_id, email, recipient_key);
CREATE INDEX IF NOT EXISTS recipients_first_name_idx
    ON recipients (account_id, delivery_id, first_name, recipient_key);
CREATE INDEX IF NOT EXISTS recipients_contact_id_idx
    ON recipients (account_id, delivery_id, contact_id, recipient_key);
CREATE INDEX IF NOT EXISTS recipients_client_contact_id_idx
    ON recipients (account_id, delivery_id, client_contact_id, recipient_key);
CREATE INDEX IF NOT EXISTS recipients_sent_at_idx
    ON recipients (account_id, delivery_id, sent_at, recipient_key);
CREATE INDEX IF NOT EXISTS recipients_opened_at_sort_idx
    ON recipients (account_id, delivery_id, opened_at, recipient_key);
CREATE INDEX IF NOT EXISTS recipients_opened_at_desc_idx
    ON recipients (account_id, delivery_id, opened_at DESC NULLS LAST, recipient_key);
CREATE INDEX IF NOT EXISTS recipients_clicked_at_sort_idx
    ON recipients (account_id, delivery_id, clicked_at, recipient_key);
CREATE INDEX IF NOT EXISTS recipients_clicked_at_desc_idx
    ON recipients (account_id, delivery_id, clicked_at DESC NULLS LAST, recipient_key);
CREATE INDEX IF NOT EXISTS recipients_open_count_idx
    ON recipients (account_id, delivery_id, open_count DESC NULLS LAST, recipient_key);
CREATE INDEX IF NOT EXISTS recipients_click_count_idx
    ON recipients (account_id, delivery_id, click_count DESC NULLS LAST, recipient_key);

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
