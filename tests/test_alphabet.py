import copy
import json
import pickle
import re
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sedd.alphabet import PROTEIN, Alphabet

MAX = 128


def parse(text, max_len=MAX):
    return PROTEIN.parse_template(text, max_len)


def test_residues_and_masks_case_insensitive():
    tpl = parse("mKv_?#Xx")
    assert PROTEIN.decode(tpl.tokens) == "MKV_____"
    assert tpl.designed == [False] * 3 + [True] * 5
    assert tpl.num_designed == 5


def test_ignores_whitespace_digits_header_and_trailing_star():
    text = ">sp|P07311|ACYP1 some protein\n  1 MKVAG FLR\n 11 __GQ*\n"
    assert PROTEIN.decode(parse(text).tokens) == "MKVAGFLR__GQ"


def test_invalid_character_names_character_and_position():
    with pytest.raises(ValueError, match=r"'B' at position 4") as e:
        parse("MKVB")
    assert "allowed" in str(e.value)
    with pytest.raises(ValueError, match=r"'\*' at position 3"):
        parse("MK*V")   # a star is only ignored at the end


@pytest.mark.parametrize("hidden", ["\ufeff", "\u200b", "\u00ad"])
def test_an_invisible_pasted_character_is_said_to_be_invisible(hidden):
    """A byte-order mark, zero-width space or soft hyphen copied from a PDF shows as nothing in the box."""
    with pytest.raises(ValueError, match=r"at position 4;.*") as refusal:
        parse(f"MKV{hidden}__GF")
    assert f"U+{ord(hidden):04X}" in str(refusal.value) and "invisible: delete it" in str(refusal.value)


@pytest.mark.parametrize("hidden", ["\x01", "\x1f", "\u200b"])
def test_an_invisible_character_after_a_stop_is_named_not_the_stop(hidden):
    """``MKV*`` is fine: the stop was blamed when only something the user cannot see followed it."""
    with pytest.raises(ValueError, match=rf"U\+{ord(hidden):04X}.*invisible: delete it.* at position 6;"):
        parse(f"MKV* {hidden}\n")
    with pytest.raises(ValueError, match=r"'\*' at position 4;"):
        parse(f"MKV*{hidden}A")         # a residue after it: the stop is not the last, and is named


def test_position_counts_from_the_start_of_the_typed_text():
    with pytest.raises(ValueError, match="'J' at position 9"):
        parse(">h\nMKVAAJVV")      # '>'=1, 'h'=2, newline=3, M=4 … J=9


def test_length_limits():
    assert len(parse("A" * MAX)) == MAX
    with pytest.raises(ValueError, match=f"maximum is {MAX}"):
        parse("A" * (MAX + 1))
    for empty in ("", "   \n", "123", ">header only\n", "*"):
        with pytest.raises(ValueError, match="empty|no sequence"):
            parse(empty)


def test_no_mask_is_allowed():
    tpl = parse("MKVAG")
    assert tpl.num_designed == 0


def test_multi_fasta_uses_first_record_and_says_so():
    tpl = parse(">a\nMKV__\n>b\nGGGG\n>c\nAA\n")
    assert PROTEIN.decode(tpl.tokens) == "MKV__"
    assert any("3 FASTA records" in n for n in tpl.notices)


def test_encode_decode_round_trip():
    seq = PROTEIN.residues * 3
    assert PROTEIN.decode(PROTEIN.encode(seq)) == seq
    with pytest.raises(ValueError):
        PROTEIN.encode("MKB")
    for outside in (-1, PROTEIN.pad_id + 1):       # -1 was read as the last residue, Y
        with pytest.raises(ValueError, match=f"token id {outside} is outside the alphabet"):
            PROTEIN.decode([outside, 0])


def test_any_alphabet_from_text():
    text = Alphabet.from_text(["hello world", "the cat."])
    assert text.decode(text.encode("hello cat.")) == "hello cat."
    assert text.parse_template("he__o", 20).num_designed == 2
    with pytest.raises(ValueError, match="mask characters"):
        Alphabet(residues="AB_", mask_chars="_")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_text_parses_or_raises_value_error_with_message(text):
    try:
        tpl = parse(text)
    except ValueError as e:
        assert str(e)
    else:
        assert 1 <= len(tpl) <= MAX
        assert all(0 <= t <= PROTEIN.mask_id for t in tpl.tokens)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(list(PROTEIN.residues + PROTEIN.residues.lower() + "_?#Xx \n0123456789")),
                min_size=1, max_size=150))
def test_template_alphabet_text_parses_to_its_letters(chars):
    text = "".join(chars)
    kept = [c for c in text if not (c.isspace() or c.isdigit())]
    if not kept or len(kept) > MAX:
        with pytest.raises(ValueError):
            parse(text)
        return
    tpl = parse(text)
    assert PROTEIN.decode(tpl.tokens) == "".join("_" if c in "_?#Xx" else c.upper() for c in kept)


# ---- brackets: [n], [a-b], [KR], [^C] and excluded residues -----------------------------------------------
ALL = frozenset(range(PROTEIN.size))


def ids(residues: str) -> frozenset:
    return frozenset(PROTEIN.residues.index(c) for c in residues)


def spec(text, max_len=MAX, exclude=""):
    return PROTEIN.parse_spec(text, max_len, exclude)


def test_n_in_brackets_is_n_masks():
    assert parse("MK[3]V") == parse("MK___V")
    assert parse("MK[ 12 ]V").tokens == parse("MK" + "_" * 12 + "V").tokens
    assert parse("M[0]K") == parse("MK")


def test_residue_sets_restrict_one_designed_position():
    tpl = parse("M[KR]G[^c]A[kr r]")
    assert tpl.designed == [False, True, False, True, False, True]
    assert tpl.allowed == (None, ids("KR"), None, ALL - ids("C"), None, ids("KR"))
    assert parse("M[ACDEFGHIKLMNPQRSTVWY]").allowed == ()       # every residue: no restriction at all
    assert parse("MKV__").allowed == () and not parse("MKV__").restricted


def test_spans_expand_to_the_chosen_lengths():
    s = spec("MK[2-4]GF[0-1]R")
    assert [(p.low, p.high, p.at) for p in s.spans] == [(2, 4, 3), (0, 1, 10)]
    assert s.length_range() == (7, 10)
    tpl = s.expand((3, 0))
    assert PROTEIN.decode(tpl.tokens) == "MK___GFR" and tpl.span_lengths == (3, 0)
    with pytest.raises(ValueError, match=r"span \[2-4\] at position 3 takes 2 to 4 positions; got 5"):
        s.expand((5, 0))
    with pytest.raises(ValueError, match=r"\[2-4\] at position 3 has a variable length"):
        s.fixed()
    assert spec("MK[3-3]G").expand((3,)).tokens == parse("MK___G").tokens
    assert parse("MK[0000003]G").tokens == parse("MK___G").tokens                # leading zeros are no length


def test_spec_writes_itself_back_in_the_syntax():
    assert spec(">x\nmk[kr]_[2-5]G[^ACDEFGHIKLMNPQSTVWY]").text(PROTEIN.residues) == "MK[KR]_[2-5]G[R]"
    assert spec("M[^wc][3]").text(PROTEIN.residues) == "M[^CW]___"


@pytest.mark.parametrize("text, message", [
    ("MK[KR", r"'\[' at position 3 is never closed"),
    ("MK]R", r"'\]' at position 3 closes no '\['"),
    ("M[K[R]]", r"'\[' at position 2 is not closed before the next '\[' at position 4; brackets cannot nest"),
    ("MK[]G", r"empty bracket \[\] at position 3"),
    ("MK[ ]G", r"empty bracket \[\] at position 3"),
    ("MK[^]G", r"bracket \[\^\] at position 3 lists no residue after \^"),
    ("MK[5-2]G", r"bracket \[5-2\] at position 3: a span \[a-b\] needs a ≤ b, got 5 > 2"),
    ("MK[-1-3]G", r"bracket \[-1-3\] at position 3: span lengths cannot be negative"),
    ("MK[-2]G", r"span lengths cannot be negative"),
    ("MK[KB]G", r"bracket \[KB\] at position 3: 'B' is not a residue"),
    ("MK[3K]G", r"bracket \[3K\] at position 3: '3' is not a residue"),
    ("MK[2-]G", r"bracket \[2-\] at position 3 is not a count: write \[n\] .* or \[a-b\]"),
    ("MK[1.5]G", r"bracket \[1.5\] at position 3 is not a count"),
    ("MK[١٢]G", r"bracket \[١٢\] at position 3: '١' .* is not a residue"),        # Arabic-Indic digits are not a count
    ("MK[^ACDEFGHIKLMNPQRSTVWY]G", r"at position 3 excludes every residue"),
    ("MK[200]G", rf"bracket \[200\] at position 3 asks for up to 200 positions; the model's maximum is {MAX}"),
    ("MK[1-9999999999]G", rf"asks for more positions than the model's maximum of {MAX}"),
    ("MK[100]G[1-30]", (r"up to 133 positions long with the spans \[1-30\] at position 9 at their longest; "
                        rf"the model's maximum is {MAX}")),
    ("[0-3]", r"can be empty: with the span \[0-3\] at position 1 at its shortest"),
    ("[0]", "empty"),
    (">h\nMK[KR", r"'\[' at position 6 \(line 2, column 3\) is never closed"),
])
def test_malformed_brackets_name_the_position_and_what_is_allowed(text, message):
    with pytest.raises(ValueError, match=message) as e:
        spec(text)
    if "bracket" in str(e.value) and "position" in message:
        assert "[" in str(e.value)


def test_excluded_residues_apply_to_every_designed_position_only():
    s = spec("CM_[KC][2-3]", exclude="c")
    tpl = s.expand((2,))
    assert tpl.tokens[:2] == (PROTEIN.residues.index("C"), PROTEIN.residues.index("M"))   # given residues stay
    assert tpl.allowed == (None, None, ALL - ids("C"), ids("K"), ALL - ids("C"), ALL - ids("C"))
    assert PROTEIN.parse_template("MKV", MAX, exclude="C").allowed == ()
    with pytest.raises(ValueError, match=r"the bracket at position 3 allows only C, all of which are excluded \(CW\)"):
        spec("MK[C]", exclude="CW")
    with pytest.raises(ValueError, match="every residue of the alphabet"):
        spec("MK_", exclude=PROTEIN.residues)
    with pytest.raises(ValueError, match=r"excluded residues: 'B' at position 2 is not a residue"):
        spec("MK_", exclude="CB")


def test_look_alike_characters_are_named_with_their_code_point():
    with pytest.raises(ValueError, match=r"'А' \(U\+0410, CYRILLIC CAPITAL LETTER A\) at position 2"):
        parse("MАK")                     # Cyrillic A


def test_brackets_are_residues_in_an_alphabet_that_has_them():
    text = Alphabet.from_text(["a [b] c"])
    assert text.decode(text.parse_template("a [_] c", 20).tokens) == "a [_] c"


BRACKETY = st.text(alphabet="ACDKRWY_acx^[]-0123456789 \n>*", max_size=60)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(max_size=120), BRACKETY))
def test_any_text_parses_to_a_spec_or_raises_value_error_with_a_message(text):
    try:
        s = spec(text)
    except ValueError as e:
        assert str(e)
        return
    low, high = s.length_range()
    assert 1 <= low <= high <= MAX
    tpl = s.expand([sp.low for sp in s.spans])
    assert len(tpl) == low and all(0 <= t <= PROTEIN.mask_id for t in tpl.tokens)
    assert len(s.expand([sp.high for sp in s.spans])) == high
    assert spec(s.text(PROTEIN.residues)).expand([sp.low for sp in s.spans]).tokens == tpl.tokens


PIECES = st.one_of(
    st.sampled_from(list(PROTEIN.residues)).map(lambda c: (c, [c], None)),
    st.just(("_", ["_"], None)),
    st.integers(0, 4).map(lambda n: (f"[{n}]", ["_"] * n, None)),
    st.sets(st.sampled_from(list(PROTEIN.residues)), min_size=1, max_size=5).map(
        lambda s: (f"[{''.join(sorted(s))}]", ["_"], ids("".join(s)) if len(s) < PROTEIN.size else None)),
    st.sets(st.sampled_from(list(PROTEIN.residues)), min_size=1, max_size=5).map(
        lambda s: (f"[^{''.join(s).lower()}]", ["_"], ALL - ids("".join(s)))),
    st.tuples(st.integers(0, 3), st.integers(0, 3)).map(lambda ab: (f"[{min(ab)}-{max(ab)}]", "span", None)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(PIECES, min_size=1, max_size=12), st.randoms(use_true_random=False))
def test_composed_templates_expand_to_their_pieces(pieces, rnd):
    text = "M" + "".join(p[0] for p in pieces)
    s = spec(text)
    lengths = [rnd.randint(sp.low, sp.high) for sp in s.spans]
    chosen = iter(lengths)
    expected, allowed = "M", [None]
    for _, chars, restriction in pieces:
        if chars == "span":
            k = next(chosen)
            expected += "_" * k
            allowed += [None] * k
        else:
            expected += "".join(chars)
            allowed += [restriction] * len(chars)
    tpl = s.expand(lengths)
    assert PROTEIN.decode(tpl.tokens) == expected
    assert tpl.allowed == (tuple(allowed) if any(a is not None for a in allowed) else ())


# ---- the syntax examples of README.md and DESIGN.md parse to what their text says -------------------------
def test_the_documented_examples_parse_to_what_the_docs_say():
    assert spec("MKV[10]GF").fixed() == spec("MKV__________GF").fixed()
    s = spec("GKVQGVFFR[3-8]LQGP")
    assert [(p.low, p.high, p.at) for p in s.spans] == [(3, 8, 10)] and s.length_range() == (16, 21)
    assert s.text(PROTEIN.residues) == "GKVQGVFFR[3-8]LQGP"
    assert spec("MK[KR]G").fixed().allowed[2] == frozenset(PROTEIN.residues.index(c) for c in "KR")
    assert spec("M[^CP]___").fixed().allowed[1] == frozenset(range(20)) - {PROTEIN.residues.index(c) for c in "CP"}
    with pytest.raises(ValueError, match=r"^bracket \[9-2\] at position 3: a span \[a-b\] needs a ≤ b, got 9 > 2$"):
        spec("MK[9-2]GF")


# ---- a span written with a look-alike of '-' -------------------------------------------------------------
@pytest.mark.parametrize("text, shown, position", [
    ("MK[3–8]G", r"'–' \(U\+2013, EN DASH\)", 3),         # what a word processor or chat app makes of 3-8
    ("MK[3−8]G", r"'−' \(U\+2212, MINUS SIGN\)", 3),      # the minus sign the docs' maths uses
    ("MK[ 3 : 8 ]G", r"':'", 3),
    (">h\nM[2/5]", r"'/'", r"5 \(line 2, column 2\)"),
])
def test_a_span_with_another_separator_than_a_hyphen_names_the_separator_not_the_digit(text, shown, position):
    # before: "bracket [3–8] at position 3: '3' is not a residue" – the digit blamed, the dash not named
    with pytest.raises(ValueError, match=rf"at position {position}: {shown} cannot separate a span's lengths; "
                                         r"write \[\d-\d\] with one ASCII hyphen") as e:
        spec(text)
    assert "is not a residue" not in str(e.value)


def test_a_bracket_of_a_digit_and_residues_still_names_the_digit():
    with pytest.raises(ValueError, match=r"bracket \[2T5\] at position 2: '2' is not a residue"):
        spec("M[2T5]")                                    # T is a residue: not a separator


def test_a_space_between_two_digits_in_a_bracket_is_refused_not_read_as_one_number():
    """[3 4] was read as [34]: 34 designed positions where the user most likely meant a span of 3 to 4."""
    with pytest.raises(ValueError, match=r"bracket \[3 4\] at position 3 has a space inside a number.*"
                                         r"e\.g\. \[34\] or \[3-4\]$"):
        spec("MK[3 4]L")
    with pytest.raises(ValueError, match=r"e\.g\. \[125\]$"):           # no [12-5] offered: a > b
        spec("MK[12\t5]L")
    assert spec("MK[ 3 - 4 ]L").length_range() == (6, 7)                  # spaces elsewhere are still fine
    assert spec("MK[K R]L").fixed() == spec("MK[KR]L").fixed()
    assert spec("MK[1\n0]L").length_range() == (13, 13)                   # a line wrapped inside a count


# ---- too long whatever the spans take ------------------------------------------------------------------
@pytest.mark.parametrize("text, shortest, where", [
    ("[100][30-40]", 130, r"\[30-40\] at position 6"),
    ("A" * 129 + "[0-3]", 129, r"\[0-3\] at position 130"),
])
def test_a_template_too_long_even_at_its_shortest_says_so(text, shortest, where):
    # before: "template is up to 140 positions long with the spans … at their longest", as if shorter
    # maxima would help
    with pytest.raises(ValueError, match=rf"^template has at least {shortest} positions, even with the spans {where} "
                                         rf"at their shortest; the model's maximum is {MAX}$"):
        spec(text)


def test_a_template_that_fits_at_its_shortest_is_refused_for_its_longest():
    with pytest.raises(ValueError, match=r"^template is up to 130 positions long with the spans \[60-64\] at position "
                                         r"2, \[60-64\] at position 10 at their longest; the model's maximum is 128$"):
        spec("M[60-64]G[60-64]")


def test_a_length_refusal_names_a_few_spans_and_counts_the_rest():
    """A pasted page of spans was refused with every span listed: half a megabyte on the command line."""
    with pytest.raises(ValueError) as e:
        PROTEIN.parse_spec("[3-8]" * 100_000, 128)
    message = str(e.value)
    assert len(message) < 300 and "[3-8] at position 21 and 99,995 more at their shortest" in message
    with pytest.raises(ValueError, match=r"spans \[3-8\] at position 1, \[3-8\] at position 6 at their longest"):
        PROTEIN.parse_spec("[3-8][3-8]" + "A" * 120, 128)


# ---- a pasted multi-FASTA whose header lines are indented ----------------------------------------------
@pytest.mark.parametrize("text", [
    "  >a\n  MKV__\n  >b\n  GGGG\n",
    ">a\nMKV__\n\t>b\nGGGG\n",
    ">a\r\nMKV__\r\n >b\r\nGGGG\r\n",
])
def test_an_indented_second_header_starts_a_second_record_as_the_first_header_may_be_indented(text):
    # before: "invalid character '>' at position …" although the first header was indented as well
    tpl = spec(text).fixed()
    assert PROTEIN.decode(tpl.tokens) == "MKV__"
    assert tpl.notices == ("the input holds 2 FASTA records; using the first one only",)


def test_an_indented_header_right_after_the_first_is_two_headers_in_a_row():
    with pytest.raises(ValueError, match="two FASTA header lines in a row and no sequence"):
        spec(">a\n   >b\nMKV")
    with pytest.raises(ValueError, match=r"invalid character '>' at position 3"):
        spec("MK>V")                                       # a '>' inside a line is still no header


@pytest.mark.parametrize("digit", ["²", "①", "٣"])
def test_a_digit_other_than_0_to_9_is_refused_not_dropped(digit):
    with pytest.raises(ValueError, match=f"invalid character '{digit}'"):
        PROTEIN.parse_spec(f"MK{digit}GF", 128)
    assert PROTEIN.parse_spec("MK12GF", 128).fixed().tokens == PROTEIN.parse_spec("MKGF", 128).fixed().tokens


@pytest.mark.parametrize("text", ["Cys", "CYS", "met", "C, Tyr", "cysteine", "Glycines", "C and M", "aspartic",
                                  "trps", "CYSS"])
def test_a_three_letter_code_or_a_name_in_the_excluded_residues_is_refused(text):
    """'cysteine' barred C, E, I, N, S, T and Y without a word; 'C and M' barred A, N and D too."""
    with pytest.raises(ValueError, match="one-letter codes: .* would read as"):
        PROTEIN.residue_ids(text)
    assert sorted(PROTEIN.residue_ids("C Y S")) == sorted(PROTEIN.residue_ids("CYS".replace("", " ")))
    assert PROTEIN.residue_ids("AND") == PROTEIN.residue_ids("A N D")      # one word of letters: the letters


def test_a_template_in_three_letter_codes_is_refused_with_its_one_letter_text():
    """'Met Lys Val Gly Phe ___ Arg' was the 21-position template METLYSVALGLYPHE___ARG."""
    with pytest.raises(ValueError, match=re.escape("template is written in three-letter codes (Met Lys Val Gly …); "
                                                   "write one-letter codes: MKVGF___R")):
        PROTEIN.parse_spec("Met Lys Val Gly Phe ___ Arg", 128)
    with pytest.raises(ValueError, match="write one-letter codes: MKEL"):
        PROTEIN.parse_spec(">x\nMET LYS GLU LEU", 128)
    assert len(PROTEIN.parse_spec("MET LYS", 128).parts) == 6          # two words may be one-letter text
    assert len(PROTEIN.parse_spec("MKV GLY ALA", 128).parts) == 9      # not all codes: one-letter text in groups
    for text, one in [("SEQRES   1 A   10  MET LYS VAL GLY ALA SER THR TRP HIS ILE", "MKVGASTWHI"),  # a PDB line
                      ("MetLysValGlySer", "MKVGS"), ("Met x Lys Val", "MxKV"), ("Met [3] Lys Val", "M[3]KV")]:
        with pytest.raises(ValueError, match=re.escape(f"write one-letter codes: {one}")):
            PROTEIN.parse_spec(text, 128)
    genbank = "1 mkvlaagfsl lgvaagssmk\n21 vlaagfslmk"                 # blocks of ten, lower case
    assert len(PROTEIN.parse_spec(genbank, 128).parts) == 30


@pytest.mark.parametrize("bracket, one", [("[^cysteine]", "[^C]"), ("[^Cys]", "[^C]"), ("[His]", "[H]")])
def test_a_bracket_listing_a_residue_name_or_code_is_refused(bracket, one):
    """'MK[^cysteine]V' barred C, E, I, N, S, T and Y at that position."""
    with pytest.raises(ValueError, match=re.escape(f"a bracket lists one-letter codes; write {one}")):
        PROTEIN.parse_spec(f"MK{bracket}V", 128)
    assert PROTEIN.parse_spec("MK[CYS]V", 128).parts[2].allowed == PROTEIN.residue_ids("C Y S")   # capitals: letters


@pytest.mark.parametrize("bracket, note", [
    ("[CYS]", "lists the residues C, Y and S, not Cys; for Cys, write C"),
    ("[ala]", "lists the residues A and L, not Ala; for Ala, write A"),
    ("[^his]", "bars the residues H, I and S, not His alone; to bar His, write [^H]")])
def test_a_bracket_spelling_a_code_in_one_case_is_its_letters_with_a_note_saying_so(bracket, note):
    """'M[CYS]__' (a SEQRES line's cysteine) drew S or Y there without a word."""
    spec = PROTEIN.parse_spec(f"MK{bracket}V__", 128)
    assert spec.notices == (f"{bracket} at position 3 {note}",)
    for plainly_letters in ("[KRH]", "[C Y S]", "[cYs]"):                 # not a code, spaced, mixed case
        assert PROTEIN.parse_spec(f"MK{plainly_letters}V__", 128).notices == ()
    iupac = Alphabet("ACGTSY", mask_chars="_")                            # DNA with two ambiguity codes
    assert iupac.parse_spec("A[CYS]G_", 128).notices == ()                # a code only in a protein alphabet


def test_a_text_models_words_are_its_residues_not_three_letter_codes():
    """An alphabet of both cases (a text model) has 'his' as three residues, and 'and' as a word."""
    text = Alphabet.from_text([string.ascii_letters + " .,"])
    assert len(text.parse_spec("his ser thr", 128).parts) == 11
    assert text.residue_ids("x and y") == text.residue_ids("xandy")
    assert text.residue_ids(" ") == {text.encode(" ")[0]} and text.residue_ids(", ") == set(text.encode(", "))
    assert text.residue_ids("x, y") == set(text.encode("xy"))       # with residues around them: separators
    upper = Alphabet(" ,." + string.ascii_uppercase, mask_chars="_")     # upper-case English: 20 letters and more
    assert len(upper.parse_spec("WE MET HIS PRO ___", 128).parts) == 18 and upper.residue_ids("HIS")
    dna = Alphabet("ACGT", mask_chars="_")
    [notice] = dna.parse_spec("ACGT", 128).notices
    assert "(mark positions with _ or a bracket such as [3])" in notice       # its own marks, not the protein's


@pytest.mark.parametrize("text, where", [
    (">sp|P07311|ACYP1\nMAEGDTLISVDYEIFGKVQGV\nFFRKHTQAEGKKLGLVGWVQNB", "61 (line 3, column 22)"),   # a pasted FASTA
    ("MKV\n\nA!", "7 (line 3, column 2)"),                                                    # a blank line counts
    ("MKVA!\n", "5"),                                        # one line and a trailing newline: the number alone
])
def test_an_error_in_a_text_of_several_lines_gives_its_line_and_column(text, where):
    """"position 143" in a pasted FASTA sent users counting characters across wrapped lines."""
    with pytest.raises(ValueError, match=rf"invalid character '[B!]' at position {re.escape(where)};"):
        spec(text)


def test_a_position_is_the_plain_number_wherever_it_is_kept():
    at = spec("MK\nA[2-4]V").spans[0].at
    assert str(at) == "5 (line 2, column 2)" and at == 5 and at + 1 == 6 and f"{at:03d}" == "005"
    assert json.dumps({"at": at}) == '{"at": 5}'
    for kept in (copy.deepcopy(at), pickle.loads(pickle.dumps(at))):
        assert (kept, kept.line, kept.column) == (5, 2, 2)


# ---- the FASTA rules a template shares with every FASTA reader -----------------------------------------
def test_a_comment_line_in_a_template_is_skipped_as_every_fasta_reader_skips_it():
    # sedd.score read ';note' lines as comments while sedd.sample and the Generate tab refused the ';'
    assert parse(";designed loop\n>acyp\n; keep the motif\nMK__G").tokens == parse("MK__G").tokens
    with pytest.raises(ValueError, match=r"invalid character '!' at position 12 \(line 2, column 4\)"):
        parse(";a note\nMK_!")                           # positions still count from the text's start
    with pytest.raises(ValueError, match=r"invalid character ';' at position 3"):
        parse("MK;_")                                    # a ';' that starts no line is no comment


def test_a_residue_of_a_custom_alphabet_is_never_read_as_fasta_syntax():
    glyphs = Alphabet.from_text(["ab*>;c"])
    assert glyphs.decode(glyphs.parse_template("ab*", 10).tokens) == "ab*"      # not a stop
    assert glyphs.decode(glyphs.parse_template(">ab", 10).tokens) == ">ab"      # not a header
    assert glyphs.decode(glyphs.parse_template(";c", 10).tokens) == ";c"        # not a comment
    assert glyphs.allowed_text().endswith("; whitespace and digits are ignored")
    assert PROTEIN.allowed_text().endswith("one FASTA header line, comment lines (starting with ;) and a trailing * "
                                           "are ignored")


@pytest.mark.parametrize("text, separator", [("MK[3-+5]", "'-+'"), ("MK[3––5]", "'––'")])
def test_two_characters_between_a_spans_lengths_are_named_as_more_than_one_separator(text, separator):
    # before: "'-' cannot separate a span's lengths; write [3-5] with an ASCII hyphen '-'": the fix named as the fault
    with pytest.raises(ValueError, match=rf"{re.escape(separator)} is more than one separator; write \[3-5\] with one ASCII hyphen"):
        parse(text)


@pytest.mark.parametrize("control", ["\x1c", "\x1f", "\x85"])
def test_a_control_character_python_calls_whitespace_is_refused_as_invisible(control):
    # str.isspace() is True for the information separators and NEL: they were skipped as if blank
    for text, position in ((f"MK{control}A_", 3), (f"MK[3{control}]", 5), (f"{control}>h\nMK_", 1),
                           (f"{control};c\nMK_", 1)):      # nor is it a blank before a header or a comment
        with pytest.raises(ValueError, match=rf"invalid character .*U\+{ord(control):04X}.*invisible: delete it.* "
                                             rf"at position {position}"):
            parse(text)
    with pytest.raises(ValueError, match=r"U\+.*is not a residue"):
        PROTEIN.residue_ids(f"C{control}M")
    assert parse("MK\u2028A\u00a0_").tokens == parse("MKA_").tokens          # real blanks still are


@pytest.mark.parametrize("inner", ["x" * 99_990, "9" * 50_000, "K-" * 30_000, "3 " + "4" * 40_000])
def test_a_refused_bracket_is_named_by_its_start_not_echoed_whole(inner):
    """Each refusal of 'M[xxxx…]' (100 kB) wrote the bracket whole into the error and the studio's log:
    1 MB/s of log from one client."""
    for full in (False, True):
        with pytest.raises(ValueError) as e:
            PROTEIN.parse_spec(f"M[{inner}]", 128, full=full)
        assert len(str(e.value)) < 600 and f"({len(inner):,} characters inside)" in str(e.value)
