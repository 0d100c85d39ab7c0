"""Benchmark what tracking costs a generation request: tracked vs untracked, database commands, decay.

Usage: python scripts/bench_capture.py [--quick] [--rounds K] [--requests N] [--block B] [--warmup W]
           [--server-rounds K] [--server-requests N] [--server-block B] [--clients C]
           [--count-requests N] [--throughput N] [--slice S] [--set KEY=JSON ...]

Every figure comes from POST /api/test-generation in fresh processes with the environment's
settings cleared (as the tests do), each app started as wsgi.py starts it (create_app, then
gc.collect and gc.freeze). The store is the embedded one (mongomock), or MongoDB when MONGO_URI
is set: then the database tokenledger_bench_capture is dropped before and after the run.

Table 1: server CPU (time.process_time, every thread of the process) per request and wall
p50/p99, tracked vs untracked, for OpenAI's SDK against a zero-latency stub at its HTTP
transport (a fixed chat.completion body with usage) and for the demo provider. "Untracked" is
the same app with the hooks that close a request's tracked calls removed (tracking's
_close_request_calls and _close_leftovers taken out of the app's hook lists): the generation
transaction runs and opens its call, and nothing is recorded. Each round starts one fresh process per variant and times them in
alternating blocks (ABBA), so both see the same load on the machine; a tracked block ends only
when the ledger holds every record of its requests, so background writes are charged to the
block that caused them. Medians over rounds with min-max; the ratio is taken per round. All of
it through the Flask test client, in-process.

Table 1b (not with --quick unless --server-rounds is given): the same against gunicorn, one
worker with 8 threads on 127.0.0.1, from a few client threads with keep-alive connections; the
server's CPU is its worker's, read from /proc after each block has settled.

Table 2: database commands per tracked request (no budget, then with a budget on the user),
split by where they run: before the answer (the view and the other hooks, on the request's
thread), recording on the response path (inside the capture hooks), and off the response path
(any other thread, e.g. a ledger writer). MongoDB: a pymongo CommandListener; mongomock has no
command monitoring, so the Collection methods are wrapped by a counting proxy (outermost call
only) for the duration of each measured block.

Table 3: throughput of tracked requests (demo provider, one client) over 10,000 requests,
per 1,000-request slice, and last slice / first slice.

CPU is the app process's alone: with MONGO_URI the database server's (for instance
../shared/tools/mongo_wire.py, which is mongomock behind the wire protocol and not MongoDB) is not
counted; with the embedded store the store runs inside the app process and is counted.

Targets: one row per target with PASS or MISS (issue 24: CPU tracked / untracked <= 1.15x on the
embedded store, <= 1.10x with MONGO_URI; issue 13: wall p99 and throughput); a miss does not
change the exit status (this is a measurement).
"""
import argparse
import atexit
import collections
import concurrent.futures
import contextlib
import functools
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATABASE = "tokenledger_bench_capture"
COUNT = 5
PASSWORD = "bench-password-long-enough"
PROMPT = "Users sign in with an email and a password; five failed attempts lock the account for fifteen minutes."
PROVIDERS = ("openai", "demo")
PROVIDER_LABELS = {"openai": "openai (SDK, zero-latency stub)", "demo": "demo"}
VARIANTS = ("tracked", "untracked")
BUDGET = {"tokensPerDay": 10**12, "usdPerDay": 10.0**6, "tokensPerMonth": 10**13, "usdPerMonth": 10.0**7}
# How long a block waits for background writes to reach the ledger before it gives up.
DRAIN_SECONDS = 10
DRAIN_POLL_SECONDS = 0.005
# Other threads count as idle when they used less than QUIET_CPU_SECONDS of CPU in QUIET_SECONDS.
QUIET_SECONDS = 0.02
QUIET_CPU_SECONDS = 0.0002
WORKER_SECONDS = {"timing": 600, "commands": 300, "throughput": 1200}
SERVER_START_SECONDS = 60
# After a server block, time for the background ledger writes it caused (LEDGER_WRITE_INTERVAL_MS is 200 by default).
SERVER_SETTLE_SECONDS = 0.5

BEFORE, RECORDING, OFF_PATH = "before the answer", "recording on the response path", "off the response path"
PHASES = (BEFORE, RECORDING, OFF_PATH)
MONGOMOCK_METHODS = ("find", "find_one", "insert_one", "insert_many", "update_one", "update_many", "replace_one",
                     "find_one_and_update", "find_one_and_replace", "find_one_and_delete", "aggregate",
                     "count_documents", "estimated_document_count", "distinct", "delete_one", "delete_many",
                     "bulk_write")

# Issue 24: tracked / untracked app-process CPU, by where the database lives.
TARGET_CPU = {"embedded": 1.15, "mongodb": 1.10}
# Issue 13: tracked / untracked wall p99 and the throughput decay.
TARGET_RATIO = 1.10
TARGET_DECAY = 0.8


# --- worker side: one app in a fresh process ----------------------------------------------------

def _settings():
    """Every setting backend/config.py reads from the environment."""
    return (set(re.findall(r'env, "([A-Z0-9_]+)"', (ROOT / "backend" / "config.py").read_text()))
            | {"MONGO_URI", "OPENAI_MODEL", "GEMINI_MODEL", "ANTHROPIC_MODEL", "OLLAMA_MODEL", "OLLAMA_API_KEY"})


def _clear_settings():
    """Drop the environment's settings (as the tests do): the benchmark sets its own."""
    for setting in _settings():
        os.environ.pop(setting, None)


def _chat_completion_body():
    """A chat.completion body as OpenAI's API returns it (tests/helpers.py chat_completion), answering
    with COUNT cases and reporting usage."""
    cases = [{"title": f"Case {i}", "description": "d", "preconditions": ["p"], "steps": ["s1", "s2"],
              "expectedResult": "ok", "priority": "high", "type": "functional"} for i in range(1, COUNT + 1)]
    return {
        "id": "chatcmpl-AbC123", "object": "chat.completion", "created": 1732200000,
        "model": "gpt-4o-mini-2024-07-18", "system_fingerprint": "fp_0ba0d124f1",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": json.dumps({"testCases": cases}),
                                             "refusal": None}, "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 250, "completion_tokens": 180, "total_tokens": 430,
                  "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                  "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
    }


# The hooks that record a request's calls: backend.usage.tracking's, or (to measure a checkout from
# before the tracked-call object) backend.usage.capture's.
CAPTURE_HOOKS = (("backend.usage.tracking", ("_close_request_calls", "_close_leftovers")),
                 ("backend.usage.capture", ("_capture", "_capture_leftovers")))


def _capture_hooks():
    import importlib

    for module_name, names in CAPTURE_HOOKS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        hooks = {getattr(module, name, None) for name in names} - {None}
        if hooks:
            return hooks
    sys.exit("no capture hooks found (backend.usage.tracking or backend.usage.capture): cannot build the untracked app")


def _register(register_user, db, email, **fields):
    """A user, through the service's own registration (given the clock where it takes one: a
    checkout from before the injected clock does not)."""
    import inspect

    from backend.clock import utc_now

    if "now" in inspect.signature(register_user).parameters:
        fields["now"] = utc_now()
    return register_user(db, email, PASSWORD, **fields)


def _untrack(app):
    """The same app without the hooks that close a request's tracked calls: the transaction still
    opens each call, and nothing is recorded."""
    hooks = _capture_hooks()
    removed = 0
    for registry in (app.after_request_funcs, app.teardown_request_funcs):
        kept = [hook for hook in registry[None] if hook not in hooks]
        removed += len(registry[None]) - len(kept)
        registry[None] = kept
    if not removed:
        sys.exit("the capture hooks are not registered on the app: cannot build the untracked app")


class Bench:
    """One app (tracked or untracked), a user with a token, and a timed request."""

    def __init__(self, provider, variant, overrides, scratch=None, email=None):
        mongo_uri = os.environ.get("MONGO_URI")
        _clear_settings()
        import gc

        import httpx2

        import backend
        from backend import create_app
        from backend.auth.services import register_user
        from backend.db import get_db

        if not backend.__file__.startswith(str(ROOT)):
            sys.exit(f"backend imported from {backend.__file__}, not from {ROOT}")
        if scratch is None:
            scratch = tempfile.mkdtemp(prefix="bench-capture-")
            # Registered before the app's own exit handlers, so it runs after them (a ledger writer
            # flushing at exit takes the spool's locks, which recreates the directory).
            atexit.register(shutil.rmtree, scratch, True)
        self.scratch = scratch
        self.provider_calls = 0
        config = {"TESTING": True, "JWT_SECRET_KEY": "x" * 40, "RATELIMIT_ENABLED": False,
                  "BACKGROUND_TASKS": False, "SPOOL_PATH": os.path.join(self.scratch, "spool.jsonl"),
                  "LLM_PROVIDER": provider, "LLM_PROVIDERS": [provider]}
        if provider == "openai":
            body = _chat_completion_body()

            def handler(request):
                self.provider_calls += 1
                return httpx2.Response(200, json=body)

            config.update(OPENAI_API_KEY="sk-test", LLM_MAX_RETRIES=0,
                          LLM_TRANSPORTS={"openai": httpx2.MockTransport(handler)})
        if mongo_uri:
            config.update(MONGO_URI=mongo_uri, MONGO_DB_NAME=DATABASE)
        config.update(overrides)
        self.app = create_app(config)
        if variant == "untracked":
            _untrack(self.app)
        # The server's start-up, as wsgi.py does it after create_app.
        gc.collect()
        gc.freeze()
        self.db = get_db(self.app)
        # Workers of one run share the MongoDB database: each has its own user.
        self.email = email or f"bench-{uuid.uuid4().hex[:12]}@bench.test"
        with self.app.app_context():
            self.user = _register(register_user, self.db, self.email, name="bench")
        self.client = self.app.test_client()
        self.headers = self.login(self.email)
        self.requests = 0

    def login(self, email):
        response = self.client.post("/auth/login", json={"email": email, "password": PASSWORD})
        if response.status_code != 200:
            sys.exit(f"/auth/login answered {response.status_code}: {response.get_data(True)[:500]}")
        return {"Authorization": f"Bearer {response.get_json()['data']['accessToken']}"}

    def post(self):
        """One generation request; its wall time in ms."""
        started = time.perf_counter()
        response = self.client.post("/api/test-generation", json={"prompt": PROMPT, "count": COUNT},
                                    headers=self.headers)
        wall = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            sys.exit(f"/api/test-generation answered {response.status_code}: {response.get_data(True)[:500]}")
        self.requests += 1
        return wall

    def ledger(self):
        """Ledger records of this worker's user."""
        import mongomock

        from backend.db import USAGE

        collection = self.db[USAGE]
        if isinstance(self.db.client, mongomock.MongoClient):
            # This worker's own store: its size, without a scan per poll.
            store = getattr(collection, "_store", None)
            if store is not None:
                return len(store)
        return collection.count_documents({"userId": self.user["_id"]})

    def drain(self, expected):
        """Wait (bounded) until the ledger holds `expected` records and the other threads are idle:
        (ms until the ledger was complete, or None on time-out; CPU ms this thread spent waiting,
        which is the benchmark's and not the server's)."""
        started, cpu_started = time.perf_counter(), time.thread_time()
        deadline = started + DRAIN_SECONDS
        while self.ledger() < expected:
            if time.perf_counter() > deadline:
                return None, (time.thread_time() - cpu_started) * 1000
            time.sleep(DRAIN_POLL_SECONDS)
        complete = (time.perf_counter() - started) * 1000
        # A writer may go on after the ledger (the rollups): its work belongs to this block too.
        others = time.process_time() - time.thread_time()
        while time.perf_counter() < deadline:
            time.sleep(QUIET_SECONDS)
            now = time.process_time() - time.thread_time()
            if now - others < QUIET_CPU_SECONDS:
                break
            others = now
        return complete, (time.thread_time() - cpu_started) * 1000

    def config_summary(self):
        import gc

        config = self.app.config
        return {"ledger_writes": config.get("LEDGER_WRITES"), "write_interval_ms": config.get("LEDGER_WRITE_INTERVAL_MS"),
                "gc_frozen": gc.get_freeze_count()}

def _answer_channel():
    """stdout carries only the answers; the app's logs go to stderr."""
    answer, sys.stdout = sys.stdout, sys.stderr
    return answer


def _say(channel, payload):
    channel.write((payload if isinstance(payload, str) else json.dumps(payload)) + "\n")
    channel.flush()


def worker_timing(args, overrides):
    """After "ready", each line "N" times N requests and answers one JSON line; "done" answers the
    ledger check and exits."""
    answer = _answer_channel()
    bench = Bench(args.provider, args.variant, overrides)
    tracked = args.variant == "tracked"
    for _ in range(args.warmup):
        bench.post()
    if tracked:
        bench.drain(bench.requests)
    _say(answer, "ready")
    drains, drain_timeouts = [], 0
    for line in sys.stdin:
        if line.strip() == "done":
            break
        walls = []
        cpu_started = time.process_time()
        for _ in range(int(line)):
            walls.append(bench.post())
        drained, polling = bench.drain(bench.requests) if tracked and not drain_timeouts else (0.0, 0.0)
        cpu = (time.process_time() - cpu_started) * 1000 - polling
        if drained is None:
            drain_timeouts += 1
        elif tracked:
            drains.append(drained)
        _say(answer, {"cpu_ms": cpu, "walls_ms": walls})
    ledger = bench.ledger()
    _say(answer, {"ledger_per_request": ledger / bench.requests, "drain_ms": drains, "drain_timeouts": drain_timeouts,
                  "provider_calls": bench.provider_calls, **bench.config_summary()})


class Counter:
    """Database commands by (phase, command), counted only while `active`; the phase is the
    request thread's (inside the capture hooks or not), or OFF_PATH for any other thread."""

    def __init__(self):
        self.local = threading.local()
        self.counts = collections.Counter()
        self.active = False
        self.request_thread = threading.get_ident()
        self._lock = threading.Lock()

    def hit(self, command):
        if not self.active or getattr(self.local, "paused", False):
            return
        if threading.get_ident() != self.request_thread:
            phase = OFF_PATH
        else:
            phase = getattr(self.local, "phase", BEFORE)
        with self._lock:
            self.counts[phase, command] += 1

    def mark_recording(self, app):
        """Wrap the capture hooks so that commands inside them count as recording."""
        hooks = _capture_hooks()

        def marked(hook):
            @functools.wraps(hook)
            def run(*args, **kwargs):
                self.local.phase = RECORDING
                try:
                    return hook(*args, **kwargs)
                finally:
                    self.local.phase = BEFORE

            return run

        for registry in (app.after_request_funcs, app.teardown_request_funcs):
            registry[None] = [marked(hook) if hook in hooks else hook for hook in registry[None]]

    @contextlib.contextmanager
    def paused(self):
        """The benchmark's own reads (waiting for the ledger) are not the request's."""
        self.local.paused = True
        try:
            yield
        finally:
            self.local.paused = False


def _command_listener(counter):
    """MongoDB: every command a client created after this call sends, in the thread that sends it."""
    from pymongo import monitoring

    class Listener(monitoring.CommandListener):
        def started(self, event):
            target = event.command.get(event.command_name)
            counter.hit(f"{target}.{event.command_name}" if isinstance(target, str) else event.command_name)

        def succeeded(self, event):
            pass

        def failed(self, event):
            pass

    monitoring.register(Listener())


class _MongomockCounting:
    """mongomock has no command monitoring: wrap its Collection methods while the block runs,
    counting the outermost call only (find_one calls find, for instance)."""

    def __init__(self, counter):
        self.counter = counter
        self.saved = {}
        self.depth = threading.local()

    def _counted(self, name, original):
        counter, depth = self.counter, self.depth

        @functools.wraps(original)
        def counted(collection, *args, **kwargs):
            level = getattr(depth, "level", 0)
            if not level:
                counter.hit(f"{collection.name}.{name}")
            depth.level = level + 1
            try:
                return original(collection, *args, **kwargs)
            finally:
                depth.level = level

        return counted

    def __enter__(self):
        from mongomock.collection import Collection

        for name in MONGOMOCK_METHODS:
            original = Collection.__dict__.get(name)
            if original is not None:
                self.saved[name] = original
                setattr(Collection, name, self._counted(name, original))
        return self

    def __exit__(self, *exc):
        from mongomock.collection import Collection

        for name, original in self.saved.items():
            setattr(Collection, name, original)
        self.saved.clear()


def worker_commands(args, overrides):
    """Count the database commands of tracked requests, without and then with a budget."""
    answer = _answer_channel()
    counter = Counter()
    if os.environ.get("MONGO_URI"):
        _command_listener(counter)
    bench = Bench(args.provider, "tracked", overrides)
    counter.mark_recording(bench.app)
    embedded = bench.app.extensions["mongo"].embedded
    for _ in range(args.warmup):
        bench.post()
    bench.drain(bench.requests)
    results = {}

    def block(label):
        counter.counts.clear()
        with _MongomockCounting(counter) if embedded else contextlib.nullcontext():
            counter.active = True
            for _ in range(args.count_requests):
                bench.post()
            with counter.paused():
                bench.drain(bench.requests)
            counter.active = False
        per_phase = collections.defaultdict(dict)
        for (phase, command), number in sorted(counter.counts.items()):
            per_phase[phase][command] = number / args.count_requests
        results[label] = {"commands": per_phase}

    block("no budget")
    from backend.auth.services import register_user

    admin_email = f"bench-admin-{uuid.uuid4().hex[:12]}@bench.test"
    with bench.app.app_context():
        _register(register_user, bench.db, admin_email, name="bench-admin", role="admin")
    admin = bench.login(admin_email)
    response = bench.client.put(f"/admin/openai/budgets/{bench.user['_id']}", json=BUDGET, headers=admin)
    if response.status_code != 200:
        sys.exit(f"PUT budget answered {response.status_code}: {response.get_data(True)[:500]}")
    for _ in range(2):
        bench.post()
    bench.drain(bench.requests)
    block("with a budget")
    _say(answer, {"results": results, "store": "embedded" if embedded else "mongodb"})


def worker_throughput(args, overrides):
    """Tracked requests one after another; one JSON line per slice, then a summary."""
    answer = _answer_channel()
    bench = Bench("demo", "tracked", overrides)
    for _ in range(args.warmup):
        bench.post()
    bench.drain(bench.requests)
    slices = []
    for _ in range(args.throughput // args.slice):
        walls = []
        cpu_started, started = time.process_time(), time.perf_counter()
        for _ in range(args.slice):
            walls.append(bench.post())
        elapsed = time.perf_counter() - started
        slices.append({"seconds": elapsed, "cpu_ms": (time.process_time() - cpu_started) * 1000 / args.slice,
                       "p50_ms": statistics.median(walls), "p99_ms": _percentile(walls, 0.99)})
    answered = time.perf_counter()
    drained, _ = bench.drain(bench.requests)
    ledger = bench.ledger()
    _say(answer, {"slices": slices, "requests": bench.requests, "ledger": ledger,
                  "drain_ms": drained if drained is not None else (time.perf_counter() - answered) * 1000,
                  "drain_timed_out": drained is None})


def server_app():
    """gunicorn's entry point (bench_capture:server_app()): one variant's app, chosen by the environment."""
    sys.path.insert(0, str(ROOT))
    bench = Bench(os.environ["BENCH_CAPTURE_PROVIDER"], os.environ["BENCH_CAPTURE_VARIANT"],
                  json.loads(os.environ["BENCH_CAPTURE_SETTINGS"]), scratch=os.environ["BENCH_CAPTURE_SCRATCH"],
                  email=os.environ["BENCH_CAPTURE_EMAIL"])
    return bench.app


# --- main side: workers, rounds and tables --------------------------------------------------------

def _percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def _spread(values, unit=""):
    return f"{statistics.median(values):.2f}{unit} ({min(values):.2f}-{max(values):.2f})"


class _Worker:
    """A live worker process; killed if it outlives its time limit."""

    def __init__(self, mode, extra, forwarded):
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", mode, *extra, *forwarded]
        self.mode = mode
        self.errors = tempfile.TemporaryFile(mode="w+")  # the app's request logs; read only on failure
        self.process = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self.errors, text=True)
        self.watchdog = threading.Timer(WORKER_SECONDS[mode], self.process.kill)
        self.watchdog.daemon = True
        self.watchdog.start()

    def line(self):
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            self.watchdog.cancel()
            self.errors.seek(0)
            sys.exit(f"{self.mode} worker failed ({self.process.returncode}):\n{self.errors.read()[-3000:]}")
        return line.strip()

    def expect(self, word):
        line = self.line()
        if line != word:
            sys.exit(f"{self.mode} worker said {line!r}, expected {word!r}")

    def ask(self, text):
        self.process.stdin.write(f"{text}\n")
        self.process.stdin.flush()
        return json.loads(self.line())

    def result(self):
        answer = json.loads(self.line())
        self.finish()
        return answer

    def finish(self):
        try:
            self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.watchdog.cancel()
        self.errors.close()


def _round(provider, requests, block, warmup, forwarded):
    """Both variants' workers live at once, timed in alternating blocks (ABBA...)."""
    workers = {variant: _Worker("timing", ["--provider", provider, "--variant", variant, "--warmup", str(warmup)],
                                forwarded) for variant in VARIANTS}
    try:
        for live in workers.values():
            live.expect("ready")
        cpu, walls = {variant: 0.0 for variant in VARIANTS}, {variant: [] for variant in VARIANTS}
        for number in range(max(1, requests // block)):
            for variant in (VARIANTS if number % 2 == 0 else VARIANTS[::-1]):
                result = workers[variant].ask(block)
                cpu[variant] += result["cpu_ms"]
                walls[variant] += result["walls_ms"]
        results = {}
        for variant, live in workers.items():
            summary = live.ask("done")
            results[variant] = {"cpu_ms": cpu[variant] / len(walls[variant]), "p50_ms": statistics.median(walls[variant]),
                                "p99_ms": _percentile(walls[variant], 0.99), **summary}
        return results
    finally:
        for live in workers.values():
            live.finish()


def timing_table(rounds, requests, block, warmup, forwarded):
    results = {(provider, variant): [] for provider in PROVIDERS for variant in VARIANTS}
    for number in range(rounds):
        for provider in PROVIDERS:
            for variant, result in _round(provider, requests, block, warmup, forwarded).items():
                results[provider, variant].append(result)
        print(f"  timing round {number + 1}/{rounds} done", file=sys.stderr, flush=True)
    print("| provider | variant | CPU ms / request | wall p50 ms | wall p99 ms | ledger records / request "
          "| ledger complete after a block, ms (median, max) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    ratios = {}
    for provider in PROVIDERS:
        for variant in VARIANTS:
            runs = results[provider, variant]
            drains = [d for r in runs for d in r["drain_ms"]]
            timeouts = sum(r["drain_timeouts"] for r in runs)
            drain = (f"{statistics.median(drains):.0f}, {max(drains):.0f}" if drains else "")
            if timeouts:
                drain += f" ({timeouts} block(s) not complete after {DRAIN_SECONDS} s)"
            print(f"| {PROVIDER_LABELS[provider]} | {variant} | {_spread([r['cpu_ms'] for r in runs])} "
                  f"| {_spread([r['p50_ms'] for r in runs])} | {_spread([r['p99_ms'] for r in runs])} "
                  f"| {statistics.median(r['ledger_per_request'] for r in runs):.2f} | {drain} |")
        ratios[provider] = {key: [t[key] / u[key] for t, u in zip(results[provider, "tracked"],
                                                                   results[provider, "untracked"])]
                            for key in ("cpu_ms", "p50_ms", "p99_ms")}
        print(f"| {PROVIDER_LABELS[provider]} | **tracked / untracked** (per round) "
              f"| {_spread(ratios[provider]['cpu_ms'], 'x')} | {_spread(ratios[provider]['p50_ms'], 'x')} "
              f"| {_spread(ratios[provider]['p99_ms'], 'x')} | | |")
    return ratios, results


def commands_table(count_requests, warmup, forwarded):
    answers = {}
    for provider in PROVIDERS:
        live = _Worker("commands", ["--provider", provider, "--warmup", str(warmup),
                                    "--count-requests", str(count_requests)], forwarded)
        answers[provider] = live.result()
    print(f"| case | {BEFORE} (view and other hooks) | {RECORDING} (capture hooks) | {OFF_PATH} (other threads) "
          f"| total |")
    print("|---|---:|---:|---:|---:|")
    worst_recording = 0.0
    for provider, answer in answers.items():
        for label, result in answer["results"].items():
            sums = {phase: sum(result["commands"].get(phase, {}).values()) for phase in PHASES}
            worst_recording = max(worst_recording, sums[RECORDING])
            print(f"| tracked, {PROVIDER_LABELS[provider]}, {label} | {sums[BEFORE]:.2f} | {sums[RECORDING]:.2f} "
                  f"| {sums[OFF_PATH]:.2f} | {sum(sums.values()):.2f} |")
    print()
    print("Per request, by command (collection.command):")
    print()
    print("| case | where | commands per request |")
    print("|---|---|---|")
    for provider, answer in answers.items():
        for label, result in answer["results"].items():
            for phase in PHASES:
                commands = result["commands"].get(phase, {})
                if commands:
                    listed = ", ".join(f"{name} {number:g}" for name, number in commands.items())
                    print(f"| tracked, {provider}, {label} | {phase} | {listed} |")
    return worst_recording


def throughput_table(total, size, warmup, forwarded):
    live = _Worker("throughput", ["--warmup", str(warmup), "--throughput", str(total), "--slice", str(size)],
                   forwarded)
    answer = live.result()
    slices = answer["slices"]
    print("| slice | requests | req/s | CPU ms / request | wall p50 ms | wall p99 ms |")
    print("|---:|---|---:|---:|---:|---:|")
    for number, part in enumerate(slices):
        first = warmup + number * size + 1
        print(f"| {number + 1} | {first:,}-{first + size - 1:,} | {size / part['seconds']:.1f} | {part['cpu_ms']:.2f} "
              f"| {part['p50_ms']:.2f} | {part['p99_ms']:.2f} |")
    decay = (size / slices[-1]["seconds"]) / (size / slices[0]["seconds"])
    # CPU per request moves less with the machine's other load than requests per second do.
    print(f"| **last / first** | | {decay:.2f}x | {slices[-1]['cpu_ms'] / slices[0]['cpu_ms']:.2f}x "
          f"| {slices[-1]['p50_ms'] / slices[0]['p50_ms']:.2f}x | {slices[-1]['p99_ms'] / slices[0]['p99_ms']:.2f}x |")
    print()
    state = "not complete" if answer["drain_timed_out"] else "complete"
    print(f"Ledger: {answer['ledger']:,} records for {answer['requests']:,} requests ({warmup} warm-up included), "
          f"{state} {answer['drain_ms']:.0f} ms after the last answer.")
    return decay


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _proc_stat(pid):
    """/proc/<pid>/stat fields from the state on (field 3 is index 0)."""
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().rsplit(")", 1)[1].split()


def _cpu_seconds(pid):
    fields = _proc_stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Server:
    """gunicorn, one worker with 8 threads on 127.0.0.1, serving one variant; its worker's CPU is read from /proc."""

    def __init__(self, provider, variant, settings):
        self.port = _free_port()
        self.scratch = tempfile.mkdtemp(prefix="bench-capture-server-")
        email = f"bench-{uuid.uuid4().hex[:12]}@bench.test"
        env = {name: value for name, value in os.environ.items() if name not in _settings()}
        if os.environ.get("MONGO_URI"):
            env["MONGO_URI"] = os.environ["MONGO_URI"]
        # gunicorn.conf.py checks the environment's settings before the worker starts.
        env.update(JWT_SECRET_KEY="x" * 40, BENCH_CAPTURE_PROVIDER=provider, BENCH_CAPTURE_VARIANT=variant,
                   BENCH_CAPTURE_SETTINGS=json.dumps(settings), BENCH_CAPTURE_SCRATCH=self.scratch,
                   BENCH_CAPTURE_EMAIL=email)
        self.errors = tempfile.TemporaryFile(mode="w+")
        command = [sys.executable, "-m", "gunicorn", "--workers", "1", "--worker-class", "gthread", "--threads", "8",
                   "--bind", f"127.0.0.1:{self.port}", "--pythonpath", str(ROOT / "scripts"),
                   "bench_capture:server_app()"]
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=self.errors,
                                        stderr=self.errors)
        self.worker = None
        self.headers = None
        self._wait_ready(email)

    def _fail(self, why):
        self.stop()
        self.errors.seek(0)
        sys.exit(f"gunicorn server {why}:\n{self.errors.read()[-3000:]}")

    def _wait_ready(self, email):
        deadline = time.perf_counter() + SERVER_START_SECONDS
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                self._fail(f"exited ({self.process.returncode})")
            try:
                status, body = self.call("POST", "/auth/login", {"email": email, "password": PASSWORD})
            except OSError:
                time.sleep(0.1)
                continue
            if status != 200:
                self._fail(f"refused the login ({status}): {body[:300]}")
            self.headers = {"Authorization": f"Bearer {json.loads(body)['data']['accessToken']}",
                            "Content-Type": "application/json"}
            children = [pid for pid in os.listdir("/proc") if pid.isdigit() and _is_child(int(pid), self.process.pid)]
            if len(children) != 1:
                self._fail(f"has {len(children)} worker processes, expected 1")
            self.worker = int(children[0])
            return
        self._fail(f"did not answer within {SERVER_START_SECONDS} s")

    def call(self, method, path, payload, headers=None, connection=None):
        own = connection is None
        connection = connection or http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.request(method, path, body=json.dumps(payload),
                               headers=headers or {"Content-Type": "application/json"})
            response = connection.getresponse()
            return response.status, response.read().decode()
        finally:
            if own:
                connection.close()

    def cpu_seconds(self):
        return _cpu_seconds(self.worker)

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.worker is not None and _is_child(self.worker, self.process.pid):
            os.kill(self.worker, signal.SIGKILL)
        shutil.rmtree(self.scratch, ignore_errors=True)
        self.errors.close()


def _is_child(pid, parent):
    try:
        return int(_proc_stat(pid)[1]) == parent
    except (OSError, IndexError, ValueError):
        return False


def _server_block(server, requests, clients):
    """`requests` generation requests from `clients` threads, one keep-alive connection each; the
    server worker's CPU over the block (after SERVER_SETTLE_SECONDS for background writes) and the walls."""
    payload = {"prompt": PROMPT, "count": COUNT}
    shares = [requests // clients + (1 if number < requests % clients else 0) for number in range(clients)]

    def client(share):
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        walls = []
        try:
            for _ in range(share):
                started = time.perf_counter()
                status, body = server.call("POST", "/api/test-generation", payload, server.headers, connection)
                walls.append((time.perf_counter() - started) * 1000)
                if status != 200:
                    raise RuntimeError(f"/api/test-generation answered {status}: {body[:300]}")
        finally:
            connection.close()
        return walls

    cpu_started = server.cpu_seconds()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        walls = [wall for part in pool.map(client, shares) for wall in part]
    time.sleep(SERVER_SETTLE_SECONDS)
    return (server.cpu_seconds() - cpu_started) * 1000, walls


def _server_round(provider, requests, block, warmup, clients, settings):
    servers = {}
    try:
        for variant in VARIANTS:
            servers[variant] = _Server(provider, variant, settings)
        for server in servers.values():
            _server_block(server, warmup, clients)
        cpu, walls = {variant: 0.0 for variant in VARIANTS}, {variant: [] for variant in VARIANTS}
        for number in range(max(1, requests // block)):
            for variant in (VARIANTS if number % 2 == 0 else VARIANTS[::-1]):
                spent, timed = _server_block(servers[variant], block, clients)
                cpu[variant] += spent
                walls[variant] += timed
        return {variant: {"cpu_ms": cpu[variant] / len(walls[variant]), "p50_ms": statistics.median(walls[variant]),
                          "p99_ms": _percentile(walls[variant], 0.99)} for variant in VARIANTS}
    finally:
        for server in servers.values():
            server.stop()


def server_table(rounds, requests, block, warmup, clients, settings):
    results = {(provider, variant): [] for provider in PROVIDERS for variant in VARIANTS}
    for number in range(rounds):
        for provider in PROVIDERS:
            for variant, result in _server_round(provider, requests, block, warmup, clients, settings).items():
                results[provider, variant].append(result)
        print(f"  server round {number + 1}/{rounds} done", file=sys.stderr, flush=True)
    print("| provider | variant | server CPU ms / request | wall p50 ms | wall p99 ms |")
    print("|---|---|---:|---:|---:|")
    ratios = {}
    for provider in PROVIDERS:
        for variant in VARIANTS:
            runs = results[provider, variant]
            print(f"| {PROVIDER_LABELS[provider]} | {variant} | {_spread([r['cpu_ms'] for r in runs])} "
                  f"| {_spread([r['p50_ms'] for r in runs])} | {_spread([r['p99_ms'] for r in runs])} |")
        ratios[provider] = {key: [t[key] / u[key] for t, u in zip(results[provider, "tracked"],
                                                                   results[provider, "untracked"])]
                            for key in ("cpu_ms", "p50_ms", "p99_ms")}
        print(f"| {PROVIDER_LABELS[provider]} | **tracked / untracked** (per round) "
              f"| {_spread(ratios[provider]['cpu_ms'], 'x')} | {_spread(ratios[provider]['p50_ms'], 'x')} "
              f"| {_spread(ratios[provider]['p99_ms'], 'x')} |")
    return ratios


def _verdict(passed):
    return "PASS" if passed else "MISS"


def _drop_database(uri):
    import pymongo

    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        client.drop_database(DATABASE)
    finally:
        client.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts (a smoke run, well under a minute)")
    parser.add_argument("--rounds", type=int, help="timing rounds, each a fresh process per variant (default 7, quick 2)")
    parser.add_argument("--requests", type=int, help="timed requests per variant and round (default 300, quick 40)")
    parser.add_argument("--block", type=int, help="requests per alternating block (default 25, quick 20)")
    parser.add_argument("--warmup", type=int, help="untimed requests first, per worker (default 20, quick 5)")
    parser.add_argument("--count-requests", type=int, help="requests per command-count block (default 50, quick 10)")
    parser.add_argument("--throughput", type=int, help="tracked requests in the throughput run (default 10000, quick 1000)")
    parser.add_argument("--slice", type=int, help="requests per throughput slice (default 1000, quick 100)")
    parser.add_argument("--server-rounds", type=int,
                        help="rounds against gunicorn (1 worker x 8 threads on 127.0.0.1); 0 skips (default 3, quick 0)")
    parser.add_argument("--server-requests", type=int, help="requests per variant and server round (default 400)")
    parser.add_argument("--server-block", type=int, help="requests per alternating server block (default 50)")
    parser.add_argument("--clients", type=int, default=4, help="client threads against the server (default 4)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                        help="an app setting for every worker, e.g. --set LEDGER_WRITES='\"sync\"'")
    parser.add_argument("--skip-timing", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--skip-throughput", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--provider", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    args = parser.parse_args()
    quick = args.quick
    args.rounds = args.rounds or (2 if quick else 7)
    args.requests = args.requests or (40 if quick else 300)
    args.block = args.block or (20 if quick else 25)
    args.warmup = args.warmup if args.warmup is not None else (5 if quick else 20)
    args.count_requests = args.count_requests or (10 if quick else 50)
    args.throughput = args.throughput or (1000 if quick else 10_000)
    args.slice = args.slice or (100 if quick else 1000)
    args.server_rounds = args.server_rounds if args.server_rounds is not None else (0 if quick else 3)
    args.server_requests = args.server_requests or 400
    args.server_block = args.server_block or 50
    try:
        overrides = {key: json.loads(value) for key, _, value in (item.partition("=") for item in args.set)}
    except json.JSONDecodeError as exc:
        parser.error(f"--set takes KEY=JSON: {exc}")

    sys.path.insert(0, str(ROOT))
    if args.worker:
        {"timing": worker_timing, "commands": worker_commands, "throughput": worker_throughput}[args.worker](
            args, overrides)
        return

    forwarded = [option for item in args.set for option in ("--set", item)]
    mongo_uri = os.environ.get("MONGO_URI")
    store = f"MongoDB (database {DATABASE}, dropped before and after)" if mongo_uri else "embedded store (mongomock)"
    if mongo_uri:
        _drop_database(mongo_uri)
    started = time.perf_counter()
    try:
        print(f"# Tracking cost: scripts/bench_capture.py{' --quick' if quick else ''}, "
              f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {store}, {os.cpu_count()} cores, "
              f"load average {os.getloadavg()[0]:.1f}" + (f", settings {overrides}" if overrides else ""))
        print()
        ratios = None
        if not args.skip_timing:
            print(f"## 1. Server CPU and wall latency per request, tracked vs untracked (Flask test client, in-process: "
                  f"{args.rounds} rounds, each a fresh process per variant timing {args.requests} requests in "
                  f"alternating blocks of {args.block} (ABBA) after {args.warmup} warm-up; medians over rounds "
                  f"(min-max))")
            print()
            ratios, results = timing_table(args.rounds, args.requests, args.block, args.warmup, forwarded)
            tracked = results["demo", "tracked"][0]
            print()
            print(f"Tracked app: LEDGER_WRITES={tracked['ledger_writes']}, LEDGER_WRITE_INTERVAL_MS="
                  f"{tracked['write_interval_ms']}, objects frozen by gc after start-up (as wsgi.py does): "
                  f"{tracked['gc_frozen']:,}.")
            print()
        server_ratios = None
        if args.server_rounds:
            print(f"## 1b. The same against a real server (gunicorn, 1 worker x 8 threads on 127.0.0.1, {args.clients} "
                  f"client threads with keep-alive: {args.server_rounds} rounds, each a fresh server per variant "
                  f"serving {args.server_requests} requests in alternating blocks of {args.server_block} (ABBA) after "
                  f"{args.warmup} warm-up; the worker's CPU from /proc, read {SERVER_SETTLE_SECONDS} s after each "
                  f"block so its background writes count; medians over rounds (min-max))")
            print()
            server_ratios = server_table(args.server_rounds, args.server_requests, args.server_block, args.warmup,
                                         args.clients, overrides)
            print()
        print(f"## 2. Database commands per tracked request ({args.count_requests} requests per case after "
              f"{args.warmup} warm-up; " + ("pymongo CommandListener" if mongo_uri else
                                            "mongomock Collection calls, counted by a proxy") + ")")
        print()
        worst_recording = commands_table(args.count_requests, args.warmup, forwarded)
        print()
        decay = None
        if not args.skip_throughput:
            print(f"## 3. Throughput over {args.throughput:,} tracked requests (demo provider, one client, in-process, "
                  f"slices of {args.slice:,} after {args.warmup} warm-up)")
            print()
            decay = throughput_table(args.throughput, args.slice, args.warmup, forwarded)
            print()
        cpu_goal = TARGET_CPU["mongodb" if mongo_uri else "embedded"]
        print(f"## Targets ({'MongoDB out of process' if mongo_uri else 'embedded store'})")
        print()
        print("| target | figure | goal | verdict |")
        print("|---|---:|---:|---|")
        for where, measured in (("test client", ratios), ("gunicorn", server_ratios)):
            for provider in PROVIDERS if measured else ():
                for key, name, goal in (("cpu_ms", "app-process CPU", cpu_goal), ("p99_ms", "wall p99", TARGET_RATIO)):
                    figure = statistics.median(measured[provider][key])
                    print(f"| {name} tracked / untracked, {PROVIDER_LABELS[provider]}, {where} | {figure:.2f}x "
                          f"| <= {goal:.2f}x | {_verdict(figure <= goal)} |")
        print(f"| database commands for recording on the response path, per request (worst case) "
              f"| {worst_recording:.2f} | 0 | {_verdict(worst_recording == 0)} |")
        if decay is not None:
            print(f"| throughput, last / first {args.slice:,} requests | {decay:.2f}x | >= {TARGET_DECAY:.2f}x "
                  f"| {_verdict(decay >= TARGET_DECAY)} |")
        print()
        print(f"Run time {time.perf_counter() - started:.0f} s.")
    finally:
        if mongo_uri:
            _drop_database(mongo_uri)


if __name__ == "__main__":
    main()
