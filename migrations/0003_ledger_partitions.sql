-- 0003: the ledger's yearly partitions made ahead of time, with no last year.

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
