"""The studio's API as a demanding user drives it: odd inputs get a clear refusal at the right input,
a long value is named by its start and length rather than echoed, text is capped before it is read on
the event loop, outputs agree with what the API says of them, and downloads survive a busy server."""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import pytest
import requests
from gradio_client import Client
from studio_helpers import download_kinds, fasta_sequences, raw_call, refused_inputs

import app
from sedd import cli, studio

TEMPLATE = "MKV__GF_R____LLAGW__KDE"
SHORT_TEMPLATE = "MKV__GF_R"
TABLE_SCORE = app.TABLE_HEADERS.index("model score (nats/res)")
# a raw call's inputs, in order (template … top_p, stop_epoch; particles may follow)
RAW = [TEMPLATE, 1, 16, 0, 1.0, "off", "", "sample", "tau-leaping", 1.0, 0]
SHORT_RAW = [SHORT_TEMPLATE] + RAW[1:]
SEED_RANGE = "seed must be a whole number from 0 to 2147483647, or blank for a random seed"
SPANS = "[3-8]" * 19_998          # a pasted page of brackets, just under the 100,000 characters read


def refusal(model, **changes) -> studio.RequestError:
    request = {**dict(template=SHORT_TEMPLATE, num_samples=1, steps=16, temperature=1.0, seed=1), **changes}
    with pytest.raises(studio.RequestError) as e:
        studio.check_request(model, **request)
    return e.value


@pytest.mark.parametrize("temperature, got", [("1,5", "got '1,5'"), ("warm", "got 'warm'")])
def test_a_temperature_that_is_not_a_number_is_named_as_sent(client, temperature, got):
    """Not "got nan", a value the user never typed."""
    with pytest.raises(Exception) as e:
        client.predict(TEMPLATE, 1, 16, 1, temperature, api_name="/generate")
    assert f"temperature must be a number from 0.1 to 2.0; {got}" in str(e.value)
    assert "nan" not in str(e.value)


def test_a_json_null_for_an_optional_input_means_its_default(served):
    """null meant the default for exclude and stop_epoch but was refused for temperature, fold,
    sampler, top-p, …: a JSON client could not tell which null means "the default". Every optional
    input null at once runs as the call that leaves them out."""
    left_out = raw_call(served, [SHORT_TEMPLATE, 2, 16, 3])
    nulls = raw_call(served, [SHORT_TEMPLATE, 2, 16, 3] + [None] * 8)
    assert nulls[0] == left_out[0] and len(fasta_sequences(nulls[0])) == 2


@pytest.mark.parametrize("index, field, message", [
    (1, "num_samples", "number of designs must be a whole number, 1 to 8; got True"),
    (4, "temperature", "temperature must be a number from 0.1 to 2.0; got True"),
    (9, "top_p", "top-p must be a number from 0.05 to 1 (1 = off); got True"),
    (11, "particles", "particles per design must be a whole number, 1 to 64; got True"),
])
def test_a_json_true_is_not_the_number_one(served, index, field, message):
    """An argument in the wrong place (a flag where a count goes) is refused, as the seed refuses it,
    not run as one design, temperature 1 or one particle."""
    data = RAW + [1]
    data[index] = True
    r = requests.post(f"{served}gradio_api/call/generate", json={"data": data}, timeout=30)
    [(refused_field, reason)] = refused_inputs(r)
    assert refused_field == field and message in reason


@pytest.mark.parametrize("value, message", [
    (123, "template must be text, got int"),          # was "template is empty": Gradio's Textbox sent str()
    (True, "template must be text, got bool"),        # was "invalid character 'u' at position 3"
    (["MK_"], "template must be text, got list"),
])
def test_a_template_that_is_not_text_is_named_as_such_not_read_as_its_str(served, value, message):
    data = list(RAW)
    data[0] = value
    r = requests.post(f"{served}gradio_api/call/generate", json={"data": data}, timeout=30)
    assert refused_inputs(r) == [("template", message)]


@pytest.mark.parametrize("value, message", [(42, "the sequence must be text, got int 42"),
                                            (True, "the sequence must be text, got bool True")])
def test_a_sequence_to_score_that_is_not_text_is_named_as_such(served, value, message):
    r = requests.post(f"{served}gradio_api/call/score", json={"data": [value]}, timeout=30)
    assert refused_inputs(r) == [("sequence", message)]


def test_excluding_every_residue_is_refused_at_the_exclude_input(served):
    """The exclusion is at fault, whatever the template: the page shows the reason under Exclude residues."""
    data = list(RAW)
    data[6] = "acdefghiklmnpqrstvwy"
    r = requests.post(f"{served}gradio_api/call/generate", json={"data": data}, timeout=30)
    [(field, reason)] = refused_inputs(r)
    assert field == "exclude" and "every residue of the alphabet" in reason


def test_a_run_folder_removed_by_another_prune_does_not_lose_this_runs_downloads(model, tmp_path, monkeypatch):
    """Two runs end at once: the other run's prune removes an old folder after this one listed it."""
    out = tmp_path / "out"
    cb = app.StudioCallbacks(model, {"off": None}, min_interval=0.0, output_root=out, max_output_bytes=1)
    list(cb.generate(TEMPLATE, 1, 16, 1))                  # an earlier run's folder
    [earlier] = list(out.iterdir())
    listed = Path.iterdir

    def listed_then_removed(self):
        entries = list(listed(self))
        if self == out:
            shutil.rmtree(earlier)                          # the concurrent prune, right after the listing
        return iter(entries)

    monkeypatch.setattr(Path, "iterdir", listed_then_removed)
    *_, final = cb.generate(TEMPLATE, 2, 16, 2)
    assert download_kinds(final[7]) == ["designs.fasta", "settings.json", "trajectory.json"]
    assert all(Path(f).is_file() for f in final[7])


def test_the_api_says_in_what_order_the_fasta_comes(client):
    """The FASTA is in drawing order (the CLI's, which settings.json reproduces); the table ranks."""
    doc = " ".join(app.StudioCallbacks.generate.__doc__.split())
    assert "the FASTA text of the designs in the order they were drawn" in doc
    assert "FASTA text of the designs, ranked" not in doc
    final = client.predict(TEMPLATE, 4, 16, 5, api_name="/generate")
    names = [line[1:] for line in final[0].splitlines() if line.startswith(">")]
    assert names == ["design_1", "design_2", "design_3", "design_4"]
    table = final[4]["data"]
    by_name = {row[1]: row[-1] for row in table}
    assert [by_name[n] for n in names] == fasta_sequences(final[0])
    scores = [row[TABLE_SCORE] for row in table]
    assert scores == sorted(scores)                          # ranked by model score, lower first


# ---- a choice, a count or a seed of the wrong kind -----------------------------------------------------
@pytest.mark.parametrize("index, field, message", [
    (5, "fold", "folding backend must be one of ESMFold (local), ESM Atlas API, off; got 'ESMFold'"),
    (7, "span_lengths", "span lengths must be chosen by one of sample, map; got 'longest'"),
])
def test_an_unknown_choice_is_refused_with_the_choices_named(served, index, field, message):
    """A misspelt backend or span mode was a bare "400 Bad Request" naming nothing."""
    data = list(SHORT_RAW)
    data[index] = message.rsplit("'", 2)[1]
    r = requests.post(f"{served}gradio_api/call/generate", json={"data": data}, timeout=30)
    [(refused_field, reason)] = refused_inputs(r)
    assert refused_field == field and reason == message


def test_a_negative_stop_count_from_the_api_still_designs(served):
    """``stop_epoch`` is the page's count of Stop presses: below 0 it ended the run before it began,
    and the client crashed on the "Stopped" frame."""
    fasta = Client(served, verbose=False).predict(SHORT_TEMPLATE, 1, 16, 3, stop_epoch=-5, api_name="/generate")[0]
    assert fasta.startswith(">design_1\nMKV") and "_" not in fasta.splitlines()[1]


@pytest.mark.parametrize("value", ["abc", 1.5, True, [], {"n": 1}])
def test_a_stop_epoch_that_is_no_count_is_refused_naming_it(served, value):
    """Gradio's Number answered HTTP 400 "Could not preprocess input component at index 10", naming
    no parameter, for "abc"; 1.5 was rounded and true counted as 1."""
    data = RAW + [1]
    data[10] = value
    r = requests.post(f"{served}gradio_api/call/generate", json={"data": data}, timeout=30)
    [(field, reason)] = refused_inputs(r)
    assert field == "stop_epoch"
    assert reason == f"stop_epoch must be a whole number, the page's count of Stop presses (API callers leave it " \
                     f"at 0); got {value!r}"


@pytest.mark.parametrize("value, count", [(0, 0), (3, 3), ("2", 2), (4.0, 4), (None, 0), (-5, 0)])
def test_a_stop_epoch_that_is_a_count_is_read_as_one(value, count):
    assert studio.checked_stop_epoch(value) == count


@pytest.mark.parametrize("text, position", [(">hdr\nMAKB", r"9 \(line 2, column 4\)"), ("MAK\nB", r"5 \(line 2, column 1\)"),
                                            ("  >x y\nMA KB", r"12 \(line 2, column 5\)")])
def test_a_bad_residue_has_the_same_position_in_the_score_tab_as_in_a_template(model, text, position):
    """Score counted positions from the end of the header line, Generate from the start of the text:
    ">hdr\\nMAKB" was position 4 in one and 9 in the other."""
    with pytest.raises(ValueError, match=rf"^invalid character 'B' at position {position};"):
        model.alphabet.parse_spec(text + "_", model.max_len)
    with pytest.raises(ValueError, match=rf"^invalid character 'B' at position {position};"):
        studio.check_score_request(model, text)
    assert studio.check_score_request(model, ">hdr name\nMAK")[0] == "hdr"


def test_a_seed_of_thousands_of_digits_is_refused_as_a_seed(model):
    """It said "Exceeds the limit (4300 digits) for integer string conversion …; use
    sys.set_int_max_str_digits() to increase the limit": Python's words, not the seed's range."""
    e = refusal(model, seed="9" * 5000)
    assert e.field == "seed" and str(e).startswith(f"{SEED_RANGE}; got '999")
    assert "5,002 characters" in str(e) and "int" not in str(e)
    assert studio.checked_seed("0" * 5000 + "7") == 7          # leading zeros are still that seed


# ---- refusals name a long value, they do not echo it -----------------------------------------------------
@pytest.mark.parametrize("changes, field, start", [
    ({"steps": "9" * 5000}, "steps", "steps must be a whole number, 16 to 1024; got '999"),
    ({"steps": 10**200}, "steps", "steps must be 16 to 1024; got 1000"),
    ({"seed": 10**200}, "seed", f"{SEED_RANGE}; got 1000"),
    ({"temperature": "x" * 5000}, "temperature", "temperature must be a number from 0.1 to 2.0; got 'xxx"),
    ({"sampler": "x" * 10_000}, "sampler", "sampler must be one of tau-leaping, confidence, remask; got 'xxx"),
    ({"fold": "x" * 10_000}, "fold", "folding backend must be one of"),
    ({"exclude": ["C"] * 10_000}, "exclude", "excluded residues must be text such as 'C' or 'CM'; got ['C'"),
])
def test_a_long_value_is_named_by_its_start_and_length_not_echoed(model, changes, field, start):
    """A 5,000-character paste came back whole in the message under the input, and in the log line."""
    e = refusal(model, **changes)
    assert e.field == field and str(e).startswith(start)
    assert len(str(e)) < 200 and "characters)" in str(e)


def test_a_refusal_of_a_paste_of_spans_names_a_few_and_counts_the_rest(model):
    """The refusal listed all 19,998 spans: 497,831 characters, a box 166,000 pixels tall under the
    template (measured in Chromium) and a half-megabyte log line."""
    e = refusal(model, template=SPANS)
    assert e.field == "template" and len(str(e)) < 700
    assert str(e).startswith("template has at least 59994 positions, even with the spans [3-8] at position 1,")
    assert str(e).endswith("and 19,993 more at their shortest; the model's maximum is 128")
    with pytest.raises(ValueError) as scored:
        studio.check_score_request(model, SPANS)
    assert len(str(scored.value)) < 700 and "the bracket [3-8] at position 1 stands for designed" in str(scored.value)


def test_the_page_and_the_log_get_the_short_refusal(served, caplog):
    """Through the validator, as the page and an API client see it."""
    data = SHORT_RAW + [1]
    data[0] = SPANS
    with caplog.at_level("WARNING", logger="sedd.studio"):
        r = requests.post(f"{served}gradio_api/call/generate", json={"data": data}, timeout=60)
    [(field, reason)] = refused_inputs(r)
    assert field == "template" and len(reason) < 700 and reason.endswith("the model's maximum is 128")
    assert all(len(record.getMessage()) < 800 for record in caplog.records)
    r = requests.post(f"{served}gradio_api/call/score", json={"data": [SPANS]}, timeout=60)
    [(field, reason)] = refused_inputs(r)
    assert field == "sequence" and len(reason) < 700


# ---- text read on the event loop is capped before it is read ----------------------------------------------
@pytest.mark.parametrize("check", [
    lambda model, text: studio.check_request(model, text, 1, 16, 1.0, 1),
    lambda model, text: studio.check_score_request(model, text),
])
def test_a_huge_paste_is_refused_before_it_is_parsed(model, check, monkeypatch):
    """A megabyte of text took seconds to parse inside the validator, which runs on the server's event
    loop (every page froze meanwhile) and an API client timed out instead of reading the reason."""
    monkeypatch.setattr(type(model.alphabet), "parse_spec", lambda *_, **__: pytest.fail("the text was parsed"))
    with pytest.raises(ValueError, match="is 1,000,003 characters long; at most 100,000 are read"):
        check(model, ">x\n" + "A" * 1_000_000)


def test_a_huge_exclude_is_refused_before_it_is_read(model, monkeypatch):
    """Ten megabytes of excluded residues took over a second to read inside the validator, which runs
    on the server's event loop: every page froze meanwhile (the template is capped for that reason)."""
    monkeypatch.setattr(type(model.alphabet), "residue_ids", lambda *_, **__: pytest.fail("the exclusion was read"))
    e = refusal(model, exclude="C" * 1_000_000)
    assert e.field == "exclude"
    assert str(e) == "excluded residues are 1,000,000 characters long; at most 100,000 are read (each residue " \
                     "once is enough, such as 'C' or 'CM')"


def test_a_refused_exclude_is_shown_at_the_exclude_input(model, tmp_path):
    cb = app.StudioCallbacks(model, {"off": None}, min_interval=0.0, output_root=tmp_path)
    with pytest.raises(studio.RequestError) as e:
        cb.check(SHORT_TEMPLATE, exclude=" " * 200_000)
    assert e.value.field == "exclude" and "200,000 characters long" in str(e.value)


@pytest.mark.parametrize("text", ["1e2", "3.0", "0x20", "٣٢", "1_000", "32 steps"])
def test_one_rule_reads_a_count_for_the_seed_every_count_and_the_command_line(model, text):
    """"1e2" ran as 100 steps while the same text was refused as a seed and by the CLI's --steps."""
    for field, what in [("steps", "steps"), ("num_samples", "number of designs"), ("seed", "seed")]:
        assert f"{what} must be a whole number" in str(refusal(model, **{field: text}))
    with pytest.raises(argparse.ArgumentTypeError):
        cli.STEPS(text)


@pytest.mark.parametrize("text", [" 32 ", "+32", "032", np.int64(32), np.float32(32.0)])
def test_a_count_typed_with_spaces_a_sign_or_leading_zeros_is_read(model, text):
    """And a NumPy number from a Python caller, as the plain one it equals."""
    assert studio.check_request(model, SHORT_TEMPLATE, 1, text, 1.0, text)[1].steps == 32
    assert studio.checked_seed(text) == 32
    assert isinstance(text, np.generic) or cli.STEPS(text) == 32           # the CLI reads text only
