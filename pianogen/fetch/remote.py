"""A remotezip archive whose member reads survive a kill: each member's raw bytes are kept as they arrive.

remotezip reads a member with one streamed range request ``[header, next header)``. Our fetcher
appends what it streams to ``<partial>/<archive size>/<start>-<end>`` and, on a later run, serves that
prefix from disk and asks the server only for the rest. zipfile above it sees one continuous stream
and checks the CRC as usual; a member that fails the check is discarded and fetched again.
"""

from __future__ import annotations

from pathlib import Path

import requests
import urllib3
from remotezip import PartialBuffer, RemoteFetcher, RemoteZip, RemoteZipError

from pianogen.errors import PianogenError
from pianogen.fetch.http import CHUNK, TIMEOUT, make_dirs, network_error, write_error


def open_remote_zip(url: str, partial: Path, hint: str) -> RemoteZip:
    import zipfile

    made: list[_ResumingFetcher] = []

    def fetcher(*args, **kwargs) -> _ResumingFetcher:
        made.append(_ResumingFetcher(*args, partial=partial, hint=hint, **kwargs))
        return made[-1]

    try:
        archive = RemoteZip(url, session=requests.Session(), fetcher=fetcher, timeout=TIMEOUT)
    except zipfile.BadZipFile as err:
        raise PianogenError(f"{url} is not a zip ({err})") from None
    archive.resuming_fetcher = made[0]
    return archive


class _ResumingFetcher(RemoteFetcher):
    def __init__(self, url: str, session=None, *, partial: Path, hint: str, **kwargs) -> None:
        super().__init__(url, session, **kwargs)
        self.partial, self.hint = partial, hint
        self.archive_size: int | None = None
        self.persist = False  # off while planning (a dry run writes nothing)

    def _request(self, kwargs):
        try:
            response = self._session.get(self._url, stream=True, **kwargs)
            response.raise_for_status()
        except requests.RequestException as err:
            raise network_error(self._url, err, self.hint) from None
        content_range = response.headers.get("Content-Range")
        if content_range is None:
            response.close()  # otherwise its body (the whole archive) would keep streaming
            raise PianogenError(f"{self._url} does not answer HTTP range requests, which fetching only some "
                                f"years needs; download the whole zip and pass its path with --url")
        total = content_range.rsplit("/", 1)[-1]
        if total.isdigit():
            self.archive_size = int(total)
        return response.raw, content_range

    def fetch(self, data_range, stream=False):
        start, end = data_range
        try:
            if stream and self.persist and self.archive_size and start >= 0 and end is not None:
                return self._resuming(start, end)
            return super().fetch(data_range, stream)
        except (RemoteZipError, urllib3.exceptions.HTTPError, requests.RequestException) as err:
            raise network_error(self._url, err, self.hint) from None

    def part_dir(self) -> Path:
        return self.partial / str(self.archive_size)

    def discard(self, info) -> None:
        if self.archive_size and self.part_dir().is_dir():
            for part in self.part_dir().glob(f"{info.header_offset}-*"):
                part.unlink(missing_ok=True)

    def _resuming(self, start: int, end: int) -> PartialBuffer:
        part = self.part_dir() / f"{start}-{end}"
        make_dirs(part.parent)
        size = end - start + 1
        have = part.stat().st_size if part.is_file() else 0
        if have > size:
            part.unlink()
            have = 0
        raw = None
        if have < size:
            raw, content_range = self._request(self.prepare_request((start + have, end)))
            if self.parse_range_header(content_range)[0] != start + have:
                PartialBuffer._close_buffer(raw)
                raise PianogenError(f"{self._url} answered a request for bytes {start + have}- with {content_range}")
        return PartialBuffer(_TeeReader(part, have, raw, self._url, self.hint), start, size, stream=True)


class _TeeReader:
    """The kept prefix of a member range from disk, then the server's stream, appended to the prefix."""

    def __init__(self, part: Path, have: int, raw, url: str, hint: str) -> None:
        self.part, self.have, self.raw, self.url, self.hint = part, have, raw, url, hint
        self.pos, self.closed = 0, False
        try:
            self.local = open(part, "rb") if have else None
            self.out = open(part, "ab") if raw is not None else None
        except OSError as err:
            raise write_error(part, err) from None

    def read(self, n: int = -1) -> bytes:
        # zipfile needs full reads (a short local header read is "truncated"), so loop until n or the end
        chunks, need = [], n if n is not None and n >= 0 else float("inf")
        while need > 0:
            if self.pos < self.have:
                block = self.local.read(min(need, self.have - self.pos))
            elif self.raw is not None:
                block = self._remote(int(min(need, CHUNK)))
            else:
                break
            if not block:
                break
            chunks.append(block)
            self.pos += len(block)
            need -= len(block)
        return b"".join(chunks)

    def _remote(self, n: int) -> bytes:
        try:  # read1: what has arrived, so a kill loses at most what was not yet written to the part
            block = self.raw.read1(n) if hasattr(self.raw, "read1") else self.raw.read(n)
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise network_error(self.url, err, self.hint) from None
        try:
            self.out.write(block)
            self.out.flush()  # on disk is always a prefix of the range, whatever kills us
        except OSError as err:
            raise write_error(self.part, err) from None
        return block

    def tell(self) -> int:
        return self.pos

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for f in (self.local, self.out):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass  # a full disk fails the flush too; the error was already raised from write
        if self.raw is not None:
            PartialBuffer._close_buffer(self.raw)
