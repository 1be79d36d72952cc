"""The HTTP side of ``pianogen serve``: routes, and the guards a server that runs jobs and writes files needs.

- Host must name the address served: a DNS-rebinding page reaches 127.0.0.1 under its own name (403).
- Origin, when a browser sends one, must be that address too: a cross-site form POST is refused (403).
- Every POST carries the page's token (header ``X-Pianogen-Token``): a random value written into the page
  when it is served, which another site cannot read (403 without it).
- Each connection's socket times out after ``REQUEST_TIMEOUT_S`` without progress (slowloris), and a
  request that stalls is dropped without a traceback in the log.
- Content-Length: required for an upload (411; chunked bodies are refused the same way), a whole number
  (400), at most ``MAX_UPLOAD_BYTES`` (413), and all of it must arrive (400 once the socket times out).
- A listen backlog of 128 (the standard library's is 5): a burst of uploads waits instead of being reset;
  at most ``MAX_READING`` bodies are read at once (each is held in memory), the others wait for a turn.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import mimetypes
import re
import secrets
import socket
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pianogen.errors import PianogenError
from pianogen.serving.serve import MAX_QUEUED, QueueFull, Studio, find_runs
from pianogen.serving.serve_page import WEB, example_file, examples, limits, static_file

PAGE = WEB / "index.html"
MAX_UPLOAD_BYTES = 512 * 1024 * 1024  # about 31 minutes of 48 kHz 24-bit stereo WAV, 50 of CD audio
REQUEST_TIMEOUT_S = 10.0  # seconds a connection may go without sending or taking a byte
MAX_READING = 8  # request bodies read at the same time
TOKEN_HEADER = "X-Pianogen-Token"
TOKEN_SLOT = b"{{PIANOGEN_TOKEN}}"  # where index.html receives the token
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def served_names(host: str) -> set[str] | None:
    """Host names a browser may use for this server; None when it listens on every address (then any IP
    literal, localhost or this machine's name)."""
    if host in ("", "0.0.0.0", "::"):
        return None
    host = host.lower()
    return {host} | (LOOPBACK if host in LOOPBACK or host.startswith("127.") else set())


def split_host(value: str) -> tuple[str, int] | None:
    """``name[:port]`` or ``[v6][:port]`` -> (name, port); None when it is neither."""
    match = re.fullmatch(r"\[([0-9a-f:.]+)\](?::(\d{1,5}))?|([a-z0-9._-]+)(?::(\d{1,5}))?", value.strip().lower())
    if match is None:
        return None
    name, port = (match.group(1), match.group(2)) if match.group(1) else (match.group(3), match.group(4))
    return name, int(port or 80)


class Handler(BaseHTTPRequestHandler):
    server: "StudioServer"
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        self.timeout = self.server.request_timeout  # StreamRequestHandler applies it to the socket
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, value: Any, headers: dict[str, str] | None = None, close: bool = False) -> None:
        if close:  # the rest of what the client sends is not read: the connection cannot carry another request
            self.close_connection = True
        self._send(status, json.dumps(value).encode(), "application/json", headers)

    def _refusal(self) -> str | None:
        """Why this request is not from the page this server served (None: it may be)."""
        host = split_host(self.headers.get("Host", ""))
        if host is None or not self.server.serves(*host):
            return (f"Host '{self.headers.get('Host', '')}' is not this server's address; open "
                    f"{self.server.url} instead")
        origin = self.headers.get("Origin")
        if origin is not None:
            parts = urlsplit(origin)
            named = split_host(parts.netloc) if parts.scheme == "http" else None
            if named is None or not self.server.serves(*named):
                return f"requests from {origin} are refused: use the page at {self.server.url}"
        if self.command == "POST" and not hmac.compare_digest(self.headers.get(TOKEN_HEADER, "").encode(),
                                                              self.server.token.encode()):
            return "this request does not carry the page's token: reload the page"
        return None

    def do_GET(self) -> None:
        refused = self._refusal()
        if refused:
            self._json(403, {"error": refused})
            return
        studio = self.server.studio
        parts = urlsplit(self.path).path.strip("/").split("/")
        if parts == [""]:
            self._send(200, PAGE.read_bytes().replace(TOKEN_SLOT, self.server.token.encode()),
                       "text/html; charset=utf-8")
        elif len(parts) == 1 and static_file(parts[0]):
            self._send(200, *static_file(parts[0]))
        elif len(parts) == 2 and parts[0] == "examples" and example_file(parts[1]):
            self._file(*example_file(parts[1]))
        elif parts == ["api", "runs"]:
            self._json(200, {"runs": studio.describe_runs(), "limits": limits(MAX_UPLOAD_BYTES, MAX_QUEUED),
                             "examples": examples()})
        elif parts == ["api", "jobs"]:
            self._json(200, {"jobs": studio.finished()})
        elif len(parts) == 3 and parts[:2] == ["api", "jobs"] and parts[2] in studio.jobs:
            self._json(200, studio.status(studio.jobs[parts[2]]))
        elif len(parts) == 5 and parts[:2] == ["api", "jobs"] and parts[2] in studio.jobs and parts[3] == "chunks" \
                and parts[4].isdigit() and int(parts[4]) < len(studio.jobs[parts[2]].chunks):
            self._send(200, studio.jobs[parts[2]].chunks[int(parts[4])], "audio/wav")
        elif len(parts) == 3 and parts[0] == "files" and parts[1] in studio.jobs and \
                parts[2] in studio.jobs[parts[1]].files():
            self._file(Path(studio.jobs[parts[1]].request.out) / parts[2])
        else:
            self._json(404, {"error": f"nothing here: {self.path[:200]}"})

    do_HEAD = do_GET

    def _file(self, path: Path, kind: str | None = None) -> None:
        """A job's file, with single byte ranges so the audio player can seek (reading only that range)."""
        size = path.stat().st_size
        kind = kind or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        match = re.fullmatch(r"bytes=(\d{0,18})-(\d{0,18})", self.headers.get("Range", ""))
        if not (match and (match.group(1) or match.group(2))):
            self._send(200, path.read_bytes(), kind, {"Accept-Ranges": "bytes"})
            return
        first = int(match.group(1)) if match.group(1) else max(0, size - int(match.group(2)))
        last = min(int(match.group(2)), size - 1) if match.group(1) and match.group(2) else size - 1
        if first >= size or first > last:
            self._send(416, b"", kind, {"Content-Range": f"bytes */{size}"})
            return
        with open(path, "rb") as f:
            f.seek(first)
            part = f.read(last + 1 - first)
        self._send(206, part, kind, {"Content-Range": f"bytes {first}-{last}/{size}", "Accept-Ranges": "bytes"})

    def _body(self, required: bool) -> bytes | None:
        """The request body, or None once an error has been answered (411, 400, 413, 503)."""
        if "Transfer-Encoding" in self.headers:
            self._json(411, {"error": "send the upload with a Content-Length (chunked bodies are not accepted)"},
                       close=True)
            return None
        given = self.headers.get_all("Content-Length") or []
        if not given:
            if required:
                self._json(411, {"error": "an upload needs a Content-Length header"}, close=True)
                return None
            return b""
        if len(set(given)) > 1 or not re.fullmatch(r"[0-9]{1,15}", given[0].strip()):
            self._json(400, {"error": f"Content-Length must be one whole number of bytes, got "
                                      f"{', '.join(given)[:40]!r}"}, close=True)
            return None
        length = int(given[0])
        if length > MAX_UPLOAD_BYTES:
            self._json(413, {"error": f"the upload is {length / 2**20:.0f} MiB; at most "
                                      f"{MAX_UPLOAD_BYTES // 2**20} MiB are accepted"}, close=True)
            return None
        if not self.server.readers.acquire(timeout=self.server.request_timeout):
            self._json(503, {"error": "the server is busy reading other uploads; try again"},
                       {"Retry-After": "5"}, close=True)
            return None
        chunks, received = [], 0
        try:
            while received < length:
                chunk = self.rfile.read1(min(1 << 20, length - received))
                if not chunk:
                    break
                chunks.append(chunk)
                received += len(chunk)
        except TimeoutError:
            pass
        finally:
            self.server.readers.release()
        if received < length:
            self._json(400, {"error": f"the request body ended after {received} of its {length} bytes"},
                       close=True)
            return None
        return b"".join(chunks)

    def do_POST(self) -> None:
        refused = self._refusal()
        if refused:
            self._json(403, {"error": refused}, close=True)
            return
        url = urlsplit(self.path)
        parts = url.path.strip("/").split("/")
        studio = self.server.studio
        if len(parts) == 4 and parts[:2] == ["api", "jobs"] and parts[3] == "cancel":
            if self._body(required=False) is None:
                return
            try:
                job = studio.cancel(parts[2])
            except PianogenError as err:
                self._json(404, {"error": str(err)})
                return
            self._json(200, studio.status(job))
            return
        if parts != ["api", "jobs"]:
            self._json(404, {"error": f"nothing here: {self.path[:200]}"}, close=True)
            return
        fields = {key: values[-1] for key, values in parse_qs(url.query).items()}
        body = self._body(required="extend" not in fields)
        if body is None:
            return
        stream = fields.pop("stream", "") not in ("", "0")
        try:
            if "extend" in fields:
                job = studio.extend(fields.pop("extend"), fields, stream)
            else:
                job = studio.submit(fields.pop("run", ""), fields.pop("filename", "take.wav"), body, fields, stream)
        except QueueFull as err:
            self._json(503, {"error": str(err)}, {"Retry-After": "30"})
            return
        except PianogenError as err:
            self._json(400, {"error": str(err)})
            return
        self._json(202, studio.status(job))


class StudioServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the listen backlog

    def __init__(self, address: tuple[str, int], studio: Studio, verbose: bool = False,
                 request_timeout: float = REQUEST_TIMEOUT_S):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)
        self.studio, self.verbose, self.request_timeout = studio, verbose, request_timeout
        self.token = secrets.token_urlsafe(24)  # new each start: a page from an earlier run must be reloaded
        self.readers = threading.BoundedSemaphore(MAX_READING)
        self.names, self.port = served_names(address[0]), self.server_address[1]
        shown = f"[{address[0]}]" if ":" in address[0] else address[0]
        self.url = f"http://{shown}:{self.port}/"

    def serves(self, name: str, port: int) -> bool:
        """Whether ``name:port`` (from a Host or Origin header) is this server's address."""
        if port != self.port:
            return False
        if self.names is not None:
            return name in self.names
        try:
            ipaddress.ip_address(name)
            return True
        except ValueError:
            return name in {"localhost", socket.gethostname().lower(), f"{socket.gethostname().lower()}.local"}

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One line, not a traceback: a client that left or stalled is not the server's fault."""
        err = sys.exc_info()[1]
        if isinstance(err, (ConnectionError, TimeoutError)) and not self.verbose:
            return
        print(f"error: request from {client_address[0]}: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
        if self.verbose:
            traceback.print_exc()


def offered_runs(spec: str | Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """RUN as every command takes it (a run folder or a built-in run's name, ``pianogen.runs``), or a folder of
    runs: the runs on offer, and where each one's generations go (a built-in run is read-only: into
    ``<name>-generated`` in the current directory)."""
    from pianogen.runs import resolve_run

    ref = resolve_run(spec)
    if ref.builtin:
        return {ref.name: ref.path}, {ref.name: ref.default_out("generated")}
    runs = find_runs(ref.path)
    return runs, {name: path / "generated" for name, path in runs.items()}


def serve(spec: str | Path = "piano", host: str = "127.0.0.1", port: int = 8000, device: str = "auto",
          verbose: bool = False) -> None:
    """Serve the page until interrupted; prints the address first (port 0 picks a free one)."""
    runs, outputs = offered_runs(spec)
    studio = Studio(runs, device, outputs)
    studio.describe_runs()  # each recipe read now: a bad one is one line here, not an error on the page
    server = StudioServer((host, port), studio, verbose)
    print(f"serving {len(server.studio.runs)} run(s) on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.server_close()
