"""rlvr.py — GRPO with verifiable rewards (RLVR), the baseline Chae et al. compare self-play with.

    python rlvr.py                                    # toy base, toy arithmetic → runs/rlvr
    python rlvr.py --scale-rewards group --loss-agg seq_mean          # GRPO (Shao et al. 2024)
    python rlvr.py --model Qwen/Qwen2.5-0.5B --train-data gsm8k_train.jsonl \
        --eval gsm8k=gsm8k_test.jsonl

One step: sample G answers per prompt → reward 1 if math-verify accepts the answer, else 0 →
group-relative advantages → one policy-gradient update → log → checkpoint. The update
(`policy_loss`, `Experience`, `update_policy`) and its settings (`PG`) are shared with
selfplay.py.

Left out on purpose: several PPO epochs or minibatches per batch (one on-policy update, as AZR
and nanochat: the importance ratio is exactly 1 and the clip is inert), a value network, a
format reward, DAPO's dynamic resampling, and a reference model unless --kl-coef asks for one.
"""
from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from dataclasses import dataclass, field

import torch

import model as M
import tasks as T

LOSS_AGGS = ("token_mean", "seq_mean", "constant")
SCALES = ("group", "batch", "none")


# ==============================================================================================
# Settings shared with selfplay.py
# ==============================================================================================
@dataclass
class PG(M.Run):
    """policy gradient (shared by rlvr.py and selfplay.py)"""
    lr: float | None = None        # AdamW learning rate, constant (rlvr: after --warmup-steps); None: the preset's
    loss_agg: str | None = None    # token_mean (DAPO, AZR) | seq_mean (GRPO) | constant (Dr. GRPO)
    kl_coef: float = 0.0           # weight of a k3 KL to the frozen base (loads a second copy)
    entropy_coef: float | None = None  # weight of an entropy bonus (AZR Table 3: 0.001)
    max_grad_norm: float = 1.0     # gradient-norm clip (AZR: 1.0)
    temperature: float = 1.0       # sampling temperature of the trained rollouts (AZR: 1.0)


def check_pg(cfg: PG) -> None:
    """Bad policy-gradient settings → an exit naming the flag (after the preset filled them)."""
    M.check(cfg.loss_agg in LOSS_AGGS, f"--loss-agg {cfg.loss_agg!r}: expected one of "
                                       f"{', '.join(LOSS_AGGS)}")
    M.check(cfg.temperature > 0, f"--temperature must be > 0 for training, got {cfg.temperature}")
    M.check((cfg.micro_batch is None or cfg.micro_batch >= 1) and cfg.sample_batch >= 1
            and cfg.save_every >= 1, "--micro-batch, --sample-batch and --save-every must be >= 1")
    M.check(cfg.lr is None or cfg.lr > 0, f"--lr must be > 0, got {cfg.lr}")


def make_optimizer(model, lr: float):
    """AdamW with torch's (and veRL's) betas and no weight decay (AZR)."""
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)


# ==============================================================================================
# Advantages and loss (pure functions, tested on hand-computed values)
# ==============================================================================================
def group_advantages(rewards: torch.Tensor, group_size: int, scale: str = "group",
                     eps: float = 1e-4) -> torch.Tensor:
    """Group-relative advantages (GRPO, Shao et al. 2024, outcome supervision):
    A_i = (r_i - mean(r_group)) / (std + eps).

    rewards: [N], ordered group by group (sample i belongs to group i // group_size).
    scale "group": std of the group (GRPO); "batch": std of the whole batch (the group mean is
    still subtracted; TRL scale_rewards="batch"); "none": no division (Dr. GRPO, Liu et al.
    2025). std is Bessel-corrected as in TRL. Example: [1, 0, 0, 0], G=4 → mean .25, std .5 →
    [1.5, -.5, -.5, -.5]. A group of equal rewards gets advantage 0 under every scale."""
    if scale not in SCALES:
        raise ValueError(f"scale {scale!r}: expected one of {', '.join(SCALES)}")
    if group_size < 1 or rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    r = rewards.float().view(-1, group_size)                                   # [B, G]
    adv = r - r.mean(-1, keepdim=True)                                         # [B, G]
    if scale == "group":
        if group_size < 2:
            raise ValueError("scale='group' needs group_size >= 2")
        adv = adv / (r.std(-1, keepdim=True) + eps)                            # [B, G]
    elif scale == "batch":
        if rewards.numel() < 2:
            raise ValueError("scale='batch' needs at least 2 rewards")
        adv = adv / (r.std() + eps)                                            # [B, G]
    return adv.view(-1)                                                        # [N]


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimator of KL(π || π_ref) (Schulman 2020; GRPO eq. 4):
    exp(ref - logp) - (ref - logp) - 1, >= 0 and 0 where the two agree."""
    d = ref_logp - logp                                                        # [B, T]
    return torch.exp(d) - d - 1


def policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
                mask: torch.Tensor, agg: str = "token_mean", total: float | None = None,
                constant_len: int = 0, ref_logp: torch.Tensor | None = None,
                kl_coef: float = 0.0, entropy: torch.Tensor | None = None,
                entropy_coef: float = 0.0, clip_low: float = 0.2, clip_high: float = 0.2):
    """Clipped surrogate loss (PPO, as in GRPO eq. 3 and AZR eq. 9) and its aggregation.

    Per response token t of sequence i, with ratio ρ = exp(logp - old_logp):
        l_it = -min(ρ·A_i, clip(ρ, 1 - clip_low, 1 + clip_high)·A_i)
               + kl_coef · k3(logp, ref_logp) - entropy_coef · H_it
    Aggregation over the masked tokens (|o_i| tokens of sequence i, n sequences):
        token_mean: Σ_it l_it / Σ_i |o_i|        DAPO, AZR/veRL ("token-level")
        seq_mean:   Σ_i (Σ_t l_it / |o_i|) / n   GRPO paper (length-biased)
        constant:   Σ_it l_it / (n · L)          Dr. GRPO (L = constant_len, else the width T)
    `total`: the denominator of the WHOLE batch (tokens for token_mean, sequences otherwise)
    when this call sees one micro-batch of it, so that summing the micro-batch losses gives the
    big batch's loss and gradient exactly. Shapes: logp, old_logp, mask, ref_logp, entropy
    [B, T]; advantages [B]. Returns (loss, stats over this call's tokens)."""
    if agg not in LOSS_AGGS:
        raise ValueError(f"agg {agg!r}: expected one of {', '.join(LOSS_AGGS)}")
    mask = mask.to(logp.dtype)                                                 # [B, T]
    A = advantages.to(logp.dtype)[:, None]                                     # [B, 1]
    ratio = torch.exp(logp - old_logp)                                         # [B, T]
    clipped = ratio.clamp(1 - clip_low, 1 + clip_high)                         # [B, T]
    per_token = -torch.minimum(ratio * A, clipped * A)                         # [B, T]
    kl = k3_kl(logp, ref_logp) if ref_logp is not None and kl_coef else None  # [B, T]
    if kl is not None:
        per_token = per_token + kl_coef * kl
    if entropy is not None and entropy_coef:
        per_token = per_token - entropy_coef * entropy
    summed = per_token * mask                                                  # [B, T]
    n = mask.shape[0] if total is None else total  # sequences (seq_mean, constant)
    if agg == "token_mean":
        loss = summed.sum() / max(float(mask.sum() if total is None else total), 1.0)
    elif agg == "seq_mean":
        loss = (summed.sum(-1) / mask.sum(-1).clamp(min=1)).sum() / max(float(n), 1.0)
    else:
        loss = summed.sum() / max(float(n) * (constant_len or mask.shape[1]), 1.0)
    with torch.no_grad():
        ntok = max(float(mask.sum()), 1.0)
        was_clipped = ((ratio < 1 - clip_low) & (A < 0)) | ((ratio > 1 + clip_high) & (A > 0))
        stats = {"clip_frac": float((was_clipped.to(mask.dtype) * mask).sum()) / ntok,
                 "kl": float((kl * mask).sum()) / ntok if kl is not None else 0.0,
                 "tokens": float(mask.sum())}
    return loss, stats


# ==============================================================================================
# The update
# ==============================================================================================
@dataclass
class Experience:
    """Scored rollouts ready for the update (one prompt length P per object)."""
    input_ids: torch.Tensor        # [N, P+T] left-padded prompt + right-padded response
    attention_mask: torch.Tensor   # [N, P+T]
    prompt_len: int                # P
    response_mask: torch.Tensor    # [N, T] 1.0 on response tokens
    old_logp: torch.Tensor         # [N, T] the sampler's log-probs (logits / temperature)
    advantages: torch.Tensor       # [N]

    def __len__(self):
        return self.input_ids.shape[0]

    @classmethod
    def from_rollout(cls, ro: M.Rollout, advantages: torch.Tensor) -> "Experience":
        return cls(ro.input_ids, ro.attention_mask, ro.prompt_len, ro.response_mask,
                   ro.old_logp, advantages.to(ro.input_ids.device))

    def select(self, idx: torch.Tensor) -> "Experience":
        """Rows `idx`, trimmed of the columns that are padding in all of them (leading prompt
        padding, response columns past the longest response)."""
        idx = idx.to(self.input_ids.device)
        am, rm = self.attention_mask[idx], self.response_mask[idx]             # [k, P+T], [k, T]
        first = int(am[:, :self.prompt_len].any(0).long().argmax()) if len(idx) else 0
        T = max(int(rm.sum(-1).max()), 1) if len(idx) else 1
        end = self.prompt_len + T
        return Experience(self.input_ids[idx][:, first:end], am[:, first:end],
                          self.prompt_len - first, rm[:, :T], self.old_logp[idx][:, :T],
                          self.advantages[idx])


def update_policy(model, optimizer, experiences: list[Experience], cfg: PG, ref_model=None,
                  constant_len: int = 0) -> dict:
    """One on-policy update on a rollout batch: micro-batches of `cfg.micro_batch` rows with
    gradient accumulation, the loss denominators (tokens or sequences; "constant" without a
    length: the widest response) those of the whole batch, so micro-batching never changes the
    gradient; then the grad-norm clip and one optimizer step (skipped, and counted, if the norm
    is not finite). old_logp := logp.detach(): the ratio is exactly 1 and the gradient the plain
    A·∇logp (GRPO-Zero, TRL num_iterations=1); the sampler's fp32 KV-cache log-probs are only
    compared (`logp_mismatch_max`). Rows of advantage exactly 0 add zero gradient without a KL
    or entropy term: not forwarded, but counted in the denominators."""
    M.check(not cfg.kl_coef or ref_model is not None, "update_policy: --kl-coef > 0 needs the "
                                                      "frozen reference model (ref_model)")
    exps = [e for e in experiences if len(e)]
    if not exps:
        return {}
    params = [p for p in model.parameters() if p.requires_grad]
    skip_zero = not (cfg.kl_coef or cfg.entropy_coef)
    n_seq = sum(len(e) for e in exps)
    n_tok = sum(float(e.response_mask.sum()) for e in exps)
    total = n_tok if cfg.loss_agg == "token_mean" else n_seq
    if cfg.loss_agg == "constant" and not constant_len:
        constant_len = int(max(float(e.response_mask.sum(-1).max()) for e in exps))
    parts, skipped = [], 0  # per micro-batch: (loss, stats, largest |logp - old_logp|)
    optimizer.zero_grad(set_to_none=True)
    model.train()
    for e in exps:
        rows = torch.randperm(len(e))
        if skip_zero:
            keep = e.advantages.cpu()[rows] != 0
            skipped += int((~keep).sum())
            rows = rows[keep]
        # similar lengths together: less padding once `select` trims each micro-batch
        rows = rows[torch.argsort(e.response_mask[rows].sum(-1).cpu(), descending=True)]
        size = cfg.micro_batch or len(rows) or 1  # unset: the whole batch in one micro-batch
        for i in range(0, len(rows), size):
            mb = e.select(rows[i:i + size])
            args = (mb.input_ids, mb.attention_mask, mb.prompt_len, cfg.temperature)
            with M.bf16_autocast(model, cfg.bf16):
                logp, ent = M.forward_logprobs(model, *args, entropy_grad=bool(cfg.entropy_coef))
            logp, m = logp.float(), mb.response_mask                            # [b, T] each
            ref = None
            if cfg.kl_coef:
                with torch.no_grad(), M.bf16_autocast(ref_model, cfg.bf16):
                    ref = M.forward_logprobs(ref_model, *args, False)[0].float()
            loss, st = policy_loss(logp, logp.detach(), mb.advantages, m, cfg.loss_agg, total,
                                   constant_len, ref, cfg.kl_coef, ent.float(), cfg.entropy_coef)
            loss.backward()
            diff = (logp.detach() - mb.old_logp.float()).abs() * m              # [b, T]
            parts.append((float(loss.detach()), st, float(diff.max())))
    norm = 0.0  # stays 0 without any gradient: every advantage was 0
    if any(p.grad is not None for p in params):
        norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm or float("inf")))
        if math.isfinite(norm):  # a NaN/inf gradient would poison the weights: skip it
            optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    model.eval()
    tok = max(sum(st["tokens"] for _, st, _ in parts), 1.0)

    def mean(k):  # token mean over the forwarded micro-batches
        return sum(st[k] * st["tokens"] for _, st, _ in parts) / tok

    return {"loss": sum((loss for loss, _, _ in parts), 0.0), "grad_norm": norm,
            "clip_frac": mean("clip_frac"), "kl": mean("kl"),
            "logp_mismatch_max": max([0.0] + [d for _, _, d in parts]), "tokens": n_tok,
            "sequences": n_seq, "skipped_frac": skipped / n_seq,
            "nonfinite_grad_steps": int(not math.isfinite(norm))}


# ==============================================================================================
# The RLVR loop
# ==============================================================================================
@dataclass
class Config(PG):
    """GRPO on math"""
    out: str = "runs/rlvr"         # run folder: config.json, metrics.jsonl, samples.jsonl, checkpoints/
    sample_batch: int = 128        # sequences sampled together
    save_every: int = 50           # checkpoint every N steps (and at the end)
    train_data: str = ""           # math .jsonl (GSM8K / MATH format); "" = toy arithmetic (train split)
    eval: list[str] = field(default_factory=list)  # held-out benchmarks as name=path (crux*: CRUXEval, humaneval, else math); default: toy arithmetic
    steps: int = 150               # GRPO steps, one rollout batch and one update each
    prompts_per_step: int = 64     # prompts per step (toy: 16 gave too noisy a gradient)
    group_size: int = 8            # G: answers sampled per prompt
    max_new_tokens: int | None = None  # answer length cap (None: the preset's)
    warmup_steps: int = 5          # linear learning-rate warm-up
    scale_rewards: str = "none"    # advantage scale: group std (GRPO) | batch std | none (Dr. GRPO)
    eval_n: int = 1000             # held-out problems, greedy (1000: SE about 1.4 points)
    eval_every: int = 50           # held-out evaluation every N steps, and at the start and the end (0: only those)


# What the preset chooses when a flag is left unset: "toy" for the toy base, "azr" otherwise.
PRESETS = {"toy": {"lr": 3e-5, "loss_agg": "token_mean", "max_new_tokens": 56, "micro_batch": 64,
                   "entropy_coef": 0.0},
           "azr": {"lr": 1e-6, "loss_agg": "token_mean", "max_new_tokens": 1024,
                   "entropy_coef": 0.0}}


def batch_indices(n: int, step: int, k: int, seed: int) -> list[int]:
    """Problem indices of step `step` (1-based): epochs over a seeded permutation of the n
    problems, so a step's batch depends only on (seed, step) and resume needs no data state."""
    perms, out = {}, []
    for pos in range((step - 1) * k, step * k):
        epoch, j = divmod(pos, n)
        if epoch not in perms:
            perms[epoch] = list(range(n))
            random.Random(seed * 100003 + epoch).shuffle(perms[epoch])
        out.append(perms[epoch][j])
    return out


def grpo_step(model, tok, optimizer, prompts: list[str], golds: list, cfg: Config, style: str,
              ref_model=None) -> tuple[dict, M.Rollout, torch.Tensor]:
    """Sample G answers per prompt → 0/1 math rewards → group advantages → one update.
    Returns (metrics, rollout, rewards [N])."""
    G, t0 = cfg.group_size, time.time()
    ro = M.sample(model, tok, prompts, n=G, temperature=cfg.temperature,
                  max_new_tokens=cfg.max_new_tokens, stop=T.stop_strings("solve", "math", style),
                  batch_size=cfg.sample_batch)
    t1 = time.time()
    ok, _ = T.score("math", [{"answer": golds[i]} for i in ro.prompt_index], ro.texts, style)
    rewards = torch.tensor(ok, dtype=torch.float32)                            # [N]
    t2 = time.time()
    adv = group_advantages(rewards, G, cfg.scale_rewards)                      # [N]
    stats = update_policy(model, optimizer, [Experience.from_rollout(ro, adv)], cfg, ref_model,
                          constant_len=cfg.max_new_tokens)
    flat = rewards.view(-1, G)                                                 # [B, G]
    return {"reward_mean": float(rewards.mean()), "reward_std": float(rewards.std()),
            "entropy": M.masked_mean(ro.entropy.float(), ro.response_mask),  # every answer's
            "response_len_mean": float(ro.lengths.float().mean()),
            "response_len_max": int(ro.lengths.max()),
            "clipped_frac": float((~ro.finished).float().mean()),
            "zero_std_frac": float((flat.max(-1).values == flat.min(-1).values).float().mean()),
            **{f"update/{k}": v for k, v in stats.items()}, "lr": optimizer.param_groups[0]["lr"],
            "time/generate": t1 - t0, "time/score": t2 - t1, "time/update": time.time() - t2}, \
        ro, rewards


def main(cfg: Config) -> dict:
    M.check(cfg.scale_rewards in SCALES, f"--scale-rewards {cfg.scale_rewards!r}: expected one of "
                                         f"{', '.join(SCALES)}")
    M.check(cfg.group_size >= 2, "--group-size must be >= 2 (advantages compare a prompt's answers)")
    M.check(min(cfg.steps, cfg.prompts_per_step) >= 1, "--steps and --prompts-per-step must be >= 1")
    M.check_eval(cfg)
    t_start = time.time()
    M.seed_everything(cfg.seed)
    run = M.RunDir(cfg.out, logs=("metrics.jsonl", "samples.jsonl", "eval.jsonl"))
    run.claim(cfg.resume)
    problems = T.load_math(cfg.train_data) if cfg.train_data else \
        T.make_arith(5000, cfg.seed, "train")
    sets = T.eval_sets(cfg.eval, cfg.eval_n, ["arith"])
    M.check(bool(problems), f"--train-data {cfg.train_data}: the file holds no rows")
    model, tok = M.load_policy(cfg.model, cfg.device, cfg.dtype)
    style = M.prompt_style(tok, cfg.style)
    preset = M.apply_preset(cfg, PRESETS, style)
    M.check(cfg.max_new_tokens >= 1, "--max-new-tokens must be >= 1")
    memory = M.fit_memory(cfg, model, 256, cfg.max_new_tokens)
    check_pg(cfg)
    ref_model = M.load_policy(cfg.model, cfg.device, cfg.dtype)[0] if cfg.kl_coef else None
    if cfg.grad_checkpointing:
        M.enable_grad_checkpointing(model)
    optimizer = make_optimizer(model, cfg.lr)
    start, extra = run.resume(model, optimizer) if cfg.resume else (0, {})
    run.write_config({**dataclasses.asdict(cfg), "model": M.resolve_model(cfg.model),
                      "script": "rlvr.py", "style": style})
    M.say(f"[rlvr] {M.resolve_model(cfg.model)} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M"
          f" params, {style} preset {preset}, {model.device}) → {run.path} | {cfg.steps} steps of "
          f"{cfg.prompts_per_step} prompts x {cfg.group_size} answers, {len(problems)} training "
          f"problems, held-out {', '.join(sets)} | {memory}")

    def evaluate(step: int) -> dict:
        res = T.evaluate(model, tok, sets, style, cfg.max_new_tokens, batch_size=cfg.sample_batch)
        run.log(step, T.correct_strings(res), "eval.jsonl")
        return T.accuracy(res)

    if start == 0:
        extra["base"] = evaluate(0)
        run.log(0, extra["base"])
        M.say(f"[rlvr] base held-out accuracy (greedy) {extra['base']['eval/accuracy']:.3f} ± "
              f"{extra['base']['eval/se']:.3f}")
    for step in M.progress(range(start + 1, cfg.steps + 1), "rlvr", initial=start,
                           total=cfg.steps):
        for g in optimizer.param_groups:
            g["lr"] = M.lr_at(step - 1, cfg.lr, cfg.warmup_steps)
        batch = [problems[i] for i in batch_indices(len(problems), step, cfg.prompts_per_step,
                                                    cfg.seed)]
        prompts = [T.math_prompt(p["question"], style) for p in batch]
        M.reset_peak_memory(model.device)
        with M.oom_advice("rlvr", "--micro-batch (the gradient stays the same), --sample-batch "
                                  "or --grad-checkpointing"):
            m, ro, rewards = grpo_step(model, tok, optimizer, prompts,
                                       [p["answer"] for p in batch], cfg, style, ref_model)
        line = (f"step {step}/{cfg.steps} | reward {m['reward_mean']:.3f} | H {m['entropy']:.3f} "
                f"| length {m['response_len_mean']:.1f} | "
                f"{m['time/generate'] + m['time/score'] + m['time/update']:.1f}s")
        if M.due(step, cfg.eval_every, cfg.steps):
            m.update(evaluate(step))
            line += f" | held-out {m['eval/accuracy']:.3f} ± {m['eval/se']:.3f}"
        run.log(step, {**m, **M.memory_stats(model.device)})
        shown = range(0, len(ro), max(1, len(ro) // 4))  # 4 rollouts spread over the batch
        run.log(step, [{"prompt": prompts[ro.prompt_index[i]], "response": ro.texts[i],
                        "reward": float(rewards[i])} for i in shown][:4], "samples.jsonl")
        if M.due(step, cfg.save_every, cfg.steps):
            run.save(step, model, tok, optimizer, extra, cfg.keep_checkpoints)
        M.say(line)
    return finish("rlvr", run, cfg.steps, t_start, T.program_ids(sets))


def finish(script: str, run: M.RunDir, steps: int, t_start: float, clusters: dict,
           note: str = "") -> dict:
    """The end of a training run: the held-out gain from eval.jsonl (paired, clustered by
    program), summary.json, and where to look next."""
    evals = run.read("eval.jsonl")
    summary = {"steps": steps, "minutes": (time.time() - t_start) / 60}
    if len(evals) >= 2 and evals[0]["step"] == 0:
        first, last = evals[0], evals[-1]
        sets = {k: v for k, v in first.items() if k != "step"}
        gain, se = T.paired_gain(sets, {k: last[k] for k in sets}, clusters)
        summary.update(base={k: v.count("1") / len(v) for k, v in sets.items()}, gain=gain,
                       gain_se=se, final={k: last[k].count("1") / len(last[k]) for k in sets})
        M.say(f"[{script}] done: {steps} steps in {summary['minutes']:.1f} min | held-out "
              f"accuracy (greedy) {_fmt(summary['base'])} → {_fmt(summary['final'])} | gain "
              f"{gain:+.3f} ± {se:.3f} (SE paired, clustered by program){note}")
    (run.path / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    M.say(f"[{script}] run folder {run.path}. Next: python analyze.py --runs {run.path}")
    return summary


def _fmt(acc: dict) -> str:
    return " ".join(f"{k} {v:.3f}" for k, v in acc.items()) if len(acc) > 1 else \
        f"{next(iter(acc.values())):.3f}"


if __name__ == "__main__":
    main(M.parse_flags(Config, doc=__doc__))
