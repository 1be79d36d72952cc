"""RUN, wherever a command takes one: a trained run's folder, or the name of a built-in run a plugin ships.

A plugin ships a pretrained run with the ``register_runs(register)`` hook: ``register("piano", folder)``
(a ``Path``, or a callable returning one), as the host's own ``pianogen_pretrained`` plugin does. An existing
directory always wins over a name (a folder called ``piano`` in the current directory is that folder).

A built-in run folder is a run folder without trainer state::

    recipe.toml                        the frozen recipe; the codec as checkpoint = "$RUN/codec.safetensors"
    codec.safetensors                  the codec the model was trained on
    checkpoints/best/model.safetensors
    checkpoints/best/meta.json
    SHA256SUMS                         sha256sum's format, listing every other file of the folder

Loading checks every listed file's sha256 (``verify_sums``; ``pipeline.load_run`` does it for any run folder
holding SHA256SUMS) and refuses a mismatch or an unlisted file in one line. A built-in run is read-only: the
commands write their outputs elsewhere (``RunRef.default_out``). ``pack_run`` makes such a folder from a
trained run.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from pianogen.errors import PianogenError, closest
from pianogen.fetch.http import sha256_of

SUMS = "SHA256SUMS"
RUN_VARIABLE = "$RUN"  # in a run's recipe: the run's own folder, wherever the folder is
REQUIRED = ("recipe.toml", "checkpoints/best/model.safetensors", "checkpoints/best/meta.json")
IGNORED = {"__pycache__", ".DS_Store"}  # what packaging tools may leave in a data folder


@dataclass(frozen=True)
class RunRef:
    """A resolved RUN: its folder, whether a plugin ships it (read-only), and its name."""

    path: Path
    builtin: bool
    name: str  # the built-in's registered name, or the folder's name

    def default_out(self, what: str) -> Path:
        """Where a command writes by default: inside a trained run's folder (``RUN/<what>``), but for a built-in
        run a folder ``<name>-<what>`` in the current directory: nothing is ever written into a package."""
        if self.builtin:
            return Path.cwd() / f"{re.sub(r'[^A-Za-z0-9._+-]+', '_', self.name)}-{what}"
        return self.path / what


def _folder(entry: object) -> Path:
    made = entry.factory  # type: ignore[attr-defined]
    return Path(made() if callable(made) else made)


def builtin_runs() -> dict[str, Path]:
    """Every registered built-in run's name -> its folder (installed or not)."""
    from pianogen import registry

    return {name: _folder(entry) for name, entry in registry.registered("run").items()}


def resolve_run(spec: "str | Path | RunRef") -> RunRef:
    """An existing directory (a run folder, checked when it is loaded), else a registered built-in run's name
    (``piano``, or ``package:piano`` on a clash), checked to be installed; else one line with did-you-mean.
    A RunRef is already resolved."""
    from pianogen import registry

    if isinstance(spec, RunRef):
        return spec
    path, text = Path(spec), str(spec)
    if path.is_dir():
        return RunRef(path, False, path.resolve().name)
    names = registry.registered("run")
    if text in names or (":" in text and text in registry.every_registration("run")):
        entry = registry.lookup("run", text)
        folder = _folder(entry)
        check_installed(text, folder, entry.package)
        return RunRef(folder, True, text)
    if path.exists():
        raise PianogenError(f"{spec} is not a run directory (a file); a run is a folder with recipe.toml")
    known = ", ".join(sorted(names)) or "none"
    raise PianogenError(f"{spec} is not a run directory, nor a built-in run{closest(text, names)}; "
                        f"built-in runs: {known}")


def refuse_writing_into(run: RunRef, out: Path) -> None:
    """A built-in run is read-only: an output folder inside it is refused in one line, before anything runs."""
    if run.builtin and Path(out).resolve().is_relative_to(run.path.resolve()):
        raise PianogenError(f"built-in run '{run.name}' is read-only: --out {out} is inside {run.path}; "
                            f"choose a folder outside it")


def check_installed(name: str, folder: Path, package: str = "") -> None:
    """A built-in run's folder holds the run (not its files' hashes: ``verify_sums`` does that on loading)."""
    by = f" (registered by {package})" if package else ""
    lacking = [f for f in (*REQUIRED, SUMS) if not (folder / f).is_file()]
    if lacking:
        what = "does not exist" if not folder.is_dir() else f"has no {', '.join(lacking)}"
        raise PianogenError(f"built-in run '{name}' is not installed in this copy: {folder}{by} {what} (the "
                            f"trained weights ship with a release of the package)")


def read_sums(folder: Path) -> dict[str, str]:
    """SHA256SUMS -> {relative path: hex digest}; a line not in sha256sum's format is one error."""
    sums = {}
    for number, line in enumerate((folder / SUMS).read_text().splitlines(), 1):
        if not line.strip():
            continue
        match = re.fullmatch(r"([0-9a-fA-F]{64}) [ *](.+)", line.strip())
        name = match and match.group(2).removeprefix("./")
        if match is None or name.startswith("/") or ".." in Path(name).parts:
            raise PianogenError(f"{folder / SUMS}: line {number} is not '<sha256>  <relative path>': {line[:80]}")
        sums[name] = match.group(1).lower()
    return sums


def folder_files(folder: Path) -> list[str]:
    """Every file under ``folder`` but SHA256SUMS (and packaging debris), as relative POSIX paths."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and p.name != SUMS and not IGNORED & set(p.relative_to(folder).parts))


def verify_sums(folder: Path) -> None:
    """Every file of the run is listed in SHA256SUMS with its content's sha256: one line names the first that
    is missing, changed or unlisted (a swapped weights file must not load as the shipped one)."""
    sums = read_sums(folder)
    for name in [*REQUIRED, *folder_files(folder)]:
        if name not in sums:
            raise PianogenError(f"{folder / name} is not listed in {folder / SUMS}; refusing to load a run whose "
                                f"files are not all recorded")
    for name, expected in sums.items():
        file = folder / name
        if not file.is_file():
            raise PianogenError(f"{file} is missing: {folder / SUMS} lists it (the run is incomplete)")
        actual = sha256_of(file)
        if actual != expected:
            raise PianogenError(f"{file} has sha256 {actual[:16]}..., but {SUMS} records {expected[:16]}...: "
                                f"the file was changed or damaged; refusing to load it")


def write_sums(folder: Path) -> Path:
    """(Re)write ``folder/SHA256SUMS`` over every file in it, in sha256sum's format (``sha256sum -c`` reads it)."""
    from pianogen.paths import atomic_write_bytes

    lines = [f"{sha256_of(folder / name)}  {name}\n" for name in folder_files(folder)]
    atomic_write_bytes(folder / SUMS, "".join(lines).encode())
    return folder / SUMS


def _cast_weights(path: Path, dtype_name: str) -> None:
    """Rewrite a safetensors file with its floating tensors in ``dtype_name`` (bf16 | fp16 | fp32)."""
    import torch
    from safetensors import safe_open

    from pianogen.paths import safetensors_bytes

    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    if dtype_name not in dtypes:
        raise PianogenError(f"weights_dtype must be one of {', '.join(dtypes)}, got '{dtype_name}'")
    with safe_open(str(path), "pt") as f:
        metadata = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    cast = {k: v.to(dtypes[dtype_name]) if v.is_floating_point() else v for k, v in tensors.items()}
    path.write_bytes(safetensors_bytes(cast, metadata))  # sorted metadata: the same weights give the same sha256


def pack_run(run_dir: str | Path, dest: str | Path, tag: str = "best", weights_dtype: str = "",
             codec_path: str | Path | None = None) -> Path:
    """A trained run -> a built-in run folder at ``dest`` (which must not exist): the frozen recipe with the
    codec pointed at ``$RUN/codec.safetensors``, the codec file, the ``tag`` checkpoint's weights and meta as
    ``checkpoints/best``, and SHA256SUMS. Trainer state, metrics and figures stay behind.

    ``weights_dtype="bf16"`` stores the token model's floating weights in bfloat16 (half the bytes: what keeps
    a shipped run under the size budget); loading casts them back to the model's dtype.

    ``codec_path``: ship this codec file instead of the run's, one that makes the same tokens (the run's codec
    with its decoder trained again: ``codec_train.train = "decoder"``); anything else is refused. The meta
    records the codec's identity as this version computes it."""
    import pianogen
    from pianogen.fetch.needs import codec_file
    from pianogen.fetch.run_codec import locate_codec
    from pianogen.recipe import dump_toml
    from pianogen.training import checkpoint

    run_dir, dest = Path(run_dir), Path(dest)
    if dest.exists():
        raise PianogenError(f"{dest} already exists; pack_run writes a new folder")
    found = checkpoint.find(run_dir / "checkpoints", tag)
    if found is None or not (run_dir / "recipe.toml").is_file():
        raise PianogenError(f"{run_dir} is not a trained run with a '{tag}' checkpoint")
    recipe = locate_codec(run_dir, pianogen.load_recipe(run_dir / "recipe.toml"))
    codec = codec_file(recipe.codec.name, recipe.codec.options)
    if codec is None or not codec.is_file():
        raise PianogenError(f"{run_dir}'s codec has no weights file to ship ({codec})")
    meta = checkpoint.load_meta(found)
    trained_on = pianogen.get_codec(recipe.codec.name, **recipe.codec.options)
    if not trained_on.recognizes(meta["codec"]):
        raise PianogenError(f"{found} was trained with codec {meta['codec']}, not {codec}")
    if codec_path is not None:
        shipped = pianogen.get_codec(recipe.codec.name, **{**recipe.codec.options, "checkpoint": str(codec_path)})
        if shipped.identity() != trained_on.identity():
            raise PianogenError(f"{codec_path} makes other tokens than {codec}, the codec {run_dir} trained on: "
                                f"only a codec whose decoder alone was trained again can replace it")
        codec = Path(codec_path)
    meta["codec"] = trained_on.identity()
    stage = dest.with_name(f".{dest.name}.packing")
    shutil.rmtree(stage, ignore_errors=True)
    try:
        (stage / "checkpoints" / "best").mkdir(parents=True)
        shutil.copyfile(codec, stage / "codec.safetensors")
        shutil.copyfile(found / checkpoint.MODEL_FILE, stage / "checkpoints" / "best" / checkpoint.MODEL_FILE)
        (stage / "checkpoints" / "best" / checkpoint.META_FILE).write_text(json.dumps(meta, indent=2))
        if weights_dtype:
            _cast_weights(stage / "checkpoints" / "best" / checkpoint.MODEL_FILE, weights_dtype)
        raw = dict(recipe.raw)
        raw["run"] = {k: v for k, v in raw.get("run", {}).items() if k != "dir"}  # where it trained: not shipped
        raw["codec"] = {**raw["codec"], "checkpoint": f"{RUN_VARIABLE}/codec.safetensors"}
        raw["codec"].pop("train_recipe", None)  # shipped trained: nothing to train
        (stage / "recipe.toml").write_text(dump_toml(raw))
        write_sums(stage)
        stage.rename(dest)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return dest
