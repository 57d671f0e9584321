"""Tests for selfplay.py: reward functions, TRR++, buffers, parsing, and two self-play steps end
to end on the micro model (buffers seeded directly; the micro model proposes garbage)."""
import json
import math
import random

import pytest
import torch

import selfplay as SP


# ---------------------------------------------------------------------------------------------
# Rewards
# ---------------------------------------------------------------------------------------------
def test_solver_reward_eq6():
    assert SP.solver_reward(True, True) == 1.0
    assert SP.solver_reward(False, True) == -0.5
    assert SP.solver_reward(False, False) == -1.0
    assert SP.solver_reward(True, False) == -1.0  # a format error is never "correct"


@pytest.mark.parametrize("s,expected", [(0.0, 0.0), (1.0, 0.0), (0.125, 0.875), (0.5, 0.5),
                                        (0.75, 0.25)])
def test_learnability(s, expected):
    assert SP.proposer_reward(s) == pytest.approx(expected)


@pytest.mark.parametrize("s,expected", [(0.0, 0.0), (1.0, 0.0), (0.5, 1.0), (0.25, 0.5),
                                        (0.75, 0.5), (0.125, 0.25)])
def test_peak50(s, expected):
    assert SP.proposer_reward(s, "peak50") == pytest.approx(expected)


@pytest.mark.parametrize("s,expected", [(0.0, 0.0), (1.0, 0.0), (0.25, 1.0), (0.125, 0.5),
                                        (0.625, 0.5), (0.5, 2 / 3), (0.875, 1 / 6)])
def test_peak25(s, expected):
    assert SP.proposer_reward(s, "peak25") == pytest.approx(expected)


def test_zero_as_replaces_only_zero_role_reward():
    for kind in SP.PROPOSER_REWARDS:
        assert SP.proposer_reward(0.0, kind, zero_as=-0.5) == -0.5
        assert SP.proposer_reward(1.0, kind, zero_as=-0.5) == -0.5
    assert SP.proposer_reward(0.5, "learnability", zero_as=-0.5) == 0.5


def test_proposer_reward_bad_input():
    with pytest.raises(ValueError, match="unknown proposer reward"):
        SP.proposer_reward(0.5, "peak99")
    with pytest.raises(ValueError, match="solve rate"):
        SP.proposer_reward(1.5)


def test_effective_solve_rate_min_successes():
    assert SP.effective_solve_rate(1, 8) == 0.125          # paper: one success counts
    assert SP.effective_solve_rate(1, 8, min_successes=2) == 0.0   # 1-of-8 luck discounted
    assert SP.effective_solve_rate(2, 8, min_successes=2) == 0.25
    assert SP.effective_solve_rate(8, 8, min_successes=2) == 1.0


def test_proposal_reward_composite():
    assert SP.proposal_reward(False, None) == -1.0
    assert SP.proposal_reward(False, 0.5, zero_as=-0.5) == -1.0
    assert SP.proposal_reward(True, 0.25) == 0.75
    assert SP.proposal_reward(True, 0.0) == 0.0
    assert SP.proposal_reward(True, 1.0, zero_as=-0.5) == -0.5
    assert SP.proposal_reward(True, 0.25, trivial=True) == 0.0          # guessable: no reward
    assert SP.proposal_reward(True, 0.25, trivial=True, zero_as=-0.5) == -0.5
    assert SP.proposal_reward(True, 0.5, kind="peak50") == 1.0


# ---------------------------------------------------------------------------------------------
# TRR++
# ---------------------------------------------------------------------------------------------
def test_trr_advantages_per_group():
    ds, as_, dp, ip = ("deduction", "solve"), ("abduction", "solve"), ("deduction", "propose"), \
        ("induction", "propose")
    rewards = [1.0, -1.0, 0.5, 0.5, 0.0, 0.0, 2.0, 0.3]
    groups = [ds, dp, as_, ds, as_, ds, dp, ip]
    adv = SP.trr_advantages(rewards, groups, eps=0.0)
    # (deduction, solve): rewards 1, 0.5, 0 → mean 0.5, population std sqrt(1/6)
    sd = (1 / 6) ** 0.5
    assert adv[0] == pytest.approx(0.5 / sd)
    assert adv[3] == pytest.approx(0.0)
    assert adv[5] == pytest.approx(-0.5 / sd)
    # (deduction, propose): -1, 2 → mean 0.5, std 1.5 → -1, +1
    assert adv[1] == pytest.approx(-1.0)
    assert adv[6] == pytest.approx(1.0)
    # (abduction, solve): 0.5 and 0.0 → ±1
    assert adv[2] == pytest.approx(1.0) and adv[4] == pytest.approx(-1.0)
    # a single-sample group and a zero-variance group get zero advantage
    assert adv[7] == 0.0
    z = SP.trr_advantages([1.0, 1.0, 0.0], [ds, ds, dp])
    assert torch.equal(z, torch.zeros(3))


def test_trr_advantages_differ_from_global_normalisation():
    g = [("d", "solve")] * 2 + [("d", "propose")] * 2
    adv = SP.trr_advantages([10.0, 12.0, -1.0, 1.0], g)
    # each group is centred on its own mean: both groups map to -1, +1
    assert adv.tolist() == pytest.approx([-1.0, 1.0, -1.0, 1.0], abs=1e-5)
    with pytest.raises(ValueError):
        SP.trr_advantages([1.0, 2.0], [g[0]])


# ---------------------------------------------------------------------------------------------
# Buffers
# ---------------------------------------------------------------------------------------------
def _task(i, step):
    return {"program": f"def f(x):\n    return x + {i}", "input": "1", "output": repr(1 + i),
            "step": step}


def test_paired_gain_hand_computed():
    # type a: d = [1-0, 1-1, 0-0, 1-0] = [1, 0, 0, 1]: mean 0.5,
    #   var (ddof 1) = (0.25+0.25+0.25+0.25)/3 = 1/3, var of the mean = 1/12
    # type b: d = [0, -1, 0, 0]: mean -0.25, var = (0.0625*3 + 0.5625)/3 = 0.25, /4 = 1/16
    base = {"a": [0, 1, 0, 0], "b": [1, 1, 0, 0]}
    final = {"a": [1, 1, 0, 1], "b": [1, 0, 0, 0]}
    gain, se = SP.paired_gain(base, final)
    assert gain == pytest.approx((0.5 - 0.25) / 2)
    assert se == pytest.approx(math.sqrt(1 / 12 + 1 / 16) / 2)
    # identical answers: no gain and no noise, whatever the accuracy
    assert SP.paired_gain(base, base) == (0.0, 0.0)
    # the paired SE is below the independent-samples SE when the models mostly agree
    b = {"a": [1] * 30 + [0] * 70}
    f = {"a": [1] * 30 + [1] * 5 + [0] * 65}
    g, se = SP.paired_gain(b, f)
    indep = math.hypot(SP.std_error(0.30, 100), SP.std_error(0.35, 100))
    assert g == pytest.approx(0.05) and se < indep / 2
    assert SP.eval_row({"a": [1, 0, True]}) == {"correct": {"a": "101"}}


def test_paired_gain_bad_input():
    with pytest.raises(ValueError, match="same >= 2 tasks"):
        SP.paired_gain({"a": [1, 0]}, {"a": [1, 0, 1]})
    with pytest.raises(ValueError, match="no task type"):
        SP.paired_gain({"a": [1, 0]}, {"b": [1, 0]})
    with pytest.raises(ValueError, match="one cluster per task"):
        SP.paired_gain({"a": [1, 0]}, {"a": [1, 1]}, {"a": [0]})


def test_paired_gain_clustered_by_program_hand_computed():
    # type a: d = [1, 1, 0, 0], mean 0.5, n 4; type b: d = [1, 0], mean 0.5, n 2; T = 2 types.
    # u per task = (d - mean) / (n T): a -> [1/16, 1/16, -1/16, -1/16], b -> [1/8, -1/8].
    # clusters 0: a0 + a1 + b0 = 1/4; 1: a2 = -1/16; 2: a3 = -1/16; 3: b1 = -1/8.
    # SE^2 = G/(G-1) * sum u_c^2 = 4/3 * (1/16 + 1/256 + 1/256 + 1/64) = 4/3 * 22/256
    base = {"a": [0, 0, 0, 0], "b": [0, 0]}
    final = {"a": [1, 1, 0, 0], "b": [1, 0]}
    gain, se = SP.paired_gain(base, final, {"a": [0, 0, 1, 2], "b": [0, 3]})
    assert gain == pytest.approx(0.5)
    assert se == pytest.approx(math.sqrt(4 / 3 * 22 / 256))
    # one type, every task its own cluster: exactly the unclustered paired SE
    b1, f1 = {"a": [0, 1, 0, 0, 1, 0]}, {"a": [1, 1, 0, 1, 0, 0]}
    assert SP.paired_gain(b1, f1, {"a": list(range(6))})[1] == pytest.approx(
        SP.paired_gain(b1, f1)[1])
    # 5 of 20 tasks flip together because they share a program: the clustered SE is larger
    b2, f2 = {"a": [0] * 20}, {"a": [1] * 5 + [0] * 15}
    shared = {"a": [0] * 5 + list(range(1, 16))}
    assert SP.paired_gain(b2, f2, shared)[1] > 1.5 * SP.paired_gain(b2, f2)[1]


def test_program_ids_shared_across_types_and_whitespace():
    sets = {"deduction": [{"program": "def f(x):\n    return x"}, {"program": "def f(x): return x+1"}],
            "induction": [{"program": "def f(x):  return x+1"}, {"program": "def f(x):\n    return x"}]}
    assert SP.program_ids(sets) == {"deduction": [0, 1], "induction": [1, 0]}


def test_pick_solver_tasks_newest_first_then_fill():
    rng = random.Random(0)
    buf = [_task(i, 0) for i in range(6)] + [_task(10 + i, 3) for i in range(2)]
    for _ in range(20):
        got = SP.pick_solver_tasks(buf, 4, step=3, rng=rng)
        assert len(got) == 4
        assert sum(t["step"] == 3 for t in got) == 2            # both new tasks are in
        assert len({t["program"] for t in got}) == 4            # filled without replacement
    # more new tasks than the batch: only new ones
    buf2 = [_task(i, 5) for i in range(6)] + [_task(10, 1)]
    assert all(t["step"] == 5 for t in SP.pick_solver_tasks(buf2, 4, 5, rng))
    # buffer smaller than the batch: everything once, then repeats
    got = SP.pick_solver_tasks(buf[:2], 5, 9, rng)
    assert len(got) == 5 and {t["program"] for t in got} == {buf[0]["program"], buf[1]["program"]}
    assert SP.pick_solver_tasks([], 4, 1, rng) == []


def test_pick_solver_tasks_fill_is_uniform():
    rng = random.Random(1)
    buf = [_task(i, 0) for i in range(4)] + [_task(9, 2)]
    counts = {}
    for _ in range(2000):
        for t in SP.pick_solver_tasks(buf, 2, 2, rng):
            counts[t["program"]] = counts.get(t["program"], 0) + 1
    assert counts[buf[4]["program"]] == 2000
    for t in buf[:4]:
        assert 400 < counts[t["program"]] < 600   # each old task ~1/4 of 2000 fills


def test_add_to_buffer_dedup_and_cap():
    buf = []
    assert SP.add_to_buffer(buf, _task(1, 0), step=4)
    assert buf[0]["step"] == 4
    dup = dict(_task(1, 0), program="def f(x):\n    return  x + 1")  # same up to whitespace
    assert not SP.add_to_buffer(buf, dup, step=5)
    assert SP.add_to_buffer(buf, dict(_task(1, 0), input="2"), step=5)   # same program, new input
    for i in range(2, 6):
        SP.add_to_buffer(buf, _task(i, 6), step=6, max_size=3)
    assert len(buf) == 3 and buf[-1]["program"].endswith("+ 5")        # oldest dropped


def test_sample_refs_uniform_without_replacement():
    rng = random.Random(0)
    buf = [_task(i, 0) for i in range(5)]
    refs = SP.sample_refs(buf, 3, rng)
    assert len(refs) == 3 and len({r["program"] for r in refs}) == 3
    assert len(SP.sample_refs(buf[:1], 3, rng)) == 1
    assert SP.sample_refs(buf, 0, rng) == []


# ---------------------------------------------------------------------------------------------
# Prompts, parsing and guessable tasks
# ---------------------------------------------------------------------------------------------
def test_toy_proposal_roundtrip():
    ref = SP.identity_triplet()
    prompt = SP.propose_prompt("deduction", [ref], "toy")
    assert prompt.endswith("# new\n```python\n") and "def f(x):\n    return x" in prompt
    # what the toy base writes after the prompt (pretrain.proposal_doc), cut at the stop string
    text = "def f(s):\n    return s[::-1]\n```\n```input\n'abc'\n```\n```output"
    assert SP.parse_proposal(text, "toy") == ("def f(s):\n    return s[::-1]", "'abc'")
    assert SP.parse_proposal("def f(s):\n    return s\n```\n", "toy") == "no_input"
    assert SP.parse_proposal("garbage", "toy") == "no_program"


def test_induction_proposal_and_view():
    text = "".join(SP.fence("input", str(i)) for i in range(6)) + SP.fence("message", "adds one")
    inputs, msg = SP.parse_induction_proposal(text, "toy", 6)
    assert inputs == [str(i) for i in range(6)] and msg == "adds one"
    assert SP.parse_induction_proposal(text, "toy", 7) == "too_few_inputs"
    view = SP.induction_view({"program": "p", "inputs": list("abcdef"), "outputs": list("ABCDEF"),
                              "message": "m"})
    assert view["visible"] == [("a", "A"), ("b", "B"), ("c", "C")]
    assert view["hidden"] == [("d", "D"), ("e", "E"), ("f", "F")]
    prompt = SP.solve_prompt("induction", view, "toy")
    assert "```input\nc\n```" in prompt and "```input\nd\n```" not in prompt


def test_azr_proposal_parse():
    text = ("reasoning</think> <answer>\n```python\ndef f(a):\n    return a * 2\n```\n"
            "```input\n3\n```\n</answer>")
    assert SP.parse_proposal(text, "azr") == ("def f(a):\n    return a * 2", "3")
    assert SP.extract_answer("x</think><answer>```output\n6\n```</answer>", "deduction",
                             "azr") == "6"
    assert SP.extract_answer("no think tags", "deduction", "azr") is None


def test_is_trivial():
    ident = SP.identity_triplet()
    t = {"program": "def f(s):\n    return s[::-1]", "input": "'level'", "output": "'level'"}
    assert SP.is_trivial("deduction", t, [])                       # output == input
    t2 = {"program": "def f(s):\n    return s[::-1]", "input": "'ab'", "output": "'ba'"}
    assert not SP.is_trivial("deduction", t2, [ident])
    copy = {"program": "def f(x):\n    return x", "input": "3", "output": "3"}
    assert SP.is_trivial("abduction", copy, [ident])
    copy2 = {"program": "def f(x):\n  return x", "input": "[1, 2]", "output": "(1, 2)"}
    assert SP.is_trivial("abduction", copy2, [ident])              # copy of a reference
    assert not SP.is_trivial("abduction", dict(copy2, program="def f(x):\n    return tuple(x)"),
                             [ident])                              # list vs tuple: not a copy
    ind = {"inputs": ["1", "'a'"], "outputs": ["1", "'a'"]}
    assert SP.is_trivial("induction", ind, [])
    assert not SP.is_trivial("induction", {"inputs": ["1", "2"], "outputs": ["1", "3"]}, [])


def test_check_config_errors():
    with pytest.raises(SystemExit, match="--task-types"):
        SP.check_config(SP.Config(task_types="deduction,planning"))
    with pytest.raises(SystemExit, match="--proposer-reward"):
        SP.check_config(SP.Config(proposer_reward="max"))
    with pytest.raises(SystemExit, match="--min-successes"):
        SP.check_config(SP.Config(min_successes=9))
    with pytest.raises(SystemExit, match="--train-on-estimates"):
        SP.check_config(SP.Config(train_on_estimates=True, estimate_temperature=0.7))
    assert SP.check_config(SP.Config(task_types="deduction, abduction")) == ["deduction",
                                                                           "abduction"]


def test_help_documents_every_flag(capsys):
    with pytest.raises(SystemExit):
        SP.parse_args(["--help"])
    out = capsys.readouterr().out
    for flag in ("--freeze-proposer", "--solver-only", "--no-refs", "--task-types", "--zero-as",
                 "--min-successes", "--proposer-reward", "--estimate-temperature", "--k-refs"):
        assert flag in out


# ---------------------------------------------------------------------------------------------
# End to end on the micro model
# ---------------------------------------------------------------------------------------------
SEED_BUFFERS = {
    "deduction": [{"program": "def f(x):\n    return x + 1", "input": "3", "output": "4"},
                  {"program": "def f(s):\n    return s[::-1]", "input": "'ab'", "output": "'ba'"}],
    "abduction": [{"program": "def f(x):\n    return x * 2", "input": "2", "output": "4"}],
    "induction": [{"program": "def f(x):\n    return x + 1", "inputs": ["1", "2", "3", "4"],
                   "outputs": ["2", "3", "4", "5"], "message": "adds one"}],
}


def _small_cfg(path, out, **kw):
    base = dict(model=path, out=str(out), steps=2, batch_size=2, n_estimate=2, eval_n=2,
                n_inputs=4, propose_max_tokens=24, solve_max_tokens=12, eval_every=1,
                micro_batch=8, device="cpu", train_on_estimates=False,
                solve_batch_size=2)
    base.update(kw)
    return SP.Config(**base)


def _read(path):
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_two_steps_end_to_end_and_resume(micro_policy, tmp_path, monkeypatch):
    import rlvr

    path, _, _ = micro_policy
    seen = []
    real = rlvr.update_policy

    def spy(model, optimizer, experiences, cfg, *a, **k):
        seen.append(sum(e.input_ids.shape[0] for e in experiences))
        return real(model, optimizer, experiences, cfg, *a, **k)

    monkeypatch.setattr(rlvr, "update_policy", spy)
    out = tmp_path / "run"
    summary = SP.main(_small_cfg(path, out), buffers=SEED_BUFFERS)
    assert summary["steps"] == 2
    metrics = _read(out / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [0, 1, 2]
    last = metrics[-1]
    for key in ("solve/deduction/reward_mean", "solve/abduction/entropy",
                "solve/induction/response_len", "propose/deduction/valid_rate",
                "propose/valid_rate", "buffer/induction", "time/propose", "time/validate",
                "time/estimate", "time/solve", "time/update", "eval/accuracy", "eval/se",
                "eval/induction/accuracy", "propose/deduction/entropy", "solve/entropy",
                "mem/rss_peak_gib"):
        assert key in last, key
    assert 0.0 <= last["eval/accuracy"] <= 1.0
    evals = _read(out / "eval.jsonl")  # per-task correctness of every evaluation, 2 tasks/type
    assert [e["step"] for e in evals] == [0, 1, 2]
    assert all(set(e["correct"]) == set(SP.TASK_TYPES) and
               all(len(v) == 2 and set(v) <= {"0", "1"} for v in e["correct"].values())
               for e in evals)
    assert summary["gain_paired_se"] >= 0.0
    tasks = _read(out / "tasks.jsonl")
    assert len(tasks) == 2 * 2 * 3   # 2 steps x batch 2 x 3 types
    assert {t["type"] for t in tasks} == set(SP.TASK_TYPES)
    assert all({"step", "type", "program", "s", "reward", "valid", "reason"} <= set(t)
               for t in tasks)
    assert all(t["reward"] == -1.0 for t in tasks if not t["valid"])
    ck = sorted((out / "checkpoints").glob("step_*"))
    assert ck and ck[-1].name == "step_000002"
    # resume: one more step from the checkpoint, buffers restored, no duplicated log lines
    summary = SP.main(_small_cfg(path, out, steps=3, resume=True))
    assert summary["steps"] == 3
    metrics = _read(out / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [0, 1, 2, 3]
    assert [e["step"] for e in _read(out / "eval.jsonl")] == [0, 1, 2, 3]
    assert "gain_paired_se" in summary  # the base's per-task results survive the resume
    assert metrics[-1]["buffer/deduction"] >= len(SEED_BUFFERS["deduction"])
    assert max(t["step"] for t in _read(out / "tasks.jsonl")) == 3



def test_freeze_proposer_excludes_proposer_samples(micro_policy, tmp_path, monkeypatch):
    import rlvr

    path, _, _ = micro_policy
    rows = []
    real = rlvr.update_policy

    def spy(model, optimizer, experiences, cfg, *a, **k):
        rows.append(sum(e.input_ids.shape[0] for e in experiences))
        return real(model, optimizer, experiences, cfg, *a, **k)

    monkeypatch.setattr(rlvr, "update_policy", spy)
    # force non-zero advantages everywhere so that the update always runs
    monkeypatch.setattr(SP, "trr_advantages", lambda r, g, eps=1e-6: torch.ones(len(g)))
    SP.main(_small_cfg(path, tmp_path / "a", steps=1, eval_n=1, task_types="deduction",
                       freeze_proposer=True), buffers=SEED_BUFFERS)
    SP.main(_small_cfg(path, tmp_path / "b", steps=1, eval_n=1, task_types="deduction"),
            buffers=SEED_BUFFERS)
    SP.main(_small_cfg(path, tmp_path / "c", steps=1, eval_n=1, task_types="deduction",
                       solver_only=True), buffers=SEED_BUFFERS)
    assert rows == [2, 4, 2]   # solver rows only / proposer + solver / solver rows only
    t = _read(tmp_path / "c" / "tasks.jsonl")
    assert all(x["s"] is None for x in t)   # --solver-only: no solve-rate estimation
    # --train-on-estimates: the n_estimate samples of every valid proposal join the update
    monkeypatch.setattr(SP, "validate_proposals", lambda t, texts, *a, **k: [
        {"program": "def f(x):\n    return x + 7", "input": "1", "output": "8", "valid": True,
         "reason": "ok"} for _ in texts])
    SP.main(_small_cfg(path, tmp_path / "d", steps=1, eval_n=1, task_types="deduction",
                       train_on_estimates=True), buffers=SEED_BUFFERS)
    assert rows[-1] == 2 + 2 + 2 * 2   # proposer + solver + 2 valid proposals x n_estimate 2
    t = _read(tmp_path / "d" / "tasks.jsonl")
    assert all(x["valid"] and x["n"] == 2 and x["s"] is not None for x in t)
    # a guessable proposal (output == input): its solve rate is still estimated, but its
    # estimation samples train the solver only with --no-trivial-zero (they reward copying)
    monkeypatch.setattr(SP, "validate_proposals", lambda t, texts, *a, **k: [
        {"program": "def f(x):\n    return x", "input": "1", "output": "1", "valid": True,
         "reason": "ok"} for _ in texts])
    for name, trivial_zero, n_rows in (("e", True, 2 + 2), ("f", False, 2 + 2 + 2 * 2)):
        SP.main(_small_cfg(path, tmp_path / name, steps=1, eval_n=1, task_types="deduction",
                           train_on_estimates=True, trivial_zero=trivial_zero),
                buffers=SEED_BUFFERS)
        assert rows[-1] == n_rows, name
        t = _read(tmp_path / name / "tasks.jsonl")
        assert all(x["trivial"] and x["n"] == 2 for x in t if x["phase"] == "train")


def test_constant_loss_agg_divides_by_the_generation_budget(micro_policy, tmp_path,
                                                            monkeypatch):
    """--loss-agg constant: L is the larger of the two roles' max new tokens (Dr. GRPO), not a
    micro-batch's width."""
    import rlvr

    path, _, _ = micro_policy
    seen = []
    monkeypatch.setattr(rlvr, "update_policy",
                        lambda model, opt, exps, cfg, *a, **k: seen.append(cfg) or {})
    monkeypatch.setattr(SP, "trr_advantages", lambda r, g, eps=1e-6: torch.ones(len(g)))
    SP.main(_small_cfg(path, tmp_path / "c", steps=1, eval_n=1, task_types="deduction",
                       loss_agg="constant"), buffers=SEED_BUFFERS)
    assert [c.constant_len for c in seen] == [24] and seen[0].loss_agg == "constant"


def test_task_source_generator_control(micro_policy, tmp_path):
    import toydata

    path, _, _ = micro_policy
    with pytest.raises(SystemExit, match="--freeze-proposer"):
        SP.check_config(SP.Config(task_source="generator"))
    with pytest.raises(SystemExit, match="--task-source"):
        SP.check_config(SP.Config(task_source="oracle"))
    out = tmp_path / "g"
    SP.main(_small_cfg(path, out, steps=1, eval_n=2, task_source="generator",
                       freeze_proposer=True, train_on_estimates=True), buffers=SEED_BUFFERS)
    tasks = [t for t in _read(out / "tasks.jsonl") if t["phase"] == "train"]
    train = {t["program"] for t in toydata.make_code_tasks(20000, 7, "train")}
    assert len(tasks) == 2 * 3 and all(t["valid"] and t["reason"] == "generator" for t in tasks)
    # the micro model writes garbage: every task is a generator program, with its true output
    assert all(t["program"] in train for t in tasks if t["type"] != "induction")
    assert all(t["n"] == 2 for t in tasks)          # their solve rates are still estimated
    held = SP.build_eval_sets(2, 1234, 4)
    assert not {t["program"] for t in tasks} & {t["program"] for t in held["deduction"]}


def test_seeding_fails_clearly(micro_policy, tmp_path):
    path, _, _ = micro_policy
    with pytest.raises(SystemExit, match="seeding failed"):
        SP.main(_small_cfg(path, tmp_path / "s", seed_max_rounds=1, seed_size=4))


def test_update_rows_carry_their_own_advantages(micro_policy, tmp_path, monkeypatch):
    """Every row handed to update_policy holds the response whose reward made its advantage:
    with a fake scorer (correct iff the answer text has even length) and a frozen proposer, a
    solver row's advantage is positive exactly when its decoded response has even length."""
    import rlvr

    path, _, tok = micro_policy
    seen = []
    monkeypatch.setattr(rlvr, "update_policy",
                        lambda model, opt, exps, cfg, *a, **k: seen.extend(exps) or {})
    monkeypatch.setattr(SP, "score_answers", lambda t, tasks, texts, *a, **k: (
        [len(x) % 2 == 0 for x in texts], [True] * len(texts)))
    monkeypatch.setattr(SP, "validate_proposals", lambda t, texts, *a, **k: [
        {"program": "def f(x):\n    return x + 7", "input": "1", "output": "8", "valid": True,
         "reason": "ok"} for _ in texts])
    SP.main(_small_cfg(path, tmp_path / "r", steps=1, eval_n=1, task_types="deduction",
                       freeze_proposer=True, train_on_estimates=True, batch_size=3,
                       solve_batch_size=4, n_estimate=3), buffers=SEED_BUFFERS)
    assert sum(len(e) for e in seen) == 4 + 3 * 3      # solver batch + estimation samples
    checked = 0
    for e in seen:
        for i in range(len(e)):
            ids = e.input_ids[i, e.prompt_len:][e.response_mask[i].bool()]
            text = tok.decode(ids.tolist(), skip_special_tokens=True)
            if e.advantages[i] != 0:
                assert (e.advantages[i] > 0) == (len(text) % 2 == 0), text
                checked += 1
    assert checked > 0


def test_estimate_advantages_are_per_task_groups():
    # task 1: one success in 4 → mean -0.125, Bessel std 0.75 → (1.125, -0.375 x3) / 0.75;
    # task 2: never solved → no gradient (under TRR++ its wrong answers would be pushed down)
    r = [1.0, -0.5, -0.5, -0.5, -0.5, -0.5, -0.5, -0.5]
    a = SP.estimate_advantages(r, 4)
    assert a[:4].tolist() == pytest.approx([1.5, -0.5, -0.5, -0.5], abs=1e-3)
    assert a[4:].tolist() == [0.0] * 4
    assert SP.estimate_advantages([], 4).numel() == 0
    # never solved, wrong answers mixing a format error (-1) with well-formed ones (-0.5): still
    # no gradient (group_advantages alone would give +0.5 each and -1.5 to the format error);
    # solved by all: none either
    assert SP.estimate_advantages([-0.5, -0.5, -0.5, -1.0], 4).tolist() == [0.0] * 4
    assert SP.estimate_advantages([1.0] * 4, 4).tolist() == [0.0] * 4
    # solved once, with a format error among the misses: the format error gets the lowest
    a = SP.estimate_advantages([1.0, -0.5, -0.5, -1.0], 4)
    assert a[0] > 0 > a[1] == a[2] > a[3]
    with pytest.raises(SystemExit, match="--n-estimate >= 2"):
        SP.check_config(SP.Config(n_estimate=1, min_successes=1))
