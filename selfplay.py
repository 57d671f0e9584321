"""selfplay.py — the Absolute Zero Reasoner loop (Zhao et al. 2025, arXiv 2505.03335).

One model plays two roles on three kinds of code task, with a Python executor (verifier.py) as
the only source of truth:

  deduction  propose a program + input, the executor computes the output; solve: predict the output
  abduction  propose a program + input; solve: give any input that makes f return the output
  induction  given a program from the buffers, propose N inputs + a message; solve: write f from
             the first half of the I/O pairs + the message, judged on the held-out second half

    python selfplay.py                                   # toy base, CPU, all three task types
    python selfplay.py --freeze-proposer                 # Chae et al.'s frozen-proposer ablation
    python selfplay.py --proposer-reward peak50          # R-Zero-style reward (Chae et al. RQ5)
    python selfplay.py --task-types deduction --no-refs  # AZR Table 2 ablations
    python selfplay.py --model Qwen/Qwen2.5-Coder-0.5B --device cuda   # a real model, AZR prompts

File layout, top to bottom: Prompts (shared with pretrain.py and analyze.py) → rewards and TRR++
(small pure functions) → buffers → validation and scoring → config → one self-play step → main.

One step (AZR section 3.3, Algorithm 1; azr_ray_trainer.fit):
  1. propose  for each task type, `--batch-size` proposer prompts, each showing `--k-refs`
              references drawn uniformly from that type's buffer (induction: one program drawn
              from D_abd ∪ D_ded);
  2. validate parse the blocks, run them through verifier.py (safety filter, runs, returns,
              deterministic over two runs); rejection reasons are counted;
  3. estimate `--n-estimate` solver samples at `--estimate-temperature` on every valid proposal
              (one batch across all types) → solve rate s → proposer reward; every valid proposal
              joins its buffer;
  4. solve    `--batch-size` tasks per type from the buffer (this step's proposals first, then
              filled uniformly from the whole buffer), one sample each at `--temperature`;
              solver reward per Eq. 6;
  5. update   TRR++ advantages, normalised within each of the six (task type, role) groups, and
              ONE rlvr.update_policy call over all groups.

Decisions and deviations (each is a flag, so the paper's setting stays one switch away):
  * Guessable tasks. The toy trial found tasks whose output equals the input (solvable by
    copying) and tasks that copy a reference. With `--trivial-zero` (default on; off = paper)
    such a proposal stays valid (no -1) but its role reward is 0 and it stays out of the buffers.
  * 1-of-8 luck. `--min-successes m` treats a task solved fewer than m times out of n as unsolved
    (s := 0, role reward 0). Default 1 = the paper; 2 discounts tasks solved once by luck.
  * s in {0, 1}: the paper gives 0 (Eq. 4); the AZR code gives -0.5 (its issue #37):
    `--zero-as -0.5`.
  * `--freeze-proposer` (Chae et al.): the current policy keeps proposing, s is still estimated
    and every proposer metric is logged, but proposer samples get no gradient.
    `--solver-only` (AZR Table 2, "train solver only"): the same training signal (no proposer
    gradient) with the proposer-reward machinery switched off — no learnability estimation
    rollouts (s and the proposer reward's role part are recorded as null/`--zero-as`). The two
    differ only in compute and in what gets logged.
  * TRR++ statistics are per sequence (the paper's formula), not per token as in the AZR code
    (see `trr_advantages`).
  * Toy-scale defaults that differ from AZR's Table 3 (pass the AZR value to get AZR):
    - `--loss-agg seq_mean` (AZR: token_mean). Toy solver answers are ~5-15 characters and
      proposals ~100-170, so a token mean hands ~97% of the gradient to the proposer tokens;
      a sequence mean weighs every response once, like the per-sequence TRR++ baseline.
    - `--solve-batch-size 16` (AZR: = --batch-size) and `--train-on-estimates` (AZR: off): the
      n estimation samples on each new task are on-policy solver rollouts already paid for; the
      toy solver succeeds ~10% of the time, so one rollout per task gives ~1 positive sample per
      group per step. Those n samples of one task form a GRPO group (`--estimate-advantage
      group`, see `estimate_advantages`): tasks nobody (or everybody) solves give no gradient.
    - `--k-refs 2`, `--n-inputs 6` (AZR 6, 10): what the toy base was pretrained on.
    - `--lr 1e-4` (AZR 1e-6 for 7B), `--threads 1` (2 threads were ~10x slower on the shared
      2-core machine).
  * Buffers keep every valid task (AZR: all, up to 16384) but drop exact duplicates of a
    (program, input) already present, so repeated proposals do not crowd the reference pool.
  * The solver trains on this step's proposals first (AZR's trainer builds the solver batch
    before the step's proposals join, so it trains on the previous step's; same rule, one step
    fresher).
  * Seeding: AZR's zero triplet (the identity program on 'Hello World') is the only reference
    until the seed set has a valid task; the untrained model then proposes, with no update,
    until the seed set holds `--seed-size` tasks (D0_ded = D0_abd = D_seed) and the induction
    buffer holds `--seed-size` tasks built from seed programs.

Failure modes seen on the toy base (see the run notes in the final report): at lr >= 2e-4 the
proposer's induction messages degenerate into gibberish, and proposer and abduction solver
co-adapt — the solver learns to answer a favourite input ("11") and the proposer, which writes
inputs in the same ```input block, collapses onto it, making abduction trivially solvable.
"""
from __future__ import annotations

import ast
import dataclasses
import json
import math
import random
import re
import time
from dataclasses import dataclass

import torch

import model as M

# ==============================================================================================
# Prompts
# ----------------------------------------------------------------------------------------------
# Two styles with the same structure (fenced ```python / ```input / ```output blocks):
#   "azr": AZR's R1-style wrapper for real models — the model thinks in <think>...</think> and puts
#          its answer, itself a fenced block, inside <answer>...</answer> (AZR paper Figs. 33-39;
#          the wording here is ours).
#   "toy": compact templates of the same structure for the character-level toy base, which was
#          pretrained on exactly these documents (pretrain.py): a header line names the task, and
#          the prompt ends where the answer block opens, so the answer is the text up to the
#          closing fence.
# ==============================================================================================
TASK_TYPES = ("deduction", "abduction", "induction")

R1_WRAPPER = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant "
    "solves it. The assistant first thinks about the reasoning process in the mind and then "
    "provides the user with the answer. The reasoning process and answer are enclosed within "
    "<think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning process "
    "here </think> <answer> answer here </answer>.\nUser: {instruction}\nAssistant: <think>")

BANNED_HINT = ("logging, random, multiprocessing, subprocess, threading, datetime, time, hashlib, "
               "hmac, calendar, os, sys, open, eval, exec, input")


def fence(tag: str, body: str) -> str:
    """A fenced block: ```tag\\nbody\\n```\\n"""
    return f"```{tag}\n{body}\n```\n"


def snippet(program: str, inp: str, out: str) -> str:
    """One reference triplet (program, input, output) as three fenced blocks."""
    return fence("python", program) + fence("input", inp) + fence("output", out)


def propose_prompt(task_type: str, refs: list[dict], style: str) -> str:
    """Proposer prompt for deduction/abduction: K reference triplets from the task's buffer and a
    request for a new, different (program, input) (AZR section 3.2, Figs. 34-35)."""
    assert task_type in ("deduction", "abduction")
    if style == "toy":
        body = "".join(snippet(r["program"], r["input"], r["output"]) for r in refs)
        return f"# propose {task_type}\n{body}# new\n```python\n"
    goal = ("predicting its output from the input" if task_type == "deduction"
            else "finding an input that produces its output")
    refs_text = "".join(f"<snippet_{i}>\n{snippet(r['program'], r['input'], r['output'])}"
                        f"</snippet_{i}>\n" for i, r in enumerate(refs))
    instruction = (
        f"Design a new Python program with one test input, for a puzzle that consists of "
        f"{goal}. Requirements: define an entry function `f` with at least one argument that "
        f"returns a value; it must be deterministic, need several steps of reasoning, run in "
        f"under a second, and use no randomness, time, files, printing or external state. "
        f"Do not use any of: {BANNED_HINT}. Make it different from the reference snippets "
        f"below. Write the program in a ```python block and the input (the arguments of f, "
        f"comma-separated, strings quoted) in an ```input block, both inside <answer>.\n"
        f"### Reference snippets:\n{refs_text}")
    return R1_WRAPPER.format(instruction=instruction)


def propose_induction_prompt(program: str, n_inputs: int, style: str) -> str:
    """Induction proposer prompt: given a program from the buffers, write `n_inputs` diverse
    inputs and a message that hints at the function without revealing the code (AZR Fig. 36)."""
    if style == "toy":
        return f"# propose induction\n{fence('python', program)}"
    instruction = (
        f"Here is a Python function:\n{fence('python', program)}Write {n_inputs} diverse inputs "
        f"for it, each in its own ```input block (the arguments of f, comma-separated, strings "
        f"quoted), and a short ```message block that would help someone rewrite the function "
        f"from input/output examples without revealing the code. Put them inside <answer>.")
    return R1_WRAPPER.format(instruction=instruction)


def solve_prompt(task_type: str, task: dict, style: str) -> str:
    """Solver prompt (AZR Figs. 37-39). deduction: program + input → output; abduction: program +
    output → an input; induction: visible (input, output) pairs + message → the program."""
    if task_type == "deduction":
        shown = fence("python", task["program"]) + fence("input", task["input"])
        ask, head = "output", "# deduction\n"
        what = "Predict the output of f on this input. Give it in an ```output block."
    elif task_type == "abduction":
        shown = fence("python", task["program"]) + fence("output", task["output"])
        ask, head = "input", "# abduction\n"
        what = ("Find an input (the arguments of f) that makes f return this output. Give it "
                "in an ```input block.")
    elif task_type == "induction":
        shown = "".join(fence("input", i) + fence("output", o) for i, o in task["visible"])
        shown += fence("message", task["message"])
        ask, head = "python", "# induction\n"
        what = ("Write a Python function `f` that maps each input to its output above. Give it "
                "in a ```python block.")
    else:
        raise ValueError(f"unknown task type {task_type!r}")
    if style == "toy":
        return f"{head}{shown}```{ask}\n"
    return R1_WRAPPER.format(instruction=f"{shown}{what} Put the block inside <answer>.")


def stop_strings(role: str, task_type: str, style: str) -> list[str]:
    """Where sampling stops: toy solvers stop after the answer block closes; toy deduction/
    abduction proposers stop where the (executor-computed) output block would start; R1-style
    responses stop at </answer>. EOS always stops."""
    if style != "toy":
        return ["</answer>"]
    if role == "solve":
        return ["\n```"]
    return ["```output"] if task_type in ("deduction", "abduction") else []


_BLOCK = {tag: re.compile(rf"```{tag}\n(.*?)\n?```", re.S)
          for tag in ("python", "input", "output", "message")}


def _answer_region(text: str, style: str) -> str | None:
    """The part of a response that holds the answer: for R1 style the content of the last
    <answer>...</answer> after a closed <think> (None if missing: a format error)."""
    if style == "toy":
        return text
    start = text.rfind("<answer>")
    end = text.find("</answer>", start + 1) if start >= 0 else -1
    if start < 0 or end < 0 or "</think>" not in text[:start]:
        return None
    return text[start + len("<answer>"):end]


def extract_answer(text: str, task_type: str, style: str) -> str | None:
    """The solver's answer text, or None for a format error (AZR: missing <answer>, or no
    block; toy: the answer block never closed)."""
    if style == "toy":
        end = text.find("```")
        if end < 0:
            return None
        return text[:end].strip("\n").strip() or None
    region = _answer_region(text, style)
    if region is None:
        return None
    tag = {"deduction": "output", "abduction": "input", "induction": "python"}[task_type]
    blocks = _BLOCK[tag].findall(region + ("\n```" if region.count("```") % 2 else ""))
    ans = (blocks[-1] if blocks else region).strip()
    return ans or None


def parse_proposal(text: str, style: str) -> tuple[str, str] | str:
    """Parse a deduction/abduction proposal into (program, input), or return the name of the
    format problem as a string ("no_program", "no_input")."""
    if style == "toy":
        text = "```python\n" + text  # the prompt opened the program block
    else:
        region = _answer_region(text, style)
        text = region if region is not None else text
    prog = _BLOCK["python"].search(text)
    if not prog:
        return "no_program"
    inp = _BLOCK["input"].search(text, prog.end())
    if not inp:
        return "no_input"
    return prog.group(1).strip("\n"), inp.group(1).strip()


def parse_induction_proposal(text: str, style: str, n_inputs: int) -> tuple[list[str], str] | str:
    """Parse an induction proposal into (inputs, message): the first `n_inputs` distinct input
    blocks and the message block; or the name of the problem ("too_few_inputs", "no_message")."""
    if style != "toy":
        region = _answer_region(text, style)
        text = region if region is not None else text
    inputs = []
    for m in _BLOCK["input"].finditer(text):
        s = m.group(1).strip()
        if s and s not in inputs:
            inputs.append(s)
    msg = _BLOCK["message"].search(text)
    if len(inputs) < n_inputs:
        return "too_few_inputs"
    if not msg or not msg.group(1).strip():
        return "no_message"
    return inputs[:n_inputs], msg.group(1).strip()


def induction_view(task: dict) -> dict:
    """An induction task as the solver sees it (AZR section 3.2): the first half of the
    (input, output) pairs are shown with the message (`visible`); the second half is held out
    (`hidden`) and is what the candidate program is judged on."""
    pairs = list(zip(task["inputs"], task["outputs"]))
    half = max(1, len(pairs) // 2)
    return {**task, "visible": pairs[:half], "hidden": pairs[half:] or pairs}


# ==============================================================================================
# Rewards and TRR++ (pure functions, each tested on hand values in tests/test_selfplay.py)
# ==============================================================================================
PROPOSER_REWARDS = ("learnability", "peak50", "peak25")


def solver_reward(correct: bool, well_formed: bool) -> float:
    """Solver reward with the format penalty of AZR Eq. 6 (Eq. 5 inside): 1 if correct, -0.5 for
    a well-formed wrong answer, -1 for a format error (no answer block / no <answer>)."""
    if not well_formed:
        return -1.0
    return 1.0 if correct else -0.5


def proposer_reward(s: float, kind: str = "learnability", zero_as: float = 0.0) -> float:
    """Proposer role reward from the estimated solve rate s (mean success of the solver samples).

    learnability  1 - s            (AZR Eq. 4; largest for tasks solved rarely but not never)
    peak50        1 - 2|s - 0.5|   (R-Zero-style uncertainty reward tested by Chae et al.)
    peak25        4s for s <= 1/4, (4/3)(1 - s) above (a triangle peaked at s = 0.25)
    All are 0 at s in {0, 1} (impossible or trivial task). A role reward of 0 is replaced by
    `zero_as`: 0 is the paper's Eq. 4, -0.5 the AZR code's choice (AZR issue #37).
    """
    if not 0.0 <= s <= 1.0:
        raise ValueError(f"solve rate s must be in [0, 1], got {s}")
    if kind not in PROPOSER_REWARDS:
        raise ValueError(f"unknown proposer reward {kind!r}: expected one of {PROPOSER_REWARDS}")
    if s <= 0.0 or s >= 1.0:
        r = 0.0
    elif kind == "learnability":
        r = 1.0 - s
    elif kind == "peak50":
        r = 1.0 - 2.0 * abs(s - 0.5)
    else:  # peak25
        r = 4.0 * s if s <= 0.25 else (4.0 / 3.0) * (1.0 - s)
    return r if r > 0 else float(zero_as)


def effective_solve_rate(successes: int, n: int, min_successes: int = 1) -> float:
    """s = successes / n, except that fewer than `min_successes` successes count as unsolved
    (s = 0). min_successes = 1 is the paper; 2 stops a single lucky sample out of 8 from earning
    the largest learnability reward (1 - 1/8), which the toy trial saw on 30-55% of the
    'learnable' tasks."""
    if n <= 0:
        raise ValueError("the solve rate needs at least one solver sample")
    return 0.0 if successes < min_successes else successes / n


def proposal_reward(valid: bool, s: float | None, kind: str = "learnability",
                    zero_as: float = 0.0, trivial: bool = False) -> float:
    """The proposer's composite reward (AZR Eq. 6 applied to the proposer): -1 for a proposal
    that is not a valid task (format, parse, safety, run or determinism failure); for a valid
    one, the role reward `proposer_reward(s)`, where a guessable/copied task (`trivial`) has role
    reward 0 — and a role reward of 0 becomes `zero_as`."""
    if not valid:
        return -1.0
    if trivial or s is None:
        return float(zero_as)
    return proposer_reward(s, kind, zero_as)


def trr_advantages(rewards, groups: list, eps: float = 1e-6) -> torch.Tensor:
    """Task-Relative REINFORCE++ advantages (AZR section 3.3.5, Eq. 8):
    A = (r - mean_g) / (std_g + eps), with mean and (population) std taken over the samples of
    each group g = (task_type, role) in this batch — six baselines instead of one. A group whose
    rewards are all equal (or that has one sample) gets zero advantages.

    rewards: [N] (list or tensor); groups: N hashable group keys. Returns a float tensor [N].
    Deviation from the AZR code: veRL's REINFORCE++ whitens per TOKEN over all response tokens
    of the (role, task) batch (masked_whiten: mean and unbiased variance weighted by token
    count, so long responses weigh more); here, as in the paper's formula, each sequence counts
    once, and its advantage is then broadcast to its tokens by the policy loss.
    """
    r = torch.as_tensor(rewards, dtype=torch.float32).flatten()                  # [N]
    if r.numel() != len(groups):
        raise ValueError(f"{r.numel()} rewards but {len(groups)} group labels")
    adv = torch.zeros_like(r)                                                      # [N]
    for g in dict.fromkeys(groups):
        idx = torch.tensor([i for i, gi in enumerate(groups) if gi == g])         # [n_g]
        x = r[idx]                                                                 # [n_g]
        std = x.std(unbiased=False) if x.numel() > 1 else x.new_zeros(())
        if float(std) > 1e-8:
            adv[idx] = (x - x.mean()) / (std + eps)
    return adv


def estimate_advantages(rewards, n: int) -> torch.Tensor:
    """Advantages of the --train-on-estimates solver samples (not in AZR, whose solver trains on
    one sample per buffer task): the n samples that estimated one task's solve rate form a
    GRPO group, A = (r - mean_task) / (std_task + eps) (rlvr.group_advantages, scale "group").
    A task solved 0 or n times gives no gradient, even when its wrong answers mix format errors
    (-1) with well-formed ones (-0.5): a correct answer (reward 1) must be in the group and not
    alone. Under TRR++ (`--estimate-advantage trr`) the wrong answers to the many tasks nobody
    solves would all be pushed down against the batch baseline — a large, noisy "unlikelihood"
    gradient that, on the toy base, kept held-out accuracy flat.
    rewards: [N] Eq. 6 rewards ordered task by task (N a multiple of n). Returns [N]."""
    import rlvr

    r = torch.as_tensor(rewards, dtype=torch.float32).flatten()                  # [N]
    if not r.numel():
        return r
    solved = (r == 1.0).view(-1, n)                                               # [B, n]
    mixed = (solved.any(-1) & ~solved.all(-1)).float()                            # [B]
    return rlvr.group_advantages(r, n, "group") * mixed.repeat_interleave(n)      # [N]


def std_error(p: float, n: int) -> float:
    """Binomial standard error of an accuracy p measured on n problems."""
    return math.sqrt(max(p * (1.0 - p), 0.0) / n) if n > 0 else float("nan")


# ==============================================================================================
# Task buffers
# ----------------------------------------------------------------------------------------------
# One list per task type; an entry is a task dict plus "step" (the step it joined; seeds: 0).
#   deduction/abduction: {"program", "input", "output", "step"}
#   induction:           {"program", "inputs", "outputs", "message", "step"}
# ==============================================================================================
def identity_triplet() -> dict:
    """AZR's zero triplet (paper Fig. 5), in the multi-line 4-space-indented form the toy base
    was pretrained on."""
    return {"program": "def f(x):\n    return x", "input": "'Hello World'",
            "output": "'Hello World'", "step": 0}


def _norm_code(program: str) -> str:
    return re.sub(r"\s+", " ", program).strip()


def task_key(task: dict) -> tuple:
    """Identity of a task for de-duplication: whitespace-normalised program + its input(s)."""
    inp = tuple(task["inputs"]) if "inputs" in task else task.get("input")
    return _norm_code(task["program"]), inp


def add_to_buffer(buffer: list[dict], task: dict, step: int, max_size: int = 0) -> bool:
    """Append a valid task (stamped with `step`) unless the same (program, input) is already
    there. max_size > 0 caps the buffer by dropping the oldest entries (AZR instead keeps the
    first 16384 and drops new ones; keeping the newest lets the reference pool follow the
    curriculum). Returns whether the task was added."""
    key = task_key(task)
    if any(task_key(t) == key for t in buffer):
        return False
    buffer.append({**task, "step": step})
    if max_size and len(buffer) > max_size:
        del buffer[:len(buffer) - max_size]
    return True


def sample_refs(buffer: list[dict], k: int, rng: random.Random) -> list[dict]:
    """K reference tasks drawn uniformly without replacement (AZR section 3.2: uniform; recency
    weighting was observed to collapse). Fewer if the buffer is smaller."""
    return rng.sample(buffer, min(k, len(buffer))) if k > 0 and buffer else []


def pick_solver_tasks(buffer: list[dict], n: int, step: int, rng: random.Random) -> list[dict]:
    """Solver batch (AZR pred_data_mix_strategy "max_new"): tasks that joined at `step` first
    (uniformly among them if there are more than n), then filled uniformly without replacement
    from the rest of the buffer; with replacement only when the buffer holds fewer than n."""
    if not buffer or n <= 0:
        return []
    new = [t for t in buffer if t["step"] == step]
    old = [t for t in buffer if t["step"] != step]
    picked = rng.sample(new, n) if len(new) > n else list(new)
    picked += rng.sample(old, min(n - len(picked), len(old)))
    while len(picked) < n:
        picked.append(rng.choice(buffer))
    return picked


# ==============================================================================================
# Guessable tasks
# ==============================================================================================
def _literal(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def _same_value(a: str, b: str) -> bool:
    """Two reprs/argument texts denote the same literal value (same type), or are the same text
    up to whitespace."""
    if re.sub(r"\s+", "", a) == re.sub(r"\s+", "", b):
        return True
    va, vb = _literal(a), _literal(b)
    return va is not None and type(va) is type(vb) and va == vb


def is_trivial(task_type: str, task: dict, refs: list[dict]) -> bool:
    """A valid task the solver can answer without reasoning: the output equals the input (copy
    it: deduction and abduction), every output equals its input (induction: the identity), or
    the program copies one of the references shown to the proposer."""
    if task_type == "induction":
        return all(_same_value(i, o) for i, o in zip(task["inputs"], task["outputs"]))
    if _same_value(task["input"], task["output"]):
        return True
    prog = _norm_code(task["program"])
    return any(_norm_code(r["program"]) == prog for r in refs)


# ==============================================================================================
# Validation (verifier.py) and scoring
# ==============================================================================================
def set_aside(cfg, p: dict) -> bool:
    """--trivial-zero: a guessable proposal (`is_trivial`) gets role reward 0, no buffer slot,
    and its estimation samples train no solver (they would reward copying)."""
    return bool(cfg.trivial_zero and p.get("trivial", False))


def _reason(error: str | None) -> str:
    """A short counter key from a verifier error: its kind ("syntax", "banned", "timeout",
    "nondeterministic", ...), with the exception class for run-time errors
    ("exception: NameError: name 'y' ..." → "exception:NameError")."""
    parts = [x.strip() for x in str(error or "error").split(":")]
    if parts[0] == "exception" and len(parts) > 1 and parts[1]:
        return f"exception:{parts[1].split()[0][:40]}"
    return parts[0][:40] or "error"


def validate_proposals(task_type: str, texts: list[str], programs: list[str | None],
                       style: str, n_inputs: int, timeout: float | None = None) -> list[dict]:
    """Turn proposer responses into tasks. Returns one dict per response with "valid", "reason"
    and the task fields. deduction/abduction: parse (program, input), run once through
    verifier.validate_many (safety filter, runs, returns, deterministic). induction: parse
    n_inputs inputs + message for the given program (`programs[i]`), every input must run, and
    the outputs must not all be identical (a constant function teaches nothing)."""
    import verifier

    out: list[dict] = [{} for _ in texts]
    jobs, where = [], []
    for i, text in enumerate(texts):
        if task_type == "induction":
            parsed = parse_induction_proposal(text, style, n_inputs)
            if isinstance(parsed, str):
                out[i] = {"valid": False, "reason": parsed, "program": programs[i]}
                continue
            inputs, message = parsed
            out[i] = {"program": programs[i], "inputs": inputs, "message": message}
            for inp in inputs:
                jobs.append((programs[i], inp))
                where.append(i)
        else:
            parsed = parse_proposal(text, style)
            if isinstance(parsed, str):
                out[i] = {"valid": False, "reason": parsed}
                continue
            program, inp = parsed
            out[i] = {"program": program, "input": inp}
            jobs.append((program, inp))
            where.append(i)
    results = verifier.validate_many(jobs, timeout=timeout) if jobs else []
    outputs: dict[int, list] = {}
    for i, res in zip(where, results):
        outputs.setdefault(i, []).append(res)
    for i, res in outputs.items():
        bad = next((r for r in res if not r.ok), None)
        if bad is not None:
            out[i].update(valid=False, reason=_reason(bad.error))
        elif task_type == "induction":
            outs = [r.value for r in res]
            if len(set(outs)) == 1:
                out[i].update(valid=False, reason="outputs_identical", outputs=outs)
            else:
                out[i].update(valid=True, reason="ok", outputs=outs)
        else:
            out[i].update(valid=True, reason="ok", output=res[0].value)
    return out


def score_answers(task_type: str, tasks: list[dict], texts: list[str], style: str,
                  timeout: float | None = None) -> tuple[list[bool], list[bool]]:
    """(correct, well_formed) for solver responses `texts[i]` to `tasks[i]`. A missing or
    unclosed answer block is a format error. deduction: value equality with the gold output;
    abduction: f(answer) must equal the gold output (any such input is right); induction: the
    candidate f must reproduce every held-out pair. Batched through verifier.py."""
    import verifier

    answers = [extract_answer(t, task_type, style) for t in texts]
    formed = [a is not None for a in answers]
    idx = [i for i, a in enumerate(answers) if a is not None]
    correct = [False] * len(texts)
    if not idx:
        return correct, formed
    if task_type == "deduction":
        res = [verifier.check_deduction(tasks[i]["output"], answers[i]) for i in idx]
    elif task_type == "abduction":
        jobs = [(tasks[i]["program"], tasks[i]["output"], answers[i]) for i in idx]
        if hasattr(verifier, "check_abduction_many"):
            res = verifier.check_abduction_many(jobs, timeout=timeout)
        else:
            res = [verifier.check_abduction(*j, timeout=timeout) for j in jobs]
    else:
        jobs = [(answers[i], induction_view(tasks[i])["hidden"]) for i in idx]
        if hasattr(verifier, "check_induction_many"):
            res = verifier.check_induction_many(jobs, timeout=timeout)
        else:
            res = [verifier.check_induction(*j, timeout=timeout) for j in jobs]
    for i, ok in zip(idx, res):
        correct[i] = bool(ok)
    return correct, formed


# ==============================================================================================
# Config
# ==============================================================================================
@dataclass
class Config:
    model: str = "toy"                 # base model: "toy" (runs/toy-base), a hub id, a local folder or a .gguf
    out: str = "runs/selfplay"         # run folder (config.json, metrics.jsonl, tasks.jsonl, checkpoints/)
    resume: bool = False               # continue from the latest checkpoint in --out (weights, optimizer, buffers, RNG, step)
    seed: int = 0                      # seeds random, numpy and torch
    device: str = "auto"               # auto|cpu|cuda
    dtype: str = "auto"                # auto (bf16 on CUDA, fp32 on CPU)|float32|bfloat16
    threads: int = 0                   # torch CPU threads (0 = torch's default)
    style: str = "auto"                # prompt templates: auto (from the tokenizer)|toy|azr
    task_types: str = "deduction,abduction,induction"  # comma-separated subset of deduction,abduction,induction
    steps: int = 30                    # self-play steps (one optimizer step each)
    batch_size: int = 8                # proposals per task type per step (AZR: 64)
    solve_batch_size: int = 16         # solver tasks per task type per step (0 = --batch-size, as AZR)
    k_refs: int = -1                   # reference tasks in each proposer prompt (-1 = 2 for toy, 6 = AZR otherwise)
    no_refs: bool = False              # ablation: proposer prompts show no references (AZR Table 2)
    n_inputs: int = -1                 # induction inputs per proposal (-1 = 6 for toy as pretrained, 10 = AZR otherwise)
    seed_size: int = 16                # valid tasks each buffer holds after seeding (AZR: B x 4 = 256)
    seed_max_rounds: int = 40          # seeding gives up (with an error) after this many proposal batches
    n_estimate: int = 8                # solver samples per valid proposal to estimate its solve rate s (AZR: 8)
    estimate_temperature: float = 1.0  # sampling temperature of those estimation samples
    temperature: float = 1.0           # sampling temperature of the trained rollouts, both roles (AZR: 1.0)
    top_p: float = 1.0                 # nucleus sampling of the trained rollouts (AZR: 1.0)
    propose_max_tokens: int = 0        # max new tokens of a proposal (0 = 224 toy, 1024 azr)
    solve_max_tokens: int = 0          # max new tokens of a solver answer (0 = 160 toy, 1024 azr)
    proposer_reward: str = "learnability"  # learnability (AZR Eq. 4) | peak50 (R-Zero style) | peak25
    zero_as: float = 0.0               # proposer reward of a valid task whose role reward is 0 (paper 0; AZR code -0.5)
    min_successes: int = 1             # fewer solver successes than this count as unsolved (1 = paper; 2 discounts 1-of-8 luck)
    trivial_zero: bool = True          # guessable tasks (output == input, or a copy of a reference) get role reward 0, stay out of the buffers and do not train the solver (off = paper)
    freeze_proposer: bool = False      # ablation (Chae et al.): proposer samples get no gradient, s still estimated and logged
    solver_only: bool = False          # ablation (AZR Table 2 "train solver only"): no proposer gradient and no s estimation
    train_on_estimates: bool = True    # also train the solver on the --n-estimate samples of each new task (not in AZR; off = AZR; no effect with --solver-only)
    estimate_advantage: str = "group"  # advantages of those samples: group (each task's n samples are a GRPO group) | trr (TRR++ together with the AZR batch)
    lr: float = 1e-4                   # AdamW learning rate, constant (AZR: 1e-6 for 7B models)
    weight_decay: float = 0.0          # AdamW weight decay (AZR: 0)
    clip_low: float = 0.2              # PPO clip below (inactive: one optimizer step per batch, ratio = 1, as AZR)
    clip_high: float = 0.2             # PPO clip above (AZR master: 0.28)
    loss_agg: str = "seq_mean"         # loss aggregation: seq_mean (each response counts once) | token_mean (AZR/veRL) | constant
    entropy_coef: float = 0.0          # entropy bonus coefficient (AZR paper config 0.001, master 0)
    kl_coef: float = 0.0               # KL penalty to the base model (AZR: none)
    max_grad_norm: float = 1.0         # gradient-norm clip (AZR: 1.0)
    micro_batch: int = 16              # sequences per forward/backward micro-batch
    bf16: bool = True                  # bf16 autocast for the update's forward/backward
    grad_checkpointing: bool = False   # activation checkpointing: recompute in the backward pass (real models on small GPUs)
    sample_batch: int = 64             # sequences per sampling batch
    exec_timeout: float = 2.0          # wall-clock seconds per sandboxed execution (AZR: 10)
    max_buffer: int = 0                # cap on each buffer, oldest dropped first (0 = keep all)
    eval_every: int = 10               # held-out greedy evaluation every N steps (also at step 0 and at the end; 0 = only those)
    eval_n: int = 256                  # held-out toy tasks per task type (toydata heldout split, never proposed; 256 → SE of the mean over types about 0.011)
    eval_seed: int = 1234              # seed of the held-out evaluation set
    save_every: int = 10               # checkpoint every N steps (0 = only at the end); the sparsity-vs-step analysis reads them
    task_source: str = "proposer"      # proposer (AZR) | generator (control: every proposal replaced by a toy-generator task, train split; needs --freeze-proposer)


def _resolved(cfg: Config, style: str) -> dict:
    """Style-dependent defaults (the toy base's pretraining formats vs AZR's settings)."""
    toy = style == "toy"
    return {"k_refs": 0 if cfg.no_refs else (cfg.k_refs if cfg.k_refs >= 0 else (2 if toy else 6)),
            "n_inputs": cfg.n_inputs if cfg.n_inputs > 0 else (6 if toy else 10),
            "propose_max_tokens": cfg.propose_max_tokens or (224 if toy else 1024),
            "solve_max_tokens": cfg.solve_max_tokens or (160 if toy else 1024),
            "solve_batch_size": cfg.solve_batch_size or cfg.batch_size}


def check_config(cfg: Config) -> list[str]:
    """Validate the flags; returns the task types. Bad values → SystemExit naming the flag."""
    types = [t.strip() for t in cfg.task_types.split(",") if t.strip()]
    bad = [t for t in types if t not in TASK_TYPES]
    if bad or not types:
        raise SystemExit(f"--task-types {cfg.task_types!r}: expected a comma-separated subset of "
                         f"{', '.join(TASK_TYPES)}")
    if cfg.proposer_reward not in PROPOSER_REWARDS:
        raise SystemExit(f"--proposer-reward {cfg.proposer_reward!r}: expected one of "
                         f"{', '.join(PROPOSER_REWARDS)}")
    if cfg.style not in ("auto", "toy", "azr"):
        raise SystemExit(f"--style {cfg.style!r}: expected auto, toy or azr")
    for name in ("steps", "batch_size", "n_estimate", "seed_size", "seed_max_rounds", "eval_n",
                 "micro_batch", "sample_batch"):
        if getattr(cfg, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    if cfg.task_source not in ("proposer", "generator"):
        raise SystemExit(f"--task-source {cfg.task_source!r}: expected proposer or generator")
    if cfg.task_source == "generator" and not (cfg.freeze_proposer or cfg.solver_only):
        raise SystemExit("--task-source generator replaces the proposals, so their rewards say "
                         "nothing about the proposer: pass --freeze-proposer (or --solver-only)")
    if cfg.estimate_advantage not in ("group", "trr"):
        raise SystemExit(f"--estimate-advantage {cfg.estimate_advantage!r}: expected group or trr")
    if cfg.train_on_estimates and cfg.estimate_advantage == "group" and cfg.n_estimate < 2:
        raise SystemExit("--estimate-advantage group needs --n-estimate >= 2 (a group of one "
                         "sample has no baseline); pass --estimate-advantage trr")
    if not 1 <= cfg.min_successes <= cfg.n_estimate:
        raise SystemExit(f"--min-successes must be in [1, --n-estimate={cfg.n_estimate}], "
                         f"got {cfg.min_successes}")
    if cfg.temperature <= 0 or cfg.estimate_temperature <= 0:
        raise SystemExit("--temperature and --estimate-temperature must be > 0 (the solve-rate "
                         "estimate needs sampling; greedy samples would make s 0 or 1)")
    if cfg.train_on_estimates and not cfg.solver_only and \
            cfg.estimate_temperature != cfg.temperature:
        raise SystemExit("--train-on-estimates trains on the estimation samples as on-policy "
                         "solver rollouts, so it needs --estimate-temperature == --temperature; "
                         "pass --no-train-on-estimates to estimate at another temperature")
    if cfg.n_inputs != -1 and cfg.n_inputs < 2:
        raise SystemExit(f"--n-inputs must be >= 2 (half are shown, half held out), got "
                         f"{cfg.n_inputs}")
    return types


# ==============================================================================================
# Sampling helpers
# ==============================================================================================
def sample_grouped(S, prompts: list[str], stops: list[tuple], n: int, temperature: float,
                   max_new_tokens: int) -> list[tuple[M.Rollout, list[int]]]:
    """Sample n responses per prompt, one `model.sample` call per distinct stop list (prompts
    with the same stop strings share batches). Returns [(rollout, prompt indices)] — sample j of
    a rollout answers prompts[indices[j // n]]."""
    out = []
    for stop in dict.fromkeys(stops):
        idx = [i for i, s in enumerate(stops) if s == stop]
        ro = M.sample(S.model, S.tok, [prompts[i] for i in idx], n=n, temperature=temperature,
                      top_p=S.cfg.top_p if temperature == S.cfg.temperature else 1.0,
                      max_new_tokens=max_new_tokens, stop=list(stop),
                      batch_size=S.cfg.sample_batch)
        out.append((ro, idx))
    return out


def flat_texts(chunks, n_prompts: int, n: int) -> list[list[str]]:
    """texts[i] = the n responses to prompt i, from `sample_grouped` chunks."""
    texts = [[] for _ in range(n_prompts)]
    for ro, idx in chunks:
        for j, text in enumerate(ro.texts):
            texts[idx[j // n]].append(text)
    return texts


# ==============================================================================================
# Held-out evaluation: fixed toy tasks of every type, never proposed, greedy decoding
# ==============================================================================================
def generator_pools(cfg: Config, n_inputs: int) -> dict | None:
    """--task-source generator: pools of toy-generator tasks from the TRAIN split (the held-out
    evaluation uses the heldout split, so no evaluation task is ever trained on)."""
    if cfg.task_source != "generator":
        return None
    import toydata

    return {"code": toydata.make_code_tasks(20000, cfg.seed + 7, "train"),
            "induction": toydata.make_induction_tasks(8000, cfg.seed + 7, "train",
                                                      n_inputs=n_inputs)}


def build_eval_sets(n: int, seed: int, n_inputs: int) -> dict[str, list[dict]]:
    """n held-out toy tasks per type (toydata heldout split: programs never in pretraining)."""
    import toydata

    code = toydata.make_code_tasks(n, seed, "heldout")
    ind = toydata.make_induction_tasks(n, seed, "heldout", n_inputs=n_inputs)
    return {"deduction": code, "abduction": code, "induction": ind}


@torch.no_grad()
def evaluate(S) -> tuple[dict, dict[str, list[int]]]:
    """Greedy held-out solver accuracy per type with its binomial standard error, and the mean
    over types (its SE from the per-type SEs): eval/<task>/accuracy, eval/<task>/se,
    eval/accuracy, eval/se. All three types are evaluated whatever --task-types trains.
    Also returns each task's 0/1 correctness per type, for the paired gain (`paired_gain`)."""
    prompts, stops, where = [], [], []
    for t, tasks in S.eval_sets.items():
        for i, task in enumerate(tasks):
            view = induction_view(task) if t == "induction" else task
            prompts.append(solve_prompt(t, view, S.style))
            stops.append(tuple(stop_strings("solve", t, S.style)))
            where.append((t, i))
    chunks = sample_grouped(S, prompts, stops, 1, 0.0, S.r["solve_max_tokens"])
    texts = [x[0] for x in flat_texts(chunks, len(prompts), 1)]
    out, accs, ses, per_task = {}, [], [], {}
    for t, tasks in S.eval_sets.items():
        mine = [j for j, (tt, _) in enumerate(where) if tt == t]
        correct, _ = score_answers(t, tasks, [texts[j] for j in mine], S.style,
                                   S.cfg.exec_timeout)
        per_task[t] = [int(c) for c in correct]
        acc = sum(correct) / len(correct)
        out[f"eval/{t}/accuracy"], out[f"eval/{t}/se"] = acc, std_error(acc, len(correct))
        accs.append(acc)
        ses.append(out[f"eval/{t}/se"])
    out["eval/accuracy"] = sum(accs) / len(accs)
    out["eval/se"] = math.sqrt(sum(s * s for s in ses)) / len(ses)
    return out, per_task


def eval_row(correct: dict[str, list[int]]) -> dict:
    """One line of eval.jsonl: each held-out task's greedy 0/1 correctness per type, as a
    string of digits (task i is character i) — reproduce.py pairs any two evaluations with it
    (task i is task i of `build_eval_sets(eval_n, eval_seed, n_inputs)` in the run's config)."""
    return {"correct": {t: "".join(str(int(c)) for c in v) for t, v in correct.items()}}


def program_ids(eval_sets: dict[str, list[dict]]) -> dict[str, list[int]]:
    """Cluster id of each held-out task: tasks with the same (whitespace-normalised) program share
    one id, across types too (the deduction and abduction sets are the same tasks)."""
    ids: dict[str, int] = {}
    return {t: [ids.setdefault(_norm_code(task["program"]), len(ids)) for task in tasks]
            for t, tasks in eval_sets.items()}


def paired_gain(base: dict[str, list[int]], final: dict[str, list[int]],
                clusters: dict[str, list] | None = None) -> tuple[float, float]:
    """Gain of the mean-over-types accuracy, final - base, measured on the SAME held-out tasks,
    and its paired standard error. Per type t with n_t tasks, d_i = final_i - base_i in {-1,0,1};
    gain = (1/T) sum_t mean(d_t) and SE = (1/T) sqrt(sum_t var(d_t) / n_t), var with ddof=1.
    Tasks both models get right (or both wrong) add no noise, so this SE is smaller than
    sqrt(se_base^2 + se_final^2), which treats the two accuracies as independent samples.

    clusters (from `program_ids`): the SE treats tasks that share a program as one draw, not as
    independent ones — the toy held-out set repeats a few programs with many inputs (2 list
    programs carry 37 of 256 code tasks), and a model that changes its answer to one program
    flips all of them together. Cluster-robust ("sandwich") SE, clusters pooled across types:
    u_c = sum over tasks (t, i) of cluster c of (d_ti - mean(d_t)) / (n_t T),
    SE = sqrt(G / (G - 1) * sum_c u_c^2) with G clusters. With every task its own cluster this is
    the SE above up to its small-sample factor."""
    types = [t for t in base if t in final]
    if not types:
        raise ValueError("paired_gain: no task type evaluated in both")
    gain, var, u = 0.0, 0.0, {}
    for t in types:
        if len(base[t]) != len(final[t]) or len(base[t]) < 2:
            raise ValueError(f"paired_gain: {t}: need the same >= 2 tasks in both evaluations, "
                             f"got {len(base[t])} and {len(final[t])}")
        if clusters is not None and len(clusters.get(t, ())) != len(base[t]):
            raise ValueError(f"paired_gain: {t}: clusters must name one cluster per task")
        d = [f - b for b, f in zip(base[t], final[t])]
        n = len(d)
        m = sum(d) / n
        gain += m
        var += sum((x - m) ** 2 for x in d) / (n - 1) / n
        if clusters is not None:
            for c, x in zip(clusters[t], d):
                u[c] = u.get(c, 0.0) + (x - m) / n / len(types)
    if clusters is None:
        return gain / len(types), math.sqrt(var) / len(types)
    g = len(u)  # one cluster says nothing about the spread between clusters: SE unknown
    se = math.sqrt(g / (g - 1) * sum(v * v for v in u.values())) if g > 1 else float("nan")
    return gain / len(types), se


# ==============================================================================================
# Seeding (AZR section 3.3.1): the untrained model proposes, no updates, until buffers are full
# ==============================================================================================
def propose_and_validate(S, specs: list[tuple[str, list[dict], str | None]], step: int,
                         phase: str):
    """Propose one task per spec (task_type, refs, induction program) and validate it.
    Returns (chunks of the proposer rollouts, per-spec proposal dicts, times)."""
    t0 = time.time()
    prompts, stops = [], []
    for t, refs, prog in specs:
        prompts.append(propose_induction_prompt(prog, S.r["n_inputs"], S.style)
                       if t == "induction" else propose_prompt(t, refs, S.style))
        stops.append(tuple(stop_strings("propose", t, S.style)))
    chunks = sample_grouped(S, prompts, stops, 1, S.cfg.temperature, S.r["propose_max_tokens"])
    texts = [x[0] for x in flat_texts(chunks, len(prompts), 1)]
    t1 = time.time()
    props: list[dict] = [{} for _ in specs]
    for t in dict.fromkeys(s[0] for s in specs):
        mine = [i for i, s in enumerate(specs) if s[0] == t]
        res = validate_proposals(t, [texts[i] for i in mine], [specs[i][2] for i in mine],
                                 S.style, S.r["n_inputs"], S.cfg.exec_timeout)
        for i, p in zip(mine, res):
            p.update(type=t, text=texts[i], step=step, phase=phase)
            p["trivial"] = bool(p["valid"] and is_trivial(t, p, specs[i][1]))
            props[i] = p
    return chunks, props, {"propose": t1 - t0, "validate": time.time() - t1}


def generator_task(pools: dict, task_type: str, step: int, rng: random.Random,
                   text: str | None = None) -> dict:
    """--task-source generator: a valid proposal dict holding a toy-generator task (train split)
    of the given type, drawn uniformly from the pools (not a self-play idea: a control that keeps
    the whole solver pipeline and changes only where its tasks come from)."""
    g = rng.choice(pools["induction" if task_type == "induction" else "code"])
    keys = ("program", "inputs", "outputs", "message") if task_type == "induction" else \
        ("program", "input", "output")
    return {**{k: g[k] for k in keys}, "type": task_type, "valid": True, "reason": "generator",
            "trivial": False, "text": text, "step": step, "phase": "train"}


def task_row(p: dict) -> dict:
    """The tasks.jsonl record of a proposal (every key present; null where not applicable:
    input/output for induction, inputs/outputs/message for deduction and abduction, s when not
    estimated). `text` is the raw proposer response."""
    keys = ("step", "phase", "type", "valid", "reason", "trivial", "program", "input", "output",
            "inputs", "outputs", "message", "s", "successes", "n", "reward", "text")
    return {k: p.get(k) for k in keys}


def seed_buffers(S) -> dict:
    """Fill the buffers from the identity triplet: the untrained model proposes deduction and
    abduction tasks (references drawn from the growing seed set; the identity triplet only while
    it is empty) until the seed set D_seed holds --seed-size valid tasks; D0_ded = D0_abd =
    D_seed. Then induction proposals on seed programs until D0_ind holds --seed-size tasks.
    Raises SystemExit if --seed-max-rounds batches are not enough."""
    cfg, rng = S.cfg, S.rng
    need_ind = "induction" in S.types
    seed, ind, rows, rounds, n_prop, n_valid = [], [], [], 0, 0, 0
    bar = M.progress(None, "seeding", total=cfg.seed_size * (2 if need_ind else 1))
    per_round = max(cfg.batch_size, 8)
    while len(seed) < cfg.seed_size or (need_ind and len(ind) < cfg.seed_size):
        if rounds >= cfg.seed_max_rounds:
            raise SystemExit(
                f"seeding failed: after {rounds} batches ({n_prop} proposals, {n_valid} valid) "
                f"the seed set holds {len(seed)}/{cfg.seed_size} tasks and the induction buffer "
                f"{len(ind)}/{cfg.seed_size if need_ind else 0}. The model rarely writes valid "
                f"tasks in the '{S.style}' format: check --model/--style, or lower --seed-size / "
                f"raise --seed-max-rounds.")
        rounds += 1
        specs = []
        if len(seed) < cfg.seed_size:
            for j in range(per_round):
                t = "deduction" if j % 2 == 0 else "abduction"
                specs.append((t, sample_refs(seed or [identity_triplet()], S.r["k_refs"], rng),
                              None))
        elif need_ind:
            for _ in range(per_round):
                specs.append(("induction", [], rng.choice(seed)["program"]))
        _, props, _ = propose_and_validate(S, specs, 0, "seed")
        for p in props:
            n_prop += 1
            n_valid += p["valid"]
            p["reward"] = None
            rows.append(task_row(p))
            if not p["valid"] or set_aside(cfg, p):
                continue
            if p["type"] == "induction":
                if len(ind) < cfg.seed_size and add_to_buffer(ind, _task(p), 0):
                    bar.update(1)
            elif len(seed) < cfg.seed_size and add_to_buffer(seed, _task(p), 0):
                bar.update(1)
    bar.close()
    S.run.write_samples(0, rows, file="tasks.jsonl")
    S.buffers = {"deduction": [dict(t) for t in seed], "abduction": [dict(t) for t in seed],
                 "induction": ind}
    return {"seed/rounds": rounds, "seed/proposals": n_prop,
            "seed/valid_rate": n_valid / max(1, n_prop)}


def _task(p: dict) -> dict:
    keys = ("program", "inputs", "outputs", "message") if p["type"] == "induction" else \
        ("program", "input", "output")
    return {k: p[k] for k in keys}


# ==============================================================================================
# One self-play step
# ==============================================================================================
@dataclass
class Session:
    """Everything a step needs (kept in one place so the step reads top to bottom)."""
    cfg: Config
    types: list
    style: str
    r: dict           # style-resolved settings (k_refs, n_inputs, token limits, solve batch)
    model: object
    tok: object
    optimizer: object
    pg: object        # rlvr.PGConfig
    run: M.RunDir
    rng: random.Random
    buffers: dict
    eval_sets: dict
    ref_model: object = None  # frozen base for --kl-coef > 0
    generator: dict | None = None  # --task-source generator: toy-generator task pools per kind


def self_play_step(S: Session, step: int) -> tuple[dict, list[dict]]:
    """Propose → validate → estimate → solve → TRR++ → one policy update. Returns (metrics,
    a few sample rows for samples.jsonl); appends every proposal to tasks.jsonl."""
    import rlvr

    cfg, rng, style = S.cfg, S.rng, S.style
    times = {k: 0.0 for k in ("propose", "validate", "estimate", "solve", "update")}
    metrics: dict = {}
    t_step = time.time()

    # ---- 1-2. propose and validate ------------------------------------------------------------
    specs = []
    for t in S.types:
        for _ in range(cfg.batch_size):
            if t == "induction":
                pool = S.buffers["deduction"] + S.buffers["abduction"]
                if pool:
                    specs.append((t, [], rng.choice(pool)["program"]))
            else:
                specs.append((t, sample_refs(S.buffers[t], S.r["k_refs"], rng), None))
    prop_chunks, props, tm = ([], [], {}) if not specs else \
        propose_and_validate(S, specs, step, "train")
    for k, v in tm.items():
        times[k] += v
    if S.generator is not None:  # control: the solver side gets generator tasks instead
        props = [generator_task(S.generator, p["type"], step, rng, p.get("text")) for p in props]

    # ---- 3. estimate the solve rate s of every valid proposal (one batch across types) --------
    t0 = time.time()
    valid = [i for i, p in enumerate(props) if p["valid"]]
    est_chunks, est_rewards = [], [[] for _ in valid]  # est_rewards[j][k]: sample k of valid[j]
    if valid and not cfg.solver_only:
        n = cfg.n_estimate
        prompts = [solve_prompt(props[i]["type"], _solver_view(props[i]), style) for i in valid]
        stops = [tuple(stop_strings("solve", props[i]["type"], style)) for i in valid]
        est_chunks = sample_grouped(S, prompts, stops, n, cfg.estimate_temperature,
                                    S.r["solve_max_tokens"])
        answers = flat_texts(est_chunks, len(valid), n)
        for t in S.types:
            mine = [j for j, i in enumerate(valid) if props[i]["type"] == t]
            if not mine:
                continue
            tasks = [props[valid[j]] for j in mine for _ in range(n)]
            correct, formed = score_answers(t, tasks, [a for j in mine for a in answers[j]],
                                            style, cfg.exec_timeout)
            for q, j in enumerate(mine):
                props[valid[j]]["successes"] = int(sum(correct[q * n:(q + 1) * n]))
                props[valid[j]]["n"] = n
                est_rewards[j] = [solver_reward(c, f) for c, f in
                                  zip(correct[q * n:(q + 1) * n], formed[q * n:(q + 1) * n])]
    for p in props:
        s = None
        if p["valid"] and "successes" in p:
            p["s"] = p["successes"] / p["n"]
            s = effective_solve_rate(p["successes"], p["n"], cfg.min_successes)
        p["reward"] = proposal_reward(p["valid"], s, cfg.proposer_reward, cfg.zero_as,
                                      set_aside(cfg, p))
        p.setdefault("s", None)
    times["estimate"] = time.time() - t0
    for p in props:  # every valid, non-guessable proposal joins its buffer
        if p["valid"] and not set_aside(cfg, p):
            add_to_buffer(S.buffers[p["type"]], _task(p), step, cfg.max_buffer)
    S.run.write_samples(step, [task_row(p) for p in props], file="tasks.jsonl")

    # ---- 4. solve: newest tasks first, then fill from the whole buffer ------------------------
    t0 = time.time()
    solve_tasks = []
    for t in S.types:
        for task in pick_solver_tasks(S.buffers[t], S.r["solve_batch_size"], step, rng):
            solve_tasks.append((t, task))
    solve_chunks, solve_rewards = [], []
    if solve_tasks:
        prompts = [solve_prompt(t, _solver_view({**task, "type": t}), style)
                   for t, task in solve_tasks]
        stops = [tuple(stop_strings("solve", t, style)) for t, _ in solve_tasks]
        solve_chunks = sample_grouped(S, prompts, stops, 1, cfg.temperature,
                                      S.r["solve_max_tokens"])
        texts = [x[0] for x in flat_texts(solve_chunks, len(prompts), 1)]
        solve_rewards = [0.0] * len(solve_tasks)
        for t in S.types:
            mine = [i for i, (tt, _) in enumerate(solve_tasks) if tt == t]
            if not mine:
                continue
            correct, formed = score_answers(t, [solve_tasks[i][1] for i in mine],
                                            [texts[i] for i in mine], style, cfg.exec_timeout)
            for i, c, f in zip(mine, correct, formed):
                solve_rewards[i] = solver_reward(c, f)
            metrics[f"solve/{t}/accuracy"] = sum(correct) / len(mine)
            metrics[f"solve/{t}/format_error_rate"] = 1 - sum(formed) / len(mine)
    times["solve"] = time.time() - t0

    # ---- 5. TRR++ advantages over the six (task, role) groups, one update -----------------------
    t0 = time.time()
    rows = []  # (chunk, row in chunk, group, reward, trained)
    train_proposer = not (cfg.freeze_proposer or cfg.solver_only)
    for ro, idx in prop_chunks:
        for j, i in enumerate(idx):
            rows.append((ro, j, (props[i]["type"], "propose"), props[i]["reward"],
                         train_proposer))
    for ro, idx in solve_chunks:
        for j, i in enumerate(idx):
            rows.append((ro, j, (solve_tasks[i][0], "solve"), solve_rewards[i], True))
    trained_chunks = prop_chunks + solve_chunks
    n_main_rows = len(rows)
    if cfg.train_on_estimates:  # the n estimation samples also train the solver (opt-in)
        for ro, idx in est_chunks:
            for j in range(len(ro.texts)):
                q = idx[j // cfg.n_estimate]
                p = props[valid[q]]
                # set-aside (guessable) tasks train no solver; with --estimate-advantage trr
                # their rewards still enter the group baseline
                rows.append((ro, j, (p["type"], "solve"), est_rewards[q][j % cfg.n_estimate],
                             not set_aside(cfg, p)))
        trained_chunks = trained_chunks + est_chunks
    groups = [r[2] for r in rows]
    if cfg.estimate_advantage == "trr" or n_main_rows == len(rows):
        adv = trr_advantages([r[3] for r in rows], groups) if rows else torch.zeros(0)  # [N]
    else:  # TRR++ over the AZR batch; each task's n estimation samples form a GRPO group
        adv = torch.cat([trr_advantages([r[3] for r in rows[:n_main_rows]],
                                        groups[:n_main_rows]) if n_main_rows else torch.zeros(0),
                         estimate_advantages([r[3] for r in rows[n_main_rows:]],
                                             cfg.n_estimate)])                    # [N]
    experiences, stat = [], {}
    ent_sum, tok_sum, len_sum, n_sum = {}, {}, {}, {}
    start = 0
    n_main = len(prop_chunks) + len(solve_chunks)
    for c, (ro, _) in enumerate(trained_chunks):
        n_rows = len(ro.texts)
        mine = rows[start:start + n_rows]
        a = adv[start:start + n_rows]                                              # [n]
        start += n_rows
        keep = [j for j, r in enumerate(mine) if r[4]]  # frozen proposer rows stay out
        if keep:
            e = rlvr.Experience.from_rollout(ro, a)
            experiences.append(e if len(keep) == n_rows else e.select(torch.tensor(keep)))
        if c >= n_main:  # role metrics describe the AZR batches, not the estimation samples
            continue
        ent = ro.entropy.float() * ro.response_mask  # [n, T] full-vocab, recorded by the sampler
        for j, (_, _, g, _, _) in enumerate(mine):
            ent_sum[g] = ent_sum.get(g, 0.0) + float(ent[j].sum())
            tok_sum[g] = tok_sum.get(g, 0.0) + float(ro.response_mask[j].sum())
            len_sum[g] = len_sum.get(g, 0.0) + float(ro.lengths[j])
            n_sum[g] = n_sum.get(g, 0) + 1
    t_prep = time.time() - t0  # advantages and experience batches
    t0 = time.time()
    # All-zero advantages (every group constant) give a zero policy gradient: skip the update
    # unless an entropy bonus or KL term would still move the policy.
    moves = cfg.entropy_coef or cfg.kl_coef or any(bool((e.advantages != 0).any())
                                                    for e in experiences)
    if experiences and moves:
        stat = rlvr.update_policy(S.model, S.optimizer, experiences, S.pg, S.ref_model)
        S.model.eval()
    times["update"] = time.time() - t0

    # ---- metrics ---------------------------------------------------------------------------------
    for g in dict.fromkeys(groups[:n_main_rows]):
        t, role = g
        rew = [r[3] for r in rows[:n_main_rows] if r[2] == g]
        metrics[f"{role}/{t}/reward_mean"] = sum(rew) / len(rew)
        metrics[f"{role}/{t}/entropy"] = ent_sum[g] / max(tok_sum[g], 1.0)
        metrics[f"{role}/{t}/response_len"] = len_sum[g] / n_sum[g]
    for role in ("propose", "solve"):
        gs = [g for g in tok_sum if g[1] == role]
        if gs:
            metrics[f"{role}/entropy"] = (sum(ent_sum[g] for g in gs)
                                          / max(sum(tok_sum[g] for g in gs), 1.0))
            metrics[f"{role}/response_len"] = (sum(len_sum[g] for g in gs)
                                               / sum(n_sum[g] for g in gs))
    if tok_sum:
        metrics["entropy"] = sum(ent_sum.values()) / max(sum(tok_sum.values()), 1.0)
    for t in S.types:
        mine = [p for p in props if p["type"] == t]
        if mine:
            metrics[f"propose/{t}/valid_rate"] = sum(p["valid"] for p in mine) / len(mine)
            metrics[f"propose/{t}/trivial_rate"] = sum(p["trivial"] for p in mine) / len(mine)
            for p in mine:
                if not p["valid"]:
                    key = f"propose/{t}/reject/{p['reason']}"
                    metrics[key] = metrics.get(key, 0) + 1
            est = [p for p in mine if p.get("successes") is not None]
            if est:
                hist = [0] * (cfg.n_estimate + 1)
                for p in est:
                    hist[p["successes"]] += 1
                metrics[f"propose/{t}/s_hist"] = hist
                metrics[f"propose/{t}/s_mean"] = sum(p["s"] for p in est) / len(est)
                metrics[f"propose/{t}/learnable_rate"] = sum(
                    0 < p["successes"] < p["n"] for p in est) / len(est)
        metrics[f"buffer/{t}"] = len(S.buffers[t])
    if props:
        metrics["propose/valid_rate"] = sum(p["valid"] for p in props) / len(props)
    metrics.update({f"update/{k}": float(v) for k, v in (stat or {}).items()
                    if isinstance(v, (int, float)) or torch.is_tensor(v)})
    metrics["update/skipped"] = int(not stat)
    metrics.update({f"time/{k}": v for k, v in times.items()})
    metrics["time/prepare"] = t_prep
    metrics["time/step"] = time.time() - t_step

    samples = []
    for t in S.types:
        p = next((p for p in props if p["type"] == t), None)
        if p is not None:
            samples.append({"role": "propose", "type": t, "text": p["text"],
                            "valid": p["valid"], "reason": p["reason"], "reward": p["reward"]})
        i = next((i for i, (tt, _) in enumerate(solve_tasks) if tt == t), None)
        if i is not None:
            ro, idx = next((c for c in solve_chunks if i in c[1]))
            samples.append({"role": "solve", "type": t, "text": ro.texts[idx.index(i)],
                            "reward": solve_rewards[i]})
    return metrics, samples


def _solver_view(p: dict) -> dict:
    return induction_view(p) if p["type"] == "induction" else p


# ==============================================================================================
# Main
# ==============================================================================================
def main(cfg: Config, buffers: dict | None = None) -> dict:
    """Run self-play. `buffers` (tests) replaces seeding with the given buffers. Returns a
    summary: base and final held-out accuracy, steps, minutes, valid-rate range."""
    import rlvr

    types = check_config(cfg)
    t_start = time.time()
    M.seed_everything(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run = M.RunDir(cfg.out)
    run.claim(cfg.resume, logs=("metrics.jsonl", "samples.jsonl", "tasks.jsonl", "eval.jsonl"))
    model_path = M.resolve_model(cfg.model)
    model, tok = M.load_policy(model_path, cfg.device, cfg.dtype)
    style = prompt_style_for(cfg, tok)
    r = _resolved(cfg, style)
    M.say(f"[selfplay] {model_path} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M "
          f"params, {style} prompts, {model.device}) → {run.path} | {cfg.steps} steps: "
          f"{cfg.batch_size} proposals and {r['solve_batch_size']} solver tasks per type "
          f"({', '.join(types)}), {cfg.n_estimate} samples to estimate each solve rate")
    if cfg.grad_checkpointing:  # recompute activations in the backward pass: memory for time
        M.enable_grad_checkpointing(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    # the PGConfig fields our Config shares (clip, loss_agg, ...); --loss-agg constant divides
    # by the generation budget, the larger of the two roles' (Dr. GRPO's constant)
    pg = dataclasses.replace(rlvr.pg_config(cfg), constant_len=max(r["propose_max_tokens"],
                                                                   r["solve_max_tokens"]))
    ref_model = M.load_policy(model_path, cfg.device, cfg.dtype)[0] if cfg.kl_coef else None
    S = Session(cfg=cfg, types=types, style=style, r=r, model=model, tok=tok,
                optimizer=optimizer, pg=pg, run=run, rng=random.Random(cfg.seed), buffers={},
                eval_sets=build_eval_sets(cfg.eval_n, cfg.eval_seed, r["n_inputs"]),
                ref_model=ref_model, generator=generator_pools(cfg, r["n_inputs"]))
    start, history = 0, {}
    if cfg.resume and run.latest_checkpoint() is not None:
        start, extra = run.resume(model, optimizer)
        run.truncate_log("tasks.jsonl", start)
        run.truncate_log("eval.jsonl", start)
        S.buffers = extra["buffers"]
        S.rng.setstate(_tuple_state(extra["rng"]))
        history = extra.get("history", {})
        M.say(f"[selfplay] resumed {cfg.out} at step {start}")
    else:
        if cfg.resume:
            print(f"[selfplay] --resume: no checkpoint in {cfg.out}, starting fresh", flush=True)
        run.write_config({**dataclasses.asdict(cfg), "model": model_path,
                          "script": "selfplay.py", "resolved": {"style": style, **r},
                          "task_types_list": types})
        t0 = time.time()
        if buffers is not None:
            S.buffers = {t: [{"step": 0, **x} for x in buffers.get(t, [])] for t in TASK_TYPES}
            seed_m = {}
        else:
            seed_m = seed_buffers(S)
        seed_m["time/seed"] = time.time() - t0
        t0 = time.time()
        base, base_correct = evaluate(S)
        seed_m.update(base, **{"time/eval": time.time() - t0},
                      **{f"buffer/{t}": len(S.buffers[t]) for t in TASK_TYPES})
        run.log(0, seed_m)
        run.log(0, eval_row(base_correct), file="eval.jsonl")
        history = {"base": base, "base_correct": base_correct, "valid_rates": []}
        M.say(f"[selfplay] base held-out accuracy (greedy) {_fmt_eval(base)}")

    step, last_eval, last_correct = start, None, None
    for step in M.progress(range(start + 1, cfg.steps + 1), "self-play", initial=start,
                           total=cfg.steps):
        M.reset_peak_memory(model.device)
        with M.oom_advice("selfplay", "--micro-batch (the update's gradient stays the same), "
                                      "--sample-batch (sampling) or --grad-checkpointing"):
            m, samples = self_play_step(S, step)
        if (cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.steps:
            t0 = time.time()
            last_eval, last_correct = evaluate(S)
            m.update(last_eval, **{"time/eval": time.time() - t0})
            run.log(step, eval_row(last_correct), file="eval.jsonl")
        m.update(M.memory_stats(model.device))
        run.log(step, m)
        run.write_samples(step, samples)
        if "propose/valid_rate" in m:
            history.setdefault("valid_rates", []).append(m["propose/valid_rate"])
        M.say(step_line(m, step, cfg.steps, S.types))
        if (cfg.save_every and step % cfg.save_every == 0) or step == cfg.steps:
            save(S, step, history)
    if last_eval is None and step > start:  # defensive: the loop always evaluates its last step
        last_eval, last_correct = evaluate(S)
    minutes = (time.time() - t_start) / 60
    vr = history.get("valid_rates", [])
    base = history.get("base") or {}
    summary = {"steps": step, "minutes": minutes, "base": base, "final": last_eval,
               "valid_rate_min": min(vr) if vr else None,
               "valid_rate_mean": _mean(vr) if vr else None}
    if base and last_eval:  # final - base, with the SE of a difference of independent estimates
        summary["gain"] = last_eval["eval/accuracy"] - base["eval/accuracy"]
        summary["gain_se"] = math.hypot(last_eval["eval/se"], base["eval/se"])
    if history.get("base_correct") and last_correct and cfg.eval_n >= 2:
        # same tasks both times: the paired SE, and the one that counts a program once
        summary["gain_paired_se"] = paired_gain(history["base_correct"], last_correct)[1]
        summary["gain_cluster_se"] = paired_gain(history["base_correct"], last_correct,
                                                 program_ids(S.eval_sets))[1]
    (run.path / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if last_eval:
        M.say(f"[selfplay] done: {step} steps in {minutes:.1f} min | held-out accuracy (greedy) "
              f"base {_fmt_eval(history.get('base') or {})} → final {_fmt_eval(last_eval)} | "
              f"gain {summary.get('gain', float('nan')):+.3f} ± "
              f"{_nan(summary.get('gain_cluster_se')):.3f} (SE clustered by program) | "
              f"valid-proposal rate min {_num(summary['valid_rate_min'])} mean "
              f"{_num(summary['valid_rate_mean'])}")
    M.say(f"[selfplay] run folder {run.path} (metrics.jsonl, tasks.jsonl, eval.jsonl, "
          f"checkpoints/). Next: python analyze.py --runs {run.path}")
    return summary


def step_line(m: dict, step: int, steps: int, types: list) -> str:
    """The console line of one step: valid-proposal rate, mean solve rate s of the valid
    proposals, the solver's accuracy on its own tasks per type, entropy per role, seconds."""
    short = {"deduction": "ded", "abduction": "abd", "induction": "ind"}
    s = [m[f"propose/{t}/s_mean"] for t in types if f"propose/{t}/s_mean" in m]
    acc = " ".join(f"{short[t]} {m[f'solve/{t}/accuracy']:.2f}" for t in types
                   if f"solve/{t}/accuracy" in m)
    line = (f"step {step:>{len(str(steps))}}/{steps} | valid {_num(m.get('propose/valid_rate'))}"
            f" | s {_num(_mean(s) if s else None)} | solve {acc or '-'} | H propose "
            f"{_num(m.get('propose/entropy'), 3)} solve {_num(m.get('solve/entropy'), 3)} | "
            f"{m['time/step']:.1f}s")
    if "eval/accuracy" in m:
        line += f" | held-out {m['eval/accuracy']:.3f} ± {m['eval/se']:.3f}"
    return line


def prompt_style_for(cfg: Config, tok) -> str:
    return M.prompt_style(tok) if cfg.style == "auto" else cfg.style


def save(S: Session, step: int, history: dict) -> None:
    S.run.save_checkpoint(step, S.model, S.tok, S.optimizer,
                          extra={"buffers": S.buffers, "rng": S.rng.getstate(),
                                 "history": history})


def _tuple_state(state):
    """random.Random state back from a (possibly list-converted) saved form."""
    if isinstance(state, list):
        return tuple(tuple(x) if isinstance(x, list) else x for x in state)
    return state


def _nan(x) -> float:
    return float("nan") if x is None else x


def _num(x, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs) if xs else float("nan")


def _fmt_eval(e: dict) -> str:
    if not e:
        return "-"
    parts = [f"{t} {e[f'eval/{t}/accuracy']:.3f}±{e[f'eval/{t}/se']:.3f}" for t in TASK_TYPES
             if f"eval/{t}/accuracy" in e]
    return f"{e['eval/accuracy']:.3f}±{e['eval/se']:.3f} ({', '.join(parts)})"


def parse_args(argv=None) -> Config:
    return M.parse_config(Config, argv, description=__doc__.split("\n\n")[0])


if __name__ == "__main__":
    main(parse_args())
