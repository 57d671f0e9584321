"""bench/gpu.py — zeroplay on one GPU at the Qwen2.5-0.5B and -1.5B shapes, random weights.

Nothing is downloaded: the shapes are the published Qwen2Config dimensions, randomly initialised
with fp32 master weights (bf16 autocast on CUDA, as `model.pick_dtype` and the AZR preset run);
the tokenizer is the char tokenizer padded to Qwen's 151,936 ids, so every sampled id decodes.

  plan      for each shape, before anything runs: `model.memory_estimate` of one update at the
            micro-batch and checkpointing `model.choose_micro_batch` picks for a 24 GiB card,
            at self-play's lengths (2048-token prompt + the AZR preset's longest response) and
            rlvr's (256 + its max_new_tokens); 1.5B at fp32 does not fit, and says so
  sample    `model.sample` against `model.generate`: same prompts, batches and bf16 autocast,
            both forced to full length; one untimed warm-up each (it counts the synchronising
            CUDA calls torch flags), then --repeats timed runs, the fastest reported; the
            sampler's own `Rollout.host_syncs` per decode step
  update    `rlvr.update_policy` with the AZR preset's settings (token mean, lr 1e-6, AdamW
            from `rlvr.make_optimizer`) at both lengths and the micro-batch picked for 24 GiB
            (where nothing fits: micro-batch 1 with checkpointing, labelled *): time, peak
            `torch.cuda.max_memory_allocated` beside the estimate, fraction of weights changed
  selfplay  two `selfplay.self_play_step`s, AZR preset except what a random model forces
            (printed), buffers pre-seeded from the toy generator: time, peak, per-phase times

First `check_sampler`: tokens sampled from a tiny fp32 model on the CPU must have the log-probs
of a teacher-forced forward (a transformers version that ignored model.py's KV-cache argument
once made every token decode without its context: fast and wrong).

    python bench/gpu.py --device cpu --tiny          # tiny shapes and sizes, CPU, < 60 s
    PYTHONUNBUFFERED=1 python bench/gpu.py 2>&1 | tee results/gpu.log   # ~5 min on an H100

Prints a table (model, phase, seconds, tokens/s, peak GiB, estimate GiB), writes every figure as
JSON (on a GPU by default results/gpu_<card>.json, the card named in it) and ends with one line
`RESULT key=value ...`. Left out: real weights and text (a random model writes no valid task, so
the estimate phase and the verifier cost nothing, and every response runs to its cap), MFU,
optimizers other than AdamW, more than one GPU.
"""
from __future__ import annotations

import dataclasses
import gc
import json
import random
import re
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

import model as M  # noqa: E402
import rlvr  # noqa: E402
import selfplay  # noqa: E402


@dataclass
class Config:
    device: str = "auto"           # auto (cuda if available) | cpu | cuda[:N]
    tiny: bool = False             # tiny shapes and sizes, the same code path (the CPU test)
    models: str = "0.5b,1.5b"      # comma-separated shapes: 0.5b, 1.5b
    repeats: int = 2               # timed runs of sampling and of each update after a warm-up
    out: str = "auto"              # JSON of every figure; auto: results/gpu_<card>.json on CUDA
    seed: int = 0                  # seeds Python, numpy and torch


# Qwen/Qwen2.5-0.5B and -1.5B config.json, written out so that nothing is downloaded.
QWEN25 = dict(vocab_size=151936, tie_word_embeddings=True, rope_theta=1_000_000.0,
              rms_norm_eps=1e-6, hidden_act="silu", use_sliding_window=False)
SHAPES = {
    "0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                 num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768),
    "1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                 num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=131072),
}
# --tiny: the same architecture (GQA with 2 KV heads, SwiGLU, tied embeddings), tiny widths and
# the char tokenizer's own vocabulary
TINY_SHAPES = {
    "0.5b": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096),
    "1.5b": dict(hidden_size=96, intermediate_size=192, num_hidden_layers=2,
                 num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=4096),
}
BUDGET_GIB = 24.0  # the card the memory plan is made for
# update lengths (prompt, response) as selfplay.main and rlvr.main size them for fit_memory
SP_AZR, RL_AZR = selfplay.PRESETS["azr"], rlvr.PRESETS["azr"]
LENGTHS = {"selfplay": (2048, max(SP_AZR["propose_max_tokens"], SP_AZR["solve_max_tokens"])),
           "rlvr": (256, RL_AZR["max_new_tokens"])}
# The full sizes keep the run near 5 minutes on an H100 (at most ~8), from the last run there
# (results/gpu_h100.log, bf16 weights): a decode step took 25-90 ms, so one batch of 64 rows
# (the scripts' sample_batch) x 256 tokens takes 5-20 s a run; updates ran at 30-40k tokens/s.
FULL = dict(prompts=8, samples=8, new_tokens=256, prompt_len=128, sample_batch=64,
            update_seqs=32, length_div=1, sp=dict(propose_max_tokens=128, solve_max_tokens=128),
            sp_why="a random model writes neither EOS nor </answer>, so every response runs to "
                   "its cap: at the preset's 1024 tokens two steps would take minutes")
TINY = dict(prompts=4, samples=2, new_tokens=16, prompt_len=16, sample_batch=4,
            update_seqs=4, length_div=32,
            sp=dict(propose_max_tokens=16, solve_max_tokens=16, batch_size=1, n_estimate=2,
                    k_refs=1, n_inputs=4), sp_why="tiny sizes")


def measure(fn, dev):
    """(seconds, fn(), peak GiB), the device synchronised on both sides; the peak is CUDA's
    max_memory_allocated during fn (on a CPU: the process's peak RSS so far)."""
    gc.collect()  # (no empty_cache: a timed run should not pay for cudaMalloc)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    M.reset_peak_memory(dev)
    t = time.perf_counter()
    out = fn()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    dt, mem = time.perf_counter() - t, M.memory_stats(dev)
    return dt, out, mem.get("mem/cuda_peak_gib", mem["mem/rss_peak_gib"])


def count_syncs(fn, dev):
    """(fn(), the synchronising CUDA calls torch flags during it); None on a CPU."""
    if dev.type != "cuda":
        return fn(), None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            out = fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return out, sum("synchronizing" in str(w.message) for w in caught)


# ----------------------------------------------------------------------------------------------
# Tokenizer, models, the sampler check
# ----------------------------------------------------------------------------------------------
def build_tokenizer(vocab_size: int | None = None):
    """The char tokenizer; with a larger `vocab_size`, the same tokenizer (pre-tokenizer,
    decoder, <bos> template, special tokens) plus filler tokens `<|i|>` up to vocab_size - 1.
    Text never encodes to a filler (it splits into characters); a sampled filler decodes."""
    import pretrain
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    base = pretrain.build_char_tokenizer()
    if vocab_size is None or vocab_size == len(base):
        return base
    if vocab_size < len(base):
        raise ValueError(f"vocab_size {vocab_size} is smaller than the char vocabulary "
                         f"({len(base)})")
    bk = base.backend_tokenizer
    vocab = dict(bk.get_vocab())
    vocab.update({f"<|{i}|>": i for i in range(len(vocab), vocab_size)})
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer, tk.decoder = bk.pre_tokenizer, bk.decoder
    tk.post_processor = bk.post_processor
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<bos>", eos_token="<eos>",
                                   pad_token="<pad>", unk_token="<unk>", padding_side="left")


def qwen_config(name: str, tiny: bool = False, tok=None):
    """The Qwen2Config of a shape; with a tokenizer, its special ids (and, tiny, its vocab)."""
    from transformers import Qwen2Config

    shape = {**QWEN25, **(TINY_SHAPES if tiny else SHAPES)[name]}
    if tok is not None:
        shape.update(bos_token_id=tok.bos_token_id, pad_token_id=tok.pad_token_id,
                     eos_token_id=tok.eos_token_id)
    if tiny:
        shape["vocab_size"] = len(tok)
    return Qwen2Config(**shape)


def build_model(config, tok, dev):
    """A random Qwen2ForCausalLM in fp32, built on the device, set up as model.load_policy
    leaves a policy (eval mode, the tokenizer's special ids for generate)."""
    from transformers import AutoModelForCausalLM

    with torch.device(dev):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    for k in ("pad_token_id", "eos_token_id", "bos_token_id"):
        setattr(model.generation_config, k, getattr(tok, k))
    return model.to(dev).eval()


def check_sampler() -> float:
    """Max |sampled - teacher-forced log-prob| of a tiny fp32 model on the CPU: ~1e-6 when the
    KV cache works, ~0.1 when it is ignored. (On CUDA the sampler's bf16 autocast would blur
    it; the self-play phase reports the GPU's own mismatch.)"""
    tok = build_tokenizer()
    model = build_model(qwen_config("0.5b", True, tok), tok, torch.device("cpu"))
    ro = M.sample(model, tok, ["ab", "hello world"], n=2, max_new_tokens=8, seed=0)
    with torch.no_grad():
        lp, _ = M.forward_logprobs(model, ro.input_ids, ro.attention_mask, ro.prompt_len,
                                   with_entropy=False)
    diff = float(((lp - ro.old_logp).abs() * ro.response_mask).max())
    M.check(diff < 1e-3, f"sampler check failed: model.sample's log-probs differ from a "
                         f"teacher-forced forward by {diff:.3g} (does this transformers version "
                         f"ignore the KV cache argument?)")
    return diff


def set_checkpointing(model, on: bool) -> None:
    if on:
        M.enable_grad_checkpointing(model)
    else:  # transformers 5.24 renamed the method, as M.enable_grad_checkpointing knows
        (getattr(model, "activation_checkpointing_disable", None)
         or model.gradient_checkpointing_disable)()


# ----------------------------------------------------------------------------------------------
# Phases
# ----------------------------------------------------------------------------------------------
def memory_plan(names: list[str]) -> dict:
    """The 24 GiB plan of the real shapes (also under --tiny: it is arithmetic on configs)."""
    M.say(f"[gpu-bench] update memory for a {BUDGET_GIB:.0f} GiB card (model.memory_estimate, "
          f"fp32 master weights + AdamW, micro-batch by model.choose_micro_batch):")
    plan = {}
    for name in names:
        for run, (P, T) in LENGTHS.items():
            mb, ck, e = M.choose_micro_batch(qwen_config(name), BUDGET_GIB, P, T, 4)
            plan[f"{name}/{run}"] = {"micro_batch": mb, "grad_checkpointing": ck, **e}
            how = (f"micro-batch {mb}, checkpointing {'on' if ck else 'off'}" if mb else
                   "does NOT fit, even at micro-batch 1 with checkpointing")
            M.say(f"  {name} {run:8s} {P}+{T} tokens: {how}: {e['total']:.1f} GiB (static "
                  f"{e['weights'] + e['grads'] + e['optimizer']:.1f}, activations "
                  f"{e['activations']:.1f}, logits {e['logits']:.1f})")
    return plan


def phase_sampling(model, tok, sz: dict, dev, seed: int) -> dict:
    """model.sample against model.generate: same prompts, forced length, batches, autocast."""
    rng = random.Random(seed)
    chars = sorted(c for c in tok.get_vocab() if len(c) == 1 and c.isprintable() and c != " ")
    prompts = ["".join(rng.choice(chars) for _ in range(sz["prompt_len"] - 1))
               for _ in range(sz["prompts"])]
    n, T, batch = sz["samples"], sz["new_tokens"], sz["sample_batch"]

    def sample(ps):  # -> (tokens made, the sampler's host syncs)
        ro = M.sample(model, tok, ps, n=n, max_new_tokens=T, min_new_tokens=T,
                      batch_size=batch, seed=seed)
        return int(ro.lengths.sum()), ro.host_syncs

    def generate(ps):
        rows, made = [p for p in ps for _ in range(n)], 0
        with M.bf16_autocast(model):  # the precision M.sample samples in
            for i in range(0, len(rows), batch):
                enc = tok(rows[i:i + batch], return_tensors="pt", padding=True).to(dev)
                out = model.generate(**enc, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                                     max_new_tokens=T, min_new_tokens=T)
                made += out[:, enc["input_ids"].shape[1]:].numel()                # [b, T]
        return made, None

    res = {}
    for name, fn in (("sample", sample), ("generate", generate)):
        # the warm-up: one batch at full length (every shape the timed runs see)
        (_, host), flagged = count_syncs(lambda: fn(prompts[:max(1, batch // n)]), dev)
        r = res[name] = {"times": [], "peak_gib": 0.0, "host_syncs_per_step": host and host / T,
                         "cuda_syncs_per_step": flagged and flagged / T}
        for _ in range(sz["repeats"]):
            dt, (made, _), peak = measure(lambda: fn(prompts), dev)
            M.check(made == len(prompts) * n * T, f"{name}: {made} tokens, expected "
                                                  f"{len(prompts) * n * T}")
            r["times"].append(dt)
            r["peak_gib"] = max(r["peak_gib"], peak)
        r["s"] = min(r["times"])
        r["tok_per_s"] = len(prompts) * n * T / r["s"]
    s, g = res["sample"], res["generate"]
    res["ratio"] = s["tok_per_s"] / g["tok_per_s"]
    M.say(f"  sample {s['tok_per_s']:,.0f} tok/s, generate {g['tok_per_s']:,.0f} tok/s, ratio "
          f"{res['ratio']:.2f} | host syncs per decode step: sampler's count "
          f"{s['host_syncs_per_step']:.3f}; flagged by torch: sample {s['cuda_syncs_per_step']},"
          f" generate {g['cuda_syncs_per_step']}")
    return res


def phase_update(model, sz: dict, dev, seed: int) -> dict:
    """At each of LENGTHS: one warm-up update (AdamW allocates its states; it gives the changed
    fraction), then --repeats timed ones, at the micro-batch picked for 24 GiB."""
    out, gen = {}, torch.Generator().manual_seed(seed)
    for run, (P, T) in LENGTHS.items():
        P, T, N = P // sz["length_div"], T // sz["length_div"], sz["update_seqs"]
        mb, ck, est = M.choose_micro_batch(model.config, BUDGET_GIB, P, T, 4)
        preset = SP_AZR if run == "selfplay" else RL_AZR
        pg = rlvr.PG(micro_batch=mb or 1, grad_checkpointing=ck, lr=preset["lr"],
                     loss_agg=preset["loss_agg"], entropy_coef=preset["entropy_coef"])
        rlvr.check_pg(pg)
        set_checkpointing(model, ck)
        ids = torch.randint(0, model.config.vocab_size, (N, P + T), generator=gen).to(dev)
        adv = torch.tensor([1.0, -1.0] * (N // 2) + [1.0] * (N % 2))              # [N]
        exp = rlvr.Experience(ids, torch.ones_like(ids), P, torch.ones(N, T, device=dev),
                              torch.zeros(N, T, device=dev), adv.to(dev))
        opt = rlvr.make_optimizer(model, pg.lr)
        before = [p.detach().to("cpu", copy=True) for p in model.parameters()]
        t_warm, _, _ = measure(lambda: rlvr.update_policy(model, opt, [exp], pg), dev)
        changed = sum(int((p.detach() != b.to(dev)).sum())
                      for p, b in zip(model.parameters(), before))
        frac = changed / sum(b.numel() for b in before)
        del before
        runs = [measure(lambda: rlvr.update_policy(model, opt, [exp], pg), dev)
                for _ in range(sz["repeats"])]
        times, stats, peak = [x[0] for x in runs], runs[-1][1], max(x[2] for x in runs)
        out[run] = {"prompt_len": P, "new_tokens": T, "sequences": N, "micro_batch": pg.micro_batch,
                    "grad_checkpointing": ck, "fits_24gib": mb is not None, "warmup_s": t_warm,
                    "times": times, "s": min(times), "tok_per_s": N * (P + T) / min(times),
                    "peak_gib": peak, "est_gib": est["total"], "changed_frac": frac,
                    "grad_norm": stats.get("grad_norm")}
        M.say(f"  update {run} ({N} x {P}+{T} tokens, micro-batch {pg.micro_batch}, "
              f"checkpointing {'on' if ck else 'off'}{'' if mb else ', OVER 24 GiB'}): "
              f"{min(times):.2f}s, peak {peak:.2f} GiB vs estimate {est['total']:.2f} GiB, "
              f"weights changed {frac:.1%}")
        del opt, exp, ids
    return out


def seeded_buffers(n: int, seed: int, n_inputs: int) -> dict:
    """The buffers as seeding leaves them: D_ded = D_abd = n toy code tasks, D_ind n toy
    induction tasks, all stamped step 0."""
    import tasks as T

    code = [{"step": 0, **{k: t[k] for k in ("program", "input", "output")}}
            for t in T.make_code_tasks(n, seed, "train")]
    ind = [{"step": 0, **{k: t[k] for k in ("program", "inputs", "outputs", "message")}}
           for t in T.make_induction_tasks(n, seed + 1, "train", n_inputs=n_inputs)]
    return {"deduction": code, "abduction": [dict(t) for t in code], "induction": ind}


def phase_selfplay(model, tok, sz: dict, dev, seed: int, run_dir: str) -> dict:
    """Two self_play_steps: the AZR preset and prompts except sz["sp"], the micro-batch picked
    for 24 GiB at the lengths selfplay.main sizes (2048 + the longest response)."""
    cfg = selfplay.Config(model="(random weights)", out=run_dir, style="azr", seed=seed,
                          **sz["sp"])
    M.apply_preset(cfg, selfplay.PRESETS, "azr")
    cfg.solve_batch_size = cfg.solve_batch_size or cfg.batch_size
    T = max(cfg.propose_max_tokens, cfg.solve_max_tokens)
    mb, ck, est = M.choose_micro_batch(model.config, BUDGET_GIB, 2048 // sz["length_div"], T, 4)
    cfg.micro_batch, cfg.grad_checkpointing = mb or 1, ck
    rlvr.check_pg(cfg)
    set_checkpointing(model, ck)
    M.say(f"  self-play: AZR preset except {sz['sp']} ({sz['sp_why']}) | {cfg.batch_size} "
          f"proposals per type, n_estimate {cfg.n_estimate}, k_refs {cfg.k_refs}, micro-batch "
          f"{cfg.micro_batch}, checkpointing {'on' if ck else 'off'}"
          f"{'' if mb else ' (OVER 24 GiB by the estimate)'}")
    S = selfplay.Session(cfg, selfplay.check_config(cfg), "azr", model, tok,
                         rlvr.make_optimizer(model, cfg.lr), M.RunDir(run_dir),
                         random.Random(seed), seeded_buffers(cfg.seed_size, seed, cfg.n_inputs), {})
    steps = []
    for step in (1, 2):
        dt, (m, _), peak = measure(lambda: selfplay.self_play_step(S, step), dev)
        times = {k[5:]: v for k, v in m.items() if k.startswith("time/") and k != "time/step"}
        # logp_mismatch_max: the sampler's log-probs (KV cache; bf16 autocast on CUDA) against
        # the update's forward on the same tokens
        steps.append({"s": dt, "peak_gib": peak, "times": times,
                      "update_skipped": m["update/skipped"],
                      "valid_rate": m.get("propose/valid_rate"),
                      "logp_mismatch_max": m.get("update/logp_mismatch_max")})
        M.say(f"  self-play step {step}: {dt:.1f}s, peak {steps[-1]['peak_gib']:.2f} GiB | "
              + ", ".join(f"{k} {v:.1f}s" for k, v in times.items())
              + f" | valid proposals {m.get('propose/valid_rate', 0):.2f} | sampler vs update "
                f"log-prob {m.get('update/logp_mismatch_max', float('nan')):.2g}")
    return {"micro_batch": cfg.micro_batch, "grad_checkpointing": ck, "est_gib": est["total"],
            "overrides": sz["sp"], "steps": steps}


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------
def print_table(models: dict) -> None:
    M.say(f"\n{'model':>6} | {'phase':<16} | {'seconds':>8} | {'tokens/s':>9} | "
          f"{'peak GiB':>8} | {'est. GiB':>8}")
    for name, r in models.items():
        parts = [(k, r["sampling"][k]) for k in ("sample", "generate")]
        parts += [(f"update/{k}{'' if u['fits_24gib'] else '*'}", u)
                  for k, u in r["update"].items()]
        for i, st in enumerate(r["selfplay"]["steps"], 1):
            parts.append((f"selfplay {i}", {**st, "est_gib": r["selfplay"]["est_gib"]}))
            parts += [(f"  sp{i}/{k}", {"s": v}) for k, v in st["times"].items()]
        for phase, d in parts:
            cells = [(d.get(k), spec) for k, spec in (("s", ".2f"), ("tok_per_s", ",.0f"),
                                                      ("peak_gib", ".2f"), ("est_gib", ".2f"))]
            M.say(f"{name:>6} | {phase:<16} | " + " | ".join(
                f"{'-' if x is None else format(x, spec):>{w}}"
                for (x, spec), w in zip(cells, (8, 9, 8, 8))))
    M.say("  *: over 24 GiB by the estimate, measured at micro-batch 1 with checkpointing. Peak: "
          "max_memory_allocated per phase (CPU: the process's peak RSS so far).")


def result_line(device: str, tiny: bool, models: dict) -> str:
    kv = {"device": re.sub(r"\s+", "_", device), "tiny": int(tiny)}
    for name, r in models.items():
        s, u, sp = r["sampling"], r["update"]["selfplay"], r["selfplay"]["steps"]
        kv.update({f"sample_tok_s_{name}": s["sample"]["tok_per_s"],
                   f"generate_tok_s_{name}": s["generate"]["tok_per_s"],
                   f"ratio_{name}": s["ratio"],
                   f"host_syncs_per_step_{name}": s["sample"]["host_syncs_per_step"],
                   f"update_s_{name}": u["s"], f"update_peak_gib_{name}": u["peak_gib"],
                   f"update_est_gib_{name}": u["est_gib"],
                   f"fits_24gib_{name}": int(u["fits_24gib"]),
                   f"changed_frac_{name}": u["changed_frac"],
                   f"rlvr_update_s_{name}": r["update"]["rlvr"]["s"],
                   f"selfplay_step_s_{name}": sum(x["s"] for x in sp) / len(sp),
                   f"selfplay_peak_gib_{name}": max(x["peak_gib"] for x in sp)})
    return "RESULT " + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                for k, v in kv.items())


def main(cfg: Config) -> dict:
    names = [m.strip() for m in cfg.models.split(",") if m.strip()]
    M.check(bool(names) and all(m in SHAPES for m in names),
            f"--models {cfg.models!r}: expected a comma-separated subset of {', '.join(SHAPES)}")
    M.check(cfg.repeats >= 1, "--repeats must be >= 1")
    sz, t0 = {**(TINY if cfg.tiny else FULL), "repeats": cfg.repeats}, time.perf_counter()
    dev = M.pick_device(cfg.device)
    device = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    import transformers

    M.say(f"[gpu-bench] {device} | torch {torch.__version__}, transformers "
          f"{transformers.__version__} | fp32 weights{', bf16 autocast' * (dev.type == 'cuda')}"
          f" | {'tiny' if cfg.tiny else 'full'} sizes {sz}")
    diff = check_sampler()
    M.say(f"[gpu-bench] sampler check (CPU, fp32): max |sampled - forward log-prob| {diff:.2g}")
    res = {"device": device, "torch": torch.__version__, "transformers": transformers.__version__,
           "config": dataclasses.asdict(cfg), "sizes": sz, "sampler_check": diff,
           "plan": memory_plan(names), "models": {}}
    out = cfg.out
    if out == "auto":  # a GPU run names its card; a CPU run writes nothing unless asked
        slug = re.sub(r"[^a-z0-9]+", "_", device.lower()).strip("_")
        out = f"results/gpu_{slug}.json" if dev.type == "cuda" and not cfg.tiny else ""

    def save(res):  # after every phase: a run that dies later keeps what it measured
        res["elapsed_s"] = time.perf_counter() - t0
        if out:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            Path(out).write_text(json.dumps(res, indent=2, default=str) + "\n")

    tok = build_tokenizer(None if cfg.tiny else QWEN25["vocab_size"])
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            M.seed_everything(cfg.seed)
            model = build_model(qwen_config(name, cfg.tiny, tok), tok, dev)
            n = sum(p.numel() for p in model.parameters())
            M.say(f"[gpu-bench] {name}: {n / 1e6:.1f}M params | {time.perf_counter() - t0:.0f}s")
            r = res["models"][name] = {"params": n}
            r["sampling"] = phase_sampling(model, tok, sz, dev, cfg.seed)
            save(res)
            r["update"] = phase_update(model, sz, dev, cfg.seed)
            save(res)
            r["selfplay"] = phase_selfplay(model, tok, sz, dev, cfg.seed, f"{tmp}/{name}")
            save(res)
            del model
            gc.collect()
            if dev.type == "cuda":  # the next shape starts from an empty cache
                torch.cuda.empty_cache()
    print_table(res["models"])
    res["result"] = result_line(device, cfg.tiny, res["models"])
    save(res)
    M.say(f"[gpu-bench] {'wrote ' + out + ', ' if out else ''}total {res['elapsed_s']:.0f}s")
    M.say(res["result"])
    return res


if __name__ == "__main__":
    main(M.parse_flags(Config, doc=__doc__.split("\n\n")[0]))
