"""The test servers start, answer, and stop (freeing their port)."""

from __future__ import annotations

import smtplib
import socket

from ductwork.testing.servers import kafka_broker, moto_server, smtp_server


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_moto_and_kafka_start_and_stop():
    for launcher in (moto_server, kafka_broker):
        with launcher() as server:
            assert server.process.poll() is None
            port = server.port
        assert server.process.poll() is not None
        assert port_free(port)


def test_smtp_server_keeps_what_it_receives():
    with smtp_server() as server, smtplib.SMTP(server.host, server.port) as client:
        client.sendmail("a@example.com", ["b@example.com"], b"Subject: hi\r\n\r\nbody\r\n")
        [mail] = server.messages
        assert mail.rcpt_tos == ["b@example.com"]
        assert mail.message["Subject"] == "hi"
