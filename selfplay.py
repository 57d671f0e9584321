"""selfplay.py — the Absolute Zero Reasoner loop (Zhao et al. 2025, arXiv 2505.03335), as studied
by Chae et al. 2025 (arXiv 2510.27072). One model plays two roles on three kinds of code task; a
Python executor (verifier.py) is the only source of truth:
  deduction  propose a program + input, the executor computes the output; solve: predict the output
  abduction  propose a program + input; solve: give any input that makes f return the output
  induction  given a program from the buffers, propose N inputs + a message; solve: write f from
             the first half of the I/O pairs + the message, judged on the second half
One step (AZR section 3.3, Algorithm 1): propose → validate → estimate the solve rate s of each
valid proposal with n solver samples → solve tasks from the buffers → TRR++ advantages in the six
(task type, role) groups → one policy update.

    python selfplay.py                                  # toy base, CPU, all three task types
    python selfplay.py --freeze-proposer                # Chae et al.'s frozen-proposer ablation
    python selfplay.py --proposer-reward peak50         # the R-Zero-style reward (Chae et al. RQ5)
    python selfplay.py --task-types deduction --k-refs 0    # AZR Table 2 ablations
    python selfplay.py --model Qwen/Qwen2.5-Coder-0.5B  # a real model: the AZR preset

Presets (printed at the start; every flag overrides): "azr" for real models follows AZR's Table 3,
scaled down where one machine forces it (--batch-size, the token caps); "toy" for the toy base
deviates where the toy world needs it:
  * --loss-agg seq_mean (AZR: token_mean): toy answers are ~5-15 characters and proposals ~100-170,
    so a token mean would hand ~97% of the gradient to the proposer.
  * --solve-batch-size 16 and --train-on-estimates (AZR: batch size, off): the n estimation samples
    of each new task are on-policy solver rollouts already paid for; they also train the solver,
    each task's n forming a GRPO group (`estimate_advantages`), because the toy solver succeeds
    ~10% of the time and one rollout per task gives about one positive sample per group.
  * --trivial-zero (AZR: off): a guessable task (output = input, or a copy of a reference) stays
    valid but gets role reward 0, no buffer slot, and trains no solver.
  * --k-refs 2, --n-inputs 6 (AZR: 6, 10): what the toy base was pretrained on; --lr 1e-4 (AZR
    1e-6); --exec-timeout 2 (AZR: 10 s).
Always, deliberately: TRR++ statistics per sequence, as the paper's formula (the AZR code whitens
per token); buffers drop exact duplicates; the solver trains on this step's proposals first
(AZR builds that batch before they join: the same rule, one step fresher); seeding shows the
identity triplet only while the seed set is empty.
Left out on purpose: AZR's error-deduction task and intrinsic rewards (its appendix D: they did
not help), comment stripping of seed programs, veRL's distributed machinery.
"""
from __future__ import annotations

import dataclasses
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import torch

import model as M
import rlvr
import tasks as T
import verifier

PROPOSER_REWARDS = ("learnability", "peak50", "peak25")


# ---- Rewards and TRR++ (pure functions, tested on hand-computed values) --------------------------
def solver_reward(correct: bool, well_formed: bool) -> float:
    """Solver reward with AZR's format penalty (Eq. 6 around Eq. 5): 1 if correct, -0.5 for a
    well-formed wrong answer, -1 for a format error."""
    return -1.0 if not well_formed else (1.0 if correct else -0.5)


def proposer_reward(s: float, kind: str = "learnability") -> float:
    """The proposer's role reward from the solve rate s of its task (mean success of n solver
    samples); 0 at s in {0, 1}, an impossible or trivial task:
      learnability  1 - s            AZR Eq. 4 (largest for tasks solved rarely but not never)
      peak50        1 - 2|s - 0.5|   the R-Zero-style reward of Chae et al. RQ5
      peak25        4s up to s = 1/4, then (4/3)(1 - s)"""
    if not 0.0 <= s <= 1.0:
        raise ValueError(f"solve rate s must be in [0, 1], got {s}")
    if kind not in PROPOSER_REWARDS:
        raise ValueError(f"unknown proposer reward {kind!r}: expected one of {PROPOSER_REWARDS}")
    if s <= 0.0 or s >= 1.0:
        return 0.0
    if kind == "learnability":
        return 1.0 - s
    if kind == "peak50":
        return 1.0 - 2.0 * abs(s - 0.5)
    return 4.0 * s if s <= 0.25 else (4.0 / 3.0) * (1.0 - s)


def proposal_reward(valid: bool, s: float | None, kind: str = "learnability",
                    trivial: bool = False) -> float:
    """The proposer's composite reward (AZR Eq. 6 applied to the proposer): -1 for a proposal
    that is no valid task (format, safety, run or determinism failure); for a valid one its role
    reward `proposer_reward(s)`, 0 for a guessable task (--trivial-zero)."""
    if not valid:
        return -1.0
    return 0.0 if trivial or s is None else proposer_reward(s, kind)


def trr_advantages(rewards, groups: list, eps: float = 1e-6) -> torch.Tensor:
    """Task-Relative REINFORCE++ advantages (AZR section 3.3.5, Eq. 8): A = (r - mean_g) /
    (std_g + eps), mean and population std over the samples of each group g = (task type, role)
    in the batch: six baselines instead of one. A group of equal rewards (or of one sample) gets
    zero advantages. rewards: [N]; groups: N keys. Returns [N].
    Deviation from the AZR code: veRL's REINFORCE++ whitens per TOKEN over the group's response
    tokens (long responses weigh more); here, as in the paper's formula, each sequence counts
    once and its advantage is broadcast to its tokens by the loss."""
    r = torch.as_tensor(rewards, dtype=torch.float32).flatten()               # [N]
    if r.numel() != len(groups):
        raise ValueError(f"{r.numel()} rewards but {len(groups)} group labels")
    adv = torch.zeros_like(r)                                                   # [N]
    for g in dict.fromkeys(groups):
        idx = torch.tensor([i for i, gi in enumerate(groups) if gi == g])      # [n_g]
        x = r[idx]                                                              # [n_g]
        std = x.std(unbiased=False) if x.numel() > 1 else x.new_zeros(())
        if float(std) > 1e-8:
            adv[idx] = (x - x.mean()) / (std + eps)
    return adv


def estimate_advantages(rewards, n: int) -> torch.Tensor:
    """Advantages of the estimation samples when they train the solver (--train-on-estimates,
    not AZR): the n samples that estimated one task's s form a GRPO group (rlvr.group_advantages,
    scale "group"). A task solved 0 or n times gives no gradient, even when its wrong answers mix
    format errors (-1) with well-formed ones (-0.5). rewards: [N], task by task. Returns [N]."""
    r = torch.as_tensor(rewards, dtype=torch.float32).flatten()               # [N]
    if not r.numel():
        return r
    solved = (r == 1.0).view(-1, n)                                            # [B, n]
    mixed = (solved.any(-1) & ~solved.all(-1)).float()                         # [B]
    return rlvr.group_advantages(r, n, "group") * mixed.repeat_interleave(n)   # [N]


# ---- Task buffers: a list per task type; an entry is a task dict + "step" (the step it joined) ---
def identity_triplet() -> dict:
    """AZR's zero triplet (paper Fig. 5), in the indented form the toy base was pretrained on."""
    return {"program": "def f(x):\n    return x", "input": "'Hello World'",
            "output": "'Hello World'", "step": 0}


def task_key(task: dict) -> tuple:
    """Identity of a task for de-duplication: normalised program + its input(s)."""
    return T.norm_code(task["program"]), tuple(task["inputs"]) if "inputs" in task else task["input"]


def add_to_buffer(buffer: list[dict], task: dict, step: int) -> bool:
    """Append a valid task (stamped with `step`) unless the same (program, input) is there."""
    if any(task_key(t) == task_key(task) for t in buffer):
        return False
    buffer.append({**task, "step": step})
    return True


def sample_refs(buffer: list[dict], k: int, rng: random.Random) -> list[dict]:
    """K references drawn uniformly without replacement (AZR section 3.2: uniform, because
    recency weighting collapsed)."""
    return rng.sample(buffer, min(k, len(buffer))) if k > 0 and buffer else []


def pick_solver_tasks(buffer: list[dict], n: int, step: int, rng: random.Random) -> list[dict]:
    """The solver batch (AZR pred_data_mix_strategy "max_new"): the tasks that joined at `step`
    first, then filled uniformly without replacement from the rest; with replacement only when
    the buffer holds fewer than n."""
    if not buffer or n <= 0:
        return []
    new = [t for t in buffer if t["step"] == step]
    old = [t for t in buffer if t["step"] != step]
    picked = rng.sample(new, n) if len(new) > n else list(new)
    picked += rng.sample(old, min(n - len(picked), len(old)))
    return picked + [rng.choice(buffer) for _ in range(n - len(picked))]


def is_trivial(task_type: str, task: dict, refs: list[dict]) -> bool:
    """A task answerable without reasoning: the output equals the input (deduction, abduction),
    every output equals its input (induction), or the program copies a reference."""
    if task_type == "induction":
        return all(T.same_value(i, o) for i, o in zip(task["inputs"], task["outputs"]))
    return T.same_value(task["input"], task["output"]) or any(
        T.norm_code(r["program"]) == T.norm_code(task["program"]) for r in refs)


def as_task(p: dict) -> dict:
    keys = ("program", "inputs", "outputs", "message") if p["type"] == "induction" else \
        ("program", "input", "output")
    return {k: p[k] for k in keys}


# ---- Settings ------------------------------------------------------------------------------------
@dataclass
class Config(rlvr.PG):
    """self-play (AZR)"""
    out: str = "runs/selfplay"     # run folder: config.json, metrics.jsonl, tasks.jsonl, eval.jsonl, checkpoints/
    task_types: str = "deduction,abduction,induction"  # a comma-separated subset (AZR Table 2 ablations)
    steps: int = 30                # self-play steps, one optimizer step each
    save_every: int = 10           # checkpoint every N steps (and at the end)
    batch_size: int | None = None  # proposals per task type per step (AZR: 64; azr preset 16, one GPU)
    solve_batch_size: int | None = None  # solver tasks per task type per step (AZR: = --batch-size)
    k_refs: int | None = None      # references in each proposer prompt (AZR K = 6; 0 = AZR's "without references")
    n_inputs: int | None = None    # induction inputs per proposal, half shown, half held out (AZR N = 10)
    seed_size: int = 16            # tasks in each buffer after seeding (AZR: 4 x batch size)
    seed_tasks: str = ""           # JSONL of tasks that seed the buffers instead of the model's proposals (see seed_buffers)
    n_estimate: int = 8            # solver samples that estimate a proposal's solve rate s (AZR: 8)
    propose_max_tokens: int | None = None  # length cap of a proposal
    solve_max_tokens: int | None = None    # length cap of a solver answer
    proposer_reward: str = "learnability"  # learnability (AZR Eq. 4) | peak50 (Chae et al. RQ5) | peak25
    freeze_proposer: bool = False  # Chae et al.'s ablation: proposals still made and scored, but get no gradient
    trivial_zero: bool | None = None  # guessable tasks get role reward 0, no buffer slot, no solver training
    train_on_estimates: bool | None = None  # the n estimation samples also train the solver (not AZR)
    exec_timeout: float | None = None  # wall seconds per sandboxed execution (AZR: 10)
    eval_every: int = 10           # held-out evaluation every N steps, and at the start and the end (0: only those)
    eval_n: int = 256              # held-out problems per set, greedy
    eval: list[str] = field(default_factory=list)  # held-out benchmarks as name=path (crux*: CRUXEval, humaneval, else math); default: toy code tasks


PRESETS = {
    "toy": {"lr": 1e-4, "loss_agg": "seq_mean", "batch_size": 8, "solve_batch_size": 16,
            "micro_batch": 16, "entropy_coef": 0.0, "k_refs": 2, "n_inputs": 6,
            "propose_max_tokens": 224, "solve_max_tokens": 160, "trivial_zero": True,
            "train_on_estimates": True, "exec_timeout": 2.0},
    "azr": {"lr": 1e-6, "loss_agg": "token_mean", "batch_size": 16, "solve_batch_size": 0,
            "entropy_coef": 0.001, "k_refs": 6, "n_inputs": 10, "propose_max_tokens": 1024,
            "solve_max_tokens": 1024, "trivial_zero": False, "train_on_estimates": False,
            "exec_timeout": 10.0},
}


def check_config(cfg: Config) -> list[str]:
    """Bad settings → an exit naming the flag; returns the task types."""
    types = [t.strip() for t in cfg.task_types.split(",") if t.strip()]
    M.check(bool(types) and all(t in T.TASK_TYPES for t in types), f"--task-types "
            f"{cfg.task_types!r}: expected a comma-separated subset of {', '.join(T.TASK_TYPES)}")
    M.check(cfg.proposer_reward in PROPOSER_REWARDS, f"--proposer-reward {cfg.proposer_reward!r}:"
                                                     f" expected one of {', '.join(PROPOSER_REWARDS)}")
    for name in ("steps", "n_estimate", "seed_size"):
        M.check(getattr(cfg, name) >= 1, f"--{name.replace('_', '-')} must be >= 1")
    M.check_eval(cfg)
    M.check(cfg.n_inputs is None or cfg.n_inputs >= 2, "--n-inputs must be >= 2 (half are shown)")
    return types


# ---- Propose, validate, estimate, solve ----------------------------------------------------------
@dataclass
class Session:
    """What every step needs, in one place."""
    cfg: Config
    types: list
    style: str
    model: object
    tok: object
    optimizer: object
    run: M.RunDir
    rng: random.Random
    buffers: dict
    eval_sets: dict
    ref_model: object = None


@dataclass
class Part:
    """Sampled responses of one role, with what the update needs of each row."""
    ro: M.Rollout
    groups: list          # (task type, role) of each row: the TRR++ groups
    rewards: list         # the row's reward (Eq. 6)
    train: list           # whether the row takes part in the update


def sample_grouped(S: Session, role: str, types: list[str], prompts: list[str],
                   n: int) -> tuple[list, list[list[str]]]:
    """n samples of `role` per prompt (prompts[i] of task type types[i]), one `M.sample` call per
    stop strings. Returns ([(rollout, prompt indices)], texts[i]: the n answers to prompt i)."""
    cfg, stops = S.cfg, [tuple(T.stop_strings(role, t, S.style)) for t in types]
    max_new_tokens = cfg.propose_max_tokens if role == "propose" else cfg.solve_max_tokens
    chunks, texts = [], [[] for _ in prompts]
    for stop in dict.fromkeys(stops):
        idx = [i for i, s in enumerate(stops) if s == stop]
        ro = M.sample(S.model, S.tok, [prompts[i] for i in idx], n=n, temperature=cfg.temperature,
                      max_new_tokens=max_new_tokens, stop=list(stop), batch_size=cfg.sample_batch)
        chunks.append((ro, idx))
        for j, text in enumerate(ro.texts):
            texts[idx[j // n]].append(text)
    return chunks, texts


def parts_of(chunks: list, types: list[str], rewards: list, role: str, train: list) -> list[Part]:
    """The rollouts of `sample_grouped` as Parts: sample j answers prompt i = idx[j // n], of task
    type types[i], with reward rewards[i][j % n]; it trains if train[i]."""
    parts = []
    for ro, idx in chunks:
        n = len(ro.texts) // len(idx)
        q = [idx[j // n] for j in range(len(ro.texts))]                 # the prompt of sample j
        r = [rewards[i][j % n] for j, i in enumerate(q)]
        parts.append(Part(ro, [(types[i], role) for i in q], r, [train[i] for i in q]))
    return parts


def reject_reason(error: str | None) -> str:
    """A short counter key of a verifier error: its kind ("syntax", "banned", "timeout",
    "nondeterministic", ...), with the class for run-time errors ("exception:NameError")."""
    parts = [x.strip() for x in str(error or "error").split(":")]
    if parts[0] == "exception" and len(parts) > 1 and parts[1]:
        return f"exception:{parts[1].split()[0][:40]}"
    return parts[0][:40] or "error"


def run_tasks(tasks: list[dict], timeout: float) -> list:
    """Runs each task's program on its "input" (or "inputs") in one sandbox batch (AZR section
    3.2) and sets "valid", "reason" and "output" (or "outputs", not all equal: a constant function
    teaches nothing). Returns each task's first failed run, or None."""
    jobs = [[(t["program"], i) for i in t.get("inputs") or [t["input"]]] for t in tasks]
    results = iter(verifier.validate_many([j for js in jobs for j in js], timeout) if tasks else [])
    failed = []
    for t, js in zip(tasks, jobs):
        res = [next(results) for _ in js]
        failed.append(next((r for r in res if not r.ok), None))
        if failed[-1] is not None:
            t.update(valid=False, reason=reject_reason(failed[-1].error))
        elif "inputs" not in t:
            t.update(valid=True, reason="ok", output=res[0].value)
        else:
            t.update(valid=len({r.value for r in res}) > 1, outputs=[r.value for r in res])
            t["reason"] = "ok" if t["valid"] else "outputs_identical"
    return failed


def validate(task_type: str, texts: list[str], programs: list, style: str, n_inputs: int,
             timeout: float) -> list[dict]:
    """Proposer responses → task dicts with "valid" and "reason": a parsed program + input, or
    n_inputs inputs + a message for the given program (induction), run by `run_tasks`."""
    out = []
    for text, program in zip(texts, programs):
        if task_type == "induction":
            parsed = T.parse_induction_proposal(text, style, n_inputs)
            p = {"program": program}
            if not isinstance(parsed, str):
                p.update(inputs=parsed[0], message=parsed[1])
        else:
            parsed = T.parse_proposal(text, style)
            p = {} if isinstance(parsed, str) else {"program": parsed[0], "input": parsed[1]}
        if isinstance(parsed, str):
            p.update(valid=False, reason=parsed)
        out.append(p)
    run_tasks([p for p in out if "valid" not in p], timeout)
    return out


def propose(S: Session, specs: list[tuple], step: int, phase: str):
    """One validated proposal per spec (task type, references, induction program). Returns (the
    proposer rollouts, the proposal dicts)."""
    cfg, types = S.cfg, [t for t, _, _ in specs]
    prompts = [T.propose_induction_prompt(prog, cfg.n_inputs, S.style) if t == "induction"
               else T.propose_prompt(t, refs, S.style) for t, refs, prog in specs]
    chunks, texts = sample_grouped(S, "propose", types, prompts, 1)
    props = [{} for _ in specs]
    for t in dict.fromkeys(types):
        mine = [i for i, s in enumerate(specs) if s[0] == t]
        res = validate(t, [texts[i][0] for i in mine], [specs[i][2] for i in mine], S.style,
                       cfg.n_inputs, cfg.exec_timeout)
        for i, p in zip(mine, res):
            p.update(type=t, text=texts[i][0], step=step, phase=phase, s=None, successes=None)
            p["trivial"] = bool(p["valid"] and is_trivial(t, p, specs[i][1]))
            p["set_aside"] = bool(cfg.trivial_zero and p["trivial"])
            props[i] = p
    return chunks, props


def attempt(S: Session, tasks: list[tuple], n: int):
    """n solver samples for each (task type, task), scored (one `T.score` call per type). Returns
    (the rollouts, texts[i] and rewards[i]: the n answers to tasks[i] and their Eq. 6 rewards)."""
    prompts = [T.solve_prompt(t, T.solver_view(t, task), S.style) for t, task in tasks]
    chunks, texts = sample_grouped(S, "solve", [t for t, _ in tasks], prompts, n)
    rewards = [None] * len(tasks)
    for t in S.types:
        mine = [i for i, (tt, _) in enumerate(tasks) if tt == t]
        if mine:
            ok, formed = T.score(t, [tasks[i][1] for i in mine for _ in range(n)],
                                 [a for i in mine for a in texts[i]], S.style, S.cfg.exec_timeout)
            r = [solver_reward(c, f) for c, f in zip(ok, formed)]
            for q, i in enumerate(mine):
                rewards[i] = r[q * n:(q + 1) * n]
    return chunks, texts, rewards


def estimate(S: Session, props: list[dict]) -> list[Part]:
    """The solve rate s of each valid proposal from n solver samples, and from it the proposer's
    reward. Returns the samples as solver Parts (a set-aside task's never train)."""
    n, valid = S.cfg.n_estimate, [p for p in props if p["valid"]]
    chunks, _, est = attempt(S, [(p["type"], p) for p in valid], n)
    for p, r in zip(valid, est):
        p.update(successes=r.count(1.0), n=n)  # reward 1: correct (Eq. 6)
        p["s"] = p["successes"] / n
    for p in props:
        p["reward"] = proposal_reward(p["valid"], p["s"], S.cfg.proposer_reward, p["set_aside"])
    return parts_of(chunks, [p["type"] for p in valid], est, "solve",
                    [not p["set_aside"] for p in valid])


def solve(S: Session, step: int):
    """One solver sample for each of --solve-batch-size buffer tasks per type (this step's
    proposals first). Returns (the solver Parts, one {type, text, reward} per task, metrics)."""
    tasks = [(t, task) for t in S.types
             for task in pick_solver_tasks(S.buffers[t], S.cfg.solve_batch_size, step, S.rng)]
    chunks, texts, rewards = attempt(S, tasks, 1)
    answers = [{"type": t, "text": x[0], "reward": r[0]}
               for (t, _), x, r in zip(tasks, texts, rewards)]
    metrics = {}
    for t in S.types:
        r = [a["reward"] for a in answers if a["type"] == t]
        if r:  # Eq. 6: 1 correct, -1 a format error
            metrics[f"solve/{t}/accuracy"] = r.count(1.0) / len(r)
            metrics[f"solve/{t}/format_error_rate"] = 1 - (len(r) - r.count(-1.0)) / len(r)
    parts = parts_of(chunks, [t for t, _ in tasks], rewards, "solve", [True] * len(tasks))
    return parts, answers, metrics


def seed_from_file(S: Session, path: str) -> tuple[list, list]:
    """--seed-tasks: rows {program, input} (or CRUXEval's {code, input}) seed D_ded = D_abd, rows
    {program, inputs, message} D_ind, validated as proposals; a bad row exits naming its line."""
    seed, ind, tasks = [], [], []
    for line, row in M.read_jsonl(path, "--seed-tasks ", numbered=True):
        prog, inputs = row.get("program") or row.get("code"), row.get("inputs")
        M.check(isinstance(prog, str) and ("input" in row or inputs and "message" in row),
                f"--seed-tasks {path}, line {line}: expected program + input (or program + "
                f"inputs + message)")
        task = {"type": "induction" if inputs else "deduction", "program": prog, "line": line}
        task.update({"inputs": [str(i) for i in inputs], "message": row["message"]} if inputs
                    else {"input": str(row["input"])})
        tasks.append(task)
    for task, bad in zip(tasks, run_tasks(tasks, S.cfg.exec_timeout)):  # one sandbox batch
        where = f"--seed-tasks {path}, line {task.pop('line')}"
        M.check(bad is None, f"{where}: not a valid task ({bad.error if bad else ''})")
        M.check(task["valid"], f"{where}: all outputs are equal (a constant function teaches "
                               f"nothing)")
        add_to_buffer(ind if "inputs" in task else seed, as_task(task), 0)
    return seed, ind


def seed_buffers(S: Session) -> dict:
    """AZR section 3.3.1: after the --seed-tasks, the untrained model proposes deduction and
    abduction tasks (references from the growing seed set, the identity triplet while it is
    empty) until D0_ded = D0_abd = D_seed holds --seed-size, then induction tasks on seed
    programs until D0_ind does; after 40 rounds, an exit that counts the rejections."""
    t0, cfg, rng = time.time(), S.cfg, S.rng
    seed, ind = seed_from_file(S, cfg.seed_tasks) if cfg.seed_tasks else ([], [])
    need_seed = 1 if cfg.seed_tasks else cfg.seed_size  # a file's tasks are all the seed set
    need_ind = 0 if "induction" not in S.types else 1 if ind else cfg.seed_size
    rows, rounds, n = [], 0, max(cfg.batch_size, 8)
    bar = M.progress(None, "seeding", total=need_seed + need_ind)
    while (len(seed) < need_seed or len(ind) < need_ind) and rounds < 40:
        rounds += 1
        if len(seed) < need_seed:
            specs = [("deduction" if j % 2 == 0 else "abduction",
                      sample_refs(seed or [identity_triplet()], cfg.k_refs, rng), None)
                     for j in range(n)]
        else:
            specs = [("induction", [], rng.choice(seed)["program"]) for _ in range(n)]
        for p in propose(S, specs, 0, "seed")[1]:
            rows.append(task_row({**p, "reward": None}))
            target, limit = (ind, need_ind) if p["type"] == "induction" else (seed, need_seed)
            if p["valid"] and not p["set_aside"] and len(target) < limit and \
                    add_to_buffer(target, as_task(p), 0):
                bar.update(1)
    bar.close()
    S.run.log(0, rows, "tasks.jsonl")
    if len(seed) < need_seed or len(ind) < need_ind:
        reasons = Counter(r["reason"] if not r["valid"] else "valid but guessable or a duplicate"
                          for r in rows)
        raise SystemExit(
            f"seeding failed: after {rounds} rounds ({len(rows)} proposals) the seed set holds "
            f"{len(seed)}/{need_seed} tasks and the induction buffer {len(ind)}/{need_ind}. "
            f"Proposals by outcome: {dict(reasons)}. They are in {S.run.path / 'tasks.jsonl'}. "
            f"Seed from a file (--seed-tasks), lower --seed-size, or check --model/--style.")
    S.buffers = {"deduction": [dict(t) for t in seed], "abduction": [dict(t) for t in seed],
                 "induction": ind}
    return {"seed/rounds": rounds, "seed/proposals": len(rows),
            "seed/valid_rate": sum(r["valid"] for r in rows) / max(1, len(rows)),
            "time/seed": time.time() - t0}


def task_row(p: dict) -> dict:
    """The tasks.jsonl record of a proposal (null where a field does not apply)."""
    keys = ("phase", "type", "valid", "reason", "trivial", "program", "input", "output",
            "inputs", "outputs", "message", "s", "successes", "n", "reward", "text")
    return {k: p.get(k) for k in keys}


# ---- One self-play step --------------------------------------------------------------------------
def self_play_step(S: Session, step: int) -> tuple[dict, list[dict]]:
    """AZR Algorithm 1 (the module docstring's step). Returns (metrics, a few samples)."""
    cfg, times = S.cfg, {}
    t0 = t_step = time.time()
    prop_chunks, props = propose(S, proposal_specs(S), step, "train")  # 1-2. propose, validate
    times["propose"], t0 = time.time() - t0, time.time()
    est_parts = estimate(S, props)                  # 3. the solve rate s → the proposer reward
    times["estimate"], t0 = time.time() - t0, time.time()
    for p in props:                                 # every valid, non-guessable task joins
        if p["valid"] and not p["set_aside"]:
            add_to_buffer(S.buffers[p["type"]], as_task(p), step)
    S.run.log(step, [task_row(p) for p in props], "tasks.jsonl")
    solve_parts, answers, metrics = solve(S, step)                     # 4. solve buffer tasks
    times["solve"], t0 = time.time() - t0, time.time()
    parts = parts_of(prop_chunks, [p["type"] for p in props], [[p["reward"]] for p in props],
                     "propose", [not cfg.freeze_proposer] * len(props)) + solve_parts
    adv = trr_advantages([r for p in parts for r in p.rewards],       # 5. TRR++ advantages
                         [g for p in parts for g in p.groups])                         # [N]
    est_parts = est_parts if cfg.train_on_estimates else []   # each task's n: a GRPO group
    est_adv = estimate_advantages([r for p in est_parts for r in p.rewards], cfg.n_estimate)
    update = update_of(S, parts + est_parts, torch.cat([adv, est_adv]))  # 6. one policy update
    times["update"] = time.time() - t0
    metrics.update(step_metrics(S, props, parts))
    metrics.update({f"update/{k}": float(v) for k, v in update.items()})
    metrics["update/skipped"] = int(not update)
    times["step"] = time.time() - t_step
    metrics.update({f"time/{k}": v for k, v in times.items()})
    return metrics, samples_of(S, props, answers)


def proposal_specs(S: Session) -> list[tuple]:
    """--batch-size (task type, references, induction program) per type: K references from the
    type's buffer, or for induction none and a program from D_ded + D_abd."""
    specs, pool = [], S.buffers["deduction"] + S.buffers["abduction"]
    for t in S.types:
        for _ in range(S.cfg.batch_size):
            if t != "induction":
                specs.append((t, sample_refs(S.buffers[t], S.cfg.k_refs, S.rng), None))
            elif pool:
                specs.append((t, [], S.rng.choice(pool)["program"]))
    return specs


def update_of(S: Session, parts: list[Part], adv: torch.Tensor) -> dict:
    """One `rlvr.update_policy` on the rows that train, each with its own advantage; skipped
    (said on the console) when all advantages are 0 and no entropy or KL term would move it."""
    cfg, exps = S.cfg, []
    for p, a in zip(parts, adv.split([len(p.rewards) for p in parts])):         # a: [n]
        keep = [j for j, tr in enumerate(p.train) if tr]
        if keep:
            e = rlvr.Experience.from_rollout(p.ro, a)
            exps.append(e if len(keep) == len(p.train) else e.select(torch.tensor(keep)))
    moves = cfg.entropy_coef or cfg.kl_coef or any(bool((e.advantages != 0).any()) for e in exps)
    if not exps or not moves:
        return {}
    return rlvr.update_policy(S.model, S.optimizer, exps, cfg, S.ref_model,
                              max(cfg.propose_max_tokens, cfg.solve_max_tokens))


def step_metrics(S: Session, props: list[dict], parts: list[Part]) -> dict:
    """Per (role, task type) and per role: full-vocabulary token entropy, response length, mean
    reward (per pair); per task type: valid, guessable and learnable (0 < s < 1) rates, mean s,
    the histogram of successes, the rejection reasons and the buffer size."""
    acc = {}  # (task type, role) → sums of [token entropy, response tokens, length, rows, reward]
    for p in parts:
        ent = p.ro.entropy.float() * p.ro.response_mask                          # [n, T]
        for j, g in enumerate(p.groups):
            row = (float(ent[j].sum()), float(p.ro.response_mask[j].sum()),
                   float(p.ro.lengths[j]), 1, p.rewards[j])
            acc[g] = [a + x for a, x in zip(acc.get(g, [0.0, 0.0, 0.0, 0, 0.0]), row)]
    m = {f"{role}/{t}/reward_mean": a[4] / a[3] for (t, role), a in acc.items()}
    sums = {f"{role}/{t}/": [a] for (t, role), a in acc.items()}
    sums.update({f"{r}/": [a for g, a in acc.items() if g[1] == r] for r in ("propose", "solve")})
    for prefix, mine in sums.items():
        if mine:
            m[f"{prefix}entropy"] = sum(a[0] for a in mine) / max(sum(a[1] for a in mine), 1)
            m[f"{prefix}response_len"] = sum(a[2] for a in mine) / sum(a[3] for a in mine)
    if acc:
        m["entropy"] = sum(a[0] for a in acc.values()) / max(sum(a[1] for a in acc.values()), 1)
    for t in S.types:
        mine = [p for p in props if p["type"] == t]
        est = [p for p in mine if p["successes"] is not None]
        if mine:
            m[f"propose/{t}/valid_rate"] = sum(p["valid"] for p in mine) / len(mine)
            m[f"propose/{t}/trivial_rate"] = sum(p["trivial"] for p in mine) / len(mine)
            for reason, k in Counter(p["reason"] for p in mine if not p["valid"]).items():
                m[f"propose/{t}/reject/{reason}"] = k
        if est:
            m[f"propose/{t}/s_hist"] = [sum(p["successes"] == k for p in est)
                                        for k in range(S.cfg.n_estimate + 1)]
            m[f"propose/{t}/s_mean"] = sum(p["s"] for p in est) / len(est)
            m[f"propose/{t}/learnable_rate"] = sum(0 < p["s"] < 1 for p in est) / len(est)
        m[f"buffer/{t}"] = len(S.buffers[t])
    if props:
        m["propose/valid_rate"] = sum(p["valid"] for p in props) / len(props)
    return m


def samples_of(S: Session, props: list[dict], answers: list[dict]) -> list[dict]:
    """The first proposal and the first solver answer of each task type (samples.jsonl)."""
    keys, rows = ("type", "text", "valid", "reason", "reward"), []
    for t in S.types:  # [:1]: the first one, if any
        rows += [{"role": "propose", **{k: p[k] for k in keys}} for p in props
                 if p["type"] == t][:1]
        rows += [{"role": "solve", **a} for a in answers if a["type"] == t][:1]
    return rows


# ---- Main ----------------------------------------------------------------------------------------
def step_line(m: dict, step: int, steps: int, types: list) -> str:
    """The console line of a step: valid rate, mean s over all valid proposals, solver accuracy
    per type, entropy per role, seconds."""
    pairs = [(m[f"propose/{t}/s_mean"], sum(m[f"propose/{t}/s_hist"])) for t in types
             if f"propose/{t}/s_mean" in m]  # (mean s, valid proposals) per type
    n_valid = sum(n for _, n in pairs)
    s = sum(a * n for a, n in pairs) / n_valid if n_valid else float("nan")
    solve = " ".join(f"{t[:3]} {m[f'solve/{t}/accuracy']:.2f}" for t in types
                     if f"solve/{t}/accuracy" in m)
    f = lambda k, d=2: f"{m[k]:.{d}f}" if k in m else "-"  # noqa: E731
    line = (f"step {step:>{len(str(steps))}}/{steps} | valid {f('propose/valid_rate')} | s "
            f"{s:.2f} | solve {solve or '-'} | H propose {f('propose/entropy', 3)} solve "
            f"{f('solve/entropy', 3)} | {m['time/step']:.1f}s")
    if "eval/accuracy" in m:
        line += f" | held-out {m['eval/accuracy']:.3f} ± {m['eval/se']:.3f}"
    return line


def main(cfg: Config) -> dict:
    types = check_config(cfg)
    t_start = time.time()
    M.seed_everything(cfg.seed)
    run = M.RunDir(cfg.out, logs=("metrics.jsonl", "samples.jsonl", "tasks.jsonl", "eval.jsonl"))
    run.claim(cfg.resume)
    model, tok = M.load_policy(cfg.model, cfg.device, cfg.dtype)
    style = M.prompt_style(tok, cfg.style)
    preset = M.apply_preset(cfg, PRESETS, style)
    M.check(cfg.batch_size >= 1, "--batch-size must be >= 1")
    cfg.solve_batch_size = cfg.solve_batch_size or cfg.batch_size
    # 2048: K refs make long proposer prompts
    memory = M.fit_memory(cfg, model, 2048, max(cfg.propose_max_tokens, cfg.solve_max_tokens))
    rlvr.check_pg(cfg)
    M.check(not (cfg.train_on_estimates and cfg.n_estimate < 2),
            "--train-on-estimates needs --n-estimate >= 2 (a group)")
    n_params = sum(p.numel() for p in model.parameters()) / 1e6
    M.say(f"[selfplay] {M.resolve_model(cfg.model)} ({n_params:.1f}M params, {model.device}) → "
          f"{run.path} | {style} preset: {preset} | {cfg.steps} steps of {cfg.batch_size} "
          f"proposals and {cfg.solve_batch_size} solver tasks per type ({', '.join(types)}), "
          f"{cfg.n_estimate} samples per solve rate | {memory}")
    if cfg.grad_checkpointing:
        M.enable_grad_checkpointing(model)
    sets = T.eval_sets(cfg.eval, cfg.eval_n, T.TASK_TYPES, cfg.n_inputs)
    S = Session(cfg, types, style, model, tok, rlvr.make_optimizer(model, cfg.lr), run,
                random.Random(cfg.seed), {}, sets,
                M.load_policy(cfg.model, cfg.device, cfg.dtype)[0] if cfg.kl_coef else None)

    def evaluate(step: int) -> dict:
        t0 = time.time()
        res = T.evaluate(model, tok, sets, style, cfg.solve_max_tokens,
                         batch_size=cfg.sample_batch, timeout=cfg.exec_timeout)
        run.log(step, T.correct_strings(res), "eval.jsonl")
        return {**T.accuracy(res), "time/eval": time.time() - t0}

    start, extra = run.resume(model, S.optimizer) if cfg.resume else (0, {})
    if start:
        S.buffers, S.rng = extra["buffers"], random.Random()
        S.rng.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in extra["rng"]))
        M.say(f"[selfplay] resumed {run.path} at step {start}")
    else:
        run.write_config({**dataclasses.asdict(cfg), "model": M.resolve_model(cfg.model),
                          "script": "selfplay.py", "style": style, "types": types})
        m0 = seed_buffers(S)
        m0.update(evaluate(0), **{f"buffer/{t}": len(S.buffers[t]) for t in T.TASK_TYPES})
        run.log(0, m0)
        how = f"from {cfg.seed_tasks}" if not m0["seed/rounds"] else \
            f"in {m0['seed/rounds']} rounds (valid-proposal rate {m0['seed/valid_rate']:.2f})"
        M.say(f"[selfplay] seeded the buffers {how}: "
              f"{', '.join(f'{t} {len(S.buffers[t])}' for t in S.types)} tasks | base held-out "
              f"accuracy (greedy) {m0['eval/accuracy']:.3f} ± {m0['eval/se']:.3f}")
    for step in M.progress(range(start + 1, cfg.steps + 1), "self-play", initial=start,
                           total=cfg.steps):
        M.reset_peak_memory(model.device)
        with M.oom_advice("selfplay", "--micro-batch (the gradient stays the same), "
                                      "--sample-batch or --grad-checkpointing"):
            m, samples = self_play_step(S, step)
        if M.due(step, cfg.eval_every, cfg.steps):
            m.update(evaluate(step))
        run.log(step, {**m, **M.memory_stats(model.device)})
        run.log(step, samples, "samples.jsonl")
        skipped = "" if m["update/skipped"] == 0 else " | update skipped: all advantages 0"
        M.say(step_line(m, step, cfg.steps, types) + skipped)
        if M.due(step, cfg.save_every, cfg.steps):
            state = {"buffers": S.buffers, "rng": S.rng.getstate()}
            run.save(step, model, tok, S.optimizer, state, cfg.keep_checkpoints)
    valid = [r["propose/valid_rate"] for r in run.read() if "propose/valid_rate" in r]
    return rlvr.finish("selfplay", run, cfg.steps, t_start, T.program_ids(sets),
                       f" | valid-proposal rate min {min(valid, default=0):.2f} mean "
                       f"{sum(valid) / max(1, len(valid)):.2f}")


if __name__ == "__main__":
    main(M.parse_flags(Config, doc=__doc__))
