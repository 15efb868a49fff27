"""Small models and a running app for the studio tests (no network, no ../shared)."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import torch

from sedd import checkpoint
from sedd.alphabet import PROTEIN
from sedd.model import ScoreNetwork, preset
from sedd.schedule import LogLinearSchedule

ESM_VOCAB = ("<cls> <pad> <eos> <unk> L A G V S E R T I D P K Q N F Y M H W C X B U Z O . - <null_1> <mask>").split()


def tiny_esmfold(seed: int = 0):
    """A random ``EsmForProteinFolding`` of ~0.1 M parameters: real code path, meaningless structures."""
    from transformers import EsmConfig, EsmForProteinFolding

    config = EsmConfig(
        vocab_size=len(ESM_VOCAB), hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=37,
        pad_token_id=1, mask_token_id=32, is_folding_model=True, vocab_list=ESM_VOCAB,
        esmfold_config={"fp16_esm": False, "lddt_head_hid_dim": 16, "trunk": {
            "num_blocks": 1, "sequence_state_dim": 32, "pairwise_state_dim": 16, "sequence_head_width": 8,
            "pairwise_head_width": 8, "position_bins": 4, "chunk_size": 16, "max_recycles": 1,
            "structure_module": {"sequence_dim": 32, "pairwise_dim": 16, "ipa_dim": 8, "resnet_dim": 8,
                                 "num_heads_ipa": 2, "num_qk_points": 2, "num_v_points": 2, "num_blocks": 1}}})
    torch.manual_seed(seed)
    model = EsmForProteinFolding(config).eval()
    with torch.no_grad():   # the lDDT head starts at zero (every pLDDT 0.5); give it some spread
        for p in model.lddt_head.parameters():
            p.normal_(0, 0.5)
    return model


def save_tiny_esmfold(directory: Path) -> Path:
    tiny_esmfold().save_pretrained(directory)
    return directory


def tiny_checkpoint_dir(directory: Path, max_len: int = 128) -> Path:
    """A random tiny score model saved as a checkpoint directory."""
    torch.manual_seed(0)
    net = ScoreNetwork(preset("tiny", vocab_size=PROTEIN.size, dropout=0.0, max_len=max_len)).eval()
    return checkpoint.save(directory, net, PROTEIN, LogLinearSchedule(), {40: 3, 50: 2},
                           meta={"training": {"note": "random tiny model for tests"}})


def launch_app(model, backends: dict, concurrency: int = 2, max_queue: int = 32, per_session: int = 4,
               **callback_kwargs):
    """Build the studio over ``model`` and serve it from this process; returns (demo, url)."""
    import app

    cb = app.StudioCallbacks(model, backends, min_interval=0.0, js_url=app.js_url_for_3dmol(), **callback_kwargs)
    demo = app.build_demo(cb, "off", concurrency=concurrency, max_queue=max_queue, per_session=per_session)
    return demo, app.serve(demo)


def fasta_sequences(text: str) -> list[str]:
    """The sequences of a FASTA text, headers dropped."""
    return [line for line in text.splitlines() if line and not line.startswith(">")]


def wait_for_stable(count, settle_s: float = 1.5, timeout_s: float = 60.0) -> int:
    """Poll ``count()`` until it has not changed for ``settle_s`` seconds; return it."""
    deadline = time.monotonic() + timeout_s
    last, since = count(), time.monotonic()
    while time.monotonic() - since < settle_s:
        assert time.monotonic() < deadline, f"still growing after {timeout_s} s: {last}"
        time.sleep(0.05)
        if count() != last:
            last, since = count(), time.monotonic()
    return last


def refused_inputs(response) -> list[tuple[str, str]]:
    """A request refused before it was queued: (parameter, reason) of each input the validator refused."""
    assert response.status_code == 422, response.text[:500]
    return [(v["parameter_name"], v["message"]) for v in response.json()["detail"] if not v["is_valid"]]


def raw_call(url: str, data: list) -> list:
    """A raw HTTP call of generate (every input by position, no gradio_client); its final output."""
    import requests

    r = requests.post(f"{url}gradio_api/call/generate", json={"data": data}, timeout=30)
    assert r.status_code == 200, r.text[:500]
    stream = requests.get(f"{url}gradio_api/call/generate/{r.json()['event_id']}", timeout=120).text
    assert "event: complete\n" in stream, stream[-500:]
    final = stream.rpartition("event: complete\n")[2]
    return json.loads(final.split("data: ", 1)[1].splitlines()[0])


RUN_TAG = re.compile(r"_seed\d+_\d{8}-\d{6}(?=\.)")      # a run's downloads: designs_seed42_20261203-083012.fasta


def download_kinds(files) -> list[str]:
    """The names of a run's downloads without the run's seed and time (``designs.fasta``, ``design_1.pdb``), sorted."""
    return sorted(RUN_TAG.sub("", Path(f).name) for f in files)


def download(files, kind: str) -> Path:
    """The one download of ``kind`` (``"settings.json"``, ``"design_1.pdb"``) among a run's ``files``."""
    [path] = [Path(f) for f in files if RUN_TAG.sub("", Path(f).name) == kind]
    return path
