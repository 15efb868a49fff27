"""A demanding user's fourth review of the studio: what a refusal echoes back, and how long it may be."""
from __future__ import annotations

import pytest
import requests
from studio_helpers import refused_inputs

import app
from sedd import studio

TEMPLATE = "MKV__GF_R"
# every input of the raw ``generate`` call, in order (template … top_p, stop_epoch, particles)
DATA = [TEMPLATE, 1, 16, 0, 1.0, "off", "", "sample", "tau-leaping", 1.0, 0, 1]
SEED_RANGE = "seed must be a whole number from 0 to 2147483647, or blank for a random seed"
SPANS = "[3-8]" * 19_998          # a pasted page of brackets, just under the 100,000 characters read


def refusal(model, **changes) -> studio.RequestError:
    request = {**dict(template=TEMPLATE, num_samples=1, steps=16, temperature=1.0, seed=1), **changes}
    with pytest.raises(studio.RequestError) as e:
        studio.check_request(model, **request)
    return e.value


# ---- a seed pasted with thousands of digits --------------------------------------------------------------
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


# ---- a template or sequence whose refusal lists thousands of brackets -----------------------------------
def test_a_refusal_of_a_paste_of_spans_names_a_few_and_counts_the_rest(model):
    """The refusal listed all 19,998 spans: 497,831 characters, a box 166,000 pixels tall under the
    template (measured in Chromium) and a half-megabyte log line."""
    e = refusal(model, template=SPANS)
    assert e.field == "template" and len(str(e)) < 700
    assert str(e).startswith("template has at least 59994 positions, even with the spans [3-8] at position 1,")
    assert str(e).endswith("and 19,993 more at their shortest; the model's maximum is 128")
    with pytest.raises(ValueError) as scored:
        studio.check_score_request(model, SPANS)
    assert len(str(scored.value)) < 700 and str(scored.value).endswith("the model's maximum is 128")


def test_the_page_and_the_log_get_the_short_refusal(served, caplog):
    """Through the validator, as the page and an API client see it."""
    data = list(DATA)
    data[0] = SPANS
    with caplog.at_level("WARNING", logger="sedd.studio"):
        r = requests.post(f"{served}gradio_api/call/generate", json={"data": data}, timeout=60)
    [(field, reason)] = refused_inputs(r)
    assert field == "template" and len(reason) < 700 and reason.endswith("the model's maximum is 128")
    assert all(len(record.getMessage()) < 800 for record in caplog.records)
    r = requests.post(f"{served}gradio_api/call/score", json={"data": [SPANS]}, timeout=60)
    [(field, reason)] = refused_inputs(r)
    assert field == "sequence" and len(reason) < 700


# ---- excluded residues: read on the event loop, so capped like the template -----------------------------
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
        cb.check(TEMPLATE, exclude=" " * 200_000)
    assert e.value.field == "exclude" and "200,000 characters long" in str(e.value)
