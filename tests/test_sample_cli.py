"""``python -m sedd.sample``: the CLI contract of DESIGN.md."""
import json
from pathlib import Path

import pytest
from conftest import run_main

from sedd.alphabet import PROTEIN
from sedd.sample import main
from sedd.spans import SPAN_T_SAMPLES


def test_fasta_output_keeps_every_given_residue(capsys, tiny_checkpoint):
    code, out, _ = run_main(capsys, main, "--checkpoint", tiny_checkpoint, "--template", "MKV__GF_R____",
                            "--num-samples", 4, "--seed", 1)
    assert code == 0
    lines = out.splitlines()
    assert [l for l in lines if l.startswith(">")] == [f">design_{i}" for i in range(1, 5)]
    for seq in lines[1::2]:
        assert len(seq) == 13 and PROTEIN.is_valid(seq)
        assert seq[:3] == "MKV" and seq[5:7] == "GF" and seq[8] == "R"


def test_json_fields_and_reproducibility(capsys, tiny_checkpoint):
    args = ["--checkpoint", tiny_checkpoint, "--length", 30, "--num-samples", 3, "--steps", 64, "--seed", 5, "--json"]
    code, out, _ = run_main(capsys, main, *args)
    first = json.loads(out)
    assert code == 0
    assert set(first) == {"sequences", "nfe_per_sample", "seconds", "steps", "seed", "checkpoint", "sampler", "top_p",
                          "command"}
    assert first["steps"] == 64 and first["seed"] == 5 and len(first["sequences"]) == 3
    assert 1 <= first["nfe_per_sample"] <= 31
    _, out, _ = run_main(capsys, main, *args)
    assert json.loads(out)["sequences"] == first["sequences"]
    _, out, _ = run_main(capsys, main, *args, "--no-cache")
    uncached = json.loads(out)
    assert uncached["nfe_per_sample"] == 64


def test_length_auto_draws_from_the_training_histogram(capsys, tiny_checkpoint):
    code, out, _ = run_main(capsys, main, "--checkpoint", tiny_checkpoint, "--length", "auto", "--num-samples", 12,
                            "--json")
    assert code == 0
    assert {len(s) for s in json.loads(out)["sequences"]} <= {40, 50}


def test_random_seed_is_reported(capsys, tiny_checkpoint):
    _, out, _ = run_main(capsys, main, "--checkpoint", tiny_checkpoint, "--length", 10, "--json", "--steps", 16)
    assert isinstance(json.loads(out)["seed"], int)


@pytest.mark.parametrize("args,message", [
    (["--template", "MKB__"], "'B' at position 3"),
    (["--template", ""], "empty"),
    (["--length", "0"], "argument --length: '0' is not a whole number of residues, 1 or more, or 'auto'"),
    (["--length", "ten"], "argument --length: 'ten' is not a whole number of residues, 1 or more, or 'auto'"),
    (["--length", "٣٢"], "argument --length: '٣٢' is not a whole number of residues"),
    (["--length", "-5"], "argument --length: '-5' is not a whole number of residues, 1 or more"),
    (["--length", "500"], "between 1 and 128"),
    (["--template", "M__", "--steps", "0"], "argument --steps: '0' is not a whole number from 1 to 100,000"),
    (["--template", "M__", "--steps", "1000000000"], "argument --steps: '1000000000' is not a whole number from 1 to"),
    (["--template", "M__", "--num-samples", "0"], "argument --num-samples: '0' is not a whole number from 1 to 100,000"),
    (["--template", "M__", "--num-samples", "10000000"], "'10000000' is not a whole number from 1 to 100,000 (draw "
                                                          "more in several runs with other seeds"),
    (["--template", "M__", "--temperature", "0"], "argument --temperature: '0' is not a number above 0"),
    (["--template", "M__", "--seed", "-3"], "argument --seed: '-3' is not a whole number from 0 to 2**63 - 1"),
    (["--template", "M__", "--seed", str(2**64)], "is not a whole number from 0 to 2**63 - 1"),
    (["--template", "M__", "--top-p", "1.5"], "argument --top-p: '1.5' is not a number above 0 and at most 1"),
    (["--template", "M__", "--temperature", "nan"], "argument --temperature: 'nan' is not a number above 0"),
    (["--template", "MK[2-10"], "'[' at position 3 is never closed"),
    (["--template", "MK[9-2]G"], "bracket [9-2] at position 3: a span [a-b] needs a ≤ b"),
    (["--template", "MK[C]G", "--omit", "c"], "the bracket at position 3 allows only C, all of which are excluded"),
    (["--template", "MK_", "--omit", "CJ"], "excluded residues: 'J' at position 2 is not a residue"),
    (["--template", "M__", "--particles", "0"], "argument --particles: '0' is not a whole number above 0"),
    (["--template", "M__", "--particles", "1000"], "particles must be between 1 and 256"),
    (["--template", "M[^C]_", "--particles", "4", "--sampler", "remask"], "needs the tau-leaping sampler and top-p 1"),
])
def test_bad_input_exits_2_with_a_message(capsys, tiny_checkpoint, args, message):
    code, out, err = run_main(capsys, main, "--checkpoint", tiny_checkpoint, *args)
    assert code == 2 and out == ""
    assert message in err and "Traceback" not in err


def test_bad_checkpoint_exits_2_with_a_message(capsys, tmp_path):
    code, _, err = run_main(capsys, main, "--checkpoint", tmp_path, "--length", 10)
    assert code == 2 and "holds no config.json" in err


def test_an_unreadable_file_exits_2_with_a_message(capsys, tiny_checkpoint, monkeypatch):
    """An OSError (a permission, a vanished disk) is one line, as in ``sedd.score`` and ``sedd.evaluate``."""
    def unreadable(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "config.json")
    monkeypatch.setattr("sedd.sample.ckpt.load", unreadable)
    code, _, err = run_main(capsys, main, "--checkpoint", tiny_checkpoint, "--template", "MK__GF")
    assert code == 2 and err.strip() == "error: [Errno 13] Permission denied: 'config.json'"


def test_an_unknown_device_is_one_line_naming_it(capsys, tiny_checkpoint):
    code, out, err = run_main(capsys, main, "--checkpoint", tiny_checkpoint, "--length", 10, "--device", "foo")
    assert code == 2 and out == ""
    assert err.startswith("error: unknown device 'foo'; use --device cpu") and len(err.splitlines()) == 1


def test_cuda_without_cuda_is_one_line_saying_what_to_use(capsys, tiny_checkpoint, monkeypatch):
    """torch's own answer is an AssertionError traceback ("Torch not compiled with CUDA enabled")."""
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    code, out, err = run_main(capsys, main, "--checkpoint", tiny_checkpoint, "--length", 10, "--device", "cuda")
    built = torch.version.cuda or getattr(torch.version, "hip", None)
    why = "no CUDA GPU visible" if built else "torch built without CUDA"
    assert code == 2 and out == ""
    assert err.splitlines() == [f"error: cuda is not available on this machine ({why}); use --device cpu"]


@pytest.mark.parametrize("template, how", [("MKVLG", "mark positions with _ ? # X or a bracket such as [3]"),
                                           ("MK[0]VLG", "mark positions with"),
                                           ("MK[0-0]VLG", "its [0-0] spans design none")])
def test_a_template_with_nothing_to_design_says_so_as_the_studio_does(capsys, tiny_checkpoint, template, how):
    """The command line printed copies of the template without a word."""
    code, out, err = run_main(capsys, main, "--checkpoint", tiny_checkpoint, "--template", template,
                              "--num-samples", 2, "--steps", 4, "--seed", 1)
    assert code == 0 and out == ">design_1\nMKVLG\n>design_2\nMKVLG\n"
    assert f"note: the template has no position to design ({how}" in err and "sedd.score" in err
    _, _, err = run_main(capsys, main, "--checkpoint", tiny_checkpoint, "--template", "MK[0-1]VLG", "--steps", 4)
    assert "no position to design" not in err


def test_omit_keeps_residues_out_of_every_design(capsys, tiny_checkpoint):
    code, out, _ = run_main(capsys, main, "--checkpoint", tiny_checkpoint, "--length", 40, "--num-samples", 16,
                            "--temperature", 2, "--omit", "CWM", "--steps", 16, "--seed", 2, "--json")
    assert code == 0
    result = json.loads(out)
    assert not set("CWM") & set("".join(result["sequences"]))
    assert not {"span_lengths", "span_posterior", "span_posterior_nfe"} & set(result)     # no [a-b] span, no fields


def test_spans_report_each_designs_lengths_and_the_posterior(capsys, tiny_checkpoint):
    args = ["--checkpoint", tiny_checkpoint, "--template", "MKV[1-4]GF[KR]R[0-2]W", "--num-samples", 6,
            "--steps", 16, "--seed", 3, "--json"]
    code, out, err = run_main(capsys, main, *args)
    assert code == 0 and "span lengths (enumeration)" in err
    result = json.loads(out)
    assert len(result["span_lengths"]) == 6
    for seq, (k1, k2) in zip(result["sequences"], result["span_lengths"]):
        assert 1 <= k1 <= 4 and 0 <= k2 <= 2 and len(seq) == 8 + k1 + k2
        assert seq[:3] == "MKV" and seq[3 + k1:5 + k1] == "GF" and seq[5 + k1] in "KR" and seq[-1] == "W"
    posterior = result["span_posterior"]
    assert len(posterior) == 10 and all(set(p) == {"lengths", "prob"} for p in posterior)
    assert sum(p["prob"] for p in posterior) <= 1 + 1e-9
    assert [p["prob"] for p in posterior] == sorted((p["prob"] for p in posterior), reverse=True)
    assert result["span_posterior_nfe"] == 4 * 3 * SPAN_T_SAMPLES      # every layout, outside nfe_per_sample
    _, out, _ = run_main(capsys, main, *args, "--span-lengths", "map")
    mapped = json.loads(out)
    assert mapped["span_lengths"] == [posterior[0]["lengths"]] * 6
    assert mapped["span_posterior"] == posterior          # same seed: the same posterior


def test_n_in_brackets_is_n_masks_on_the_command_line(capsys, tiny_checkpoint):
    common = ["--checkpoint", tiny_checkpoint, "--num-samples", 3, "--steps", 16, "--seed", 8]
    _, bracket, _ = run_main(capsys, main, *common, "--template", "MK[6]GF")
    _, masks, _ = run_main(capsys, main, *common, "--template", "MK______GF")
    assert bracket == masks


def test_particles_keep_every_allowed_set_and_report_what_they_cost(capsys, tiny_checkpoint):
    """--particles 8 with allowed sets: the sets hold, every design costs 8 particles' network
    evaluations, and the JSON carries each design's estimated log P(the model meets the sets)."""
    base = ["--checkpoint", tiny_checkpoint, "--template", "M[KR]____[^AG]____[DE]", "--omit", "C",
            "--num-samples", 5, "--steps", 16, "--seed", 6, "--json"]
    _, out, _ = run_main(capsys, main, *base)
    one = json.loads(out)
    code, out, err = run_main(capsys, main, *base, "--particles", 8)
    many = json.loads(out)
    assert code == 0 and "particles per design" in err
    for seq in many["sequences"]:
        assert seq[1] in "KR" and seq[6] not in "AG" and seq[11] in "DE" and "C" not in seq
    assert many["nfe_per_sample"] > 4 * one["nfe_per_sample"]
    assert many["particles"] == 8 and len(many["constraint_log_prob"]) == 5
    assert all(lp < 0 for lp in many["constraint_log_prob"])
    assert "particles" not in one and "constraint_log_prob" not in one


def test_particles_without_allowed_sets_change_nothing(capsys, tiny_checkpoint):
    base = ["--checkpoint", tiny_checkpoint, "--template", "MKV__GF_R____", "--num-samples", 3, "--steps", 16,
            "--seed", 6, "--json"]
    _, out, _ = run_main(capsys, main, *base)
    _, again, _ = run_main(capsys, main, *base, "--particles", 8)
    one, many = json.loads(out), json.loads(again)
    assert (many["sequences"], many["nfe_per_sample"]) == (one["sequences"], one["nfe_per_sample"])
    assert "constraint_log_prob" not in many


def test_many_designs_run_in_batches_each_with_its_own_seed(capsys, tiny_checkpoint):
    """--batch-size bounds the memory of a large request: 5 designs in batches of 2 are 5 designs, the
    first batch is what the same seed draws for 2 designs, and no batch repeats one of the next seed
    (with seed + batch index, seed 1's second batch would be seed 2's first)."""
    base = ["--checkpoint", tiny_checkpoint, "--length", 20, "--steps", 16, "--json"]

    def designs(seed, n, *extra):
        code, out, _ = run_main(capsys, main, *base, "--seed", seed, "--num-samples", n, *extra)
        assert code == 0
        return json.loads(out)

    batched = designs(1, 5, "--batch-size", 2)
    assert len(batched["sequences"]) == 5 and len(set(batched["sequences"])) == 5
    assert batched["sequences"][:2] == designs(1, 2)["sequences"]
    assert batched["sequences"] == designs(1, 5, "--batch-size", 2)["sequences"]          # reproducible
    assert not set(batched["sequences"][2:]) & set(designs(2, 5, "--batch-size", 2)["sequences"])
    assert 1 <= batched["nfe_per_sample"] <= 21


def test_particles_report_every_batchs_designs(capsys, tiny_checkpoint):
    code, out, err = run_main(capsys, main, "--checkpoint", tiny_checkpoint, "--template", "M[KR]____[^AG]",
                              "--num-samples", 3, "--steps", 8, "--seed", 2, "--particles", 4, "--batch-size", 2,
                              "--json")
    result = json.loads(out)
    assert code == 0 and "particles per design" in err
    assert len(result["sequences"]) == 3 and len(result["constraint_log_prob"]) == 3
    assert all(lp < 0 for lp in result["constraint_log_prob"])


def test_fasta_is_printed_batch_by_batch_so_an_interrupted_run_keeps_its_designs(capsys, tiny_checkpoint, monkeypatch):
    """The FASTA was printed after the last batch: Ctrl-C in a long run lost every design drawn."""
    from sedd import sample

    base = ["--checkpoint", tiny_checkpoint, "--length", 20, "--steps", 8, "--seed", 3, "--num-samples", 5,
            "--batch-size", 2]
    code, whole, _ = run_main(capsys, main, *base)
    assert code == 0 and [l for l in whole.splitlines() if l.startswith(">")] == [f">design_{i}" for i in range(1, 6)]
    real, calls = sample.stream, []

    def interrupted_on_the_third_batch(model, request):
        calls.append(request)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(model, request)
    monkeypatch.setattr(sample, "stream", interrupted_on_the_third_batch)
    with pytest.raises(KeyboardInterrupt):
        main([str(a) for a in base])
    kept = capsys.readouterr().out
    assert kept and whole.startswith(kept) and kept.count(">") == 4      # two whole batches


def test_the_progress_bar_counts_the_steps_asked_for(capsys, tiny_checkpoint, monkeypatch):
    """"--steps 64" showed "0/65": the initial state was counted as a step."""
    import tqdm.auto
    bars = []

    class Recorded(tqdm.auto.tqdm):
        def close(self):
            bars.append((self.n, self.total))
            super().close()

    monkeypatch.setattr(tqdm.auto, "tqdm", Recorded)
    code, *_ = run_main(capsys, main, "--checkpoint", tiny_checkpoint, "--template", "MKV__GF_R____",
                        "--num-samples", 3, "--batch-size", 2, "--steps", 64, "--seed", 1)
    assert code == 0 and bars[-1] == (128, 128)                 # two calls of 64 steps


@pytest.mark.parametrize("options", [
    ["--template", "MKV[KR]GF[2-4]GQ__", "--temperature", 0.7, "--omit", "C", "--sampler", "remask", "--top-p", 0.9,
     "--span-lengths", "map", "--num-samples", 3, "--batch-size", 2],
    ["--length", "auto", "--num-samples", 3, "--steps", 8],
])
def test_the_json_command_draws_the_same_designs_again(capsys, tiny_checkpoint, options):
    """--json recorded the steps, seed, sampler and top-p only: two runs that differed in temperature,
    --omit or the template printed JSON that differed in the sequences alone."""
    import shlex
    code, out, err = run_main(capsys, main, "--checkpoint", tiny_checkpoint, *options, "--json")
    assert code == 0, err
    first = json.loads(out)
    words = shlex.split(first["command"])
    assert words[:3] == ["python", "-m", "sedd.sample"] and "--seed" in words
    code, out, err = run_main(capsys, main, *words[3:], "--json")
    assert code == 0, err
    assert json.loads(out)["sequences"] == first["sequences"]
    plain = json.loads(run_main(capsys, main, "--checkpoint", tiny_checkpoint, *options[:2], "--json")[1])
    assert plain["command"] != first["command"]


def test_a_fasta_run_without_a_seed_says_which_seed_it_drew(capsys, tiny_checkpoint):
    code, out, err = run_main(capsys, main, "--checkpoint", tiny_checkpoint, "--length", 12, "--num-samples", 2)
    assert code == 0
    seed = int(err.split("note: seed ")[1].split()[0])
    again = run_main(capsys, main, "--checkpoint", tiny_checkpoint, "--length", 12, "--num-samples", 2, "--seed", seed)
    assert again[1] == out and "note: seed" not in again[2]


@pytest.mark.parametrize("error", ["[enforce fail at alloc_cpu.cpp:117] . DefaultCPUAllocator: can't allocate memory: "
                                   "you tried to allocate 8053063680 bytes.", None])
def test_running_out_of_memory_is_one_line_naming_the_batch(capsys, tiny_checkpoint, monkeypatch, error):
    import torch

    import sedd.sample

    def no_memory(*_, **__):
        raise RuntimeError(error) if error else torch.OutOfMemoryError("CUDA out of memory")
        yield
    monkeypatch.setattr(sedd.sample, "stream", no_memory)
    code, out, err = run_main(capsys, main, "--checkpoint", tiny_checkpoint, "--length", 12, "--num-samples", 300,
                              "--particles", 4, "--seed", 1)
    assert code == 2 and out == ""
    assert err.strip().splitlines()[-1] == ("error: out of memory drawing a sampler call of 256 designs × 4 particles "
                                            "at once; lower --batch-size (now 256) or --particles")
    monkeypatch.setattr(sedd.sample, "stream", lambda *_, **__: (_ for _ in ()).throw(RuntimeError("a bug")))
    with pytest.raises(RuntimeError, match="a bug"):             # any other error is not called memory
        main(["--checkpoint", str(tiny_checkpoint), "--length", "12", "--seed", "1"])


def test_json_that_cannot_be_written_is_an_error_line(tiny_checkpoint):
    import subprocess
    import sys
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "sedd.sample", "--checkpoint", str(tiny_checkpoint), "--length",
                               "5", "--seed", "1", "--json"], stdout=full, stderr=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1] == "error: [Errno 28] No space left on device"
    assert "Traceback" not in done.stderr


def test_the_span_length_note_stays_one_short_line_for_many_designs(capsys, tiny_checkpoint):
    code, _, err = run_main(capsys, main, "--checkpoint", tiny_checkpoint, "--template", "MKV[1-4]GF",
                            "--num-samples", 400, "--steps", 1, "--seed", 1)
    note = next(line for line in err.splitlines() if line.startswith("note: span lengths"))
    assert code == 0 and len(note) < 400 and "(--json lists each design's)" in note, note
    counts = [int(part.split(" × ")[1].split()[0].replace(",", "")) for part in note.split("designs use ")[1].split("], ")
              if " × " in part]
    assert sum(counts) <= 400 and max(counts) > 1
