"""A throwaway S3 stand-in on 127.0.0.1, so that `sam package` can run offline.

It knows just what packaging uses: HEAD an object (404 until it was PUT) and
PUT an object (kept in memory). Prints its port on the first line of stdout and
the object keys it received on stderr. Run by scripts/lint-infra; stops when
killed.
"""

from __future__ import annotations

import hashlib
import http.server
import sys

objects: dict[str, int] = {}


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass

    def _key(self) -> str:
        return self.path.split("?", 1)[0]

    def _empty(self, status: int, etag: str | None = None) -> None:
        self.send_response(status)
        if etag:
            self.send_header("ETag", f'"{etag}"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_HEAD(self):  # noqa: N802 - http.server's naming
        self._empty(200 if self._key() in objects else 404, "stand-in")

    def do_GET(self):  # noqa: N802
        self._empty(404)

    def do_PUT(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        objects[self._key()] = len(body)
        print(f"PUT {self._key()} {len(body)}", file=sys.stderr, flush=True)
        self._empty(200, hashlib.md5(body, usedforsecurity=False).hexdigest())


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
