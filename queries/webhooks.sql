-- Webhook nonces (service/nonces.py): repeats of verified requests already on the broker.

-- name: find_webhook_nonce
-- Whether this account's provider nonce was accepted before and is still within its window.
SELECT EXISTS (
    SELECT 1 FROM webhook_nonces
    WHERE account_id = $1 AND provider = $2 AND nonce = $3 AND expires_at > now()
);

-- name: remember_webhook_nonce
-- Remember an accepted request's nonce until $4; true when it was not remembered already.
INSERT INTO webhook_nonces AS n (account_id, provider, nonce, expires_at) VALUES ($1, $2, $3, $4)
ON CONFLICT (account_id, provider, nonce) DO UPDATE
    SET expires_at = greatest(n.expires_at, excluded.expires_at)
RETURNING xmax = 0 AS new;

-- name: delete_expired_webhook_nonces
-- Forget nonces whose window has passed (the timestamp check refuses their requests anyway).
DELETE FROM webhook_nonces WHERE expires_at <= now();
