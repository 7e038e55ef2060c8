"""Print the state of a PostgreSQL URL for scripts: ``ok``, ``down`` or ``refused: <why>``.

Usage: python scripts/pg_check.py URL  (exit 0 for ok, 1 for down, 2 for refused)
"""

import asyncio
import socket
import sys
from urllib.parse import urlsplit

import asyncpg


async def _select1(url: str) -> None:
    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.fetchval("SELECT 1")
    finally:
        await conn.close()


def main() -> int:
    url = sys.argv[1]
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), 2).close()
    except OSError:
        print("down")
        return 1
    try:
        asyncio.run(_select1(url))
    except Exception as e:
        print(f"refused: {type(e).__name__}: {e}")
        return 2
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
