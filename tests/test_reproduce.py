"""Tests for reproduce.py: the stage bookkeeping (run once, skip what is done, resume an
interrupted stage, stop on a failing one, --only) with tiny stand-in stages put into STAGES, the
analysis step and results/ with a stand-in analyze.py, and the real stage commands against each
script's own flag parser."""
import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import analyze as A
import model as M
import reproduce as R

# A stand-in for a training script: records its call, prints a line, and behaves as asked:
# ok (writes summary.json), fail (exit 3), or interrupt (dies once before finishing, leaving a
# checkpoint behind; the next call with --resume finishes).
STAGE_SCRIPT = """
import json, sys, pathlib
name, behaviour, calls = sys.argv[1:4]
args = sys.argv[4:]
out = pathlib.Path(args[args.index("--out") + 1])
with open(calls, "a") as f:
    f.write(json.dumps({"stage": name, "argv": args}) + "\\n")
print(f"hello from {name}", flush=True)
if behaviour == "fail":
    sys.exit(3)
out.mkdir(parents=True, exist_ok=True)
ck = out / "checkpoints" / "step_000010"
if behaviour == "interrupt" and not ck.exists():
    ck.mkdir(parents=True)
    print(f"{name} killed", flush=True)
    sys.exit(1)
(out / "summary.json").write_text(json.dumps({"stage": name, "resumed": ck.exists()}))
"""

# A stand-in for analyze.py: records its call, writes report.md and one figure.
ANALYZE_SCRIPT = """
import json, sys, pathlib
calls = sys.argv[1]
args = sys.argv[2:]
out = pathlib.Path(args[args.index("--out") + 1])
with open(calls, "a") as f:
    f.write(json.dumps({"stage": "analyze", "argv": args}) + "\\n")
out.mkdir(parents=True, exist_ok=True)
(out / "report.md").write_text("# zeroplay analysis\\n\\nBase: `b`.\\n\\n| claim | verdict |\\n"
                               "|---|---|\\n| RQ1 | reproduced |\\n\\n![entropy.png](entropy.png)\\n")
(out / "entropy.png").write_bytes(b"\\x89PNG fake")
(out / "notes.txt").write_text("not a figure")
print("analysis done", flush=True)
"""


@pytest.fixture
def study(tmp_path, monkeypatch):
    """Three stand-in stages in STAGES (behaviours set with study.set), a stand-in analyze.py;
    returns a helper with main(**cfg), calls() and the paths."""
    stage_py, analyze_py = tmp_path / "stage.py", tmp_path / "fake_analyze.py"
    stage_py.write_text(STAGE_SCRIPT)
    analyze_py.write_text(ANALYZE_SCRIPT)
    calls_file = tmp_path / "calls.jsonl"

    class Study:
        out, results, calls_path = tmp_path / "out", tmp_path / "results", calls_file

        def set(self, **behaviours):
            stages = {n: [str(stage_py), n, b, str(calls_file)] for n, b in behaviours.items()}
            monkeypatch.setattr(R, "STAGES", stages)

        def main(self, **kw):
            return R.main(R.Config(out=str(self.out), results=str(self.results), **kw))

        def calls(self):
            if not calls_file.exists():
                return []
            return [json.loads(x) for x in calls_file.read_text().splitlines()]

        def names(self):
            return [c["stage"] for c in self.calls()]

    real_run_stage = R.run_stage

    def run_stage(cmd, log):  # the analysis step runs the stand-in analyze.py
        if cmd[0] == "analyze.py":
            cmd = [str(analyze_py), str(calls_file), *cmd[1:]]
        return real_run_stage(cmd, log)

    monkeypatch.setattr(R, "run_stage", run_stage)
    s = Study()
    s.set(a="ok", b="ok", c="ok")
    return s


def test_each_stage_runs_once_then_is_skipped(study, capsys):
    minutes = study.main(seed=7)
    assert study.names() == ["a", "b", "c", "analyze"]
    for c in study.calls()[:3]:
        assert c["argv"] == ["--out", str(study.out / c["stage"]), "--seed", "7", "--resume"]
        assert (study.out / c["stage"] / "summary.json").exists()
        assert f"hello from {c['stage']}" in (study.out / f"{c['stage']}.log").read_text()
    assert set(minutes) == {"a", "b", "c", "analyze"} and all(v >= 0 for v in minutes.values())
    out = capsys.readouterr().out
    assert "hello from a" in out and "analysis done" in out        # streamed to the console
    # the analysis covers every stage's folder
    argv = study.calls()[3]["argv"]
    parsed = M.parse_flags(A.Config, argv)
    assert parsed.runs == [str(study.out / n) for n in ("a", "b", "c")]
    assert Path(parsed.out) == study.out / "analysis" and parsed.seed == 7
    # a second call: every stage is done, only the analysis is redone
    minutes = study.main(seed=7)
    assert study.names() == ["a", "b", "c", "analyze", "analyze"]
    assert set(minutes) == {"analyze"}
    assert "hello from" not in capsys.readouterr().out


def test_results_md_names_the_commit_and_copies_the_figures(study):
    study.main(seed=3)
    text = (study.results / "results.md").read_text()
    assert text.startswith("# Reproduction at toy scale")
    assert f"--out {study.out} --seed 3" in text
    m = re.search(r"at commit ([0-9a-f]{4,40})\b", text)
    assert m, text
    ok = subprocess.run(["git", "rev-parse", "--verify", "--quiet", m.group(1) + "^{commit}"],
                        cwd=M.REPO, capture_output=True, text=True)
    assert ok.returncode == 0, m.group(1)                     # a commit of this repository
    # the analysis report without its title, and its figures next to results.md
    assert "# zeroplay analysis" not in text
    assert "| RQ1 | reproduced |" in text and "![entropy.png](entropy.png)" in text
    assert (study.results / "entropy.png").read_bytes() == b"\x89PNG fake"
    assert not (study.results / "notes.txt").exists()          # figures only


def test_an_interrupted_stage_is_resumed(study, capsys):
    study.set(a="ok", b="interrupt", c="ok")
    with pytest.raises(SystemExit, match=r"exit 1.*b\.log"):
        study.main()
    assert study.names() == ["a", "b"]                         # c never started, no analysis
    assert not (study.out / "b" / "summary.json").exists()
    assert not (study.results / "results.md").exists()
    study.main()                                               # run reproduce.py again
    assert study.names() == ["a", "b", "b", "c", "analyze"]    # a done: skipped
    second = study.calls()[2]
    assert second["argv"][-1] == "--resume"
    assert json.loads((study.out / "b" / "summary.json").read_text())["resumed"] is True
    log = (study.out / "b.log").read_text()
    assert log.count("hello from b") == 2 and "b killed" in log   # both attempts, appended
    # a folder left without summary.json (reproduce.py itself killed mid-stage): run again
    (study.out / "c" / "summary.json").unlink()
    study.main()
    assert study.names()[-2:] == ["c", "analyze"]
    assert study.calls()[-2]["argv"] == ["--out", str(study.out / "c"), "--seed", "0", "--resume"]


def test_a_failing_stage_stops_the_study_with_its_name_and_log(study):
    study.set(a="ok", b="fail", c="ok")
    with pytest.raises(SystemExit) as e:
        study.main()
    msg = str(e.value)
    assert "exit 3" in msg and str(study.out / "b.log") in msg
    assert str(study.out / "b") in msg and "resume" in msg
    assert study.names() == ["a", "b"]
    assert "hello from b" in (study.out / "b.log").read_text()
    assert not (study.out / "analysis").exists()
    # fixed and rerun: a is skipped, b and c run, then the analysis
    study.set(a="ok", b="ok", c="ok")
    study.main()
    assert study.names() == ["a", "b", "b", "c", "analyze"]


def test_only(study):
    study.main(only="b")
    assert study.names() == ["b"]                              # no other stage, no analysis
    assert not (study.results / "results.md").exists()
    study.main(only="a,c")
    assert study.names() == ["b", "a", "c"]
    study.main(only="analyze")
    study.main(only="analyze")
    assert study.names() == ["b", "a", "c", "analyze", "analyze"]   # only the analysis, again
    assert (study.results / "results.md").exists()
    with pytest.raises(SystemExit, match="--only 'b,selfplai'.*a, b, c, analyze"):
        study.main(only="b,selfplai")
    assert len(study.calls()) == 5


def test_relative_out_from_another_directory(study, tmp_path, monkeypatch):
    repo, elsewhere = tmp_path / "repo", tmp_path / "elsewhere"
    repo.mkdir()
    elsewhere.mkdir()
    monkeypatch.setattr(M, "REPO", repo)          # where the stages run (the scripts' folder)
    monkeypatch.chdir(elsewhere)                  # where `python .../reproduce.py` was started
    R.main(R.Config(out="runs/repro", results="results", only="a"))
    R.main(R.Config(out="runs/repro", results="results", only="a"))
    assert study.names() == ["a"]                 # done the first time: skipped the second


# ---------------------------------------------------------------------------------------------
# the real stage commands
# ---------------------------------------------------------------------------------------------
def test_stage_commands_parse_with_each_script_and_give_the_roles(tmp_path):
    import rlvr
    import selfplay
    import sft

    configs = {"selfplay.py": selfplay.Config, "rlvr.py": rlvr.Config, "sft.py": sft.Config}
    assert list(R.STAGES) == ["selfplay", "selfplay-peak50", "selfplay-frozen", "rlvr", "sft"]
    for name, cmd in R.STAGES.items():
        folder = tmp_path / name
        cfg = M.parse_flags(configs[cmd[0]], [*cmd[1:], "--out", str(folder), "--seed", "3",
                                              "--resume"])
        assert (cfg.out, cfg.seed, cfg.resume, cfg.model) == (str(folder), 3, True, "toy")
        if cmd[0] == "selfplay.py":
            selfplay.check_config(cfg)                         # main()'s first checks
        # each stage's run folder gets the role that analyze's claims look it up by
        M.RunDir(str(folder)).write_config({**dataclasses.asdict(cfg), "script": cmd[0]})
        assert A.load_run(str(folder))["role"] == name
    peak = M.parse_flags(selfplay.Config, R.STAGES["selfplay-peak50"][1:])
    assert peak.proposer_reward == "peak50" and not peak.freeze_proposer
    # the other flags are the scripts' defaults: only the variant's own flag is set
    assert R.STAGES["selfplay"] == ["selfplay.py"] and R.STAGES["rlvr"] == ["rlvr.py"]


def test_command_line():
    cfg = M.parse_flags(R.Config, ["--only", "sft,analyze", "--seed", "2", "--out", "o"])
    assert (cfg.only, cfg.seed, cfg.out, cfg.results) == ("sft,analyze", 2, "o", "results")
    help_text = subprocess.run([sys.executable, "reproduce.py", "--help"], cwd=M.REPO,
                               capture_output=True, text=True).stdout
    assert "--only" in help_text and "--results" in help_text
