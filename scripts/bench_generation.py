"""Benchmark the generation transaction: reserved vs actual input tokens, and the tracked request cost.

Usage: python scripts/bench_generation.py [--quick] [--baseline REV] [--rounds K] [--requests N] [--block B]

Table 1: for each real provider and kind of prompt text (Latin prose, CJK, source code, emoji),
the exact messages of build_messages(prompt, 5) are counted as the provider's reservation counts
them (provider.count_input_tokens) and as the provider would bill them ("actual"), over short,
medium and long prompts. "Actual" is tiktoken's chat count for OpenAI (what OpenAI reports);
Meta's Llama 3 tokenizer (the BPE ranks quicktok ships, encoded with Meta's own tiktoken
pattern) over Ollama's llama3.2 chat template for Ollama; for Gemini and Anthropic, whose
tokenizers are not available offline, o200k_base and cl100k_base stand in. A ratio below 1.0
is a reservation that could fall short: the script says FAIL and exits 1.

Table 2: CPU time and wall latency of POST /api/test-generation through the Flask test client,
for the demo provider and for OpenAI faked at its HTTP transport, at the working tree ("after")
and at --baseline ("before", checked out in a temporary git worktree that is removed at the
end). Each round starts one fresh process per tree (its backend on sys.path, its directory as
cwd) and times them in alternating blocks of requests (ABBA), so both see the same load on the
machine; the figures are medians over rounds with their min-max spread, and the ratio is taken
per round, so a noisy shared machine shows as spread rather than as a false ratio. Both trees
run on the embedded store with the environment's settings cleared (as the tests do), so they
see the same configuration.
"""
import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COUNT = 5
EMAIL, PASSWORD = "bench@bench.test", "bench-password-long-enough"

# Meta's Llama 3 pre-tokenizer pattern (llama/tokenizer.py), used with tiktoken over the ranks.
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_SPECIALS = ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")

PROSE = (
    "The checkout page lets a signed-in customer review the items in the basket, change quantities, "
    "apply one discount code and pay with a saved card or a new one.",
    "When the stock of an item runs out while it sits in a basket, the page shows a warning next to "
    "it and refuses to take payment until the customer removes it or lowers the quantity.",
    "Discount codes are case-insensitive, expire at midnight UTC on their last day, and cannot be "
    "combined with the loyalty price that members see on some products.",
    "A payment that the bank declines leaves the order in the pending state for fifteen minutes, "
    "after which the reserved stock returns to the shelf and the customer receives an email.",
    "Administrators can refund part of an order; the refund appears on the customer's statement "
    "within five working days and the order history shows who issued it and why.",
    "Addresses are validated against the postal service's list, but a customer may override the "
    "suggestion when the building is new and not yet known to it.",
    "Pengguna dapat mengunggah foto profil hingga dua megabita dalam format JPEG atau PNG, dan sistem "
    "menolak berkas lain dengan pesan yang jelas.",
)
CJK = (
    "用户登录后可以查看购物车中的商品，修改数量，并使用一张优惠券结账。",
    "当库存不足时，页面会在商品旁边显示警告，并在用户删除该商品之前拒绝付款。",
    "优惠码不区分大小写，在最后一天的午夜（协调世界时）失效，且不能与会员价同时使用。",
    "银行拒绝付款后，订单将保持待处理状态十五分钟，之后预留的库存会被释放，并向用户发送邮件。",
    "ユーザーはログイン後、カートの商品を確認し、数量を変更し、クーポンを一枚使って支払うことができます。",
    "在庫が足りない場合、商品の横に警告が表示され、ユーザーが商品を削除するまで支払いはできません。",
    "관리자는 주문의 일부를 환불할 수 있으며, 환불 내역은 주문 기록에 누가 왜 처리했는지와 함께 표시됩니다.",
)
EMOJI = (
    "🛒 Basket ✅ pay 💳 then 📦 ships 🚚 fast 🎉",
    "👨‍👩‍👧‍👦 family plan 👍🏽 rating ⭐⭐⭐⭐⭐ 🇮🇩 🇯🇵 🇧🇷 flags",
    "🔥🔥🔥 sale ends ⏰ at midnight 🌙 — don't miss it 😱🙏",
    "📸 upload ➡️ crop ✂️ ➡️ save 💾 ❌ if > 2 MB 🚫",
    "🧑🏻‍💻 admin refunds 💸 ↩️ partial 🧾 with reason 📝",
)
CODE_FILES = ("backend/llm/base.py", "backend/testgen/prompts.py", "backend/llm/tokenizer.py",
              "backend/llm/openai_provider.py", "backend/testgen/transaction.py")
LENGTHS = (("short", 200), ("medium", 2_000), ("long", 20_000))


# --- Table 1: reservations ----------------------------------------------------------------------

def _fill(pieces, length, rng, separator):
    parts, size = [], 0
    while size < length:
        piece = rng.choice(pieces)
        parts.append(piece)
        size += len(piece) + len(separator)
    return separator.join(parts)[:length]


def _code_text(length, rng):
    source = "\n\n".join((ROOT / path).read_text() for path in CODE_FILES)
    while len(source) < length:
        source += "\n\n" + source
    start = rng.randrange(0, max(1, len(source) - length))
    return source[start:start + length]


def prompts(variants):
    """{kind: [(length name, prompt)]}: deterministic texts of each kind at each length."""
    kinds = {}
    for kind, make in (("Latin prose", lambda n, r: _fill(PROSE, n, r, " ")),
                       ("CJK", lambda n, r: _fill(CJK, n, r, "")),
                       ("source code", _code_text),
                       ("emoji-heavy", lambda n, r: _fill(EMOJI, n, r, " "))):
        kinds[kind] = [(name, make(length, random.Random(f"{kind}{length}{seed}")))
                       for name, length in LENGTHS for seed in range(variants)]
    return kinds


def _chat_count(encoding, messages):
    """OpenAI's chat accounting (backend.llm.tokenizer.count_chat_tokens) with any encoding."""
    from backend.llm.tokenizer import TOKENS_PER_MESSAGE, TOKENS_REPLY_PRIMER

    return TOKENS_REPLY_PRIMER + sum(TOKENS_PER_MESSAGE + len(encoding.encode(m["role"], disallowed_special=()))
                                     + len(encoding.encode(m["content"], disallowed_special=())) for m in messages)


def _llama3_encoding():
    """Meta's Llama 3 tokenizer (tiktoken over the 128,000 ranks that quicktok ships), or None."""
    import struct
    from importlib import resources

    import tiktoken

    try:
        data = resources.files("quicktok").joinpath("data/llama3.vocab").read_bytes()
    except (ModuleNotFoundError, FileNotFoundError):
        return None
    (count,) = struct.unpack_from("<I", data, 0)
    offset, ranks = 4, {}
    for _ in range(count):
        (length,) = struct.unpack_from("<H", data, offset)
        token = data[offset + 2:offset + 2 + length]
        (rank,) = struct.unpack_from("<I", data, offset + 2 + length)
        offset += 6 + length
        ranks[token] = rank
    specials = {"<|begin_of_text|>": 128000, "<|end_of_text|>": 128001, "<|start_header_id|>": 128006,
                "<|end_header_id|>": 128007, "<|eot_id|>": 128009}
    encoding = tiktoken.Encoding("llama3", pat_str=LLAMA3_PATTERN, mergeable_ranks=ranks, special_tokens=specials)
    if encoding.encode("Hello world") != [9906, 1917] or len(ranks) != 128_000:
        return None
    return encoding


def _ollama_llama32_count(encoding, messages):
    """Ollama's llama3.2 chat template (system preamble with the knowledge date), plus the BOS
    token llama.cpp adds, counted with the Llama 3 tokenizer."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    text = ("<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n\n"
            f"{system}<|eot_id|>")
    for message in messages:
        if message["role"] != "system":
            text += f"<|start_header_id|>{message['role']}<|end_header_id|>\n\n{message['content']}<|eot_id|>"
    text += "<|start_header_id|>assistant<|end_header_id|>\n\n"
    return 1 + len(encoding.encode(text, allowed_special=set(LLAMA3_SPECIALS)))


def _cross_check_llama3(encoding, texts):
    """quicktok's own Llama 3 engine must agree with the tiktoken build token for token."""
    import quicktok

    engine = quicktok.get_encoding("llama3")
    return sum(engine.encode(text, disallowed_special=()) == encoding.encode(text, disallowed_special=())
               for text in texts)


def _clear_settings(tree):
    """Drop every setting the tree's config reads from the environment (as the tests do)."""
    for setting in set(re.findall(r'env, "([A-Z0-9_]+)"', (Path(tree) / "backend" / "config.py").read_text())):
        os.environ.pop(setting, None)
    for setting in ("MONGO_URI", "OPENAI_MODEL", "GEMINI_MODEL", "ANTHROPIC_MODEL", "OLLAMA_MODEL", "OLLAMA_API_KEY"):
        os.environ.pop(setting, None)


def _providers(spool):
    from backend import create_app
    from backend.llm.registry import get_provider

    app = create_app({"TESTING": True, "JWT_SECRET_KEY": "x" * 40, "RATELIMIT_ENABLED": False,
                      "BACKGROUND_TASKS": False, "SPOOL_PATH": spool, "LLM_PROVIDER": "openai",
                      "LLM_PROVIDERS": ["openai", "gemini", "anthropic", "ollama"], "OPENAI_API_KEY": "sk-test",
                      "GEMINI_API_KEY": "g-test", "ANTHROPIC_API_KEY": "a-test"})
    with app.app_context():
        return {name: get_provider(name) for name in ("openai", "gemini", "anthropic", "ollama")}


def reservation_table(variants):
    import tiktoken

    from backend.llm.tokenizer import count_chat_tokens
    from backend.testgen.prompts import build_messages

    with tempfile.TemporaryDirectory(prefix="bench-generation-") as scratch:
        providers = _providers(os.path.join(scratch, "spool.jsonl"))
    o200k, cl100k = tiktoken.get_encoding("o200k_base"), tiktoken.get_encoding("cl100k_base")
    llama3 = _llama3_encoding()
    kinds = prompts(variants)
    if llama3 is None:
        print("NOTE: no offline Llama 3 tokenizer (quicktok's llama3.vocab) is installed: Ollama falls back "
              "to the o200k_base and cl100k_base stand-ins.")
    else:
        texts = [text for pairs in kinds.values() for _, text in pairs]
        print(f"Llama 3 tokenizer: quicktok's engine agrees with the tiktoken build on "
              f"{_cross_check_llama3(llama3, texts)}/{len(texts)} prompt texts.\n")
    actuals = {
        "openai": [("tiktoken (= OpenAI's prompt_tokens)",
                    lambda m: count_chat_tokens(m, providers["openai"].default_model))],
        "gemini": [("stand-in o200k_base", lambda m: _chat_count(o200k, m)),
                   ("stand-in cl100k_base", lambda m: _chat_count(cl100k, m))],
        "anthropic": [("stand-in o200k_base", lambda m: _chat_count(o200k, m)),
                      ("stand-in cl100k_base", lambda m: _chat_count(cl100k, m))],
        "ollama": ([("Llama 3 tokenizer, llama3.2 template", lambda m: _ollama_llama32_count(llama3, m))]
                   if llama3 is not None else
                   [("stand-in o200k_base", lambda m: _chat_count(o200k, m)),
                    ("stand-in cl100k_base", lambda m: _chat_count(cl100k, m))]),
    }
    print("| provider (model) | reserved by | actual counted with | text | prompts | actual tokens "
          "| reserved / actual min | median | max |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|")
    failures = []
    for name, provider in providers.items():
        model = provider.default_model
        for actual_name, actual in actuals[name]:
            for kind, pairs in kinds.items():
                ratios, counts = [], []
                for length, prompt in pairs:
                    messages = build_messages(prompt, COUNT)
                    reserved, real = provider.count_input_tokens(messages, model), actual(messages)
                    ratios.append(reserved / real)
                    counts.append(real)
                    if reserved < real:
                        failures.append(f"{name} {kind} {length}: reserved {reserved} < actual {real} ({actual_name})")
                print(f"| {name} ({model}) | {provider.estimation} | {actual_name} | {kind} | {len(pairs)} "
                      f"| {min(counts):,}-{max(counts):,} | {min(ratios):.2f} | {statistics.median(ratios):.2f} "
                      f"| {max(ratios):.2f} |")
    return failures


# --- Table 2: tracked request cost, before and after ----------------------------------------------

def _chat_completion_body():
    """A chat.completion body exactly as OpenAI's API returns it, answering with COUNT cases."""
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


def worker(tree, provider, warmup, profile=None):
    """Serve measurements with `tree`'s backend: after "ready", each line "N" on stdin times N
    requests and answers one JSON line; "done" answers the ledger check and exits."""
    tree = str(Path(tree).resolve())
    sys.path.insert(0, tree)
    _clear_settings(tree)
    answer, sys.stdout = sys.stdout, sys.stderr  # stdout carries only the answers
    import httpx2

    import backend
    from backend import create_app
    from backend.auth.services import register_user
    from backend.clock import utc_now
    from backend.db import USAGE, get_db

    assert backend.__file__.startswith(tree), backend.__file__
    calls = []
    body = _chat_completion_body()

    def handler(request):
        calls.append(1)
        return httpx2.Response(200, json=body)

    spool = tempfile.NamedTemporaryFile(prefix="bench-spool-", suffix=".jsonl", delete=False).name
    config = {"TESTING": True, "JWT_SECRET_KEY": "x" * 40, "RATELIMIT_ENABLED": False,
              "BACKGROUND_TASKS": False, "SPOOL_PATH": spool, "LLM_PROVIDER": provider, "LLM_PROVIDERS": [provider]}
    if provider == "openai":
        config.update(OPENAI_API_KEY="sk-test", LLM_MAX_RETRIES=0,
                      LLM_TRANSPORTS={"openai": httpx2.MockTransport(handler)})
    app = create_app(config)
    with app.app_context():
        register_user(get_db(), EMAIL, PASSWORD, name="bench", now=utc_now())
    client = app.test_client()
    login = client.post("/auth/login", json={"email": EMAIL, "password": PASSWORD})
    headers = {"Authorization": f"Bearer {login.get_json()['data']['accessToken']}"}
    payload = {"prompt": "Users sign in with an email and a password; five failed attempts lock the account "
                         "for fifteen minutes.", "count": COUNT}

    def post():
        response = client.post("/api/test-generation", json=payload, headers=headers)
        if response.status_code != 200:
            sys.exit(f"{tree}: /api/test-generation answered {response.status_code}: {response.get_data(True)[:500]}")

    for _ in range(warmup):
        post()
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
    answer.write("ready\n")
    answer.flush()
    timed = 0
    for line in sys.stdin:
        if line.strip() == "done":
            break
        walls = []
        if profiler:
            profiler.enable()
        cpu_started = time.process_time()
        for _ in range(int(line)):
            started = time.perf_counter()
            post()
            walls.append((time.perf_counter() - started) * 1000)
        cpu = (time.process_time() - cpu_started) * 1000
        if profiler:
            profiler.disable()
        timed += len(walls)
        answer.write(json.dumps({"cpu_ms": cpu, "walls_ms": walls}) + "\n")
        answer.flush()
    if profiler:
        profiler.dump_stats(profile)
    with app.app_context():
        ledger = get_db()[USAGE].count_documents({})
    os.unlink(spool)
    answer.write(json.dumps({"ledger_per_request": ledger / (timed + warmup), "provider_calls": len(calls)}) + "\n")
    answer.flush()


class _Worker:
    """A live worker process for one tree (its backend on sys.path, its directory as cwd)."""

    def __init__(self, tree, provider, warmup):
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", str(tree), "--provider", provider,
                   "--warmup", str(warmup)]
        self.tree = tree
        self.errors = tempfile.TemporaryFile(mode="w+")  # the app's request logs; read only on failure
        self.process = subprocess.Popen(command, cwd=tree, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self.errors, text=True)
        self._expect("ready")

    def _line(self):
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            self.errors.seek(0)
            sys.exit(f"worker for {self.tree} failed ({self.process.returncode}):\n{self.errors.read()[-3000:]}")
        return line.strip()

    def _expect(self, word):
        line = self._line()
        if line != word:
            sys.exit(f"worker for {self.tree} said {line!r}, expected {word!r}")

    def run(self, requests):
        self.process.stdin.write(f"{requests}\n")
        self.process.stdin.flush()
        return json.loads(self._line())

    def finish(self):
        self.process.stdin.write("done\n")
        self.process.stdin.flush()
        summary = json.loads(self._line())
        self.process.wait()
        self.errors.close()
        return summary


def _percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def _round(trees, provider, requests, block, warmup):
    """Both trees' workers live at once, timed in alternating blocks (ABBA...), so each pair of
    blocks sees the same load on the machine; one process pair per round."""
    workers = {side: _Worker(tree, provider, warmup) for side, tree in trees.items()}
    cpu, walls = {side: 0.0 for side in trees}, {side: [] for side in trees}
    for number in range(max(1, requests // block)):
        for side in (("before", "after") if number % 2 == 0 else ("after", "before")):
            result = workers[side].run(block)
            cpu[side] += result["cpu_ms"]
            walls[side] += result["walls_ms"]
    results = {}
    for side, live in workers.items():
        summary = live.finish()
        results[side] = {"cpu_ms": cpu[side] / len(walls[side]), "p50_ms": statistics.median(walls[side]),
                         "p99_ms": _percentile(walls[side], 0.99), **summary}
    return results


def _spread(values, unit=""):
    return f"{statistics.median(values):.2f}{unit} ({min(values):.2f}-{max(values):.2f})"


def cost_table(baseline, rounds, requests, block, warmup):
    worktree = Path(tempfile.gettempdir()) / f"tl-before-{os.getpid()}"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree), baseline],
                   check=True, capture_output=True)
    try:
        trees = {"before": worktree, "after": ROOT}
        results = {(provider, side): [] for provider in ("demo", "openai") for side in trees}
        for number in range(rounds):
            for provider in ("demo", "openai"):
                for side, result in _round(trees, provider, requests, block, warmup).items():
                    results[provider, side].append(result)
            print(f"  round {number + 1}/{rounds} done", file=sys.stderr)
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)], capture_output=True)
        shutil.rmtree(worktree, ignore_errors=True)
        subprocess.run(["git", "-C", str(ROOT), "worktree", "prune"], capture_output=True)

    print("| provider | tree | CPU ms / request | wall p50 ms | wall p99 ms | ledger records / request |")
    print("|---|---|---:|---:|---:|---:|")
    for provider in ("demo", "openai"):
        for side in ("before", "after"):
            runs = results[provider, side]
            label = f"{side} ({baseline})" if side == "before" else f"{side} (working tree)"
            print(f"| {provider} | {label} | {_spread([r['cpu_ms'] for r in runs])} "
                  f"| {_spread([r['p50_ms'] for r in runs])} | {_spread([r['p99_ms'] for r in runs])} "
                  f"| {statistics.median(r['ledger_per_request'] for r in runs):.2f} |")
        ratios = {key: [a[key] / b[key] for a, b in zip(results[provider, "after"], results[provider, "before"])]
                  for key in ("cpu_ms", "p50_ms", "p99_ms")}
        print(f"| {provider} | **after / before** (per round) | {_spread(ratios['cpu_ms'], 'x')} "
              f"| {_spread(ratios['p50_ms'], 'x')} | {_spread(ratios['p99_ms'], 'x')} | |")
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer prompts, rounds and requests (a smoke run)")
    parser.add_argument("--baseline", default="5dbc379", help="the revision measured as 'before'")
    parser.add_argument("--rounds", type=int, help="rounds, each a fresh process pair (default 7, quick 2)")
    parser.add_argument("--requests", type=int, help="timed requests per run (default 300, quick 60)")
    parser.add_argument("--block", type=int, help="requests per alternating block (default 25, quick 20)")
    parser.add_argument("--warmup", type=int, help="untimed requests first (default 20, quick 5)")
    parser.add_argument("--skip-cost", action="store_true", help="print only the reservation table")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--provider", help=argparse.SUPPRESS)
    parser.add_argument("--profile", help=argparse.SUPPRESS)
    args = parser.parse_args()
    rounds = args.rounds or (2 if args.quick else 7)
    block = args.block or (20 if args.quick else 25)
    requests = args.requests or (60 if args.quick else 300)
    warmup = args.warmup if args.warmup is not None else (5 if args.quick else 20)
    if args.worker:
        worker(args.worker, args.provider, warmup, args.profile)
        return

    sys.path.insert(0, str(ROOT))
    _clear_settings(ROOT)
    variants = 1 if args.quick else 3
    print(f"## Reserved / actual input tokens (build_messages(prompt, {COUNT}); short 200, medium 2,000 and "
          f"long 20,000 characters, {variants} prompt(s) of each)")
    failures = reservation_table(variants)
    if failures:
        for failure in failures:
            print(f"FAIL: RESERVATION BELOW ACTUAL: {failure}")
        sys.exit(1)
    if args.skip_cost:
        return
    print()
    print(f"## POST /api/test-generation, {baseline_label(args.baseline)} vs working tree: {rounds} rounds, "
          f"each a fresh process per tree timing {requests} requests in alternating blocks of {block} "
          f"(after {warmup} warm-up); medians over rounds (min-max)")
    cost_table(args.baseline, rounds, requests, block, warmup)


def baseline_label(revision):
    done = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h %s", revision],
                          capture_output=True, text=True)
    return done.stdout.strip()[:70] or revision


if __name__ == "__main__":
    main()
