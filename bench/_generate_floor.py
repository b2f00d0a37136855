"""The floor of a generation pass: model forward to the hook + SAE encode, nothing else (run in the main venv).

Prints one JSON line. ``floor_seconds`` uses SAELens's own ``sae.encode``; ``floor_fused_seconds`` the
fused dense encode interpedia's pass uses (``addmm`` + in-place ReLU, no sparse extraction, no statistics).
Both forwards stop inside the hook, as the pass does. Imports and loading are not timed. Each is timed
with all threads and with one, and the faster is reported (the pass chooses the same way).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import numpy as np
import torch

from interpedia.generate.model import HookedModel
from interpedia.generate.sae import LoadedSae


def main() -> None:
    """Time forward, forward + SAELens encode, forward + fused encode over every token."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--sae", required=True)
    parser.add_argument("--tokens", required=True)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    model = HookedModel.load(args.model)
    sae = LoadedSae.load(args.sae)
    hook = sae.hook_name
    tokens = np.load(args.tokens)
    w_t = sae.sae.W_enc.detach().T.contiguous()
    b = sae.sae.b_enc.detach()[:, None]
    out_buf = torch.empty(w_t.shape[0] * args.batch_size * tokens.shape[1])

    def run(encode: str) -> float:
        started = time.perf_counter()
        with torch.inference_mode():
            for start in range(0, len(tokens), args.batch_size):
                toks = torch.from_numpy(tokens[start : start + args.batch_size].astype(np.int64))
                x = model.activations(toks, hook)
                if encode == "saelens":
                    sae.sae.encode(x)
                elif encode == "fused":  # interpedia's encode: into a reused buffer, then ReLU in place
                    out = out_buf[: w_t.shape[0] * x.shape[0]].view(w_t.shape[0], x.shape[0])
                    torch.addmm(b, w_t, sae.sae.process_sae_in(x).T, out=out).relu_()
        return time.perf_counter() - started

    run("saelens")  # warm-up
    out: dict[str, float] = {}
    max_threads = torch.get_num_threads()
    # interpedia's pass picks 1 or all threads by timing (a busy machine favours 1): the floor gets the same
    # choice, the faster of the two, so pass / floor never flatters the pass.
    for name, encode in (("forward_seconds", "none"), ("floor_seconds", "saelens"), ("floor_fused_seconds", "fused")):
        by_threads = {}
        for threads in sorted({max_threads, 1}, reverse=True):
            torch.set_num_threads(threads)
            by_threads[threads] = round(statistics.median(run(encode) for _ in range(args.repeats)), 3)
        torch.set_num_threads(max_threads)
        out[name] = min(by_threads.values())
        out[f"{name}_by_threads"] = by_threads  # type: ignore[assignment]
    out["n_tokens"] = int(tokens.size)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out["torch_threads"] = torch.get_num_threads()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
