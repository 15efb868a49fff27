"""The training command line: --resume keeps the saved run's options, a run is never replaced by
accident, and options it cannot honour stop with one `error:` line (exit code 2), never a traceback."""
import json
import re
import warnings

import pytest
import torch

from conftest import profile_family, write_fasta
from sedd import checkpoint, train
from sedd.train import RESUME_NAME, TrainConfig, Trainer, lr_at, main

# A run with none of the defaults that a resume could fall back to: options, seed and split all differ.
RUN = ["--preset", "tiny", "--tokens-per-batch", "512", "--dropout", "0", "--warmup-steps", "100", "--seed", "3",
       "--lr", "2e-3", "--eval-every", "4", "--checkpoint-minutes", "60", "--mlp", "swiglu", "--clock", "cpu"]
BUDGET_FIELDS = ("max_steps", "minutes", "resume")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A synthetic family and a cluster<TAB>member TSV of it (four sequences per cluster)."""
    folder = tmp_path_factory.mktemp("family")
    seqs, _ = profile_family(120, 20, seed=0)
    write_fasta(folder / "family.fasta", seqs)
    (folder / "clusters.tsv").write_text("".join(f"c{i // 4}\tseq{i}\n" for i in range(len(seqs))))
    return folder / "family.fasta", folder / "clusters.tsv"


def cli(*argv) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        main([str(a) for a in argv])


def refused(capsys, *argv) -> str:
    """The one error line the command line stops with (exit code 2)."""
    with pytest.raises(SystemExit) as stop:
        cli(*argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "Traceback" not in err, err
    return err.strip().splitlines()[-1]


def saved_options(out) -> dict:
    return json.loads((out / checkpoint.CONFIG_NAME).read_text())["training"]["config"]


def snapshot(out) -> dict:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    """A 6-step run with RUN's options and clusters, shared by the tests that only read it."""
    fasta, clusters = data
    out = tmp_path_factory.mktemp("runs") / "run"
    cli("--data", fasta, "--out", out, "--clusters", clusters, "--max-steps", "6", *RUN)
    return out


def test_resume_with_only_a_budget_is_the_uninterrupted_run_with_every_saved_option(tmp_path, data):
    """6 steps, then a resume that names nothing but --data, --out and the budget: the same weights
    bit for bit as 10 steps in one go (all warm-up steps, so the budget does not enter the LR), and
    config.json records the run's own options, not the command line's defaults."""
    fasta, clusters = data
    straight, split = tmp_path / "straight", tmp_path / "split"
    cli("--data", fasta, "--out", straight, "--clusters", clusters, "--max-steps", "10", *RUN)
    cli("--data", fasta, "--out", split, "--clusters", clusters, "--max-steps", "6", *RUN)
    first = saved_options(split)
    cli("--data", fasta, "--out", split, "--resume", "--max-steps", "10")
    resumed = saved_options(split)
    assert {k: v for k, v in resumed.items() if k not in BUDGET_FIELDS} == \
        {k: v for k, v in first.items() if k not in BUDGET_FIELDS}
    assert (resumed["max_steps"], resumed["resume"]) == (10, True)
    summary = json.loads((split / checkpoint.CONFIG_NAME).read_text())["training"]
    assert summary["steps"] == 10
    assert summary["num_val_sequences"] == json.loads((straight / checkpoint.CONFIG_NAME).read_text())[
        "training"]["num_val_sequences"]
    one_go = torch.load(straight / RESUME_NAME, weights_only=True)
    two_goes = torch.load(split / RESUME_NAME, weights_only=True)
    assert one_go["tokens_seen"] == two_goes["tokens_seen"]
    for name, value in one_go["model"].items():
        assert torch.equal(two_goes["model"][name], value), name


def test_a_resumed_run_continues_its_learning_rate_schedule(tmp_path, data):
    """Warm-up over 3 steps, then a cosine decay fitted to the new budget: the saved schedule's, not a
    restart of the default 200-step warm-up, ending on its floor at the new last step."""
    fasta, _ = data
    out = tmp_path / "run"
    cli("--data", fasta, "--out", out, "--max-steps", "5", "--preset", "tiny", "--tokens-per-batch", "512",
        "--dropout", "0", "--warmup-steps", "3", "--lr", "2e-3", "--eval-every", "100")
    cli("--data", fasta, "--out", out, "--resume", "--max-steps", "11")
    state = torch.load(out / RESUME_NAME, weights_only=True)
    cfg = TrainConfig(**json.loads(state["config"]))
    assert (cfg.warmup_steps, cfg.lr, cfg.max_steps) == (3, 2e-3, 11)
    logged = {h["step"]: h["lr"] for h in json.loads(state["history"]) if "lr" in h}
    # step 10 (index 9) on the decay refitted to 11 steps: well above the floor, and above the 1e-4 a
    # restarted warm-up would be at
    assert logged[10] == pytest.approx(lr_at(9, cfg, progress=(9 - 3) / (11 - 1 - 3))) == pytest.approx(2.891e-4, rel=1e-3)
    assert state["opt"]["param_groups"][0]["lr"] == pytest.approx(2e-3 * 0.1)      # the last step: the floor


@pytest.mark.parametrize("change", [("--warmup-steps", "7"), ("--seed", "4"), ("--dropout", "0.2"),
                                    ("--tokens-per-batch", "1024"), ("--lr", "1e-3"), ("--compile",),
                                    ("--clock", "wall"), ("--optimizer", "muon"), ("--mlp", "gelu"),
                                    ("--clusters", "other.tsv")])
def test_resume_refuses_an_option_that_changes_the_run_and_names_it(run, data, capsys, change):
    fasta, _ = data
    before = snapshot(run)
    line = refused(capsys, "--data", fasta, "--out", run, "--resume", "--max-steps", "20", *change)
    assert line.endswith("leave them off to keep the saved values, or start a new --out (a resumed run may "
                         "change only --minutes, --max-steps, --eval-every, --patience, --checkpoint-minutes, --device)")
    assert f"error: --resume: {run} was trained with other values of options that define the run ({change[0]}: " in line
    assert snapshot(run) == before


def test_resume_may_change_the_budget_and_how_the_run_is_watched(tmp_path, data):
    fasta, _ = data
    out = tmp_path / "run"
    cli("--data", fasta, "--out", out, "--max-steps", "4", *RUN)
    cli("--out", out, "--resume", "--max-steps", "7", "--eval-every", "2", "--patience", "0",
        "--checkpoint-minutes", "30", "--device", "cpu", "--seed", "3", "--dropout", "0")   # the same seed/dropout: fine
    saved = saved_options(out)
    assert (saved["max_steps"], saved["eval_every"], saved["patience"], saved["checkpoint_minutes"], saved["device"]) \
        == (7, 2, 0, 30.0, "cpu")
    assert (saved["seed"], saved["warmup_steps"], saved["model_overrides"]) == (3, 100, {"mlp": "swiglu"})


def test_resume_refuses_a_budget_already_spent(run, capsys):
    """In one line: a refusal of what the run in --out is came after 19 lines of usage, and a run of
    seconds was "after 0.0 minutes" with a budget of --minutes 0.01 spent."""
    with pytest.raises(SystemExit):
        cli("--out", run, "--resume")
    [line] = capsys.readouterr().err.strip().splitlines()
    assert re.fullmatch(rf"error: --resume: the run in {re.escape(str(run))} is at step 6 after \d+\.\d seconds, so its "
                        r"budget \(--max-steps 6\) is spent; give a larger --max-steps or --minutes", line), line


@pytest.mark.parametrize("option", ["--data", "--clusters"])
def test_a_blank_data_or_clusters_file_is_refused_not_taken_for_none(tmp_path, data, capsys, option):
    """--clusters "$UNSET" trained on a random split, the cluster split asked for dropped without a word;
    --data "" was "'.' is a folder"."""
    fasta, clusters = data
    given = {"--data": fasta, "--clusters": clusters, option: " "}
    line = refused(capsys, "--data", given["--data"], "--clusters", given["--clusters"], "--out", tmp_path / "o", *RUN)
    assert line.endswith(f"argument {option}: ' ' is not a file (it is blank)")


def test_a_second_run_into_an_out_being_trained_into_is_refused(tmp_path, data, capsys):
    """Nothing stopped two runs writing one --out (a job started twice, a torchrun's orphaned workers):
    each reported saves the other had replaced. The folder is held while a run trains into it."""
    import fcntl
    import os
    fasta, _ = data
    out = tmp_path / "run"
    out.mkdir()
    other = os.open(out, os.O_RDONLY)                # a run training into it
    try:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        line = refused(capsys, "--data", fasta, "--out", out, "--max-steps", "2", *RUN)
        assert line == (f"error: another process is training into {out} (the same run started twice, or the workers "
                        "of a stopped torchrun still running?); wait for it to end or stop it, or choose another --out")
        assert not list(out.iterdir())               # nothing of the refused run written
    finally:
        os.close(other)
    cli("--data", fasta, "--out", out, "--max-steps", "2", *RUN)      # once it has ended, the folder is free
    cli("--out", out, "--resume", "--max-steps", "3")                 # and so it is after each run


def test_a_budget_that_ends_before_the_first_step_says_so(tmp_path, data, capsys):
    """--minutes 1e-9 trained 0 steps and printed "wrote ..." of random weights without a word."""
    fasta, _ = data
    main(["--data", str(fasta), "--out", str(tmp_path / "run"), "--minutes", "1e-9", *RUN])
    assert ("warning: the budget ended before the first step: " in capsys.readouterr().err
            and saved_options(tmp_path / "run")["minutes"] == 1e-9)


def test_a_pipe_for_data_is_refused_as_what_it_is(tmp_path, data, capsys):
    """<(zcat family.fa.gz) was "does not exist": the run reads its data again when it resumes."""
    import os
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    line = refused(capsys, "--data", fifo, "--out", tmp_path / "o", "--max-steps", "2", *RUN)
    assert line == f"error: FASTA file {fifo} is not a regular file (a pipe?): give the file itself; a gzip-compressed " \
                   "FASTA is read as it is"


def test_resume_refuses_a_run_that_stopped_early_unless_patience_allows_more(tmp_path, data, capsys):
    """A resume of an early-stopped run trained to its next validation and stopped again, at every
    resume, rewriting the run and never saying that it had finished."""
    fasta, _ = data
    out = tmp_path / "early"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        trainer = Trainer(TrainConfig(data=str(fasta), out=str(out), preset="tiny", tokens_per_batch=512, lr=0.0,
                                      warmup_steps=1, eval_every=2, patience=1, max_steps=1000, checkpoint_minutes=60))
        trainer.run()      # lr = 0: nothing improves after the first evaluation
    assert (trainer.step, trainer.best["step"]) == (4, 2)
    before = snapshot(out)
    line = refused(capsys, "--out", out, "--resume")
    assert line.endswith(f"error: --resume: the run in {out} is at step 4 with no better validation ELBO since step 2, "
                         "so early stopping (--patience 1, --eval-every 2) ends it; give a larger --patience, or "
                         "--patience 0 to train on without early stopping")
    assert snapshot(out) == before
    cli("--out", out, "--resume", "--patience", "3")          # what the message offers: two more evaluations
    assert json.loads((out / checkpoint.CONFIG_NAME).read_text())["training"]["steps"] == 8


@pytest.mark.parametrize("validated, step, best_step, best_elbo, ended", [
    ([2, 4], 4, 2, 1.0, True),               # stopped at the validation of step 4: nothing better since 2
    ([6, 8, 12], 14, 6, 1.0, False),         # stopped by a signal after 12: the validation of 16 decides
    ([], 12, 0, float("inf"), False),        # stopped before any validation
    ([2, 4], 4, 4, 1.0, False),              # the last validation was the best
])
def test_only_a_run_that_ended_at_a_stale_validation_counts_as_early_stopped(validated, step, best_step, best_elbo,
                                                                             ended):
    """The refusal first compared the step with the best step whatever the run was doing, and refused to
    resume a run stopped by a signal between validations, or before its first one."""
    history = json.dumps([{"step": s, "val_elbo_raw": 1.0, "val_elbo_ema": 1.0} for s in validated])
    state = {"history": history, "step": step, "best_step": best_step, "best_elbo": best_elbo}
    cfg = TrainConfig(data="x", out="y", eval_every=2 if step == 4 else 4, patience=1 if step == 4 else 2)
    assert train._ended_by_early_stopping(cfg, state) is ended


def test_a_blank_out_and_an_absurd_learning_rate_are_refused_by_the_parser(data, capsys):
    """--out "" (an unset $OUT) wrote the run into the working directory; --lr 1e308 overflowed inside
    AdamW with a traceback."""
    fasta, _ = data
    assert refused(capsys, "--data", fasta, "--out", "", *RUN).endswith("argument --out: '' is not a folder (it is blank)")
    assert refused(capsys, "--data", fasta, "--out", "x", "--lr", "1e308").endswith(
        "argument --lr: '1e308' is not a learning rate above 0 and at most 10")


def test_a_diverged_run_ends_with_one_line_that_says_to_start_again(tmp_path, data, capsys, monkeypatch):
    """A run whose losses stayed non-finite ended in a FloatingPointError traceback, advising a lower
    --lr, which a --resume refuses to change."""
    fasta, _ = data
    monkeypatch.setattr(train, "diffusion_loss", lambda *a, **k: torch.tensor(float("nan"), requires_grad=True))
    line = refused(capsys, "--data", fasta, "--out", tmp_path / "nan", "--max-steps", "50", *RUN)
    assert line == ("error: 5 non-finite losses in a row at step 0: the run diverged, and nothing since its last save "
                    "(if any) is written; start a new run (another --out, or --overwrite) with a lower --lr (a run's "
                    "--lr cannot change on --resume), or check the data")


def test_a_new_run_into_an_existing_run_is_refused_unless_overwrite(tmp_path, data, capsys):
    fasta, _ = data
    out = tmp_path / "run"
    cli("--data", fasta, "--out", out, "--max-steps", "3", *RUN)
    before = snapshot(out)
    line = refused(capsys, "--data", fasta, "--out", out, "--max-steps", "3", "--preset", "tiny")
    assert line.endswith(f"error: --out {out} already holds a run (resume.pt, config.json); pass --resume to "
                         "continue it, --overwrite to replace it, or choose another --out")
    assert snapshot(out) == before

    cli("--data", fasta, "--out", out, "--max-steps", "2", "--preset", "tiny", "--seed", "5", "--overwrite")
    saved = saved_options(out)
    assert (saved["seed"], saved["max_steps"], saved["warmup_steps"]) == (5, 2, TrainConfig.warmup_steps)
    assert json.loads((out / checkpoint.CONFIG_NAME).read_text())["training"]["steps"] == 2


def test_a_checkpoint_without_training_state_is_not_replaced_or_resumed(tmp_path, data, capsys):
    """Like the bundled model's folder: a config.json and weights, no resume.pt."""
    fasta, _ = data
    bundled = tmp_path / "acyp"
    bundled.mkdir()
    (bundled / checkpoint.CONFIG_NAME).write_text('{"model": {"preset": "mini"}}\n')
    (bundled / checkpoint.WEIGHTS_NAME).write_bytes(b"weights")
    before = snapshot(bundled)
    line = refused(capsys, "--data", fasta, "--out", bundled, "--max-steps", "2", "--preset", "tiny")
    assert line.endswith(f"error: --out {bundled} already holds a run (config.json); pass --resume to continue it, "
                         "--overwrite to replace it, or choose another --out")
    line = refused(capsys, "--data", fasta, "--out", bundled, "--max-steps", "2", "--resume")
    assert line.endswith(f"error: --resume: {bundled / RESUME_NAME} does not exist ({bundled} holds a checkpoint but no "
                         "training state); pass --overwrite instead of --resume to replace it, or choose another --out")
    assert snapshot(bundled) == before


@pytest.mark.parametrize("damage", ["truncated", "cut early", "garbage", "empty"])
def test_an_unreadable_resume_file_is_one_line_without_unsafe_advice(run, tmp_path, capsys, damage):
    out = tmp_path / "damaged"
    out.mkdir()
    whole = (run / RESUME_NAME).read_bytes()
    # cut early: torch raises OSError(EINVAL) for it, which read "(Invalid argument)"
    (out / RESUME_NAME).write_bytes({"truncated": whole[:len(whole) // 2], "cut early": whole[:5000],
                                     "garbage": b"optimizer state", "empty": b""}[damage])
    line = refused(capsys, "--out", out, "--resume", "--max-steps", "20")
    reason = "the file is empty" if damage == "empty" else "truncated, damaged, or not written by sedd.train"
    assert line.endswith(f"error: {out / RESUME_NAME} is not a readable resume file ({reason}); "
                         "start a new --out or pass --overwrite")
    assert "weights_only" not in capsys.readouterr().err + line


@pytest.mark.parametrize("option, value, why", [
    ("--max-steps", "-1", "is not a whole number above 0"),
    ("--max-steps", "0", "is not a whole number above 0"),
    ("--minutes", "-1", "is not a number above 0"),
    ("--minutes", "nan", "is not a number above 0"),
    ("--tokens-per-batch", "0", "is not a batch size from 1 to 1,048,576 residues"),
    ("--tokens-per-batch", "100000000000000", "is not a batch size from 1 to 1,048,576 residues"),
    ("--max-len", "0", "is not a length from 1 to 100,000 residues"),
    ("--max-len", "100000000000", "is not a length from 1 to 100,000 residues"),
    ("--eval-every", "0", "is not a whole number above 0"),
    ("--warmup-steps", "-5", "is not a whole number, 0 or more"),
    ("--patience", "-1", "is not a whole number, 0 or more"),
    ("--checkpoint-minutes", "-1", "is not a number, 0 or more"),
    ("--lr", "0", "is not a learning rate above 0 and at most 10"),
    ("--dropout", "1", "is not a number from 0 up to (not including) 1"),
])
def test_budgets_and_counts_out_of_range_are_refused(tmp_path, data, capsys, option, value, why):
    fasta, _ = data
    out = tmp_path / "run"
    line = refused(capsys, "--data", fasta, "--out", out, "--preset", "tiny", "--max-steps", "3", option, value)
    assert line.endswith(f"error: argument {option}: {value!r} {why}")
    assert not out.exists()


@pytest.mark.parametrize("option, value, message", [
    ("--alphabet", "AAB", "argument --alphabet: alphabet residues must be unique and non-empty, got 'AAB'"),
    ("--device", "foo", f"argument --device: unknown device 'foo'; use --device {' or '.join(checkpoint.available_devices())}"),
])
def test_an_unusable_alphabet_or_device_is_one_line(tmp_path, data, capsys, option, value, message):
    fasta, _ = data
    line = refused(capsys, "--data", fasta, "--out", tmp_path / "run", "--preset", "tiny", "--max-steps", "3",
                   option, value)
    assert line.endswith(f"error: {message}")


def test_a_device_this_machine_lacks_is_one_line(tmp_path, data, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    fasta, _ = data
    line = refused(capsys, "--data", fasta, "--out", tmp_path / "run", "--preset", "tiny", "--max-steps", "3",
                   "--device", "cuda")
    why = "no CUDA GPU visible" if torch.version.cuda or getattr(torch.version, "hip", None) else "torch built without CUDA"
    assert line.endswith(f"error: argument --device: cuda is not available on this machine ({why}); use --device cpu")


@pytest.mark.parametrize("requested, env, expected", [
    ("cuda", {}, "cuda:0"),
    ("cuda", {"LOCAL_RANK": "1", "WORLD_SIZE": "2"}, "cuda:1"),     # torchrun's second process
    ("cuda:1", {}, "cuda:1"),
    ("cpu", {"LOCAL_RANK": "1", "WORLD_SIZE": "2"}, "cpu"),
])
def test_cuda_without_an_index_is_this_processs_gpu(monkeypatch, requested, env, expected):
    """``--device cuda`` failed at start on a GPU machine: ``torch.cuda.set_device`` takes no device
    without an index. (The GPU is faked: the check that this machine has it passes.)"""
    monkeypatch.setattr(checkpoint, "check_device", torch.device)
    for name in ("LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert train.pick_device(requested) == torch.device(expected)


def test_one_gpu_for_every_torchrun_process_is_refused(monkeypatch):
    monkeypatch.setattr(checkpoint, "check_device", torch.device)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match=r"--device cuda:0 under torchrun puts every process on one GPU; give "
                                         r"--device cuda \(each process then takes the GPU of its LOCAL_RANK\)"):
        train.pick_device("cuda:0")


def test_the_same_data_under_another_spelling_resumes(tmp_path, data):
    fasta, _ = data
    out = tmp_path / "run"
    cli("--data", fasta, "--out", out, "--max-steps", "3", *RUN)
    cli("--data", fasta.parent / ".." / fasta.parent.name / fasta.name, "--out", out, "--resume", "--max-steps", "5")
    assert json.loads((out / checkpoint.CONFIG_NAME).read_text())["training"]["steps"] == 5


def test_a_run_whose_data_moved_resumes_from_another_working_directory(tmp_path, data, capsys, monkeypatch):
    """The saved --data is relative to where the run started, and its absolute path is gone too (the
    project moved): the run asks for the path from here, and takes it (before: refused as a changed
    option)."""
    fasta, _ = data
    project, other = tmp_path / "project", tmp_path / "other"
    (project / "data").mkdir(parents=True)
    other.mkdir()
    (project / "data" / "f.fasta").write_bytes(fasta.read_bytes())
    monkeypatch.chdir(project)
    cli("--data", "data/f.fasta", "--out", tmp_path / "run", "--max-steps", "3", *RUN)
    project.rename(tmp_path / "moved")
    monkeypatch.chdir(other)
    line = refused(capsys, "--out", tmp_path / "run", "--resume", "--max-steps", "5")
    assert line.endswith(f"error: --resume: the run's --data data/f.fasta is not found from {other}; "
                         "give --data with its path from here")
    cli("--data", "../moved/data/f.fasta", "--out", tmp_path / "run", "--resume", "--max-steps", "5")
    assert json.loads((tmp_path / "run" / checkpoint.CONFIG_NAME).read_text())["training"]["steps"] == 5


def test_a_resume_needs_neither_the_init_checkpoint_nor_the_saved_device(tmp_path, data, monkeypatch):
    """A resumed run's weights come from resume.pt, and its device is this machine's."""
    fasta, _ = data
    out = tmp_path / "run"
    cli("--data", fasta, "--out", out, "--max-steps", "3", *RUN)
    state = torch.load(out / RESUME_NAME, weights_only=True)
    saved = json.loads(state["config"])
    state["config"] = json.dumps({**saved, "init_from": str(tmp_path / "gone"), "device": "cuda"})
    torch.save(state, out / RESUME_NAME)          # as if started --init-from a moved baseline, on a GPU
    cli("--data", fasta, "--out", out, "--resume", "--max-steps", "5")
    training = json.loads((out / checkpoint.CONFIG_NAME).read_text())["training"]
    assert training["steps"] == 5 and training["device"] == "cpu"
    assert training["config"]["init_from"] == str(tmp_path / "gone")        # still recorded: how the run began


def test_overwrite_drops_the_old_training_state_once_the_new_run_starts(tmp_path, data, monkeypatch):
    """A new run killed before its first save must not leave the old run's resume.pt to be continued."""
    fasta, _ = data
    out = tmp_path / "run"
    cli("--data", fasta, "--out", out, "--max-steps", "3", *RUN)
    monkeypatch.setattr(Trainer, "run", lambda self, *_: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        cli("--data", fasta, "--out", out, "--max-steps", "3", "--preset", "tiny", "--overwrite")
    assert not (out / RESUME_NAME).exists()


def test_an_overwrite_that_is_refused_leaves_the_old_run_resumable(tmp_path, data, capsys):
    """--overwrite deleted resume.pt before it checked the rest of the command, so a typo in --data, or
    a forgotten --data or budget, lost the run it was refused for."""
    fasta, _ = data
    out = tmp_path / "run"
    cli("--data", fasta, "--out", out, "--max-steps", "3", *RUN)
    for argv in (["--data", tmp_path / "typo.fasta", "--max-steps", "3"], ["--max-steps", "3"], ["--data", fasta]):
        refused(capsys, *argv, "--out", out, "--preset", "tiny", "--overwrite")
        assert (out / RESUME_NAME).exists(), argv
    cli("--out", out, "--resume", "--max-steps", "5")
    assert json.loads((out / checkpoint.CONFIG_NAME).read_text())["training"]["steps"] == 5


def test_the_trainer_refuses_to_resume_with_a_field_that_defines_the_run(run, data):
    """The Python API takes a whole TrainConfig: every field outside RESUME_MAY_CHANGE must match."""
    fasta, clusters = data
    saved = json.loads(torch.load(run / RESUME_NAME, weights_only=True)["config"])
    changed = {**saved, "resume": True, "max_steps": 20, "warmup_steps": 7, "seed": 0}
    with pytest.raises(ValueError, match=r"different recipe \(warmup_steps: 100 there, 7 now; seed: 3 there, 0 now\)"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            Trainer(TrainConfig(**changed))


def test_resume_refuses_data_that_changed_under_the_same_path(tmp_path, data, capsys):
    """The path matched, so a resume went on with other sequences: a new split under the run, trained
    sequences moved into validation, the best step chosen by ELBOs of different validation sets."""
    fasta, _ = data
    mine = tmp_path / "family.fasta"
    original = fasta.read_text()
    mine.write_text(original)
    out = tmp_path / "run"
    cli("--data", mine, "--out", out, "--max-steps", "3", *RUN)
    mine.write_text(">" + original.split(">", 2)[2])           # the first sequence gone
    assert refused(capsys, "--out", out, "--resume", "--max-steps", "5") == (
        f"error: --resume: {out / RESUME_NAME} was trained on other sequences than data {mine} now give (the file "
        "changed since the run started); restore it, or start a new run with --overwrite")
    mine.write_text(original.replace("\n", "\n\n"))          # the same sequences, laid out otherwise
    cli("--out", out, "--resume", "--max-steps", "5")
    assert json.loads((out / checkpoint.CONFIG_NAME).read_text())["training"]["steps"] == 5


def test_training_refuses_an_unwritable_out_before_it_trains(tmp_path, capsys, monkeypatch):
    (tmp_path / "afile").write_text("")
    monkeypatch.setattr(train, "train", lambda cfg: pytest.fail("trained before checking --out"))
    with pytest.raises(SystemExit) as e:
        train.main(["--data", "x.fasta", "--out", str(tmp_path / "afile" / "run"), "--preset", "tiny",
                    "--max-steps", "1"])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: --out {tmp_path / 'afile' / 'run' / 'config.json'} cannot be written: "
        f"{tmp_path / 'afile'} is a file, not a folder")


def test_overwrite_removes_the_old_models_card_hmm_evaluation_and_temporaries(tmp_path, data):
    """The new weights stood beside the old model's card, family.hmm (which sedd.evaluate then read)
    and eval/; a killed save's temporaries stayed for good."""
    fasta, _ = data
    out = tmp_path / "run"
    cli("--data", fasta, "--out", out, "--max-steps", "3", *RUN)
    (out / "eval").mkdir()
    for name in ("README.md", "family.hmm", "eval/report.md", ".resume.pt.k1ll.tmp"):
        (out / name).write_text("the old model's")
    cli("--data", fasta, "--out", out, "--max-steps", "3", *RUN, "--overwrite")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "history.json", "loss.png", "model.safetensors",
                                                     "resume.pt"]
    training = json.loads((out / checkpoint.CONFIG_NAME).read_text())["training"]
    assert training["best_val_elbo_probe"] is not None


def test_a_run_whose_last_save_failed_can_be_resumed_to_write_it(tmp_path, data, monkeypatch):
    """A full disk at the final save, after resume.pt: the checkpoint stayed the one of an earlier save
    (saves are atomic), and --resume refused, the budget being spent: no command could write it."""
    fasta, _ = data
    out = tmp_path / "run"
    save = checkpoint.save

    def full_disk_at_step_3(directory, model, alphabet, schedule, histogram=None, meta=None):
        if meta["training"]["steps"] == 3:
            raise OSError(28, "No space left on device")
        return save(directory, model, alphabet, schedule, histogram, meta)
    monkeypatch.setattr(checkpoint, "save", full_disk_at_step_3)
    with pytest.raises(SystemExit):
        cli("--data", fasta, "--out", out, "--max-steps", "3", *RUN, "--checkpoint-minutes", "0")
    monkeypatch.setattr(checkpoint, "save", save)
    assert json.loads((out / checkpoint.CONFIG_NAME).read_text())["training"]["steps"] == 2    # the save before
    cli("--out", out, "--resume")
    assert json.loads((out / checkpoint.CONFIG_NAME).read_text())["training"]["steps"] == 3
    with pytest.raises(SystemExit):                 # now complete: a spent budget is refused again
        cli("--out", out, "--resume")


def test_a_summary_saved_before_the_first_validation_is_strict_json(tmp_path, data):
    """best_val_elbo_probe was Infinity, which JSON has not (Node's JSON.parse throws)."""
    fasta, _ = data
    trainer = Trainer(TrainConfig(data=str(fasta), out=str(tmp_path / "run"), preset="tiny", max_steps=1))
    json.dumps(trainer._summary(), allow_nan=False)
    assert trainer._summary()["best_val_elbo_probe"] is None


def test_under_torchrun_only_rank_0_prints_an_error(tmp_path, data, capsys, monkeypatch):
    fasta, _ = data
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(SystemExit) as stop:
        main(["--data", str(tmp_path / "typo.fasta"), "--out", str(tmp_path / "run"), "--max-steps", "2"])
    assert stop.value.code == 2 and "error" not in capsys.readouterr().err


@pytest.mark.parametrize("rank, prints", [("0", True), ("1", False)])
def test_under_torchrun_only_rank_0_prints_a_command_line_error_or_the_help(tmp_path, rank, prints, capsys, monkeypatch):
    """argparse's own messages (a typo in a flag, --help) came from every process torchrun started."""
    monkeypatch.setenv("RANK", rank)
    with pytest.raises(SystemExit) as stop:
        main(["--out", str(tmp_path / "run"), "--max-stpes", "2"])
    assert stop.value.code == 2 and ("unrecognized arguments: --max-stpes" in capsys.readouterr().err) == prints
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0 and ("--resume" in capsys.readouterr().out) == prints


def test_overwrite_into_a_folder_that_held_no_run_removes_nothing_of_it(tmp_path, data):
    """--overwrite removes an earlier run's card, HMM and evaluation; a folder that never held a run
    (a project root, say) keeps its README.md and eval/."""
    fasta, _ = data
    out = tmp_path / "project"
    (out / "eval").mkdir(parents=True)
    for name in ("README.md", "family.hmm", "eval/notes.md", ".draft.tmp"):
        (out / name).write_text("mine")
    cli("--data", fasta, "--out", out, "--max-steps", "2", *RUN, "--overwrite")
    assert all((out / name).read_text() == "mine" for name in ("README.md", "family.hmm", "eval/notes.md", ".draft.tmp"))


def test_max_len_keeps_longer_sequences_is_the_models_and_stays_the_resumed_runs(tmp_path, capsys):
    """A family with members over 128 residues lost them with no option to keep them (``sedd.data`` had
    one, so its split was not the one training could make)."""
    short, _ = profile_family(60, 20, seed=1)
    fasta = tmp_path / "family.fasta"
    write_fasta(fasta, short + [s + s for s in short[:20]])                 # 60 of 20 residues, 20 of 40
    out = tmp_path / "run"
    cli("--data", fasta, "--out", out, "--max-steps", "2", "--preset", "tiny", "--tokens-per-batch", "256",
        "--max-len", "30")
    note = capsys.readouterr().err
    assert "dropped 20 of 80 sequences: 20 longer than 30" in note and "--max-len N keeps longer ones" in note
    assert checkpoint.load(out).max_len == 30 and saved_options(out)["max_len"] == 30
    cli("--out", out, "--resume", "--max-steps", "3")
    assert saved_options(out)["max_len"] == 30 and checkpoint.load(out).max_len == 30
    assert "--max-len: 30 there, 64 now" in refused(capsys, "--out", out, "--resume", "--max-len", "64")
    cli("--data", fasta, "--out", tmp_path / "all", "--max-steps", "1", "--preset", "tiny", "--max-len", "40")
    assert "dropped" not in capsys.readouterr().err and checkpoint.load(tmp_path / "all").max_len == 40
