"""The registry: built-ins through entry points, third-party discovery, isolation of broken plugins."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import textwrap

import pytest

import pianogen
from pianogen.errors import PianogenError

BUILTINS = {
    "codec": {"soundstream", "encodec"},
    "token_model": {"baseline", "multi_output", "delay"},
    "loss": {"nll", "mel"},
    "postfilter": {"lowpass"},
    "data_source": {"maestro", "folder", "synthetic", "salamander"},
    "transcriber": {"basic_pitch"},
}


def make_distribution(root, dist: str, modules: dict[str, str]) -> None:
    """A minimal installed distribution: modules + a *.dist-info with a `pianogen` entry point each."""
    info = root / f"{dist.replace('-', '_')}-1.2.3.dist-info"  # wheel naming: name-version
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    lines = ["[pianogen]"]
    for name, source in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(source))
        lines.append(f"{name} = {name}")
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


GOOD = """
    import pianogen

    class Echo:
        def __call__(self, wav, sample_rate):
            return wav

    @pianogen.hookimpl
    def register_postfilters(register):
        register("echo", Echo)
"""
BROKEN = "raise ImportError('this plugin is broken on purpose')\n"


def installed(tmp_path, monkeypatch, registry, dist: str, modules: dict[str, str]):
    """``dist`` with ``modules`` importable and its entry points visible to ``registry``."""
    make_distribution(tmp_path, dist, modules)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    return registry


@pytest.fixture
def third_party(tmp_path, monkeypatch, fresh_registry):
    return installed(tmp_path, monkeypatch, fresh_registry, "pianogen-echo",
                     {"pianogen_echo": GOOD, "pianogen_broken": BROKEN})


def test_builtins_are_registered_through_entry_points(fresh_registry):
    for kind, names in BUILTINS.items():
        found = fresh_registry.registered(kind)
        assert names <= set(found), (kind, sorted(found))
        assert all(found[n].package == "pianogen" for n in names)
    assert fresh_registry.failures() == []


def test_third_party_plugin_is_discovered_and_a_broken_one_isolated(third_party):
    echo = third_party.registered("postfilter")["echo"]
    assert (echo.package, echo.version, echo.plugin) == ("pianogen-echo", "1.2.3", "pianogen_echo")
    failures = third_party.failures()
    assert [f.plugin for f in failures] == ["pianogen_broken"]
    assert "broken on purpose" in failures[0].error
    assert "lowpass" in third_party.registered("postfilter")  # the built-ins still work
    import torch

    wav = torch.randn(1, 1, 10)
    assert torch.equal(pianogen.get_postfilter("echo")(wav, 16000), wav)


def test_load_plugins_env_limits_third_party(third_party, monkeypatch):
    monkeypatch.setenv("PIANOGEN_LOAD_PLUGINS", "")
    third_party.reset()
    assert "echo" not in third_party.registered("postfilter")
    assert "lowpass" in third_party.registered("postfilter")
    assert third_party.failures() == []
    monkeypatch.setenv("PIANOGEN_LOAD_PLUGINS", "pianogen_echo")
    third_party.reset()
    assert "echo" in third_party.registered("postfilter")
    assert third_party.failures() == []


def test_unknown_name_lists_known_and_closest(fresh_registry):
    with pytest.raises(PianogenError, match=r"unknown codec 'soundstrem' \(did you mean 'soundstream'\?\); "
                                            r"known: .*encodec.*soundstream"):
        pianogen.get_codec("soundstrem")


def test_unknown_config_key_names_closest(fresh_registry):
    with pytest.raises(PianogenError, match=r"unknown key 'cutof' .*did you mean 'cutoff'"):
        pianogen.get_postfilter("lowpass", cutof=0.1)


def test_plugins_json_cli_lists_builtins_and_failures(tmp_path):
    make_distribution(tmp_path, "pianogen-echo", {"pianogen_echo": GOOD, "pianogen_broken": BROKEN})
    env = {**__import__("os").environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "pianogen", "plugins", "--json"], capture_output=True, text=True,
                         env=env, check=True).stdout
    listing = json.loads(out)
    names = {(p["kind"], p["name"]) for p in listing["plugins"]}
    assert {(k, n) for k, ns in BUILTINS.items() for n in ns} <= names
    assert ("postfilter", "echo") in names
    assert [f["plugin"] for f in listing["failed"]] == ["pianogen_broken"]


SILENCER = """
    import torch

    import pianogen

    def lowpass(**options):  # accepts anything, returns silence: what a clash must never slip in unasked
        return lambda wav, sample_rate: torch.zeros_like(wav)

    @pianogen.hookimpl
    def register_postfilters(register):
        register("lowpass", lowpass)
"""


@pytest.fixture
def silencer(tmp_path, monkeypatch, fresh_registry):
    return installed(tmp_path, monkeypatch, fresh_registry, "evil-filters",
                     {"evil_filters": SILENCER, "filters": SILENCER})


def test_a_name_clash_is_reported_and_the_builtin_keeps_the_name(silencer):
    import torch

    assert silencer.registered("postfilter")["lowpass"].package == "pianogen"
    assert [(c.kind, c.name, c.winner, c.shadowed) for c in silencer.clashes()] == [
        ("postfilter", "lowpass", "pianogen", "evil-filters")]
    wav = torch.randn(1, 1, 4000)
    with pytest.warns(UserWarning, match=r"also registered by evil-filters; using pianogen's "
                                         r"\(name 'evil-filters:lowpass' to use the other\)"):
        assert pianogen.get_postfilter("lowpass")(wav, 16000).abs().max() > 0
    assert pianogen.get_postfilter("evil-filters:lowpass")(wav, 16000).abs().max() == 0  # chosen deliberately
    assert torch.equal(pianogen.get_postfilter("pianogen:lowpass")(wav, 16000),
                       pianogen.get_postfilter("lowpass")(wav, 16000))
    # an entry point named like a built-in one is not loaded, and that is said too
    assert [f.error for f in silencer.failures() if f.plugin == "filters"] == [
        "entry point name 'filters' is already taken by pianogen; not loaded"]


def test_recipe_can_select_the_shadowed_plugin_by_package(silencer, tmp_path):
    from pianogen.recipe import load_recipe, parse_postfilter_option

    path = tmp_path / "r.toml"
    path.write_text('[[postfilter]]\nname = "evil-filters:lowpass"\n')
    assert load_recipe(path).postfilter[0].name == "evil-filters:lowpass"
    assert parse_postfilter_option("evil-filters:lowpass:anything=1") == {"name": "evil-filters:lowpass",
                                                                           "anything": 1}
    with pytest.warns(UserWarning, match="'lowpass' is also registered by evil-filters"):
        assert parse_postfilter_option("lowpass:cutoff=0.25") == {"name": "lowpass", "cutoff": 0.25}
    with pytest.raises(PianogenError, match="unknown postfilter 'nobody:lowpass'"):
        parse_postfilter_option("nobody:lowpass")


def test_plugins_cli_shows_both_owners_of_a_clashing_name(tmp_path):
    make_distribution(tmp_path, "evil-filters", {"evil_filters": SILENCER})
    env = {**__import__("os").environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "pianogen", "plugins", "--json"], capture_output=True, text=True,
                          env=env, check=True)
    listing = json.loads(done.stdout)
    owners = {(p["package"], p["use_as"]) for p in listing["plugins"] if p["name"] == "lowpass"}
    assert owners == {("pianogen", "lowpass"), ("evil-filters", "evil-filters:lowpass")}
    assert listing["clashes"] == [{"kind": "postfilter", "name": "lowpass", "winner": "pianogen",
                                   "shadowed": "evil-filters", "use_other": "evil-filters:lowpass"}]
    table = subprocess.run([sys.executable, "-m", "pianogen", "plugins"], capture_output=True, text=True, env=env,
                           check=True).stdout
    assert "clash" in table and "evil-filters:lowpass" in table


def test_unknown_names_in_load_plugins_are_warned_about(third_party, monkeypatch):
    monkeypatch.setenv("PIANOGEN_LOAD_PLUGINS", "pianogen_echo,nonexistent")
    third_party.reset()
    with pytest.warns(UserWarning, match="PIANOGEN_LOAD_PLUGINS names nonexistent, which no installed plugin"):
        assert "echo" in third_party.registered("postfilter")


class Unmarked:
    """A hook-named function without ``@hookimpl``: pluggy does not collect it, so nothing registers."""

    @staticmethod
    def register_postfilters(register):
        register("unmarked", lambda **config: None)


class Configured:
    @staticmethod
    @pianogen.hookimpl
    def register_postfilters(register):
        from pianogen_filters import Lowpass, LowpassConfig

        register("strict", lambda **config: Lowpass(LowpassConfig(**config)), config=LowpassConfig)
        register("not_a_dataclass", lambda **config: None, config=dict)


def test_only_hookimpl_marked_functions_register(fresh_registry):
    fresh_registry.register_module(Unmarked, "unmarked-plugin")
    assert "unmarked" not in fresh_registry.registered("postfilter")


def test_register_config_dataclass_validates_recipe_keys(fresh_registry):
    fresh_registry.register_module(Configured, "configured-plugin")
    assert pianogen.get_postfilter("strict", cutoff=0.2).config.cutoff == 0.2
    with pytest.raises(PianogenError, match=r"unknown key 'cutof' for postfilter 'strict'.*valid: cutoff, order"):
        pianogen.get_postfilter("strict", cutof=0.2)
    # the config must be a dataclass; the bad registration is reported and the good one kept
    assert "not_a_dataclass" not in fresh_registry.registered("postfilter")
    assert any("takes a dataclass" in f.error for f in fresh_registry.failures())


class Commands:
    @staticmethod
    @pianogen.hookimpl
    def register_commands(cli):
        import click

        @cli.command(name="hello-plugin")
        @click.argument("who")
        def hello(who):
            click.echo(f"hello {who}")


class BrokenCommands:
    @staticmethod
    @pianogen.hookimpl
    def register_commands(cli):
        raise RuntimeError("this command plugin is broken on purpose")


def test_a_plugin_adds_commands_and_a_broken_one_is_isolated(fresh_registry, capsys):
    from pianogen.commands.cli import cli, main

    fresh_registry.register_module(Commands, "commands-plugin")
    fresh_registry.register_module(BrokenCommands, "broken-commands")
    try:
        main(["hello-plugin", "world"])
        assert capsys.readouterr().out == "hello world\n"
        assert [f.plugin for f in fresh_registry.failures()] == ["broken-commands"]
        assert "broken on purpose" in fresh_registry.failures()[0].error
    finally:
        cli.commands.pop("hello-plugin", None)


def test_builtin_commands_load_no_plugin_until_a_name_needs_one():
    """Plugins add commands lazily: `pianogen ls` imports neither a plugin nor torch; `codec import soundstream`
    (a plugin's command) is found when asked for."""
    probe = ("import sys\nfrom pianogen.commands.cli import main\nmain(['ls'])\n"
             "print('torch' in sys.modules, 'pianogen_soundstream' in sys.modules)\n"
             "main(['codec', 'import', '--help'])\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    lines = done.stdout.splitlines()
    assert "False False" in lines
    assert any(line.split()[:1] == ["soundstream"] for line in lines[lines.index("False False"):])


def test_a_foreign_distribution_named_pianogen_replaces_and_adds_no_builtin(tmp_path):
    """A stray ``pianogen-9.9.dist-info`` first on the path (importlib.metadata would pick it over ours) whose
    entry points carry our names: none of its modules loads, ours all do, and `pianogen plugins` says why,
    with PIANOGEN_LOAD_PLUGINS unset or empty."""
    info = tmp_path / "pianogen-9.9.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pianogen\nVersion: 9.9\n")
    (info / "entry_points.txt").write_text("[pianogen]\nfilters = evil_filters\nextra = evil_filters\n")
    (tmp_path / "evil_filters.py").write_text(textwrap.dedent(SILENCER) + "\nopen(__file__ + '.ran', 'w')\n")
    for allow in (None, ""):
        env = {k: v for k, v in __import__("os").environ.items() if k != "PIANOGEN_LOAD_PLUGINS"}
        env["PYTHONPATH"] = str(tmp_path)
        if allow is not None:
            env["PIANOGEN_LOAD_PLUGINS"] = allow
        listing = json.loads(subprocess.run([sys.executable, "-m", "pianogen", "plugins", "--json"],
                                            capture_output=True, text=True, env=env, check=True).stdout)
        names = {(p["kind"], p["name"], p["package"], p["version"]) for p in listing["plugins"]}
        assert {(k, n) for k, ns in BUILTINS.items() for n in ns} <= {(k, n) for k, n, _, _ in names}
        assert {(package, version) for _, _, package, version in names} == {("pianogen", pianogen.__version__)}
        assert listing["clashes"] == []
        (foreign,) = listing["failed"]
        assert foreign["plugin"] == "filters, extra" and foreign["package"].startswith("pianogen 9.9 (")
        assert "not this installation; not loaded" in foreign["error"]
        assert not (tmp_path / "evil_filters.py.ran").exists()  # its code never ran


TAKEOVER = """
    import click

    import pianogen

    @pianogen.hookimpl
    def register_commands(cli):
        @cli.command(name="train")
        def train():
            click.echo("evil train")

        @cli.commands["codec"].commands["import"].command(name="soundstream")
        def soundstream():
            click.echo("evil import")

        @cli.command(name="hello-takeover")
        def hello():
            click.echo("a new name is fine")
"""


COMMANDS_PROBE = """
import sys
from pianogen.commands.cli import main
for args in sys.argv[1:]:
    print("=== " + args, flush=True)
    try:
        main(args.split())
    except SystemExit:
        pass
"""


def test_a_plugin_command_never_replaces_a_builtin_one(tmp_path):
    """`train` and `codec import soundstream` stay ours; the plugin's are kept as `evil-cmds:train` and
    `codec import evil-cmds:soundstream`, and both clashes are listed like plugin clashes."""
    make_distribution(tmp_path, "evil-cmds", {"evil_cmds": TAKEOVER})
    env = {**__import__("os").environ, "PYTHONPATH": str(tmp_path)}
    asked = ["plugins --json", "train --help", "codec import soundstream --help", "evil-cmds:train",
             "codec import evil-cmds:soundstream", "hello-takeover", "plugins"]
    done = subprocess.run([sys.executable, "-c", COMMANDS_PROBE, *asked], capture_output=True, text=True, env=env)
    said = dict(zip(asked, [part.split("\n", 1)[1] for part in done.stdout.split("=== ")[1:]]))
    assert json.loads(said["plugins --json"])["clashes"] == [
        {"kind": "command", "name": "train", "winner": "pianogen", "shadowed": "evil-cmds",
         "use_other": "evil-cmds:train"},
        {"kind": "command", "name": "codec import soundstream", "winner": "pianogen", "shadowed": "evil-cmds",
         "use_other": "codec import evil-cmds:soundstream"}], done.stderr
    assert "Train a token model" in said["train --help"]
    assert "Convert the reference SoundStream" in said["codec import soundstream --help"]
    assert said["evil-cmds:train"] == "evil train\n"  # there, under the name that says whose
    assert said["codec import evil-cmds:soundstream"] == "evil import\n"
    assert said["hello-takeover"] == "a new name is fine\n"
    assert "clash command 'train'" in said["plugins"] and "'evil-cmds:train' the other" in said["plugins"]


def test_a_reset_registry_lets_the_builtins_add_their_commands_again(fresh_registry):
    """Tests reset the registry but not the command tree: the built-in importer re-adds its command, no clash."""
    from pianogen.commands.cli import cli, main

    importers = cli.commands["codec"].commands["import"]
    for _ in range(2):
        main(["codec", "import", "--help"])  # lists the group's commands: the plugins add theirs
        assert "soundstream" in importers.commands
        fresh_registry.reset()
    main(["plugins", "--json"])
    assert fresh_registry.clashes() == [] and "pianogen:soundstream" not in importers.commands
