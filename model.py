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
import inspect
import json
import math
import os
import random
import re
import resource
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

REPO = Path(__file__).resolve().parent
TOY_BASE = str(REPO / "toy_base")
TOY_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


# ----------------------------------------------------------------------------------------------
# Settings → flags
# ----------------------------------------------------------------------------------------------
@dataclass
class Run:
    """run and hardware"""
    model: str = "toy"             # base model: toy (the shipped toy_base/), a hub id, a folder or a .gguf file
    out: str = "runs/run"          # run folder: config.json, metrics.jsonl, samples, checkpoints/
    resume: bool = False           # continue the run in --out from its last checkpoint
    seed: int = 0                  # seeds Python, numpy and torch: a CPU run is reproducible
    style: str = "auto"            # prompt format: auto (toy for the toy tokenizer, else azr) | toy | azr
    device: str = "auto"           # auto (cuda if available) | cpu | cuda[:N]
    dtype: str = "auto"            # weight dtype: auto (float32 on CPU, bfloat16 on CUDA) | float32 | bfloat16
    bf16: bool = True              # bf16 autocast for the update's forward and backward
    micro_batch: int = 16          # sequences per forward/backward; the gradient does not depend on it
    sample_batch: int = 64         # sequences sampled together
    grad_checkpointing: bool = False  # recompute activations in the backward pass: less memory, more time
    save_every: int = 20           # checkpoint every N steps (and at the end)


def parse_flags(cls, argv=None, doc: str = ""):
    """A dataclass → an argparse parser → an instance. `field: type = default  # help` becomes
    `--field` with that help; bools get `--x/--no-x`; `list[...]` fields take several values.
    Flags are grouped by the class in the hierarchy that first declares them."""
    helps, owner = {}, {}
    for klass in reversed(cls.__mro__[:-1]):          # base classes first, the script's last
        for line in inspect.getsource(klass).splitlines():
            m = re.match(r"\s+(\w+)\s*:[^=]+=.*?#\s*(.+)$", line)
            if m:
                helps[m.group(1)] = m.group(2).strip()
        for name in klass.__dict__.get("__annotations__", {}):
            owner.setdefault(name, klass)
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    groups = {k: p.add_argument_group((k.__doc__ or k.__name__).strip().splitlines()[0])
              for k in dict.fromkeys(owner.values())}
    casts = {"int": int, "float": float, "str": str}
    for f in dataclasses.fields(cls):
        typ = str(f.type).replace(" | None", "")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kw = {"default": default, "help": f"{helps.get(f.name, '')} (default: {default})"}
        g, flag = groups[owner[f.name]], "--" + f.name.replace("_", "-")
        if typ == "bool":
            g.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif typ.startswith("list["):
            g.add_argument(flag, nargs="*", type=casts.get(typ[5:-1], str), **kw)
        else:
            g.add_argument(flag, type=casts.get(typ, str), **kw)
    return cls(**vars(p.parse_args(argv)))


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


# ----------------------------------------------------------------------------------------------
# Setup
# ----------------------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    """One seed for Python's `random`, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def on_terminal() -> bool:
    return sys.stderr.isatty()


def progress(iterable, desc: str, **kw):
    """A progress bar on a terminal; nothing in a log file (no flood of redraws there)."""
    return tqdm(iterable, desc=desc, dynamic_ncols=True, leave=False, disable=not on_terminal(),
                **kw)


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


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def pick_dtype(device: torch.device, dtype: str = "auto") -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    check(dtype in DTYPES, f"--dtype {dtype!r}: expected auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


def resolve_model(name: str) -> str:
    """"toy" → the shipped toy base folder (toy_base/); any other name is returned as it is."""
    if name != "toy":
        return name
    missing = [f for f in TOY_FILES if not (Path(TOY_BASE) / f).is_file()]
    check(not missing, f"--model toy: the shipped toy base {TOY_BASE} is missing "
                       f"{', '.join(missing)}. Restore it with `git checkout -- toy_base` or "
                       f"rebuild it with `python pretrain.py --out toy_base` (about 22 min on 2 "
                       f"CPU cores).")
    return TOY_BASE


def load_policy(name: str, device: str = "auto", dtype: str = "auto"):
    """(model, tokenizer) for a name: "toy", a hub id, a local save_pretrained folder, or a .gguf
    file (dequantized by transformers, which needs the `gguf` package). The model is in eval
    mode on the device; the tokenizer pads on the left, so every prompt ends at the same column."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    if not on_terminal():  # transformers' own loading bars would flood a log file
        hf_logging.disable_progress_bar()
    path = resolve_model(name)
    dev = pick_device(device)
    dt = pick_dtype(dev, dtype)
    src, kw = path, {}
    if path.endswith(".gguf"):
        check(Path(path).is_file(), f"--model {path}: no such GGUF file")
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


# ----------------------------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------------------------
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
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)                 # [B, W]
    mask = torch.zeros((len(seqs), width), dtype=torch.long)                    # [B, W]
    for i, s in enumerate(seqs):
        ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
        mask[i, width - len(s):] = 1
    return ids, mask


def eos_ids(model, tok) -> list[int]:
    """Every token id that ends a response: the tokenizer's EOS and the generation config's."""
    ids = {tok.eos_token_id}
    e = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(e if isinstance(e, (list, tuple)) else [e])
    return sorted(i for i in ids if i is not None)


def _cache_kwarg(model) -> str:
    """transformers 5.24+ takes the KV cache as `cache`; older 5.x only know `past_key_values`
    (and would silently ignore `cache`, decoding every token without its context)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


@torch.no_grad()
def _sample_chunk(model, tok, prompt_ids, n, temperature, top_p, max_new_tokens, stop, stop_ids,
                  generator, min_new_tokens=0):
    """n responses per prompt of `prompt_ids`: each prompt is prefilled once and its KV cache
    repeated n times; rows that finish are dropped from the batch and the cache, so short
    answers cost nothing afterwards. The host waits once per token (which rows ended?)."""
    from transformers import DynamicCache

    dev = next(model.parameters()).device
    ids, mask = (x.to(dev) for x in pad_left(prompt_ids, tok.pad_token_id))   # [B/n, P]
    B = ids.shape[0] * n
    out = torch.full((B, max_new_tokens), tok.pad_token_id, dtype=torch.long, device=dev)  # [B, T]
    out_logp = torch.zeros((B, max_new_tokens), device=dev)                   # [B, T]
    out_ent = torch.zeros((B, max_new_tokens), device=dev)                    # [B, T]
    lengths = torch.zeros(B, dtype=torch.long, device=dev)                    # [B]
    finished = torch.zeros(B, dtype=torch.bool, device=dev)                   # [B]
    stop_ids_t = torch.tensor(stop_ids, device=dev)
    max_stop = max((len(s) for s in stop), default=0)
    kv = _cache_kwarg(model)
    rows = torch.arange(B, device=dev)           # original row of each row still in the batch
    cache = DynamicCache(config=model.config)
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
        out[rows, t] = tok_t
        out_logp[rows, t] = logp_all.gather(-1, tok_t[:, None]).squeeze(-1)
        # the entropy the update would recompute, from logits already at hand (entr(0) = 0
        # keeps the tokens masked by min_new_tokens finite)
        out_ent[rows, t] = torch.special.entr(logp_all.exp()).sum(-1)
        lengths[rows] += 1
        done = torch.isin(tok_t, stop_ids_t)                                   # [b]
        if max_stop:
            tails = tok.batch_decode(out[rows, max(0, t + 1 - max_stop):t + 1].tolist(),
                                     skip_special_tokens=True)
            done |= torch.tensor([any(s in tail for s in stop) for tail in tails], device=dev)
        finished[rows[done]] = True
        if t == max_new_tokens - 1:
            break
        keep = (~done).nonzero().squeeze(-1)                                   # [b'] (syncs)
        if keep.numel() == 0:
            break
        if keep.numel() < rows.numel():
            cache.batch_select_indices(keep)
            mask, next_pos, tok_t, rows = mask[keep], next_pos[keep], tok_t[keep], rows[keep]
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)    # [b, L+1]
        logits = model(input_ids=tok_t[:, None], attention_mask=mask, position_ids=next_pos,
                       use_cache=True, **{kv: cache}).logits[:, -1, :]         # [b, V]
        next_pos = next_pos + 1
    return out.cpu(), out_logp.cpu(), lengths.cpu(), finished.cpu(), out_ent.cpu()


def sample(model, tok, prompts: list[str], n: int = 1, temperature: float = 1.0,
           top_p: float = 1.0, max_new_tokens: int = 128, stop: list[str] | None = None,
           batch_size: int = 64, seed: int | None = None, min_new_tokens: int = 0) -> Rollout:
    """`n` responses per prompt (ordered prompt by prompt), about `batch_size` sequences at a
    time. temperature 0 is greedy. `old_logp` is under the temperature-scaled distribution before
    top-p, the quantity `forward_logprobs` recomputes (as TRL and veRL do). A response ends at
    EOS, at a stop string (kept in the text) or at max_new_tokens."""
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
    chunks = [_sample_chunk(model, tok, enc[c:c + per_chunk], n, temperature, top_p,
                            max_new_tokens, stop, stop_ids, generator, min_new_tokens)
              for c in range(0, len(enc), per_chunk)]
    model.train(was_training)
    resp, logp, lengths, finished, ent = (torch.cat([c[k] for c in chunks]) for k in range(5))
    T = max(int(lengths.max()), 1) if rows else 1
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
                   prompt_index=[i for i in range(len(prompts)) for _ in range(n)])


# ----------------------------------------------------------------------------------------------
# Log-probs and entropy
# ----------------------------------------------------------------------------------------------
def entropy_from_logits(z: torch.Tensor) -> torch.Tensor:
    """Full-vocabulary entropy (nats) per position, H = logsumexp(z) - Σ softmax(z)·z: the policy
    entropy of Cui et al. 2025 that Chae et al. track per role. z: [..., V] → [...]."""
    return torch.logsumexp(z, -1) - (z.softmax(-1) * z).sum(-1)


def forward_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     prompt_len: int, temperature: float = 1.0, with_entropy: bool = True,
                     entropy_grad: bool = False):
    """Per-token log-probs and entropies of the response tokens (the last T columns of
    input_ids [B, P+T]) under logits / temperature, from one forward pass in the caller's grad
    mode; the entropy carries gradient only with `entropy_grad`. Returns (logp [B, T], entropy
    [B, T] or None); multiply by the response mask (padding positions are meaningless)."""
    pos = (attention_mask.cumsum(-1) - 1).clamp(min=0)                         # [B, P+T]
    T = input_ids.shape[1] - prompt_len
    # logits at positions P-1 .. P+T-2 predict the response tokens P .. P+T-1
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=pos,
                   logits_to_keep=T + 1).logits[:, :-1, :]                     # [B, T, V]
    z = logits.float() / temperature                                           # [B, T, V]
    target = input_ids[:, prompt_len:]                                         # [B, T]
    logp = z.log_softmax(-1).gather(-1, target[..., None]).squeeze(-1)         # [B, T]
    ent = None
    if with_entropy:
        with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
            ent = entropy_from_logits(z if entropy_grad else z.detach())       # [B, T]
    return logp, ent


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> float:
    """Token mean of x over mask (both [B, T]); 0.0 for an empty mask."""
    total = mask.sum()
    return float((x * mask).sum() / total) if total > 0 else 0.0


# ----------------------------------------------------------------------------------------------
# Run folders: config, logs, checkpoints, resume
# ----------------------------------------------------------------------------------------------
def read_jsonl(path, what: str = "") -> list[dict]:
    """The JSON objects of a .jsonl file, one per non-blank line. A missing file or a malformed
    line is a clear error naming the file and the line number."""
    p = Path(path)
    check(p.is_file(), f"{what}{path}: file not found")
    rows = []
    with open(p, encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise SystemExit(f"{what}{path}, line {i}: malformed JSON ({e.msg}, column "
                                 f"{e.colno})") from None
            check(isinstance(row, dict), f"{what}{path}, line {i}: expected a JSON object")
            rows.append(row)
    return rows


def _rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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
        if not self.ckpt_dir.exists():
            return []
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
        torch.save({"step": step, "optimizer": optimizer.state_dict() if optimizer else None,
                    "rng": _rng_state(), "extra": extra or {}}, tmp / "trainer_state.pt")
        shutil.rmtree(d, ignore_errors=True)
        tmp.rename(d)
        older = [c for c in self.checkpoints() if c != d]
        if keep:
            for c in older[:max(0, len(older) - keep + 1)]:
                shutil.rmtree(c)
            older = older[max(0, len(older) - keep + 1):]
        if older:  # the optimizer state is needed only to resume, from the newest checkpoint
            ts = torch.load(older[-1] / "trainer_state.pt", weights_only=False)
            if ts.get("optimizer") is not None:
                torch.save({**ts, "optimizer": None}, older[-1] / "trainer_state.pt")
        return d

    def truncate(self, step: int) -> None:
        """Drop the log lines written after `step` (they are written again after a resume; a
        line cut short by a crash can only be one of them)."""
        for f in self.logs:
            p = self.path / f
            if not p.exists():
                continue
            keep = []
            for line in p.read_text().splitlines():
                with contextlib.suppress(json.JSONDecodeError):
                    if line.strip() and json.loads(line).get("step", 0) <= step:
                        keep.append(line + "\n")
            p.write_text("".join(keep))

    def resume(self, model, optimizer=None) -> tuple[int, dict]:
        """Restore weights, optimizer and RNG states from the latest checkpoint and cut the
        logs back to its step. Returns (step, extra); (0, {}) without a checkpoint."""
        ck = self.checkpoints()
        if not ck:
            return 0, {}
        from safetensors.torch import load_file

        ck = ck[-1]
        files = sorted(ck.glob("*.safetensors"))
        check(bool(files), f"{ck}: the checkpoint has no safetensors weights")
        state = {}
        for f in files:
            state.update(load_file(str(f), device=str(next(model.parameters()).device)))
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.endswith("lm_head.weight")]  # tied weights
        check(not missing and not unexpected, f"{ck}: the checkpoint does not match the model "
                                              f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
        ts = torch.load(ck / "trainer_state.pt", weights_only=False)
        if optimizer is not None and ts["optimizer"] is not None:
            optimizer.load_state_dict(ts["optimizer"])
        _set_rng_state(ts["rng"])
        self.truncate(int(ts["step"]))
        return int(ts["step"]), ts.get("extra", {})
