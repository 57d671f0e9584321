"""Tests for reproduce.py: the verdict rules on hand-made numbers, the small statistics, the stage
bookkeeping (skip, resume, start over, fail) with tiny `python -c` stages, the stage commands
against each script's own parser, and results.md from a results.json made by analyze's writer."""
import json
import math
from pathlib import Path

import pytest
import torch

import reproduce as R

NAN = float("nan")


# ---------------------------------------------------------------------------------------------
# verdicts: every value reachable, nan/None never decides
# ---------------------------------------------------------------------------------------------
def test_verdict_sign():
    assert R.verdict_sign(0.1, 0.3, +1) == R.REPRODUCED
    assert R.verdict_sign(-0.3, -0.1, +1) == R.NOT_REPRODUCED
    assert R.verdict_sign(-0.1, 0.1, +1) == R.INCONCLUSIVE
    assert R.verdict_sign(-0.3, -0.1, -1) == R.REPRODUCED          # claimed negative
    assert R.verdict_sign(0.1, 0.3, -1) == R.NOT_REPRODUCED
    assert R.verdict_sign(0.0, 0.0, -1) == R.INCONCLUSIVE          # a point interval at 0
    assert R.verdict_sign(NAN, 0.3, +1) == R.INCONCLUSIVE
    assert R.verdict_sign(None, 0.3, +1) == R.INCONCLUSIVE
    with pytest.raises(ValueError):
        R.verdict_sign(0.1, 0.2, 0)


def test_verdict_change():
    assert R.verdict_change(0.01, 0.05, 0.02) == R.REPRODUCED
    assert R.verdict_change(-0.05, -0.01, 0.02) == R.REPRODUCED     # either sign is a change
    assert R.verdict_change(-0.01, 0.015, 0.02) == R.NOT_REPRODUCED  # within ±2 pts
    assert R.verdict_change(-0.10, 0.10, 0.02) == R.INCONCLUSIVE
    assert R.verdict_change(NAN, NAN, 0.02) == R.INCONCLUSIVE


def test_verdict_collapse():
    assert R.verdict_collapse(-0.5, -0.6, -0.4) == R.REPRODUCED
    assert R.verdict_collapse(-0.10, -0.15, -0.05) == R.REPRODUCED     # exactly the 10% margin
    assert R.verdict_collapse(-0.05, -0.08, -0.02) == R.NOT_REPRODUCED  # significant but < 10%
    assert R.verdict_collapse(0.2, 0.1, 0.3) == R.NOT_REPRODUCED        # rises
    assert R.verdict_collapse(-0.3, -0.7, 0.1) == R.INCONCLUSIVE        # too noisy
    assert R.verdict_collapse(-0.3, NAN, 0.1) == R.INCONCLUSIVE


def test_verdict_passk():
    assert R.verdict_passk(0.05, 0.20, -0.10, 0.05) == R.REPRODUCED      # gain at 1, tie at k_max
    assert R.verdict_passk(0.05, 0.20, -0.30, -0.10) == R.REPRODUCED     # base above at k_max
    assert R.verdict_passk(0.05, 0.20, 0.01, 0.10) == R.NOT_REPRODUCED   # self-play above at k_max
    assert R.verdict_passk(-0.20, -0.05, -0.10, 0.10) == R.NOT_REPRODUCED  # pass@1 falls
    assert R.verdict_passk(-0.05, 0.10, -0.10, 0.10) == R.INCONCLUSIVE
    assert R.verdict_passk(0.05, 0.20, NAN, 0.10) == R.INCONCLUSIVE


def test_verdict_between():
    assert R.verdict_between(0.05, 0.45, 0.95) == R.REPRODUCED
    assert R.verdict_between(0.45, 0.05, 0.95) == R.NOT_REPRODUCED
    assert R.verdict_between(0.05, 0.99, 0.95) == R.NOT_REPRODUCED
    assert R.verdict_between(0.05, 0.05, 0.95) == R.INCONCLUSIVE        # tie
    assert R.verdict_between(None, 0.5, 0.9) == R.INCONCLUSIVE


# ---------------------------------------------------------------------------------------------
# statistics
# ---------------------------------------------------------------------------------------------
def test_window_stats_and_relative_change_hand_values():
    # w = max(2, 6 // 10) = 2: first window [1, 3] (mean 2, sd √2, se 1), last [2, 4] (mean 3, se 1)
    assert R.window_stats([1, 3, 5, 5, 2, 4]) == pytest.approx((2.0, 1.0, 3.0, 1.0))
    c = R.relative_change([1, 3, 5, 5, 2, 4])
    half = R.Z95 * math.sqrt(2) / 2
    assert c["change"] == pytest.approx(0.5)
    assert (c["lo"], c["hi"]) == pytest.approx((0.5 - half, 0.5 + half))
    assert R.window_stats([1, 2, 3]) is None                   # two disjoint windows need 4 points
    assert R.relative_change([0, 0, 1, 1]) is None             # start 0: no relative change
    # 40 points: windows of 4
    assert R.window_stats(list(range(40)))[0] == pytest.approx(1.5)
    assert R.window_stats(list(range(40)))[2] == pytest.approx(37.5)


def test_paired_mean_ci():
    ci = R.paired_mean_ci([1.0, 3.0])                          # mean 2, sd √2, se 1
    assert (ci["mean"], ci["lo"], ci["hi"], ci["n"]) == pytest.approx((2.0, 2 - R.Z95, 2 + R.Z95, 2))
    assert R.paired_mean_ci([1.0]) is None


def test_paired_passk_diff():
    # every problem: run 2/4 correct, base 1/4 → pass@1 diff 0.25 exactly, pass@4 diff 0
    d = R.paired_passk_diff([2, 2, 2], [1, 1, 1], 4, [1, 4], n_boot=50)
    assert d["diff"] == pytest.approx([0.25, 0.0])
    assert d["lo"] == pytest.approx([0.25, 0.0]) and d["hi"] == pytest.approx([0.25, 0.0])
    assert d["run"] == pytest.approx([0.5, 1.0]) and d["base"] == pytest.approx([0.25, 1.0])
    # one problem solved always by the run, never by the base; one never by either
    d = R.paired_passk_diff([4, 0], [0, 0], 4, [1], n_boot=200)
    assert d["diff"] == pytest.approx([0.5]) and 0.0 <= d["lo"][0] <= 0.5 <= d["hi"][0] <= 1.0
    with pytest.raises(ValueError):
        R.paired_passk_diff([1, 2], [1], 4, [1])


def test_heldout_rows_selfplay_and_rlvr_keys():
    sp = [{"step": 0, "eval/accuracy": 0.1, "eval/se": 0.01, "eval/deduction/accuracy": 0.2,
           "eval/deduction/se": 0.03},
          {"step": 5, "solve/deduction/accuracy": 0.9},              # training accuracy: not eval
          {"step": 10, "eval/accuracy": 0.15, "eval/se": 0.012, "eval/deduction/accuracy": 0.3,
           "eval/deduction/se": 0.04}]
    rows = R.heldout_rows(sp)
    assert [r["key"] for r in rows] == ["eval/accuracy", "eval/deduction/accuracy"]
    assert (rows[0]["first"], rows[0]["first_se"], rows[0]["last"], rows[0]["last_se"],
            rows[0]["last_step"]) == (0.1, 0.01, 0.15, 0.012, 10)
    assert rows[1]["last_se"] == 0.04
    rl = [{"step": 0, "eval/accuracy": 0.09, "eval/accuracy_se": 0.017, "eval/n": 300},
          {"step": 250, "eval/accuracy": 0.1, "eval/accuracy_se": 0.018, "eval/n": 300}]
    (r,) = R.heldout_rows(rl)
    assert (r["first_se"], r["last"], r["n"]) == (0.017, 0.1, 300)


def test_paired_heldout_first_to_last():
    ev = [{"step": 20, "correct": {"a": "0110", "b": "1100"}},   # out of order on purpose
          {"step": 0, "correct": {"a": "0100", "b": "1100"}},
          {"step": 40, "correct": {"a": "1101", "b": "1000"}}]
    g = R.paired_heldout(ev)
    # first = step 0, last = step 40: a: d = [1,0,0,1] (+0.5), b: d = [0,-1,0,0] (-0.25)
    assert (g["first_step"], g["last_step"]) == (0, 40)
    assert g["gain"] == pytest.approx(0.125)
    assert g["se"] == pytest.approx(math.sqrt(1 / 12 + 1 / 16) / 2)
    assert g["per_type"] == {"a": 0.5, "b": -0.25} and g["cluster_se"] is None
    assert R.paired_heldout(ev[:1]) is None and R.paired_heldout([]) is None
    # clustered by program: u = (d - mean) / (n T); a -> [1, -1, -1, 1]/16, b -> [1, -3, 1, 1]/32
    # clusters 0: a0 + a1 + b0 = 1/32; 1: -1/16; 2: 1/16; 3: -3/32; 4: 1/32; 5: 1/32
    # SE^2 = 6/5 * (1 + 4 + 4 + 9 + 1 + 1) / 1024
    g = R.paired_heldout(ev, {"a": [0, 0, 1, 2], "b": [0, 3, 4, 5]})
    assert g["cluster_se"] == pytest.approx(math.sqrt(6 / 5 * 20 / 1024))
    assert g["se"] == pytest.approx(math.sqrt(1 / 12 + 1 / 16) / 2)


def test_eval_clusters_from_run_config(tmp_path):
    assert R.eval_clusters(tmp_path) is None  # no config.json
    (tmp_path / "config.json").write_text(json.dumps({"eval_n": 6, "eval_seed": 1234,
                                                      "resolved": {"n_inputs": 6}}))
    ids = R.eval_clusters(tmp_path)
    assert sorted(ids) == ["abduction", "deduction", "induction"]
    assert all(len(v) == 6 for v in ids.values()) and ids["deduction"] == ids["abduction"]


def test_since_last_completion():
    a = [{"exit": 0, "seconds": 5}, {"exit": None, "seconds": 2}, {"exit": 1, "seconds": 3},
         {"exit": 0, "seconds": 4}]
    assert R.since_last_completion(a) == a[1:]          # the earlier completion is not counted
    assert R.since_last_completion(a[:1]) == a[:1]
    assert R.since_last_completion([]) == []


def test_findings_on_empty_results_are_all_missing():
    rows = R.findings({})
    assert len(rows) == 9
    assert all(r["verdict"].startswith("inconclusive (missing:") for r in rows)


def test_check_config_and_command_line():
    with pytest.raises(SystemExit, match="--budget"):
        R.check_config(R.Config(budget="medium"))
    with pytest.raises(SystemExit, match="unknown stage.*selfplai"):
        R.check_config(R.Config(only="selfplay,selfplai"))
    assert R.check_config(R.Config(only="sft, analyze")) == ["sft", "analyze"]
    assert R.check_config(R.Config()) == list(R.STAGES)
    assert R.command_line(R.Config()) == "python reproduce.py"
    assert R.command_line(R.Config(budget="quick", seed=3)) == \
        "python reproduce.py --budget quick --seed 3"
    assert R.command_line(R.Config(only="analyze", dry_run=True)) == "python reproduce.py"
    cfg = R.parse_args(["--budget", "quick", "--only", "sft", "--dry-run"])
    assert (cfg.budget, cfg.only, cfg.dry_run) == ("quick", "sft", True)


# ---------------------------------------------------------------------------------------------
# the real stage commands: each parses with its own script's parser
# ---------------------------------------------------------------------------------------------
def test_stage_commands_parse_with_each_script(tmp_path, monkeypatch):
    import analyze
    import model as M
    import pretrain
    import rlvr
    import selfplay
    import sft

    parsers = {"pretrain.py": pretrain.parse_args, "selfplay.py": selfplay.parse_args,
               "rlvr.py": rlvr.parse_args, "sft.py": sft.parse_args, "analyze.py": analyze.parse_args}
    monkeypatch.setattr(M, "TOY_BASE", str(tmp_path / "no-base-here"))
    for budget in ("full", "quick"):
        out = tmp_path / budget
        stages = R.stage_list(R.Config(budget=budget), out)
        assert [s.name for s in stages] == list(R.STAGES)
        for st in stages:
            parsed = parsers[st.cmd[0]](st.cmd[1:])
            assert Path(parsed.out).resolve() == st.folder.resolve()
            if st.cmd[0] == "selfplay.py":
                selfplay.check_config(parsed)                   # the checks main() makes first
        by = {s.name: s for s in stages}
        sp = parsers["selfplay.py"](by["selfplay-peak50"].cmd[1:])
        assert sp.proposer_reward == "peak50" and not sp.freeze_proposer
        assert parsers["selfplay.py"](by["selfplay-frozen"].cmd[1:]).freeze_proposer
        a = parsers["analyze.py"](by["analyze"].cmd[1:])
        assert [Path(r).name for r in a.runs] == list(R.RUNS)
    # full budget: the scripts' defaults, only --out/--model/--seed/--save-every and the variants
    full = {s.name: s for s in R.stage_list(R.Config(), tmp_path / "full")}
    allowed = {"--out", "--model", "--seed", "--save-every", "--proposer-reward", "--freeze-proposer",
               "--runs"}
    for st in full.values():
        assert {a for a in st.cmd if a.startswith("--")} <= allowed, st.cmd
    assert full["base"].folder == Path(M.TOY_BASE)            # full builds the shared base
    quick = {s.name: s for s in R.stage_list(R.Config(budget="quick"), tmp_path / "quick")}
    assert quick["base"].folder == tmp_path / "quick" / "toy-base"  # no base: a small one of its own
    assert "--model" in quick["sft"].cmd and quick["sft"].cmd[quick["sft"].cmd.index("--model") + 1] \
        == str(tmp_path / "quick" / "toy-base")
    assert "base" not in {s.name for s in R.stage_list(R.Config(model="some/hub-model"), tmp_path / "x")}
    with_threads = R.stage_list(R.Config(threads=2), tmp_path / "t")
    assert all("--threads" in s.cmd for s in with_threads if s.name != "analyze")


# ---------------------------------------------------------------------------------------------
# bookkeeping with tiny python -c stages
# ---------------------------------------------------------------------------------------------
STAGE_CODE = """
import json, sys, pathlib
folder = pathlib.Path({folder!r})
folder.mkdir(parents=True, exist_ok=True)
with open({counter!r}, "a") as f:
    f.write(json.dumps({{"stage": {name!r}, "argv": sys.argv[1:]}}) + "\\n")
print("hello from {name}", flush=True)
sys.exit({rc})
"""


def fake_stage(root: Path, name: str, rc: int = 0, resumable: bool = True) -> R.Stage:
    folder = root / "out" / name
    code = STAGE_CODE.format(folder=str(folder), counter=str(root / "calls.jsonl"), name=name, rc=rc)
    return R.Stage(name, ["-c", code], folder=folder, record=folder / "stage.json", resumable=resumable)


def calls(root: Path) -> list[dict]:
    p = root / "calls.jsonl"
    return [json.loads(x) for x in p.read_text().splitlines()] if p.exists() else []


def test_stages_run_then_skip(tmp_path, capsys):
    cfg = R.Config(out=str(tmp_path / "out"), results=str(tmp_path / "results"))
    stages = [fake_stage(tmp_path, "selfplay"), fake_stage(tmp_path, "sft")]
    recs = R.main(cfg, stages)
    assert [c["stage"] for c in calls(tmp_path)] == ["selfplay", "sft"]
    assert all(c["argv"] == [] for c in calls(tmp_path))            # fresh runs: no --resume
    for name in ("selfplay", "sft"):
        rec = json.loads((tmp_path / "out" / name / "stage.json").read_text())
        assert rec["command"][0] == "python" and rec["wall_seconds"] >= 0 and rec["attempts"] == 1
        assert rec["machine"]["cpu_count"] >= 1 and "finished" in rec
        assert "hello from " + name in (tmp_path / "out" / f"{name}.log").read_text()
    assert recs["sft"]["stage"] == "sft"
    assert "hello from selfplay" in capsys.readouterr().out         # streamed to the terminal
    R.main(cfg, stages)                                             # second call: nothing runs
    assert len(calls(tmp_path)) == 2
    assert "selfplay: done earlier" in capsys.readouterr().out


def test_record_names_the_commit_the_stage_started_from(tmp_path, monkeypatch):
    """A commit made while a stage runs must not be credited with its results."""
    commits = iter(["aaa111", "bbb222", "bbb222"])
    monkeypatch.setattr(R, "git_commit", lambda: next(commits))
    cfg = R.Config(out=str(tmp_path / "out"))
    R.main(cfg, [fake_stage(tmp_path, "sft")])
    rec = json.loads((tmp_path / "out" / "sft" / "stage.json").read_text())
    assert rec["commit"] == "aaa111"


def test_interrupted_stage_resumes_or_starts_over(tmp_path, capsys):
    cfg = R.Config(out=str(tmp_path / "out"))
    with_ckpt, without = fake_stage(tmp_path, "selfplay"), fake_stage(tmp_path, "rlvr")
    ck = with_ckpt.folder / "checkpoints" / "step_000010"
    ck.mkdir(parents=True)
    (ck / "config.json").write_text("{}")
    without.folder.mkdir(parents=True)
    (without.folder / "metrics.jsonl").write_text('{"step": 1}\n')   # logs, but no checkpoint
    R.main(cfg, [with_ckpt, without])
    argv = {c["stage"]: c["argv"] for c in calls(tmp_path)}
    assert argv == {"selfplay": ["--resume"], "rlvr": []}
    aside = [p for p in (tmp_path / "out").iterdir() if p.name.startswith("rlvr.partial-")]
    assert len(aside) == 1 and (aside[0] / "metrics.jsonl").exists()  # kept, not deleted
    assert not (without.folder / "metrics.jsonl").exists()
    out = capsys.readouterr().out
    assert "resuming from its last checkpoint" in out and "starting over" in out


def test_killed_attempt_is_recovered_from_its_heartbeat(tmp_path):
    # reproduce.py killed mid-stage (no `finally`): only <stage>.running.json is left
    out = tmp_path / "out"
    out.mkdir()
    R.running_file(out, "selfplay").write_text(json.dumps(
        {"stage": "selfplay", "started": "2026-01-01 10:00:00", "seconds": 345.0,
         "resumed": False, "commit": "abc"}))
    stage = fake_stage(tmp_path, "selfplay")
    ck = stage.folder / "checkpoints" / "step_000010"
    ck.mkdir(parents=True)
    (ck / "config.json").write_text("{}")
    R.main(R.Config(out=str(out)), [stage])
    tries = R.attempts_of(out, "selfplay")
    assert [(t["exit"], t.get("lost", False)) for t in tries] == [(None, True), (0, False)]
    rec = json.loads(stage.record.read_text())
    assert rec["attempts"] == 2 and rec["wall_seconds"] >= 345.0   # the lost time is counted
    assert rec["commit"][0] == "abc"                               # both attempts' commits
    assert not R.running_file(out, "selfplay").exists()            # removed after the attempt
    assert R.commits_of({"selfplay": rec, "sft": {"commit": "abc"}, "base": {}}) == \
        sorted({"abc", *rec["commit"]})                            # results.md lists them all
    # an unreadable heartbeat still counts as an attempt (of unknown length)
    R.running_file(out, "rlvr").write_text('{"stage": "rl')
    assert R.recover_lost_attempt(out, "rlvr")["seconds"] == 0.0
    assert R.recover_lost_attempt(out, "rlvr") is None


def test_failing_stage_stops_with_its_name_and_log(tmp_path):
    cfg = R.Config(out=str(tmp_path / "out"))
    stages = [fake_stage(tmp_path, "selfplay"), fake_stage(tmp_path, "rlvr", rc=3),
              fake_stage(tmp_path, "sft")]
    with pytest.raises(SystemExit, match=r"stage rlvr failed \(exit code 3\).*rlvr\.log"):
        R.main(cfg, stages)
    assert [c["stage"] for c in calls(tmp_path)] == ["selfplay", "rlvr"]   # sft never started
    assert not (tmp_path / "out" / "rlvr" / "stage.json").exists()
    tries = R.attempts_of(tmp_path / "out", "rlvr")
    assert len(tries) == 1 and tries[0]["exit"] == 3
    # fixed and rerun: selfplay skipped, rlvr runs again; its record counts both attempts
    stages[1] = fake_stage(tmp_path, "rlvr", rc=0)
    R.main(cfg, stages)
    assert [c["stage"] for c in calls(tmp_path)] == ["selfplay", "rlvr", "rlvr", "sft"]
    assert json.loads((tmp_path / "out" / "rlvr" / "stage.json").read_text())["attempts"] == 2


def test_only_and_rerun_analysis(tmp_path, capsys):
    cfg = R.Config(out=str(tmp_path / "out"), only="sft")
    stages = [fake_stage(tmp_path, "selfplay"), fake_stage(tmp_path, "sft"),
              fake_stage(tmp_path, "analyze", resumable=False)]
    R.main(cfg, stages)
    assert [c["stage"] for c in calls(tmp_path)] == ["sft"]
    assert "selfplay: not in --only" in capsys.readouterr().out
    R.main(R.Config(out=str(tmp_path / "out"), only="analyze"), stages)
    R.main(R.Config(out=str(tmp_path / "out")), stages)       # selfplay runs → analysis redone
    assert [c["stage"] for c in calls(tmp_path)] == ["sft", "analyze", "selfplay", "analyze"]
    assert "the analysis is redone" in capsys.readouterr().out
    assert json.loads((tmp_path / "out" / "analyze" / "stage.json").read_text())["attempts"] == 1


def test_existing_base_is_adopted_with_its_build_time(tmp_path, capsys):
    base = tmp_path / "toy-base"
    base.mkdir()
    (base / "config.json").write_text("{}")
    (base / "pretrain_report.json").write_text(json.dumps({"total_seconds": 1932}))
    st = R.Stage("base", ["-c", "raise SystemExit(9)"], folder=base,
                 record=tmp_path / "out" / "base" / "stage.json", resumable=False,
                 done_file=base / "config.json")
    recs = R.main(R.Config(out=str(tmp_path / "out")), [st])
    assert recs["base"]["wall_seconds"] == 1932 and recs["base"]["built_before"]
    assert "already built (32.2 min" in capsys.readouterr().out
    assert json.loads(st.record.read_text())["model_dir"] == str(base)


def test_dry_run_runs_nothing(tmp_path, capsys):
    R.main(R.Config(out=str(tmp_path / "out"), dry_run=True), [fake_stage(tmp_path, "sft")])
    assert calls(tmp_path) == [] and not (tmp_path / "out").exists()
    assert "sft" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# results.md from a results.json written by analyze itself (sparsity, entropy, comparison), with
# pass@k and curriculum entries built by analyze's own functions
# ---------------------------------------------------------------------------------------------
def _run(root: Path, name: str, base_path: str, rows_changed: int, metrics: list[dict]) -> str:
    """A run folder like the training scripts write: config.json, metrics.jsonl and one
    checkpoint in which `rows_changed` rows of one matrix moved (0 = the base itself)."""
    import model as M

    run = M.RunDir(str(root / name))
    run.write_config({"model": base_path, "script": "selfplay.py" if "selfplay" in name else f"{name}.py"})
    net, tok = M.load_policy(base_path, device="cpu")
    with torch.no_grad():
        net.model.layers[0].mlp.up_proj.weight[:rows_changed] += 0.05
    run.save_checkpoint(20, net, tok)
    for m in metrics:
        run.log(m["step"], {k: v for k, v in m.items() if k != "step"})
    return str(run.path)


def _selfplay_metrics(frozen: bool = False) -> list[dict]:
    rows = [{"step": 0, "eval/accuracy": 0.10, "eval/se": 0.02}]
    for t in range(1, 21):
        wiggle = 0.01 * (-1) ** t
        prop = 2.0 + wiggle if frozen else 2.0 - 0.08 * t + wiggle
        solve = 1.5 - 0.06 * t - wiggle
        rows.append({"step": t, "propose/entropy": prop, "solve/entropy": solve,
                     "entropy": (prop + solve) / 2, "propose/valid_rate": 0.7})
    rows[-1].update({"eval/accuracy": 0.12, "eval/se": 0.02})
    return rows


@pytest.fixture(scope="module")
def analysis_results(tmp_path_factory, micro_policy):
    """(analysis folder, results dict as read from results.json) for five fake runs."""
    import analyze as A

    root = tmp_path_factory.mktemp("repro")
    base = micro_policy[0]
    plain = [{"step": t, "entropy": 1.0 - 0.01 * t} for t in range(1, 6)]
    runs = [_run(root, "selfplay", base, 20, _selfplay_metrics()),
            _run(root, "selfplay-peak50", base, 20, _selfplay_metrics()),
            _run(root, "selfplay-frozen", base, 20, _selfplay_metrics(frozen=True)),
            _run(root, "rlvr", base, 2, [{"step": 0, "eval/accuracy": 0.09, "eval/accuracy_se": 0.017,
                                          "eval/n": 300}] + plain),
            _run(root, "sft", base, 60, plain)]
    (Path(runs[0]) / "eval.jsonl").write_text(          # per-task results: +1 of 4 tasks
        '{"step": 0, "correct": {"deduction": "0100"}}\n{"step": 20, "correct": {"deduction": "1100"}}\n')
    out = root / "analysis"
    A.main(A.Config(runs=runs, out=str(out), skip_passk=True, curriculum_tasks=0, n_boot=50))
    res = json.loads((out / "results.json").read_text())
    # pass@k as analyze stores it: n=4; base solves 1/4 of each code problem, self-play 3/4
    # (gain at k=1, tie at k=4); arithmetic identical for base and self-play
    a_cfg = A.Config(runs=runs, n_boot=50)
    ks = A.default_ks(4)

    def stats(counts):
        st = A.passk_stats([[True] * c + [False] * (4 - c) for c in counts], 4, ks, a_cfg)
        return {**st, "mean_len": 10.0, "cached": False}

    res["passk"] = {s: {"base": stats([1] * 10), "selfplay": stats([3] * 10),
                        "selfplay-peak50": stats([3] * 10), "selfplay-frozen": stats([2] * 10),
                        "rlvr": stats([1] * 10), "sft": stats([1] * 10)} for s in R.CODE_SETS}
    res["passk"]["arith"] = {lab: stats([1, 2] * 5) for lab in ["base", *R.RUNS]}
    steps = list(range(1, 21))
    res["curriculum"] = {"selfplay": {
        "solver_label": "selfplay final (step 20)", "n": 4, "steps": steps,
        "trend": {"solve_rate": A.trend(steps, [1 - s / 20 for s in steps], 50),
                  "response_len": A.trend(steps, [10 + s for s in steps], 50),
                  "program_chars": A.trend(steps, [30] * 20, 50)}}}
    res = json.loads(json.dumps(res, default=float))                 # as results.json holds it
    (out / "results.json").write_text(json.dumps(res))
    return out, res


def test_findings_from_analyze_results(analysis_results):
    _, res = analysis_results
    rows = R.findings(res)
    verdicts = [r["verdict"] for r in rows]
    assert verdicts == [
        R.REPRODUCED,       # pass@1 +0.5 at k=1, equal at k=4
        R.REPRODUCED,       # both roles fall by far more than 10%
        R.REPRODUCED,       # proposer above solver at every step
        R.REPRODUCED,       # frozen whole-model entropy stays higher
        R.REPRODUCED,       # sparsity: sft (60 rows) < selfplay (20) < rlvr (2 rows changed)
        R.REPRODUCED,       # solve rate falls with step (rho = -1)
        R.REPRODUCED,       # response length rises (rho = +1)
        R.INCONCLUSIVE,     # peak50 == learnability: interval [0, 0] neither side
        R.NOT_REPRODUCED,   # arithmetic identical: no change beyond ±2 pts
    ], rows
    sparsity = rows[4]
    assert "bfloat16" in sparsity["measured"] and "1e-05" in sparsity["measured"]


def test_write_results_and_main_end_to_end(analysis_results, tmp_path):
    analysis, res = analysis_results
    # an "analyze" stage that only copies the prepared analysis: main then writes results/
    out = tmp_path / "out"
    code = (f"import shutil; shutil.copytree({str(analysis)!r}, {str(out / 'analysis')!r}, "
            f"dirs_exist_ok=True)")
    stage = R.Stage("analyze", ["-c", code], folder=out / "analysis",
                    record=out / "analysis" / "stage.json", resumable=False)
    cfg = R.Config(out=str(out), results=str(tmp_path / "results"))
    R.main(cfg, [stage])
    text = (tmp_path / "results" / "results.md").read_text()
    for needle in ("**Command:** `python reproduce.py --out", "**Commit:**", "**Machine:**",
                   "CPU cores", "## Findings", "| 1 | Self-play raises pass@1", "**reproduced**",
                   "**not reproduced**", "**inconclusive**", "## pass@k per eval set",
                   "## Held-out accuracy", "| selfplay | eval/accuracy | 0.100 ± 0.020 (0) | "
                   "0.120 ± 0.020 (20) |", "paired over the same tasks",
                   "| selfplay | 0 → 20 | +0.250 ± 0.250 | +1.0 | – | deduction +0.250 |", "| rlvr | eval/accuracy | 0.090 ± 0.017 (0)", "## Stages",
                   "| analyze |", "[analysis.md](analysis.md)"):
        assert needle in text, needle
    for fig in res["figures"]:
        assert f"![{fig}]({fig})" in text
        assert (tmp_path / "results" / fig).stat().st_size > 1000
    assert (tmp_path / "results" / "analysis.md").exists()
    table = [line for line in text.splitlines() if line.startswith("| ") and "Chae" not in line
             and line.split("|")[1].strip().isdigit()]
    assert len(table) == 9   # one row per claim, five cells each (pipes inside cells escaped)
    assert all(line.replace("\\|", "").count("|") == 6 for line in table)
    assert "\\|Δ\\| ≤ 1e-05" in text
