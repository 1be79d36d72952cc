"""``pianogen serve`` under a burst: 50 concurrent uploads on 127.0.0.1 while 5 clients stall mid-request.

Each upload (a 1.5 s stereo 22.05 kHz WAV, 132 kB) is read whole, then refused for its window (``to=9``), so
no generation runs: what is measured is the HTTP side (listen backlog, body reading, timeouts). Run it with
the backlog to compare: ``python benchmarks/serve_load.py 128`` (the server's) and ``... 5`` (the standard
library's default, what the server had before).
"""

from __future__ import annotations

import io
import shutil
import socket
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

from pianogen.recipe import builtin_recipes
from pianogen.serving.serve import Studio
from pianogen.serving.serve_http import StudioServer


def wav_bytes() -> bytes:
    buffer, t = io.BytesIO(), np.arange(int(1.5 * 22050)) / 22050
    sf.write(buffer, np.stack([0.3 * np.sin(2 * np.pi * 330 * t)] * 2, 1), 22050, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def main(backlog: int, repeats: int = 3) -> None:
    run = Path(tempfile.mkdtemp()) / "run"
    run.mkdir()
    shutil.copyfile(builtin_recipes()["demo"], run / "recipe.toml")  # settings come from it; nothing is loaded
    StudioServer.request_queue_size = backlog
    server = StudioServer(("127.0.0.1", 0), Studio({"run": run}, device="cpu"), request_timeout=1.0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    body = wav_bytes()
    request = (f"POST /api/jobs?run=run&filename=m.wav&to=9 HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
               f"X-Pianogen-Token: {server.token}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
               ).encode() + body

    def upload(_: int) -> int | str:
        try:
            with socket.create_connection(server.server_address, timeout=10) as sock:
                sock.sendall(request)
                data = b""
                while chunk := sock.recv(65536):
                    data += chunk
            return int(data.split()[1])
        except OSError as err:
            return type(err).__name__

    for _ in range(repeats):
        stalled = [socket.create_connection(server.server_address) for _ in range(5)]
        for sock in stalled:
            sock.sendall(b"POST /api/jobs HTTP/1.1\r\nHost: 127")  # and nothing more
        start = time.monotonic()
        with ThreadPoolExecutor(50) as pool:
            answers = list(pool.map(upload, range(50)))
        took = time.monotonic() - start
        failed = sorted({a for a in answers if a != 400}, key=str)
        print(f"backlog {backlog}: {answers.count(400)}/50 answered in {took:.2f} s; failures: {failed or 'none'}")
        for sock in stalled:
            sock.close()
    server.shutdown()
    shutil.rmtree(run.parent)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 128)
