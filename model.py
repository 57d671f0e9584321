"""model.py — the policy utilities every zeroplay script shares.

One code path for every causal LM, from the 5M-parameter toy base built on CPU to Qwen2.5 on a GPU:

  load_policy(...)       load a model + tokenizer (hub id, local `save_pretrained` folder, or .gguf)
  sample(...)            batched rollouts with a KV cache: n samples per prompt, temperature, top-p,
                         stop at EOS or stop strings; returns ids, masks, texts and sampling log-probs
  forward_logprobs(...)  per-token log-probs AND full-vocabulary entropies of the response tokens
                         from one forward pass (logits / temperature), with or without gradient
  RunDir                 the run-folder conventions: config.json, metrics.jsonl, samples.jsonl,
                         Hugging Face checkpoints, and exact resume

Nothing here is specific to the toy model except `resolve_model("toy")`, which returns the path of
the toy base that ships with the project (toy_base/, built by pretrain.py).
"""
from __future__ import annotations

import contextlib
import json
import os
import random
import resource
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
# Setup helpers
# ----------------------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    """One seed for Python's `random`, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def on_terminal() -> bool:
    """Whether the console is a terminal (progress bars) or a log file (plain lines only)."""
    return sys.stderr.isatty()


def progress(iterable, desc: str, **kw):
    """A progress bar on a terminal; on a log file nothing, so the log holds one line per step
    instead of thousands of redraws."""
    return tqdm(iterable, desc=desc, dynamic_ncols=True, leave=False, disable=not on_terminal(),
                **kw)


def say(msg: str) -> None:
    """One console line (printed above a progress bar when there is one)."""
    tqdm.write(msg)
    sys.stdout.flush()


def enable_grad_checkpointing(model) -> None:
    """Activation checkpointing: keep only each layer's input and recompute the rest in the
    backward pass (memory for about one more forward). transformers 5.24 renamed the method;
    older 5.x releases (the GPU image's 5.17) only know the old name."""
    fn = getattr(model, "activation_checkpointing_enable", None) or \
        model.gradient_checkpointing_enable
    fn()


@contextlib.contextmanager
def oom_advice(script: str, flags: str):
    """Turn a GPU out-of-memory error inside the block into a clear exit that names the flags
    which lower the memory (`flags`, e.g. "--micro-batch (same gradient), --grad-checkpointing"),
    instead of a stack trace from deep inside torch."""
    try:
        yield
    except torch.OutOfMemoryError as e:
        first = str(e).splitlines()[0] if str(e) else "out of memory"
        raise SystemExit(f"[{script}] out of GPU memory ({first[:160]}). Lower the memory "
                         f"with {flags}. The run's last checkpoint is kept (--resume).") from None


def reset_peak_memory(device) -> None:
    """Start a new window for `memory_stats`' CUDA peak (no-op on CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def memory_stats(device) -> dict:
    """Memory figures for a step's metrics line. Always `mem/rss_peak_gib`: the process's peak
    resident memory so far (Linux ru_maxrss, KiB; a high-water mark, not per step). On CUDA also
    `mem/cuda_peak_gib`: torch.cuda.max_memory_allocated since the last `reset_peak_memory` (the
    step's peak, when the loop resets it at each step start), and `mem/cuda_reserved_gib`: what
    the caching allocator holds now."""
    out = {"mem/rss_peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20}
    if torch.device(device).type == "cuda":
        out["mem/cuda_peak_gib"] = torch.cuda.max_memory_allocated(device) / 2 ** 30
        out["mem/cuda_reserved_gib"] = torch.cuda.memory_reserved(device) / 2 ** 30
    return out


def pick_device(device: str | None = None) -> torch.device:
    """`None`/"auto" → CUDA if available, else CPU. On CUDA it also switches off PyTorch's cuDNN
    attention backend (below), for every model the process builds."""
    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {device}: CUDA is not available on this machine")
    dev = torch.device(device)
    if dev.type == "cuda":
        # PyTorch's cuDNN attention backend gave NaN gradients in training: measured on an H100
        # (torch 2.11, transformers 5.17), rlvr.py on the toy base logged a NaN grad norm at step
        # 2 (finite loss) with it, and ran clean with it disabled (flash, memory-efficient and
        # math backends). Suspected, not established: the left-padded rows whose queries see
        # only padding. The sampling forward was fine either way.
        torch.backends.cuda.enable_cudnn_sdp(False)
    return dev


_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
           "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


def pick_dtype(device: torch.device, dtype: str | None = None) -> torch.dtype:
    """`None`/"auto" → bf16 on CUDA, fp32 on CPU (bf16 sampling is not faster on small CPU models)."""
    if dtype in (None, "auto"):
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in _DTYPES:
        raise SystemExit(f"--dtype {dtype!r}: expected one of auto, {', '.join(_DTYPES)}")
    return _DTYPES[dtype]


def resolve_model(name: str) -> str:
    """"toy" → the shipped toy base folder (toy_base/); any other name is returned as it is."""
    if name != "toy":
        return name
    missing = [f for f in TOY_FILES if not (Path(TOY_BASE) / f).is_file()]
    if missing:
        raise SystemExit(f"--model toy: the shipped toy base {TOY_BASE} is missing "
                         f"{', '.join(missing)}. Restore it with `git checkout -- toy_base` or "
                         f"rebuild it with `python pretrain.py --out toy_base` (about 22 min on "
                         f"2 CPU cores).")
    return TOY_BASE


def load_policy(name_or_path: str, device: str | None = None, dtype: str | None = None):
    """Load any causal LM and its tokenizer: a hub id, a local `save_pretrained` folder, or a
    `.gguf` file (transformers dequantizes it; needs `pip install gguf`).

    Returns (model, tokenizer) with the model in eval mode on the chosen device, a pad token set
    and left padding (prompts are left-padded so that every prompt ends at the same column).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    if not on_terminal():  # transformers' own loading/saving bars would flood a log file
        hf_logging.disable_progress_bar()
    path = resolve_model(name_or_path)
    dev = pick_device(device)
    dt = pick_dtype(dev, dtype)
    kwargs = {}
    src = path
    if path.endswith(".gguf"):
        if not Path(path).is_file():
            raise SystemExit(f"--model {path}: no such GGUF file")
        src, kwargs["gguf_file"] = str(Path(path).parent), Path(path).name
    elif os.path.sep in path or path.startswith("."):
        if not Path(path).exists():
            raise SystemExit(f"--model {path}: no such folder (a local path must hold a "
                             f"save_pretrained checkpoint; use 'toy' for the toy base)")
        if Path(path).is_dir() and not (Path(path) / "config.json").exists():
            raise SystemExit(f"--model {path}: the folder has no config.json, so it is not a "
                             f"Hugging Face checkpoint")
    try:
        tok = AutoTokenizer.from_pretrained(src, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(src, dtype=dt, **kwargs)
    except Exception as e:  # hub id not cached / no network / a truncated or corrupted file
        first = (str(e).splitlines() or [""])[0][:200]
        hint = (" The shipped base looks damaged: restore it with `git checkout -- toy_base`."
                if path == TOY_BASE else "")
        raise SystemExit(f"--model {name_or_path}: could not load {path} "
                         f"({e.__class__.__name__}: {first}).{hint}") from None
    if getattr(model.config, "quantization_config", None) is not None and kwargs.get("gguf_file"):
        # A GGUF-loaded model is dequantized in memory but refuses save_pretrained; rebuild it as a
        # plain model so checkpoints can be written and diffed.
        del model.config.quantization_config
        plain = AutoModelForCausalLM.from_config(model.config, dtype=dt)
        plain.load_state_dict(model.state_dict())
        model = plain
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    model.config.pad_token_id = tok.pad_token_id
    model.to(dev).eval()
    return model, tok


def prompt_style(tok) -> str:
    """The prompt templates that suit a tokenizer: "toy" (compact fenced blocks) for the tiny
    character-level tokenizers the toy base uses, "azr" (R1 <think>/<answer> wrapper) otherwise."""
    return "toy" if len(tok) < 1000 else "azr"


def eos_ids(model, tok) -> list[int]:
    """All token ids that end a response: the tokenizer's EOS plus the generation config's."""
    ids = {tok.eos_token_id}
    gen = getattr(model, "generation_config", None)
    if gen is not None and gen.eos_token_id is not None:
        e = gen.eos_token_id
        ids.update(e if isinstance(e, (list, tuple)) else [e])
    return sorted(i for i in ids if i is not None)


# ----------------------------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------------------------
@dataclass
class Rollout:
    """A batch of sampled responses; sample i answers prompt `prompt_index[i]` (= i // n)."""
    input_ids: torch.Tensor        # [N, P+T] left-padded prompt, then right-padded response
    attention_mask: torch.Tensor   # [N, P+T] 1 on real tokens
    prompt_len: int                # P
    response_mask: torch.Tensor    # [N, T] 1.0 on response tokens (EOS included), 0.0 on padding
    old_logp: torch.Tensor         # [N, T] log-prob of each sampled token under logits / T
    entropy: torch.Tensor          # [N, T] full-vocabulary entropy of logits / T at each token
    texts: list[str]               # decoded responses (stop string kept, EOS/pad removed)
    finished: torch.Tensor         # [N] bool: ended by EOS or a stop string, not by the length cap
    lengths: torch.Tensor          # [N] response tokens
    prompt_index: list[int] = field(default_factory=list)

    def __len__(self):
        return len(self.texts)


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Nucleus filtering: keep the smallest set of tokens whose probability mass reaches top_p.
    logits: [B, V] (already divided by the temperature). Returns logits with -inf elsewhere."""
    if top_p >= 1.0:
        return logits
    sorted_logits, idx = torch.sort(logits, descending=True, dim=-1)           # [B, V]
    cum = sorted_logits.softmax(-1).cumsum(-1)                                 # [B, V]
    remove = cum - sorted_logits.softmax(-1) >= top_p   # mass before this token already >= top_p
    sorted_logits = sorted_logits.masked_fill(remove, float("-inf"))
    return torch.full_like(logits, float("-inf")).scatter(-1, idx, sorted_logits)


def _pad_left(seqs: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
        mask[i, width - len(s):] = 1
    return ids, mask


def _cache_kwarg(model) -> str:
    """The name under which this transformers version takes the KV cache: 5.24+ calls it
    `cache` (`past_key_values` is deprecated); older 5.x releases only know `past_key_values`
    and would silently ignore `cache` (every token decoded without its context)."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


@torch.no_grad()
def _sample_chunk(model, tok, prompt_ids, n, temperature, top_p, max_new_tokens, stop, stop_ids,
                  generator, min_new_tokens=0):
    """Sample `n` responses per row of `prompt_ids` with a KV cache. Each prompt is processed
    once and its cache repeated n times; finished rows are dropped from the batch (and the
    cache) as they end, so short answers cost nothing afterwards.
    Everything stays on the model's device; the host waits once per token (to learn which rows
    ended), plus the decoding of recent tokens when stop strings are given."""
    from transformers import DynamicCache

    dev = next(model.parameters()).device
    ids, mask = _pad_left(prompt_ids, tok.pad_token_id)
    ids, mask = ids.to(dev), mask.to(dev)
    B = ids.shape[0] * n
    out = torch.full((B, max_new_tokens), tok.pad_token_id, dtype=torch.long, device=dev)  # [B, T]
    out_logp = torch.zeros((B, max_new_tokens), device=dev)                      # [B, T]
    out_ent = torch.zeros((B, max_new_tokens), device=dev)                       # [B, T]
    lengths = torch.zeros(B, dtype=torch.long, device=dev)                       # [B]
    finished = torch.zeros(B, dtype=torch.bool, device=dev)                      # [B]
    stop_ids_t = torch.tensor(stop_ids, device=dev)
    max_stop = max((len(s) for s in stop), default=0)
    kv = _cache_kwarg(model)

    rows = torch.arange(B, device=dev)           # original row of each row still in the batch
    cache = DynamicCache(config=model.config)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)                                      # [B, P]
    logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True,
                   logits_to_keep=1, **{kv: cache}).logits[:, -1, :]              # [B/n, V]
    if n > 1:  # one prefill per prompt, then n copies of its cache
        cache.batch_repeat_interleave(n)
        logits, mask, pos = (x.repeat_interleave(n, dim=0) for x in (logits, mask, pos))
    next_pos = pos[:, -1:] + 1                                                    # [B, 1]
    for t in range(max_new_tokens):
        z = logits.float() / (temperature if temperature > 0 else 1.0)          # [b, V]
        if t < min_new_tokens:  # benchmarks force full-length responses
            z[:, stop_ids_t] = float("-inf")
        logp_all = z.log_softmax(-1)                                              # [b, V]
        if temperature == 0:  # greedy decoding
            tok_t = z.argmax(-1)                                                  # [b]
        else:
            probs = top_p_filter(z, top_p).softmax(-1)                            # [b, V]
            tok_t = torch.multinomial(probs, 1, generator=generator).squeeze(-1) # [b]
        out[rows, t] = tok_t
        out_logp[rows, t] = logp_all.gather(-1, tok_t[:, None]).squeeze(-1)
        # the entropy the update would recompute, from logits already at hand (entr(0) = 0
        # keeps tokens masked by min_new_tokens finite)
        out_ent[rows, t] = torch.special.entr(logp_all.exp()).sum(-1)
        lengths[rows] += 1
        done = torch.isin(tok_t, stop_ids_t)                                      # [b]
        if max_stop:
            tails = tok.batch_decode(out[rows, max(0, t + 1 - max_stop):t + 1].tolist(),
                                     skip_special_tokens=True)
            done |= torch.tensor([any(s in tail for s in stop) for tail in tails], device=dev)
        finished[rows[done]] = True
        if t == max_new_tokens - 1:
            break
        keep = (~done).nonzero().squeeze(-1)                                      # [b'] (syncs)
        if keep.numel() == 0:
            break
        if keep.numel() < rows.numel():  # drop finished rows from the batch and the cache
            cache.batch_select_indices(keep)
            mask, next_pos, tok_t, rows = mask[keep], next_pos[keep], tok_t[keep], rows[keep]
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)       # [b, L+1]
        logits = model(input_ids=tok_t[:, None], attention_mask=mask, position_ids=next_pos,
                       use_cache=True, **{kv: cache}).logits[:, -1, :]            # [b, V]
        next_pos = next_pos + 1
    return out.cpu(), out_logp.cpu(), lengths.cpu(), finished.cpu(), out_ent.cpu()


def sample(model, tok, prompts: list[str], n: int = 1, temperature: float = 1.0,
           top_p: float = 1.0, max_new_tokens: int = 128, stop: list[str] | None = None,
           batch_size: int = 64, seed: int | None = None, min_new_tokens: int = 0) -> Rollout:
    """Sample `n` responses for each prompt (ordered prompt by prompt), decoding about
    `batch_size` sequences at a time (whole groups of n; each prompt is prefilled once).

    temperature 0 means greedy decoding (then `old_logp` is under the unscaled logits).
    The sampling log-probs (`old_logp`) are taken under the temperature-scaled distribution
    before top-p truncation — the same quantity `forward_logprobs` recomputes, as TRL and veRL do.
    A response ends at an EOS token, at a stop string (kept in the text), or at max_new_tokens.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 means greedy), got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    stop = list(stop or [])
    generator = None
    dev = next(model.parameters()).device
    if seed is not None:
        generator = torch.Generator(device=dev).manual_seed(seed)
    enc = tok(list(prompts), add_special_tokens=True)["input_ids"]
    rows = [p for p in enc for _ in range(n)]
    index = [i for i in range(len(prompts)) for _ in range(n)]
    per_chunk = max(1, batch_size // n)  # prompts per decoding batch
    stop_ids = eos_ids(model, tok)
    was_training = model.training
    model.eval()
    chunks = []
    for c in range(0, len(enc), per_chunk):
        chunks.append(_sample_chunk(model, tok, enc[c:c + per_chunk], n, temperature, top_p,
                                    max_new_tokens, stop, stop_ids, generator, min_new_tokens))
    model.train(was_training)
    resp = torch.cat([c[0] for c in chunks])                                      # [N, Tmax]
    logp = torch.cat([c[1] for c in chunks])                                      # [N, Tmax]
    lengths = torch.cat([c[2] for c in chunks])                                   # [N]
    finished = torch.cat([c[3] for c in chunks])                                  # [N]
    ent = torch.cat([c[4] for c in chunks])                                       # [N, Tmax]
    T = max(int(lengths.max()), 1) if len(rows) else 1
    resp, logp, ent = resp[:, :T], logp[:, :T], ent[:, :T]
    response_mask = (torch.arange(T)[None, :] < lengths[:, None]).float()         # [N, T]
    logp, ent = logp * response_mask, ent * response_mask
    prompt_ids, prompt_mask = _pad_left(rows, tok.pad_token_id)                   # [N, P]
    input_ids = torch.cat([prompt_ids, resp], dim=1)                              # [N, P+T]
    attention_mask = torch.cat([prompt_mask, response_mask.long()], dim=1)        # [N, P+T]
    texts = tok.batch_decode([resp[i, :lengths[i]].tolist() for i in range(len(rows))],
                             skip_special_tokens=True)
    if stop:  # cut anything a multi-character token produced after the stop string
        for i, text in enumerate(texts):
            cut = min((text.find(s) + len(s) for s in stop if s in text), default=None)
            if cut is not None:
                texts[i] = text[:cut]
    return Rollout(input_ids=input_ids.to(dev), attention_mask=attention_mask.to(dev),
                   prompt_len=prompt_ids.shape[1], response_mask=response_mask.to(dev),
                   old_logp=logp.to(dev), entropy=ent.to(dev), texts=texts,
                   finished=finished, lengths=lengths, prompt_index=index)


# ----------------------------------------------------------------------------------------------
# Log-probs and entropy
# ----------------------------------------------------------------------------------------------
def entropy_from_logits(z: torch.Tensor) -> torch.Tensor:
    """Full-vocabulary Shannon entropy (nats) per position: H = logsumexp(z) - sum softmax(z)·z.
    z: [..., V] → [...]. This is the policy entropy of Cui et al. 2025 (and TRL/veRL's)."""
    return torch.logsumexp(z, -1) - (z.softmax(-1) * z).sum(-1)


def forward_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     prompt_len: int, temperature: float = 1.0, with_entropy: bool = True,
                     entropy_grad: bool = False):
    """Per-token log-probs and entropies of the response tokens from ONE forward pass.

    input_ids, attention_mask: [B, P+T]; the response is the last T = P+T-prompt_len columns.
    Logits are divided by the sampling temperature, so these are the log-probs of the sampling
    distribution (before top-p). Runs in the caller's grad mode; the entropy carries gradient only
    when `entropy_grad` (an entropy bonus needs it; logging does not).
    Returns (logp [B, T], entropy [B, T] or None); positions outside the response mask are
    meaningless — multiply by the response mask.
    """
    pos = (attention_mask.cumsum(-1) - 1).clamp(min=0)                           # [B, P+T]
    T = input_ids.shape[1] - prompt_len
    # logits at positions P-1 .. P+T-2 predict response tokens P .. P+T-1
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=pos,
                   logits_to_keep=T + 1).logits[:, :-1, :]                        # [B, T, V]
    z = logits.float() / temperature                                              # [B, T, V]
    target = input_ids[:, prompt_len:]                                            # [B, T]
    logp = z.log_softmax(-1).gather(-1, target[..., None]).squeeze(-1)            # [B, T]
    ent = None
    if with_entropy:
        if entropy_grad:
            ent = entropy_from_logits(z)                                          # [B, T]
        else:
            with torch.no_grad():
                ent = entropy_from_logits(z.detach())                             # [B, T]
    return logp, ent


@torch.no_grad()
def batched_logprobs(model, input_ids, attention_mask, prompt_len, temperature=1.0,
                     micro_batch: int = 16, with_entropy: bool = True):
    """No-grad `forward_logprobs` over micro-batches (reference/old log-probs, evaluation)."""
    lps, ents = [], []
    for i in range(0, input_ids.shape[0], micro_batch):
        lp, ent = forward_logprobs(model, input_ids[i:i + micro_batch],
                                   attention_mask[i:i + micro_batch], prompt_len, temperature,
                                   with_entropy=with_entropy)
        lps.append(lp)
        ents.append(ent)
    return torch.cat(lps), (torch.cat(ents) if with_entropy else None)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> float:
    """Token mean of x over mask (both [B, T]) as a float; 0.0 for an empty mask."""
    total = mask.sum()
    return float((x * mask).sum() / total) if total > 0 else 0.0


# ----------------------------------------------------------------------------------------------
# Run folders: config, metrics, samples, checkpoints, resume
# ----------------------------------------------------------------------------------------------
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
    """A run folder: config.json, metrics.jsonl (one JSON line per step), samples.jsonl,
    checkpoints/step_XXXXXX/ (save_pretrained model + tokenizer + trainer_state.pt)."""

    def __init__(self, path: str):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.ckpt_dir = self.path / "checkpoints"

    # --- config ---------------------------------------------------------------------------
    def write_config(self, cfg: dict) -> None:
        (self.path / "config.json").write_text(json.dumps(cfg, indent=2, default=str) + "\n")

    def read_config(self) -> dict:
        p = self.path / "config.json"
        if not p.exists():
            raise SystemExit(f"{self.path}: not a run folder (no config.json)")
        return json.loads(p.read_text())

    # --- metrics and samples ------------------------------------------------------------------
    def log(self, step: int, metrics: dict, file: str = "metrics.jsonl") -> None:
        with open(self.path / file, "a") as f:
            f.write(json.dumps({"step": step, **metrics}, default=float) + "\n")

    def write_samples(self, step: int, rows: list[dict], file: str = "samples.jsonl") -> None:
        with open(self.path / file, "a") as f:
            for r in rows:
                f.write(json.dumps({"step": step, **r}, default=str) + "\n")

    def read_metrics(self, file: str = "metrics.jsonl") -> list[dict]:
        p = self.path / file
        if not p.exists():
            return []
        rows = []
        for i, line in enumerate(p.read_text().splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise SystemExit(f"{p}:{i}: malformed JSON line ({e.msg})") from None
        return rows

    def truncate_log(self, file: str, step: int) -> None:
        """Keep only the lines of `file` whose step is <= `step` (drop what came after the
        checkpoint we resume from, so nothing is duplicated when those steps run again)."""
        p = self.path / file
        if not p.exists():
            return
        keep = [line for line in p.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= step]
        p.write_text("".join(line + "\n" for line in keep))

    # --- checkpoints --------------------------------------------------------------------------
    def save_checkpoint(self, step: int, model, tok, optimizer=None, extra: dict | None = None,
                        keep_last: int | None = None) -> Path:
        """Write checkpoints/step_{step:06d}/ atomically (written to a temp name, then renamed)."""
        d = self.ckpt_dir / f"step_{step:06d}"
        tmp = self.ckpt_dir / f".tmp_step_{step:06d}"
        if tmp.exists():
            import shutil
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        torch.save({"step": step, "optimizer": optimizer.state_dict() if optimizer else None,
                    "rng": _rng_state(), "extra": extra or {}}, tmp / "trainer_state.pt")
        if d.exists():
            import shutil
            shutil.rmtree(d)
        tmp.rename(d)
        return d

    def checkpoints(self) -> list[Path]:
        if not self.ckpt_dir.exists():
            return []
        return sorted(p for p in self.ckpt_dir.glob("step_*") if (p / "config.json").exists())

    def latest_checkpoint(self) -> Path | None:
        ck = self.checkpoints()
        return ck[-1] if ck else None

    def claim(self, resume: bool, logs=("metrics.jsonl", "samples.jsonl")) -> None:
        """Guard the folder before a run starts: without --resume, a folder that already holds a
        run (metrics.jsonl or a checkpoint) is refused, so logs are never silently appended to;
        with --resume but no checkpoint yet, the `logs` of the unsaved attempt are dropped and
        the run starts over."""
        has_run = (self.path / "metrics.jsonl").exists() or self.latest_checkpoint() is not None
        if has_run and not resume:
            raise SystemExit(f"--out {self.path} already holds a run: pass --resume to continue "
                             f"it, or choose another --out")
        if resume and self.latest_checkpoint() is None:
            for f in logs:
                (self.path / f).unlink(missing_ok=True)

    def resume(self, model, optimizer=None) -> tuple[int, dict]:
        """Restore weights, optimizer and RNG states from the latest checkpoint and truncate the
        logs to its step. Returns (step, extra); (0, {}) when there is no checkpoint yet."""
        ck = self.latest_checkpoint()
        if ck is None:
            return 0, {}
        from safetensors.torch import load_file

        files = sorted(ck.glob("*.safetensors"))
        if not files:
            raise SystemExit(f"{ck}: checkpoint has no safetensors weights")
        state = {}
        for f in files:
            state.update(load_file(str(f), device=str(next(model.parameters()).device)))
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.endswith("lm_head.weight")]  # tied weights
        if missing or unexpected:
            raise SystemExit(f"{ck}: checkpoint does not match the model "
                             f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
        ts = torch.load(ck / "trainer_state.pt", weights_only=False)
        if optimizer is not None and ts["optimizer"] is not None:
            optimizer.load_state_dict(ts["optimizer"])
        _set_rng_state(ts["rng"])
        step = int(ts["step"])
        for f in ("metrics.jsonl", "samples.jsonl"):
            self.truncate_log(f, step)
        return step, ts.get("extra", {})


# ----------------------------------------------------------------------------------------------
# Config: a @dataclass whose fields become --flags; the comment after each field is its --help
# ----------------------------------------------------------------------------------------------
def parse_config(cls, argv=None, description: str = ""):
    """Build an argparse parser from a @dataclass config and return the parsed instance.

    Each field `name: type = default  # help text` becomes `--name` (underscores → dashes) with
    that help text; bools become `--name/--no-name`; `list[...]`-typed fields take several values.
    """
    import argparse
    import dataclasses
    import inspect
    import re as _re

    helps = {}
    for line in inspect.getsource(cls).splitlines():
        m = _re.match(r"\s+(\w+)\s*:[^=]+=.*?#\s*(.+)$", line)
        if m:
            helps[m.group(1)] = m.group(2).strip()
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    casts = {"int": int, "float": float, "str": str}
    for f in dataclasses.fields(cls):
        typ = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        typ = str(f.type) if typ == "list" else typ
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        h = helps.get(f.name, "")
        if typ == "bool":
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=h)
        elif typ.startswith("list["):
            p.add_argument(flag, nargs="*", type=casts.get(typ[5:-1], str), default=default,
                           help=h)
        else:
            base = typ.replace(" | None", "").replace("None | ", "")
            p.add_argument(flag, type=casts.get(base, str), default=default, help=h)
    return cls(**vars(p.parse_args(argv)))
