-- A month of one account's ledger for the report builder's benchmark (bench/phases/reports.py):
-- $2 deliveries in 100 campaigns, each sent at a random time of the month starting $4 to $3
-- recipients over two hours. 98 % are delivered, 2 % bounce (a third hard), 45 % open one to
-- three times over the following days (an hour's mean wait of eight), 10 % click, 0.5 %
-- unsubscribe and 0.1 % complain; every fifth delivery is an A/B test. Opens and clicks carry a
-- client and a country, as the fold would have read them. About 3 events per recipient.
INSERT INTO events (event_id, occurred_at, account_id, source, type, native_type, campaign_id,
                    delivery_id, message_id, recipient_key, email, bounce_class, bounce_code,
                    bounce_reason, machine, ab_version, client, country)
WITH deliveries AS (
    SELECT g, 'c-' || (g % 100) AS campaign_id, 'd-' || g AS delivery_id,
           $4::timestamptz + random() * interval '27 days' AS sent_at
    FROM generate_series(1, $2::int) g
),
recipients AS (
    SELECT d.campaign_id, d.delivery_id, k, 'r' || k || '@example.com' AS email,
           d.sent_at + (k % 7200) * interval '1 second' AS sent_at,
           CASE WHEN d.g % 5 = 0 THEN (ARRAY['A', 'B'])[1 + k % 2] END AS ab_version,
           random() AS fate, random() AS interest,
           (ARRAY['Apple Mail', 'Gmail Image Proxy', 'Outlook', 'Chrome', 'Mobile Safari',
                  'Thunderbird', 'Yahoo Mail Proxy', 'Firefox'])[1 + (random() * 7)::int] AS client,
           (ARRAY['United States', 'Germany', 'France', 'United Kingdom', 'Brazil', 'India',
                  'Japan', 'Canada', 'Spain', 'Italy', 'Netherlands', 'Poland'])
               [1 + (random() * 11)::int] AS country
    FROM deliveries d CROSS JOIN generate_series(1, $3::int) k
),
moments AS (
    SELECT r.*, m.type, m.at
    FROM recipients r
    CROSS JOIN LATERAL (
        SELECT 'sent' AS type, r.sent_at AS at
        UNION ALL
        SELECT 'delivered', r.sent_at + interval '5 seconds' WHERE r.fate >= 0.02
        UNION ALL
        SELECT 'bounced', r.sent_at + interval '20 seconds' WHERE r.fate < 0.02
        UNION ALL
        SELECT 'opened', r.sent_at + (-ln(1 - random()) * 8) * interval '1 hour'
        FROM generate_series(1, 1 + (r.interest * 1000)::int % 3)
        WHERE r.fate >= 0.02 AND r.interest < 0.45
        UNION ALL
        SELECT 'clicked', r.sent_at + (-ln(1 - random()) * 9) * interval '1 hour'
        WHERE r.fate >= 0.02 AND r.interest < 0.10
        UNION ALL
        SELECT 'unsubscribed', r.sent_at + interval '10 hours'
        WHERE r.fate >= 0.02 AND r.interest < 0.005
        UNION ALL
        SELECT 'complained', r.sent_at + interval '12 hours' WHERE r.fate BETWEEN 0.02 AND 0.021
    ) m
)
SELECT gen_random_uuid(), at, $1, 'sendgrid', type, type, campaign_id, delivery_id,
       delivery_id || '.' || k, email, email,
       CASE WHEN type = 'bounced' THEN (CASE WHEN fate < 0.007 THEN 'hard' ELSE 'soft' END) END,
       CASE WHEN type = 'bounced' THEN (CASE WHEN fate < 0.007 THEN '5.1.1' ELSE '4.2.2' END) END,
       CASE WHEN type = 'bounced' THEN (CASE WHEN fate < 0.007 THEN 'user unknown'
                                             ELSE 'mailbox full' END) END,
       CASE WHEN type IN ('opened', 'clicked') THEN random() < 0.3 END,
       ab_version,
       CASE WHEN type IN ('opened', 'clicked') THEN client END,
       CASE WHEN type IN ('opened', 'clicked') THEN country END
FROM moments;
