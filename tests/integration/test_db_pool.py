"""The API's asyncpg pool: released connections come back clean without a reset query."""

from __future__ import annotations

from arforge.api.db import create_pool


async def test_a_transaction_left_open_is_rolled_back_on_release(fresh_db: str) -> None:
    pool = await create_pool(fresh_db, min_size=1, max_size=1)
    try:
        await pool.execute("CREATE TEMP TABLE t (x int)")
        async with pool.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            await conn.execute("INSERT INTO t VALUES (1)")  # never committed
        async with pool.acquire() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT count(*) FROM t") == 0
    finally:
        await pool.close()


async def test_committed_work_survives_release(fresh_db: str) -> None:
    pool = await create_pool(fresh_db, min_size=1, max_size=1)
    try:
        await pool.execute("CREATE TEMP TABLE t (x int)")
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("INSERT INTO t VALUES (1)")
        assert await pool.fetchval("SELECT count(*) FROM t") == 1
    finally:
        await pool.close()
