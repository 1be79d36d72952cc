"""``pianogen codec get``: the reference SoundStream through huggingface_hub from a hub-shaped server on
127.0.0.1, and EnCodec's file checked against the sha256 prefix in its name."""

from __future__ import annotations

import hashlib
import io
import socket

import pytest
import torch
from safetensors.torch import load_file

import pianogen
from pianogen.errors import PianogenError
from pianogen.fetch.weights import SOUNDSTREAM_FILE, SOUNDSTREAM_REPO, default_path, get_codec_weights
from tests.local_server import LocalServer
from tests.test_codec_import import reference_state
from tests.test_fetch_maestro import cli, one_line_error

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
    assert f"cannot download {SOUNDSTREAM_FILE} from {url}/{SOUNDSTREAM_REPO}: the hub is unreachable" in line
    assert "pianogen codec get soundstream PATH/" in line


def test_encodec_verified_by_the_pinned_prefix_and_resumed(tmp_path, monkeypatch, isolated_home):
    data = bytes(range(256)) * 4000
    name = "mirror-copy.th"  # a mirror's name says nothing; the content is checked against the pin
    monkeypatch.setattr("pianogen.fetch.weights.ENCODEC_SHA256", hashlib.sha256(data).hexdigest()[:8])  # as if
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
    with pytest.raises(PianogenError, match=r"is not the official EnCodec 24 kHz file's \(d7cc33bc...\); refused"):
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
