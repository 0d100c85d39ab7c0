"""Thin entry point for `flask embed-cases`; see README "RAG and embeddings".

Usage: python scripts/embed_cases.py [--checkpoint PATH] [--restart] [--limit N]
(exit 1 when a batch failed: run it again to resume after the last batch done)
"""
from _bootstrap import run_command

from backend.cli import embed_cases_command

if __name__ == "__main__":
    run_command(embed_cases_command, "embed_cases.py")
