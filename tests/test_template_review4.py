"""The template language and design planning as a demanding user meets them: a span typed with an en
dash or a minus sign, a template too long whatever its spans take, an indented multi-FASTA, and
num_samples / seed values that are not whole numbers in range; plus the syntax examples of the docs."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sedd import checkpoint, design
from sedd.alphabet import PROTEIN

MAX = 128
ACYP = Path(__file__).resolve().parents[1] / "checkpoints" / "acyp"


def spec(text, max_len=MAX, exclude=""):
    return PROTEIN.parse_spec(text, max_len, exclude)


@pytest.fixture(scope="module")
def acyp():
    torch.set_num_threads(1)
    return checkpoint.load(str(ACYP))


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
    (">h\nM[2/5]", r"'/'", 5),
])
def test_a_span_with_another_separator_than_a_hyphen_names_the_separator_not_the_digit(text, shown, position):
    # before: "bracket [3–8] at position 3: '3' is not a residue" – the digit blamed, the dash not named
    with pytest.raises(ValueError, match=rf"at position {position}: {shown} cannot separate a span's lengths; "
                                         r"write \[\d-\d\] with an ASCII hyphen") as e:
        spec(text)
    assert "is not a residue" not in str(e.value)


def test_a_bracket_of_a_digit_and_residues_still_names_the_digit():
    with pytest.raises(ValueError, match=r"bracket \[2T5\] at position 2: '2' is not a residue"):
        spec("M[2T5]")                                    # T is a residue: not a separator


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


# ---- design planning: num_samples and seed -------------------------------------------------------------
@pytest.mark.parametrize("num_samples", [2.5, "3", True, 0, -1, float("nan"), None])
def test_plan_designs_refuses_a_num_samples_that_is_not_a_whole_number_above_0(acyp, num_samples):
    # before: 2.5 and "3" were TypeErrors from inside list arithmetic, True one design
    for what in ({"template": "MK__"}, {"length": 5}, {"length": "auto"}):
        with pytest.raises(ValueError, match=rf"num_samples must be a whole number, at least 1; got {num_samples!r}"):
            design.plan_designs(acyp, num_samples=num_samples, **what)


@pytest.mark.parametrize("seed", [-1, 2**63, 2**64, 1.5, True, "3"])
def test_plan_designs_refuses_a_bad_seed_before_choosing_span_lengths(acyp, seed, monkeypatch):
    # before: 2**64 failed inside torch ("Overflow when unpacking long long"), 1.5 chose span lengths with
    # seed 1 (the sampler refused it only after the posterior's minutes), -1 drew lengths without complaint
    scored = []
    monkeypatch.setattr(design, "span_posterior", lambda *a, **k: scored.append(k))
    for what in ({"template": "MK[1-3]G"}, {"length": "auto"}, {"length": 5, "num_samples": 2}):
        with pytest.raises(ValueError, match=rf"seed must be a whole number between 0 and 2\*\*63 - 1, got {seed!r}"):
            design.plan_designs(acyp, seed=seed, **what)
    with pytest.raises(ValueError, match="seed must be a whole number"):
        design.plan_for_spec(acyp, spec("MK[1-3]G"), 2, seed=seed)
    assert scored == []


def test_a_whole_float_seed_and_num_samples_plan_as_their_ints(acyp):
    # before: length auto with seed 3.0 was a RuntimeError from torch's manual_seed
    as_float = design.plan_designs(acyp, length="auto", num_samples=4.0, seed=3.0)
    as_int = design.plan_designs(acyp, length="auto", num_samples=4, seed=3)
    assert [len(t) for t in as_float.templates] == [len(t) for t in as_int.templates]
    assert len(as_int.templates) == 4
    spans = design.plan_designs(acyp, template="MK[0-2]GF", num_samples=3.0, seed=5.0, t_samples=2)
    assert spans.span_lengths == design.plan_designs(acyp, template="MK[0-2]GF", num_samples=3, seed=5,
                                                     t_samples=2).span_lengths


def test_a_length_refusal_names_a_few_spans_and_counts_the_rest():
    """A pasted page of spans was refused with every span listed: half a megabyte on the command line."""
    with pytest.raises(ValueError) as e:
        PROTEIN.parse_spec("[3-8]" * 100_000, 128)
    message = str(e.value)
    assert len(message) < 300 and "[3-8] at position 21 and 99,995 more at their shortest" in message
    with pytest.raises(ValueError, match=r"spans \[3-8\] at position 1, \[3-8\] at position 6 at their longest"):
        PROTEIN.parse_spec("[3-8][3-8]" + "A" * 120, 128)


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
