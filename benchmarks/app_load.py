"""Requests per minute the studio serves on this machine: ``python benchmarks/app_load.py``.

Serves the app from this process (``app.serve``: the port is the first free one from 7860 on),
then sends ``--requests`` ``generate`` calls from ``--clients`` concurrent gradio_client users,
each with its own seed, folding off. Prints one JSON object (and writes it to ``--json``). The
default model is the bundled checkpoint.

    python benchmarks/app_load.py --checkpoint runs/acyp-mini --requests 16 --clients 8
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))                    # run from a checkout without installing

import app  # noqa: E402
from sedd import checkpoint  # noqa: E402
from sedd.cli import COUNT, OUTPUT_FILE, STEPS, script  # noqa: E402


def length_of(spec) -> int | list[int]:
    """The template's length, or [shortest, longest] with [a-b] spans."""
    low, high = spec.length_range()
    return low if low == high else [low, high]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None, help="model (default: $SEDD_CHECKPOINT, else checkpoints/acyp)")
    p.add_argument("--requests", type=COUNT, default=16)
    p.add_argument("--clients", type=COUNT, default=8)
    p.add_argument("--concurrency", type=COUNT, default=2, help="the app's per-event concurrency limit")
    p.add_argument("--designs", type=COUNT, default=4)
    p.add_argument("--steps", type=STEPS, default=128)
    p.add_argument("--template", default=app.EXAMPLES[0]["template"], help="default: the loop-masked ACYP1 example")
    p.add_argument("--json", type=OUTPUT_FILE, help="also write the report to this JSON file")
    a = p.parse_args(argv)
    from gradio_client import Client

    model = checkpoint.load(a.checkpoint, device="cuda" if torch.cuda.is_available() else "cpu")
    cb = app.StudioCallbacks(model, {"off": None})
    try:                                  # before the server and the load: the app's own rules for a request
        spec, _ = cb.check(a.template, a.designs, a.steps, 0)
    except ValueError as e:
        cb.close()
        p.error(str(e))
    demo = app.build_demo(cb, concurrency=a.concurrency, max_queue=max(64, a.requests), per_session=a.requests)
    url = app.serve(demo)
    try:
        clients = [Client(url, verbose=False) for _ in range(a.clients)]
        call = lambda i: clients[i % a.clients].predict(a.template, a.designs, a.steps, 1000 + i, api_name="/generate")
        call(0)                                   # warm-up (first forward, thread pools)
        start = time.perf_counter()
        with ThreadPoolExecutor(a.clients) as pool:
            results = list(pool.map(call, range(a.requests)))
        seconds = time.perf_counter() - start
    finally:
        demo.close()
        cb.close()
    assert all(r[0].count(">design_") == a.designs for r in results)
    report = {"requests": a.requests, "clients": a.clients, "concurrency_limit": a.concurrency,
              "designs_per_request": a.designs, "steps": a.steps, "template_length": length_of(spec), "seconds": round(seconds, 2),
              "requests_per_minute": round(60 * a.requests / seconds, 1), "checkpoint": model.source,
              "device": str(next(model.model.parameters()).device), "torch_threads": torch.get_num_threads()}
    print(json.dumps(report))
    if a.json:
        checkpoint.atomic_write_text(Path(a.json), json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    sys.exit(script(main))
