"""A registry that lies, for the web view's attack tests: a loopback HTTP proxy in front of real
``pht serve`` processes that forwards the page's signed requests unchanged (the Host header too,
so the registry checks the signatures against the URL the page signed) and can swap what comes
back. Everything it serves is real signed data from a real registry, or that data tampered with.
"""

from __future__ import annotations

import http.client
import threading
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# (path with query, status, body) -> the body to serve instead, or None to serve it as it is
Tamper = Callable[[str, int, bytes], bytes | None]
HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


class TamperingProxy:
    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.tamper: Tamper | None = None
        # Answers the registry itself does not give (read endpoints of a newer registry), by
        # path without the query: served as JSON with 200.
        self.answers: dict[str, bytes] = {}
        # Path prefixes answered 404 not-found (endpoints an older registry does not have).
        self.missing: tuple[str, ...] = ()
        self.seen: list[str] = []  # the paths asked, in order (a browser cache hit asks none)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                proxy.seen.append(self.path)
                if self.path.startswith(proxy.missing) and proxy.missing:
                    problem = b'{"type":"https://pht.example/problems/not-found","status":404}'
                    self._send(404, [("Content-Type", "application/problem+json")], problem)
                    return
                extra = proxy.answers.get(self.path.split("?", 1)[0])
                if extra is not None:
                    self._send(200, [("Content-Type", "application/json")], extra)
                    return
                target = urllib.parse.urlsplit(proxy.backend)
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
                try:
                    conn.request("GET", self.path, headers=dict(self.headers.items()))
                    answer = conn.getresponse()
                    body = answer.read()
                    headers = [(k, v) for k, v in answer.getheaders() if k.lower() not in HOP]
                    status = answer.status
                finally:
                    conn.close()
                swapped = proxy.tamper(self.path, status, body) if proxy.tamper else None
                if swapped is not None:
                    body = swapped
                self._send(status, headers, body)

            def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
                try:
                    self.send_response(status)
                    for name, value in headers:
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the page gave up waiting (a long-poll it aborted)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
