"""Checks that need a CUDA GPU (marker ``gpu``; ``benchmarks/gpu_check.sh`` runs them). Skipped without one.

``SEDD_GPU_TEST_DEVICE=cpu`` runs the same code on the CPU: a dry run of the tests themselves, not a
GPU check.
"""
from __future__ import annotations

import os

import pytest
import torch

from conftest import profile_family, write_fasta
from sedd import checkpoint
from sedd.alphabet import PROTEIN
from sedd.model import ScoreNetwork, preset
from sedd.sampler import run
from sedd.train import TrainConfig, Trainer

DEVICE = torch.device(os.environ.get("SEDD_GPU_TEST_DEVICE", "cuda"))
ON_GPU = DEVICE.type == "cuda"
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(ON_GPU and not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_sampler_on_the_gpu_draws_what_the_cpu_draws():
    """Draws are float64 on the CPU from one seeded generator; only the network runs on the GPU."""
    torch.manual_seed(0)
    net = ScoreNetwork(preset("small", vocab_size=PROTEIN.size, dropout=0.0)).eval()
    template = PROTEIN.parse_template("MKV" + "_" * 40 + "GFVQGVAFR" + "_" * 30, net.config.max_len)
    templates = [template.tokens] * 4
    cpu = run(net, templates, mask_id=PROTEIN.mask_id, steps=64, seed=7)
    gpu = run(net.to(DEVICE), templates, mask_id=PROTEIN.mask_id, steps=64, seed=7)
    assert torch.equal(cpu.tokens, gpu.tokens) and gpu.tokens.device.type == "cpu"


def _config(data, out, **kw) -> TrainConfig:
    # all steps are warm-up steps: the LR then does not depend on the budget, which differs below
    return TrainConfig(data=str(data), out=str(out), preset="tiny", tokens_per_batch=1024, warmup_steps=100,
                       eval_every=1000, lr=3e-3, dropout=0.1, checkpoint_minutes=60, device=str(DEVICE), **kw)


def test_bf16_training_then_resume_on_the_gpu(tmp_path):
    """A few bf16-autocast steps, save, --resume: the generator states come back (a CPU ByteTensor
    for the mask generator's state) and the run continues close to the uninterrupted one."""
    sequences, _ = profile_family(200, 32, seed=0)
    data = tmp_path / "family.fasta"
    write_fasta(data, sequences)
    with pytest.warns(UserWarning, match="near-duplicates"):
        straight = Trainer(_config(data, tmp_path / "straight", max_steps=12))
        initial = {k: v.detach().cpu().clone() for k, v in straight.model.state_dict().items()}
        straight.run()
        first = Trainer(_config(data, tmp_path / "split", max_steps=6))
        first.run()
        saved_gen = first.gen.get_state()
        resumed = Trainer(_config(data, tmp_path / "split", max_steps=12, resume=True))
    assert resumed.step == 6 and torch.equal(resumed.gen.get_state(), saved_gen)
    assert resumed.gen.device.type == DEVICE.type
    resumed.run()
    assert resumed.step == 12
    # GPU kernels (atomics in the embedding backward) are not bitwise reproducible: compare the gap
    # between the two runs with how far the weights moved in training
    moved = sum((v.cpu() - initial[k]).abs().sum() for k, v in straight.model.state_dict().items())
    gap = sum((v.cpu() - resumed.model.state_dict()[k].cpu()).abs().sum() for k, v in straight.model.state_dict().items())
    assert gap < 0.05 * moved, (gap, moved)
    summary = checkpoint.load(tmp_path / "split").meta["training"]
    assert summary["steps"] == 12 and summary["device"].startswith(DEVICE.type)


def test_esmfold_fp16_path_on_the_gpu():
    from sedd.fold import ESMFoldBackend
    from studio_helpers import tiny_esmfold

    backend = ESMFoldBackend(model=tiny_esmfold(), device=DEVICE)
    stem = {p.dtype for p in backend._model.esm.parameters()}
    assert stem == ({torch.float16} if ON_GPU else {torch.float32})
    [result] = backend.fold(["MKVLAGGGSTRDEWYACDEFGHIK"])
    assert len(result.plddt) == 24 and all(0.0 <= p <= 100.0 for p in result.plddt)
    assert 0.0 <= result.ptm <= 1.0 and result.pdb.startswith(("HEADER", "ATOM", "PARENT", "MODEL"))


def test_app_generate_through_gradio_client_with_the_model_on_the_gpu(tmp_path):
    """The studio's API with the score model on the GPU returns what the same request gives on the CPU."""
    from gradio_client import Client

    import app
    from studio_helpers import launch_app, tiny_checkpoint_dir

    directory = tiny_checkpoint_dir(tmp_path / "ckpt")
    on_gpu = checkpoint.load(directory, device=DEVICE)
    on_cpu = checkpoint.load(directory)
    demo, url = launch_app(on_gpu, {"off": None})
    try:
        fasta = Client(url, verbose=False).predict("MKV__GF_R____LLAGW__KDE", 3, 16, 42, api_name="/generate")[0]
    finally:
        demo.close()
    cb = app.StudioCallbacks(on_cpu, {"off": None}, min_interval=0.0, output_root=tmp_path / "cpu")
    *_, final = cb.generate(template="MKV__GF_R____LLAGW__KDE", num_samples=3, steps=16, seed=42)
    assert fasta.count(">design_") == 3 and "_" not in "".join(fasta.splitlines()[1::2])
    assert fasta == final[0]
    assert next(on_gpu.model.parameters()).device.type == DEVICE.type
