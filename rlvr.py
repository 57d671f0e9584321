"""rlvr.py — GRPO with verifiable rewards (RLVR), hand-written.

    python rlvr.py                                   # toy base on toy arithmetic → runs/rlvr
    python rlvr.py --loss-agg seq_mean --scale-rewards group          # GRPO (Shao et al. 2024)
    python rlvr.py --loss-agg token_mean --clip-high 0.28             # DAPO (Yu et al. 2025)
    python rlvr.py --loss-agg constant --scale-rewards none           # Dr. GRPO (Liu et al. 2025)
    python rlvr.py --model Qwen/Qwen2.5-0.5B --train-data gsm8k.jsonl --device cuda
    python rlvr.py --out runs/rlvr --resume          # continue an interrupted run

One step: sample G completions per prompt → score each with the verifier's math check (1 correct,
0 otherwise, optionally a small format reward) → group-relative advantages → clipped policy-gradient
update → log → checkpoint. The policy-gradient core (`group_advantages`, `policy_loss`,
`Experience`, `PGConfig`, `update_policy`) is shared with selfplay.py.

Sections: Prompts · Config · Rewards · Advantages · Loss · Update · Loop · main
"""
from __future__ import annotations

import dataclasses
import math
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch

import model as M
import toydata


# ==============================================================================================
# Prompts
# ----------------------------------------------------------------------------------------------
# "toy": the character-level toy base was pretrained on "Problem: <q>\nSolution: <steps>
#        <answer>N</answer>" documents (pretrain.py), so the prompt is that prefix.
# "azr": the same R1 <think>/<answer> wrapper that selfplay.py uses for real models.
# ==============================================================================================
def math_prompt(question: str, style: str) -> str:
    """The prompt for a math question; the answer is read from the last <answer>...</answer>."""
    if style == "toy":
        return f"Problem: {question}\nSolution:"
    # imported here, not at the top: selfplay.py imports this module's policy-gradient core, so a
    # top-level import would be circular
    from selfplay import R1_WRAPPER

    return R1_WRAPPER.format(instruction=f"{question}\nGive the final answer (a number only) "
                                         f"inside <answer> </answer>.")


def math_stop(style: str) -> list[str]:
    """Stop strings for math responses (EOS always stops)."""
    return ["</answer>"]


# ==============================================================================================
# Config
# ==============================================================================================
LOSS_AGGS = ("token_mean", "seq_mean", "constant")
SCALES = ("group", "batch", "none")


@dataclass
class PGConfig:
    """The policy-update settings; selfplay.py builds one from its own flags (see `pg_config`)."""
    clip_low: float = 0.2          # PPO clip below: ratio >= 1 - clip_low
    clip_high: float = 0.2         # PPO clip above: ratio <= 1 + clip_high (0.28 = DAPO clip-higher)
    loss_agg: str = "token_mean"   # token_mean (DAPO) | seq_mean (GRPO) | constant (Dr. GRPO)
    constant_len: int = 0          # denominator length for loss_agg=constant (0: widest response)
    kl_coef: float = 0.0           # weight of the k3 KL to the frozen reference (0: no reference)
    entropy_coef: float = 0.0      # weight of the entropy bonus (0: none)
    inner_epochs: int = 1          # passes over each rollout batch
    minibatches: int = 1           # optimizer steps per pass (the batch is split into this many)
    micro_batch: int = 64          # sequences per forward/backward (gradient accumulation)
    max_grad_norm: float = 1.0     # gradient-norm clip (0: none)
    temperature: float = 1.0       # sampling temperature: log-probs are of logits / temperature
    bf16: bool = True              # bf16 autocast for the update's forward/backward


@dataclass
class Config:
    model: str = "toy"             # base policy: "toy", a hub id, a save_pretrained folder or .gguf
    train_data: str = ""           # math .jsonl (GSM8K/MATH format); "" = toy arithmetic
    train_problems: int = 5000     # toy arithmetic training problems (make_arith train split)
    prompt_style: str = "auto"     # prompt template: toy | azr | auto (from the tokenizer)
    out: str = "runs/rlvr"         # run folder (config, metrics.jsonl, samples, checkpoints)
    resume: bool = False           # continue from the last checkpoint in --out
    seed: int = 0                  # seeds random, numpy and torch (and the prompt order)
    device: str = "auto"           # cpu | cuda | auto
    dtype: str = "auto"            # model weights dtype: auto (CUDA bf16, CPU fp32) | fp32 | bf16
    threads: int = 0               # torch CPU threads (0: torch's default)
    steps: int = 150               # GRPO steps (one rollout batch and its update each)
    prompts_per_step: int = 64     # prompts per step (toy base: 16 gave too noisy a gradient to transfer to held-out problems)
    group_size: int = 8            # G: completions per prompt
    max_new_tokens: int = 56       # response length cap (tokens; toy solutions are <= 50)
    temperature: float = 1.0       # sampling temperature (the loss uses log-probs of logits / T)
    top_p: float = 1.0             # nucleus sampling
    gen_batch_size: int = 128      # sequences sampled together
    lr: float = 3e-5               # AdamW learning rate (after warm-up; toy base: 1e-4 lowers held-out accuracy, 3e-4+ collapses)
    warmup_steps: int = 5          # linear learning-rate warm-up
    weight_decay: float = 0.0      # AdamW weight decay
    scale_rewards: str = "none"    # advantage scale: group std (GRPO) | batch std | none (Dr. GRPO)
    drop_zero_std: bool = False    # remove equal-reward groups from the batch and its loss denominators (DAPO dynamic sampling, no refill); they are never computed either way
    format_reward: float = 0.0     # reward for a wrong but well-formed response (toy: worked-solution format; azr: <answer> block)
    clip_low: float = 0.2          # PPO clip below: ratio >= 1 - clip_low
    clip_high: float = 0.2         # PPO clip above: ratio <= 1 + clip_high (0.28 = DAPO)
    loss_agg: str = "token_mean"   # token_mean (DAPO/BNPO) | seq_mean (GRPO) | constant (Dr. GRPO)
    kl_coef: float = 0.0           # k3 KL-to-reference weight (loads a frozen copy of the base)
    kl_every: int = 10             # with --kl-coef 0, still measure KL(policy || base) every N steps (0: never)
    entropy_coef: float = 0.0      # entropy bonus weight
    inner_epochs: int = 1          # passes over each rollout batch
    minibatches: int = 1           # optimizer steps per pass
    micro_batch: int = 64          # sequences per forward/backward (gradient accumulation)
    max_grad_norm: float = 1.0     # gradient-norm clip (0: none)
    bf16: bool = True              # bf16 autocast for the update forward/backward (CPU: ~2x faster)
    grad_checkpointing: bool = False  # activation checkpointing: recompute in the backward pass (real models on small GPUs)
    eval_problems: int = 1000      # held-out problems for greedy accuracy (0: no evaluation; 1000 → SE about 1.4 points)
    eval_data: str = ""            # math .jsonl to evaluate on (first --eval-problems); "" = toy arithmetic heldout split, seed 1234
    eval_every: int = 50           # evaluate every N steps (and always at the start and the end)
    save_every: int = 50           # checkpoint every N steps (and always at the end)
    sample_every: int = 10         # write sample completions every N steps
    samples_per_log: int = 4       # completions written each time


def pg_config(cfg) -> PGConfig:
    """The PGConfig inside a script config: every PGConfig field the script config also has
    (rlvr's `Config` has them all; `constant_len` falls back to `max_new_tokens`)."""
    kw = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(PGConfig) if hasattr(cfg, f.name)}
    if "constant_len" not in kw and hasattr(cfg, "max_new_tokens"):
        kw["constant_len"] = cfg.max_new_tokens
    pg = PGConfig(**kw)
    check_pg_config(pg)
    return pg


def check_pg_config(pg: PGConfig) -> None:
    """Reject bad settings with a message naming the flag."""
    if pg.loss_agg not in LOSS_AGGS:
        raise SystemExit(f"--loss-agg {pg.loss_agg!r}: expected one of {', '.join(LOSS_AGGS)}")
    if not (0 <= pg.clip_low < 1 and pg.clip_high >= 0):
        raise SystemExit(f"--clip-low must be in [0, 1) and --clip-high >= 0 "
                         f"(got {pg.clip_low}, {pg.clip_high})")
    if pg.inner_epochs < 1 or pg.minibatches < 1 or pg.micro_batch < 1:
        raise SystemExit("--inner-epochs, --minibatches and --micro-batch must be >= 1")
    if pg.temperature <= 0:
        raise SystemExit(f"--temperature must be > 0 for training (got {pg.temperature})")


# ==============================================================================================
# Rewards
# ==============================================================================================
TOY_SOLUTION = re.compile(r"^ (?:-?\d+[-+*]-?\d+=-?\d+\. )*<answer>-?\d+</answer>$")


def well_formed(text: str, style: str = "azr") -> bool:
    """Whether a response has the expected shape, right or wrong. toy: the worked-solution format
    the base was pretrained on, " 4*2=8. 3+8=11. <answer>11</answer>"; azr: a non-empty
    <answer>...</answer> block."""
    if style == "toy":
        return TOY_SOLUTION.match(text) is not None
    a = text.rfind("<answer>")
    return a >= 0 and text.find("</answer>", a) > a + len("<answer>")


def math_reward(text: str, gold, format_reward: float = 0.0, style: str = "azr") -> float:
    """1.0 when the verifier accepts the answer; else `format_reward` if the response is at least
    well formed (`well_formed`); else 0.0. TinyZero's countdown reward gives 0.1 for format;
    DeepSeek-R1-Zero's accuracy reward is format_reward = 0."""
    import verifier  # imported on use: pure functions of this module are testable without it

    if verifier.check_math(text, gold):
        return 1.0
    return format_reward if format_reward and well_formed(text, style) else 0.0


# ==============================================================================================
# Advantages
# ==============================================================================================
def group_advantages(rewards: torch.Tensor, group_size: int, scale: str = "group",
                     eps: float = 1e-4) -> torch.Tensor:
    """Group-relative advantages (GRPO, Shao et al. 2024 eq. for outcome supervision):

        A_i = (r_i - mean(r_group)) / (std + eps)

    rewards: [N] flat, ordered group by group (sample i belongs to group i // group_size).
    scale: "group" → std of the group (GRPO); "batch" → std of the whole batch (the group mean is
    still subtracted; TRL's scale_rewards="batch"); "none" → no division (Dr. GRPO, Liu et al.
    2025, which argues the std biases towards too-easy/too-hard questions).
    std is Bessel-corrected (as TRL and torch.std); eps = 1e-4 as TRL and nano-aha-moment.
    Example: rewards [1, 0, 0, 0], G=4 → mean .25, std .5 → [1.5, -.5, -.5, -.5] (÷(std+eps)).
    A zero-variance group gets advantage 0 under every scale.
    """
    if scale not in SCALES:
        raise ValueError(f"scale {scale!r}: expected one of {', '.join(SCALES)}")
    if group_size < 1 or rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    r = rewards.float().view(-1, group_size)                                      # [B, G]
    adv = r - r.mean(-1, keepdim=True)                                            # [B, G]
    if scale == "group":
        if group_size < 2:
            raise ValueError("scale='group' needs group_size >= 2 "
                             "(the std of one sample is undefined)")
        adv = adv / (r.std(-1, keepdim=True) + eps)                               # [B, G]
    elif scale == "batch":
        if rewards.numel() < 2:
            raise ValueError("scale='batch' needs at least 2 rewards")
        adv = adv / (r.std() + eps)                                               # [B, G]
    return adv.view(-1)                                                           # [N]


def varied_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """[N] bool: True for samples whose group's rewards are not all equal. The others have zero
    advantage, so they add nothing to the policy gradient (only to the loss denominators, the KL
    and the entropy terms); removing them from the batch is the cheap half of DAPO's dynamic
    sampling (`--drop-zero-std`)."""
    r = rewards.view(-1, group_size)                                              # [B, G]
    varied = (r.max(-1).values - r.min(-1).values) > 0                            # [B]
    return varied.repeat_interleave(group_size)                                   # [N]


# ==============================================================================================
# Loss
# ==============================================================================================
def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimator of KL(pi || pi_ref) (Schulman 2020; GRPO eq. 4):
    exp(ref - logp) - (ref - logp) - 1  (>= 0, unbiased, 0 where the two agree)."""
    d = ref_logp - logp                                                           # [B, T]
    return torch.exp(d) - d - 1


def policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
                mask: torch.Tensor, clip_low: float = 0.2, clip_high: float = 0.2,
                agg: str = "token_mean", total: float | None = None, constant_len: int = 0,
                ref_logp: torch.Tensor | None = None, kl_coef: float = 0.0,
                entropy: torch.Tensor | None = None, entropy_coef: float = 0.0):
    """Clipped surrogate loss (PPO, as used by GRPO eq. 3 and DAPO eq. 8) and its aggregation.

    Per response token t of sequence i, with ratio ρ = exp(logp - old_logp):
        l_it = -min(ρ·A_i, clip(ρ, 1 - clip_low, 1 + clip_high)·A_i)
               + kl_coef · k3(logp, ref_logp) - entropy_coef · H_it
    (the KL enters the loss as in GRPO/TRL, not the reward as in PPO-RLHF.)
    Aggregation over the masked tokens (|o_i| = tokens of sequence i, n = sequences):
        token_mean: Σ_it l_it / Σ_i |o_i|        DAPO ("token-level"), TRL "dapo"/"bnpo"
        seq_mean:   Σ_i (Σ_t l_it / |o_i|) / n   GRPO paper, TRL "grpo" (length-biased)
        constant:   Σ_it l_it / (n · L)          Dr. GRPO, TRL "dr_grpo" (L = constant_len)
    `total` is the denominator of the WHOLE batch when this call sees one micro-batch of it:
    tokens for token_mean, sequences for seq_mean/constant. Summing the micro-batch losses
    (gradient accumulation) then gives exactly the loss and gradient of the big batch.
    With total=None the call's own batch is the whole batch. constant_len 0 → mask width T.

    Shapes: logp, old_logp, mask, ref_logp, entropy [B, T]; advantages [B].
    Returns (loss: scalar tensor, stats: dict of floats over this call's tokens:
    clip_low_frac, clip_high_frac (tokens whose gradient the clip removed), ratio_mean, kl, tokens).
    """
    if agg not in LOSS_AGGS:
        raise ValueError(f"agg {agg!r}: expected one of {', '.join(LOSS_AGGS)}")
    mask = mask.to(logp.dtype)                                                    # [B, T]
    A = advantages.to(logp.dtype)[:, None]                                        # [B, 1]
    ratio = torch.exp(logp - old_logp)                                            # [B, T]
    clipped = ratio.clamp(1 - clip_low, 1 + clip_high)                            # [B, T]
    per_token = -torch.minimum(ratio * A, clipped * A)                            # [B, T]
    kl = None
    if ref_logp is not None and kl_coef != 0:
        kl = k3_kl(logp, ref_logp)                                                # [B, T]
        per_token = per_token + kl_coef * kl
    if entropy is not None and entropy_coef != 0:
        per_token = per_token - entropy_coef * entropy
    summed = per_token * mask                                                     # [B, T]
    if agg == "token_mean":
        denom = mask.sum() if total is None else total
        loss = summed.sum() / max(float(denom), 1.0)
    elif agg == "seq_mean":
        n = mask.shape[0] if total is None else total
        loss = (summed.sum(-1) / mask.sum(-1).clamp(min=1)).sum() / max(float(n), 1.0)
    else:
        n = mask.shape[0] if total is None else total
        L = constant_len or mask.shape[1]
        loss = summed.sum() / max(float(n) * L, 1.0)
    with torch.no_grad():
        ntok = float(mask.sum())
        frac = (lambda b: float((b.to(mask.dtype) * mask).sum()) / max(ntok, 1.0))  # noqa: E731
        stats = {"clip_low_frac": frac((ratio < 1 - clip_low) & (A < 0)),
                 "clip_high_frac": frac((ratio > 1 + clip_high) & (A > 0)),
                 "ratio_mean": float((ratio * mask).sum()) / max(ntok, 1.0),
                 "kl": float((kl * mask).sum()) / max(ntok, 1.0) if kl is not None else 0.0,
                 "tokens": ntok}
    return loss, stats


# ==============================================================================================
# Update
# ==============================================================================================
@dataclass
class Experience:
    """Scored rollouts ready for the update: one prompt length P per object (rollouts with
    different prompt lengths are separate Experience objects)."""
    input_ids: torch.Tensor        # [N, P+T] left-padded prompt + right-padded response
    attention_mask: torch.Tensor   # [N, P+T]
    prompt_len: int                # P
    response_mask: torch.Tensor    # [N, T] 1.0 on response tokens
    old_logp: torch.Tensor         # [N, T] log-probs at sampling time (logits / temperature)
    advantages: torch.Tensor       # [N]
    ref_logp: torch.Tensor | None = None  # [N, T] frozen-reference log-probs (KL), optional

    def __len__(self):
        return self.input_ids.shape[0]

    @classmethod
    def from_rollout(cls, ro: M.Rollout, advantages: torch.Tensor) -> "Experience":
        dev = ro.input_ids.device
        return cls(ro.input_ids, ro.attention_mask, ro.prompt_len, ro.response_mask,
                   ro.old_logp, advantages.to(dev))

    def select(self, idx: torch.Tensor) -> "Experience":
        """The rows `idx` (a [k] long tensor), trimmed of columns that are padding in all of them:
        leading prompt padding and response columns past the longest response."""
        idx = idx.to(self.input_ids.device)
        am = self.attention_mask[idx]                                             # [k, P+T]
        rm = self.response_mask[idx]                                              # [k, T]
        first = int(am[:, :self.prompt_len].any(0).long().argmax()) if len(idx) else 0
        T = max(int(rm.sum(-1).max()), 1) if len(idx) else 1
        end = self.prompt_len + T
        pick = (lambda x: None if x is None else x[idx][:, :T])  # noqa: E731
        return Experience(self.input_ids[idx][:, first:end], am[:, first:end],
                          self.prompt_len - first, rm[:, :T], pick(self.old_logp),
                          self.advantages[idx], pick(self.ref_logp))


def _autocast(model, enabled: bool):
    dev = next(model.parameters()).device.type
    return torch.autocast(dev, dtype=torch.bfloat16, enabled=enabled)


@torch.no_grad()
def _logprobs(model, e: Experience, cfg: PGConfig):
    """No-grad log-probs and entropies of an experience's responses, micro-batched, under the
    same autocast as the update (so a recomputed old_logp matches the training forward)."""
    lps, ents = [], []
    for i in range(0, len(e), cfg.micro_batch):
        mb = e.select(torch.arange(i, min(i + cfg.micro_batch, len(e))))
        with _autocast(model, cfg.bf16):
            lp, ent = M.forward_logprobs(model, mb.input_ids, mb.attention_mask, mb.prompt_len,
                                         cfg.temperature)
        T = e.response_mask.shape[1]
        lps.append(torch.nn.functional.pad(lp.float(), (0, T - lp.shape[1])))    # [b, T]
        ents.append(torch.nn.functional.pad(ent.float(), (0, T - ent.shape[1])))  # [b, T]
    return torch.cat(lps), torch.cat(ents)                                        # [N, T] x2


def skips_zero_rows(cfg: PGConfig) -> bool:
    """Whether update_policy skips zero-advantage rows (exact only without KL/entropy terms)."""
    return cfg.kl_coef == 0 and cfg.entropy_coef == 0


def update_policy(model, optimizer, experiences: list[Experience], cfg: PGConfig,
                  ref_model=None) -> dict:
    """The policy update for one rollout batch: `inner_epochs` passes, each split into
    `minibatches` optimizer steps; each minibatch takes rows from EVERY experience and is
    processed in micro-batches of `micro_batch` sequences with gradient accumulation. The loss
    denominators (tokens or sequences) are those of the whole minibatch across all experiences,
    so micro-batching never changes the gradient. Then grad-norm clip and one optimizer step.

    Rows whose advantage is exactly 0 (every row of a group with equal rewards) contribute
    exactly zero loss and gradient when there is no KL or entropy term (`skips_zero_rows`), so
    they are not forwarded at all — but still counted in the denominators: the gradient is the
    same as processing them (TRL does), only cheaper. The caller logs their entropy if it wants
    it (grpo_step does; selfplay.py has its own entropy pass).

    old_logp: with one optimizer step per batch (inner_epochs = minibatches = 1, the default)
    the policy that sampled IS the policy being differentiated, so old_logp := logp.detach(),
    which is exactly what a no-grad recomputation (veRL) would give, for free: the ratio is
    exactly 1, and clipping does nothing — clip(ρ)·A = ρ·A at ρ = 1, the gradient is the plain
    policy gradient A·∇logp (GRPO-Zero, TRL with num_iterations=1). With several steps per batch
    the ratio must measure the policy change only, so old_logp is recomputed by a no-grad forward
    of the model before the first step under the update's own precision (bf16 autocast), as veRL
    does. We do not use the sampler's `Rollout.old_logp` for the ratio: it comes from the fp32
    KV-cache path, and its difference to the training forward (logged as `logp_mismatch_max`)
    is numerical noise the clip would mistake for policy change. Measured on the toy base (128
    samples of toy arithmetic at T=1, 4.4k tokens): max |diff| 1.3e-5 with an fp32 update, but
    7.3e-2 (mean 2.1e-3, ratios 0.94..1.08) with the default bf16 autocast.

    Returns stats: loss, clip_low_frac, clip_high_frac, clip_frac, ratio_mean, kl, entropy (token
    means over the processed rows; entropy = full-vocabulary entropy of the policy that sampled,
    from the first pass) with entropy_tokens, grad_norm (mean over steps), logp_mismatch_max,
    tokens, sequences, skipped_frac (rows skipped for zero advantage), optimizer_steps (taken),
    nonfinite_grad_steps (steps skipped because the gradient norm was NaN or inf; their
    grad_norm enters the mean as such, so the log shows them).
    """
    check_pg_config(cfg)
    exps = [e for e in experiences if len(e)]
    if not exps:
        return {}
    params = [p for p in model.parameters() if p.requires_grad]
    on_policy = cfg.inner_epochs * cfg.minibatches == 1
    skip_zero = skips_zero_rows(cfg)
    ent_sum, ent_tok = 0.0, 0.0      # entropy of the sampling policy over the processed rows
    old = [None] * len(exps)
    mismatch = 0.0
    if not on_policy:
        for k, e in enumerate(exps):
            old[k], _ = _logprobs(model, e, cfg)                                  # [N, T]
            diff = (old[k] - e.old_logp.float()).abs() * e.response_mask
            mismatch = max(mismatch, float(diff.max()))
    refs = [e.ref_logp for e in exps]
    if cfg.kl_coef and ref_model is not None:
        refs = [r if r is not None else _logprobs(ref_model, e, cfg)[0] for e, r in zip(exps, refs)]
    elif cfg.kl_coef:
        raise ValueError("kl_coef > 0 needs a ref_model or Experience.ref_logp")
    acc = {"loss": 0.0, "clip_low_frac": 0.0, "clip_high_frac": 0.0, "ratio_mean": 0.0,
           "kl": 0.0}
    tokens_seen, grad_norms, n_skipped, n_nonfinite = 0.0, [], 0, 0
    # loss_agg=constant with constant_len 0: L is the widest response of the WHOLE batch, fixed
    # before micro-batching (policy_loss's own fallback, the width of its trimmed micro-batch,
    # would weigh short responses more and make the gradient depend on --micro-batch)
    const_len = cfg.constant_len
    if cfg.loss_agg == "constant" and not const_len:  # (a host sync per experience: only here)
        const_len = int(max(float(e.response_mask.sum(-1).max()) for e in exps))
    was_training = model.training
    model.train()
    for epoch in range(cfg.inner_epochs):
        # per experience: a random order of its rows, cut into `minibatches` chunks
        chunks = [torch.randperm(len(e)).chunk(cfg.minibatches) for e in exps]
        for mb in range(cfg.minibatches):
            parts = [(k, ch[mb]) for k, ch in enumerate(chunks) if mb < len(ch) and len(ch[mb])]
            n_seq = sum(len(rows) for _, rows in parts)
            n_tok = sum(float(exps[k].response_mask[rows].sum()) for k, rows in parts)
            total = n_tok if cfg.loss_agg == "token_mean" else n_seq
            optimizer.zero_grad(set_to_none=True)
            for k, rows in parts:
                e = exps[k]
                if skip_zero:  # zero advantage → zero gradient: skip (still in `total`)
                    active = rows[e.advantages[rows.to(e.advantages.device)].cpu() != 0]
                    n_skipped += (len(rows) - len(active)) if epoch == 0 else 0
                    rows = active
                # similar lengths together: less padding once `select` trims each micro-batch
                rows = rows[torch.argsort(e.response_mask[rows].sum(-1).cpu(), descending=True)]
                for i in range(0, len(rows), cfg.micro_batch):
                    r = rows[i:i + cfg.micro_batch]
                    mbx = e.select(r)
                    T = mbx.response_mask.shape[1]
                    with _autocast(model, cfg.bf16):
                        logp, ent = M.forward_logprobs(model, mbx.input_ids, mbx.attention_mask,
                                                       mbx.prompt_len, cfg.temperature,
                                                       entropy_grad=cfg.entropy_coef != 0)
                    logp = logp.float()                                           # [b, T]
                    m = mbx.response_mask                                         # [b, T]
                    if on_policy:
                        old_lp = logp.detach()                                    # [b, T]
                        diff = (old_lp - mbx.old_logp.float()).abs() * m
                        mismatch = max(mismatch, float(diff.max()))
                    else:
                        old_lp = old[k][r.to(old[k].device)][:, :T]               # [b, T]
                    ref = refs[k][r.to(refs[k].device)][:, :T] if refs[k] is not None else None
                    loss, st = policy_loss(logp, old_lp, mbx.advantages, m, cfg.clip_low,
                                           cfg.clip_high, cfg.loss_agg, total=total,
                                           constant_len=const_len, ref_logp=ref,
                                           kl_coef=cfg.kl_coef, entropy=ent.float(),
                                           entropy_coef=cfg.entropy_coef)
                    loss.backward()
                    acc["loss"] += float(loss.detach())
                    for key in ("clip_low_frac", "clip_high_frac", "ratio_mean", "kl"):
                        acc[key] += st[key] * st["tokens"]
                    tokens_seen += st["tokens"]
                    if epoch == 0:  # entropy of the policy that sampled (first pass only)
                        ent_sum += float((ent.detach().float() * m).sum())
                        ent_tok += st["tokens"]
            grads = [p.grad for p in params if p.grad is not None]
            if not grads:  # every row of this minibatch had zero advantage: nothing to do
                grad_norms.append(0.0)
                continue
            if cfg.max_grad_norm > 0:
                gn = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            else:
                gn = torch.norm(torch.stack([g.norm() for g in grads]))
            grad_norms.append(float(gn))
            if not math.isfinite(grad_norms[-1]):  # a NaN/inf gradient would poison the weights
                n_nonfinite += 1
                continue
            optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    model.train(was_training)
    n_steps = cfg.inner_epochs * cfg.minibatches
    n_rows = sum(len(e) for e in exps)
    out = {"loss": acc["loss"] / n_steps,
           "entropy": ent_sum / max(ent_tok, 1.0), "entropy_tokens": ent_tok,
           "grad_norm": sum(grad_norms) / len(grad_norms),
           "logp_mismatch_max": mismatch,
           "tokens": sum(float(e.response_mask.sum()) for e in exps),
           "sequences": n_rows, "skipped_frac": n_skipped / n_rows,
           "optimizer_steps": n_steps - n_nonfinite, "nonfinite_grad_steps": n_nonfinite}
    for key in ("clip_low_frac", "clip_high_frac", "ratio_mean", "kl"):
        out[key] = acc[key] / max(tokens_seen, 1.0)
    out["clip_frac"] = out["clip_low_frac"] + out["clip_high_frac"]
    return out


# ==============================================================================================
# Loop
# ==============================================================================================
def load_problems(cfg: Config) -> list[dict]:
    """Training problems: the toy arithmetic train split, or a math .jsonl file."""
    if cfg.train_data:
        if not Path(cfg.train_data).is_file():
            raise SystemExit(f"--train-data {cfg.train_data}: no such file")
        probs = toydata.load_math(cfg.train_data)
        if not probs:
            raise SystemExit(f"--train-data {cfg.train_data}: no problems in the file")
        return probs
    return toydata.make_arith(cfg.train_problems, cfg.seed, "train")


def load_eval_problems(cfg: Config) -> list[dict]:
    """The fixed held-out set: the first --eval-problems of --eval-data, or toy arithmetic from
    the heldout split (seed 1234; never overlaps the train split)."""
    if not cfg.eval_problems:
        return []
    if cfg.eval_data:
        if not Path(cfg.eval_data).is_file():
            raise SystemExit(f"--eval-data {cfg.eval_data}: no such file")
        return toydata.load_math(cfg.eval_data)[:cfg.eval_problems]
    return toydata.make_arith(cfg.eval_problems, 1234, "heldout")


def batch_indices(n: int, step: int, k: int, seed: int) -> list[int]:
    """Problem indices for step `step` (1-based): epochs over a seeded permutation of the n
    problems, so the batch of a step depends only on (seed, step) — resume needs no data state."""
    perms: dict[int, list[int]] = {}
    out = []
    for pos in range((step - 1) * k, step * k):
        epoch, j = divmod(pos, n)
        if epoch not in perms:
            perms[epoch] = list(range(n))
            random.Random(seed * 100003 + epoch).shuffle(perms[epoch])
        out.append(perms[epoch][j])
    return out


def evaluate(model, tok, problems: list[dict], style: str, max_new_tokens: int,
             batch_size: int = 128) -> dict:
    """Greedy accuracy on `problems` with its standard error sqrt(p(1-p)/n)."""
    ro = M.sample(model, tok, [math_prompt(p["question"], style) for p in problems], n=1,
                  temperature=0, max_new_tokens=max_new_tokens, stop=math_stop(style),
                  batch_size=batch_size)
    correct = [math_reward(t, p["answer"]) == 1.0 for t, p in zip(ro.texts, problems)]
    acc = sum(correct) / len(correct)
    return {"eval/accuracy": acc, "eval/accuracy_se": math.sqrt(acc * (1 - acc) / len(correct)),
            "eval/n": len(correct), "eval/response_len": float(ro.lengths.float().mean())}


def grpo_step(model, tok, optimizer, prompts: list[str], golds: list, reward_fn, cfg: Config,
              stop: list[str] | None = None, ref_model=None, measure_kl: bool = False):
    """One GRPO step: sample G per prompt → reward_fn(text, gold) → advantages → update.
    `measure_kl` (with a ref_model and kl_coef 0): log the k3 KL of the sampling policy to the
    reference on this batch (one no-grad reference forward).
    Returns (metrics, rollout, rewards [N])."""
    G = cfg.group_size
    t0 = time.time()
    ro = M.sample(model, tok, prompts, n=G, temperature=cfg.temperature, top_p=cfg.top_p,
                  max_new_tokens=cfg.max_new_tokens, stop=stop, batch_size=cfg.gen_batch_size)
    t1 = time.time()
    rewards = torch.tensor([float(reward_fn(text, golds[i]))
                            for text, i in zip(ro.texts, ro.prompt_index)])       # [N]
    t2 = time.time()
    adv = group_advantages(rewards, G, cfg.scale_rewards)                         # [N]
    keep = varied_groups(rewards, G) if cfg.drop_zero_std else torch.ones_like(rewards).bool()
    exp = Experience.from_rollout(ro, adv)
    pg = pg_config(cfg)
    kl = None
    if measure_kl and ref_model is not None and not cfg.kl_coef:
        ref_logp, _ = _logprobs(ref_model, exp, pg)                               # [N, T]
        kl = M.masked_mean(k3_kl(exp.old_logp.float(), ref_logp), exp.response_mask)
    # entropy over ALL responses of the sampling policy, as the sampler recorded it
    entropy = M.masked_mean(ro.entropy.float(), ro.response_mask)
    stats = update_policy(model, optimizer, [exp.select(keep.nonzero().squeeze(-1))], pg,
                          ref_model) if keep.any() else {}
    t3 = time.time()
    lengths = ro.lengths.float()
    metrics = {
        "reward_mean": float(rewards.mean()), "reward_std": float(rewards.std()),
        "accuracy": float((rewards == 1.0).float().mean()),
        "entropy": entropy,
        "response_len_mean": float(lengths.mean()), "response_len_max": int(lengths.max()),
        "clipped_frac": float((~ro.finished).float().mean()),
        "zero_std_frac": float((~varied_groups(rewards, G)).float().mean()),
        **{k: stats.get(k, 0.0) for k in ("loss", "clip_frac", "clip_low_frac",
                                          "clip_high_frac", "ratio_mean", "grad_norm",
                                          "logp_mismatch_max", "skipped_frac",
                                          "nonfinite_grad_steps")},
        "lr": optimizer.param_groups[0]["lr"],
        "time_generate": t1 - t0, "time_score": t2 - t1, "time_update": t3 - t2,
        "completions": len(ro)}
    if cfg.kl_coef:  # the KL term of the loss (to the reference), measured during the update
        metrics["kl"] = stats.get("kl", 0.0)
    elif kl is not None:  # measured on this step's samples only (every --kl-every steps)
        metrics["kl"] = kl
    return metrics, ro, rewards


# ==============================================================================================
# main
# ==============================================================================================
def main(cfg: Config) -> dict:
    t_start = time.time()
    M.seed_everything(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run = M.RunDir(cfg.out)
    run.claim(cfg.resume)
    model, tok = M.load_policy(cfg.model, cfg.device, cfg.dtype)
    style = M.prompt_style(tok) if cfg.prompt_style == "auto" else cfg.prompt_style
    problems = load_problems(cfg)
    heldout = load_eval_problems(cfg)
    M.say(f"[rlvr] {M.resolve_model(cfg.model)} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M "
          f"params, {style} prompts, {model.device}) → {run.path} | {cfg.steps} steps of "
          f"{cfg.prompts_per_step} prompts x {cfg.group_size} samples, {len(problems)} training "
          f"problems, {len(heldout)} held-out")
    ref_model = None
    if cfg.kl_coef or cfg.kl_every:
        ref_model, _ = M.load_policy(cfg.model, cfg.device, cfg.dtype)
        ref_model.requires_grad_(False)
    if cfg.grad_checkpointing:  # recompute activations in the backward pass: memory for time
        M.enable_grad_checkpointing(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99),
                                  weight_decay=cfg.weight_decay)
    start, extra = run.resume(model, optimizer) if cfg.resume else (0, {})
    run.write_config({**dataclasses.asdict(cfg), "model": M.resolve_model(cfg.model),
                      "script": "rlvr.py", "prompt_style": style})
    if start == 0 and heldout:
        t = time.time()
        base = evaluate(model, tok, heldout, style, cfg.max_new_tokens, cfg.gen_batch_size)
        base["time_eval"] = time.time() - t
        run.log(0, base)
        extra["base_eval"] = base
        M.say(f"[rlvr] base held-out accuracy (greedy) {base['eval/accuracy']:.1%} "
              f"± {base['eval/accuracy_se']:.1%} (n={base['eval/n']})")
    elif start:
        M.say(f"[rlvr] resumed from step {start}")
    stop = math_stop(style)
    reward_fn = lambda text, gold: math_reward(text, gold, cfg.format_reward, style)  # noqa: E731
    last = {}
    for step in M.progress(range(start + 1, cfg.steps + 1), "rlvr", initial=start,
                           total=cfg.steps):
        for g in optimizer.param_groups:
            g["lr"] = cfg.lr * min(1.0, step / max(cfg.warmup_steps, 1))
        batch = [problems[i] for i in batch_indices(len(problems), step, cfg.prompts_per_step,
                                                    cfg.seed)]
        prompts = [math_prompt(p["question"], style) for p in batch]
        M.reset_peak_memory(model.device)
        with M.oom_advice("rlvr", "--micro-batch (the update's gradient stays the same), "
                                  "--gen-batch-size (sampling) or --grad-checkpointing"):
            metrics, ro, rewards = grpo_step(model, tok, optimizer, prompts,
                                             [p["answer"] for p in batch], reward_fn, cfg, stop,
                                             ref_model, measure_kl=bool(cfg.kl_every) and
                                             (step % cfg.kl_every == 0 or step == 1))
        final = step == cfg.steps
        if heldout and (step % cfg.eval_every == 0 or final):
            t = time.time()
            metrics.update(evaluate(model, tok, heldout, style, cfg.max_new_tokens,
                                    cfg.gen_batch_size))
            metrics["time_eval"] = time.time() - t
        metrics.update(M.memory_stats(model.device))
        run.log(step, metrics)
        last = metrics
        if step % cfg.sample_every == 0 or step == 1:
            rows = [{"prompt": prompts[ro.prompt_index[i]], "response": ro.texts[i],
                     "gold": batch[ro.prompt_index[i]]["answer"], "reward": float(rewards[i])}
                    for i in range(0, len(ro), max(1, len(ro) // cfg.samples_per_log))]
            run.write_samples(step, rows[:cfg.samples_per_log])
        if step % cfg.save_every == 0 or final:
            run.save_checkpoint(step, model, tok, optimizer, extra)
        line = (f"step {step:>{len(str(cfg.steps))}}/{cfg.steps} | reward "
                f"{metrics['reward_mean']:.3f} | accuracy {metrics['accuracy']:.3f} | H "
                f"{metrics['entropy']:.3f} | length {metrics['response_len_mean']:.1f} | "
                f"{metrics['time_generate'] + metrics['time_score'] + metrics['time_update']:.1f}s")
        if "eval/accuracy" in metrics:
            line += (f" | held-out {metrics['eval/accuracy']:.3f} ± "
                     f"{metrics['eval/accuracy_se']:.3f}")
        M.say(line)
    summary = {"base": extra.get("base_eval"), "final": {k: v for k, v in last.items()
                                                         if k.startswith("eval/")},
               "minutes": (time.time() - t_start) / 60}
    if summary["base"] and summary["final"]:
        b, f = summary["base"], summary["final"]
        diff = f["eval/accuracy"] - b["eval/accuracy"]
        se = math.hypot(b["eval/accuracy_se"], f["eval/accuracy_se"])  # SE of the difference
        summary["gain_in_se"] = diff / se if se else float("nan")
        M.say(f"[rlvr] done: {cfg.steps} steps in {summary['minutes']:.1f} min | held-out "
              f"accuracy (greedy, n={f['eval/n']}) {b['eval/accuracy']:.1%} ± "
              f"{b['eval/accuracy_se']:.1%} → {f['eval/accuracy']:.1%} ± "
              f"{f['eval/accuracy_se']:.1%}: {diff:+.1%}, {summary['gain_in_se']:+.1f} SE of the "
              f"difference")
    M.say(f"[rlvr] run folder {run.path} (metrics.jsonl, samples.jsonl, checkpoints/). Next: "
          f"python analyze.py --runs {run.path}")
    return summary


def parse_args(argv=None) -> Config:
    cfg = M.parse_config(Config, argv, description=__doc__.split("\n\n")[0])
    if cfg.scale_rewards not in SCALES:
        raise SystemExit(f"--scale-rewards {cfg.scale_rewards!r}: expected one of "
                         f"{', '.join(SCALES)}")
    if cfg.prompt_style not in ("auto", "toy", "azr"):
        raise SystemExit(f"--prompt-style {cfg.prompt_style!r}: expected auto, toy or azr")
    if cfg.group_size < 2:
        raise SystemExit("--group-size must be >= 2 (advantages compare samples of one prompt)")
    if min(cfg.steps, cfg.prompts_per_step, cfg.max_new_tokens, cfg.eval_every,
           cfg.save_every, cfg.sample_every, cfg.gen_batch_size) < 1:
        raise SystemExit("--steps, --prompts-per-step, --max-new-tokens, --eval-every, "
                         "--save-every, --sample-every and --gen-batch-size must be >= 1")
    if not 0 <= cfg.format_reward < 1:
        raise SystemExit(f"--format-reward must be in [0, 1) (1 is a correct answer), "
                         f"got {cfg.format_reward}")
    pg_config(cfg)  # validates the policy-update flags
    return cfg


if __name__ == "__main__":
    main(parse_args())
