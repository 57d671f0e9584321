"""sft.py — supervised fine-tuning on worked solutions: the third point of comparison of Chae et
al. 2025 next to RLVR and self-play (SFT updates parameters densely and does not collapse the
entropy the way RL does).

    python sft.py                                   # toy base, worked toy-arithmetic solutions
    python sft.py --model Qwen/Qwen2.5-0.5B --train-data gsm8k_train.jsonl \
        --eval gsm8k=gsm8k_test.jsonl

The prompt is the one RLVR trains and evaluates on (tasks.math_prompt); the response is the worked
solution (toy: " 4*2=8. 3+8=11. <answer>11</answer>"; azr: " <reasoning> </think> <answer>N
</answer>") then EOS. The loss is the token mean of the next-token cross-entropy over response
tokens only, AdamW with a linear warm-up and a cosine decay to lr/10, gradient accumulation,
micro-batches of similar length. At every evaluation: greedy held-out accuracy, and the policy's
token entropy on its own temperature-1 samples of 64 training prompts.

Left out on purpose: packing, LoRA, chat templates, and a validation loss.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

import model as M
import rlvr
import tasks as T


@dataclass
class Config(M.Run):
    """supervised fine-tuning"""
    out: str = "runs/sft"          # run folder: config.json, metrics.jsonl, samples.jsonl, checkpoints/
    save_every: int = 100          # checkpoint every N steps (and at the end)
    train_data: str = ""           # JSONL of worked solutions (GSM8K, MATH, or prompt/response); "" = toy arithmetic
    eval: list[str] = field(default_factory=list)  # held-out benchmarks as name=path (crux*: CRUXEval, humaneval, else math); default: toy arithmetic
    steps: int = 300               # optimizer steps
    grad_accum: int | None = None  # micro-batches per optimizer step (unset: 1 for the toy, 32 sequences a step otherwise)
    lr: float | None = None        # peak learning rate (None: the preset's)
    warmup: int = 10               # linear warm-up steps, then a cosine decay to lr/10
    max_len: int = 512             # drop training examples longer than this (prompt + response tokens)
    max_new_tokens: int | None = None  # length cap of the evaluation answers (None: the preset's)
    eval_n: int = 300              # held-out problems, greedy
    eval_every: int = 50           # held-out evaluation every N steps, and at the start and the end (0: only those)


PRESETS = {"toy": {"lr": 1e-3, "max_new_tokens": 64, "micro_batch": 32, "grad_accum": 1},
           "azr": {"lr": 1e-5, "max_new_tokens": 1024}}
RESUME_KEYS = ("train_data", "seed", "micro_batch", "grad_accum", "max_len")  # fix the data order


def build_target(solution: str, answer, style: str) -> str:
    """The response the model learns after math_prompt(question, style) (EOS comes later).
    toy: " " + the solution ending in "<answer>N</answer>" (added from `answer` if missing);
    azr: the prompt ends in "Assistant: <think>", so " <reasoning> </think> <answer>N</answer>",
    a solution that already holds "</think>" (an R1 response) kept as it is."""
    sol = solution.strip()
    if style == "toy":
        if not re.search(r"<answer>.*?</answer>\s*$", sol, re.S):
            sol = f"{sol} <answer>{answer}</answer>".strip()
        return " " + sol
    sol = sol.removeprefix("<think>").strip()
    if "</think>" in sol:
        tail = "" if "<answer>" in sol.split("</think>")[-1] else f" <answer>{answer}</answer>"
        return f" {sol}{tail}"
    reasoning = re.sub(r"\s*<answer>.*?</answer>\s*$", "", sol, flags=re.S).strip()
    return f" {reasoning} </think> <answer>{answer}</answer>"


def tokenize_examples(rows: list[dict], tok, style: str, max_len: int):
    """Each row → (prompt ids with BOS as `model.sample` encodes it, response ids + EOS),
    tokenized apart, as they meet at sampling time. Returns (examples, number dropped as longer
    than max_len)."""
    p_ids = tok([T.math_prompt(r["question"], style) for r in rows],
                add_special_tokens=True)["input_ids"]
    r_ids = tok([build_target(r["solution"], r["answer"], style) for r in rows],
                add_special_tokens=False)["input_ids"]
    examples = [(list(p), list(r) + [tok.eos_token_id]) for p, r in zip(p_ids, r_ids)]
    kept = [e for e in examples if len(e[0]) + len(e[1]) <= max_len]
    return kept, len(examples) - len(kept)


def collate(examples: list[tuple[list[int], list[int]]], pad_id: int):
    """Right-padded (prompt + response) rows; labels -100 on prompt and padding, so only the
    response is learned. Returns input_ids, attention_mask, labels, each [B, L]."""
    L, B = max(len(p) + len(r) for p, r in examples), len(examples)
    ids = torch.full((B, L), pad_id, dtype=torch.long)                        # [B, L]
    mask = torch.zeros((B, L), dtype=torch.long)                              # [B, L]
    labels = torch.full((B, L), -100, dtype=torch.long)                       # [B, L]
    for i, (p, r) in enumerate(examples):
        ids[i, :len(p) + len(r)] = torch.tensor(p + r)
        mask[i, :len(p) + len(r)] = 1
        labels[i, len(p):len(p) + len(r)] = torch.tensor(r)
    return ids, mask, labels


def length_bucketed_batches(lengths, micro_batch: int, seed: int, epoch: int) -> list[list[int]]:
    """One epoch of micro-batches with little padding: a seeded shuffle, a stable sort by length,
    consecutive chunks, a seeded shuffle of the chunks. Deterministic in (seed, epoch)."""
    rng = np.random.default_rng([seed, epoch])
    lengths = np.asarray(lengths)
    perm = rng.permutation(len(lengths))
    order = perm[np.argsort(lengths[perm], kind="stable")]
    chunks = [order[i:i + micro_batch].tolist() for i in range(0, len(order), micro_batch)]
    return [chunks[j] for j in rng.permutation(len(chunks))]


class DataStream:
    """Endless length-bucketed micro-batches; the position alone fixes what comes next (resume)."""

    def __init__(self, examples, micro_batch: int, seed: int, position: int = 0):
        self.examples, self.micro_batch, self.seed = examples, micro_batch, seed
        self.position, self._epoch, self._plan = position, -1, []
        self.lengths = [len(p) + len(r) for p, r in examples]
        self.per_epoch = math.ceil(len(examples) / micro_batch)

    def next(self):
        epoch, j = divmod(self.position, self.per_epoch)
        if epoch != self._epoch:
            self._epoch = epoch
            self._plan = length_bucketed_batches(self.lengths, self.micro_batch, self.seed, epoch)
        self.position += 1
        return [self.examples[i] for i in self._plan[j]]


def sft_loss(logits: torch.Tensor, labels: torch.Tensor, n_tokens: int | None = None):
    """Next-token cross-entropy over the response tokens (labels != -100), summed and divided by
    `n_tokens` (default: this batch's): with the count of the whole optimizer step, accumulated
    micro-batch gradients equal one big batch's token mean. logits [B, L, V], labels [B, L].
    Returns (loss, response tokens whose argmax is right, response tokens)."""
    z, tgt = logits[:, :-1, :].float(), labels[:, 1:]                         # [B, L-1, V], [B, L-1]
    valid = tgt != -100                                                       # [B, L-1]
    nll = F.cross_entropy(z.reshape(-1, z.shape[-1]), tgt.reshape(-1), ignore_index=-100,
                          reduction="sum")
    n_resp = int(valid.sum())
    correct = int(((z.argmax(-1) == tgt) & valid).sum())
    return nll / max(n_tokens if n_tokens is not None else n_resp, 1), correct, n_resp


def accumulate_grads(model, micro_batches, pad_id: int, bf16: bool = False) -> dict:
    """Forward/backward over one optimizer step's micro-batches, each loss divided by the step's
    response-token count, so the summed gradient is that of the step's token mean."""
    n_total = sum(len(r) for mb in micro_batches for _, r in mb)
    dev = next(model.parameters()).device
    loss_sum, correct = 0.0, 0
    for mb in micro_batches:
        ids, mask, labels = (t.to(dev) for t in collate(mb, pad_id))          # [b, L] each
        with M.bf16_autocast(model, bf16):
            logits = model(input_ids=ids, attention_mask=mask).logits         # [b, L, V]
        loss, c, _ = sft_loss(logits, labels, n_total)
        loss.backward()
        loss_sum, correct = loss_sum + float(loss.detach()), correct + c
    return {"loss": loss_sum, "token_acc": correct / max(n_total, 1), "resp_tokens": n_total}


def main(cfg: Config) -> dict:
    M.check(cfg.steps >= 1, "--steps must be >= 1")
    M.check_eval(cfg)
    t_start = time.time()
    M.seed_everything(cfg.seed)
    run = M.RunDir(cfg.out, logs=("metrics.jsonl", "samples.jsonl", "eval.jsonl"))
    run.claim(cfg.resume)
    rows = T.load_math(cfg.train_data) if cfg.train_data else T.make_arith(4000, cfg.seed, "train")
    missing = [i for i, r in enumerate(rows, 1) if not (r.get("solution") or "").strip()]
    M.check(bool(rows), f"--train-data {cfg.train_data}: the file holds no rows")
    M.check(not missing, f"--train-data {cfg.train_data}: SFT needs a worked "
            f"solution in every row (rows without one: {missing[:5]}; GSM8K reasoning before "
            f"'#### N', a MATH 'solution', or a 'response')")
    sets = T.eval_sets(cfg.eval, cfg.eval_n, ["arith"])
    model, tok = M.load_policy(cfg.model, cfg.device, cfg.dtype)
    style = M.prompt_style(tok, cfg.style)
    preset = M.apply_preset(cfg, PRESETS, style)
    M.check(cfg.lr > 0 and cfg.max_new_tokens >= 1, "--lr must be > 0 and --max-new-tokens >= 1")
    memory = M.fit_memory(cfg, model, cfg.max_len, 0)
    if cfg.grad_accum is None:  # the azr preset: an effective batch of 32 sequences
        cfg.grad_accum = max(1, 32 // cfg.micro_batch)
    M.check(cfg.micro_batch >= 1 and cfg.grad_accum >= 1, "--micro-batch and --grad-accum must "
                                                           "be >= 1")
    if cfg.resume and (run.path / "config.json").exists():
        old = json.loads((run.path / "config.json").read_text())
        diff = [f"--{k.replace('_', '-')} {old.get(k)!r} → {getattr(cfg, k)!r}"
                for k in RESUME_KEYS if k in old and old[k] != getattr(cfg, k)]
        M.check(not diff, f"--resume {cfg.out}: the run was started with other data settings "
                          f"({'; '.join(diff)}); resume with the original ones")
    examples, dropped = tokenize_examples(rows, tok, style, cfg.max_len)
    M.check(bool(examples), f"all {len(rows)} examples are longer than --max-len {cfg.max_len}")
    pick = np.random.default_rng([cfg.seed, 7]).choice(len(rows), min(64, len(rows)), replace=False)
    ent_prompts = [T.math_prompt(rows[i]["question"], style) for i in sorted(pick)]
    if cfg.grad_checkpointing:
        M.enable_grad_checkpointing(model)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.0)
    start, extra = run.resume(model, opt) if cfg.resume else (0, {})
    stream = DataStream(examples, cfg.micro_batch, cfg.seed, int(extra.get("micro_batches", 0)))
    M.say(f"[sft] {M.resolve_model(cfg.model)} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M"
          f" params, {style} preset {preset}, {model.device}) → {run.path} | {cfg.steps} steps of "
          f"{cfg.micro_batch}x{cfg.grad_accum} sequences, {len(examples)} examples ({dropped} "
          f"longer than {cfg.max_len} dropped) | {memory}")

    def evaluate(step: int) -> dict:
        res = T.evaluate(model, tok, sets, style, cfg.max_new_tokens, batch_size=cfg.sample_batch)
        run.log(step, T.correct_strings(res), "eval.jsonl")
        name = next(iter(sets))
        run.log(step, [{"set": name, "problem": i, "response": r[0], "correct": c[0]} for i, (r, c)
                       in enumerate(zip(res[name]["texts"][:8], res[name]["correct"]))],
                "samples.jsonl")
        ro = M.sample(model, tok, ent_prompts, temperature=1.0, max_new_tokens=cfg.max_new_tokens,
                      stop=T.stop_strings("solve", "math", style), batch_size=cfg.sample_batch,
                      seed=cfg.seed + step)
        return {**T.accuracy(res), "entropy": M.masked_mean(ro.entropy.float(), ro.response_mask)}

    if start == 0:
        run.write_config({**dataclasses.asdict(cfg), "model": M.resolve_model(cfg.model),
                          "script": "sft.py", "style": style, "n_examples": len(examples)})
        m = evaluate(0)
        run.log(0, m)
        M.say(f"[sft] base held-out accuracy (greedy) {m['eval/accuracy']:.3f} ± {m['eval/se']:.3f}"
              f", entropy {m['entropy']:.3f}")
    model.train()
    for step in M.progress(range(start + 1, cfg.steps + 1), "sft", initial=start, total=cfg.steps):
        t0 = time.time()
        lr = M.lr_at(step - 1, cfg.lr, cfg.warmup, cfg.steps - 1, decay_to=0.1)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        M.reset_peak_memory(model.device)
        with M.oom_advice("sft", "a smaller --micro-batch with a larger --grad-accum, a smaller "
                                 "--max-len or --grad-checkpointing"):
            st = accumulate_grads(model, [stream.next() for _ in range(cfg.grad_accum)],
                                  tok.pad_token_id, cfg.bf16)
        gnorm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0))
        if math.isfinite(gnorm):  # a NaN/inf gradient would poison the weights: skip it
            opt.step()
        m = {**st, "lr": lr, "grad_norm": gnorm, "nonfinite_grad_steps": int(not math.isfinite(gnorm)),
             "epoch": round(stream.position / stream.per_epoch, 4), "time/step": time.time() - t0,
             **M.memory_stats(model.device)}
        line = (f"step {step}/{cfg.steps} | loss {st['loss']:.3f} | token accuracy "
                f"{st['token_acc']:.3f} | lr {lr:.2e} | {m['time/step']:.1f}s")
        if M.due(step, cfg.eval_every, cfg.steps):
            model.eval()
            m.update(evaluate(step))
            model.train()
            line += (f" | held-out {m['eval/accuracy']:.3f} ± {m['eval/se']:.3f}, entropy "
                     f"{m['entropy']:.3f}")
        run.log(step, m)
        if M.due(step, cfg.save_every, cfg.steps):
            run.save(step, model, tok, opt, {"micro_batches": stream.position},
                     cfg.keep_checkpoints)
        M.say(line)
    return rlvr.finish("sft", run, cfg.steps, t_start, T.program_ids(sets))


if __name__ == "__main__":
    main(M.parse_flags(Config, doc=__doc__))
