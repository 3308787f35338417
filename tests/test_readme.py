"""Every command block in the README works as written after `make run` on a fresh clone.

The commands are read from README.md's ```sh blocks (and `make run`'s steps from the Makefile),
never copied here, so neither can drift from the product. Each runs in its own process against
a fresh MAILSEC_VAR_DIR (SQLite, file broker, local secret key), resolving through the Knot
fixture only: names outside its zones are refused, which gives honest `error` results.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import REPO, KnotServer, free_port, stop_process, wait_for_tcp

README = REPO / "README.md"
MAKEFILE = REPO / "Makefile"
README_HOST = "127.0.0.1:8000"  # where `make run` serves, as the README's curl lines say
SERVER_ADDRESS = "127.0.0.1"  # a host name `make run`'s debug settings allow
# The shell variable and placeholder the README asks the reader to fill in.
KEY_VARIABLE = "$KEY"
TASK_PLACEHOLDER = "<task_id>"


@dataclass(frozen=True)
class Command:
    """One command line of a README block, split as the shell would."""

    argv: list[str]
    line: str

    @property
    def expected_status(self) -> int | None:
        """The HTTP status a trailing `# 202` comment promises, if any."""
        match = re.search(r"\s#\s*(\d{3})\s*$", self.line)
        return int(match.group(1)) if match else None


def readme_commands(text: str) -> list[Command]:
    commands = []
    for block in re.findall(r"^```sh\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            if argv:
                commands.append(Command(argv, line))
    return commands


def make_steps(target: str) -> list[list[str]]:
    """A Makefile target's recipe lines, each `$(DEV_ENV) $(PY) manage.py ...`, as manage.py argv."""
    lines = MAKEFILE.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{target}:"))
    steps = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        prefix, _, rest = line.strip().partition(" manage.py ")
        assert prefix == "$(DEV_ENV) $(PY)", f"make {target} runs something new: {line.strip()}"
        steps.append(["manage.py", *shlex.split(rest)])
    return steps


def make_dev_env() -> dict[str, str]:
    """The variables `make run` sets (its DEV_ENV line)."""
    match = re.search(r"^DEV_ENV := (.*)$", MAKEFILE.read_text(), flags=re.MULTILINE)
    assert match, "the Makefile has no DEV_ENV line"
    return dict(item.split("=", 1) for item in shlex.split(match.group(1)))


def test_readme_blocks_hold_the_commands_this_file_runs():
    commands = readme_commands(README.read_text())
    for command in commands:
        manage = command.argv[:2] == [".venv/bin/python", "manage.py"]
        assert manage or command.argv[0] in {"make", "curl"}, f"cannot run {command.line!r}"
    first_words = {" ".join(c.argv[:3]) for c in commands}
    assert {"make run", ".venv/bin/python manage.py create_api_token"} <= first_words
    assert ".venv/bin/python manage.py check_domain" in first_words
    assert any(c.argv[0] == "curl" for c in commands)
    assert [c.expected_status for c in commands if c.expected_status] == [202, 202]
    assert "MAILSEC_DEBUG" in make_dev_env()


def _environ(var_dir: Path, knot: KnotServer) -> dict[str, str]:
    """A fresh clone's environment: nothing of mailsec's set, local state in var_dir."""
    dropped = ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL")
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("MAILSEC_", "DJANGO_"))
        and name not in dropped
        and not name.lower().endswith("_proxy")
    }
    env.update(
        MAILSEC_VAR_DIR=str(var_dir),
        MAILSEC_DNS_NAMESERVERS=knot.nameserver,
        MAILSEC_DNS_TIMEOUT="2",
    )
    return env


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert result.returncode == 0, f"{shlex.join(argv)}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture
def made_run(tmp_path: Path, knot: KnotServer) -> Iterator[tuple[dict[str, str], str]]:
    """What `make run` leaves on a fresh clone: its migrate and admin steps, run as it runs them,
    and its web server, on a free port (127.0.0.1:8000 may be taken). The worker and beat are
    left out: every README command answers without them (a queued check stays pending).

    Yields the environment the README's commands run in (no MAILSEC_DEBUG) and the host:port.
    """
    var_dir = tmp_path / "var"
    env = _environ(var_dir, knot)
    dev_env = {**env, **make_dev_env()}
    for step in make_steps("migrate") + make_steps("admin"):
        _run([sys.executable, *step], dev_env)
    host = f"{SERVER_ADDRESS}:{free_port(SERVER_ADDRESS)}"
    log = (tmp_path / "web.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", host, "--noreload"],
        cwd=REPO, env=dev_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        address, port = host.split(":")
        if not wait_for_tcp(address, int(port), timeout=60):
            pytest.fail(f"the web server did not start:\n{(tmp_path / 'web.log').read_text()}")
        yield env, host
    finally:
        stop_process(server)
        log.close()


def _substitute(argv: list[str], key: str | None, task_id: str | None, host: str) -> list[str]:
    result = []
    for arg in argv:
        if KEY_VARIABLE in arg:
            assert key, "a command uses $KEY before create_api_token printed one"
            arg = arg.replace(KEY_VARIABLE, key)
        if TASK_PLACEHOLDER in arg:
            assert task_id, "a command uses <task_id> before a 202 answer gave one"
            arg = arg.replace(TASK_PLACEHOLDER, task_id)
        arg = arg.replace(README_HOST, host)
        assert "$" not in arg and not re.search(r"<\w+>", arg), f"unfilled placeholder in {arg!r}"
        result.append(arg)
    return result


@pytest.mark.knot
def test_every_readme_command_works_after_make_run(made_run):
    env, host = made_run
    key: str | None = None
    task_id: str | None = None
    ran = 0
    for command in readme_commands(README.read_text()):
        argv = _substitute(command.argv, key, task_id, host)
        if argv[0] == "make":
            continue  # `make run` is what the fixture did; `make test` is this suite
        if argv[0] == "curl":
            curl = ["curl", "--silent", "--show-error", "--noproxy", "*", "--max-time", "60"]
            result = _run([*curl, "--write-out", r"\n%{http_code}", *argv[1:]], env)
            body, _, status_text = result.stdout.rpartition("\n")
            status = int(status_text)
            assert 200 <= status < 300, f"{command.line}\n{status} {body}"
            if command.expected_status:
                assert status == command.expected_status, command.line
            if status == 202:
                task_id = json.loads(body)["task_id"]
        else:
            result = _run([sys.executable, *argv[1:]], env)
            if argv[2] == "create_api_token":
                key = result.stdout.strip().splitlines()[-1]
                assert key.startswith("msk_"), result.stdout
        ran += 1
    assert ran >= 3
