"""bench/sampling.py — rollout tokens/s: zeroplay's `model.sample` against plain `model.generate`.

Both run in this one process on the same model, prompts and settings (64 prompts x 8 samples,
up to 128 new tokens, temperature 1.0, batches of 64 sequences), in two scenarios:

  fixed    every response is forced to exactly 128 new tokens (EOS suppressed until then), so
           both do the same work: this measures the per-token cost of the decoding loop
  natural  toy solver prompts that end at EOS or a stop string (both paths get the same stop
           strings), as rollouts really do; zeroplay drops finished rows from the batch and
           prefills each prompt once for its 8 samples, generate() keeps finished rows in the
           batch until the longest ends

tokens/s counts the response tokens actually produced (up to and including EOS).

    python bench/sampling.py                 # the toy base (built on first use)
    python bench/sampling.py --model PATH --repeats 3
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import model as M  # noqa: E402
import tasks as T  # noqa: E402


@dataclass
class Config:
    model: str = "toy"            # model to benchmark (hub id, folder, .gguf, or "toy")
    prompts: int = 64             # distinct prompts
    samples: int = 8              # samples per prompt
    new_tokens: int = 128         # max new tokens per response
    batch_size: int = 64          # sequences per decoding batch (both paths)
    repeats: int = 2              # timed repeats per path (the median is reported)
    threads: int = 0              # torch threads (0 = torch's default)
    device: str = "auto"          # auto, cpu or cuda


def run_generate(model, tok, prompts, cfg, fixed, stop):
    """Plain transformers generate(), batch by batch, n samples per prompt, with the same stop
    strings in the natural scenario; returns the response tokens produced."""
    rows = [p for p in prompts for _ in range(cfg.samples)]
    eos = tok.eos_token_id
    produced = 0
    for i in range(0, len(rows), cfg.batch_size):
        enc = tok(rows[i:i + cfg.batch_size], return_tensors="pt", padding=True).to(model.device)
        out = model.generate(**enc, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                             max_new_tokens=cfg.new_tokens,
                             min_new_tokens=cfg.new_tokens if fixed else 0,
                             pad_token_id=tok.pad_token_id,
                             **({} if fixed else {"stop_strings": stop, "tokenizer": tok}))
        resp = out[:, enc["input_ids"].shape[1]:]                                 # [b, T]
        for r in resp.tolist():  # count up to and including the first EOS (or the pad after a stop)
            end = r.index(eos) + 1 if eos in r else len(r)
            if not fixed and tok.pad_token_id in r[:end]:
                end = r.index(tok.pad_token_id)
            produced += end
    return produced


def run_ours(model, tok, prompts, cfg, fixed, stop):
    ro = M.sample(model, tok, prompts, n=cfg.samples, temperature=1.0, top_p=1.0,
                  max_new_tokens=cfg.new_tokens, stop=None if fixed else stop,
                  batch_size=cfg.batch_size, min_new_tokens=cfg.new_tokens if fixed else 0)
    return int(ro.lengths.sum())


def timed(fn, repeats):
    fn()  # warm-up (allocator, kernels)
    results = []
    for _ in range(repeats):
        t = time.perf_counter()
        n = fn()
        results.append((n / (time.perf_counter() - t), n))
    results.sort()
    return results[len(results) // 2]


def main(cfg: Config):
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    M.seed_everything(0)
    model, tok = M.load_policy(cfg.model, device=cfg.device)
    style = M.prompt_style(tok)
    prompts = [T.solve_prompt("deduction", t, style)
               for t in T.make_code_tasks(cfg.prompts, seed=7, split="heldout")]
    stop = T.stop_strings("solve", "deduction", style)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model {cfg.model} ({n_params / 1e6:.1f}M params) on {model.device}, "
          f"{cfg.prompts} prompts x {cfg.samples} samples x <= {cfg.new_tokens} new tokens, "
          f"batch {cfg.batch_size}, torch threads {torch.get_num_threads()}")
    rows = {}
    for scenario, fixed in (("fixed", True), ("natural", False)):
        gen_tps, gen_n = timed(lambda: run_generate(model, tok, prompts, cfg, fixed, stop),
                               cfg.repeats)
        our_tps, our_n = timed(lambda: run_ours(model, tok, prompts, cfg, fixed, stop),
                               cfg.repeats)
        rows[scenario] = (our_tps, gen_tps)
        print(f"{scenario:8s} zeroplay {our_tps:8.0f} tok/s ({our_n} tokens)   "
              f"generate {gen_tps:8.0f} tok/s ({gen_n} tokens)   ratio {our_tps / gen_tps:.2f}")
    f, n = rows["fixed"], rows["natural"]
    print(f"RESULT zeroplay_tok_per_s={f[0]:.0f} generate_tok_per_s={f[1]:.0f} "
          f"ratio={f[0] / f[1]:.2f} natural_zeroplay_tok_per_s={n[0]:.0f} "
          f"natural_generate_tok_per_s={n[1]:.0f} natural_ratio={n[0] / n[1]:.2f}")


if __name__ == "__main__":
    main(M.parse_flags(Config, doc=__doc__.split("\n\n")[0]))
