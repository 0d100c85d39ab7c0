import hashlib
import inspect
import subprocess
import sys
from pathlib import Path

import tiktoken_ext.openai_public

from backend.llm import tokenizer

ROOT = Path(__file__).resolve().parents[2]


def test_expected_hashes_are_the_ones_tiktoken_checks():
    source = inspect.getsource(tiktoken_ext.openai_public)
    for digest in tokenizer.EXPECTED_SHA256.values():
        assert f'expected_hash="{digest}"' in source


def test_encodings_are_written_where_tiktoken_looks(tmp_path):
    tokenizer.install_offline_encodings(str(tmp_path))
    for name, digest in tokenizer.EXPECTED_SHA256.items():
        url = f"https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
        cached = tmp_path / hashlib.sha1(url.encode()).hexdigest()
        assert hashlib.sha256(cached.read_bytes()).hexdigest() == digest


def test_a_fresh_process_counts_tokens_with_no_download(tmp_path):
    # Published token ids of "hello world": o200k_base [24912, 2375], cl100k_base [15339, 1917].
    code = (
        "import sys; from backend.llm import tokenizer; tokenizer.install_offline_encodings(sys.argv[1]);"
        "import tiktoken;"
        "print(tiktoken.encoding_for_model('gpt-4o-mini').encode('hello world'),"
        " tiktoken.encoding_for_model('gpt-4').encode('hello world'))"
    )
    env = {"PATH": "/usr/bin:/bin", "TIKTOKEN_CACHE_DIR": str(tmp_path),
           "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[24912, 2375] [15339, 1917]"


def test_chat_token_count_adds_the_chat_format_overhead():
    messages = [{"role": "user", "content": "hello world"}]
    # 3 for the reply primer, 3 per message, 1 for "user", 2 for "hello world".
    assert tokenizer.count_chat_tokens(messages, "gpt-4o-mini") == 3 + 3 + 1 + 2
    assert tokenizer.count_text_tokens("hello world", "some-unknown-model") == 2
