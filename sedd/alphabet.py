"""Residue alphabet, template parsing and encode/decode.

Token ids: residues are 0 … V−1 in alphabet order, then the absorbing MASK (V) and PAD (V+1).
The network predicts over the V residues only; MASK and PAD exist only as inputs.

Template syntax (the contract shared by the app, the CLI and the API):
- residues: the alphabet's characters, case-insensitive when the alphabet has no lowercase;
- designed positions: ``_ ? # X`` (X is "unknown residue" in FASTA, so it is designed too);
- ignored: whitespace, digits, one leading FASTA header line (``>…``), a trailing ``*``;
- anything else is a ``ValueError`` naming the character and its 1-based position;
- length 1 … ``max_len``; no mask at all is allowed.
A pasted multi-FASTA uses the first record, and says so in ``Template.notices``.
"""
from __future__ import annotations

import unicodedata
from dataclasses import asdict, dataclass, field

PROTEIN_RESIDUES = "ACDEFGHIKLMNPQRSTVWY"
PROTEIN_MASKS = "_?#X"


def describe_char(ch: str) -> str:
    """A character as an error message should show it: ``'!'``, or for anything beyond printable
    ASCII also its code point and name, ``'А' (U+0410, CYRILLIC CAPITAL LETTER A)``, so a look-alike
    of a residue letter is recognisable."""
    if ch.isascii() and ch.isprintable():
        return repr(ch)
    name = unicodedata.name(ch, "")
    return f"{ch!r} (U+{ord(ch):04X}{', ' + name if name else ''})"


@dataclass(frozen=True)
class Template:
    """A parsed template: ``tokens`` holds residue ids, with ``mask_id`` at designed positions."""

    tokens: tuple[int, ...]
    mask_id: int
    notices: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def designed(self) -> list[bool]:
        return [tok == self.mask_id for tok in self.tokens]

    @property
    def num_designed(self) -> int:
        return sum(self.designed)


@dataclass(frozen=True)
class Alphabet:
    """An ordered set of residue characters plus the characters that mark designed positions."""

    residues: str = PROTEIN_RESIDUES
    mask_chars: str = PROTEIN_MASKS
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(set(self.residues)) != len(self.residues) or not self.residues:
            raise ValueError(f"alphabet residues must be unique and non-empty, got {self.residues!r}")
        clash = set(self.residues) & set(self.mask_chars)
        if clash:
            raise ValueError(f"mask characters {sorted(clash)} are also residues of the alphabet")
        index = {ch: i for i, ch in enumerate(self.residues)}
        if self.case_insensitive:
            index.update({ch.lower(): i for ch, i in list(index.items())})
        object.__setattr__(self, "_index", index)

    # ---- ids -------------------------------------------------------------------------------
    @property
    def size(self) -> int:
        """V, the number of residues the model predicts over."""
        return len(self.residues)

    @property
    def mask_id(self) -> int:
        return self.size

    @property
    def pad_id(self) -> int:
        return self.size + 1

    @property
    def num_tokens(self) -> int:
        """Residues, MASK and PAD: the size of the network's input embedding."""
        return self.size + 2

    @property
    def case_insensitive(self) -> bool:
        return self.residues == self.residues.upper() and any(c.isalpha() for c in self.residues)

    # ---- encode / decode ---------------------------------------------------------------------
    def encode(self, sequence: str) -> list[int]:
        """Residue characters → ids. Raises ``ValueError`` on anything outside the alphabet."""
        ids = []
        for pos, ch in enumerate(sequence, start=1):
            if ch not in self._index:
                raise ValueError(f"character {ch!r} at position {pos} is not in the alphabet {self.residues!r}")
            ids.append(self._index[ch])
        return ids

    def decode(self, ids, mask_char: str = "_") -> str:
        """Ids → string; MASK shows as ``mask_char``, PAD is dropped."""
        out = []
        for tok in ids:
            tok = int(tok)
            if tok < self.size:
                out.append(self.residues[tok])
            elif tok == self.mask_id:
                out.append(mask_char)
            elif tok != self.pad_id:
                raise ValueError(f"token id {tok} is outside the alphabet (0…{self.pad_id})")
        return "".join(out)

    def is_valid(self, sequence: str) -> bool:
        return all(ch in self._index for ch in sequence)

    # ---- templates ---------------------------------------------------------------------------
    def _allowed_text(self) -> str:
        return (f"allowed: residues {self.residues}"
                + (" (either case)" if self.case_insensitive else "")
                + f", designed positions {' '.join(self.mask_chars)}; whitespace, digits, "
                "one FASTA header line and a trailing * are ignored")

    def parse_template(self, text: str, max_len: int) -> Template:
        """Parse a template string (see the module docstring for the rules)."""
        if not isinstance(text, str):
            raise ValueError(f"template must be text, got {type(text).__name__}")
        notices: list[str] = []
        body, offset = text, 0
        stripped = text.lstrip()
        if stripped.startswith(">"):
            offset = len(text) - len(stripped)
            newline = stripped.find("\n")
            if newline < 0:
                raise ValueError("template has a FASTA header line but no sequence after it")
            offset += newline + 1
            body = stripped[newline + 1:]
        # A second header means a pasted multi-FASTA: keep the first record.
        second = body.find("\n>")
        if second >= 0 or body.startswith(">"):
            cut = 0 if body.startswith(">") else second
            records = 1 + body.count("\n>") + (1 if body.startswith(">") else 0)
            if cut == 0:
                raise ValueError("template has two FASTA header lines in a row and no sequence")
            notices.append(f"the input holds {records} FASTA records; using the first one only")
            body = body[:cut]
        trimmed = body.rstrip()
        if trimmed.endswith("*"):
            body = trimmed[:-1]

        tokens: list[int] = []
        for pos, ch in enumerate(body, start=offset + 1):
            if ch in self.mask_chars or (self.case_insensitive and ch.upper() in self.mask_chars
                                         and ch.upper() not in self._index):
                tokens.append(self.mask_id)
            elif ch in self._index:
                tokens.append(self._index[ch])
            elif ch.isspace() or ch.isdigit():
                continue
            else:
                raise ValueError(f"invalid character {describe_char(ch)} at position {pos}; {self._allowed_text()}")
        if not tokens:
            raise ValueError("template is empty: type residues and designed positions (_ ? # X), "
                             f"1 to {max_len} in all")
        if len(tokens) > max_len:
            raise ValueError(f"template has {len(tokens)} positions; the model's maximum is {max_len}")
        return Template(tuple(tokens), self.mask_id, tuple(notices))

    # ---- (de)serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}

    @classmethod
    def from_dict(cls, d: dict) -> "Alphabet":
        return cls(residues=d["residues"], mask_chars=d["mask_chars"])

    @classmethod
    def from_text(cls, texts, mask_chars: str = "_") -> "Alphabet":
        """An alphabet of every character in ``texts`` (any alphabet works, e.g. English text)."""
        chars = sorted(set("".join(texts)) - set(mask_chars))
        return cls(residues="".join(chars), mask_chars=mask_chars)


PROTEIN = Alphabet()
