"""The stack supervisor's back-off, the hold an operation puts on an app, and the fault proxy
the chaos suite puts between a worker and its sink (on loopback sockets of the test's own)."""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time
from dataclasses import replace

import pytest

from infra.local.stack import held, hold, release
from infra.local.supervisor import Backoff
from infra.testing.faultproxy import FaultProxy
from services.config import StackConfig


def test_a_process_that_keeps_dying_is_restarted_at_once_then_after_growing_pauses():
    backoff, rng, now = Backoff(), random.Random(1), 1000.0
    delays = []
    for _ in range(8):
        waited = 0.0
        while not backoff.due(now + waited, rng):
            waited += 0.1
        delays.append(round(waited))
        now += waited
        backoff.restarts, backoff.started = backoff.restarts + 1, now
    assert delays[0] == 0
    assert delays == sorted(delays) and 24 <= delays[-1] <= 36  # 2, 4, 8, 16, then 30 (jittered)


def test_the_back_off_starts_over_once_the_process_stayed_up_a_minute():
    backoff, rng = Backoff(restarts=5, started=0.0), random.Random(1)
    assert not backoff.due(10.0, rng)
    assert backoff.due(61.0, rng) and backoff.restarts == 0


def test_an_app_held_by_an_operation_stays_held_until_released(tmp_path):
    stack = replace(StackConfig.from_env({}), state_dir=tmp_path)
    assert held(stack, "some_app") is None
    hold(stack, "some_app", "cdc replay")
    assert held(stack, "some_app").endswith("cdc replay")
    release(stack, "some_app")
    assert held(stack, "some_app") is None


@pytest.fixture
def echo_server():
    server = socket.create_server(("127.0.0.1", 0))

    def echo(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # the proxy resets it when it drops
            while data := conn.recv(4096):
                conn.sendall(data)

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()
    server.close()


def _round_trip(port: int, payload: bytes = b"ping") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(payload)
        return conn.recv(4096)


def test_the_proxy_passes_then_delays_then_drops(echo_server):
    proxy = FaultProxy(echo_server, delay_s=0.3).start()
    try:
        assert _round_trip(proxy.port) == b"ping"
        proxy.mode = "delay"
        started = time.monotonic()
        assert _round_trip(proxy.port) == b"ping"
        assert time.monotonic() - started >= 0.6  # delayed both ways
        proxy.mode = "drop"
        with pytest.raises((ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
            reply = _round_trip(proxy.port)
            if not reply:  # closed without a reset on this kernel: no answer either way
                raise ConnectionResetError
        proxy.mode = "pass"
        assert _round_trip(proxy.port) == b"ping"
    finally:
        proxy.stop()


def test_dropping_resets_the_connections_already_open(echo_server):
    proxy = FaultProxy(echo_server).start()
    try:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as conn:
            conn.sendall(b"a")
            assert conn.recv(10) == b"a"
            proxy.mode = "drop"
            time.sleep(0.2)
            with pytest.raises((ConnectionResetError, BrokenPipeError)):
                conn.sendall(b"b")
                if not conn.recv(10):
                    raise ConnectionResetError
    finally:
        proxy.stop()
