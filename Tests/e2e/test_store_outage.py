"""A store outage does not take the gateway down: requests go on, their usage records wait in the queue and
reach PostgreSQL once it is back. The outage is a TCP proxy in front of the test server that drops every
connection and refuses new ones, so the shared server itself is never stopped."""

from __future__ import annotations

import json
import os
import re
import socket
import threading

import httpx
import pytest

from e2e_support import chat_body, free_port, nonce, wait_until

MASTER = "master-" + "b" * 32
POSTGRES = os.environ.get("SLUICE_TEST_POSTGRES_URL")

pytestmark = pytest.mark.skipif(not POSTGRES, reason="needs SLUICE_TEST_POSTGRES_URL (scripts/start-postgres)")


class OutageProxy:
    """Forwards 127.0.0.1:port to a target port until `down()`, which cuts every connection and stops listening."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            _shutdown(listener)
            listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            _shutdown(s)
            s.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            _shutdown(sink)


def _shutdown(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_records_made_during_a_store_outage_arrive_when_it_is_back(procs):
    direct_port = int(re.search(r"@[^:/]+:(\d+)/", POSTGRES).group(1))
    proxy = OutageProxy(direct_port)
    proxy.up()
    proxied = POSTGRES.replace(f":{direct_port}/", f":{proxy.port}/", 1)
    model = f"outage-{nonce()}"
    mock = procs.start_mock("--model", model)
    gateway = procs.start_gateway(upstream=mock.url, args=["--database", proxied, "--master-key", MASTER])
    auth = {"authorization": f"Bearer {MASTER}"}

    def recorded() -> int:
        done = procs.run_sluice("usage", "--json", "--since", "1h", "--model", model, "--database", POSTGRES)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)["totals"]["requests"]

    try:
        with httpx.Client(timeout=30, headers=auth) as client:
            def chat() -> None:
                r = client.post(f"{gateway.v1}/chat/completions", json=chat_body(nonce(), model=model))
                assert r.status_code == 200, r.text

            def write_failures() -> float:
                return metric(client.get(f"{gateway.url}/metrics").text, "sluice_usage_write_failures_total")

            for _ in range(3):
                chat()
            wait_until(lambda: recorded() == 3, "the first records in PostgreSQL")

            proxy.down()
            for _ in range(5):
                chat()  # answered although the store is unreachable
            wait_until(lambda: write_failures() >= 1, "a failed write while the store is down")
            assert recorded() == 3

            proxy.up()
            wait_until(lambda: recorded() == 8, "the queued records after the store came back")
            assert client.get(f"{gateway.url}/metrics").status_code == 200
            assert metric(client.get(f"{gateway.url}/metrics").text, "sluice_usage_records_dropped_total") == 0
    finally:
        proxy.down()
