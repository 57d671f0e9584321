"""bench/grpo_step.py — one full GRPO step (generate → score → update) of zeroplay's rlvr.py
against TRL's GRPOTrainer, side by side in one process on the same model, prompts, G, lengths,
loss type (token mean over the whole batch: zeroplay `token_mean` = TRL `dapo`), optimizer
(AdamW, constant lr, grad-norm clip 1.0), precision and reward (the verifier's math check).

TRL is not a zeroplay dependency: run this with a Python that has it, e.g.

    python3 -m venv .venv-trl && .venv-trl/bin/pip install torch==2.13.0
    .venv-trl/bin/pip install trl
    HF_HUB_OFFLINE=1 .venv-trl/bin/python bench/grpo_step.py            # toy base, 16 prompts x G=8

Both generate until EOS or --max-new-tokens (no stop strings: TRL has none by default), keep
every group in the loss (no --drop-zero-std: the same denominators and gradient as TRL; zeroplay
still skips the forward/backward of zero-advantage rows, which contribute exactly zero gradient),
and sample at temperature 1. Each side runs
--warmup untimed steps then --steps timed steps from a fresh copy of the base; --rounds > 1
alternates the two to even out a noisy shared CPU. Reported: median step time, completions/s,
mean completion length, and zeroplay's generate/score/update split. Last line:
RESULT zeroplay_completions_per_s=... trl_completions_per_s=... ratio=...
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

import model as M  # noqa: E402
import rlvr  # noqa: E402
import tasks as T  # noqa: E402


@dataclass
class Config:
    model: str = "toy"             # base policy ("toy" = the toy base; must already exist)
    prompts: int = 16              # prompts per step
    group_size: int = 8            # G: completions per prompt
    max_new_tokens: int = 48       # completion length cap
    lr: float = 1e-4               # AdamW learning rate (constant)
    bf16: bool = True              # bf16 autocast for the update (TRL: bf16=True); sampling fp32
    warmup: int = 1                # untimed steps per side and round
    steps: int = 4                 # timed steps per side and round
    rounds: int = 1                # alternate zeroplay / TRL this many times
    seed: int = 0                  # seeds everything
    threads: int = 0               # torch threads (0: default)


def problems(cfg: Config) -> list[dict]:
    return T.make_arith(cfg.prompts, cfg.seed, "train")


def run_zeroplay(cfg: Config, probs: list[dict], style: str) -> dict:
    M.seed_everything(cfg.seed)
    model, tok = M.load_policy(cfg.model, device="cpu")
    rc = rlvr.Config(group_size=cfg.group_size, max_new_tokens=cfg.max_new_tokens,
                     temperature=1.0, lr=cfg.lr, warmup_steps=0, scale_rewards="group",
                     loss_agg="token_mean", max_grad_norm=1.0, bf16=cfg.bf16,
                     sample_batch=cfg.prompts * cfg.group_size,
                     micro_batch=cfg.prompts * cfg.group_size)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    prompts = [T.math_prompt(p["question"], style) for p in probs]
    golds = [p["answer"] for p in probs]
    times, parts, lens, rewards, skipped = [], [], [], [], []
    for i in range(cfg.warmup + cfg.steps):
        t = time.perf_counter()
        m, _, _ = rlvr.grpo_step(model, tok, opt, prompts, golds, rc, style)
        dt = time.perf_counter() - t
        if i >= cfg.warmup:
            times.append(dt)
            parts.append((m["time/generate"], m["time/score"], m["time/update"]))
            lens.append(m["response_len_mean"])
            rewards.append(m["reward_mean"])
            skipped.append(m["update/skipped_frac"])
    return {"times": times, "parts": parts, "len": statistics.mean(lens),
            "reward": statistics.mean(rewards), "skipped": statistics.mean(skipped)}


def run_trl(cfg: Config, probs: list[dict], style: str) -> dict:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    M.seed_everything(cfg.seed)
    model, tok = M.load_policy(cfg.model, device="cpu")
    ds = Dataset.from_list([{"prompt": T.math_prompt(p["question"], style),
                             "answer": p["answer"]} for p in probs])

    def reward(prompts, completions, answer, **kw):
        return [float(x) for x in T.score("math", [{"answer": a} for a in answer], completions,
                                          style)[0]]

    class Timer(TrainerCallback):
        def __init__(self):
            self.marks = []

        def on_train_begin(self, args, state, control, **kw):
            self.marks.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kw):
            self.marks.append(time.perf_counter())

    timer = Timer()
    with tempfile.TemporaryDirectory() as out:
        args = GRPOConfig(
            output_dir=out, per_device_train_batch_size=cfg.prompts * cfg.group_size,
            gradient_accumulation_steps=1, num_generations=cfg.group_size,
            max_completion_length=cfg.max_new_tokens, max_steps=cfg.warmup + cfg.steps,
            learning_rate=cfg.lr, lr_scheduler_type="constant", warmup_steps=0,
            weight_decay=0.0, max_grad_norm=1.0, optim="adamw_torch",
            loss_type="dapo", scale_rewards="group", epsilon=0.2, epsilon_high=0.2, beta=0.0,
            temperature=1.0, top_p=1.0, use_cpu=True, bf16=cfg.bf16, logging_steps=1,
            report_to="none", save_strategy="no", seed=cfg.seed, disable_tqdm=True,
            dataloader_num_workers=0)
        trainer = GRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=ds,
                              processing_class=tok, callbacks=[timer])
        precision = trainer.accelerator.mixed_precision
        trainer.train()
    steps = [b - a for a, b in zip(timer.marks, timer.marks[1:])]
    logs = [h for h in trainer.state.log_history if "completions/mean_length" in h]
    timed = logs[cfg.warmup:] or logs
    return {"times": steps[cfg.warmup:],
            "len": statistics.mean(h["completions/mean_length"] for h in timed),
            "reward": statistics.mean(h.get("reward", float("nan")) for h in timed),
            "precision": precision}


def main(cfg: Config) -> None:
    try:
        import trl
    except ImportError:
        raise SystemExit("TRL is not installed in this Python: run the benchmark with the venv "
                         "that has it (see the docstring: .venv-trl/bin/python)") from None
    import transformers

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    path = cfg.model
    if cfg.model == "toy":
        path = M.resolve_model("toy")
    cfg.model = path
    _, tok = M.load_policy(path, device="cpu")
    style = M.prompt_style(tok)
    probs = problems(cfg)
    n = cfg.prompts * cfg.group_size
    print(f"model {path} | {cfg.prompts} prompts x G={cfg.group_size} = {n} completions/step, "
          f"<= {cfg.max_new_tokens} new tokens, bf16 update={cfg.bf16}, torch threads "
          f"{torch.get_num_threads()} | torch {torch.__version__}, transformers "
          f"{transformers.__version__}, trl {trl.__version__}", flush=True)
    zp = {"times": [], "parts": [], "len": [], "reward": [], "skipped": []}
    tr = {"times": [], "len": [], "reward": [], "precision": []}
    for r in range(cfg.rounds):
        z = run_zeroplay(cfg, probs, style)
        t = run_trl(cfg, probs, style)
        for acc, res in ((zp, z), (tr, t)):
            for k in acc:
                acc[k] += res[k] if isinstance(res[k], list) else [res[k]]
        print(f"round {r + 1}: zeroplay steps {[round(x, 2) for x in z['times']]} s | TRL steps "
              f"{[round(x, 2) for x in t['times']]} s", flush=True)
    z_med, t_med = statistics.median(zp["times"]), statistics.median(tr["times"])
    gen, score, upd = (statistics.median(p[i] for p in zp["parts"]) for i in range(3))
    z_cps, t_cps = n / z_med, n / t_med
    print(f"zeroplay: median step {z_med:.2f} s = generate {gen:.2f} + score {score:.3f} + "
          f"update {upd:.2f} (+{z_med - gen - score - upd:.2f} other) | mean completion "
          f"{statistics.mean(zp['len']):.1f} tokens | reward {statistics.mean(zp['reward']):.3f} | "
          f"zero-advantage rows skipped {statistics.mean(zp['skipped']):.0%}")
    print(f"TRL GRPOTrainer: median step {t_med:.2f} s | mean completion "
          f"{statistics.mean(tr['len']):.1f} tokens | reward {statistics.mean(tr['reward']):.3f} | "
          f"accelerate mixed precision {tr['precision'][0]}")
    print(f"RESULT zeroplay_completions_per_s={z_cps:.1f} trl_completions_per_s={t_cps:.1f} "
          f"ratio={z_cps / t_cps:.2f}")


if __name__ == "__main__":
    main(M.parse_flags(Config, doc=__doc__.split("\n\n")[0]))
