"""The documentation holds together: every relative link and anchor resolves, and the figures the
README quotes from benchmark output are the ones the scripts wrote."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "checkpoints").glob("*/README.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _prose(path: Path) -> str:
    """The Markdown without its fenced code blocks (a `# comment` in a shell block is no heading)."""
    return re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)


def _anchors(path: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+)$", _prose(path), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_anchors_resolve(doc):
    broken = []
    for target in LINK.findall(_prose(doc)):
        if re.match(r"[a-z]+:", target):
            continue                                            # http(s), mailto: not checked offline
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists():
            broken.append(f"{target}: no file {file.relative_to(ROOT) if file.is_relative_to(ROOT) else file}")
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {file.name}")
    assert not broken, f"{doc.name}: " + "; ".join(broken)


def _table_rows(text: str, first_cell: str) -> list[list[str]]:
    rows = [[c.strip().strip("*").strip() for c in line.strip().strip("|").split("|")]
            for line in text.splitlines() if line.startswith("|")]
    return [r for r in rows if r[0] == first_cell]


def test_readme_sampler_rows_are_the_benchmarks_figures():
    """The README's short sampler table quotes rows of assets/sampler_quality.json unchanged."""
    rows = {(r["config"], r["steps"]): r for r in json.loads((ROOT / "assets/sampler_quality.json").read_text())["rows"]}
    readme = (ROOT / "README.md").read_text()
    quoted = [r for name in ("tau-leaping", "confidence", "remask") for r in _table_rows(readme, name)
              if len(r) == 6]
    assert len(quoted) >= 6
    for name, steps, nfe, bits, motif, identity in quoted:
        row = rows[(name, int(steps))]
        assert [nfe, bits, motif, identity] == [f"{row['nfe_per_design']:.1f}", f"{row['hmm_bits_ratio']:.3f}",
                                                f"{row['motif_rate']:.3f}", f"{row['mean_pairwise_identity']:.3f}"], (name, steps)


def test_readme_and_benchmarks_naturals_rows_are_the_benchmarks_figures():
    natural = json.loads((ROOT / "assets/sampler_quality.json").read_text())["naturals"]
    [readme] = _table_rows((ROOT / "README.md").read_text(), "held-out naturals")
    assert readme[3:] == [f"{natural[k]:.3f}" for k in ("hmm_bits_ratio", "motif_rate", "mean_pairwise_identity")]
    [full] = [r for r in _table_rows((ROOT / "docs/benchmarks.md").read_text(), "held-out naturals") if len(r) == 11]
    assert full[7:] == [f"{natural['composition_kl']:.4f}"] + [f"{natural[k]:.3f}" for k in
                                                               ("mean_pairwise_identity", "novelty", "repeat_rate")]


def test_readme_autoregressive_comparison_is_the_benchmarks_figures():
    """The README's SEDD-vs-autoregressive table quotes ar_baseline15.json and ar_motif.json."""
    evaluation = ROOT / "checkpoints/acyp/eval"
    nll = json.loads((evaluation / "ar_baseline15.json").read_text())
    motif = {r["name"]: f"{100 * r['rate']:.1f} %" for r in json.loads((evaluation / "ar_motif.json").read_text())["rows"]}
    sedd, ar, bundled = nll["sedd"], nll["ar"], nll["bundled"]
    expected = {
        "SEDD, 15 CPU-min — ELBO (an upper bound on −log p(x \\| n))":
            [f"{sedd['elbo_nats_per_residue']:.3f} ± {sedd['elbo_stderr']:.3f}",
             f"{sedd['elbo_plus_length_nats_per_residue']:.3f}", motif["sedd15"]],
        "autoregressive, 15 CPU-min — exact NLL":
            [f"{ar['nll_nats_per_residue']:.3f}", f"{ar['nll_with_end_nats_per_residue']:.3f}", motif["ar15"]],
        "the bundled SEDD model (≈ 260 CPU-min)":
            [f"{bundled['elbo_nats_per_residue']:.3f} ± {bundled['elbo_stderr']:.3f}",
             f"{bundled['elbo_nats_per_residue'] + nll['length_nats_per_residue']:.3f}", motif["shipped"]],
    }
    readme = (ROOT / "README.md").read_text()
    for first_cell, figures in expected.items():
        rows = _table_rows(readme.replace("\\|", "¦"), first_cell.replace("\\|", "¦"))
        assert rows and rows[0][1:] == figures, (first_cell, rows)



def test_readme_particles_table_is_the_benchmarks_figures():
    """The README's particles table quotes checkpoints/acyp/eval/particles.json."""
    result = json.loads((ROOT / "checkpoints/acyp/eval/particles.json").read_text())
    rows = [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("|")]
    for row in result["rows"]:
        name = {None: "rejection", 1: "renormalised"}.get(row["particles"], row["sampler"])
        cells = next(r for r in rows if r[0] == name or r[0].startswith(name + " "))
        p_set = "—" if row["p_set"] is None else f"{row['p_set']:.3f} ± {row['p_set_stderr']:.3f}"
        assert cells[1:] == [f"{row['designs']}", f"{row['rest_of_motif']:.3f} ± {row['rest_of_motif_stderr']:.3f}",
                             cells[3], p_set, f"{row['nfe_per_design']:.1f}"], name
        assert cells[3].split()[0] == f"{row['position_tv']:.3f}", name


def test_bare_pytest_runs_from_the_root():
    """The README also writes `pytest tests/…`, without `python -m`, which puts no root on sys.path."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    pytest_bin = Path(sys.executable).with_name("pytest")
    done = subprocess.run([str(pytest_bin), "-q", "-p", "no:cacheprovider", "--collect-only", "tests/test_render.py"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def test_span_length_table_is_the_stored_runs():
    """Each row of the span-length estimator table quotes its run's JSON (the default row: span_lengths.json)."""
    text = (ROOT / "docs/benchmarks.md").read_text()
    runs = {"common masks, t integrated, K = 32 (the default)": "span_lengths.json"}
    runs |= {f"common masks, t integrated, K = {k}": f"span_lengths_rows/k{k}_common.json" for k in (4, 8, 16)}
    runs |= {f"common times and masks, K = {k} (before)": f"span_lengths_rows/k{k}_times.json" for k in (4, 8, 16, 32)}
    runs |= {f"common times, masks drawn per candidate, K = {k}": f"span_lengths_rows/k{k}_independent.json"
             for k in (8, 32)}
    for label, name in runs.items():
        [row] = _table_rows(text, label)
        recovery = json.loads((ROOT / "assets" / name).read_text())["recovery"]
        assert row[1:] == [f"{100 * recovery['mode_exact']:.0f} %", f"{100 * recovery['mode_within_1']:.0f} %",
                           f"{recovery['mean_p_true']:.2f}"], label


def test_score_validation_figures_are_the_stored_runs():
    """The scan-at-the-motif sentence quotes score_validation.json and, for the previous model, its twin."""
    text = " ".join((ROOT / "docs/benchmarks.md").read_text().split())
    evaluation = ROOT / "checkpoints/acyp/eval"
    now, previous = (json.loads((evaluation / f"score_validation{s}.json").read_text()) for s in ("", "_previous"))
    assert (f"**−{-now['motif']['mean_scan_at_motif']:.2f} nats at the motif positions vs "
            f"−{-now['motif']['mean_scan_elsewhere']:.2f} elsewhere**") in text
    assert (f"the previous bundled model: −{-previous['motif']['mean_scan_at_motif']:.2f} vs "
            f"−{-previous['motif']['mean_scan_elsewhere']:.2f}, natural ELBO {previous['mean_elbo']['natural']:.3f}, "
            f"AUROC vs mutated {previous['auroc']['elbo vs 10% mutated']:.3f} by ELBO and "
            f"{previous['auroc']['pll vs 10% mutated']:.3f} by PLL") in text


def test_the_cards_composition_kl_floor_is_that_of_the_stored_samples():
    from sedd.alphabet import PROTEIN
    from sedd.data import read_fasta
    from sedd.metrics import composition_kl_floor

    samples = read_fasta(ROOT / "checkpoints/acyp/eval/report_samples.fasta", PROTEIN).tokens
    residues = sum(map(len, samples))
    card = " ".join((ROOT / "checkpoints/acyp/README.md").read_text().split())
    assert (f"about {composition_kl_floor(residues, 20):.4f}, `sedd.metrics.composition_kl_floor` of the "
            f"{residues:,} residues") in card


def test_the_cards_figures_for_the_held_out_copies_are_those_stored():
    copies = json.loads((ROOT / "checkpoints/acyp/eval/split_copies.json").read_text())
    card = " ".join((ROOT / "checkpoints/acyp/README.md").read_text().split())
    assert (f"{copies['copies']} of the {copies['held_out_sequences']:,} held-out sequences "
            f"({copies['copy_residues']} residues)") in card
    assert (f"an ELBO of {copies['elbo_copies']:.3f} ± {copies['elbo_copies_stderr']:.3f} nats/residue; without them "
            f"the held-out ELBO is **{copies['elbo_without_copies']:.3f}** instead of "
            f"{copies['elbo_all_stored']:.3f}") in card


def test_the_scoring_speed_table_is_that_of_the_stored_runs():
    text = (ROOT / "docs/benchmarks.md").read_text()
    runs = [json.loads((ROOT / f"checkpoints/acyp/eval/score_speed_{t}.json").read_text()) for t in ("2threads", "1thread")]
    for k, label in enumerate(["scan (99 rows, one pass)", "whole-sequence ELBO", "`score_sequence(scan=True)`"]):
        two, one = (f"{run['rows'][k]['wall_seconds']:.3f}" for run in runs)
        row = next(line for line in text.splitlines() if line.startswith(f"| {label}"))
        assert row.replace("*", "").endswith(f"| {two} | {one} |"), row
    assert (f"it draws {runs[0]['elbo_pilot_t_samples']} pilot times and then {runs[0]['elbo_t_samples']} "
            "(`elbo_pilot_t_samples`") in " ".join(text.split())


def test_the_stored_studio_throughput_is_the_one_quoted():
    text = " ".join((ROOT / "docs/benchmarks.md").read_text().split())
    now, previous = (json.loads((ROOT / f"checkpoints/acyp/eval/{name}.json").read_text())["requests_per_minute"]
                     for name in ("app_load", "app_load_previous"))
    assert f"idle machine: **{now} requests/minute** ([`app_load.json`]" in text
    assert f"the previous model 14.4, then {previous} ([`app_load_previous.json`]" in text


def test_the_readme_quotes_the_stored_scan_time_and_throughput():
    readme = " ".join((ROOT / "README.md").read_text().split())
    scan = json.loads((ROOT / "checkpoints/acyp/eval/score_speed_2threads.json").read_text())["rows"][0]
    throughput = json.loads((ROOT / "checkpoints/acyp/eval/app_load.json").read_text())["requests_per_minute"]
    assert f"one network call: {scan['wall_seconds']:.2f} s on two threads" in readme
    assert f"**Throughput:** {throughput} requests per minute" in readme
    assert "[stored](checkpoints/acyp/eval/app_load.json)" in readme


def test_the_training_speeds_quoted_are_the_stored_run():
    speed = {row["preset"]: row["tokens_per_second"] for row in
             json.loads((ROOT / "assets/train_speed.json").read_text())}
    readme = " ".join((ROOT / "README.md").read_text().split())
    card = " ".join((ROOT / "checkpoints/acyp/README.md").read_text().split())
    table = (ROOT / "docs/benchmarks.md").read_text()
    assert f"at about {round(speed['mini'], -2):,.0f} residues per second" in readme
    assert f"{speed['mini']:,.0f} against {speed['small']:,.0f} on two threads" in card
    for preset, rate in speed.items():
        assert any(line.startswith(f"| {preset} | default | no |") and line.endswith(f"| {rate:,.0f} |")
                   for line in table.splitlines()), preset


def test_readme_span_length_summary_is_the_stored_run():
    """The README's sentence on span-length recovery and cost quotes assets/span_lengths.json."""
    readme = " ".join((ROOT / "README.md").read_text().split())
    run = json.loads((ROOT / "assets/span_lengths.json").read_text())
    recovery, cost = run["recovery"], run["cost"]
    assert (f"**{100 * recovery['mode_exact']:.0f} %** and within ±1 for **{100 * recovery['mode_within_1']:.0f} %**"
            in readme)
    assert f"the mean probability it gives the true length, {recovery['mean_p_true']:.2f}," in readme
    assert (f"costs about {cost['one_span_x_plain']:.0f}× a plain run of the same template, two spans "
            f"(81 combinations) about {cost['two_spans_x_plain']:.0f}×") in readme


def test_the_readme_front_matter_is_a_space_config_the_hub_accepts():
    """The Hub refuses a Space whose short_description is over 60 characters (it was 74)."""
    import gradio
    from huggingface_hub import SpaceCardData
    from huggingface_hub.repocard import metadata_load

    meta = metadata_load(ROOT / "README.md")
    card = SpaceCardData(**meta)
    assert card.sdk == "gradio" and card.sdk_version == gradio.__version__      # the version requirements.txt pins
    assert (ROOT / card.app_file).is_file()
    assert isinstance(card.python_version, str)          # unquoted, YAML reads 3.10 as the number 3.1
    assert 0 < len(meta["short_description"]) <= 60, meta["short_description"]


def test_readme_gpu_figures_are_the_stored_gpu_runs():
    """The GPU model's table and the GPU check's figures in the README are those of the files the runs
    on the H200 wrote: acyp-base's config.json, eval/motif_rate.json and eval/gpu_check.json."""
    readme = (ROOT / "README.md").read_text()
    base = ROOT / "checkpoints" / "acyp-base"
    new, old = (json.loads((ROOT / "checkpoints" / name / "config.json").read_text())["evaluation"]
                for name in ("acyp-base", "acyp"))
    motif = {r["name"]: r for r in json.loads((base / "eval" / "motif_rate.json").read_text())["rows"]}
    section = readme.split("### The GPU model")[1].split("\n#")[0]
    rows = {r[0]: [c.replace("*", "") for c in r[1:]] for r in (_table_rows(section, label)[0] for label in (
        "ELBO, nats/residue", "infill recovery, 30 % masked", "catalytic motif, 2,048 samples, 128 τ-leaping steps",
        "family-HMM hit rate, 256 samples"))}
    assert rows["ELBO, nats/residue"] == [f"{old['elbo_nats_per_residue']:.3f} ± {old['elbo_stderr']:.3f}",
                                          f"{new['elbo_nats_per_residue']:.3f} ± {new['elbo_stderr']:.3f}"]
    assert rows["infill recovery, 30 % masked"] == [f"{old['infill_recovery']:.3f}", f"{new['infill_recovery']:.3f}"]
    diff = motif["acyp-base"]["vs_first"]
    assert rows["catalytic motif, 2,048 samples, 128 τ-leaping steps"] == [
        f"{100 * motif['acyp']['rate']:.1f} ± {100 * motif['acyp']['stderr']:.1f} %",
        f"{100 * motif['acyp-base']['rate']:.1f} ± {100 * motif['acyp-base']['stderr']:.1f} % "
        f"(paired: {100 * diff['difference']:+.1f} ± {100 * diff['stderr']:.1f})"]
    assert rows["family-HMM hit rate, 256 samples"] == [f"{100 * e['samples']['family_hmm']['hit_rate']:.1f} %"
                                                        for e in (old, new)]
    check = json.loads((base / "eval" / "gpu_check.json").read_text())
    train = {r["preset"]: r for r in check["training"]}
    design = {(r["preset"], r["steps"]): r for r in check["sampling"]}
    quoted = " ".join(readme.split())
    assert (f"all {check['gpu_tests']['tests']} passed; `base` trained at {train['base']['tokens_per_second']:,.0f} "
            f"residues/s (`small` {train['small']['tokens_per_second']:,.0f})") in quoted
    assert (f"took {design['base', 128]['seconds_per_design']:.3f} s at 128 steps and "
            f"{design['base', 1024]['seconds_per_design']:.3f} s at 1024 (`small`: "
            f"{design['small', 128]['seconds_per_design']:.3f} and {design['small', 1024]['seconds_per_design']:.3f})") in quoted
    assert f"`bash benchmarks/gpu_check.sh [figures.json]` ({check['seconds']} s on one H200)" in quoted
    assert check["gpu_tests"]["failures"] == check["gpu_tests"]["errors"] == check["gpu_tests"]["skipped"] == 0
    cpu = {r["preset"]: r["seconds_per_design"] for r in json.loads((ROOT / "assets/design_speed_cpu.json").read_text())}
    assert f"design in {cpu['mini']:.2f} s there against {cpu['base']:.2f} s for `base`" in quoted
    design_md = " ".join((ROOT / "docs/design.md").read_text().split())
    assert f"takes {cpu['base']:.2f} s with its preset against {cpu['mini']:.2f} s with `mini`" in design_md


def test_the_cards_compute_or_size_table_is_the_stored_gpu_probe():
    """The bundled card's table of GPU runs, and the README's summary of it, quote
    checkpoints/acyp/eval/budget_probe.json (benchmarks/gpu_budget_probe.sh on the H200)."""
    probe = json.loads((ROOT / "checkpoints/acyp/eval/budget_probe.json").read_text())
    card = (ROOT / "checkpoints/acyp/README.md").read_text()
    assert len(probe["arms"]) == 4
    for arm in probe["arms"]:
        motif, paired = arm["motif"], arm["motif"]["vs_first"]
        [row] = _table_rows(card, arm["arm"])
        assert row[1:] == [f"{arm['parameters'] / 1e6:.2f} M", f"{probe['minutes']:.0f} min, H200",
                           f"{arm['tokens_per_batch']:,}", f"{arm['steps']:,}", f"{arm['residues'] / 1e6:.1f} M",
                           f"{arm['elbo']:.3f} ± {arm['elbo_stderr']:.3f}", f"{arm['infill_recovery']:.3f}",
                           f"{100 * motif['rate']:.1f} ± {100 * motif['stderr']:.1f} %",
                           f"{100 * paired['difference']:+.1f} ± {100 * paired['stderr']:.1f}".replace("-", "−")], arm["arm"]
    ours, base = (json.loads((ROOT / "checkpoints" / name / "config.json").read_text()) for name in ("acyp", "acyp-base"))
    base_motif = {r["name"]: r for r in json.loads((ROOT / "checkpoints/acyp-base/eval/motif_rate.json").read_text())["rows"]}
    ours_motif = next(r for r in probe["motif"]["rows"] if r["name"] == "acyp")
    same_draws = ("samples", "hits", "rate", "stderr", "mean_length")     # acyp's 2,048 samples, both times
    assert [ours_motif[k] for k in same_draws] == [base_motif["acyp"][k] for k in same_draws]
    for label, config, motif in (("this model (`mini`)", ours, ours_motif), ("`acyp-base`", base, base_motif["acyp-base"])):
        [row] = _table_rows(card, label)
        train, evaluation = config["training"], config["evaluation"]
        assert row[1] == f"{train['parameters'] / 1e6:.2f} M" and row[3:8] == [
            f"{train['config']['tokens_per_batch']:,}", f"{train['steps']:,}", f"{train['tokens_seen'] / 1e6:.1f} M",
            f"{evaluation['elbo_nats_per_residue']:.3f} ± {evaluation['elbo_stderr']:.3f}",
            f"{evaluation['infill_recovery']:.3f}"], label
        assert row[8] == f"{100 * motif['rate']:.1f} ± {100 * motif['stderr']:.1f} %", label
    paired = base_motif["acyp-base"]["vs_first"]
    assert _table_rows(card, "`acyp-base`")[0][9] == f"{100 * paired['difference']:+.1f} ± {100 * paired['stderr']:.1f}"
    card_text = " ".join(card.split())
    steps_per_second = [round(a["steps"] / a["wall_seconds"]) for a in probe["arms"] if a["preset"] == "mini"]
    assert f"steps: {steps_per_second[0]}, {steps_per_second[1]} and {steps_per_second[2]} steps/s" in card_text
    assert f"({probe['arms'][0]['residues'] / 1e6:.0f} M residues in 5 minutes against" in card_text
    rates = {a["arm"]: 100 * a["motif"]["rate"] for a in probe["arms"]}
    minis = [rates[a["arm"]] for a in probe["arms"] if a["preset"] == "mini"]
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert f"draws the motif in {min(minis):.0f}–{max(minis):.0f} % of samples" in readme
    assert f"(`small` {rates['small-32768']:.1f} %, `base` {100 * base_motif['acyp-base']['rate']:.1f} %)" in readme
    assert f"{probe['minutes']:.0f} minutes per run" in readme
    design = " ".join((ROOT / "docs/design.md").read_text().split())
    assert f"drew the motif in {min(minis):.0f}–{max(minis):.0f} % of 2,048 samples" in design
    assert f"`small` reached {rates['small-32768']:.1f} %" in design
