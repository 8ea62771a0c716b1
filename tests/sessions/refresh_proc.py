"""One process of the refresh race: ``refresh_proc.py URL FOLDER``.

It opens the client and its store, then for each refresh token read from stdin prints
``ready``, waits for ``go``, refreshes, and prints ``ok`` or the error's class name; it ends
at end of input.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from sessions_app import client, product


async def main(url: str, folder: str) -> None:
    async with client(product(url), Path(folder)) as dw:
        await dw.jobs.store()
        dw.sessions.keyring("users")
        for line in sys.stdin:
            token = line.strip()
            print("ready", flush=True)
            sys.stdin.readline()  # go
            try:
                await dw.sessions.refresh("users", token)
                print("ok", flush=True)
            except Exception as exc:
                print(type(exc).__name__, flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
