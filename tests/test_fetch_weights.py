"""``pianogen codec get``: the reference SoundStream through huggingface_hub from a hub-shaped server on
127.0.0.1 (and, offline, from its cache or one line at once), and EnCodec's file checked against its pin."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import socket
import time

import pytest
import torch
from safetensors.torch import load_file

import pianogen
from pianogen.errors import PianogenError
from pianogen.fetch.weights import default_path, get_codec_weights, weights_spec
from tests.local_server import LocalServer
from tests.test_codec_import import reference_state
from tests.test_fetch_maestro import cli, one_line_error

# what the soundstream plugin declares: hf://OWNER/REPO/FILE
SOUNDSTREAM_REPO, SOUNDSTREAM_FILE = weights_spec("soundstream").source[len("hf://"):].rsplit("/", 1)
HUB_PATH = f"/{SOUNDSTREAM_REPO}/resolve/main/{SOUNDSTREAM_FILE}"


@pytest.fixture(scope="module")
def reference_bytes():
    buf = io.BytesIO()
    torch.save(reference_state(), buf)
    return buf.getvalue()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_soundstream_from_the_hub_imported_once(reference_bytes, monkeypatch, one_thread):
    with LocalServer({HUB_PATH: reference_bytes}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        path = get_codec_weights("soundstream")
        assert path == default_path("soundstream") and server.served[HUB_PATH] == len(reference_bytes)
        assert ("HEAD", HUB_PATH, None) in server.requests  # huggingface_hub's ETag / commit look-up
        asked = len(server.requests)
        assert get_codec_weights("soundstream") == path and len(server.requests) == asked  # never again
    codec = pianogen.get_codec("soundstream", checkpoint=str(path))
    expected = reference_state()["encoder.layers.0.conv.weight"]
    assert torch.equal(codec.state_dict()["encoder.layers.0.conv.weight"], expected)
    assert codec.n_levels == 3 and codec.codebook_size == 32


def test_soundstream_from_a_local_file_is_the_same_offline(reference_bytes, tmp_path, monkeypatch, one_thread):
    local = tmp_path / SOUNDSTREAM_FILE
    local.write_bytes(reference_bytes)
    monkeypatch.setenv("HF_ENDPOINT", closed_port_url())  # no hub: the local file needs none
    out = get_codec_weights("soundstream", str(local), tmp_path / "ss.safetensors")
    with LocalServer({HUB_PATH: reference_bytes}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        from_hub = get_codec_weights("soundstream")
    a, b = load_file(out), load_file(from_hub)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_soundstream_without_network_is_one_line(tmp_path):
    url = closed_port_url()
    line = one_line_error(cli("codec", "get", "soundstream", env=_env(HF_ENDPOINT=url)))
    assert f"cannot download {SOUNDSTREAM_FILE} from {url}/{SOUNDSTREAM_REPO}: the hub is unreachable " \
           f"(Connection refused) and it is not cached" in line
    assert "pianogen codec get soundstream PATH/" in line


def test_an_unreachable_hub_fails_in_a_second_or_answers_from_the_cache(reference_bytes, monkeypatch,
                                                                        isolated_home, one_thread):
    """huggingface_hub alone retries a refused connection for 23 s (1+2+4+8+8 s of backoff); asked first, the
    closed port fails at once, and weights fetched before come from the hub's cache without the server."""
    monkeypatch.setenv("HF_ENDPOINT", closed_port_url())
    started = time.monotonic()
    with pytest.raises(PianogenError, match="the hub is unreachable"):
        get_codec_weights("soundstream", progress=False)
    assert time.monotonic() - started < 5  # three connection tries 0.25 s and 0.5 s apart, then one line
    with LocalServer({HUB_PATH: reference_bytes}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        first = get_codec_weights("soundstream", progress=False)
        assert server.served[HUB_PATH] == len(reference_bytes)
    imported = first.read_bytes()
    first.unlink()  # the imported file is gone, the hub's cached download is not
    monkeypatch.setenv("HF_ENDPOINT", closed_port_url())
    started = time.monotonic()
    assert get_codec_weights("soundstream", progress=False).read_bytes() == imported
    assert time.monotonic() - started < 5


def test_encodec_verified_by_the_pinned_prefix_and_resumed(tmp_path, monkeypatch, isolated_home,
                                                           fresh_registry):
    data = bytes(range(256)) * 4000
    name = "mirror-copy.th"  # a mirror's name says nothing; the content is checked against the pin
    pinned = dataclasses.replace(weights_spec("encodec"), sha256=hashlib.sha256(data).hexdigest()[:8])  # as if
    monkeypatch.setattr("pianogen_encodec.WEIGHTS", pinned)
    fresh_registry.reset()  # the plugin registers its WEIGHTS again, the pinned one
    with LocalServer({f"/{name}": data}) as server:
        monkeypatch.setenv("PIANOGEN_ENCODEC_URL", f"{server.url}/{name}")
        part = isolated_home / "codecs" / "encodec_24khz-d7cc33bc.th.part"
        part.parent.mkdir(parents=True)
        part.write_bytes(data[:300_000])  # a killed earlier download
        path = get_codec_weights("encodec", progress=False)
        assert path == default_path("encodec") and path.read_bytes() == data and not part.exists()
        assert server.requests[-1] == ("GET", f"/{name}", "bytes=300000-")
        assert server.served[f"/{name}"] == len(data) - 300_000


def test_encodec_with_the_wrong_content_is_refused_and_not_kept(tmp_path, monkeypatch, isolated_home):
    official = "encodec_24khz-d7cc33bc.th"
    with LocalServer({f"/{official}": b"not the weights" * 1000}) as server:
        monkeypatch.setenv("PIANOGEN_ENCODEC_URL", f"{server.url}/{official}")
        with pytest.raises(PianogenError, match="does not start with d7cc33bc"):
            get_codec_weights("encodec", progress=False)
    assert not list((isolated_home / "codecs").iterdir())  # neither the file nor its .part
    local = tmp_path / official
    local.write_bytes(b"also not")
    with pytest.raises(PianogenError, match=r"is not that of the 'encodec' weights \(d7cc33bc...\); refused"):
        get_codec_weights("encodec", str(local))
    evil = b"an attacker's weights"
    named = tmp_path / f"evilenc-{hashlib.sha256(evil).hexdigest()}.th"  # its own full sha256 in its name
    named.write_bytes(evil)
    with pytest.raises(PianogenError, match="a hash in a file's name does not verify it"):
        get_codec_weights("encodec", str(named))
    assert not list((isolated_home / "codecs").iterdir())


def test_encodec_without_network_is_one_line(monkeypatch):
    url = f"{closed_port_url()}/encodec_24khz-d7cc33bc.th"
    monkeypatch.setenv("PIANOGEN_ENCODEC_URL", url)
    with pytest.raises(PianogenError, match=f"^cannot download {url}: Connection refused; check the network"):
        get_codec_weights("encodec", progress=False)


def _env(**values: str) -> dict[str, str]:
    import os

    return {**os.environ, **values}
