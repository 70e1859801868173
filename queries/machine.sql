-- The fold's whole-set machine rules (MACHINE.md e3), run after fold_fresh in the same
-- transaction. service/db.py loads this file with queries.sql.

-- name: mark_click_bursts
-- The whole-set rule (MACHINE.md e3): clicks on 3 or more distinct links within 2 seconds from one
-- address are a scanner's, the whole burst. Re-evaluated over the ledger for every recipient this
-- batch clicked for; adding clicks only ever adds bursts, so the verdict is the same for any
-- order or batching. Newly marked clicks are staged in `marked` for the counters.
WITH touched AS (
    SELECT DISTINCT account_id, delivery_id, recipient_key FROM fresh WHERE type = 'clicked'
),
clicks AS (
    SELECT e.event_id, e.occurred_at, e.account_id, e.delivery_id, e.recipient_key, e.url, e.ip,
           e.machine
    FROM events e JOIN touched t USING (account_id, delivery_id, recipient_key)
    WHERE e.type = 'clicked' AND e.url IS NOT NULL
),
-- a click that opens a 2-second window holding 3 or more distinct links from its address
anchors AS (
    SELECT a.account_id, a.delivery_id, a.recipient_key, a.ip, a.occurred_at AS start
    FROM clicks a
    WHERE (SELECT count(DISTINCT o.url) FROM clicks o
           WHERE o.account_id = a.account_id AND o.delivery_id = a.delivery_id
             AND o.recipient_key = a.recipient_key AND o.ip IS NOT DISTINCT FROM a.ip
             AND o.occurred_at BETWEEN a.occurred_at AND a.occurred_at + interval '2 seconds') >= 3
),
burst AS (
    SELECT DISTINCT c.event_id, c.occurred_at, c.machine IS FALSE AS was_human
    FROM clicks c JOIN anchors a
      ON c.account_id = a.account_id AND c.delivery_id = a.delivery_id
     AND c.recipient_key = a.recipient_key AND c.ip IS NOT DISTINCT FROM a.ip
     AND c.occurred_at BETWEEN a.start AND a.start + interval '2 seconds'
    WHERE c.machine IS NOT TRUE
),
updated AS (
    UPDATE events e
       SET machine = true, machine_reason = 'click_burst', agent_class = 'scanner'
      FROM burst b
     WHERE e.event_id = b.event_id AND e.occurred_at = b.occurred_at
    RETURNING e.account_id, e.delivery_id, e.recipient_key, e.url, e.occurred_at, b.was_human
)
INSERT INTO marked SELECT * FROM updated;

-- name: count_marked_clicks
-- Move the clicks marked as a burst from the human or undecided counts to the machine counts.
WITH per_recipient AS (
    SELECT account_id, delivery_id, recipient_key, count(*) AS n,
           count(*) FILTER (WHERE was_human) AS human
    FROM marked GROUP BY 1, 2, 3
),
recipient_rows AS (
    UPDATE recipients r
       SET click_machine_count = r.click_machine_count + p.n,
           click_human_count = r.click_human_count - p.human,
           human_clicked_at = (
               SELECT min(e.occurred_at) FROM events e
               WHERE e.account_id = r.account_id AND e.delivery_id = r.delivery_id
                 AND e.recipient_key = r.recipient_key AND e.type = 'clicked'
                 AND e.machine IS FALSE)
      FROM per_recipient p
     WHERE r.account_id = p.account_id AND r.delivery_id = p.delivery_id
       AND r.recipient_key = p.recipient_key
),
stats AS (
    UPDATE delivery_stats s
       SET machine_count = s.machine_count + m.n, human_count = s.human_count - m.human
      FROM (SELECT account_id, delivery_id, date_trunc('hour', occurred_at, 'UTC') AS hour,
                   count(*) AS n, count(*) FILTER (WHERE was_human) AS human
            FROM marked GROUP BY 1, 2, 3) m
     WHERE s.account_id = m.account_id AND s.delivery_id = m.delivery_id AND s.hour = m.hour
       AND s.type = 'clicked'
)
UPDATE link_stats l
   SET machine_count = l.machine_count + m.n
  FROM (SELECT account_id, delivery_id, url, recipient_key, count(*) AS n
        FROM marked GROUP BY 1, 2, 3, 4) m
 WHERE l.account_id = m.account_id AND l.delivery_id = m.delivery_id AND l.url = m.url
   AND l.recipient_key = m.recipient_key;
