-- Operating accounts and their provider settings from the `mailfold` command.

-- name: list_accounts
-- Every account with the providers it has configured (secrets never leave the table).
SELECT a.account_id AS account, a.name, a.login, a.allowed_ips::text[] AS allowed_ips, a.created_at,
       coalesce(array_agg(p.provider ORDER BY p.provider) FILTER (WHERE p.provider IS NOT NULL),
                '{}') AS providers
FROM accounts a LEFT JOIN provider_settings p USING (account_id)
GROUP BY a.account_id ORDER BY a.account_id;

-- name: rotate_account_secret
-- A new keyed secret hash; the old secret stops working (the service caches a login for at most
-- a few seconds).
UPDATE accounts SET secret_hash = $2 WHERE account_id = $1;

-- name: list_provider_settings
-- An account's provider settings: options and which secret slots are filled, not the secrets.
SELECT p.provider, p.options, p.updated_at,
       coalesce(array_agg(s.slot ORDER BY s.slot) FILTER (WHERE s.slot IS NOT NULL), '{}')
           AS secret_slots
FROM provider_settings p
LEFT JOIN provider_secrets s USING (account_id, provider)
WHERE p.account_id = $1
GROUP BY p.provider, p.options, p.updated_at ORDER BY p.provider;

-- name: delete_provider_settings
-- Forget a provider's options and secrets for an account; its webhook then answers 404.
WITH secrets AS (DELETE FROM provider_secrets WHERE account_id = $1 AND provider = $2)
DELETE FROM provider_settings WHERE account_id = $1 AND provider = $2;

-- name: show_account
-- One account as `mailfold accounts show` prints it: no secret, nor its hash.
SELECT a.account_id AS account, a.name, a.login, a.allowed_ips::text[] AS allowed_ips,
       a.time_zone, a.created_at, a.disabled_at,
       coalesce(array_agg(p.provider ORDER BY p.provider) FILTER (WHERE p.provider IS NOT NULL),
                '{}') AS providers
FROM accounts a LEFT JOIN provider_settings p USING (account_id)
WHERE a.account_id = $1
GROUP BY a.account_id;

-- name: set_account_disabled
-- Disable an account (its webhooks, Event API and read API are refused) or, with false, enable
-- it again; a second disable keeps the first time. The account's data stays.
UPDATE accounts SET disabled_at = CASE WHEN $2 THEN coalesce(disabled_at, now()) END
WHERE account_id = $1
RETURNING disabled_at;

-- name: find_login
-- Basic-auth lookup, with whether the account is disabled.
SELECT account_id, secret_hash, allowed_ips::text[] AS allowed_ips, disabled_at
FROM accounts WHERE login = $1;

-- name: get_account_provider_credentials
-- One account's options and active secrets for one provider, with whether the account is
-- disabled.
SELECT s.options, a.disabled_at,
       coalesce(array_agg(k.secret_enc ORDER BY k.slot) FILTER (WHERE k.slot IS NOT NULL),
                '{}') AS secrets
FROM provider_settings s
JOIN accounts a ON a.account_id = s.account_id
LEFT JOIN provider_secrets k ON k.account_id = s.account_id AND k.provider = s.provider
WHERE s.account_id = $1 AND s.provider = $2
GROUP BY s.options, a.disabled_at;

-- name: show_provider_settings
-- One provider's settings for an account: options, filled secret slots, never the secrets.
SELECT p.provider, p.options, p.updated_at,
       coalesce(array_agg(s.slot ORDER BY s.slot) FILTER (WHERE s.slot IS NOT NULL), '{}')
           AS secret_slots
FROM provider_settings p
LEFT JOIN provider_secrets s USING (account_id, provider)
WHERE p.account_id = $1 AND p.provider = $2
GROUP BY p.provider, p.options, p.updated_at;
