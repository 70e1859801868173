-- Refused webhook requests (service/refusals.py): written in batches, read by account.

-- name: record_webhook_refusals
-- Add a batch of refusals (parallel arrays), ids in the order given (the trim keeps the newest
-- by id); a refusal of an account deleted meanwhile is dropped.
INSERT INTO webhook_refusals
    (account_id, provider, refused_at, status, reason, remote_addr, request_id)
SELECT r.account_id, r.provider, r.refused_at, r.status, r.reason, r.remote_addr, r.request_id
FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::int[], $5::text[], $6::text[],
            $7::text[]) WITH ORDINALITY
    AS r (account_id, provider, refused_at, status, reason, remote_addr, request_id, n)
JOIN accounts a ON a.account_id = r.account_id
ORDER BY r.n;

-- name: trim_webhook_refusals
-- Keep only the newest $3 refusals of each (account, provider) pair in $1/$2.
DELETE FROM webhook_refusals w
USING (SELECT DISTINCT account_id, provider FROM unnest($1::text[], $2::text[])
       AS k (account_id, provider)) k
WHERE w.account_id = k.account_id AND w.provider = k.provider
  AND w.refusal_id < (
      SELECT x.refusal_id FROM webhook_refusals x
      WHERE x.account_id = k.account_id AND x.provider = k.provider
      ORDER BY x.refusal_id DESC OFFSET $3 - 1 LIMIT 1);

-- name: list_webhook_refusals
-- An account's latest refusals, newest first, for one provider or ($2 NULL) all of them.
SELECT provider, refused_at, status, reason, remote_addr, request_id
FROM webhook_refusals
WHERE account_id = $1 AND ($2::text IS NULL OR provider = $2)
ORDER BY refusal_id DESC
LIMIT $3;
