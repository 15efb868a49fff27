"""Residue alphabet, template parsing and encode/decode.

Token ids: residues are 0 … V−1 in alphabet order, then the absorbing MASK (V) and PAD (V+1).
The network predicts over the V residues only; MASK and PAD exist only as inputs.

Template syntax (the contract shared by the app, the CLI and the API):
- residues: the alphabet's characters, case-insensitive when the alphabet has no lowercase;
- designed positions: ``_ ? # X`` (X is "unknown residue" in FASTA, so it is designed too);
- ignored: whitespace, digits, one leading FASTA header line (``>…``), comment lines (``;…``), a
  trailing ``*`` (each unless it is a residue of the alphabet);
- brackets (when ``[`` is not itself a residue of the alphabet):
  ``[n]`` n designed positions, exactly as n masks; ``[a-b]`` a designed span of a to b positions
  whose length the model chooses (``sedd/spans.py``); ``[KR]`` one designed position restricted to
  the listed residues; ``[^C]`` one designed position that may be anything but the listed ones.
  Whitespace inside a bracket is ignored, except a space between two digits (``[3 4]``: 34 or 3-4?);
- anything else is a ``ValueError`` naming the character (or bracket) and its 1-based position, with
  its line and column when the text has several lines (``Position``);
- protein alphabets only (the 20 letters, either case): three or more three-letter codes
  (``Met Lys Val``, ``MetLysVal``, a PDB SEQRES line) are refused with the one-letter text they
  stand for, and so are residue names or codes in a bracket (``[^cysteine]``, ``[Cys]``) or in the
  excluded residues (``Cys``, ``glycines``, ``C and M``); a bracket of a code in one case (``[CYS]``,
  as SEQRES writes it) is the set it spells, C, Y or S, with a notice saying so;
- length 1 … ``max_len`` for every choice of span lengths; no mask at all is allowed, and then
  ``notices`` says that every design is the template itself.
A pasted multi-FASTA uses the first record, and says so in ``notices``. A full sequence to score
(``full=True``) refuses every bracket and has no notice of nothing to design.

``parse_spec`` returns a ``TemplateSpec``: the template as a sequence of slots (a given residue, a
designed position with its allowed residues, or a variable span). ``TemplateSpec.expand(lengths)``
makes the concrete ``Template`` for chosen span lengths; ``parse_template`` is the shortcut for
templates without variable spans.
"""
from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace

PROTEIN_RESIDUES = "ACDEFGHIKLMNPQRSTVWY"
PROTEIN_MASKS = "_?#X"
BRACKET_HELP = ("a bracket holds n (n designed positions), a-b (a span of a to b designed positions, "
                "0 ≤ a ≤ b), residues such as KR (one position restricted to them) or ^ and residues "
                "such as ^C (one position that is anything but them)")
MAX_NAMED_SPANS = 5      # spans a length refusal names; the rest are counted
_MAX_DIGITS = 6          # more digits than this in a bracket is always beyond any model's length
# a line whose first non-blank character is '>' (blank as ``is_blank`` says: not U+001C–1F or U+0085)
HEADER_LINE = re.compile(r"^[^\S\n\x1c-\x1f\x85]*>", re.MULTILINE)


def without_comments(text: str) -> str:
    """``text`` with its FASTA comment lines (a line whose first non-blank character is ``;``) blanked
    to spaces: every other character keeps its position, so an error's position still counts from
    the start of the text. A ``;`` anywhere else is left for the sequence rules to refuse."""
    return "\n".join(" " * len(line) if _without_leading_blanks(line).startswith(";") else line
                     for line in text.split("\n"))


def _without_leading_blanks(text: str) -> str:
    start = next((i for i, ch in enumerate(text) if not is_blank(ch)), len(text))
    return text[start:]


def _without_trailing_blanks(text: str) -> str:
    end = next((i + 1 for i in range(len(text) - 1, -1, -1) if not is_blank(text[i])), 0)
    return text[:end]


def is_blank(ch: str) -> bool:
    """Whitespace the sequence rules skip: what ``str.isspace`` calls whitespace, less the control
    characters it counts too (the file/group/record/unit separators U+001C–U+001F and U+0085), which
    nobody types and which are refused as invisible, like a stray NUL."""
    return ch in " \t\n\r\v\f" or (ch.isspace() and unicodedata.category(ch) != "Cc")


THREE_LETTER_CODES = {"Ala": "A", "Arg": "R", "Asn": "N", "Asp": "D", "Cys": "C", "Gln": "Q", "Glu": "E",
                      "Gly": "G", "His": "H", "Ile": "I", "Leu": "L", "Lys": "K", "Met": "M", "Phe": "F",
                      "Pro": "P", "Ser": "S", "Thr": "T", "Trp": "W", "Tyr": "Y", "Val": "V"}
# names an Exclude box is typed with: each reads as several one-letter codes ('cysteine' bans C, E, I, N, S, T, Y)
RESIDUE_NAMES = {"alanine": "A", "arginine": "R", "asparagine": "N", "aspartate": "D", "aspartic": "D",
                 "cysteine": "C", "glutamine": "Q", "glutamate": "E", "glutamic": "E", "glycine": "G",
                 "histidine": "H", "isoleucine": "I", "leucine": "L", "lysine": "K", "methionine": "M",
                 "phenylalanine": "F", "proline": "P", "serine": "S", "threonine": "T", "tryptophan": "W",
                 "tyrosine": "Y", "valine": "V"}


def _named_residue(word: str) -> str | None:
    """The one-letter code of a three-letter code or residue name, also in the plural ('Cyss', 'glycines')."""
    for form in (word, word[:-1] if word[-1:] in "sS" else word):
        one = THREE_LETTER_CODES.get(form.capitalize()) or RESIDUE_NAMES.get(form.lower())
        if one:
            return one
    return None


def _shown_bracket(inner: str, most: int = 40) -> str:
    """A bracket as an error message shows it: whole when short, else its start and its length, so a
    pasted page inside one is not echoed back (and into the studio's log) on every refusal."""
    shown = " ".join(inner.split())          # a line break inside would break the message's line
    return f"[{shown}]" if len(inner) <= most else f"[{shown[:most - 10]}…] ({len(inner):,} characters inside)"


def _refuse_unknown_settings(section: dict, known: set[str], name: str) -> None:
    unknown = sorted(set(section) - known)
    if unknown:
        raise ValueError(f"the {name!r} section has settings this version of sedd does not know "
                         f"({', '.join(map(repr, unknown))}); a newer sedd wrote it: update sedd to load it")


def _invisible(ch: str) -> bool:
    """A format or control character: a byte-order mark, zero-width space or soft hyphen pasted from a
    PDF, a stray NUL. The user cannot see it."""
    return unicodedata.category(ch) in ("Cf", "Cc")


def describe_char(ch: str) -> str:
    """A character as an error message should show it: ``'!'``, or for anything beyond printable
    ASCII also its code point and name, ``'А' (U+0410, CYRILLIC CAPITAL LETTER A)``, so a look-alike
    of a residue letter is recognisable, and an invisible one is said to be there."""
    if ch.isascii() and ch.isprintable():
        return repr(ch)
    name = unicodedata.name(ch, "")
    hidden = ", invisible: delete it" if _invisible(ch) else ""
    return f"{ch!r} (U+{ord(ch):04X}{', ' + name if name else ''}{hidden})"


@dataclass(frozen=True)
class Template:
    """A concrete template: ``tokens`` holds residue ids, with ``mask_id`` at designed positions.

    ``allowed``: empty when every designed position may take any residue; otherwise one entry per
    position, the frozenset of residue ids a designed position may take (None = any, and None at
    given residues). ``span_lengths``: the lengths chosen for the ``[a-b]`` spans it came from.
    """

    tokens: tuple[int, ...]
    mask_id: int
    notices: tuple[str, ...] = ()
    allowed: tuple[frozenset[int] | None, ...] = ()
    span_lengths: tuple[int, ...] = ()

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def designed(self) -> list[bool]:
        return [tok == self.mask_id for tok in self.tokens]

    @property
    def num_designed(self) -> int:
        return sum(self.designed)

    @property
    def restricted(self) -> bool:
        """Whether some designed position may not take every residue."""
        return any(a is not None for a in self.allowed)


class Position(int):
    """A 1-based character position in a typed text, which prints as ``12`` in a one-line text and as
    ``143 (line 3, column 12)`` in a longer one: an error in a pasted FASTA is then found without
    counting characters. It is the plain number in every comparison, sum and JSON dump."""

    line: int           # 0 in a one-line text
    column: int

    def __new__(cls, number: int, line: int = 0, column: int = 0):
        self = super().__new__(cls, number)
        self.line, self.column = line, column
        return self

    @classmethod
    def in_text(cls, text: str, index: int) -> Position:
        """The position of ``text[index]`` (0-based)."""
        return cls.finder(text)(index)

    @classmethod
    def finder(cls, text: str) -> Callable[[int], Position]:
        """``in_text`` for many indices of one text, its line breaks found once (a template may hold
        20,000 brackets, each with its position)."""
        if "\n" not in text.rstrip():
            return lambda index: cls(index + 1)
        starts = [0] + [m.end() for m in re.finditer("\n", text)]

        def at(index: int) -> Position:
            line = bisect.bisect_right(starts, index)
            return cls(index + 1, line, index - starts[line - 1] + 1)
        return at

    def __getnewargs__(self):             # copy and pickle, which would otherwise call Position(number)
        return int(self), self.line, self.column

    def __str__(self) -> str:
        return f"{int(self)} (line {self.line}, column {self.column})" if self.line else str(int(self))

    def __format__(self, spec: str) -> str:
        return str(self) if not spec else format(int(self), spec)


@dataclass(frozen=True)
class Slot:
    """One position of a parsed template: a given residue (``token``), or a designed position
    (``token is None``) that may take the residues in ``allowed`` (None = any). ``at``: the ``Position``
    in the typed text of the bracket it came from (0 when it came from no bracket)."""

    token: int | None
    allowed: frozenset[int] | None = None
    at: int = 0


@dataclass(frozen=True)
class Span:
    """A designed run of ``low`` … ``high`` positions whose length the model chooses (``[a-b]``).
    ``allowed``: residues its positions may take (None = any); ``at``: position of its ``[``."""

    low: int
    high: int
    at: int
    allowed: frozenset[int] | None = None

    @property
    def text(self) -> str:
        return f"[{self.low}-{self.high}]"


@dataclass(frozen=True)
class TemplateSpec:
    """A parsed template: slots and variable spans in order, before span lengths are chosen."""

    parts: tuple[Slot | Span, ...]
    mask_id: int
    notices: tuple[str, ...] = ()

    @property
    def spans(self) -> list[Span]:
        return [p for p in self.parts if isinstance(p, Span)]

    @property
    def num_slots(self) -> int:
        return sum(isinstance(p, Slot) for p in self.parts)

    def length_range(self) -> tuple[int, int]:
        """(shortest, longest) total length over every choice of span lengths."""
        spans = self.spans
        return self.num_slots + sum(s.low for s in spans), self.num_slots + sum(s.high for s in spans)

    def expand(self, lengths: Sequence[int] = ()) -> Template:
        """The concrete template with span j of length ``lengths[j]`` (a ``ValueError`` when out of range)."""
        spans = self.spans
        if len(lengths) != len(spans):
            raise ValueError(f"the template has {len(spans)} variable spans; got {len(lengths)} lengths")
        tokens: list[int] = []
        allowed: list[frozenset[int] | None] = []
        chosen = iter(lengths)
        for part in self.parts:
            if isinstance(part, Slot):
                tokens.append(self.mask_id if part.token is None else part.token)
                allowed.append(part.allowed)
                continue
            k = int(next(chosen))
            if not part.low <= k <= part.high:
                raise ValueError(f"span {part.text} at position {part.at} takes {part.low} to {part.high} "
                                 f"positions; got {k}")
            tokens.extend([self.mask_id] * k)
            allowed.extend([part.allowed] * k)
        restricted = any(a is not None for a in allowed)
        return Template(tuple(tokens), self.mask_id, self.notices, tuple(allowed) if restricted else (),
                        tuple(int(k) for k in lengths))

    def fixed(self) -> Template:
        """The template itself when it has no variable span."""
        if self.spans:
            span = self.spans[0]
            raise ValueError(f"span {span.text} at position {span.at} has a variable length, chosen by the "
                             "model (sedd.design.plan_designs); this call takes fixed-length templates only")
        return self.expand(())

    def excluding(self, banned: frozenset[int], residues: str) -> TemplateSpec:
        """The same template with ``banned`` residue ids removed from every designed position.

        A designed position (or span) left with no residue is a ``ValueError`` naming its bracket.
        """
        if not banned:
            return self
        everything = frozenset(range(len(residues)))
        if banned >= everything:
            raise ValueError(f"excluded residues {_chars(banned, residues)} are every residue of the alphabet: "
                             "nothing is left to design with")

        def narrowed(allowed: frozenset[int] | None, at: int, what: str) -> frozenset[int]:
            left = (allowed if allowed is not None else everything) - banned
            if not left:
                raise ValueError(f"{what} at position {at} allows only {_chars(allowed, residues)}, all of which "
                                 f"are excluded ({_chars(banned, residues)}); allow another residue or "
                                 "exclude fewer")
            return left

        parts = []
        for p in self.parts:
            if isinstance(p, Slot) and p.token is None:
                p = Slot(None, narrowed(p.allowed, p.at, "the bracket"), p.at)
            elif isinstance(p, Span):
                p = Span(p.low, p.high, p.at, narrowed(p.allowed, p.at, f"span {p.text}"))
            parts.append(p)
        return TemplateSpec(tuple(parts), self.mask_id, self.notices)

    def text(self, residues: str) -> str:
        """The template written back in the syntax: residues, ``_``, ``[KR]`` or ``[^C]`` sets, ``[a-b]`` spans."""
        out = []
        for p in self.parts:
            if isinstance(p, Span):
                out.append(p.text)
            elif p.token is not None:
                out.append(residues[p.token])
            elif p.allowed is None:
                out.append("_")
            elif 2 * len(p.allowed) > len(residues):      # the shorter way to write it
                out.append(f"[^{_chars(frozenset(range(len(residues))) - p.allowed, residues)}]")
            else:
                out.append(f"[{_chars(p.allowed, residues)}]")
        return "".join(out)


def _chars(ids, residues: str) -> str:
    return "".join(residues[i] for i in sorted(ids))


@dataclass(frozen=True)
class Alphabet:
    """An ordered set of residue characters plus the characters that mark designed positions."""

    residues: str = PROTEIN_RESIDUES
    mask_chars: str = PROTEIN_MASKS
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.residues, str) or not isinstance(self.mask_chars, str):
            raise ValueError(f"alphabet residues and mask characters must be strings, got {self.residues!r} "
                             f"and {self.mask_chars!r}")
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
            if 0 <= tok < self.size:
                out.append(self.residues[tok])
            elif tok == self.mask_id:
                out.append(mask_char)
            elif tok != self.pad_id:
                raise ValueError(f"token id {tok} is outside the alphabet (0…{self.pad_id})")
        return "".join(out)

    def is_valid(self, sequence: str) -> bool:
        return all(ch in self._index for ch in sequence)

    # ---- templates ---------------------------------------------------------------------------
    def allowed_text(self, designing: bool = True) -> str:
        """What a template may hold, for error messages; ``designing=False``: a full sequence's rules
        (the same, without designed positions and brackets)."""
        ignored = [what for what, chars in (("whitespace", " "), ("digits", "0123456789"), ("one FASTA header line", ">"),
                                            ("comment lines (starting with ;)", ";"), ("a trailing *", "*"))
                   if not any(c in self._index for c in chars)]     # a residue is read as one, never ignored
        ignored[-2:] = [" and ".join(ignored[-2:])] if ignored else []
        return (f"allowed: residues {self.residues}"
                + (" (either case)" if self.case_insensitive else "")
                + (f", designed positions {' '.join(self.mask_chars)}" if designing else "")
                + (", brackets [n] [a-b] [KR] [^C]" if designing and "[" not in self._index else "")
                + (f"; {', '.join(ignored)} are ignored" if ignored else ""))

    def residue_ids(self, text: str, what: str = "excluded residues") -> frozenset[int]:
        """The residue ids listed in ``text`` (whitespace and commas ignored; None lists none); ``what``
        names it in errors."""
        if text is None:
            return frozenset()
        if not isinstance(text, str):
            raise ValueError(f"{what} must be text such as 'C' or 'CM', got {type(text).__name__} {text!r:.40}")
        self._refuse_three_letter_codes(text, what)
        ids = set()
        # separators, except in an exclusion of nothing else that the alphabet has as residues (a text
        # model's ' ' or ','): it was ignored without a word
        only_separators = text and all(is_blank(ch) or ch == "," for ch in text)
        separators = not (only_separators and all(ch in self._index for ch in text))
        for i, ch in enumerate(text):
            if separators and (is_blank(ch) or ch == ","):
                continue
            if ch not in self._index:
                raise ValueError(f"{what}: {describe_char(ch)} at position {Position.in_text(text, i)} is not a residue; "
                                 f"allowed: residues {self.residues}"
                                 + (" (either case)" if self.case_insensitive else ""))
            ids.add(self._index[ch])
        return frozenset(ids)

    @property
    def is_protein(self) -> bool:
        """The 20 amino-acid letters in either case, nothing but letters: where a word such as 'his' can
        only be a mistake (in a text model's alphabet of both cases it is three residues), and what
        ESMFold can fold (ACGT are letters of proteins too, but not a protein alphabet)."""
        return (self.case_insensitive and set(THREE_LETTER_CODES.values()) <= set(self.residues)
                and all(ch.isalpha() for ch in self.residues))      # ' ,.A–Z' is upper-case English

    def _refuse_three_letter_codes(self, text: str, what: str) -> None:
        """'Cys' would read as C, Y and S, banning two residues nobody meant to ban, without a word;
        'cysteine', 'Cyss' or 'C and M' the same."""
        if not self.is_protein:
            return
        words = [word for word in re.split(r"[\s,]+", text) if word]
        for word in words:
            one = _named_residue(word)
            if one:
                raise ValueError(f"{what} are one-letter codes: {word!r} would read as "
                                 f"{', '.join(dict.fromkeys(word.upper()))}; write {one} for {word}, or the letters "
                                 f"apart ({' '.join(word.upper())}) to bar each of them")
            if len(words) > 1 and word.lower() in ("and", "or"):
                raise ValueError(f"{what} are one-letter codes: {word!r} would read as {', '.join(word.upper())}; "
                                 "list only the residues, e.g. 'C M' or 'CM'")

    def _refuse_three_letter_template(self, body: str) -> None:
        """'Met Lys Val Gly' read as METLYSVALGLY, a template of other residues (or an error about the
        'U' of 'Glu'). Refused, with the one-letter text the codes stand for: three or more codes that
        are at least half the words (a PDB SEQRES line has its record name, numbers and chain too), or
        three or more written together in the codes' own case (MetLysVal; a sequence is in one case)."""
        if not self.is_protein:
            return
        words = body.split()
        codes = [w for w in words if w.capitalize() in THREE_LETTER_CODES]
        joined = re.search(f"(?:{'|'.join(THREE_LETTER_CODES)}){{3,}}", body)
        if not (len(codes) >= 3 and 2 * len(codes) >= len(words)) and not joined:
            return
        designed = re.compile(rf"(?:[{re.escape(self.mask_chars)}]|\[[^\[\]]*\])+", re.IGNORECASE)   # _ x [3]

        def one_letter(word: str) -> str:        # a code's letter, designed positions as written, else nothing
            return THREE_LETTER_CODES.get(word.capitalize(), word if designed.fullmatch(word) else "")
        shown = words if not joined else [joined[0]]
        one = "".join(map(one_letter, words if not joined else re.findall("[A-Z][a-z]{2}", joined[0])))
        raise ValueError(f"template is written in three-letter codes ({' '.join(shown[:4])[:40]}"
                         f"{' …' if len(shown) > 4 else ''}); write one-letter codes"
                         + (f": {one[:60]}{'…' if len(one) > 60 else ''}" if one else ""))

    def _strip_fasta(self, text: str) -> tuple[str, int, list[str]]:
        """(sequence text, its offset in ``text``, notices): comment lines blanked, header line, extra
        records and a trailing * removed (those of them that are not residues of this alphabet)."""
        notices: list[str] = []
        if ";" not in self._index:
            text = without_comments(text)              # as every FASTA reader does (``data.fasta_spans``)
        body, offset = text, 0
        if ">" in self._index:                         # a residue, not a header
            return self.strip_stop(body), offset, notices
        stripped = _without_leading_blanks(text)       # not lstrip(): it takes U+001C–1F, refused as invisible
        if stripped.startswith(">"):
            offset = len(text) - len(stripped)
            newline = stripped.find("\n")
            if newline < 0:
                raise ValueError("template has a FASTA header line but no sequence after it")
            offset += newline + 1
            body = stripped[newline + 1:]
        # A second header means a pasted multi-FASTA: keep the first record. Any header line may be
        # indented, as the first may: a pasted block is often indented as a whole.
        headers = [m.start() for m in HEADER_LINE.finditer(body)]
        if headers:
            if not body[:headers[0]].strip():
                raise ValueError("template has two FASTA header lines in a row and no sequence")
            notices.append(f"the input holds {1 + len(headers)} FASTA records; using the first one only")
            body = body[:headers[0]]
        return self.strip_stop(body), offset, notices

    def strip_stop(self, body: str) -> str:
        """``body`` without one trailing stop ``*``, unless ``*`` is a residue of this alphabet."""
        trimmed = _without_trailing_blanks(body)       # not rstrip(): it takes U+001C–1F, refused as invisible
        return trimmed[:-1] if trimmed.endswith("*") and "*" not in self._index else body

    def _bracket(self, inner: str, at: Position, max_len: int) -> list[Slot | Span]:
        """The slots of one bracket's content (whitespace removed); ``at`` = position of its ``[``."""
        where = f"bracket {_shown_bracket(inner)} at position {at}"
        if not inner:
            raise ValueError(f"empty bracket [] at position {at}; {BRACKET_HELP}")
        numbers = re.fullmatch(r"([0-9]+)(?:-([0-9]+))?", inner)       # not \d: int() would read "١٢" as 12
        if numbers:
            if any(len(g.lstrip("0")) > _MAX_DIGITS for g in numbers.groups() if g):   # [0001] is one
                raise ValueError(f"{where} asks for more positions than the model's maximum of {max_len}")
            low = int(numbers[1])
            high = low if numbers[2] is None else int(numbers[2])
            if low > high:
                raise ValueError(f"{where}: a span [a-b] needs a ≤ b, got {low} > {high}")
            if high > max_len:
                raise ValueError(f"{where} asks for up to {high} positions; the model's maximum is {max_len}")
            if numbers[2] is None:
                return [Slot(None, None, at)] * low
            return [Span(low, high, at)]
        if re.fullmatch(r"-[0-9]+(?:-[0-9]*)?", inner):
            raise ValueError(f"{where}: span lengths cannot be negative; write [a-b] with 0 ≤ a ≤ b")
        if re.fullmatch(r"[0-9][0-9.,-]*", inner):                      # [1.5], [2-], [3-4-5]
            raise ValueError(f"{where} is not a count: write [n] for n designed positions or [a-b] for a span "
                             "of a to b, in whole numbers")
        # [3–8] with an en dash (word processors, chat apps), [3−8] with a minus sign, [3:8]: name the
        # separator, not the digit 3 as "not a residue"
        numbers = re.fullmatch(r"([0-9]+)([^0-9]+)([0-9]+)", inner)
        if numbers and not any(ch in self._index for ch in numbers[2]):
            separator = numbers[2]                     # [3-+5] is no '-' between numbers: say two characters
            what = (f"{describe_char(separator)} cannot separate a span's lengths" if len(separator) == 1
                    else f"{separator!r} is more than one separator")
            raise ValueError(f"{where}: {what}; write {_shown_bracket(numbers[1] + '-' + numbers[3])} with one ASCII "
                             "hyphen '-' for a span of a to b positions")
        exclude = inner.startswith("^")
        listed = inner[1:] if exclude else inner
        if not listed:
            raise ValueError(f"{where} lists no residue after ^; write e.g. [^C] for anything but C")
        # a name, or a code in its own case: [^cysteine] barred C, E, I, N, S, T, Y; [Cys] allowed C, Y, S
        # ([CYS] and [cys] stay three letters)
        named = listed.lower().removesuffix("s") in RESIDUE_NAMES or re.fullmatch("(?:[A-Z][a-z]{2})+", listed)
        one = self.is_protein and named and _named_residue(listed)
        if one:
            raise ValueError(f"{where}: a bracket lists one-letter codes; write [{'^' if exclude else ''}{one}] for "
                             f"{listed}")
        ids = set()
        for ch in listed:
            if ch not in self._index:
                raise ValueError(f"{where}: {describe_char(ch)} is not a residue; {BRACKET_HELP}; residues are "
                                 f"{self.residues}" + (" (either case)" if self.case_insensitive else ""))
            ids.add(self._index[ch])
        allowed = frozenset(range(self.size)) - ids if exclude else frozenset(ids)
        if not allowed:
            raise ValueError(f"{where} excludes every residue; leave at least one of {self.residues} allowed")
        return [Slot(None, None if len(allowed) == self.size else allowed, at)]

    def _code_as_set(self, raw: str, where: Position) -> list[str]:
        """A notice for a protein bracket whose letters spell a three-letter code in capitals or small
        letters, as a PDB SEQRES line writes it: [CYS] lists the residues C, Y and S (a fair thing to
        ask for), and the note says what to write for the one residue ([Cys], the code in its own
        case, is refused by ``_bracket``; [C Y S], spaced, is plainly letters)."""
        listed = raw.strip().removeprefix("^")
        code = listed.capitalize()
        if not (self.is_protein and code in THREE_LETTER_CODES and (listed.isupper() or listed.islower())):
            return []
        letters = list(dict.fromkeys(listed.upper()))              # [ALA]: A and L
        named = f"{', '.join(letters[:-1])} and {letters[-1]}"
        one = THREE_LETTER_CODES[code]
        if raw.strip().startswith("^"):
            return [f"[{raw.strip()}] at position {where} bars the residues {named}, not {code} alone; to bar "
                    f"{code}, write [^{one}]"]
        return [f"[{raw.strip()}] at position {where} lists the residues {named}, not {code}; for {code}, write {one}"]

    def parse_spec(self, text: str, max_len: int, exclude: str = "", full: bool = False) -> TemplateSpec:
        """Parse a template string, brackets and spans included (see the module docstring).

        ``exclude``: residues no designed position may take (the CLI's ``--omit``). ``full``: the text
        is a full sequence to score, so a bracket is refused where it stands (``[0]`` would drop out)
        and no notice says that nothing is designed.
        """
        if not isinstance(text, str):
            raise ValueError(f"template must be text, got {type(text).__name__}")
        body, offset, notices = self._strip_fasta(text)
        self._refuse_three_letter_template(body)
        brackets = "[" not in self._index

        position = Position.finder(text)

        def at(i: int) -> Position:          # of body[i]
            return position(offset + i)

        parts: list[Slot | Span] = []
        i = 0
        while i < len(body):
            ch = body[i]
            if brackets and ch == "[":
                close = body.find("]", i + 1)
                if full and close > i:
                    bracket = _shown_bracket(body[i + 1:close])
                    raise ValueError(f"scoring needs a full sequence, but the bracket {bracket} at position {at(i)} "
                                     "stands for designed positions; write the residues themselves")
                reopen = body.find("[", i + 1)
                if close < 0:
                    raise ValueError(f"'[' at position {at(i)} is never closed with ']'; {BRACKET_HELP}")
                if 0 <= reopen < close:
                    raise ValueError(f"'[' at position {at(i)} is not closed before the next '[' at position "
                                     f"{at(reopen)}; brackets cannot nest")
                raw = body[i + 1:close]
                hidden = next((j for j in range(i + 1, close) if body[j].isspace() and not is_blank(body[j])), None)
                if hidden is not None:              # not skipped as whitespace, nor read as what it hides between
                    raise ValueError(f"invalid character {describe_char(body[hidden])} at position {at(hidden)}; "
                                     f"{self.allowed_text()}")
                if re.search(r"[0-9][^\S\n]+[0-9]", raw):     # a line break inside a count is a wrapped line
                    pair = re.fullmatch(r"\s*([0-9]{1,6})\s+([0-9]{1,6})\s*", raw)      # a long one: no suggestion
                    meant = "" if not pair else f", e.g. [{pair[1]}{pair[2]}]" + \
                        (f" or [{pair[1]}-{pair[2]}]" if int(pair[1]) <= int(pair[2]) else "")
                    raise ValueError(f"bracket {_shown_bracket(raw)} at position {at(i)} has a space inside a number; "
                                     f"write [n] for n designed positions or [a-b] for a span of a to b{meant}")
                parts.extend(self._bracket("".join(ch for ch in raw if not is_blank(ch)), at(i), max_len))
                notices.extend(self._code_as_set(raw, at(i)))
                i = close + 1
                continue
            if brackets and ch == "]":
                raise ValueError(f"']' at position {at(i)} closes no '['; {BRACKET_HELP}")
            if ch in self.mask_chars or (self.case_insensitive and ch.upper() in self.mask_chars
                                         and ch.upper() not in self._index):
                parts.append(Slot(None))
            elif ch in self._index:
                parts.append(Slot(self._index[ch]))
            elif not (is_blank(ch) or ch in "0123456789"):       # not isdigit(): '²' or '٣' is no number
                if ch == "*":       # a stop that only something invisible keeps from being the last: name that
                    rest = [j for j in range(i + 1, len(body)) if not is_blank(body[j])]
                    if rest and all(_invisible(body[j]) for j in rest):
                        i = rest[0]
                raise ValueError(f"invalid character {describe_char(body[i])} at position {at(i)}; "
                                 f"{self.allowed_text()}")
            i += 1
        spec = TemplateSpec(tuple(parts), self.mask_id, tuple(notices))
        self._check_length(spec, max_len)
        if not full and not spec.expand([s.high for s in spec.spans]).num_designed:     # [0-0] designs nothing too
            marks = " ".join(self.mask_chars) + (" or a bracket such as [3]" if brackets else "")
            how = ("its [0-0] spans design none: give a span a length above 0" if spec.spans
                   else f"mark positions with {marks}")
            spec = replace(spec, notices=spec.notices + (
                f"the template has no position to design ({how}), so every design is the template itself; to "
                "score a full sequence, use the studio's Score tab or python -m sedd.score",))
        return spec.excluding(self.residue_ids(exclude), self.residues)

    def _check_length(self, spec: TemplateSpec, max_len: int) -> None:
        shortest, longest = spec.length_range()
        named = [f"{s.text} at position {s.at}" for s in spec.spans[:MAX_NAMED_SPANS]]
        more = len(spec.spans) - len(named)      # a pasted page of spans: name a few, count the rest
        spans = ", ".join(named) + (f" and {more:,} more" if more else "")
        if not spec.parts:
            raise ValueError("template is empty: type residues and designed positions (_ ? # X), "
                             f"1 to {max_len} in all")
        if shortest == 0:
            raise ValueError(f"template can be empty: with the span {spans} at its shortest no position is "
                             "left; give a residue or make a span's minimum at least 1")
        if longest > max_len:
            if not spec.spans:
                raise ValueError(f"template has {longest} positions; the model's maximum is {max_len}")
            if shortest > max_len:          # shortening the spans' maxima would not help: say so
                raise ValueError(f"template has at least {shortest} positions, even with the spans {spans} at "
                                 f"their shortest; the model's maximum is {max_len}")
            raise ValueError(f"template is up to {longest} positions long with the spans {spans} at their "
                             f"longest; the model's maximum is {max_len}")

    def parse_template(self, text: str, max_len: int, exclude: str = "") -> Template:
        """Parse a template without variable spans into a ``Template`` (``parse_spec`` for the rules)."""
        return self.parse_spec(text, max_len, exclude).fixed()

    # ---- (de)serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}

    @classmethod
    def from_dict(cls, d: dict) -> Alphabet:
        """``to_dict``'s inverse; a setting this version lacks came from a newer sedd and is refused, not dropped."""
        _refuse_unknown_settings(d, {"residues", "mask_chars"}, "alphabet")
        return cls(residues=d["residues"], mask_chars=d["mask_chars"])

    @classmethod
    def from_text(cls, texts, mask_chars: str = "_") -> Alphabet:
        """An alphabet of every character in ``texts`` (any alphabet works, e.g. English text)."""
        chars = sorted(set("".join(texts)) - set(mask_chars))
        return cls(residues="".join(chars), mask_chars=mask_chars)


PROTEIN = Alphabet()
