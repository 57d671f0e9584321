"""reproduce.py — the study of Chae et al. 2025 at toy scale, in one command.

    python reproduce.py                     # runs/repro/<stage>/, then results/
    python reproduce.py --only analyze      # redo the analysis of finished runs

Stages: self-play (learnability reward, peak50 reward, frozen proposer), RLVR and SFT from the
shipped toy base with each script's defaults, then analyze.py over the five. Each is the script's
own command with --resume (an interrupted study goes on from the last checkpoint); one whose
summary.json exists is done and skipped. Claims and verdicts are analyze.py's; this copies them.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import model as M

STAGES = {"selfplay": ["selfplay.py"],
          "selfplay-peak50": ["selfplay.py", "--proposer-reward", "peak50"],
          "selfplay-frozen": ["selfplay.py", "--freeze-proposer"],
          "rlvr": ["rlvr.py"], "sft": ["sft.py"]}


@dataclass
class Config:
    """reproduction"""
    out: str = "runs/repro"        # the stages' run folders and logs
    results: str = "results"       # where results.md and the figures are copied
    seed: int = 0                  # --seed of every stage
    only: str = ""                 # comma-separated stages to run (default: all, then analyze)


def run_stage(cmd: list[str], log: Path) -> float:
    """Run one command from the repository root, its output shown and appended to `log`;
    returns the wall minutes. A failing stage stops the study with its log named."""
    t0 = time.time()
    with open(log, "a") as fh:
        proc = subprocess.Popen([sys.executable, *cmd], cwd=M.REPO, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            sys.stdout.write(line)
            fh.write(line)
    M.check(proc.wait() == 0, f"[reproduce] {' '.join(cmd)} failed (exit {proc.returncode}); "
                              f"see {log}. Run reproduce.py again to resume it.")
    return (time.time() - t0) / 60


def main(cfg: Config) -> dict:
    stages = [*STAGES, "analyze"]
    only = [s.strip() for s in cfg.only.split(",") if s.strip()] or stages
    M.check(set(only) <= set(stages), f"--only {cfg.only!r}: stages are {', '.join(stages)}")
    out = Path(cfg.out).resolve()  # the stages run in the repository root
    out.mkdir(parents=True, exist_ok=True)
    minutes = {}
    for name, cmd in STAGES.items():
        folder = out / name
        if name in only and not (folder / "summary.json").exists():
            M.say(f"[reproduce] stage {name}")
            minutes[name] = run_stage([*cmd, "--out", str(folder), "--seed", str(cfg.seed),
                                       "--resume"], out / f"{name}.log")
    if "analyze" in only:
        minutes["analyze"] = run_stage(["analyze.py", "--runs", *[str(out / s) for s in STAGES],
                                        "--out", str(out / "analysis"), "--seed", str(cfg.seed)],
                                       out / "analyze.log")
        res = Path(cfg.results).resolve()
        res.mkdir(parents=True, exist_ok=True)
        for f in (out / "analysis").glob("*.png"):
            shutil.copy(f, res / f.name)
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=M.REPO,
                                capture_output=True, text=True).stdout.strip()
        (res / "results.md").write_text(
            f"# Reproduction at toy scale\n\n`python reproduce.py --out {cfg.out} --seed "
            f"{cfg.seed}` at commit {commit}; minutes per stage this call: {minutes}\n\n"
            + (out / "analysis" / "report.md").read_text().split("\n", 1)[1])
        M.say(f"[reproduce] {res / 'results.md'}")
    return minutes


if __name__ == "__main__":
    main(M.parse_flags(Config, doc=__doc__))
