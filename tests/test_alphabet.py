import pytest
from hypothesis import given, settings, strategies as st

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
