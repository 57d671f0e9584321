"""bench/gpu.py — the single-GPU benchmark of issue 8: Qwen2.5 shapes, random weights, no download.

One prepared script that a session with a GPU runs once (budgeted to 270 s, --budget-s) and that
runs on CPU in under a minute with `--tiny` (a tiny model of the same architecture, tiny sizes,
the same code path). For each model shape (Qwen2.5-0.5B, Qwen2.5-1.5B, written out below as
transformers `Qwen2Config`s and randomly initialised in bf16 on the device) it measures:

  (a) sample / generate  rollout tokens/s of zeroplay's `model.sample` against transformers'
      `model.generate`, both forced to full length (`min_new_tokens` = `max_new_tokens`), at
      64 prompts x 8 samples x 512 new tokens, temperature 1, decoded in one batch of 512
      (`--gen-batch`); one short untimed warm-up per path, then `--repeats` alternating timed runs,
      the fastest reported (`best`).
  (b) update  one GRPO update of `rlvr.update_policy` (`rlvr.Experience` from the sampled rollout,
      `rlvr.PGConfig` defaults: token-mean loss, clip 0.2, bf16 autocast, grad-norm clip 1, one
      optimizer step) with `torch.optim.AdamW` set up exactly as rlvr.main does; one untimed warm-up
      update (it also allocates the AdamW states), then `--repeats` timed ones. Reported: time,
      peak `torch.cuda.max_memory_allocated` (reset before each phase), the fraction of weights the
      warm-up step actually changed (bf16 weights drop updates far below their resolution), and the
      model FLOPs utilisation (see `update_flops`; peak bf16 FLOP/s from `PEAK_BF16_TFLOPS` by GPU
      name, or `--peak-tflops`).
  (c) selfplay  one `selfplay.self_play_step` end to end (propose → validate → estimate → solve →
      TRR++ → update) on the same in-memory model, with the buffers pre-seeded from toydata tasks
      (no seeding phase), and its per-phase wall times from the step's own metrics. A random model
      writes no valid task, so the step's verifier work is near zero: `verify` therefore also times
      the verifier on one step's worth of GOLD proposals and answers of the toy world (every
      proposal valid, every answer right: validation of B proposals per type, n_estimate x B
      estimation answers and B solver answers per type) — the CPU work a real step adds.

Tokenizer (no download): the project's character tokenizer (`pretrain.build_char_tokenizer`);
for the Qwen shapes its vocabulary is padded with filler tokens `<|i|>` up to Qwen's 151936 ids,
so every id the random model samples decodes to text and `model.sample` runs unchanged (its
`batch_decode`, pad/EOS handling, stop strings). Prompts for (a)/(b) are random printable
characters, `--prompt-len` tokens each (one token per character, <bos> first). Self-play prompts
are the real templates (AZR style for the Qwen shapes); one character per token makes them about
3-4x longer than Qwen's BPE would, hence a smaller `--sp-micro-batch`.

Before anything it checks that model.sample really uses its KV cache: a few tokens sampled from
a tiny fp32 model must have the log-probs a teacher-forced forward gives (`check_sampler`).
model.py passes the cache as `cache=`; transformers 5.17 (the GPU image's) calls it
`past_key_values` and swallows `cache=`, so every token would be decoded without its context,
fast and wrong — the check stops the run with that explanation.

    python bench/gpu.py --device cpu --tiny                 # < 60 s on CPU
    PYTHONUNBUFFERED=1 python bench/gpu.py --out gpu.json   # the GPU run (about 3-4 min on an H100)

Prints progress, a table (model, phase, seconds, tokens/s, peak GiB, MFU), the estimated memory
of full fine-tuning (`memory_estimate`), and ends with
`RESULT sample_tok_per_s_0.5b=... generate_tok_per_s_0.5b=... ratio_0.5b=... update_s_0.5b=...`.
"""
from __future__ import annotations

import dataclasses
import gc
import inspect
import json
import math
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

import model as M  # noqa: E402


@dataclass
class Config:
    device: str = "auto"           # auto | cpu | cuda
    tiny: bool = False             # tiny models of the same architecture and tiny sizes (CPU check, < 60 s); explicit flags still win
    models: str = "0.5b,1.5b"      # comma-separated model shapes: 0.5b, 1.5b (Qwen2.5, random weights)
    prompts: int = 64              # distinct prompts in (a)/(b)
    samples: int = 8               # samples per prompt (the GRPO group size)
    new_tokens: int = 512          # new tokens per sample (forced: EOS suppressed until then)
    prompt_len: int = 128          # prompt tokens in (a)/(b) (random characters, <bos> included)
    gen_batch: int = 0             # sequences decoded together, both paths (0 = all prompts x samples at once)
    repeats: int = 2               # timed repeats of (a) and (b) after one untimed warm-up (the fastest reported)
    micro_batch: int = 8           # sequences per forward/backward in the update (PGConfig.micro_batch)
    grad_checkpointing: bool = False  # M.enable_grad_checkpointing(model) for the updates of (b) and (c)
    lr: float = 1e-6               # AdamW learning rate (AZR's for real models; decides how many bf16 weights change)
    selfplay: bool = True          # run (c): one self-play step and the gold verifier workload
    sp_batch: int = 8              # (c) proposals and solver tasks per task type (selfplay --batch-size)
    sp_max_tokens: int = 256       # (c) max new tokens of proposals and answers (a random model never stops early)
    sp_micro_batch: int = 4        # (c) update micro-batch (char-level AZR prompts are ~2k tokens)
    sp_estimate: int = 8           # (c) solver samples per valid proposal (selfplay --n-estimate)
    sp_entropy_coef: float = 1e-3  # (c) entropy bonus (AZR paper config); non-zero so the update runs although a random model's rewards are constant
    sp_style: str = "auto"         # (c) prompt templates: auto (azr for the Qwen vocabulary, toy for --tiny) | toy | azr
    peak_tflops: float = 0.0       # peak dense bf16 TFLOP/s for the MFU (0 = from the GPU name; none on CPU)
    budget_s: float = 270.0        # wall-clock budget: past it, remaining repeats and phases are skipped (and said so)
    seed: int = 0                  # seeds random, numpy and torch
    threads: int = 0               # torch CPU threads (0 = torch's default)
    out: str = ""                  # write every figure as JSON to this file ("" = don't)


# --tiny replaces the fields still at their default by these
TINY = dict(prompts=4, samples=2, new_tokens=16, prompt_len=16, micro_batch=4, sp_batch=2,
            sp_max_tokens=16, sp_micro_batch=4, sp_estimate=2)

# ----------------------------------------------------------------------------------------------
# Model shapes: the published Qwen2.5 configs (Qwen/Qwen2.5-0.5B and -1.5B config.json), written
# out so that nothing is downloaded. Both: vocab 151936, tied embeddings, RoPE theta 1e6, RMSNorm
# eps 1e-6, SiLU (SwiGLU MLP), QKV bias, no sliding window.
# ----------------------------------------------------------------------------------------------
QWEN25_COMMON = dict(vocab_size=151936, tie_word_embeddings=True, rope_theta=1_000_000.0,
                     rms_norm_eps=1e-6, hidden_act="silu", attention_dropout=0.0,
                     initializer_range=0.02, use_sliding_window=False)
QWEN25 = {
    "0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                 num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                 sliding_window=32768, max_window_layers=24),
    # the base model's config says 131072 positions (the -Instruct one 32768); irrelevant here
    "1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                 num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=131072,
                 sliding_window=131072, max_window_layers=28),
}
# --tiny: the same architecture (GQA 2 KV heads, SwiGLU, tied embeddings), tiny widths; the
# vocabulary is the char tokenizer's own
QWEN25_TINY = {
    "0.5b": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096),
    "1.5b": dict(hidden_size=96, intermediate_size=192, num_hidden_layers=2,
                 num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=4096),
}

# Dense (no sparsity) bf16 tensor-core peaks from the vendor datasheets, TFLOP/s, matched in this
# order against torch.cuda.get_device_name() (e.g. "NVIDIA H100 80GB HBM3" is the SXM card).
PEAK_BF16_TFLOPS = [("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("GH200", 989.0),
                    ("H200", 989.0), ("H100", 989.0), ("H800", 989.0), ("A100", 312.0),
                    ("A800", 312.0), ("L40S", 362.0), ("L4", 121.0), ("RTX 4090", 165.0)]


# ----------------------------------------------------------------------------------------------
# Pure functions: parameters, FLOPs, memory (each tested on hand-computed values)
# ----------------------------------------------------------------------------------------------
def peak_tflops_for(name: str) -> float | None:
    """Dense bf16 peak TFLOP/s of a GPU from its name (PEAK_BF16_TFLOPS); None if unknown."""
    for key, tflops in PEAK_BF16_TFLOPS:
        if key.lower() in name.lower():
            return tflops
    return None


def shape_dims(shape: dict) -> dict:
    """h (hidden), i (MLP width), L (layers), V (vocabulary), q (query width = heads x head
    dim), kv (key/value width = KV heads x head dim) of a Qwen2 config dict."""
    h, heads = shape["hidden_size"], shape["num_attention_heads"]
    d = shape.get("head_dim") or h // heads
    return {"h": h, "i": shape["intermediate_size"], "L": shape["num_hidden_layers"],
            "V": shape["vocab_size"], "q": heads * d, "kv": shape["num_key_value_heads"] * d}


def param_count(shape: dict) -> dict:
    """Parameters of a Qwen2 causal LM: per layer q/k/v projections with bias, o projection
    without, SwiGLU MLP (3 matrices), two RMSNorm weights; a final norm; the embedding, counted
    once when tied to the LM head. Returns {"total", "embedding", "body" (= total - embedding)}."""
    s = shape_dims(shape)
    h, i, L, V, q, kv = s["h"], s["i"], s["L"], s["V"], s["q"], s["kv"]
    layer = (h * q + q) + 2 * (h * kv + kv) + q * h + 3 * h * i + 2 * h
    emb = V * h * (1 if shape.get("tie_word_embeddings", True) else 2)
    body = L * layer + h
    return {"total": body + emb, "embedding": emb, "body": body}


def update_flops(shape: dict, seqs: int, prompt_len: int, new_tokens: int,
                 no_grad_forwards: int = 0) -> float:
    """Model FLOPs of one policy update over `seqs` sequences of S = P + T tokens.

    One forward:  2·N_body·B·S           (every matrix of the layers, each token)
                + 2·V·h·B·(T+1)          (the LM head on the T+1 positions forward_logprobs keeps)
                + 2·L·q·B·S²             (causal attention: QKᵀ and AV, S²/2 multiply-adds each)
    Update = 3 forwards (forward + backward: the usual 6·N·tokens) + `no_grad_forwards` more
    (2·N·tokens each: old/reference log-probs when the update is off-policy or has a KL term).
    The recomputation of gradient checkpointing is not counted (model FLOPs, not hardware FLOPs).
    """
    s, n = shape_dims(shape), param_count(shape)
    S = prompt_len + new_tokens
    fwd = (2 * n["body"] * seqs * S + 2 * s["V"] * s["h"] * seqs * (new_tokens + 1)
           + 2 * s["L"] * s["q"] * seqs * S * S)
    return float((3 + no_grad_forwards) * fwd)


def decode_flops(shape: dict, seqs: int, prompt_len: int, new_tokens: int) -> float:
    """Model FLOPs of sampling `new_tokens` after a `prompt_len` prefill, for `seqs` sequences
    (KV cache: each step processes one token). Prefill: 2·N_body·B·P + 2·V·h·B (one logit row) +
    2·L·q·B·P²; step t (context c = P + t): 2·(N_body + V·h)·B + 4·L·q·B·c."""
    s, n = shape_dims(shape), param_count(shape)
    P, T, B = prompt_len, new_tokens, seqs
    prefill = 2 * n["body"] * B * P + 2 * s["V"] * s["h"] * B + 2 * s["L"] * s["q"] * B * P * P
    ctx = T * P + T * (T - 1) / 2  # sum of contexts before each new token
    steps = 2 * (n["body"] + s["V"] * s["h"]) * B * T + 4 * s["L"] * s["q"] * B * ctx
    return float(prefill + steps)


# bytes per token per layer kept for the backward pass by a Qwen2 decoder layer under bf16
# (counted from transformers' Qwen2 code): two RMSNorms (fp32 input copy + bf16 output: 8h each),
# q with RoPE (q, rotate_half(q), q_rot: 6q), k likewise (6kv), v (2kv), attention output and its
# contiguous copy for o_proj (4q), SwiGLU (gate, silu(gate), up, product: 8i).
def layer_activation_bytes(shape: dict) -> float:
    """≈ bytes saved per token per decoder layer for the backward (bf16 activations, SDPA
    attention that keeps no S x S matrix): 16h + 10q + 8kv + 8i. An estimate (±30%)."""
    s = shape_dims(shape)
    return 16 * s["h"] + 10 * s["q"] + 8 * s["kv"] + 8 * s["i"]


LOGIT_BYTES = 18  # per logit element at the peak of forward_logprobs (see memory_estimate)


def memory_estimate(shape: dict, micro_batch: int, prompt_len: int, new_tokens: int,
                    grad_checkpointing: bool = False, weight_bytes: int = 2,
                    state_bytes: int | None = None) -> dict:
    """Estimated peak GPU memory (GiB) of one full fine-tuning update (rlvr.update_policy).

    Static, per parameter: weights `weight_bytes` (2: bf16, what model.pick_dtype gives on CUDA),
    gradients the same, AdamW exp_avg + exp_avg_sq in the parameter dtype (torch.optim.AdamW keeps
    its states in the parameter's dtype: 2 x weight_bytes unless `state_bytes` is given).
    So 8 B/param for bf16 weights (rlvr/selfplay on CUDA today), 16 B/param for fp32 weights
    with bf16 autocast (the mixed-precision alternative).
    Per micro-batch (B = micro_batch sequences, S = P + T tokens):
      activations  L·B·S·layer_activation_bytes; with gradient checkpointing only the layer inputs
                   (2h bytes per token per layer) plus one layer's activations being recomputed;
      logits       18 bytes x B·(T+1)·V at the peak of model.forward_logprobs: bf16 logits (2),
                   fp32 z = logits.float()/temperature (4, with a transient 4 for the cast),
                   log_softmax (4, kept for the backward), and the entropy's softmax and
                   softmax·z (4 + 4).
    Peak ≈ static + activations + logits (the AdamW step's temporaries come after the activations
    are freed). Returns GiB: weights, grads, optimizer, activations, logits, total.
    """
    s, n = shape_dims(shape), param_count(shape)
    N = n["total"]
    state_bytes = 2 * weight_bytes if state_bytes is None else state_bytes
    S, tokens = prompt_len + new_tokens, micro_batch * (prompt_len + new_tokens)
    per_layer = layer_activation_bytes(shape) * tokens
    act = (s["L"] * 2 * s["h"] * tokens + per_layer) if grad_checkpointing else s["L"] * per_layer
    act += 8 * s["h"] * micro_batch * (new_tokens + 1)  # final norm before the LM head
    logits = LOGIT_BYTES * micro_batch * (new_tokens + 1) * s["V"]
    gib = 2 ** 30
    out = {"weights": weight_bytes * N / gib, "grads": weight_bytes * N / gib,
           "optimizer": state_bytes * N / gib, "activations": act / gib, "logits": logits / gib}
    out["total"] = sum(out.values())
    return out


def best(xs: list[float]) -> float:
    """The fastest of the timed repeats (as timeit reports). The median of the first H100 run's
    two repeats mixed a slow first full-size sampling run (6,198 tok/s, then 19,453) into the
    headline; the fastest is what each path does once its one-time costs are paid."""
    return min(xs) if xs else float("nan")


# ----------------------------------------------------------------------------------------------
# Setup: tokenizer, models, checks
# ----------------------------------------------------------------------------------------------
def build_tokenizer(vocab_size: int | None = None):
    """The project's char tokenizer; with `vocab_size` larger than its vocabulary, the same
    tokenizer (same pre-tokenizer, decoder, <bos> template, special tokens) with filler tokens
    `<|i|>` for ids len(char vocab) .. vocab_size-1. Encoding never yields a filler (the
    pre-tokenizer splits text into characters); decoding turns a sampled filler id into text."""
    import pretrain

    base = pretrain.build_char_tokenizer()
    if vocab_size is None or vocab_size == len(base):
        return base
    if vocab_size < len(base):
        raise ValueError(f"vocab_size {vocab_size} is smaller than the char vocabulary "
                         f"({len(base)})")
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    bk = base.backend_tokenizer
    vocab = dict(bk.get_vocab())
    for i in range(len(vocab), vocab_size):
        vocab[f"<|{i}|>"] = i
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer, tk.decoder, tk.post_processor = (bk.pre_tokenizer, bk.decoder,
                                                       bk.post_processor)
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<bos>", eos_token="<eos>",
                                   pad_token="<pad>", unk_token="<unk>", padding_side="left")


def model_shape(name: str, tiny: bool, tok_len: int) -> dict:
    if name not in QWEN25:
        raise SystemExit(f"--models: unknown model {name!r} (expected 0.5b and/or 1.5b)")
    if tiny:
        return {**QWEN25_COMMON, **QWEN25_TINY[name], "vocab_size": tok_len}
    return {**QWEN25_COMMON, **QWEN25[name]}


def build_model(shape: dict, tok, dev: torch.device, dtype: torch.dtype):
    """A randomly initialised Qwen2ForCausalLM, built directly on the device (fast on a GPU),
    set up as model.load_policy leaves a loaded policy (eval mode, pad/EOS ids of the tokenizer)."""
    from transformers import AutoModelForCausalLM, Qwen2Config

    cfg = Qwen2Config(**shape, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    with torch.device(dev):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    model.to(dev)  # a no-op when the device context took effect
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.bos_token_id = tok.bos_token_id
    return model.eval()


def cache_kwarg_ok() -> bool:
    """Whether the installed transformers' model forward takes the KV cache as `cache=` (what
    model.py passes). transformers 5.17 calls it past_key_values and swallows `cache=` in
    **kwargs: every token is then decoded without its context, fast and wrong."""
    from transformers import Qwen2ForCausalLM

    return "cache" in inspect.signature(Qwen2ForCausalLM.forward).parameters


def check_sampler(dev: torch.device) -> float:
    """Sample a few tokens with model.sample (fp32, tiny model) and recompute their log-probs
    with one teacher-forced forward: they agree to ~1e-6 when the KV cache works; a cache that
    is ignored (tokens decoded without context) gives differences of order 0.1. Returns the max
    |diff|; SystemExit when it is >= 1e-3."""
    import transformers

    tok = build_tokenizer()
    model = build_model(model_shape("0.5b", True, len(tok)), tok, dev, torch.float32)
    ro = M.sample(model, tok, ["ab", "hello world"], n=2, max_new_tokens=8, seed=0)
    with torch.no_grad():
        lp, _ = M.forward_logprobs(model, ro.input_ids, ro.attention_mask, ro.prompt_len,
                                   with_entropy=False)
    diff = float(((lp.float() - ro.old_logp.float()).abs() * ro.response_mask).max())
    if not diff < 1e-3:
        hint = ("" if cache_kwarg_ok() else
                f" transformers {transformers.__version__}'s model forward has no `cache` "
                f"parameter (it is past_key_values there), so model.sample's `cache=` is ignored "
                f"and every token is decoded without context. Use the project's transformers "
                f"(5.24.0; on a device machine carry its wheel).")
        raise SystemExit(f"sampler check failed: model.sample's log-probs differ from a "
                         f"teacher-forced forward by {diff:.3g}.{hint}")
    return diff


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def reset_peak(dev: torch.device) -> None:
    gc.collect()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
    M.reset_peak_memory(dev)


def peak_gib(dev: torch.device) -> float:
    """CUDA: max_memory_allocated since the last reset_peak. CPU: the process's peak resident
    memory so far (not per phase)."""
    mem = M.memory_stats(dev)
    return mem.get("mem/cuda_peak_gib", mem["mem/rss_peak_gib"])


def timed(fn, dev: torch.device):
    """(seconds, result) of fn(), the device synchronised before and after."""
    sync(dev)
    t = time.perf_counter()
    out = fn()
    sync(dev)
    return time.perf_counter() - t, out


class Budget:
    """The wall-clock budget of the whole run (--budget-s)."""

    def __init__(self, seconds: float):
        self.t0, self.seconds = time.perf_counter(), seconds

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def left(self) -> float:
        return self.seconds - self.elapsed()


def log(msg: str) -> None:
    print(msg, flush=True)


# ----------------------------------------------------------------------------------------------
# (a) rollouts: model.sample vs model.generate
# ----------------------------------------------------------------------------------------------
def random_prompts(tok, n: int, length: int, seed: int) -> list[str]:
    """n random strings of printable, non-space characters, each `length` tokens with <bos>."""
    chars = [c for c in tok.get_vocab() if len(c) == 1 and c.isprintable() and not c.isspace()]
    chars.sort()
    rng = random.Random(seed)
    return ["".join(rng.choice(chars) for _ in range(length - 1)) for _ in range(n)]


def run_sample(model, tok, prompts, cfg: Config, new_tokens: int) -> M.Rollout:
    batch = cfg.gen_batch or len(prompts) * cfg.samples
    return M.sample(model, tok, prompts, n=cfg.samples, temperature=1.0, top_p=1.0,
                    max_new_tokens=new_tokens, batch_size=batch, min_new_tokens=new_tokens)


def run_generate(model, tok, prompts, cfg: Config, new_tokens: int) -> int:
    """transformers generate(), same rows, batches and settings; returns new tokens produced."""
    rows = [p for p in prompts for _ in range(cfg.samples)]
    batch = cfg.gen_batch or len(rows)
    produced = 0
    for i in range(0, len(rows), batch):
        enc = tok(rows[i:i + batch], return_tensors="pt", padding=True).to(model.device)
        out = model.generate(**enc, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                             max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                             pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        produced += out[:, enc["input_ids"].shape[1]:].numel()                   # [b, T]
    return produced


def phase_rollouts(model, tok, shape, prompts, cfg, dev, budget, peak_tf):
    """(a): warm-up both paths briefly, then alternate timed runs. Returns (results, rollout)."""
    N, T, P = len(prompts) * cfg.samples, cfg.new_tokens, cfg.prompt_len
    warm = min(T, 8)
    timed(lambda: run_sample(model, tok, prompts, cfg, warm), dev)
    timed(lambda: run_generate(model, tok, prompts, cfg, warm), dev)
    res = {"sample": {"times": [], "peaks": []}, "generate": {"times": [], "peaks": []}}
    ro = None
    for r in range(cfg.repeats):
        last = max(res["sample"]["times"][-1:] + [0]) + max(res["generate"]["times"][-1:] + [0])
        if r and budget.left() < 1.2 * last:
            log(f"  (a) budget: stopped after {r} repeat(s)")
            break
        reset_peak(dev)
        dt, ro = timed(lambda: run_sample(model, tok, prompts, cfg, T), dev)
        n_tok = int(ro.lengths.sum())
        if n_tok != N * T:
            raise SystemExit(f"model.sample produced {n_tok} tokens, expected {N * T}")
        res["sample"]["times"].append(dt)
        res["sample"]["peaks"].append(peak_gib(dev))
        reset_peak(dev)
        dt, n_gen = timed(lambda: run_generate(model, tok, prompts, cfg, T), dev)
        if n_gen != N * T:
            raise SystemExit(f"generate produced {n_gen} tokens, expected {N * T}")
        res["generate"]["times"].append(dt)
        res["generate"]["peaks"].append(peak_gib(dev))
        log(f"  (a) repeat {r + 1}: sample {N * T / res['sample']['times'][-1]:.0f} tok/s, "
            f"generate {N * T / dt:.0f} tok/s")
    flops = decode_flops(shape, N, P, T)
    out = {}
    for k, v in res.items():
        t = best(v["times"])
        out[k] = {"s": t, "tok_per_s": N * T / t, "peak_gib": max(v["peaks"]),
                  "tokens": N * T, "times": v["times"],
                  "mfu": flops / t / (peak_tf * 1e12) if peak_tf else None}
    return out, ro


# ----------------------------------------------------------------------------------------------
# (b) one GRPO update on those rollouts
# ----------------------------------------------------------------------------------------------
def phase_update(model, ro: M.Rollout, shape, cfg, dev, budget, peak_tf):
    """(b): Experience from the rollout with ±1 advantages (every group varied: rewards
    alternate 1, 0 within each group, then rlvr.group_advantages), one warm-up update (measures
    the fraction of weights it changed), then timed updates."""
    import rlvr

    N = len(ro)
    rewards = torch.tensor([float(j % 2 == 0) for j in range(N)])                # [N]
    adv = rlvr.group_advantages(rewards, cfg.samples, "group")                    # [N]
    exp = rlvr.Experience.from_rollout(ro, adv)
    pg = rlvr.PG(micro_batch=cfg.micro_batch, loss_agg="token_mean", lr=cfg.lr)
    rlvr.check_pg(pg)
    opt = rlvr.make_optimizer(model, cfg.lr)
    if cfg.grad_checkpointing:
        M.enable_grad_checkpointing(model)
    before = [p.detach().clone() for p in model.parameters()]
    reset_peak(dev)
    t_warm, stats = timed(lambda: rlvr.update_policy(model, opt, [exp], pg), dev)
    warm_peak = peak_gib(dev)
    changed = sum(int((p.detach() != b).sum()) for p, b in zip(model.parameters(), before))
    total = sum(b.numel() for b in before)
    del before
    log(f"  (b) warm-up update {t_warm:.2f}s, peak {warm_peak:.2f} GiB, weights changed "
        f"{changed / total:.2%} (lr {cfg.lr:g}, {next(model.parameters()).dtype})")
    times, peaks = [], []
    for r in range(cfg.repeats):
        if budget.left() < 1.2 * (times[-1] if times else t_warm):
            log(f"  (b) budget: stopped after {r} timed update(s)")
            break
        reset_peak(dev)
        dt, stats = timed(lambda: rlvr.update_policy(model, opt, [exp], pg), dev)
        times.append(dt)
        peaks.append(peak_gib(dev))
        log(f"  (b) update {r + 1}: {dt:.2f}s, peak {peaks[-1]:.2f} GiB")
    if not times:  # the warm-up is all we have
        times, peaks = [t_warm], [warm_peak]
    P, T = ro.prompt_len, ro.response_mask.shape[1]
    flops = update_flops(shape, N, P, T)
    t = best(times)
    est = memory_estimate(shape, cfg.micro_batch, P, T, cfg.grad_checkpointing,
                          weight_bytes=next(model.parameters()).element_size())
    del opt
    return {"s": t, "times": times, "tok_per_s": N * (P + T) / t, "peak_gib": max(peaks),
            "flops": flops, "tflops_per_s": flops / t / 1e12,
            "mfu": flops / t / (peak_tf * 1e12) if peak_tf else None,
            "changed_frac": changed / total, "est_peak_gib": est["total"],
            "logp_mismatch_max": stats.get("logp_mismatch_max"), "loss": stats.get("loss"),
            "sequences": N, "prompt_len": P, "new_tokens": T}


# ----------------------------------------------------------------------------------------------
# (c) one self-play step, and the verifier on gold proposals and answers
# ----------------------------------------------------------------------------------------------
def sp_config(cfg: Config, out: str, style: str):
    import selfplay

    scfg = selfplay.Config(model="(in memory)", out=out, style=style, seed=cfg.seed,
                           batch_size=cfg.sp_batch, n_estimate=cfg.sp_estimate,
                           propose_max_tokens=cfg.sp_max_tokens,
                           solve_max_tokens=cfg.sp_max_tokens, micro_batch=cfg.sp_micro_batch,
                           entropy_coef=cfg.sp_entropy_coef, lr=cfg.lr)
    M.apply_preset(scfg, selfplay.PRESETS, style)
    scfg.solve_batch_size = scfg.solve_batch_size or scfg.batch_size
    return scfg


def seeded_buffers(n: int, seed: int, n_inputs: int) -> dict:
    """Buffers as after seeding (--seed-size n): D_ded = D_abd = n toy code tasks, D_ind = n toy
    induction tasks, all stamped step 0."""
    import tasks as T

    code = T.make_code_tasks(n, seed, "train")
    ind = T.make_induction_tasks(n, seed + 1, "train", n_inputs=n_inputs)
    strip = lambda t, keys: {"step": 0, **{k: t[k] for k in keys}}  # noqa: E731
    return {"deduction": [strip(t, ("program", "input", "output")) for t in code],
            "abduction": [strip(t, ("program", "input", "output")) for t in code],
            "induction": [strip(t, ("program", "inputs", "outputs", "message")) for t in ind]}


def make_session(cfg: Config, model, tok, run_dir: str):
    """A selfplay.Session around an in-memory model, built as selfplay.main builds it (minus
    loading, evaluation sets and seeding)."""
    import rlvr
    import selfplay

    style = M.prompt_style(tok, cfg.sp_style)
    scfg = sp_config(cfg, run_dir, style)
    types = selfplay.check_config(scfg)
    S = selfplay.Session(scfg, types, style, model, tok, rlvr.make_optimizer(model, scfg.lr),
                         M.RunDir(run_dir), random.Random(cfg.seed), {}, {})
    S.buffers = seeded_buffers(scfg.seed_size, cfg.seed, scfg.n_inputs)
    return S


def gold_texts(style: str, role: str, task_type: str, task: dict, n_inputs: int = 0) -> str:
    """A correct response in the format selfplay parses: a proposal of `task`, or the right
    answer to it (toy: the text after the prompt; azr: closed <think>, then <answer>)."""
    from tasks import fence

    if role == "propose":
        if task_type == "induction":
            body = "".join(fence("input", i) for i in task["inputs"][:n_inputs])
            body += fence("message", task["message"])
        elif style == "toy":  # the toy prompt already opened the ```python block
            return task["program"] + "\n```\n" + fence("input", task["input"])
        else:
            body = fence("python", task["program"]) + fence("input", task["input"])
    else:
        tag, key = {"deduction": ("output", "output"), "abduction": ("input", "input"),
                    "induction": ("python", "program")}[task_type]
        if style == "toy":
            return task[key] + "\n```"
        body = fence(tag, task[key])
    return body if style == "toy" else f"reasoning </think> <answer>\n{body}</answer>"


def verify_gold(S) -> dict:
    """The verifier work of one self-play step at 100% valid proposals and right answers:
    validate B proposals per type, score n_estimate x B estimation answers and B solver answers
    per type (selfplay.validate / tasks.score, so through verifier.py's sandbox)."""
    import selfplay
    import tasks as T

    cfg, style, n_in = S.cfg, S.style, S.cfg.n_inputs
    counts = {"proposals": 0, "valid": 0, "answers": 0, "correct": 0}
    t0 = time.perf_counter()
    for t in S.types:
        tasks = [S.buffers[t][j % len(S.buffers[t])] for j in range(cfg.batch_size)]
        texts = [gold_texts(style, "propose", t, x, n_in) for x in tasks]
        progs = [x["program"] if t == "induction" else None for x in tasks]
        res = selfplay.validate(t, texts, progs, style, n_in, cfg.exec_timeout)
        counts["proposals"] += len(res)
        counts["valid"] += sum(bool(p["valid"]) for p in res)
        answered = tasks * (cfg.n_estimate + 1)  # estimation samples + the solver batch
        answers = [gold_texts(style, "solve", t, x) for x in answered]
        correct, _ = T.score(t, answered, answers, style, cfg.exec_timeout)
        counts["answers"] += len(correct)
        counts["correct"] += sum(correct)
    return {"s": time.perf_counter() - t0, **counts}


def phase_selfplay(model, tok, cfg, dev, run_dir):
    """(c): the gold verifier workload (also starts the verifier's servers), then one
    selfplay.self_play_step, wall time and its own per-phase times."""
    import selfplay

    S = make_session(cfg, model, tok, run_dir)
    if cfg.grad_checkpointing:
        M.enable_grad_checkpointing(model)
    gold = verify_gold(S)
    log(f"  (c) verifier on gold tasks ({S.style} format): {gold['valid']}/{gold['proposals']} "
        f"proposals valid, {gold['correct']}/{gold['answers']} answers right, {gold['s']:.2f}s")
    reset_peak(dev)
    dt, (metrics, _) = timed(lambda: selfplay.self_play_step(S, 1), dev)
    peak = peak_gib(dev)
    times = {k[len("time/"):]: v for k, v in metrics.items() if k.startswith("time/")}
    log(f"  (c) self-play step {dt:.2f}s, peak {peak:.2f} GiB: "
        + ", ".join(f"{k} {v:.2f}s" for k, v in times.items())
        + f" | valid proposals {metrics.get('propose/valid_rate', 0):.2f}, update skipped "
          f"{metrics.get('update/skipped')}")
    style = S.style
    del S
    return {"s": dt, "peak_gib": peak, "times": times, "style": style,
            "update_skipped": metrics.get("update/skipped"),
            "valid_rate": metrics.get("propose/valid_rate"), "gold_verify": gold}


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------
def fmt(x, spec: str) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def print_table(rows: list[tuple]) -> None:
    head = ("model", "phase", "seconds", "tokens/s", "peak GiB", "MFU")
    log("\n" + " | ".join(f"{h:>11s}" if h == "phase" else f"{h:>10s}" for h in head))
    log("-" * 79)
    for m, ph, s, tps, pk, mfu in rows:
        log(" | ".join([f"{m:>10s}", f"{ph:>11s}", f"{fmt(s, '.3f'):>10s}",
                        f"{fmt(tps, ',.0f'):>10s}", f"{fmt(pk, '.2f'):>10s}",
                        f"{fmt(None if mfu is None else 100 * mfu, '.1f') + ('%' if mfu is not None else ''):>10s}"]))


def print_memory(cfg: Config) -> dict:
    """Item 1 of issue 8: estimated full fine-tuning memory of the real shapes."""
    full = Config()  # --tiny still documents the real shapes at the full-run sizes
    P = full.prompt_len if cfg.tiny else cfg.prompt_len
    T = full.new_tokens if cfg.tiny else cfg.new_tokens
    log(f"\nFull fine-tuning memory (estimate, GiB; one rlvr.update_policy micro-batch of S = "
        f"{P}+{T} tokens; static = weights + grads + AdamW states):")
    log(f"{'model':>6s} {'params':>8s} {'precision':>28s} {'mb':>3s} {'ckpt':>4s} "
        f"{'static':>7s} {'activ':>7s} {'logits':>7s} {'total':>7s}")
    out = {}
    for name, shape in QWEN25.items():
        shape = {**QWEN25_COMMON, **shape}
        n = param_count(shape)["total"]
        for prec, wb in (("bf16 weights+AdamW (today)", 2), ("fp32 master+AdamW, bf16 AMP", 4)):
            for mb in sorted({full.micro_batch if cfg.tiny else cfg.micro_batch, 64}):
                for ck in (False, True):
                    e = memory_estimate(shape, mb, P, T, ck, weight_bytes=wb)
                    static = e["weights"] + e["grads"] + e["optimizer"]
                    out[f"{name}/{'bf16' if wb == 2 else 'fp32'}/mb{mb}/{'ckpt' if ck else 'full'}"] = e
                    log(f"{name:>6s} {n / 1e9:7.2f}B {prec:>28s} {mb:3d} {'yes' if ck else 'no':>4s} "
                        f"{static:7.1f} {e['activations']:7.1f} {e['logits']:7.1f} "
                        f"{e['total']:7.1f}")
    return out


# ----------------------------------------------------------------------------------------------
def apply_tiny(cfg: Config) -> Config:
    if not cfg.tiny:
        return cfg
    defaults = Config()
    return dataclasses.replace(cfg, **{k: v for k, v in TINY.items()
                                       if getattr(cfg, k) == getattr(defaults, k)})


def check(cfg: Config) -> list[str]:
    names = [m.strip() for m in cfg.models.split(",") if m.strip()]
    if not names or any(m not in QWEN25 for m in names):
        raise SystemExit(f"--models {cfg.models!r}: expected a comma-separated subset of "
                         f"{', '.join(QWEN25)}")
    for k in ("prompts", "samples", "new_tokens", "repeats", "micro_batch", "sp_batch",
              "sp_max_tokens", "sp_micro_batch", "sp_estimate"):
        if getattr(cfg, k) < 1:
            raise SystemExit(f"--{k.replace('_', '-')} must be >= 1, got {getattr(cfg, k)}")
    if cfg.samples < 2:
        raise SystemExit("--samples must be >= 2 (GRPO advantages compare samples of a prompt)")
    if cfg.prompt_len < 2:
        raise SystemExit("--prompt-len must be >= 2 (<bos> and at least one character)")
    if cfg.sp_style not in ("auto", "toy", "azr"):
        raise SystemExit(f"--sp-style {cfg.sp_style!r}: expected auto, toy or azr")
    if cfg.gen_batch < 0 or cfg.peak_tflops < 0:
        raise SystemExit("--gen-batch and --peak-tflops must be >= 0")
    return names


def main(cfg: Config) -> dict:
    cfg = apply_tiny(cfg)
    names = check(cfg)
    budget = Budget(cfg.budget_s)
    M.seed_everything(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dev = M.pick_device(cfg.device)
    dtype = M.pick_dtype(dev)
    import transformers

    gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    peak_tf = cfg.peak_tflops or (peak_tflops_for(gpu) if dev.type == "cuda" else None)
    log(f"[gpu-bench] device {gpu} | torch {torch.__version__}, transformers "
        f"{transformers.__version__} | {dtype} | peak {fmt(peak_tf, '.0f')} TFLOP/s bf16 dense "
        f"(MFU base) | {'tiny' if cfg.tiny else 'full'} sizes: {cfg.prompts} prompts x "
        f"{cfg.samples} samples x {cfg.new_tokens} new tokens, prompt {cfg.prompt_len} tokens, "
        f"micro-batch {cfg.micro_batch}, grad checkpointing {cfg.grad_checkpointing}")
    diff = check_sampler(dev)
    log(f"[gpu-bench] sampler check: max |sample old_logp - forward logp| = {diff:.2g} "
        f"(KV cache OK; forward takes cache=: {cache_kwarg_ok()})")
    mem = print_memory(cfg)
    results: dict = {"device": gpu, "peak_tflops": peak_tf, "torch": torch.__version__,
                     "transformers": transformers.__version__, "sampler_check": diff,
                     "config": dataclasses.asdict(cfg), "memory_estimate": mem, "models": {}}
    rows, res_kv = [], {}
    tok_cache: dict = {}
    prev_s, base_repeats = None, cfg.repeats

    def write_json():
        results["result"], results["elapsed_s"] = res_kv, budget.elapsed()
        if cfg.out:
            Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
            Path(cfg.out).write_text(json.dumps(results, indent=2, default=str) + "\n")

    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            if budget.left() < 15:
                log(f"[gpu-bench] budget: {name} skipped ({budget.elapsed():.0f}s elapsed)")
                continue
            # a bigger model after a first one: if the budget would not hold twice the first
            # model's time, time one repeat only
            cfg.repeats = base_repeats
            if prev_s is not None and budget.left() < 2 * prev_s and cfg.repeats > 1:
                cfg.repeats = 1
                log(f"[gpu-bench] budget: {name} gets 1 repeat ({budget.left():.0f}s left, the "
                    f"previous model took {prev_s:.0f}s)")
            t0 = time.perf_counter()
            vocab = None if cfg.tiny else QWEN25_COMMON["vocab_size"]
            if vocab not in tok_cache:
                tok_cache[vocab] = build_tokenizer(vocab)
            tok = tok_cache[vocab]
            shape = model_shape(name, cfg.tiny, len(tok))
            M.seed_everything(cfg.seed)
            model = build_model(shape, tok, dev, dtype)
            n = param_count(shape)
            real = sum(p.numel() for p in model.parameters())
            if real != n["total"]:
                raise SystemExit(f"{name}: param_count says {n['total']}, the model has {real}")
            log(f"[gpu-bench] {name}: {real / 1e6:.1f}M params ({n['body'] / 1e6:.1f}M "
                f"non-embedding), vocab {len(tok)}, built in {time.perf_counter() - t0:.1f}s "
                f"| {budget.elapsed():.0f}s elapsed")
            r: dict = {"params": real}
            prompts = random_prompts(tok, cfg.prompts, cfg.prompt_len, cfg.seed)
            roll, ro = phase_rollouts(model, tok, shape, prompts, cfg, dev, budget, peak_tf)
            r.update(roll)
            rows += [(name, "sample", roll["sample"]["s"], roll["sample"]["tok_per_s"],
                      roll["sample"]["peak_gib"], roll["sample"]["mfu"]),
                     (name, "generate", roll["generate"]["s"], roll["generate"]["tok_per_s"],
                      roll["generate"]["peak_gib"], roll["generate"]["mfu"])]
            res_kv.update({f"sample_tok_per_s_{name}": roll["sample"]["tok_per_s"],
                           f"generate_tok_per_s_{name}": roll["generate"]["tok_per_s"],
                           f"ratio_{name}": roll["sample"]["tok_per_s"]
                           / roll["generate"]["tok_per_s"],
                           f"sample_peak_gib_{name}": roll["sample"]["peak_gib"]})
            if budget.left() > 10:
                up = phase_update(model, ro, shape, cfg, dev, budget, peak_tf)
                r["update"] = up
                rows.append((name, "update", up["s"], up["tok_per_s"], up["peak_gib"],
                             up["mfu"]))
                res_kv.update({f"update_s_{name}": up["s"], f"peak_gib_{name}": up["peak_gib"],
                               f"est_peak_gib_{name}": up["est_peak_gib"],
                               f"update_changed_frac_{name}": up["changed_frac"]})
                if up["mfu"] is not None:
                    res_kv[f"mfu_{name}"] = up["mfu"]
                log(f"  (b) {up['flops'] / 1e12:.1f} TFLOP (6·N·tokens + attention) in "
                    f"{up['s']:.2f}s = {up['tflops_per_s']:.1f} TFLOP/s; measured peak "
                    f"{up['peak_gib']:.2f} GiB vs estimate {up['est_peak_gib']:.2f} GiB")
            else:
                log(f"[gpu-bench] budget: {name} update skipped")
            del ro
            if cfg.selfplay and budget.left() > 15:
                sp = phase_selfplay(model, tok, cfg, dev, str(Path(tmp) / f"sp-{name}"))
                r["selfplay"] = sp
                rows.append((name, "selfplay", sp["s"], None, sp["peak_gib"], None))
                for k in ("propose", "validate", "estimate", "solve", "entropy", "update"):
                    if k in sp["times"]:
                        rows.append((name, f"sp/{k}", sp["times"][k], None, None, None))
                rows.append((name, "sp/verify*", sp["gold_verify"]["s"], None, None, None))
                res_kv.update({f"selfplay_step_s_{name}": sp["s"],
                               f"selfplay_peak_gib_{name}": sp["peak_gib"],
                               f"verify_gold_s_{name}": sp["gold_verify"]["s"]})
            elif cfg.selfplay:
                log(f"[gpu-bench] budget: {name} self-play step skipped")
            results["models"][name] = r
            del model
            reset_peak(dev)
            prev_s = time.perf_counter() - t0
            write_json()
    print_table(rows)
    log("  sp/verify*: verifier on one step's gold proposals and answers (not part of the step)")
    log(f"  MFU: update = (3 forwards of update_flops) / time / peak; sample/generate = "
        f"decode_flops / time / peak; peak = {fmt(peak_tf, '.0f')} TFLOP/s dense bf16")
    cfg.repeats = base_repeats
    write_json()
    if cfg.out:
        log(f"[gpu-bench] wrote {cfg.out}")
    log(f"[gpu-bench] total {budget.elapsed():.0f}s")
    dev_tag = gpu.replace(" ", "_")
    log("RESULT " + " ".join([f"device={dev_tag}", f"tiny={int(cfg.tiny)}"]
                             + [f"{k}={v:.4g}" for k, v in res_kv.items()]))
    return results


if __name__ == "__main__":
    main(M.parse_flags(Config, doc=__doc__.split("\n\n")[0]))
