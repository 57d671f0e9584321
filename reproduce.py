"""reproduce.py — the findings of Chae et al. (arXiv 2510.27072) at toy scale, in one command.

    python reproduce.py                          # full: each script's defaults (about 3 h on 2 CPU cores)
    python reproduce.py --budget quick           # smoke version: every stage in a few minutes
    python reproduce.py --only analyze           # (re)write results/ from the finished analysis
    python reproduce.py --dry-run                # every stage's command and whether it is done

Stages, in order, each a subprocess `python X.py --out <out>/<stage> ...` run in the repo root
(output shown here and appended to <out>/<stage>.log); full-budget wall times on 2 CPU cores:

  base             the toy base (pretrain.py, about 22 min; skipped when runs/toy-base exists)
  selfplay         AZR self-play, learnability reward (selfplay.py defaults: 60 steps, <= 28 min)
  selfplay-peak50  the same with the R-Zero-style proposer reward (--proposer-reward peak50)
  selfplay-frozen  the same with a frozen proposer (--freeze-proposer)
  rlvr             GRPO with verifiable rewards on toy arithmetic (rlvr.py, <= 19 min)
  sft              supervised fine-tuning on toy arithmetic (sft.py, about 6 min)
  analyze          analyze.py over the five runs → <out>/analysis (report.md, results.json, figures)

then <results>/results.md (command, commit, machine, wall time per stage, the findings table with
a verdict per claim) and the figures. A stage is complete when <out>/<stage>/stage.json exists
(written after exit code 0) and is skipped on the next call; an interrupted training stage
continues from its last checkpoint with --resume, so the pipeline can be carried across sittings.
Verdicts come from small pure functions (section "Verdicts") and are never stronger than the
numbers: a missing number gives "inconclusive (missing: ...)".
"""
from __future__ import annotations

import functools
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

import model as M

REPO = Path(__file__).resolve().parent


# ----------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------
@dataclass
class Config:
    out: str = "runs/repro"            # stage run folders, their logs (<stage>.log) and records (stage.json)
    results: str = "results"           # output folder for results.md and the figures (committed to git)
    budget: str = "full"               # full (the scripts' defaults, about 3 h on 2 CPU cores) | quick (minutes)
    seed: int = 0                      # --seed of every training stage and of analyze
    only: str = ""                     # comma-separated stages to run (default all): base,selfplay,selfplay-peak50,selfplay-frozen,rlvr,sft,analyze
    model: str = "toy"                 # base: toy (runs/toy-base, built if missing) | hub id | folder | .gguf
    threads: int = 0                   # torch CPU threads of every stage (0 = each script's own default)
    dry_run: bool = False              # print every stage's command and whether it is complete, then exit


STAGES = ("base", "selfplay", "selfplay-peak50", "selfplay-frozen", "rlvr", "sft", "analyze")
RUNS = ("selfplay", "selfplay-peak50", "selfplay-frozen", "rlvr", "sft")  # analysed, in this order
SP, PEAK, FROZEN, RLVR, SFT = RUNS  # run names in analyze's results.json (run-folder basenames)
CODE_SETS = ("deduction", "abduction", "induction")  # the held-out code tasks self-play trains on

# Flags of the quick budget (a smoke test: tiny steps, small evaluations, short wall-clock caps).
# The full budget passes none of these: each script runs with its own defaults.
QUICK = {
    "base": ["--steps", "40", "--eval-problems", "20"],
    "selfplay": ["--steps", "4", "--batch-size", "4", "--solve-batch-size", "4", "--seed-size", "4",
                 "--n-estimate", "4", "--eval-n", "16", "--eval-every", "0", "--save-every", "2"],
    "rlvr": ["--steps", "6", "--prompts-per-step", "4", "--eval-problems", "20", "--eval-every", "3",
             "--save-every", "3"],
    "sft": ["--steps", "10", "--eval-n", "20", "--eval-every", "5", "--save-every", "5",
            "--entropy-prompts", "8"],
    "analyze": ["--n", "4", "--problems", "16", "--curriculum-tasks", "8", "--n-boot", "200"],
}
# Checkpoint frequency of the full budget, so an interrupted stage loses at most a few minutes
# (selfplay saves only at the end by default; rlvr's default saves every 50 steps, about 2 min,
# and sft's every 100 steps, about 2 min, are kept). The quick budget sets its own above.
SAVE_EVERY = {"selfplay": ["--save-every", "10"]}  # 60 default steps, about 4.5 min per 10 steps


def check_config(cfg: Config) -> list[str]:
    """Validate the flags; returns the selected stages. Bad values → SystemExit naming the flag."""
    if cfg.budget not in ("full", "quick"):
        raise SystemExit(f"--budget {cfg.budget!r}: expected full or quick")
    only = [s.strip() for s in cfg.only.split(",") if s.strip()]
    bad = [s for s in only if s not in STAGES]
    if bad:
        raise SystemExit(f"--only: unknown stage(s) {', '.join(bad)} (choose from {', '.join(STAGES)})")
    if cfg.threads < 0:
        raise SystemExit(f"--threads must be >= 0, got {cfg.threads}")
    return only or list(STAGES)


# ----------------------------------------------------------------------------------------------
# Stages: what each one runs
# ----------------------------------------------------------------------------------------------
@dataclass
class Stage:
    name: str                # one of STAGES
    cmd: list                # argv after the python executable: script, then flags
    folder: Path             # what the stage writes (its --out)
    record: Path             # stage.json: exists ⇔ the stage completed
    resumable: bool = True   # an interrupted run with a checkpoint continues with --resume
    done_file: Path | None = None  # for the base: the model's config.json also means complete


def rel(p) -> str:
    """A path as the commands show it: relative to the repo root when inside it."""
    p = Path(p).resolve()
    try:
        return str(p.relative_to(REPO))
    except ValueError:
        return str(p)


def choose_base(cfg: Config, out: Path) -> Path | None:
    """The toy base folder the stages train from (None for a non-toy --model). The default base
    runs/toy-base, except in a quick run on a machine that has none: then a small base is built
    in <out>/toy-base (so a smoke test never leaves a weak model where the full run looks). A base
    recorded by an earlier call of this --out is kept, so every stage shares one base."""
    if cfg.model != "toy":
        return None
    rec = out / "base" / "stage.json"
    if rec.exists():
        recorded = json.loads(rec.read_text()).get("model_dir")
        if recorded:
            return Path(recorded)
    if cfg.budget == "full" or (Path(M.TOY_BASE) / "config.json").exists():
        return Path(M.TOY_BASE)
    return out / "toy-base"


def stage_list(cfg: Config, out: Path) -> list[Stage]:
    """Every stage with its full command line, in pipeline order."""
    base_dir = choose_base(cfg, out)
    if base_dir is None:
        model_arg = cfg.model
    else:
        model_arg = "toy" if base_dir.resolve() == Path(M.TOY_BASE).resolve() else rel(base_dir)
    quick = cfg.budget == "quick"
    common = ["--seed", str(cfg.seed)] + (["--threads", str(cfg.threads)] if cfg.threads else [])

    def flags(script: str) -> list[str]:  # budget flags of a training script
        return QUICK[script] if quick else SAVE_EVERY.get(script, [])

    stages = []
    if base_dir is not None:
        stages.append(Stage("base", ["pretrain.py", "--out", rel(base_dir)]
                            + (["--threads", str(cfg.threads)] if cfg.threads else [])
                            + (QUICK["base"] if quick else []),
                            folder=base_dir, record=out / "base" / "stage.json", resumable=False,
                            done_file=base_dir / "config.json"))
    variants = {"selfplay": [], "selfplay-peak50": ["--proposer-reward", "peak50"],
                "selfplay-frozen": ["--freeze-proposer"]}
    for name, extra in variants.items():
        stages.append(Stage(name, ["selfplay.py", "--out", rel(out / name), "--model", model_arg]
                            + common + extra + flags("selfplay"),
                            folder=out / name, record=out / name / "stage.json"))
    for name in ("rlvr", "sft"):
        stages.append(Stage(name, [f"{name}.py", "--out", rel(out / name), "--model", model_arg]
                            + common + flags(name),
                            folder=out / name, record=out / name / "stage.json"))
    analysis = out / "analysis"
    stages.append(Stage("analyze", ["analyze.py", "--runs", *[rel(out / r) for r in RUNS],
                                    "--out", rel(analysis), "--seed", str(cfg.seed)]
                        + (["--threads", str(cfg.threads)] if cfg.threads else [])
                        + (QUICK["analyze"] if quick else []),
                        folder=analysis, record=analysis / "stage.json", resumable=False))
    return stages


# ----------------------------------------------------------------------------------------------
# Bookkeeping: records, attempts, machine
# ----------------------------------------------------------------------------------------------
def git_commit() -> str | None:
    """`git rev-parse HEAD` of the repo (+ "-dirty" when tracked files differ), or None."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, timeout=10)
        if head.returncode:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def machine_summary() -> dict:
    """Platform, CPU count and model, Python and torch versions, GPU (if any), load average."""
    from importlib.metadata import PackageNotFoundError, version

    cpu = platform.processor() or ""
    try:  # the CPU model name (platform.processor() is often empty on Linux)
        cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                    if line.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        torch_version = version("torch")
    except PackageNotFoundError:
        torch_version = None
    gpu = None
    if shutil.which("nvidia-smi"):
        try:
            gpu = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20).stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            pass
    return {"platform": platform.platform(), "cpu_count": os.cpu_count(), "cpu": cpu,
            "python": platform.python_version(), "torch": torch_version, "gpu": gpu,
            "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None}


def machine_line(m: dict) -> str:
    """One readable line from a machine_summary() dict."""
    bits = [m.get("platform", "?"), f"{m.get('cpu_count', '?')} CPU cores"]
    if m.get("cpu"):
        bits.append(m["cpu"])
    bits.append(f"GPU {m['gpu']}" if m.get("gpu") else "no GPU")
    bits.append(f"Python {m.get('python', '?')}, torch {m.get('torch', '?')}")
    if m.get("load_average"):
        bits.append("load average " + "/".join(f"{x:g}" for x in m["load_average"]) + " at the end")
    return "; ".join(bits)


def log_attempt(out: Path, row: dict) -> None:
    """Append one attempt of a stage (complete or not) to <out>/attempts.jsonl."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "attempts.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")


def running_file(out: Path, name: str) -> Path:
    """<out>/<stage>.running.json: the attempt in progress, rewritten while the stage runs. A
    killed reproduce.py (a closed terminal, an ended session) never reaches its `finally`, so
    the next call finds this file and logs the lost attempt from it (`recover_lost_attempt`)."""
    return out / f"{name}.running.json"


def recover_lost_attempt(out: Path, name: str) -> dict | None:
    """Log the attempt a killed reproduce.py left behind (exit None, seconds = its last
    heartbeat, so a lower bound) and remove the file. Returns the logged row, if any."""
    p = running_file(out, name)
    if not p.exists():
        return None
    try:
        row = {**json.loads(p.read_text()), "exit": None, "lost": True}
    except json.JSONDecodeError:  # killed mid-write: the attempt's length is unknown
        row = {"stage": name, "seconds": 0.0, "exit": None, "lost": True}
    log_attempt(out, row)
    p.unlink()
    return row


def attempts_of(out: Path, name: str) -> list[dict]:
    p = out / "attempts.jsonl"
    if not p.exists():
        return []
    rows = [json.loads(x) for x in p.read_text().splitlines() if x.strip()]
    return [r for r in rows if r.get("stage") == name]


def since_last_completion(attempts: list[dict]) -> list[dict]:
    """The attempts behind the latest completion: the last one and the unfinished ones right
    before it (an earlier completed attempt, exit 0, ends the stretch)."""
    stretch = attempts[-1:]
    for a in reversed(attempts[:-1]):
        if a.get("exit") == 0:
            break
        stretch.insert(0, a)
    return stretch


def write_record(stage: Stage, out: Path) -> dict:
    """stage.json after exit code 0: command, wall seconds (this attempt plus the interrupted or
    failed ones since the stage last completed), the commit each attempt started from (one
    string, or a list when a resumed stage spanned commits), finish time, machine."""
    tries = since_last_completion(attempts_of(out, stage.name))
    commits = list(dict.fromkeys(a.get("commit") for a in tries if a.get("commit")))
    rec = {"stage": stage.name, "command": ["python", *stage.cmd],
           "wall_seconds": round(sum(a["seconds"] for a in tries), 1), "attempts": len(tries),
           "commit": (commits[0] if len(commits) == 1 else commits) if commits else git_commit(),
           "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
           "machine": machine_summary()}
    if stage.name == "base":
        rec["model_dir"] = str(stage.folder)
    stage.record.parent.mkdir(parents=True, exist_ok=True)
    stage.record.write_text(json.dumps(rec, indent=2) + "\n")
    return rec


def adopt_earlier_base(stage: Stage) -> dict:
    """Record of a base that existed before reproduce.py looked: its build time is the
    `total_seconds` of its pretrain_report.json (None when the report is missing)."""
    report = stage.folder / "pretrain_report.json"
    secs = json.loads(report.read_text()).get("total_seconds") if report.exists() else None
    rec = {"stage": "base", "command": ["python", *stage.cmd], "wall_seconds": secs, "attempts": 0,
           "built_before": True, "model_dir": str(stage.folder),
           "note": f"{rel(stage.folder)} existed already; build time from its pretrain_report.json"
                   if secs is not None else f"{rel(stage.folder)} existed already (no pretrain_report.json)",
           "commit": None, "finished": None, "machine": None}
    stage.record.parent.mkdir(parents=True, exist_ok=True)
    stage.record.write_text(json.dumps(rec, indent=2) + "\n")
    return rec


def has_checkpoint(folder: Path) -> bool:
    """A checkpoints/step_* folder with a saved model (what RunDir.resume restores)."""
    return any((p / "config.json").exists() for p in (folder / "checkpoints").glob("step_*"))


def _minutes(secs) -> str:
    return "?" if secs is None else f"{secs / 60:.1f} min"


# ----------------------------------------------------------------------------------------------
# Running a stage
# ----------------------------------------------------------------------------------------------
def _echo(chunk: bytes) -> None:
    buf = getattr(sys.stdout, "buffer", None)
    if buf is not None:
        buf.write(chunk)
    else:
        sys.stdout.write(chunk.decode(errors="replace"))
    sys.stdout.flush()


def run_logged(cmd: list, log_path: Path, env: dict | None = None, beat=None) -> int:
    """Run `cmd` in the repo root; its stdout and stderr are shown as they come (tqdm bars
    included) and appended to log_path; `beat()` is called after each chunk. Returns the exit
    code."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"\n===== [reproduce] {time.strftime('%Y-%m-%d %H:%M:%S')}: "
                  f"{shlex.join(cmd)}\n".encode())
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env=env, bufsize=0)
        try:
            while chunk := proc.stdout.read(65536):  # unbuffered pipe: returns what has arrived
                _echo(chunk)
                log.write(chunk)
                log.flush()
                if beat is not None:
                    beat()
            return proc.wait()
        except KeyboardInterrupt:  # Ctrl-C reached the child too; give it a moment to exit
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.terminate()
                proc.wait()
            raise


def stage_env(cfg: Config) -> dict:
    """Environment of the subprocesses: unbuffered output (every script takes --threads)."""
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def run_stage(stage: Stage, cfg: Config, out: Path) -> dict:
    """Run one stage (skipped if complete, resumed if interrupted); returns its record. A
    failing stage stops the pipeline with SystemExit naming the stage and its log file."""
    if stage.record.exists():
        rec = json.loads(stage.record.read_text())
        print(f"[reproduce] {stage.name}: done earlier ({_minutes(rec.get('wall_seconds'))}), "
              f"skipping", flush=True)
        return rec
    if stage.done_file is not None and stage.done_file.exists():
        rec = adopt_earlier_base(stage)
        print(f"[reproduce] {stage.name}: {rel(stage.folder)} already built "
              f"({_minutes(rec['wall_seconds'])} by its pretrain_report.json), skipping", flush=True)
        return rec
    cmd = list(stage.cmd)
    resumed = False
    if stage.folder.exists() and any(stage.folder.iterdir()):  # an earlier attempt was interrupted
        if stage.resumable and has_checkpoint(stage.folder):
            cmd.append("--resume")
            resumed = True
            print(f"[reproduce] {stage.name}: interrupted earlier, resuming from its last "
                  f"checkpoint", flush=True)
        elif stage.resumable:  # nothing saved: start over, keeping the partial logs aside
            aside = stage.folder.with_name(f"{stage.folder.name}.partial-{time.strftime('%Y%m%d-%H%M%S')}")
            stage.folder.rename(aside)
            print(f"[reproduce] {stage.name}: interrupted before its first checkpoint; starting "
                  f"over (partial logs moved to {rel(aside)})", flush=True)
    log_path = out / f"{stage.name}.log"
    recover_lost_attempt(out, stage.name)
    print(f"[reproduce] {stage.name}: running `python {shlex.join(cmd)}` (log: {rel(log_path)})",
          flush=True)
    t0, rc, commit = time.time(), None, git_commit()  # the code this attempt runs
    attempt = {"stage": stage.name, "started": time.strftime("%Y-%m-%d %H:%M:%S",
                                                             time.localtime(t0)),
               "resumed": resumed, "commit": commit}
    last_beat = [0.0]

    def beat(every: float = 10.0):  # how long this attempt has run, in case it is killed
        if time.time() - last_beat[0] >= every:
            last_beat[0] = time.time()
            running_file(out, stage.name).write_text(
                json.dumps({**attempt, "seconds": round(time.time() - t0, 1)}))

    out.mkdir(parents=True, exist_ok=True)
    beat()
    try:
        rc = run_logged([sys.executable, *cmd], log_path, stage_env(cfg), beat)
    except KeyboardInterrupt:
        raise SystemExit(f"[reproduce] interrupted during {stage.name}: run the same command "
                         f"again to continue (finished stages are skipped, {stage.name} resumes "
                         f"from its last checkpoint)") from None
    finally:
        log_attempt(out, {**attempt, "seconds": round(time.time() - t0, 1), "exit": rc})
        running_file(out, stage.name).unlink(missing_ok=True)
    if rc != 0:
        raise SystemExit(f"[reproduce] stage {stage.name} failed (exit code {rc}); its output is "
                         f"in {rel(log_path)}. Fix the cause and run the same command again: "
                         f"finished stages are skipped and {stage.name} resumes where it stopped.")
    rec = write_record(stage, out)
    print(f"[reproduce] {stage.name}: done in {_minutes(time.time() - t0)}", flush=True)
    return rec


# ----------------------------------------------------------------------------------------------
# Verdicts (pure functions; each claim's rule in one place)
# ----------------------------------------------------------------------------------------------
REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"


def _finite(*xs) -> bool:
    return all(x is not None and isinstance(x, (int, float)) and math.isfinite(x) for x in xs)


def verdict_sign(lo, hi, expect: int) -> str:
    """A claim that a quantity is positive (expect=+1) or negative (expect=-1), judged by its 95%
    interval [lo, hi]: reproduced when the interval lies on the claimed side of 0, not reproduced
    when it lies on the other side, inconclusive when it holds 0 (or a bound is not finite)."""
    if expect not in (1, -1):
        raise ValueError(f"verdict_sign: expect must be +1 or -1, got {expect}")
    if not _finite(lo, hi):
        return INCONCLUSIVE
    lo, hi = (lo, hi) if expect == 1 else (-hi, -lo)
    return REPRODUCED if lo > 0 else NOT_REPRODUCED if hi < 0 else INCONCLUSIVE


def verdict_change(lo, hi, margin: float) -> str:
    """A claim that a quantity differs from 0 (either sign): reproduced when the 95% interval
    excludes 0, not reproduced when it lies within [-margin, margin] (no change as large as
    margin is compatible with the data), else inconclusive."""
    if not _finite(lo, hi):
        return INCONCLUSIVE
    if lo > 0 or hi < 0:
        return REPRODUCED
    return NOT_REPRODUCED if -margin <= lo and hi <= margin else INCONCLUSIVE


def verdict_collapse(change, lo, hi, margin: float = 0.10) -> str:
    """Entropy collapse from the relative change (end - start) / start and its 95% interval:
    reproduced when the fall is significant (hi < 0) and at least `margin` (change <= -margin;
    our reading of "collapse"), not reproduced when the interval rules out a fall of `margin`
    (lo > -margin), else inconclusive."""
    if not _finite(change, lo, hi):
        return INCONCLUSIVE
    if hi < 0 and change <= -margin:
        return REPRODUCED
    return NOT_REPRODUCED if lo > -margin else INCONCLUSIVE


def verdict_passk(lo1, hi1, lok, hik) -> str:
    """Chae et al. / Yue et al.: self-play raises pass@1 over the base, while at large k the base
    matches or exceeds it. Inputs: 95% intervals of (self-play - base) at k=1 and at k_max.
    Reproduced when the pass@1 gain excludes 0 (lo1 > 0) and at k_max self-play is not
    significantly above the base (lok <= 0); not reproduced when the numbers contradict a part
    (pass@1 significantly lower, hi1 < 0, or self-play significantly above the base at k_max,
    lok > 0); else inconclusive."""
    if not _finite(lo1, hi1, lok, hik):
        return INCONCLUSIVE
    if lo1 > 0 and lok <= 0:
        return REPRODUCED
    if hi1 < 0 or lok > 0:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def verdict_between(low, mid, high) -> str:
    """Ordering claim low < mid < high (sparsity: SFT < self-play < RLVR, as fractions of entries
    unchanged): reproduced when it holds strictly, not reproduced when mid lies strictly outside
    [low, high], inconclusive on a tie or a missing number."""
    if not _finite(low, mid, high):
        return INCONCLUSIVE
    if low < mid < high:
        return REPRODUCED
    if mid < low or mid > high:
        return NOT_REPRODUCED
    return INCONCLUSIVE


# ----------------------------------------------------------------------------------------------
# Statistics the findings need beyond results.json (pure, small)
# ----------------------------------------------------------------------------------------------
Z95 = 1.959964


def window_stats(values, frac: float = 0.1, min_w: int = 2):
    """Mean and standard error of the first and last windows of a per-step series (each window
    max(min_w, frac * len) points; the spread between steps gives the SE). Returns (start,
    start_se, end, end_se), or None when the series is too short for two disjoint windows."""
    v = np.asarray(values, dtype=np.float64)
    w = max(min_w, int(len(v) * frac))
    if len(v) < 2 * w:
        return None
    a, b = v[:w], v[-w:]
    return (float(a.mean()), float(a.std(ddof=1) / math.sqrt(w)),
            float(b.mean()), float(b.std(ddof=1) / math.sqrt(w)))


def relative_change(values, frac: float = 0.1) -> dict | None:
    """(end - start) / start of a series with a normal-approximation 95% interval (start taken
    as fixed in the denominator; step-to-step noise only, autocorrelation ignored)."""
    ws = window_stats(values, frac)
    if ws is None or ws[0] == 0:
        return None
    start, se_a, end, se_b = ws
    half = Z95 * math.hypot(se_a, se_b) / abs(start)
    change = (end - start) / start
    return {"start": start, "end": end, "change": change, "lo": change - half, "hi": change + half}


def paired_mean_ci(diffs) -> dict | None:
    """Mean of paired differences with a normal 95% interval (None with fewer than 2)."""
    d = np.asarray(diffs, dtype=np.float64)
    if len(d) < 2:
        return None
    half = Z95 * d.std(ddof=1) / math.sqrt(len(d))
    return {"mean": float(d.mean()), "lo": float(d.mean() - half), "hi": float(d.mean() + half),
            "n": int(len(d))}


def paired_passk_diff(run_counts, base_counts, n: int, ks, n_boot: int = 1000, seed: int = 0) -> dict:
    """pass@k of a run minus the base's on the same problems (counts: correct out of n per
    problem), with a 95% bootstrap interval over problems (both models resampled together, so
    problem difficulty cancels). Returns {"ks", "diff", "lo", "hi", "run", "base", "problems"}."""
    import analyze as A

    if len(run_counts) != len(base_counts) or not len(run_counts):
        raise ValueError(f"paired_passk_diff: need the same non-zero number of problems "
                         f"(got {len(run_counts)} and {len(base_counts)})")
    r = A.pass_at_k_matrix(run_counts, n, ks)                                      # [P, K]
    b = A.pass_at_k_matrix(base_counts, n, ks)                                     # [P, K]
    d = r - b                                                                      # [P, K]
    lo, hi = A.bootstrap_ci(d, None, n_boot, seed)
    return {"ks": list(ks), "diff": d.mean(0).tolist(), "lo": np.atleast_1d(lo).tolist(),
            "hi": np.atleast_1d(hi).tolist(), "run": r.mean(0).tolist(), "base": b.mean(0).tolist(),
            "problems": len(d)}


# ----------------------------------------------------------------------------------------------
# Findings: one row per claim of Chae et al., from analyze's results.json and the run folders
# ----------------------------------------------------------------------------------------------
def _row(claim: str, measured: str, uncertainty: str, verdict: str) -> dict:
    return {"claim": claim, "measured": measured, "uncertainty": uncertainty, "verdict": verdict}


def _missing(claim: str, what: str) -> dict:
    return _row(claim, "–", "–", f"{INCONCLUSIVE} (missing: {what})")


def _pct(x) -> str:
    return f"{100 * x:+.1f} pts" if _finite(x) else "nan"


def _pooled_counts(pk: dict, label: str, sets) -> tuple[list, int] | None:
    """Per-problem correct counts of one model pooled over eval sets, and n (None if absent)."""
    if not all(label in pk.get(s, {}) for s in sets):
        return None
    ns = {pk[s][label]["n"] for s in sets}
    if len(ns) != 1:
        return None
    return [c for s in sets for c in pk[s][label]["counts"]], ns.pop()


def claim_passk(res: dict, n_boot: int, seed: int) -> dict:
    claim = "Self-play raises pass@1 over the base, while at large k the base matches or exceeds it"
    pk = res.get("passk") or {}
    sets = [s for s in CODE_SETS if s in pk]
    run, base = _pooled_counts(pk, SP, sets), _pooled_counts(pk, "base", sets)
    if not sets or run is None or base is None:
        return _missing(claim, f"pass@k of base and {SP} on the held-out code sets (analyze pass@k)")
    n = run[1]
    d = paired_passk_diff(run[0], base[0], n, [1, n], n_boot, seed)
    measured = (f"held-out code tasks ({', '.join(sets)}; {d['problems']} problems, n={n}): "
                f"pass@1 {d['base'][0]:.3f} → {d['run'][0]:.3f} ({_pct(d['diff'][0])}); "
                f"pass@{n} {d['base'][1]:.3f} → {d['run'][1]:.3f} ({_pct(d['diff'][1])})")
    unc = (f"95% paired bootstrap over problems: Δpass@1 [{_pct(d['lo'][0])}, {_pct(d['hi'][0])}], "
           f"Δpass@{n} [{_pct(d['lo'][1])}, {_pct(d['hi'][1])}]")
    return _row(claim, measured, unc, verdict_passk(d["lo"][0], d["hi"][0], d["lo"][1], d["hi"][1]))


def claim_entropy_collapse(series: dict) -> dict:
    claim = "The entropy of both roles collapses during self-play"
    keys = ("propose/entropy", "solve/entropy")
    s = series.get(SP) or {}
    if any(k not in s for k in keys):
        return _missing(claim, f"{' and '.join(keys)} in {SP}/metrics.jsonl")
    ch = {k: relative_change(s[k]) for k in keys}
    if any(c is None for c in ch.values()):
        return _missing(claim, f"enough logged steps in {SP} for start and end windows")
    vs = [verdict_collapse(c["change"], c["lo"], c["hi"]) for c in ch.values()]
    verdict = (REPRODUCED if all(v == REPRODUCED for v in vs) else
               NOT_REPRODUCED if NOT_REPRODUCED in vs else INCONCLUSIVE)
    names = {"propose/entropy": "proposer", "solve/entropy": "solver"}
    measured = "; ".join(f"{names[k]} {c['start']:.3f} → {c['end']:.3f} nats ({c['change']:+.0%})"
                         for k, c in ch.items())
    unc = ("95% normal interval of the change, first vs last 10% of steps: "
           + ", ".join(f"{names[k]} [{c['lo']:+.0%}, {c['hi']:+.0%}]" for k, c in ch.items())
           + "; collapse = a significant fall of at least 10%")
    return _row(claim, measured, unc, verdict)


def claim_proposer_above(series: dict) -> dict:
    claim = "The proposer's entropy stays above the solver's"
    s = series.get(SP) or {}
    if "propose/entropy" not in s or "solve/entropy" not in s:
        return _missing(claim, f"propose/entropy and solve/entropy in {SP}/metrics.jsonl")
    ps, ss = s["propose/entropy_steps"], s["solve/entropy_steps"]
    p, q = dict(zip(ps, s["propose/entropy"])), dict(zip(ss, s["solve/entropy"]))
    common = sorted(set(p) & set(q))
    ci = paired_mean_ci([p[t] - q[t] for t in common])
    if ci is None:
        return _missing(claim, f"two or more steps logging both roles' entropy in {SP}")
    above = float(np.mean([p[t] > q[t] for t in common]))
    measured = (f"proposer − solver {ci['mean']:+.3f} nats on average; proposer above at "
                f"{above:.0%} of {ci['n']} steps")
    unc = f"95% interval of the mean per-step difference [{ci['lo']:+.3f}, {ci['hi']:+.3f}]"
    return _row(claim, measured, unc, verdict_sign(ci["lo"], ci["hi"], +1))


def claim_frozen_entropy(series: dict) -> dict:
    claim = "A frozen proposer keeps entropy higher"
    key = "entropy"
    a, b = (series.get(FROZEN) or {}).get(key), (series.get(SP) or {}).get(key)
    if a is None or b is None:
        return _missing(claim, f"'{key}' in {FROZEN} and {SP} metrics.jsonl")
    wa, wb = window_stats(a), window_stats(b)
    if wa is None or wb is None:
        return _missing(claim, f"enough logged steps in {FROZEN} and {SP} for end windows")
    diff, half = wa[2] - wb[2], Z95 * math.hypot(wa[3], wb[3])
    measured = (f"whole-model entropy over the last 10% of steps: frozen {wa[2]:.3f} vs "
                f"learnability {wb[2]:.3f} nats (Δ {diff:+.3f})")
    unc = f"95% normal interval of Δ [{diff - half:+.3f}, {diff + half:+.3f}] (step-to-step noise)"
    return _row(claim, measured, unc, verdict_sign(diff - half, diff + half, +1))


def _final_sparsity(s: dict) -> dict:
    """The final checkpoint's entry of one run's sparsity (by_step keys are str after JSON)."""
    last = s["steps"][-1]
    return s["by_step"].get(str(last)) or s["by_step"].get(last)


def claim_sparsity(res: dict) -> dict:
    claim = "Update sparsity of self-play lies between SFT (dense) and RLVR (sparse)"
    sp = res.get("sparsity") or {}
    absent = [r for r in (SFT, SP, RLVR) if r not in sp]
    if absent:
        return _missing(claim, f"sparsity of {', '.join(absent)} (analyze sparsity stage)")
    fin = {r: _final_sparsity(sp[r]) for r in (SFT, SP, RLVR)}
    g = {r: f["global"] for r, f in fin.items()}
    f0 = fin[SP]
    measured = (f"entries unchanged vs base at the final checkpoint: SFT {g[SFT]:.2%}, self-play "
                f"{g[SP]:.2%}, RLVR {g[RLVR]:.2%} ({f0.get('dtype', '?')} weights, |Δ| ≤ "
                f"{f0.get('tol', float('nan')):g})")
    unc = (f"exact counts over {f0.get('numel', 0) / 1e6:.2f}M entries per model; one seed each "
           f"(run-to-run spread not measured)")
    return _row(claim, measured, unc, verdict_between(g[SFT], g[SP], g[RLVR]))


def claim_curriculum(res: dict) -> list[dict]:
    c1 = "The proposer's tasks get harder over training (re-solve rate falls with proposal step)"
    c2 = "The answers to later tasks get longer (response length rises with proposal step)"
    cur = (res.get("curriculum") or {}).get(SP)
    if not cur:
        return [_missing(c, f"curriculum of {SP} (analyze curriculum stage, tasks.jsonl)")
                for c in (c1, c2)]
    rows = []
    for claim, key, expect, what in ((c1, "solve_rate", -1, "re-solve rate"),
                                     (c2, "response_len", +1, "response length")):
        t = cur["trend"][key]
        measured = (f"Spearman ρ(step, {what}) = {t['rho']:.2f} over {len(cur['steps'])} proposed "
                    f"deduction tasks re-solved by {cur['solver_label']}; slope "
                    f"{t['slope_per_100']:.3g} per 100 steps")
        unc = f"95% bootstrap interval of ρ [{t['lo']:.2f}, {t['hi']:.2f}]"
        rows.append(_row(claim, measured, unc, verdict_sign(t["lo"], t["hi"], expect)))
    return rows


def claim_peak50(res: dict, n_boot: int, seed: int) -> dict:
    claim = "The peak50 proposer reward does not beat the learnability reward"
    pk = res.get("passk") or {}
    sets = [s for s in CODE_SETS if s in pk]
    a, b = _pooled_counts(pk, PEAK, sets), _pooled_counts(pk, SP, sets)
    if not sets or a is None or b is None:
        return _missing(claim, f"pass@k of {PEAK} and {SP} on the held-out code sets")
    d = paired_passk_diff(a[0], b[0], a[1], [1], n_boot, seed)
    measured = (f"held-out code tasks pass@1: peak50 {d['run'][0]:.3f} vs learnability "
                f"{d['base'][0]:.3f} (Δ {_pct(d['diff'][0])}, {d['problems']} problems)")
    unc = f"95% paired bootstrap over problems [{_pct(d['lo'][0])}, {_pct(d['hi'][0])}]"
    # "does not beat": reproduced only when peak50 is significantly below (as the paper's -2%)
    return _row(claim, measured, unc, verdict_sign(d["lo"][0], d["hi"][0], -1))


def claim_transfer(res: dict, n_boot: int, seed: int, margin: float = 0.02) -> dict:
    claim = "Cross-domain transfer: self-play on code tasks changes toy-arithmetic accuracy"
    by = (res.get("passk") or {}).get("arith") or {}
    if SP not in by or "base" not in by:
        return _missing(claim, f"pass@k of base and {SP} on the arith set")
    d = paired_passk_diff(by[SP]["counts"], by["base"]["counts"], by[SP]["n"], [1], n_boot, seed)
    measured = (f"held-out arithmetic pass@1 {d['base'][0]:.3f} → {d['run'][0]:.3f} "
                f"(Δ {_pct(d['diff'][0])}, {d['problems']} problems)")
    unc = (f"95% paired bootstrap over problems [{_pct(d['lo'][0])}, {_pct(d['hi'][0])}]; "
           f"'no change' = interval within ±{100 * margin:g} pts")
    return _row(claim, measured, unc, verdict_change(d["lo"][0], d["hi"][0], margin))


def entropy_series_of(res: dict) -> dict:
    """{run: {key: values, key + "_steps": steps}} for the entropy keys of each run's
    metrics.jsonl (paths from results.json, relative to the repo root)."""
    import analyze as A

    out = {}
    for name, info in (res.get("runs") or {}).items():
        p = Path(info["path"])
        p = p if p.is_absolute() else REPO / p
        metrics = A.read_jsonl(p / "metrics.jsonl")
        d = {}
        for key in ("entropy", "propose/entropy", "solve/entropy"):
            s = A.metric_series(metrics, key)
            if s is not None:
                d[key], d[key + "_steps"] = s[1].tolist(), s[0].tolist()
        out[name] = d
    return out


def findings(res: dict) -> list[dict]:
    """Every row of the findings table, in the order of the issue."""
    n_boot = int((res.get("config") or {}).get("n_boot", 1000))
    seed = int((res.get("config") or {}).get("seed", 0))
    series = entropy_series_of(res)
    return [claim_passk(res, n_boot, seed), claim_entropy_collapse(series),
            claim_proposer_above(series), claim_frozen_entropy(series), claim_sparsity(res),
            *claim_curriculum(res), claim_peak50(res, n_boot, seed),
            claim_transfer(res, n_boot, seed)]


# ----------------------------------------------------------------------------------------------
# results.md
# ----------------------------------------------------------------------------------------------
def heldout_rows(metrics: list[dict]) -> list[dict]:
    """Held-out accuracies a run logged (metrics eval/*accuracy keys): first and last logged
    value of each key with its standard error (eval/<t>/se, eval/se or <key>_se)."""
    keys = sorted({k for m in metrics for k in m if k.startswith("eval/") and k.endswith("accuracy")},
                  key=lambda k: (k != "eval/accuracy", k))
    rows = []
    for key in keys:
        pts = [m for m in metrics if isinstance(m.get(key), (int, float)) and "step" in m]
        if not pts:
            continue
        pts.sort(key=lambda m: m["step"])
        se_keys = (key + "_se", key.rsplit("/", 1)[0] + "/se")

        def se(m):
            return next((m[k] for k in se_keys if isinstance(m.get(k), (int, float))), None)

        rows.append({"key": key, "first_step": pts[0]["step"], "first": pts[0][key],
                     "first_se": se(pts[0]), "last_step": pts[-1]["step"], "last": pts[-1][key],
                     "last_se": se(pts[-1]), "n": pts[-1].get("eval/n")})
    return rows


def paired_heldout(evals: list[dict], clusters: dict[str, list] | None = None) -> dict | None:
    """Gain of the mean held-out accuracy from the first to the last evaluation in a self-play
    run's eval.jsonl (per-task 0/1 strings), with the paired SE of selfplay.paired_gain: the same
    tasks are scored both times; and with `clusters` (each task's program id) also the SE that
    counts a program once (`cluster_se`). None when the run has fewer than two evaluations."""
    import selfplay

    evals = sorted((e for e in evals if isinstance(e.get("correct"), dict)), key=lambda e: e["step"])
    if len(evals) < 2:
        return None
    first, last = ({t: [int(c) for c in v] for t, v in e["correct"].items()}
                   for e in (evals[0], evals[-1]))
    gain, se = selfplay.paired_gain(first, last)
    cluster_se = selfplay.paired_gain(first, last, clusters)[1] if clusters else None
    return {"first_step": evals[0]["step"], "last_step": evals[-1]["step"], "gain": gain, "se": se,
            "cluster_se": cluster_se,
            "per_type": {t: (sum(last[t]) - sum(first[t])) / len(first[t]) for t in first if t in last}}


def eval_clusters(run_dir: Path) -> dict[str, list[int]] | None:
    """Program id of each held-out task of a self-play run, from the evaluation set its
    config.json names (eval_n, eval_seed, n_inputs); None when the config lacks them."""
    try:
        cfg = json.loads((run_dir / "config.json").read_text())
        n, seed, n_inputs = cfg["eval_n"], cfg["eval_seed"], cfg["resolved"]["n_inputs"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return _program_ids(n, seed, n_inputs)


@functools.lru_cache(maxsize=None)
def _program_ids(n: int, seed: int, n_inputs: int) -> dict[str, list[int]]:
    """selfplay.program_ids of one evaluation set, built once for the runs that share it."""
    import selfplay

    return selfplay.program_ids(selfplay.build_eval_sets(n, seed, n_inputs))


def _acc(v, se) -> str:
    return f"{v:.3f}" + (f" ± {se:.3f}" if se is not None else "")


def _cell(x) -> str:
    """Text safe inside a markdown table cell (pipes escaped, one line)."""
    return str(x).replace("|", "\\|").replace("\n", " ")


def command_line(cfg: Config) -> str:
    """`python reproduce.py` with the flags that differ from the defaults, leaving out --only and
    --dry-run (they choose which stages one call runs, not what the stages compute)."""
    args = []
    for f in fields(Config):
        v = getattr(cfg, f.name)
        if v != f.default and f.name not in ("only", "dry_run"):
            args += [f"--{f.name.replace('_', '-')}", str(v)]
    return shlex.join(["python", "reproduce.py", *args])


def _commits(record: dict) -> list[str]:
    """A stage record's commits as a list (a stage resumed across commits records a list)."""
    c = record.get("commit")
    return c if isinstance(c, list) else [c] if c else []


def commits_of(records: dict) -> list[str]:
    """Every commit the stages' attempts started from, sorted."""
    return sorted({c for r in records.values() for c in _commits(r)})


def write_results(cfg: Config, records: dict, res: dict, analysis: Path,
                  results: Path) -> tuple[Path, list[dict]]:
    """<results>/results.md, the analysis figures and analyze's full report (analysis.md).
    Returns the path of results.md and the findings rows."""
    # the commit before this call touches results/ (its own copies would make it "-dirty")
    commit = git_commit() or "unknown (not a git checkout)"
    results.mkdir(parents=True, exist_ok=True)
    figures = [f for f in res.get("figures", []) if (analysis / f).exists()]
    for f in figures:
        shutil.copy2(analysis / f, results / f)
    if (analysis / "report.md").exists():
        shutil.copy2(analysis / "report.md", results / "analysis.md")
    rows = findings(res)
    stage_commits = commits_of(records)
    machine = machine_summary()
    here = machine_line({**machine, "load_average": None})
    elsewhere = sorted({machine_line({**r["machine"], "load_average": None}) for r in records.values()
                        if r.get("machine")} - {here})
    total = sum(r.get("wall_seconds") or 0 for r in records.values())

    L = ["# zeroplay: Chae et al. (arXiv 2510.27072) reproduced at toy scale", "",
         f"Written by `reproduce.py` on {time.strftime('%Y-%m-%d %H:%M')}. Every number below comes "
         f"from the runs listed under *Stages*.", "",
         f"- **Command:** `{command_line(cfg)}` (budget: {cfg.budget})"
         + (f"; this page was rewritten by a call with `--only {cfg.only}`" if cfg.only else ""),
         f"- **Commit:** `{commit}`" + (f" (stages ran at {', '.join(f'`{c}`' for c in stage_commits)})"
                                       if stage_commits and stage_commits != [commit] else ""),
         f"- **Machine:** {machine_line(machine)}",
         *([f"- **Some stages ran on:** {'; and '.join(elsewhere)}"] if elsewhere else []),
         f"- **Base model:** `{rel(res['base']) if res.get('base') else '?'}`",
         f"- **Wall time:** {_minutes(total)} ({total / 3600:.2f} h) over all stages, base build included",
         "",
         "## Findings", "",
         "| # | claim (Chae et al. 2025) | measured | uncertainty | verdict |", "|---|---|---|---|---|"]
    L += [f"| {i} | {_cell(r['claim'])} | {_cell(r['measured'])} | {_cell(r['uncertainty'])} | "
          f"**{_cell(r['verdict'])}** |" for i, r in enumerate(rows, 1)]
    L += ["", "How a verdict is decided (reproduce.py, section *Verdicts*): *reproduced* when the 95% "
          "interval lies on the claimed side, *not reproduced* when it lies on the other side (or, for "
          "an ordering, the order is violated), *inconclusive* otherwise or when a number is missing. "
          "pass@k: self-play's pass@1 gain must exclude 0 while at the largest k self-play is not "
          "significantly above the base. Entropy collapse: a significant fall of at least 10% from "
          "the first to the last 10% of steps. Peak50: reproduced only if significantly below "
          "learnability. Transfer: a change whose interval excludes 0 (either sign). Sparsity is an "
          "exact count on one seed per method, so its verdict carries no run-to-run uncertainty.",
          ""]

    pk = res.get("passk") or {}
    if pk:
        L += ["## pass@k per eval set (value [95% bootstrap CI])", "",
              "| set | model | pass@1 | pass@k_max | k_max |", "|---|---|---|---|---|"]
        for set_name, by in pk.items():
            for label, st in by.items():
                L.append(f"| {set_name} | {label} | {st['curve'][0]:.3f} [{st['lo'][0]:.3f}, "
                         f"{st['hi'][0]:.3f}] | {st['curve'][-1]:.3f} [{st['lo'][-1]:.3f}, "
                         f"{st['hi'][-1]:.3f}] | {st['ks'][-1]} |")
        L.append("")

    import analyze as A

    L += ["## Held-out accuracy logged by each run (greedy, metrics.jsonl)", "",
          "| run | metric | first (step) | final (step) | problems |", "|---|---|---|---|---|"]
    for name, info in (res.get("runs") or {}).items():
        p = Path(info["path"])
        for r in heldout_rows(A.read_jsonl((p if p.is_absolute() else REPO / p) / "metrics.jsonl")):
            L.append(f"| {name} | {r['key']} | {_acc(r['first'], r['first_se'])} ({r['first_step']}) | "
                     f"{_acc(r['last'], r['last_se'])} ({r['last_step']}) | {r['n'] or '–'} |")
    L += ["", "± is one standard error; step 0 is the base model before training.", ""]
    paired = []
    for name, info in (res.get("runs") or {}).items():
        p = Path(info["path"])
        d = p if p.is_absolute() else REPO / p
        if (d / "eval.jsonl").exists() and (g := paired_heldout(A.read_jsonl(d / "eval.jsonl"),
                                                                eval_clusters(d))):
            per = ", ".join(f"{t} {v:+.3f}" for t, v in g["per_type"].items())
            pm, ratio = (f" ± {g['se']:.3f}", f"{g['gain'] / g['se']:+.1f}") if g["se"] > 0 else ("", "–")
            cse = g["cluster_se"]
            cl = (f"{cse:.3f} ({g['gain'] / cse:+.1f})" if cse and cse > 0 else "–")
            paired.append(f"| {name} | {g['first_step']} → {g['last_step']} | {g['gain']:+.3f}{pm} | "
                          f"{ratio} | {cl} | {per} |")
    if paired:
        L += ["Self-play held-out gain, paired over the same tasks (eval.jsonl; ± is the paired SE; "
              "the clustered SE counts each held-out program once, since many tasks share one):", "",
              "| run | steps | gain (mean over types) | gain / SE | clustered SE (gain / SE) | per type |",
              "|---|---|---|---|---|---|", *paired, ""]

    L += ["## Stages", "", "| stage | wall time | attempts | commit | finished | command |",
          "|---|---|---|---|---|---|"]
    for name in STAGES:
        r = records.get(name)
        if r is None:
            continue
        cmd = r.get("command") or []
        short = ", ".join(x[:7] + ("-dirty" if x.endswith("-dirty") else "")
                          for x in _commits(r)) or "–"
        L.append(f"| {name} | {_minutes(r.get('wall_seconds'))} | {r.get('attempts', '–')} | "
                 f"{short} | {r.get('finished') or r.get('note') or '–'} | `{_cell(shlex.join(cmd))}` |")
    L += ["", "Wall time sums every attempt of a stage (interrupted ones included).", ""]

    if figures:
        L += ["## Figures", ""]
        L += [f"![{f}]({f})" for f in figures] + [""]
    notes = res.get("notes") or []
    L += ["## Analysis", "", "The full analysis report (all tables) is [analysis.md](analysis.md)."]
    if notes:
        L += ["", "Skipped or degraded analyses:", ""] + [f"- {_cell(x)}" for x in notes]
    path = results / "results.md"
    path.write_text("\n".join(L) + "\n")
    return path, rows


# ----------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------
def main(cfg: Config, stages: list[Stage] | None = None) -> dict:
    """Run the selected stages in order (skipping complete ones), then write results/. `stages`
    (tests) replaces the real stage list. Returns {stage: record}."""
    selected = check_config(cfg)
    out = Path(cfg.out).resolve()
    stages = stages if stages is not None else stage_list(cfg, out)
    if cfg.dry_run:
        for st in stages:
            state = "complete" if st.record.exists() or (st.done_file and st.done_file.exists()) \
                else "to run" if st.name in selected else "not in --only"
            print(f"[reproduce] {st.name:<16} {state:<13} python {shlex.join(st.cmd)}")
        return {}
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    print(f"[reproduce] budget {cfg.budget}, stages {', '.join(selected)} → {rel(out)}", flush=True)
    records, ran = {}, []
    for st in stages:
        if st.name not in selected:
            if st.record.exists():
                records[st.name] = json.loads(st.record.read_text())
            print(f"[reproduce] {st.name}: not in --only, skipping", flush=True)
            continue
        if st.name == "analyze" and ran and st.record.exists():  # its inputs changed this call
            st.record.unlink()
            print(f"[reproduce] analyze: {', '.join(ran)} ran again, so the analysis is redone",
                  flush=True)
        before = st.record.exists() or (st.done_file is not None and st.done_file.exists())
        records[st.name] = run_stage(st, cfg, out)
        if not before:
            ran.append(st.name)
    print(f"[reproduce] stages finished in {_minutes(time.time() - t0)} this call", flush=True)

    analysis = next((st.folder for st in stages if st.name == "analyze"), out / "analysis")
    res_path = analysis / "results.json"
    if "analyze" in selected and res_path.exists():
        res = json.loads(res_path.read_text())
        path, rows = write_results(cfg, records, res, analysis, Path(cfg.results).resolve())
        print(f"[reproduce] wrote {rel(path)}", flush=True)
        for r in rows:
            print(f"  {r['verdict']:<45} {r['claim']}")
    elif "analyze" in selected:
        print(f"[reproduce] no {rel(res_path)}: results.md not written", flush=True)
    return records


def parse_args(argv=None) -> Config:
    return M.parse_config(Config, argv, description=__doc__.split("\n\n")[0])


if __name__ == "__main__":
    main(parse_args())
