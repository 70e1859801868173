"""delivery_counts.first_sent_at is the earliest send of its group's recipient rows, whatever
statement changed them: an earlier send, a recipient gaining its campaign, a deletion."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from service import db

pytestmark = pytest.mark.integration

T = [datetime(2025, 6, 1, h, tzinfo=UTC) for h in range(24)]
INSERT = """INSERT INTO recipients (account_id, delivery_id, recipient_key, campaign_id, sent_at)
SELECT 'a', 'd1', k, c, s FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS x(k, c, s)"""


async def groups(conn: Any) -> dict[str | None, datetime | None]:
    rows = await conn.fetch("SELECT campaign_id, first_sent_at FROM delivery_counts")
    return {r["campaign_id"]: r["first_sent_at"] for r in rows}


async def test_first_send_follows_the_rows(database: str) -> None:
    conn = await db.connect(database)
    try:
        await conn.execute(INSERT, ["ann", "bob", "cy"], ["c1", None, None], [T[5], T[2], T[3]])
        assert await groups(conn) == {"c1": T[5], None: T[2]}
        # an earlier send of a recipient already counted: no counter moves, the first send does
        await conn.execute("UPDATE recipients SET sent_at = $1 WHERE recipient_key = 'ann'", T[4])
        assert (await groups(conn))["c1"] == T[4]
        # bob gains his campaign: his send leaves the unattributed group for c1's
        await conn.execute("UPDATE recipients SET campaign_id = 'c1' WHERE recipient_key = 'bob'")
        assert await groups(conn) == {"c1": T[2], None: T[3]}
        # deleting c1's first send moves its first send on to ann's
        await conn.execute("DELETE FROM recipients WHERE recipient_key = 'bob'")
        assert await groups(conn) == {"c1": T[4], None: T[3]}
        # a send that is corrected to later, or unset, is read again
        await conn.execute("UPDATE recipients SET sent_at = $1 WHERE recipient_key = 'ann'", T[6])
        await conn.execute("UPDATE recipients SET sent_at = NULL WHERE recipient_key = 'cy'")
        assert await groups(conn) == {"c1": T[6], None: None}
    finally:
        await conn.close()
