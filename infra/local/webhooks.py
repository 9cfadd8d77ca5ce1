"""The local webhook receiver: the subscribers of the apps with a ``webhook`` sink, on the local
stack and on LocalStack (``make up`` starts it; `python -m infra.local.webhooks --help`).

A real HTTP server on loopback (``CDC_BIND_HOST``:``CDC_WEBHOOK_PORT``, default 8090). It plays
every subscriber at ``/hooks/<subscriber>``:

* it verifies each delivery's Standard Webhooks signature with the ``standardwebhooks`` library
  (a bad one is answered 401 and recorded as such);
* it records every request it answers in ``<state>/webhooks/deliveries.jsonl`` (kept across
  restarts): subscriber, ``webhook-id``, status answered, signature verified, time, body;
* it can be told to misbehave per subscriber, for tests and demos: answer a status (500, 429
  with ``Retry-After``, 410...) and/or go slow, for some seconds or until told otherwise::

      POST /_behaviour/<subscriber>   {"status": 500, "for_s": 30, "retry_after_s": 2, "delay_ms": 0}
      DELETE /_behaviour/<subscriber> back to 200
      GET /_deliveries[?subscriber=crm]   what it recorded (JSON)      GET /_health

The signing secrets are the local stand-in for Secrets Manager: each subscriber's ``secret_env``
is taken from the environment when set, else generated once into ``<state>/webhooks/secrets.json``
(mode 0600); the workers get them, and ``NOTIFY_RECEIVER_URL``-style variables pointing here,
through `worker_environment` (``infra.local.stack``).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from consumers.runtime.config import discover_apps
from consumers.sinks.webhook.kind import WebhookSinkSpec
from producer_config import load_pipeline
from services.config import StackConfig

__all__ = ["ReceiverClient", "main", "receiver_url", "subscriber_secrets", "webhook_specs", "worker_environment"]


def webhook_specs() -> list[WebhookSinkSpec]:
    return [app.sink for app in discover_apps(load_pipeline()) if isinstance(app.sink, WebhookSinkSpec)]


def _folder(stack: StackConfig) -> Path:
    return stack.state_dir / "webhooks"


def receiver_url(stack: StackConfig) -> str:
    return f"http://{stack.bind_host}:{stack.webhook_port}"


def subscriber_secrets(stack: StackConfig, specs: list[WebhookSinkSpec] | None = None) -> dict[str, str]:
    """subscriber name -> signing secret: its ``secret_env`` if set, else the one generated once
    for this stack (``<state>/webhooks/secrets.json``)."""
    specs = webhook_specs() if specs is None else specs
    path = _folder(stack) / "secrets.json"
    stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    known = dict(stored)
    found: dict[str, str] = {}
    for spec in specs:
        for subscriber in spec.subscribers:
            name = subscriber.secret_env
            if name in os.environ:
                found[subscriber.name] = os.environ[name]
                continue
            if name not in stored:
                stored[name] = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
            found[subscriber.name] = stored[name]
    if stored != known:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(json.dumps(stored, indent=1))
    return found


def worker_environment(stack: StackConfig) -> dict[str, str]:
    """What a worker needs beyond its own environment to reach the local receiver: each
    subscriber's secret variable and each variable its URL names (``…/hooks`` here), unless
    already set."""
    specs = webhook_specs()
    env: dict[str, str] = {}
    by_name = subscriber_secrets(stack, specs)
    for spec in specs:
        for subscriber in spec.subscribers:
            if subscriber.secret_env not in os.environ:
                env[subscriber.secret_env] = by_name[subscriber.name]
        for variable in spec.variables:
            if variable not in os.environ:
                env[variable] = receiver_url(stack) + "/hooks"
    return env


@dataclass
class _Behaviour:
    status: int = 200
    until: float = float("inf")
    retry_after_s: float | None = None
    delay_ms: int = 0


class _Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], folder: Path, signers: Mapping[str, Any]) -> None:
        super().__init__(address, _Handler)
        self.signers = signers
        self.behaviours: dict[str, _Behaviour] = {}
        self.lock = threading.Lock()
        folder.mkdir(parents=True, exist_ok=True)
        self.log_path = folder / "deliveries.jsonl"
        self.records: list[dict[str, Any]] = []
        if self.log_path.exists():
            for line in self.log_path.read_text().splitlines():
                try:
                    self.records.append(json.loads(line))
                except ValueError:
                    continue  # a line cut short by a kill
        self.acked = {(r["subscriber"], r["id"]) for r in self.records if 200 <= r["status"] < 300}
        self.log = self.log_path.open("a", buffering=1)

    def record(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.records.append(entry)
            self.log.write(json.dumps(entry) + "\n")


class _Handler(BaseHTTPRequestHandler):
    server: _Receiver
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # the headers and the body go out as two writes: without this, Nagle holds the second
        # until the client's delayed ACK of the first, 40 ms per answer on a keep-alive connection
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        return  # one line per delivery would drown the stack's log; the records say it all

    def _answer(self, status: int, body: Any = None, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(body if body is not None else {}).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/_health":
            return self._answer(200, {"ok": True})
        if url.path == "/_deliveries":
            wanted = urllib.parse.parse_qs(url.query).get("subscriber")
            with self.server.lock:
                found = [r for r in self.server.records if not wanted or r["subscriber"] in wanted]
            return self._answer(200, found)
        return self._answer(404, {"error": f"no such path {url.path}"})

    def do_DELETE(self) -> None:
        name = self.path.removeprefix("/_behaviour/")
        self.server.behaviours.pop(name, None)
        self._answer(200, {"subscriber": name, "status": 200})

    def do_POST(self) -> None:
        body = self._body()
        if self.path.startswith("/_behaviour/"):
            name, asked = self.path.removeprefix("/_behaviour/"), json.loads(body or b"{}")
            for_s = asked.get("for_s")
            self.server.behaviours[name] = _Behaviour(
                status=int(asked.get("status", 200)),
                until=time.time() + float(for_s) if for_s else float("inf"),
                retry_after_s=asked.get("retry_after_s"),
                delay_ms=int(asked.get("delay_ms", 0)),
            )
            return self._answer(200, {"subscriber": name, **asked})
        if not self.path.startswith("/hooks/"):
            return self._answer(404, {"error": f"no such path {self.path}"})
        self._delivery(self.path.removeprefix("/hooks/"), body)

    def _delivery(self, name: str, body: bytes) -> None:
        received = time.time()
        behaviour = self.server.behaviours.get(name)
        if behaviour is not None and behaviour.until < received:
            self.server.behaviours.pop(name, None)
            behaviour = None
        if behaviour is not None and behaviour.delay_ms:
            time.sleep(behaviour.delay_ms / 1000)
        signer = self.server.signers.get(name)
        headers = {k.lower(): v for k, v in self.headers.items()}
        verified, event = False, None
        if signer is not None:
            try:
                event = signer.verify(body, headers)
                verified = True
            except Exception:  # noqa: BLE001 - any verification failure is a 401
                verified = False
        status = 401 if not verified else behaviour.status if behaviour is not None else 200
        event_id = headers.get("webhook-id", "")
        with self.server.lock:
            first = 200 <= status < 300 and (name, event_id) not in self.server.acked
            if 200 <= status < 300:
                self.server.acked.add((name, event_id))
        self.server.record(
            {
                "subscriber": name,
                "id": event_id,
                "status": status,
                "verified": verified,
                "first": first,
                "received_at": received,
                "webhook_timestamp": headers.get("webhook-timestamp"),
                "event": event,
                "body_bytes": len(body),
            }
        )
        extra = {}
        if behaviour is not None and behaviour.retry_after_s is not None and status != 200:
            extra["Retry-After"] = str(int(behaviour.retry_after_s))
        self._answer(status, {"received": verified}, extra)


class ReceiverClient:
    """The receiver's control and records, over its HTTP API (tests, `make demo`, the bench)."""

    def __init__(self, stack: StackConfig) -> None:
        self.base = receiver_url(stack)

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        import urllib.request

        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())

    def healthy(self) -> bool:
        try:
            return bool(self._call("GET", "/_health")["ok"])
        except OSError:
            return False

    def deliveries(self, subscriber: str | None = None) -> list[dict[str, Any]]:
        query = f"?subscriber={urllib.parse.quote(subscriber)}" if subscriber else ""
        return self._call("GET", "/_deliveries" + query)

    def misbehave(
        self, subscriber: str, status: int, *, for_s: float | None = None, retry_after_s: float | None = None
    ) -> None:
        self._call(
            "POST", f"/_behaviour/{subscriber}", {"status": status, "for_s": for_s, "retry_after_s": retry_after_s}
        )

    def slow(self, subscriber: str, delay_ms: int, *, for_s: float | None = None) -> None:
        self._call("POST", f"/_behaviour/{subscriber}", {"delay_ms": delay_ms, "for_s": for_s})

    def behave(self, subscriber: str) -> None:
        self._call("DELETE", f"/_behaviour/{subscriber}")


def serve(stack: StackConfig) -> _Receiver:
    from standardwebhooks.webhooks import Webhook

    signers = {name: Webhook(secret) for name, secret in subscriber_secrets(stack).items()}
    return _Receiver((stack.bind_host, stack.webhook_port), _folder(stack), signers)


def _show(stack: StackConfig, last: int) -> int:
    client = ReceiverClient(stack)
    if not client.healthy():
        print(f"the webhook receiver does not answer at {client.base}: is the stack up? (`make up`)", file=sys.stderr)
        return 2
    records = client.deliveries()
    print(
        f"{'TIME':<12} {'SUBSCRIBER':<10} {'STATUS':>6} {'SIGNED':<6} {'TYPE':<13} {'USER':<8} {'VERSION':>7}  WEBHOOK-ID"
    )
    for r in records[-last:]:
        data = (r.get("event") or {}).get("data") or {}
        print(
            f"{time.strftime('%H:%M:%S', time.localtime(r['received_at'])):<12} {r['subscriber']:<10} {r['status']:>6} "
            f"{'yes' if r['verified'] else 'NO':<6} {(r.get('event') or {}).get('type', '-'):<13} "
            f"{data.get('user_id', '-'):<8} {data.get('version', '-'):>7}  {r['id']}"
        )
    acked = sum(1 for r in records if r["first"])
    print(f"{len(records)} requests, {acked} events acknowledged (first deliveries), at {client.base}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The local webhook receiver (serve), or what it received (show).")
    parser.add_argument("command", choices=("serve", "show"))
    parser.add_argument("--state-dir", help="state folder (default: CDC_STATE_DIR or .state)")
    parser.add_argument("--last", type=int, default=20, help="show: how many of the last requests")
    args = parser.parse_args(argv)
    env = dict(os.environ, **({"CDC_STATE_DIR": args.state_dir} if args.state_dir else {}))
    stack = StackConfig.from_env(env)
    if args.command == "show":
        return _show(stack, args.last)
    server = serve(stack)
    print(f"webhook receiver on {receiver_url(stack)}/hooks/<subscriber>", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
