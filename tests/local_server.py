"""A real HTTP server on 127.0.0.1 for the fetch tests: byte ranges, a hub-shaped endpoint, and faults.

It serves ``files`` (URL path -> bytes) with HEAD and GET, honours ``Range: bytes=a-b``, ``a-`` and
``-n`` (unless ``ranges`` is off), counts the body bytes it sends per path, and records every
request. Paths of the form ``/{repo}/resolve/{revision}/{file}`` also carry the headers
huggingface_hub reads (ETag, X-Repo-Commit). Faults: ``stall_after`` bytes of one response, the
server stops sending and waits (``stalled`` is set) until ``release`` is set; after ``drop_after``
bytes of one response it closes the connection; ``corrupt_once``
absolute offsets are flipped in the first response that covers them.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class LocalServer:
    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = dict(files)
        self.ranges = True
        self.served: dict[str, int] = defaultdict(int)
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Range header)
        self.stall_after: int | None = None
        self.drop_after: int | None = None
        self.stalled, self.release = threading.Event(), threading.Event()
        self.corrupt_once: set[int] = set()
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> "LocalServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def ranges_asked(self, path: str) -> list[tuple[int, int]]:
        """The absolute byte ranges of ``path`` that GET requests asked for (suffix ranges resolved)."""
        size, out = len(self.files[path]), []
        for method, asked, header in self.requests:
            if method == "GET" and asked == path:
                out.append(_parse_range(header, size) or (0, size - 1))
        return out


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    m = re.fullmatch(r"bytes=(\d*)-(\d*)", header or "")
    if not m:
        return None
    if not m[1]:
        return max(0, size - int(m[2])), size - 1
    return int(m[1]), min(int(m[2]), size - 1) if m[2] else size - 1


def _handler(server: LocalServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_GET(self) -> None:
            self._answer(body=True)

        def _answer(self, body: bool) -> None:
            header = self.headers.get("Range")
            with server.lock:
                server.requests.append((self.command, self.path, header))
            data = server.files.get(self.path)
            if data is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            span = _parse_range(header, len(data)) if server.ranges else None
            start, end = span or (0, len(data) - 1)
            if span and start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206 if span else 200)
            self.send_header("Content-Length", str(end - start + 1))
            if server.ranges:
                self.send_header("Accept-Ranges", "bytes")
            if span:
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            if "/resolve/" in self.path:
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("X-Repo-Commit", COMMIT)
            self.end_headers()
            if body:
                self._send(data, start, end)

        def _send(self, data: bytes, start: int, end: int) -> None:
            chunk = bytearray(data[start:end + 1])
            with server.lock:
                for offset in sorted(server.corrupt_once):
                    if start <= offset <= end:
                        chunk[offset - start] ^= 0xFF
                        server.corrupt_once.discard(offset)
            sent = 0
            try:
                while sent < len(chunk):
                    # the stall hits the first member-sized response (not the suffix read of the directory)
                    if server.stall_after is not None and sent >= server.stall_after and end < len(data) - 1:
                        server.stall_after = None
                        server.stalled.set()
                        server.release.wait(60)
                        return
                    if server.drop_after is not None and sent >= server.drop_after and end < len(data) - 1:
                        server.drop_after = None
                        self.close_connection = True  # short of its Content-Length: a dropped connection
                        return
                    piece = bytes(chunk[sent:sent + 16384])
                    # counted before the write: a client can read the last piece and the test assert on the
                    # count before this thread runs again (seen once: 720896 of 724000 bytes counted)
                    with server.lock:
                        server.served[self.path] += len(piece)
                    self.wfile.write(piece)
                    sent += len(piece)
            except (BrokenPipeError, ConnectionResetError):
                pass

    return Handler
