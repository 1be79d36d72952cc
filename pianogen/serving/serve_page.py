"""What ``pianogen serve``'s page is made of besides the job queue: its static files, the example prompts shipped
with the package, the limits it shows, and the command line's messages worded for the page.

The page takes the command line's limits from the same constants (``generate_options``) and the same checks
(``check_request``, ``prompt_window``); only the names differ: a musician sees "Continuation length", not
``--seconds``, so a message from those checks has each flag replaced by the page's label for it.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from pianogen.generation.generate_options import MAX_NUM, MAX_PROMPT_PRIOR, MAX_SECONDS, MAX_SEED, MAX_TEMPERATURE

WEB = Path(__file__).resolve().parent.parent / "web"  # pianogen/web: package data beside the wings
EXAMPLES = WEB / "examples"
STATIC = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8",
          "favicon.svg": "image/svg+xml"}  # served as they are; index.html gets the token first
AUDIO_TYPES = {".ogg": "audio/ogg", ".flac": "audio/flac", ".wav": "audio/wav"}

# The page's label for each command-line option it offers (web/index.html shows the same words).
LABELS = {"--seconds": "Continuation length", "--prompt-seconds": "Prompt length", "--from": "From",
          "--to": "To", "--temperature": "Temperature", "--top-k": "Top-k", "--top-p": "Top-p",
          "--prompt-prior": "Keep to the prompt", "--quiet-temperature-scale": "Calm after a held sound",
          "--ring-out": "Let a held sound ring out",
          "--num": "Takes", "--seed": "Seed", "--crossfade": "Crossfade"}
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]*")


def in_page_words(message: str) -> str:
    """A message of the command line's checks with its flag names as the page's labels (``--num`` -> Takes)."""
    return FLAG.sub(lambda m: LABELS.get(m.group(), m.group()), message)


def limits(max_upload_bytes: int, max_queued: int) -> dict[str, Any]:
    """What the page may ask for: the command line's limits. The seed's bound is text too, because a JSON
    number above 2^53 reaches JavaScript rounded."""
    return {"max_seconds": MAX_SECONDS, "max_num": MAX_NUM, "max_seed": MAX_SEED, "max_seed_text": str(MAX_SEED),
            "max_temperature": MAX_TEMPERATURE, "max_prompt_prior": MAX_PROMPT_PRIOR,
            "max_upload_mib": max_upload_bytes // 2**20, "max_queued": max_queued}


@cache
def examples() -> dict[str, Any]:
    """The example prompts (``web/examples/examples.json``): each file's title, length and URL, and the license
    of their sound. Empty when the package was installed without them."""
    index = EXAMPLES / "examples.json"
    if not index.is_file():
        return {"clips": [], "license": ""}
    listed = json.loads(index.read_text())
    return {"license": listed["license"],
            "clips": [{"file": e["file"], "title": e["title"], "seconds": e["seconds"],
                          "url": f"/examples/{e['file']}"} for e in listed["examples"]
                         if (EXAMPLES / e["file"]).is_file()]}


def example_file(name: str) -> tuple[Path, str] | None:
    """The example called ``name`` and its content type; None for any name examples.json does not list."""
    if name not in {e["file"] for e in examples()["clips"]}:
        return None
    return EXAMPLES / name, AUDIO_TYPES.get(Path(name).suffix, "application/octet-stream")


def static_file(name: str) -> tuple[bytes, str] | None:
    """One of the page's own files (``STATIC``) and its content type; None for anything else."""
    if name not in STATIC:
        return None
    return (WEB / name).read_bytes(), STATIC[name]
