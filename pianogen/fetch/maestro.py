"""``pianogen data get maestro``: only the zip members the chosen years need, over HTTP range requests.

MAESTRO v3 is one ~100 GB zip. remotezip (a zipfile over HTTP ranges) reads its central directory
with one suffix-range request and each member with one range request. ``_ResumingFetcher`` keeps
the raw bytes of the member in flight under ``<root>/.partial/``, so a killed fetch continues
from the byte it reached. zipfile checks each member's CRC-32 while inflating it; the file takes
its final name, in the layout the ``maestro`` source reads, only once its size and CRC are right.
The CSV is written last: a root holding it holds every file it was fetched for.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import time
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pianogen.errors import PianogenError
from pianogen.fetch.http import CHUNK, NetworkError, local_path, make_dirs, write_error
from pianogen.paths import atomic_path, atomic_write_bytes, home
from pianogen.progress import log_line, progress_bar

URLS = {"3.0.0": "https://storage.googleapis.com/magentadata/datasets/maestro/v3.0.0/maestro-v3.0.0.zip"}
URL_ENV = "PIANOGEN_MAESTRO_URL"
DEFAULT_YEARS = (2018,)  # the report's subset
PARTIAL = ".partial"
RETRIES = 3  # per member, after a dropped connection or a timeout (backing off 1, 2, 4 s)
_HINT = f"; check the network, or point --url (or ${URL_ENV}) at a mirror or a local copy of the zip"


def default_root(version: str = "3.0.0") -> Path:
    return home() / "data" / f"maestro-v{version}"


def csv_name(version: str) -> str:
    return f"maestro-v{version}.csv"


MAESTRO_CSV = csv_name("3.0.0")  # the metadata file every corpus in MAESTRO's layout holds (public: pianogen.)
MAESTRO_COLUMNS = ["canonical_composer", "canonical_title", "split", "year", "midi_filename", "audio_filename",
                   "duration"]


@dataclass
class Plan:
    """What a fetch of ``years`` into ``root`` does: members still to fetch, and those already there."""

    root: Path
    url: str
    years: list[int]
    todo: list[tuple[zipfile.ZipInfo, Path]] = field(default_factory=list)
    done: list[Path] = field(default_factory=list)
    csv_done: bool = False

    @property
    def download_bytes(self) -> int:
        return sum(info.compress_size for info, _ in self.todo)

    @property
    def disk_bytes(self) -> int:
        return sum(info.file_size for info, _ in self.todo)


def get_maestro(root: Path | None = None, years: Iterable[int] = DEFAULT_YEARS, version: str = "3.0.0",
                url: str | None = None, dry_run: bool = False, progress: bool = True,
                log: Callable[[str], None] = print) -> Plan:
    """Fetch the CSV and the audio of ``years`` into ``root`` (default ``$PIANOGEN_HOME/data/maestro-v3.0.0``)."""
    if version not in URLS:
        raise PianogenError(f"MAESTRO version {version} is not known; known: {', '.join(URLS)}")
    url = url or os.environ.get(URL_ENV) or URLS[version]
    root = Path(root).expanduser() if root else default_root(version)
    with _open_archive(url, root) as archive:
        plan, csv_bytes = _plan(archive, root, url, sorted(set(years)), version)
        if dry_run:
            log(f"{'bytes to download':>17}  file")
            for info, target in plan.todo:
                log(f"{info.compress_size:>17,d}  {target.relative_to(root)}")
            log(f"{len(plan.todo)} files to fetch ({len(plan.done)} already there): {_gb(plan.download_bytes)} "
                f"to download, {_gb(plan.disk_bytes)} on disk under {root}")
            return plan
        _check_space(root, plan.disk_bytes + max((i.compress_size for i, _ in plan.todo), default=0))
        _fetcher(archive).persist = True
        with progress_bar(progress, units="bytes") as bar:
            task = bar.add_task(f"MAESTRO {', '.join(map(str, plan.years))}", total=plan.disk_bytes)
            note = (lambda text: log_line(bar.console, text)) if progress else log
            for info, target in plan.todo:
                for attempt in range(RETRIES + 1):
                    try:
                        _extract(archive, info, target, url, lambda n: bar.advance(task, n), note)
                        break
                    except NetworkError as err:  # the kept bytes make the next attempt a resume
                        if attempt == RETRIES:
                            raise
                        note(f"{err}; resuming in {2 ** attempt} s")
                        time.sleep(2 ** attempt)
        if not plan.csv_done:
            _write(root / csv_name(version), csv_bytes)
        shutil.rmtree(root / PARTIAL, ignore_errors=True)
    log(f"{root}: {len(plan.todo) + len(plan.done)} audio files of {', '.join(map(str, plan.years))}")
    return plan


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def _plan(archive: zipfile.ZipFile, root: Path, url: str, years: list[int], version: str
          ) -> tuple[Plan, bytes]:
    name = csv_name(version)
    found = [i for i in archive.infolist() if i.filename.rsplit("/", 1)[-1] == name]
    if not found:
        raise PianogenError(f"{url} holds no {name}; is it the MAESTRO v{version} zip?")
    csv_info = found[0]
    prefix = csv_info.filename[: -len(name)]
    plan = Plan(root, url, years, csv_done=_complete(root / name, csv_info))
    csv_bytes = (root / name).read_bytes() if plan.csv_done else _read_member(archive, csv_info, url)
    rows = list(csv.DictReader(io.StringIO(csv_bytes.decode("utf-8", errors="replace"))))
    if not rows or not {"year", "audio_filename"} <= set(rows[0]):
        raise PianogenError(f"{name} in {url} has no year and audio_filename columns")
    try:
        known = sorted({int(r["year"]) for r in rows})
    except (TypeError, ValueError):
        raise PianogenError(f"{name} in {url} has a year that is not a number") from None
    years = plan.years = years or known
    if set(years) - set(known):
        raise PianogenError(f"MAESTRO v{version} has no year(s) {sorted(set(years) - set(known)) or '[]'}; "
                            f"it has {', '.join(map(str, known))}")
    for row in rows:
        if int(row["year"]) not in years:
            continue
        if ".." in Path(row["audio_filename"]).parts or Path(row["audio_filename"]).is_absolute():
            raise PianogenError(f"{name} in {url} names {row['audio_filename']}, outside the MAESTRO folder")
        try:
            info = archive.getinfo(prefix + row["audio_filename"])
        except KeyError:
            raise PianogenError(f"{url} lacks {prefix}{row['audio_filename']}, which its CSV lists") from None
        target = root / row["audio_filename"]
        if _complete(target, info):
            plan.done.append(target)
        else:
            plan.todo.append((info, target))
    return plan, csv_bytes


def _complete(path: Path, info: zipfile.ZipInfo) -> bool:
    """Files take their final name only after their CRC checked, so the right size means complete."""
    return path.is_file() and path.stat().st_size == info.file_size


def _check_space(root: Path, needed: int) -> None:
    make_dirs(root)
    free = shutil.disk_usage(root).free
    if free < needed:
        raise PianogenError(f"{root} has {_gb(free)} free but the fetch needs {_gb(needed)}; "
                            f"free space or choose another --root")


def _write(path: Path, data: bytes) -> None:
    try:
        atomic_write_bytes(path, data)
    except OSError as err:
        raise write_error(path, err) from None


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, url: str) -> bytes:
    try:
        return archive.read(info)
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise PianogenError(f"{info.filename} in {url} is corrupt ({err})") from None


def _extract(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, url: str,
             advance: Callable[[int], None], log: Callable[[str], None]) -> None:
    """One member -> ``target`` through a temp file; a corrupt member is fetched once more, then reported."""
    make_dirs(target.parent)
    for stale in target.parent.glob(f".{target.name}.tmp*"):  # left by a killed run
        stale.unlink(missing_ok=True)
    for attempt in (1, 2):
        written = 0
        try:
            with atomic_path(target) as tmp:
                with archive.open(info) as src, open(tmp, "wb") as out:
                    for block in iter(lambda: src.read(CHUNK), b""):  # zipfile raises on a bad CRC at the end
                        out.write(block)
                        written += len(block)
                        advance(len(block))
                if written != info.file_size:
                    raise zipfile.BadZipFile(f"{written} bytes instead of {info.file_size}")
            _fetcher(archive).discard(info)
            return
        except BaseException as err:
            advance(-written)  # a retry or a rerun decompresses this member from its start
            if isinstance(err, (zipfile.BadZipFile, zlib.error, EOFError)):
                _fetcher(archive).discard(info)  # the raw bytes kept for resuming are the bad ones
                if attempt == 2:
                    raise PianogenError(f"{info.filename} in {url} is corrupt twice in a row ({err}); "
                                        f"nothing was kept for it") from None
                log(f"{info.filename}: {err}; fetching it again")
            elif isinstance(err, OSError):  # network errors arrive as PianogenError: this is the local disk
                raise write_error(target, err) from None
            else:
                raise


class _LocalFetcher:
    persist = False

    def discard(self, info: zipfile.ZipInfo) -> None:
        pass


def _fetcher(archive: zipfile.ZipFile):
    return getattr(archive, "resuming_fetcher", _LocalFetcher())


def _open_archive(url: str, root: Path) -> zipfile.ZipFile:
    path = local_path(url)
    if path is not None:
        if not path.is_file():
            raise PianogenError(f"MAESTRO zip not found: {path}")
        try:
            return zipfile.ZipFile(path)
        except zipfile.BadZipFile as err:
            raise PianogenError(f"{path} is not a zip ({err})") from None
    from pianogen.fetch.remote import open_remote_zip

    return open_remote_zip(url, root / PARTIAL, _HINT)

