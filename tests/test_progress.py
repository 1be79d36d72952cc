"""Progress bars live on stderr and only on a terminal: stdout stays a command's output, logs stay clean."""

import os
import re
import subprocess
import sys
import textwrap

# a bar over three items and a trainer's bar with one log line, printing the "result" on stdout mid-bar
SCRIPT = textwrap.dedent("""
    import sys
    from pianogen.progress import StepBar, progress_bar

    enabled = sys.argv[1] == "on"
    with progress_bar(enabled) as bar:
        task = bar.add_task("tokenizing-pieces", total=3)
        for _ in range(3):
            bar.update(task, advance=1)
        print("RESULT")
    with StepBar("training-steps", total=4, done=0, enabled=enabled) as steps:
        steps.update(2, "loss 1.234")
        steps.log("epoch 1: validation loss 0.5000 " + "x" * 120)
        steps.update(4, "loss 0.987")
""")
RICH_SWITCHES = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "NO_COLOR", "COLUMNS", "TERM")


def _run(enabled: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in RICH_SWITCHES}
    return subprocess.run([sys.executable, "-c", SCRIPT, enabled], capture_output=True, text=True, timeout=60,
                          env={**base, **env}, check=True)


def test_off_a_terminal_no_bar_is_drawn_anywhere_and_log_lines_are_plain_stderr_lines():
    done = _run("on")
    assert done.stdout == "RESULT\n"
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr  # no bar frame at all, not even the last one when the bar stops
    assert lines[0].endswith("] epoch 1: validation loss 0.5000 " + "x" * 120)  # one line, not wrapped at 80
    assert lines[0].startswith("[") and "\x1b" not in done.stderr


def test_on_a_terminal_the_bars_and_the_log_are_on_stderr_only():
    done = _run("on", TTY_COMPATIBLE="1", TERM="xterm-256color", COLUMNS="200")
    assert done.stdout == "RESULT\n"  # print() during a live bar is not rerouted when stdout is a pipe
    drawn = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", done.stderr)  # without rich's colours and cursor moves
    for shown in ("tokenizing-pieces", "3/3", "training-steps", "4/4", "loss 0.987", "epoch 1: validation loss"):
        assert shown in drawn, shown


def test_a_disabled_bar_is_silent_even_on_a_terminal_and_so_is_its_log():
    done = _run("off", TTY_COMPATIBLE="1", TERM="xterm-256color")
    assert done.stdout == "RESULT\n"
    assert done.stderr == ""
