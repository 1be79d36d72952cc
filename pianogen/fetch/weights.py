"""``pianogen codec get soundstream|encodec``: the report's codec weights, fetched once and verified.

SoundStream: the checkpoint the reference ``soundstream`` package's ``from_pretrained`` loads
(hub repo ``haydenshively/SoundStream``), through huggingface_hub (its cache, ETag check and
resume; ``HF_ENDPOINT`` points at a mirror), imported to safetensors under ``$PIANOGEN_HOME/codecs/``.
EnCodec: the official 24 kHz file, checked against the sha256 prefix pinned here (the one its official
name carries, which torch.hub checks too; the full digest is not published). A local file or mirror is
checked against the same pin, never against a hash in its own name: ``evil-<its own sha>.th`` proves nothing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pianogen.errors import PianogenError
from pianogen.fetch.http import download, local_path, make_dirs, sha256_of, write_error
from pianogen.paths import atomic_path, home

SOUNDSTREAM_REPO = "haydenshively/SoundStream"  # soundstream 0.0.1: from_pretrained(repo_id=..., filename=...)
SOUNDSTREAM_FILE = "soundstream_variant_naturalspeech2.pt"
ENCODEC_FILE = "encodec_24khz-d7cc33bc.th"  # the official name; the encodec plugin looks for it in a folder too
ENCODEC_URL = f"https://dl.fbaipublicfiles.com/encodec/v0/{ENCODEC_FILE}"
ENCODEC_SHA256 = "d7cc33bc"  # the official file's digest starts so (from its name; the full digest is unpublished)
ENCODEC_URL_ENV = "PIANOGEN_ENCODEC_URL"
CODECS = ("soundstream", "encodec")


def default_path(name: str) -> Path:
    """Where ``codec get NAME`` puts the weights and the built-in recipes look for them."""
    files = {"soundstream": SOUNDSTREAM_FILE.replace(".pt", ".safetensors"), "encodec": ENCODEC_FILE}
    return home() / "codecs" / files[name]


def get_codec_weights(name: str, source: str | None = None, out: Path | None = None, progress: bool = True) -> Path:
    """Fetch (or take ``source``, a local file) codec ``name``'s weights to ``out``; returns the path."""
    if name not in CODECS:
        raise PianogenError(f"no weights to get for codec '{name}'; known: {', '.join(CODECS)}")
    if source is None and (Path(out) if out else default_path(name)).is_file():
        return Path(out) if out else default_path(name)  # written only once complete and verified
    return (get_soundstream if name == "soundstream" else get_encodec)(source, out, progress)


def get_soundstream(source: str | None = None, out: Path | None = None, progress: bool = True) -> Path:
    from pianogen.registry import lookup

    import_reference = lookup("codec_importer", "soundstream").factory  # the soundstream plugin's converter
    out = Path(out) if out else default_path("soundstream")
    checkpoint = _local(source) if source else _hub_download(SOUNDSTREAM_REPO, SOUNDSTREAM_FILE)
    make_dirs(out.parent)
    try:
        import_reference(checkpoint, out)
    except OSError as err:
        raise write_error(out, err) from None
    return out


def get_encodec(source: str | None = None, out: Path | None = None, progress: bool = True) -> Path:
    url = source or os.environ.get(ENCODEC_URL_ENV) or ENCODEC_URL
    out = Path(out) if out else default_path("encodec")
    path = local_path(url)
    if path is None:
        return download(url, out, ENCODEC_SHA256, f"; check the network, or set ${ENCODEC_URL_ENV} to a mirror "
                                                  f"or pass a local copy of {ENCODEC_FILE}", progress)
    path = _local(str(path))
    found = sha256_of(path)
    if not found.startswith(ENCODEC_SHA256):
        raise PianogenError(f"{path}: sha256 {found[:12]}... is not the official EnCodec 24 kHz file's "
                            f"({ENCODEC_SHA256}...); refused (a hash in a file's name does not verify it)")
    if path.resolve() != out.resolve():
        make_dirs(out.parent)
        try:
            with atomic_path(out) as tmp:
                shutil.copyfile(path, tmp)
        except OSError as err:
            raise write_error(out, err) from None
    return out


def _local(source: str) -> Path:
    path = Path(source).expanduser()
    if not path.is_file():
        raise PianogenError(f"weights file not found: {path}")
    return path


def _hub_download(repo: str, filename: str) -> Path:
    """huggingface_hub's own download (and its progress bar): cached under $PIANOGEN_HOME/hub, resumed."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
    from huggingface_hub.utils import logging as hf_logging

    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # its retries (with backoff) would print a warning each; we print one line
    try:
        return Path(hf_hub_download(repo, filename, cache_dir=home() / "hub", endpoint=endpoint))
    except LocalEntryNotFoundError:
        raise PianogenError(f"cannot download {filename} from {endpoint}/{repo}: the hub is unreachable and it is "
                            f"not cached; check the network, set HF_ENDPOINT to a mirror, or pass a local copy: "
                            f"pianogen codec get soundstream PATH/{filename}") from None
    except HfHubHTTPError as err:
        raise PianogenError(f"cannot download {filename} from {endpoint}/{repo}: "
                            f"{str(err).splitlines()[0]}") from None
    except OSError as err:
        raise write_error(home() / "hub", err) from None
    finally:
        hf_logging.set_verbosity(verbosity)

