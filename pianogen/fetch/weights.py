"""``pianogen codec get [NAME [SOURCE]]``: the codec weights plugins declare, listed, fetched once and verified.

A plugin declares each file it can fetch as a ``WeightsSpec`` (hook ``register_codec_weights``); nothing
here knows a codec by name. ``https://`` sources are downloaded resumably (``.part``) and checked against the
pinned sha256 before the rename. ``hf://OWNER/REPO/PATH`` sources go through huggingface_hub (its cache under
``$PIANOGEN_HOME/hub``, ETag check and resume; ``HF_ENDPOINT`` points at a mirror). A local file (SOURCE, or
the spec's mirror variable naming a path) is checked against the same pin, never against a hash in its own
name: ``evil-<its own sha>.th`` proves nothing. A spec's ``convert`` then turns the download into the file
its codec loads.

Offline: huggingface_hub retries a refused connection five times with backoff (1+2+4+8+8 s, 23 s measured)
before it gives up, so the hub's host (or the proxy the environment names) is first asked for a TCP
connection, three tries within a second: a host that refuses or does not resolve fails at once, with the
hub's cached copy used when there is one. A hub that answers keeps the library's retries for what follows.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from pianogen.errors import PianogenError
from pianogen.fetch.http import download, local_path, make_dirs, sha256_of, write_error
from pianogen.interfaces import WeightsSpec
from pianogen.paths import atomic_path, home

PROBE_TRIES = (0.25, 0.5, None)  # seconds to wait after each failed connection try (None: the last)
PROBE_TIMEOUT = 10.0  # seconds one try may wait for a silent host (a firewall that drops packets)


def registered_weights() -> dict[str, WeightsSpec]:
    """Every registered weights name -> its spec, in name order."""
    from pianogen.registry import registered

    return {name: weights_spec(name) for name in sorted(registered("codec_weights"))}


def weights_spec(name: str) -> WeightsSpec:
    """The spec registered as ``name`` (or ``package:name``); unknown names get did-you-mean."""
    from pianogen.registry import lookup

    entry = lookup("codec_weights", name)
    spec = entry.factory
    if callable(spec) and not isinstance(spec, WeightsSpec):
        try:
            spec = spec()
        except ValueError as err:  # WeightsSpec's own checks
            raise PianogenError(f"codec weights '{name}' of {entry.package}: {err}") from None
    if not isinstance(spec, WeightsSpec):
        raise PianogenError(f"codec weights '{name}' of {entry.package} is a {type(spec).__name__}, "
                            f"not a pianogen.interfaces.WeightsSpec")
    return spec


def default_path(name: str) -> Path:
    """Where ``codec get NAME`` puts the weights (and where recipes look for them)."""
    return home() / "codecs" / weights_spec(name).file


def weights_for_codec(codec: str, path: Path | None = None) -> tuple[str, WeightsSpec] | None:
    """The registered weights codec ``codec`` loads from ``path``: the one whose file name it bears, else the
    codec's only one (under any name, e.g. ``--out x.safetensors``); None when it has none, or several and the
    name matches none of them. With ``path`` None: the one it loads by default."""
    mine = [(name, spec) for name, spec in registered_weights().items() if spec.codec == codec]
    if path is None:
        return next(((n, s) for n, s in mine if s.loaded_by_default), None)
    named = [(n, s) for n, s in mine if s.file == path.name]
    return (named or mine)[0] if named or len(mine) == 1 else None


def get_codec_weights(name: str, source: str | None = None, out: Path | None = None, progress: bool = True) -> Path:
    """Fetch weights ``name`` (or take ``source``: a local file or URL) to ``out``; returns the path. A complete
    file already at ``out`` is kept: it is written only once downloaded, verified and converted."""
    spec = weights_spec(name)
    out = Path(out) if out else default_path(name)
    if source is None and out.is_file():
        return out
    source = source or (os.environ.get(spec.mirror_env) if spec.mirror_env else None) or spec.source
    path = local_path(source)
    if path is not None:
        downloaded = _local(path)
        _check_pin(downloaded, spec, name)
    elif source.startswith("hf://"):
        downloaded = _hub_download(source, name)
        _check_pin(downloaded, spec, name)
    else:
        hint = (f"; check the network{f', or set ${spec.mirror_env} to a mirror' if spec.mirror_env else ''}, or "
                f"pass a local copy: pianogen codec get {name} PATH/{Path(urlsplit(spec.source).path).name}")
        dest = out if spec.convert is None else home() / "downloads" / Path(urlsplit(source).path).name
        downloaded = download(source, dest, spec.sha256, hint, progress)
    return _install(downloaded, out, spec)


def _install(downloaded: Path, out: Path, spec: WeightsSpec) -> Path:
    """The verified download -> ``out``: converted by the spec's ``convert``, or copied atomically."""
    make_dirs(out.parent)
    try:
        if spec.convert is not None:
            spec.convert(downloaded, out)
        elif downloaded.resolve() != out.resolve():
            with atomic_path(out) as tmp:
                shutil.copyfile(downloaded, tmp)
    except OSError as err:
        raise write_error(out, err) from None
    return out


def _check_pin(path: Path, spec: WeightsSpec, name: str) -> None:
    found = sha256_of(path)
    if spec.sha256 and not found.startswith(spec.sha256):
        raise PianogenError(f"{path}: sha256 {found[:12]}... is not that of the '{name}' weights "
                            f"({spec.sha256[:12]}...); refused (a hash in a file's name does not verify it)")


def _local(path: Path) -> Path:
    if not path.is_file():
        raise PianogenError(f"weights file not found: {path}")
    return path


def unreachable(url: str) -> str:
    """Why no TCP connection to ``url``'s host (or to the proxy the environment names for it) opens; "" when
    one does. Three tries within a second, so a network that blinks is not taken for none."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        via = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = via.hostname or "", via.port or (443 if via.scheme == "https" else 80)
    reason = ""
    for wait in PROBE_TRIES:
        try:
            socket.create_connection((host, port), timeout=PROBE_TIMEOUT).close()
            return ""
        except socket.gaierror:
            reason = f"cannot resolve {host}"
        except TimeoutError:
            return f"{host}:{port} did not answer in {PROBE_TIMEOUT:.0f} s"  # already waited long: no retry
        except OSError as err:
            reason = err.strerror or type(err).__name__
        if wait is not None:
            time.sleep(wait)
    return reason


def _hub_download(source: str, name: str) -> Path:
    """huggingface_hub's own download (and its progress bar) of hf://OWNER/REPO/PATH: cached under
    $PIANOGEN_HOME/hub, resumed; an unreachable hub answers from the cache or fails at once."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
    from huggingface_hub.utils import logging as hf_logging

    owner, repo, filename = (source[len("hf://"):].split("/", 2) + ["", ""])[:3]
    repo = f"{owner}/{repo}"
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    offline = unreachable(endpoint)
    failed = (f"cannot download {filename} from {endpoint}/{repo}: the hub is unreachable{{}} and it is not "
              f"cached; check the network, set HF_ENDPOINT to a mirror, or pass a local copy: "
              f"pianogen codec get {name} PATH/{Path(filename).name}")
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # its retries (with backoff) would print a warning each; we print one line
    try:
        return Path(hf_hub_download(repo, filename, cache_dir=home() / "hub", endpoint=endpoint,
                                    local_files_only=bool(offline)))
    except LocalEntryNotFoundError:
        raise PianogenError(failed.format(f" ({offline})" if offline else "")) from None
    except HfHubHTTPError as err:
        raise PianogenError(f"cannot download {filename} from {endpoint}/{repo}: "
                            f"{str(err).splitlines()[0]}") from None
    except OSError as err:
        raise write_error(home() / "hub", err) from None
    finally:
        hf_logging.set_verbosity(verbosity)
