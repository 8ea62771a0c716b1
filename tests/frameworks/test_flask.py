"""The Flask recipe (an app-factory extension) and a worker beside it: requests from eight
threads through Flask's test client dispatch mails that ``ductwork worker --burst`` sends."""

from __future__ import annotations

import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ductwork.builtin.mailbox import read_outbox

THREADS = 8
SIGNUPS = 3


def test_the_factory_extension_serves_threads_and_a_worker_runs_the_jobs(recipe, product):
    recipe.write("flask_ductwork.py")
    module = recipe.load("flask_ductwork")
    app = module.create_app({"DUCTWORK_CONFIG": str(product), "DUCTWORK_ENV": "dev"})
    start = threading.Barrier(THREADS)

    def sign_up(thread: int) -> list[str]:
        http = app.test_client()
        start.wait()
        jobs = []
        for i in range(SIGNUPS):
            user = {"email": f"u{thread}-{i}@example.com", "name": f"U{thread}-{i}"}
            reply = http.post("/signup", json=user)
            assert reply.status_code == 200, reply.text
            jobs.append(reply.json["job"])
        return jobs

    try:
        with ThreadPoolExecutor(THREADS) as pool:
            jobs = [job for batch in pool.map(sign_up, range(THREADS)) for job in batch]
        assert len(set(jobs)) == THREADS * SIGNUPS
        assert app.test_client().get("/signups").json == {"count": THREADS * SIGNUPS}
    finally:
        app.extensions["ductwork"].close()

    ductwork = Path(sys.executable).parent / "ductwork"
    worker = subprocess.run(
        [str(ductwork), "worker", "--burst", "--config", str(product), "--env", "dev"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert worker.returncode == 0, worker.stderr
    sent = read_outbox(product.parent / ".ductwork" / "outbox")
    assert sorted(to for n in sent for to in n.to) == sorted(
        f"u{t}-{i}@example.com" for t in range(THREADS) for i in range(SIGNUPS)
    )
