"""Switching is a config change: one product, one application, two environments.

``dev`` runs on the embedded providers; ``prd`` on real servers started here (S3 on moto, the
Tansu Kafka broker, the machine's PostgreSQL and Redis, an aiosmtpd SMTP server). The same
script (tests/switch/app.py) must observe the same results in both.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from ductwork.testing.servers import kafka_broker, moto_server, smtp_server

HERE = Path(__file__).parent / "switch"


def psql(sql: str, database: str = "postgres") -> None:
    subprocess.run(
        [
            "psql",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            database,
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def prd_servers():
    database = f"dw_switch_{uuid.uuid4().hex[:8]}"
    psql(f"CREATE DATABASE {database}")
    try:
        with moto_server() as s3, kafka_broker() as kafka, smtp_server() as smtp:
            yield (
                {
                    "S3_ENDPOINT": s3.url,
                    "S3_SECRET": "testing-secret-key",
                    "KAFKA_BOOTSTRAP": kafka.address,
                    "ORDER_TOPIC": f"orders-{uuid.uuid4().hex[:8]}",
                    "DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{database}",
                    "REDIS_URL": "redis://127.0.0.1:6379/3",
                    "SMTP_PORT": str(smtp.port),
                },
                smtp,
            )
    finally:
        psql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


def run_app(folder: Path, env: str, extra_env: dict[str, str], order: int) -> dict:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DUCTWORK_")}
    environ.update(extra_env)
    out = subprocess.run(
        [
            sys.executable,
            str(folder / "app.py"),
            "--config",
            str(folder / "ductwork.yaml"),
            "--env",
            env,
            "--order",
            str(order),
        ],
        cwd=folder,
        capture_output=True,
        text=True,
        env=environ,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_same_app_observes_the_same_results_on_dev_and_prd(tmp_path, prd_servers):
    environ, smtp = prd_servers
    for name in ("ductwork.yaml", "app.py"):
        shutil.copy(HERE / name, tmp_path / name)
    order = int(uuid.uuid4().int % 1_000_000)
    dev = run_app(tmp_path, "dev", environ, order)
    prd = run_app(tmp_path, "prd", environ, order)
    assert dev == prd
    assert dev["order"] == {"id": order, "item": "lamp", "total": 40}
    assert dev["event"] == {"id": order, "item": "lamp"}
    # the side effects landed where each env says
    assert list((tmp_path / ".ductwork/outbox").glob("*.eml"))
    [mail] = [m for m in smtp.messages if f"Your order {order}" in str(m.message["Subject"])]
    assert mail.rcpt_tos == ["ada@example.com"]
    assert (tmp_path / f".ductwork/receipts/receipts/{order}.txt").exists()


def test_doctor_reports_each_prd_resource_and_what_is_wrong(tmp_path, prd_servers):
    environ, _ = prd_servers
    shutil.copy(HERE / "ductwork.yaml", tmp_path / "ductwork.yaml")
    base = {k: v for k, v in os.environ.items() if not k.startswith("DUCTWORK_")}

    def doctor(overrides: dict[str, str]) -> tuple[int, dict]:
        out = subprocess.run(
            [sys.executable, "-m", "ductwork", "doctor", "--env", "prd", "--json"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env={**base, **environ, **overrides},
            timeout=120,
        )
        return out.returncode, json.loads(out.stdout)

    code, report = doctor({})
    assert code == 0, report
    rows = {r["resource"]: r for r in report["resources"]}
    assert {r["provider"] for r in rows.values()} == {"s3", "kafka", "postgres", "redis", "smtp"}
    assert all(r["ok"] and r["latency_ms"] is not None for r in rows.values())

    code, report = doctor({"REDIS_URL": "redis://:hunter2secret@127.0.0.1:1/0"})
    assert code == 1
    rows = {r["resource"]: r for r in report["resources"]}
    assert not rows["caches.hot"]["ok"]
    assert "127.0.0.1:1" in rows["caches.hot"]["detail"]
    assert "hunter2secret" not in json.dumps(report)
    assert all(r["ok"] for name, r in rows.items() if name != "caches.hot")
