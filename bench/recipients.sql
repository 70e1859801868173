-- One delivery of $4 recipients for the reads phase, generated in PostgreSQL: a send's mix of
-- signals (about 0.4 % dropped, 1.5 % bounced, 30 % of the delivered opened, a tenth of those
-- clicked, rare unsubscribes and complaints, 0.5 % converted), names drawn from the same lists
-- as bench/generator.py, and the address bench.generator.reads_email(i) gives recipient i.
-- $1 account, $2 campaign, $3 delivery, $4 recipients, $5 first names, $6 surnames, $7 domains.
-- Run after SELECT setseed(...) in the same session, so the rows are the same every time.
WITH draws AS (
    SELECT i, random() AS fate, random() AS engage, random() AS click, random() AS extra,
           random() AS delay, random() AS name_draw
    FROM generate_series(1, $4::int) AS i
),
signals AS (
    SELECT i, name_draw, extra,
           timestamptz '2025-06-03 08:00:00+00' + (i * interval '3 milliseconds') AS sent_at,
           fate < 0.004 AS dropped,
           fate >= 0.004 AND fate < 0.019 AS bounced,
           fate >= 0.004 AND fate < 0.0145 AS hard,
           fate >= 0.019 AS delivered,
           fate >= 0.019 AND engage < 0.30 AS opened,
           fate >= 0.019 AND engage < 0.03 AND click < 0.9 AS clicked,
           fate >= 0.019 AND extra < 0.002 AS unsubscribed,
           fate >= 0.019 AND extra > 0.9997 AS complained,
           fate >= 0.019 AND engage < 0.30 AND click > 0.98 AS converted,
           delay
    FROM draws
),
times AS (
    SELECT s.*,
           CASE WHEN delivered THEN sent_at + delay * interval '30 seconds' END AS delivered_at,
           CASE WHEN opened THEN sent_at + delay * interval '2 days' END AS opened_at,
           CASE WHEN clicked THEN sent_at + delay * interval '2 days' + interval '3 minutes'
           END AS clicked_at
    FROM signals s
)
INSERT INTO recipients (
    account_id, delivery_id, recipient_key, campaign_id, email, contact_id, client_contact_id,
    first_name, surname, sent_at, delivered_at, dropped_at, bounced_at, hard_bounced_at,
    bounce_class, bounce_code, bounce_reason, opened_at, last_opened_at, human_opened_at,
    open_count, open_human_count, open_machine_count, clicked_at, last_clicked_at,
    human_clicked_at, click_count, click_human_count, click_machine_count, unsubscribed_at,
    complained_at, converted_at, conversions_count, conversions_amount, conversions_currency,
    status_rank, first_event_at, last_event_at, event_count)
SELECT $1, $3, email, $2, email, (100000 + i)::text, 'CRM-' || lpad(i::text, 7, '0'),
       ($5::text[])[1 + (name_draw * 1000)::int % cardinality($5::text[])],
       ($6::text[])[1 + (name_draw * 100000)::int % cardinality($6::text[])],
       sent_at, delivered_at,
       CASE WHEN dropped THEN sent_at + interval '1 second' END,
       CASE WHEN bounced THEN sent_at + interval '20 seconds' END,
       CASE WHEN hard THEN sent_at + interval '20 seconds' END,
       CASE WHEN hard THEN 'hard' WHEN bounced THEN 'soft' END,
       CASE WHEN hard THEN '5.1.1' WHEN bounced THEN '4.7.0' END,
       CASE WHEN bounced THEN 'bounced' END,
       opened_at, opened_at, CASE WHEN opened AND extra < 0.65 THEN opened_at END,
       CASE WHEN opened THEN 1 + (extra * 3)::int ELSE 0 END,
       CASE WHEN opened AND extra < 0.65 THEN 1 ELSE 0 END,
       CASE WHEN opened AND extra >= 0.65 THEN 1 ELSE 0 END,
       clicked_at, clicked_at, clicked_at,
       CASE WHEN clicked THEN 1 ELSE 0 END, CASE WHEN clicked THEN 1 ELSE 0 END, 0,
       CASE WHEN unsubscribed THEN coalesce(opened_at, delivered_at) + interval '1 minute' END,
       CASE WHEN complained THEN delivered_at + interval '1 hour' END,
       CASE WHEN converted THEN opened_at + interval '10 minutes' END,
       CASE WHEN converted THEN 1 ELSE 0 END,
       CASE WHEN converted THEN round((20 + extra * 200)::numeric, 2) END,
       CASE WHEN converted THEN 'EUR' END,
       CASE WHEN complained THEN 10 WHEN hard THEN 9 WHEN unsubscribed THEN 8
            WHEN clicked THEN 7 WHEN opened THEN 6 WHEN delivered THEN 5 WHEN bounced THEN 4
            WHEN dropped THEN 3 ELSE 1 END,
       sent_at, greatest(sent_at, delivered_at, opened_at, clicked_at),
       2 + CASE WHEN opened THEN 1 ELSE 0 END + CASE WHEN clicked THEN 1 ELSE 0 END
FROM (SELECT t.*, 'r' || i || '@' || ($7::text[])[1 + i % cardinality($7::text[])] AS email
      FROM times t) AS r;
