"""TOML recipes -> validated dataclasses, with dotted ``key=value`` overrides.

One recipe says everything a run needs. Host-owned tables are dataclasses below; the
plugin tables (``[codec]``, ``[model]``, ``[[loss]]``, ``[[postfilter]]``) keep their plugin
keys in ``options`` and are checked against the plugin's own config at load time; so does ``[data]``
(``recipe_data``): the host's keys, and the data source's own in ``options``.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pianogen.errors import PianogenError, closest
from pianogen.recipe_data import DataConfig, MixPart, data_table, mix_parts  # noqa: F401 (their home, before)
from pianogen.recipe_values import build_table as _build_table
from pianogen.recipe_values import check_value


@dataclass
class RunConfig:
    dir: str = ""  # run directory; "" = runs/<recipe stem> under the current directory
    seed: int = 0  # seeds weights, shuffling and dropout
    device: str = "auto"  # "auto" (cuda if available), "cpu", "cuda", "cuda:1", ...


@dataclass
class CodecConfig:
    name: str = "soundstream"  # a registered codec
    levels: int = 4  # RVQ levels the token model reads and predicts
    train_recipe: str = ""  # codec recipe to run first when `checkpoint` does not exist yet
    options: dict[str, Any] = field(default_factory=dict)  # the codec plugin's own keys (checkpoint, ...)


@dataclass
class PluginSpec:
    name: str  # a registered plugin of the table's kind
    options: dict[str, Any] = field(default_factory=dict)  # the plugin's own keys


@dataclass
class LossSpec(PluginSpec):
    weight: float = 1.0  # multiplies this loss in the sum


@dataclass
class TrainConfig:
    epochs: int = 20  # passes over the training windows
    max_steps: int = 0  # stop after this many optimizer steps; 0 = no limit
    batch_size: int = 8  # windows per micro-batch, summed over all ranks
    grad_accum: int = 1  # micro-batches per optimizer step (a step sees batch_size × grad_accum windows)
    lr: float = 3e-4  # peak learning rate
    weight_decay: float = 0.1  # AdamW decoupled weight decay (matrices only)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])  # AdamW betas
    schedule: str = "onecycle"  # onecycle | cosine | constant (each shapes the lr only; betas stay as set)
    warmup: float = 0.1  # fraction of steps spent warming up (onecycle pct_start, cosine warm-up)
    grad_clip: float = 1.0  # max global gradient norm; 0 = off
    precision: str = "fp32"  # fp32 | bf16 (autocast, CUDA only; falls back to fp32 on CPU)
    compile: bool = False  # torch.compile the model
    log_every: int = 10  # optimizer steps between metric lines
    save_every: int = 0  # optimizer steps between mid-epoch checkpoints; 0 = at epoch ends only
    val_batches: int = 0  # validation batches per epoch; 0 = the whole split
    patience: int = 0  # stop after this many epochs without a better validation loss; 0 = run every epoch
    scheduled_sampling: float = 0.0  # share of input codes replaced by the model's own samples (targets stay the data)
    loggers: list[str] = field(default_factory=lambda: ["jsonl"])  # registered loggers: jsonl | tensorboard | ...


@dataclass
class CodecTrainConfig:
    steps: int = 20000  # optimizer steps
    # all | decoder: start from the [codec] checkpoint and train only its decoder, the encoder and codebooks
    # left as they are, so the codes, and every token model trained on them, stay valid (out names the new file)
    train: str = "all"
    batch_size: int = 16  # audio segments per step
    segment_seconds: float = 1.0  # length of each training segment
    lr: float = 3e-4  # Adam learning rate (generator and discriminator); the peak under "cosine"
    schedule: str = "constant"  # constant | cosine (linear warm-up over `warmup` of the steps, then to 0)
    warmup: float = 0.0  # fraction of steps spent warming up under "cosine"
    quantizer_dropout: float = 1.0  # probability of training with a random number of levels
    wav_weight: float = 1.0  # weight of the waveform L1 (audiocraft's encodec uses 0.1)
    mel_weight: float = 1.0  # weight of the multi-scale log-Mel L1
    stft_weight: float = 1.0  # weight of the multi-resolution STFT distance
    commit_weight: float = 1.0  # weight of the RVQ commitment loss
    grad_clip: float = 0.0  # max global gradient norm of the codec's step; 0 = off
    discriminator: bool = False  # add the MS-STFT discriminator with feature matching
    discriminator_start: int = 0  # step at which adversarial losses switch on
    log_every: int = 50  # steps between metric lines
    save_every: int = 500  # steps between checkpoints
    out: str = ""  # checkpoint path; "" = the [codec] checkpoint
    precision: str = "fp32"  # fp32 | bf16 (autocast around encoder/decoder, CUDA only; the RVQ stays float32)
    loggers: list[str] = field(default_factory=lambda: ["jsonl"])  # registered loggers: jsonl | tensorboard | ...


@dataclass
class GenerateConfig:
    seconds: float = 10.0  # continuation length
    prompt_seconds: float = 5.0  # seconds of the prompt used (all of it when shorter)
    temperature: float = 1.0  # 0 = argmax
    top_k: int = 250  # keep the k most likely codes; 0 = off
    top_p: float = 0.0  # nucleus sampling threshold; 0 = off; wins over top_k when both are set
    prompt_prior: float = 0.0  # weight of the prompt's own code frequencies in each draw (sampling.py); 0 = off
    # the temperature's factor after a prompt whose last 3 s strike no note, rising to 1 at one onset a second
    # (generation/prompt_end.py); 1 = off
    quiet_temperature_scale: float = 1.0
    ring_out: bool = False  # after a quiet prompt, fade the continuation as the prompt's sound was dying


@dataclass
class Recipe:
    path: Path  # where it was read from
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    codec: CodecConfig = field(default_factory=CodecConfig)
    model: PluginSpec | None = None
    loss: list[LossSpec] = field(default_factory=list)
    train: TrainConfig = field(default_factory=TrainConfig)
    codec_train: CodecTrainConfig = field(default_factory=CodecTrainConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    postfilter: list[PluginSpec] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)  # the TOML after overrides (frozen into runs)

    @property
    def stem(self) -> str:
        return self.path.stem

    def run_dir(self) -> Path:
        return Path(self.run.dir) if self.run.dir else Path("runs") / self.stem


TABLES = {"run": RunConfig, "data": DataConfig, "train": TrainConfig, "codec_train": CodecTrainConfig,
          "generate": GenerateConfig}
PLUGIN_TABLES = {"codec": "codec", "model": "token_model", "loss": "loss", "postfilter": "postfilter"}
ARRAY_TABLES = ("loss", "postfilter")
HOST_MODEL_KEYS = ("n_levels", "vocab_size", "block_size")  # derived from codec and data, never set by hand

def builtin_recipes_dir() -> Path:
    return Path(__file__).resolve().parent / "recipes"


def builtin_recipes() -> dict[str, Path]:
    return {p.stem: p for p in sorted(builtin_recipes_dir().glob("*.toml"))}


def resolve_recipe_path(name_or_path: str | Path) -> Path:
    """A file path, or the name of a built-in recipe (``demo``, ``novel.toml``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    builtin = builtin_recipes().get(path.stem if path.suffix == ".toml" else path.name)
    if builtin is not None and len(path.parts) == 1:
        return builtin
    raise PianogenError(f"recipe not found: {name_or_path}{closest(path.stem, builtin_recipes())} "
                        f"(built-in recipes: {', '.join(builtin_recipes())})")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``train.epochs=2`` -> (["train", "epochs"], 2); values are TOML, bare strings allowed."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise PianogenError(f"override '{text}' is not key=value (e.g. train.epochs=2)")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    return key.strip().split("."), parsed


def apply_override(raw: dict[str, Any], path: list[str], value: Any) -> None:
    if len(path) < 2:
        raise PianogenError(f"override '{path[0]}' must name a key inside a table (e.g. train.epochs=2)")
    node: Any = raw
    for i, part in enumerate(path[:-1]):
        if not isinstance(node, (dict, list)):
            raise PianogenError(f"override '{'.'.join(path)}': {'.'.join(path[:i])} is a value, not a table")
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise PianogenError(f"override '{'.'.join(path)}': {'.'.join(path[:i])} has {len(node)} entries")
            node = node[int(part)]
        else:
            node = node.setdefault(part, [] if part in ARRAY_TABLES and path[i + 1].isdigit() else {})
    if isinstance(node, list):
        raise PianogenError(f"override '{'.'.join(path)}' must name a key inside an entry")
    if not isinstance(node, dict):
        raise PianogenError(f"override '{'.'.join(path)}': {'.'.join(path[:-1])} is a value, not a table")
    node[path[-1]] = value


def _plugin_spec(where: str, kind: str, cls: type, table: Any) -> Any:
    """Split host keys from plugin keys, check the name is registered and the plugin keys it accepts."""
    from pianogen import registry

    if not isinstance(table, dict):
        raise PianogenError(f"[{where}] must be a table, got {table!r}")
    host_keys = {f.name for f in dataclasses.fields(cls)} - {"options"}
    if "name" not in table:
        raise PianogenError(f"[{where}] needs a name")
    try:
        registry.lookup(kind, table["name"])
    except PianogenError as err:
        raise PianogenError(f"{where}.name: {err}") from None
    spec = _build_table(where, cls, {k: v for k, v in table.items() if k in host_keys})
    spec.options = {k: v for k, v in table.items() if k not in host_keys}
    if kind == "token_model":
        for key in HOST_MODEL_KEYS:
            if key in spec.options:
                raise PianogenError(f"{where}.{key} is set from the codec and data, not the recipe")
    registry.check_config(kind, spec.name, spec.options, where=f"{where}.")
    hints = registry.config_hints(registry.lookup(kind, spec.name))
    for key, value in spec.options.items():
        if key in hints:  # types too, so a bad value fails here and not when the plugin is built
            check_value(f"{where}.{key}", value, hints[key])
    return spec


def parse_postfilter_option(text: str) -> dict[str, Any] | None:
    """``--postfilter NAME[:KEY=VALUE,...]`` -> a checked spec ``{"name": ..., **options}``; None for 'none'.

    NAME may be ``package:name`` (a plugin shadowed by a name clash), so the name is every ':' part
    before the first one holding '='.
    """
    parts = text.split(":")
    cut = next((i for i, part in enumerate(parts) if "=" in part), len(parts))
    name, options = ":".join(parts[:cut]), ":".join(parts[cut:])
    if name == "none":
        return None
    table: dict[str, Any] = {"name": name}
    for item in filter(None, options.split(",")):
        (key, *rest), value = parse_override(item)
        if rest:
            raise PianogenError(f"--postfilter {text}: '{item}' must be KEY=VALUE without dots")
        table[key] = value
    try:
        spec = _plugin_spec("postfilter", "postfilter", PluginSpec, table)
    except PianogenError as err:
        raise PianogenError(f"--postfilter {text}: {err}") from None
    return {"name": spec.name, **spec.options}


def _check_loggers(key: str, names: list[str]) -> None:
    from pianogen.registry import lookup

    for name in names:
        try:
            lookup("logger", name)
        except PianogenError as err:
            raise PianogenError(f"{key}: {err}") from None


def recipe_from_dict(raw: dict[str, Any], path: Path) -> Recipe:
    known = [*TABLES, *PLUGIN_TABLES]
    for key in raw:
        if key not in known:
            raise PianogenError(f"unknown table '[{key}]'{closest(key, known)}; valid: {', '.join(known)}")
    recipe = Recipe(path=path, raw=copy.deepcopy(raw))
    for name, cls in TABLES.items():
        if name in raw:
            setattr(recipe, name, data_table(raw[name]) if name == "data" else _build_table(name, cls, raw[name]))
    if "data" not in raw:
        recipe.data = data_table({})  # the default source's options, filled
    for table in ("train", "codec_train"):  # logger names, did-you-mean included, before anything runs
        _check_loggers(f"{table}.loggers", getattr(recipe, table).loggers)
    if "codec" in raw:
        recipe.codec = _plugin_spec("codec", "codec", CodecConfig, raw["codec"])
    if "model" in raw:
        recipe.model = _plugin_spec("model", "token_model", PluginSpec, raw["model"])
    for name in ARRAY_TABLES:
        entries = raw.get(name, [])
        if not isinstance(entries, list):
            raise PianogenError(f"{name} must be an array of tables ([[{name}]])")
        cls = LossSpec if name == "loss" else PluginSpec
        setattr(recipe, name, [_plugin_spec(f"{name}.{i}", PLUGIN_TABLES[name], cls, e)
                               for i, e in enumerate(entries)])
    return recipe


def load_recipe(name_or_path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read, override and validate a recipe; every problem is one PianogenError naming the key."""
    path = resolve_recipe_path(name_or_path)
    try:
        raw = tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise PianogenError(f"{path} is not a text file, so not a TOML recipe") from None
    except tomllib.TOMLDecodeError as err:
        raise PianogenError(f"{path}: invalid TOML: {err}") from None
    for text in overrides:
        apply_override(raw, *parse_override(text))
    try:
        return recipe_from_dict(raw, path)
    except PianogenError as err:
        raise PianogenError(f"{path.name}: {err}") from None


def expand_run_folder(recipe: Recipe, run_dir: Path) -> Recipe:
    """``$RUN`` (or ``${RUN}``) in a run's recipe means the run's own folder, wherever it was copied or installed:
    a shipped run names its codec ``checkpoint = "$RUN/codec.safetensors"`` (see pianogen.runs)."""
    def expand(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        return re.sub(r"\$\{RUN\}|\$RUN(?![A-Za-z0-9_])", lambda _: str(run_dir), value)  # not $RUNNER

    recipe.codec.options = {key: expand(value) for key, value in recipe.codec.options.items()}
    recipe.data.options = {key: expand(value) for key, value in recipe.data.options.items()}  # root, midi, ...
    return recipe


def recorded_raw(recipe: Recipe) -> dict[str, Any]:
    """The recipe as a run records it: run.dir made absolute, so the saved recipe finds the run from anywhere."""
    raw = copy.deepcopy(recipe.raw)
    raw.setdefault("run", {})["dir"] = str(recipe.run_dir().resolve())
    return raw


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return repr(value)


def dump_toml(raw: dict[str, Any]) -> str:
    """TOML text for a recipe dict (tables of scalars and arrays of such tables)."""
    lines: list[str] = []
    for name, table in raw.items():
        for entry in table if isinstance(table, list) else [table]:
            lines.append(f"[[{name}]]" if isinstance(table, list) else f"[{name}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in entry.items()]
            lines.append("")
    return "\n".join(lines)
