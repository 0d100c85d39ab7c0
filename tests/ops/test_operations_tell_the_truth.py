"""Operations tell the truth: an unwritable spool, an unreachable database and a database named
twice are each one line saying so; two embedded-store servers of one checkout keep to their own
spools."""
import os
import subprocess
import sys
import time

import pytest

from backend.config import ConfigError, load_config
from tests.helpers import ROOT, TEST_SECRET

UNREACHABLE = "mongodb://127.0.0.1:9/tokenledger"
SCRIPTS = (["scripts/replay_spool.py"], ["scripts/migrate.py"], ["scripts/create_indexes.py"],
           ["scripts/rebuild_rollups.py", "--check"], ["scripts/create_admin.py", "--email", "a@example.com",
                                                       "--password", "correct-horse-battery"],
           ["scripts/reconcile.py"], ["scripts/apply_retention.py", "--older-than", "30", "--mode", "delete"])


def _run(args, **env):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", **env})


@pytest.mark.parametrize("args", SCRIPTS, ids=lambda args: args[0])
def test_a_script_facing_an_unreachable_database_says_so_in_one_line_within_seconds(args, tmp_path):
    started = time.monotonic()
    result = _run(args, MONGO_URI=UNREACHABLE, JWT_SECRET_KEY=TEST_SECRET, SPOOL_PATH=str(tmp_path / "spool.jsonl"),
                  MONGO_TIMEOUT_MS="30000")
    elapsed = time.monotonic() - started
    assert result.returncode == 3, result.stderr
    errors = [line for line in result.stderr.splitlines() if "WARNING" not in line and "INFO" not in line]
    assert errors == ["Error: database unreachable: 127.0.0.1:9: [Errno 111] Connection refused"]
    assert "background" not in result.stderr and "Topology" not in result.stderr
    assert elapsed < 6, elapsed  # 3 s of server selection at most, plus the interpreter's start


def test_an_unwritable_spool_stops_start_up_with_one_line(tmp_path):
    with pytest.raises(ConfigError, match="SPOOL_PATH /proc/nope/spool.jsonl cannot be written"):
        load_config({"SPOOL_PATH": "/proc/nope/spool.jsonl"})
    with pytest.raises(ConfigError, match=f"SPOOL_PATH {tmp_path} cannot be written"):
        load_config({"SPOOL_PATH": str(tmp_path)})  # a folder, not a file
    result = _run(["wsgi.py"], SPOOL_PATH="/proc/nope/spool.jsonl")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(
        "Configuration error: SPOOL_PATH /proc/nope/spool.jsonl cannot be written")


def test_the_database_named_in_mongo_uri_is_the_one_used():
    env = {"JWT_SECRET_KEY": TEST_SECRET}
    assert load_config({**env, "MONGO_URI": "mongodb://db:27017/acme_usage"})[0]["MONGO_DB_NAME"] == "acme_usage"
    assert load_config({**env, "MONGO_URI": "mongodb://db:27017/acme_usage?retryWrites=true",
                        "MONGO_DB_NAME": "acme_usage"})[0]["MONGO_DB_NAME"] == "acme_usage"
    assert load_config({**env, "MONGO_URI": "mongodb://db:27017/", "MONGO_DB_NAME": "other"})[0][
        "MONGO_DB_NAME"] == "other"
    assert load_config({**env, "MONGO_URI": "mongodb://db:27017"})[0]["MONGO_DB_NAME"] == "tokenledger"
    with pytest.raises(ConfigError, match="MONGO_URI names the database 'acme_usage' and MONGO_DB_NAME 'other'"):
        load_config({**env, "MONGO_URI": "mongodb://db:27017/acme_usage", "MONGO_DB_NAME": "other"})


SERVER = """
import sys
from backend import create_app
from backend.runtime import runtime
app = create_app({"TESTING": True, "BACKGROUND_TASKS": False, "LLM_PROVIDERS": ["demo"]})
print(runtime(app).spool.path, flush=True)
sys.stdin.readline()
"""


def test_two_embedded_store_servers_of_one_checkout_never_share_a_spool():
    servers = [subprocess.Popen([sys.executable, "-c", SERVER], cwd=ROOT, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env={"PATH": "/usr/bin:/bin"})
               for _ in range(2)]
    paths = [server.stdout.readline().strip() for server in servers]
    try:
        assert paths[0] != paths[1] and all(os.path.isdir(os.path.dirname(path)) for path in paths)
        assert not any(path.startswith(str(ROOT)) for path in paths)
    finally:
        for server in servers:
            server.communicate("\n", timeout=30)
    # A clean exit removes the process's own spool.
    assert not any(os.path.exists(os.path.dirname(path)) for path in paths)
    assert load_config({})[0]["SPOOL_PATH"] is None  # the embedded store's default: a spool of the process's own


def test_a_new_embedded_spool_removes_those_of_processes_that_are_gone():
    import tempfile

    from backend.usage.spool import PRIVATE_PREFIX, Spool

    gone = tempfile.mkdtemp(prefix=f"{PRIVATE_PREFIX}999999999-")  # no such process
    alive = tempfile.mkdtemp(prefix=f"{PRIVATE_PREFIX}{os.getpid()}-")
    try:
        spool = Spool.of_this_process()
        assert not os.path.exists(gone) and os.path.isdir(alive)
        assert os.path.basename(os.path.dirname(spool.path)).startswith(f"{PRIVATE_PREFIX}{os.getpid()}-")
    finally:
        for folder in (gone, alive):
            if os.path.isdir(folder):
                os.rmdir(folder)


def test_the_dev_server_stopped_by_sigterm_exits_cleanly():
    import signal
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "wsgi.py"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, env={"PATH": "/usr/bin:/bin", "PORT": str(port)})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "Running on" not in server.stderr.readline():
        pass
    server.send_signal(signal.SIGTERM)
    assert server.wait(20) == 0  # sys.exit(0): the exit hooks ran
