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
