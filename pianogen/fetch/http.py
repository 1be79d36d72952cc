"""What every fetcher shares: one-line errors, a byte progress bar, a resumable verified download."""

from __future__ import annotations

import errno
import hashlib
import os
import re
from pathlib import Path

from pianogen.errors import PianogenError
from pianogen.progress import progress_bar

TIMEOUT = (15.0, 60.0)  # seconds to connect, and to wait for the next bytes
CHUNK = 1 << 20
_DISK_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


def local_path(url: str) -> Path | None:
    """The file a ``file://`` URL or a plain path names; None for a remote URL."""
    if url.startswith("file://"):
        return Path(url[len("file://"):])
    return None if "://" in url else Path(url).expanduser()


class NetworkError(PianogenError):
    """The server could not be reached or stopped answering: worth retrying, unlike a full disk."""


def network_error(url: str, err: BaseException, hint: str = "") -> NetworkError:
    """One line for any failure to reach or read ``url``; ``hint`` says how to point at a mirror."""
    text = str(err)
    # requests nests the cause several levels deep; the errno sentence is what the user can act on
    found = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    reason = found[1].strip() if found else (text.splitlines()[0][:200] if text else type(err).__name__)
    return NetworkError(f"cannot download {url}: {reason}{hint}")


def write_error(path: Path, err: OSError) -> PianogenError:
    if err.errno in _DISK_FULL:
        return PianogenError(f"disk full while writing {path} ({err.strerror}); free space or choose another folder")
    return PianogenError(f"cannot write {path}: {err.strerror or err}")


def make_dirs(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise write_error(path, err) from None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, dest: Path, sha256_prefix: str = "", hint: str = "", progress: bool = True) -> Path:
    """``url`` -> ``dest``: continues a killed download from ``dest.part``, checks the sha256 prefix,
    and only then renames, so ``dest`` exists only complete and verified."""
    import requests

    make_dirs(dest.parent)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    try:
        with requests.get(url, headers={"Range": f"bytes={have}-"} if have else {}, stream=True,
                          timeout=TIMEOUT) as response:
            if response.status_code == 416:  # the part already holds every byte
                response.close()
            else:
                response.raise_for_status()
                if response.status_code != 206:
                    have = 0  # the server ignored the range: start over
                total = have + int(response.headers.get("Content-Length") or 0)
                with progress_bar(progress, units="bytes") as bar, open(part, "ab" if have else "wb") as out:
                    task = bar.add_task(dest.name, total=total or None, completed=have)
                    for block in response.iter_content(CHUNK):
                        out.write(block)
                        out.flush()  # what is on disk is a prefix that a rerun continues from
                        bar.advance(task, len(block))
    except requests.RequestException as err:  # before OSError: requests' errors are OSErrors too
        raise network_error(url, err, hint) from None
    except OSError as err:
        raise write_error(part, err) from None
    found = sha256_of(part)
    if sha256_prefix and not found.startswith(sha256_prefix):
        part.unlink()
        raise PianogenError(f"{url}: sha256 {found[:12]}... does not start with {sha256_prefix}, the pinned "
                            f"digest; the download was deleted")
    os.replace(part, dest)
    return dest

