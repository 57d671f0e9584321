"""sft.py — supervised fine-tuning baseline: cross-entropy on worked solutions (Chae et al. 2025's
third point of comparison next to RLVR and self-play: SFT updates parameters densely and does
not collapse entropy the way RL does).

    python sft.py                                   # toy base, toy arithmetic worked solutions
    python sft.py --train-data gsm8k_train.jsonl --model Qwen/Qwen2.5-0.5B --device cuda
    python sft.py --out runs/sft --resume           # continue from the latest checkpoint

Prompt = `rlvr.math_prompt(question, style)` (the exact prompt RLVR trains and evaluates on);
response = the worked solution (toy style: " 4*2=8. 3+8=11. <answer>11</answer>" then EOS; azr
style: " <reasoning> </think> <answer>N</answer>" then EOS, the R1 format). The loss is the token
mean of the next-token cross-entropy over response tokens only (prompt and padding labels are
-100), AdamW, linear warm-up then cosine or constant learning rate, gradient accumulation and
clipping, micro-batches of similar length. Every `--eval-every` steps (and at step 0, the base):
greedy held-out accuracy (`eval/accuracy` ± `eval/accuracy_se`) and the policy's token entropy on
its own temperature-1 samples (`entropy`, measured as rlvr.py measures it).
"""
from __future__ import annotations

import dataclasses
import math
import re
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

import model as M
import toydata
from rlvr import math_prompt, math_stop

EVAL_N, EVAL_SEED = 300, 1234  # the fixed held-out toy arithmetic set rlvr.py evaluates on too


@dataclass
class Config:
    model: str = "toy"              # base model: "toy" (runs/toy-base), a local HF folder, a hub id or a .gguf file
    train_data: str = ""            # JSONL of worked solutions (GSM8K question/answer '... #### 42', MATH problem/answer/solution, or prompt/response); empty = toy arithmetic
    n_train: int = 4000             # toy arithmetic training problems (make_arith train split, seeded by --seed) when --train-data is empty
    eval_data: str = ""             # JSONL held-out set (same formats); empty = make_arith(--eval-n, seed 1234, split 'heldout')
    out: str = "runs/sft"           # run folder (config.json, metrics.jsonl, samples.jsonl, checkpoints/)
    resume: bool = False            # continue from the latest checkpoint in --out (weights, optimizer, RNG, data position)
    seed: int = 0                   # seeds random, numpy and torch, the toy training set and the data order
    steps: int = 300                # optimizer steps
    micro_batch: int = 32           # sequences per forward/backward pass
    grad_accum: int = 1             # micro-batches per optimizer step (sequences per step = micro_batch * grad_accum)
    lr: float = 1e-3                # peak learning rate (AdamW)
    schedule: str = "cosine"        # 'cosine' (decay to --min-lr-ratio * lr after warm-up) or 'constant'
    warmup: int = 10                # linear warm-up steps
    min_lr_ratio: float = 0.1       # final learning rate of the cosine schedule, as a fraction of --lr
    weight_decay: float = 0.0       # AdamW weight decay
    betas: list[float] = dataclasses.field(default_factory=lambda: [0.9, 0.95])  # AdamW betas
    max_grad_norm: float = 1.0      # clip the global gradient norm to this (0 = no clipping; the norm is still logged)
    max_len: int = 512              # drop training examples longer than this many tokens (prompt + response)
    eval_every: int = 50            # evaluate every this many steps (and at step 0 and at the end; 0 = only step 0 and the end)
    eval_n: int = EVAL_N            # held-out problems for the greedy accuracy
    eval_max_new_tokens: int = 64   # max new tokens of evaluation and entropy samples
    entropy_prompts: int = 64       # training prompts (a fixed seeded subset) sampled at temperature 1 to measure the policy entropy
    eval_batch: int = 64            # prompts per sampling batch during evaluation
    n_log_samples: int = 8          # evaluation responses written to samples.jsonl at each evaluation
    save_every: int = 100           # save a Hugging Face checkpoint every this many steps (and always at the end; 0 = only at the end)
    bf16: bool = True               # bf16 autocast for forward/backward when the weights are fp32 (about 2x on AMX CPUs)
    grad_checkpointing: bool = False  # activation checkpointing (real models on small GPUs)
    device: str = "auto"            # auto | cpu | cuda | cuda:N
    dtype: str = "auto"             # weight dtype: auto (bf16 on CUDA, fp32 on CPU) | float32 | bfloat16 | float16
    threads: int = 0                # torch CPU threads (0 = torch's default)


# Keys of config.json that fix the data and its order: a resumed run must match them.
RESUME_KEYS = ("train_data", "n_train", "seed", "micro_batch", "grad_accum", "max_len")


# ----------------------------------------------------------------------------------------------
# Data: worked solutions → (prompt ids, response ids)
# ----------------------------------------------------------------------------------------------
_ANSWER_TAIL = re.compile(r"\s*<answer>.*?</answer>\s*$", re.S)


def build_target(solution: str, answer, style: str) -> str:
    """The response text the model learns to write after `math_prompt(question, style)` (EOS is
    appended as a token later, not here).

    toy: " " + solution, where the solution ends with "<answer>N</answer>" (appended from `answer`
         if missing), e.g. " 4*2=8. 3+8=11. <answer>11</answer>" (pretrain.py's arithmetic docs).
    azr: the prompt ends with "Assistant: <think>", so the response is R1-formatted:
         " <reasoning> </think> <answer>N</answer>", reasoning = the solution without its final
         answer tag. A solution that already contains "</think>" (an R1 response in a
         prompt/response file) is kept as it is, minus a leading "<think>".
    """
    sol = solution.strip()
    if style == "toy":
        if not re.search(r"<answer>.*?</answer>\s*$", sol, re.S):
            sol = f"{sol} <answer>{answer}</answer>".strip()
        return " " + sol
    if sol.startswith("<think>"):
        sol = sol[len("<think>"):].strip()
    if "</think>" in sol:
        if "<answer>" not in sol.split("</think>")[-1]:
            sol = f"{sol} <answer>{answer}</answer>"
        return " " + sol
    reasoning = _ANSWER_TAIL.sub("", sol).strip()
    return f" {reasoning} </think> <answer>{answer}</answer>"


def load_rows(path: str) -> list[dict]:
    """Rows of a math JSONL file that all carry a worked solution (SystemExit otherwise)."""
    try:
        rows = toydata.load_math(path)
    except toydata.DataError as e:
        raise SystemExit(f"--train-data: {e}") from None
    if not rows:
        raise SystemExit(f"--train-data {path}: the file holds no rows")
    missing = [i for i, r in enumerate(rows, 1) if not (r.get("solution") or "").strip()]
    if missing:
        raise SystemExit(
            f"--train-data {path}: {len(missing)} of {len(rows)} rows have no worked solution "
            f"(rows {', '.join(map(str, missing[:5]))}{', ...' if len(missing) > 5 else ''}; "
            f"SFT needs one: GSM8K 'answer' with reasoning before '#### N', a MATH 'solution', "
            f"or a 'response')")
    return rows


def tokenize_examples(rows: list[dict], tok, style: str, max_len: int):
    """Each row → (prompt ids with the tokenizer's BOS as `sample` encodes it, response ids +
    EOS). Prompt and response are tokenized separately, exactly as they meet at sampling time.
    Returns (examples, n_dropped) — examples longer than max_len tokens are dropped."""
    prompts = [math_prompt(r["question"], style) for r in rows]
    targets = [build_target(r["solution"], r["answer"], style) for r in rows]
    p_ids = tok(prompts, add_special_tokens=True)["input_ids"]
    r_ids = tok(targets, add_special_tokens=False)["input_ids"]
    examples, dropped = [], 0
    for p, r in zip(p_ids, r_ids):
        r = list(r) + [tok.eos_token_id]
        if len(p) + len(r) > max_len:
            dropped += 1
            continue
        examples.append((list(p), r))
    return examples, dropped


def collate(examples: list[tuple[list[int], list[int]]], pad_id: int):
    """Right-pad (prompt + response) sequences. Labels are the input ids on response tokens
    and -100 on prompt tokens and padding, so only the response is learned.
    Returns input_ids [B, L], attention_mask [B, L], labels [B, L]."""
    L = max(len(p) + len(r) for p, r in examples)
    B = len(examples)
    ids = torch.full((B, L), pad_id, dtype=torch.long)                           # [B, L]
    mask = torch.zeros((B, L), dtype=torch.long)                                 # [B, L]
    labels = torch.full((B, L), -100, dtype=torch.long)                          # [B, L]
    for i, (p, r) in enumerate(examples):
        n = len(p) + len(r)
        ids[i, :n] = torch.tensor(p + r)
        mask[i, :n] = 1
        labels[i, len(p):n] = torch.tensor(r)
    return ids, mask, labels


def length_bucketed_batches(lengths, micro_batch: int, seed: int, epoch: int) -> list[list[int]]:
    """One epoch of micro-batches (lists of example indices) with little padding: a seeded
    shuffle, a stable sort by length (so equal lengths stay shuffled), consecutive chunks of
    `micro_batch`, then a seeded shuffle of the chunk order. Deterministic in (seed, epoch)."""
    rng = np.random.default_rng([seed, epoch])
    lengths = np.asarray(lengths)
    perm = rng.permutation(len(lengths))
    order = perm[np.argsort(lengths[perm], kind="stable")]
    chunks = [order[i:i + micro_batch].tolist() for i in range(0, len(order), micro_batch)]
    return [chunks[j] for j in rng.permutation(len(chunks))]


class DataStream:
    """An endless stream of length-bucketed micro-batches over the training examples; position
    k (micro-batches consumed) alone fixes what comes next, which is what resume restores."""

    def __init__(self, examples, micro_batch: int, seed: int, position: int = 0):
        self.examples, self.micro_batch, self.seed = examples, micro_batch, seed
        self.lengths = [len(p) + len(r) for p, r in examples]
        self.per_epoch = math.ceil(len(examples) / micro_batch)
        self.position = position
        self._epoch, self._plan = -1, []

    def next(self) -> list[tuple[list[int], list[int]]]:
        epoch, j = divmod(self.position, self.per_epoch)
        if epoch != self._epoch:
            self._epoch = epoch
            self._plan = length_bucketed_batches(self.lengths, self.micro_batch, self.seed, epoch)
        self.position += 1
        return [self.examples[i] for i in self._plan[j]]

    @property
    def epoch(self) -> float:
        return self.position / self.per_epoch


# ----------------------------------------------------------------------------------------------
# Math: loss and learning-rate schedule
# ----------------------------------------------------------------------------------------------
def sft_loss(logits: torch.Tensor, labels: torch.Tensor, n_tokens: int | None = None):
    """Next-token cross-entropy over response tokens (labels != -100), summed and divided by
    `n_tokens` (default: this batch's response tokens). Passing the token count of the whole
    optimizer step makes accumulated micro-batch gradients equal one big batch's token mean.

    logits [B, L, V] (position t predicts token t+1), labels [B, L].
    Returns (loss, n_correct, n_resp): n_correct counts response tokens whose argmax is right.
    """
    z = logits[:, :-1, :].float()                                                # [B, L-1, V]
    tgt = labels[:, 1:]                                                          # [B, L-1]
    valid = tgt != -100                                                          # [B, L-1]
    nll = F.cross_entropy(z.reshape(-1, z.shape[-1]), tgt.reshape(-1), ignore_index=-100,
                          reduction="sum")
    n_resp = int(valid.sum())
    correct = int(((z.argmax(-1) == tgt) & valid).sum())
    return nll / max(n_tokens if n_tokens is not None else n_resp, 1), correct, n_resp


def lr_at(step: int, lr: float, warmup: int, total: int, schedule: str = "cosine",
          min_ratio: float = 0.1) -> float:
    """Learning rate of optimizer step `step` (0-based): linear warm-up lr*(step+1)/warmup, then
    'constant' lr or 'cosine' decay from lr to min_ratio*lr at step total-1."""
    if step < warmup:
        return lr * (step + 1) / warmup
    if schedule == "constant":
        return lr
    frac = min(1.0, (step - warmup) / max(1, total - 1 - warmup))
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * frac)))


def accumulate_grads(model, micro_batches, pad_id: int, bf16: bool = False) -> dict:
    """Forward/backward over the micro-batches of one optimizer step, the loss of each scaled by
    the step's total response-token count (so the summed gradient is the gradient of the token
    mean over the whole step). Gradients are added to `.grad`; returns loss/token statistics."""
    n_total = sum(sum(len(r) for _, r in mb) for mb in micro_batches)  # response tokens (EOS incl.)
    dev = next(model.parameters()).device
    use_autocast = bf16 and next(model.parameters()).dtype == torch.float32
    loss_sum, correct, tokens, cells = 0.0, 0, 0, 0
    for mb in micro_batches:
        ids, mask, labels = (t.to(dev) for t in collate(mb, pad_id))            # [b, L] each
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_autocast):
            logits = model(input_ids=ids, attention_mask=mask).logits            # [b, L, V]
        loss, c, _ = sft_loss(logits, labels, n_total)
        loss.backward()
        loss_sum += float(loss.detach())
        correct += c
        tokens += int(mask.sum())
        cells += mask.numel()
    return {"loss": loss_sum, "token_acc": correct / max(n_total, 1), "resp_tokens": n_total,
            "tokens": tokens, "pad_frac": 1 - tokens / max(cells, 1)}


# ----------------------------------------------------------------------------------------------
# Evaluation: held-out greedy accuracy and the policy entropy (as rlvr.py measures it)
# ----------------------------------------------------------------------------------------------
def evaluate(model, tok, problems: list[dict], style: str, max_new_tokens: int = 64,
             batch_size: int = 64) -> tuple[dict, list[dict]]:
    """Greedy accuracy on held-out problems, scored by `verifier.check_math`; returns
    ({"eval/accuracy", "eval/accuracy_se", "eval/n"}, per-problem rows)."""
    import verifier

    ro = M.sample(model, tok, [math_prompt(p["question"], style) for p in problems], n=1,
                  temperature=0, max_new_tokens=max_new_tokens, stop=math_stop(style),
                  batch_size=batch_size)
    ok = [bool(verifier.check_math(text, p["answer"])) for p, text in zip(problems, ro.texts)]
    n = len(ok)
    acc = sum(ok) / n
    rows = [{"question": p["question"], "gold": p["answer"], "response": t, "correct": c}
            for p, t, c in zip(problems, ro.texts, ok)]
    return {"eval/accuracy": acc, "eval/accuracy_se": math.sqrt(acc * (1 - acc) / n),
            "eval/n": n, "eval/response_len": float(ro.lengths.float().mean())}, rows


def policy_entropy(model, tok, prompts: list[str], style: str, max_new_tokens: int = 64,
                   batch_size: int = 64, seed: int | None = None) -> float:
    """Token-mean full-vocabulary entropy of the policy on its own samples, as rlvr.py logs it:
    sample at temperature 1.0, recompute per-token entropies with `batched_logprobs` (logits at
    temperature 1), average over response tokens (EOS included, padding excluded)."""
    ro = M.sample(model, tok, prompts, n=1, temperature=1.0, max_new_tokens=max_new_tokens,
                  stop=math_stop(style), batch_size=batch_size, seed=seed)
    _, ent = M.batched_logprobs(model, ro.input_ids, ro.attention_mask, ro.prompt_len,
                                temperature=1.0)                                   # [N, T]
    return M.masked_mean(ent, ro.response_mask)


def accuracy_gain(base: list[bool], final: list[bool]) -> dict:
    """Gain of the final over the base accuracy on the SAME problems, with its standard error
    two ways: unpaired sqrt(se_b^2 + se_f^2) (conservative) and paired std(d)/sqrt(n) of the
    per-problem differences d_i = final_i - base_i (sample std, ddof=1)."""
    n = len(base)
    if n != len(final) or n < 2:
        raise ValueError(f"need two equally long correctness lists (n >= 2), got {n}, {len(final)}")
    b, f = np.asarray(base, float), np.asarray(final, float)                      # [n]
    d = f - b                                                                     # [n]
    se = lambda p: math.sqrt(p * (1 - p) / n)  # noqa: E731
    return {"gain": float(d.mean()), "gain_se_unpaired": math.hypot(se(b.mean()), se(f.mean())),
            "gain_se_paired": float(d.std(ddof=1) / math.sqrt(n))}


# ----------------------------------------------------------------------------------------------
def main(cfg: Config) -> dict:
    t_start, cpu_start = time.time(), time.process_time()
    M.seed_everything(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run = M.RunDir(cfg.out)
    if cfg.resume and (run.path / "config.json").exists():
        old = run.read_config()
        diff = [f"--{k.replace('_', '-')} {old.get(k)!r} → {getattr(cfg, k)!r}"
                for k in RESUME_KEYS if k in old and old[k] != getattr(cfg, k)]
        if diff:
            raise SystemExit(f"--resume {cfg.out}: the run was started with other data settings "
                             f"({'; '.join(diff)}); resume with the original ones")
    run.claim(cfg.resume)

    # --- model and data ------------------------------------------------------------------------
    rows = load_rows(cfg.train_data) if cfg.train_data else toydata.make_arith(
        cfg.n_train, cfg.seed, "train")                    # bad data fails before the model loads
    model_path = M.resolve_model(cfg.model)
    model, tok = M.load_policy(model_path, device=cfg.device, dtype=cfg.dtype)
    style = M.prompt_style(tok)
    examples, dropped = tokenize_examples(rows, tok, style, cfg.max_len)
    if not examples:
        raise SystemExit(f"all {len(rows)} training examples are longer than --max-len "
                         f"{cfg.max_len} tokens")
    if cfg.eval_data:
        try:
            held = toydata.load_math(cfg.eval_data)[:cfg.eval_n]
        except toydata.DataError as e:
            raise SystemExit(f"--eval-data: {e}") from None
        if not held:
            raise SystemExit(f"--eval-data {cfg.eval_data}: the file holds no rows")
    else:
        held = toydata.make_arith(cfg.eval_n, EVAL_SEED, "heldout")
    ent_rng = np.random.default_rng([cfg.seed, 7])
    ent_idx = ent_rng.choice(len(rows), min(cfg.entropy_prompts, len(rows)), replace=False)
    ent_prompts = [math_prompt(rows[i]["question"], style) for i in sorted(ent_idx)]

    if cfg.grad_checkpointing:
        M.enable_grad_checkpointing(model)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas),
                            weight_decay=cfg.weight_decay)
    start, extra = 0, {}
    if cfg.resume:
        start, extra = run.resume(model, opt)
    if start == 0:
        run.write_config({**dataclasses.asdict(cfg), "model": model_path, "script": "sft.py",
                          "style": style, "n_examples": len(examples), "n_dropped": dropped,
                          "eval_set": cfg.eval_data or f"make_arith({cfg.eval_n}, "
                                                       f"{EVAL_SEED}, 'heldout')"})
    stream = DataStream(examples, cfg.micro_batch, cfg.seed,
                        position=int(extra.get("micro_batches", start * cfg.grad_accum)))
    n_params = sum(p.numel() for p in model.parameters())
    M.say(f"[sft] {model_path} ({n_params / 1e6:.1f}M params, {style} prompts, {model.device}) "
          f"→ {run.path} | {cfg.steps} steps of {cfg.micro_batch}x{cfg.grad_accum} sequences, "
          f"{len(examples)} examples ({dropped} dropped > {cfg.max_len} tokens), "
          f"{'resuming at step ' + str(start) if start else 'from scratch'}")

    def do_eval(step: int) -> dict:
        model.eval()
        m, rows_ = evaluate(model, tok, held, style, cfg.eval_max_new_tokens, cfg.eval_batch)
        m["entropy"] = policy_entropy(model, tok, ent_prompts, style, cfg.eval_max_new_tokens,
                                      cfg.eval_batch, seed=cfg.seed + step)
        run.write_samples(step, rows_[:cfg.n_log_samples])
        correct[step] = [r["correct"] for r in rows_]
        model.train()
        return m

    def save(step: int) -> None:
        run.save_checkpoint(step, model, tok, opt, extra={"micro_batches": stream.position})

    # --- loop --------------------------------------------------------------------------------
    first_eval = last_eval = None
    correct: dict[int, list[bool]] = {}
    if start == 0:
        first_eval = do_eval(0)
        run.log(0, first_eval)
        M.say(f"[sft] base held-out accuracy (greedy) {first_eval['eval/accuracy']:.1%} ± "
              f"{first_eval['eval/accuracy_se']:.1%} (n={first_eval['eval/n']}), "
              f"entropy {first_eval['entropy']:.3f}")
    model.train()
    for step in M.progress(range(start + 1, cfg.steps + 1), "sft", initial=start,
                           total=cfg.steps):
        t0 = time.time()
        lr = lr_at(step - 1, cfg.lr, cfg.warmup, cfg.steps, cfg.schedule, cfg.min_lr_ratio)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        M.reset_peak_memory(model.device)
        with M.oom_advice("sft", "a smaller --micro-batch with a larger --grad-accum (same "
                                 "sequences per step), a smaller --max-len or --grad-checkpointing"):
            stats = accumulate_grads(model, [stream.next() for _ in range(cfg.grad_accum)],
                                     tok.pad_token_id, cfg.bf16)
        gnorm = torch.nn.utils.clip_grad_norm_(
            model.parameters(), cfg.max_grad_norm if cfg.max_grad_norm > 0 else float("inf"))
        finite = math.isfinite(float(gnorm))
        if finite:  # a NaN/inf gradient would poison the weights: skip it (as rlvr.update_policy)
            opt.step()
        dt = time.time() - t0
        metrics = {"loss": stats["loss"], "token_acc": stats["token_acc"], "lr": lr,
                   "grad_norm": float(gnorm), "tokens_per_s": stats["tokens"] / dt,
                   "resp_tokens": stats["resp_tokens"], "pad_frac": stats["pad_frac"],
                   "epoch": round(stream.epoch, 4), "nonfinite_grad_steps": int(not finite),
                   **M.memory_stats(model.device)}
        line = (f"step {step:>{len(str(cfg.steps))}}/{cfg.steps} | loss {stats['loss']:.3f} | "
                f"token accuracy {stats['token_acc']:.3f} | lr {lr:.2e} | {dt:.1f}s")
        if (cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.steps:
            last_eval = do_eval(step)
            metrics.update(last_eval)
            line += (f" | held-out {last_eval['eval/accuracy']:.3f} ± "
                     f"{last_eval['eval/accuracy_se']:.3f}, entropy {last_eval['entropy']:.3f}")
        run.log(step, metrics)
        if (cfg.save_every and step % cfg.save_every == 0) or step == cfg.steps:
            save(step)
        M.say(line)
    if start >= cfg.steps and run.latest_checkpoint() is None:
        save(start)

    wall = time.time() - t_start
    cpu = time.process_time() - cpu_start  # all threads: load-independent cost of the run
    report = {"steps": cfg.steps, "wall_seconds": round(wall), "cpu_seconds": round(cpu),
              "final_loss": stats.get("loss")}
    if first_eval is None:  # resumed: the base's evaluation is the step-0 line of the log
        first_eval = next((m for m in run.read_metrics() if m["step"] == 0), None)
    if first_eval:
        report["base_accuracy"] = first_eval["eval/accuracy"]
        report["base_accuracy_se"] = first_eval["eval/accuracy_se"]
    if last_eval:
        report["final_accuracy"] = last_eval["eval/accuracy"]
        report["final_accuracy_se"] = last_eval["eval/accuracy_se"]
        report["n"] = last_eval["eval/n"]
    if 0 in correct and cfg.steps in correct:
        report.update(accuracy_gain(correct[0], correct[cfg.steps]))
    gain = (f" | gain {report['gain']:+.1%} ± {report['gain_se_paired']:.1%} (paired SE)"
            if "gain" in report else "")
    final = (f" | held-out accuracy (greedy, n={last_eval['eval/n']}) "
             f"{report.get('base_accuracy', float('nan')):.1%} → "
             f"{last_eval['eval/accuracy']:.1%} ± {last_eval['eval/accuracy_se']:.1%}{gain}, "
             f"entropy {last_eval['entropy']:.3f}" if last_eval else "")
    M.say(f"[sft] done: {cfg.steps} steps in {wall / 60:.1f} min{final}")
    M.say(f"[sft] run folder {run.path} (metrics.jsonl, samples.jsonl, checkpoints/). Next: "
          f"python analyze.py --runs {run.path}")
    return report


def parse_args(argv=None) -> Config:
    cfg = M.parse_config(Config, argv, description=__doc__.split("\n\n")[0])
    if cfg.steps < 1 or cfg.micro_batch < 1 or cfg.grad_accum < 1:
        raise SystemExit("--steps, --micro-batch and --grad-accum must be >= 1")
    if cfg.schedule not in ("cosine", "constant"):
        raise SystemExit(f"--schedule {cfg.schedule!r}: expected 'cosine' or 'constant'")
    if cfg.lr <= 0 or cfg.warmup < 0 or not 0 <= cfg.min_lr_ratio <= 1:
        raise SystemExit("--lr must be > 0, --warmup >= 0 and --min-lr-ratio in [0, 1]")
    if len(cfg.betas) != 2:
        raise SystemExit(f"--betas: expected two values, got {cfg.betas}")
    if cfg.eval_n < 1 or cfg.eval_every < 0 or cfg.save_every < 0:
        raise SystemExit("--eval-n must be >= 1, --eval-every and --save-every >= 0")
    if not cfg.train_data and cfg.n_train < 1:
        raise SystemExit("--n-train must be >= 1")
    return cfg


if __name__ == "__main__":
    main(parse_args())
