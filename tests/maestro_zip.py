"""A small MAESTRO-layout zip for the fetch tests: seconds of synthetic piano, a CSV listing three years."""

from __future__ import annotations

import csv
import io
import struct
import zipfile
from pathlib import Path

YEARS = (2017, 2018, 2019)
PREFIX = "maestro-v3.0.0/"


def build_zip(corpus: Path, stored: str = "", flip: str = "") -> tuple[bytes, dict[str, bytes]]:
    """The zip (the synthetic 2018 pieces repeated under each year) and its audio by ``audio_filename``.

    ``stored``: an audio_filename written uncompressed; ``flip``: one whose data gets a flipped byte
    after its CRC was computed (a member that fails its CRC-32 on every read)."""
    rows = list(csv.DictReader(open(corpus / "maestro-v3.0.0.csv", newline="")))
    out_rows, audio, members = [], {}, []
    for year in YEARS:
        for row in rows:
            row = dict(row, year=str(year))
            for key in ("audio_filename", "midi_filename"):
                old = row[key]
                row[key] = old.replace("2018/", f"{year}/")
                members.append((row[key], (corpus / old).read_bytes()))
            audio[row["audio_filename"]] = members[-2][1]
            out_rows.append(row)
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(out_rows)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(PREFIX + "maestro-v3.0.0.csv", table.getvalue())
        z.writestr(PREFIX + "LICENSE", "CC BY-NC-SA 4.0\n")
        for name, data in members:
            z.writestr(PREFIX + name, data, zipfile.ZIP_STORED if name == stored else zipfile.ZIP_DEFLATED)
    data = bytearray(buf.getvalue())
    if flip:
        data[data_offset(bytes(data), flip) + 1000] ^= 0xFF
    return bytes(data), audio


def infos(data: bytes) -> dict[str, zipfile.ZipInfo]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {i.filename[len(PREFIX):]: i for i in z.infolist()}


def data_offset(data: bytes, name: str) -> int:
    """Where member ``name``'s compressed bytes start (after its local header)."""
    info = infos(data)[name]
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26:info.header_offset + 30])
    return info.header_offset + 30 + name_len + extra_len


def span(data: bytes, name: str) -> tuple[int, int]:
    """The archive bytes [start, end) of member ``name``: local header, data, up to the next member."""
    starts = sorted(i.header_offset for i in infos(data).values())
    start = infos(data)[name].header_offset
    later = [s for s in starts if s > start]
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        end = later[0] if later else z.start_dir
    return start, end
