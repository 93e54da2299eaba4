"""Markdown table rows for benchmark reports."""

from __future__ import annotations


def header(columns: list[str]) -> None:
    print("| " + " | ".join(columns) + " |")
    print("|---" * len(columns) + "|")


def row(cells: list[str]) -> None:
    print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)
