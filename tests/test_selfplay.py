"""Tests for selfplay.py: the rewards and TRR++ on hand-computed values, the buffers, validation,
seeding (from the model and from --seed-tasks), the presets, the flags and the console line, and
self-play end to end on the micro policy (a few steps, exact resume, which rows the update sees).

The micro policy is random and almost never writes a valid proposal, so the end-to-end tests seed
the buffers from a --seed-tasks file and, where they need valid proposals or non-zero
advantages, replace the model's proposal text by a synthetic one before the REAL validation
(`synthetic_validate`) and the scorer by a fake one (correct iff the answer has even length)."""
import ast
import collections
import json
import random
import re
import zlib
from pathlib import Path

import pytest
import torch

import model as M
import rlvr
import selfplay as SP
import tasks as T

REAL_VALIDATE = SP.validate


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
    assert SP.proposer_reward(s, "learnability") == pytest.approx(expected)


@pytest.mark.parametrize("s,expected", [(0.0, 0.0), (1.0, 0.0), (0.5, 1.0), (0.25, 0.5),
                                        (0.75, 0.5), (0.125, 0.25)])
def test_peak50(s, expected):
    assert SP.proposer_reward(s, "peak50") == pytest.approx(expected)


@pytest.mark.parametrize("s,expected", [(0.0, 0.0), (1.0, 0.0), (0.25, 1.0), (0.125, 0.5),
                                        (0.625, 0.5), (0.5, 2 / 3), (0.875, 1 / 6)])
def test_peak25(s, expected):
    assert SP.proposer_reward(s, "peak25") == pytest.approx(expected)


def test_proposer_reward_bad_input():
    with pytest.raises(ValueError, match="unknown proposer reward"):
        SP.proposer_reward(0.5, "peak99")
    with pytest.raises(ValueError, match="solve rate"):
        SP.proposer_reward(1.5)
    with pytest.raises(ValueError, match="solve rate"):
        SP.proposer_reward(-0.1)


def test_proposal_reward_composite():
    assert SP.proposal_reward(False, None) == -1.0
    assert SP.proposal_reward(False, 0.5) == -1.0            # invalid: -1 whatever s says
    assert SP.proposal_reward(True, 0.25) == 0.75
    assert SP.proposal_reward(True, 0.0) == 0.0
    assert SP.proposal_reward(True, 1.0) == 0.0
    assert SP.proposal_reward(True, None) == 0.0
    assert SP.proposal_reward(True, 0.25, trivial=True) == 0.0          # guessable: no reward
    assert SP.proposal_reward(True, 0.5, kind="peak50") == 1.0
    assert SP.proposal_reward(True, 0.25, kind="peak25") == 1.0


# ---------------------------------------------------------------------------------------------
# TRR++ and the estimation groups
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
    # eps enters the denominator
    a = SP.trr_advantages([0.0, 1.0], [ds, ds], eps=0.5)
    assert a.tolist() == pytest.approx([-0.5, 0.5])


def test_trr_advantages_differ_from_global_normalisation():
    g = [("d", "solve")] * 2 + [("d", "propose")] * 2
    r = [10.0, 12.0, -1.0, 1.0]
    adv = SP.trr_advantages(r, g)
    # each group is centred on its own mean: both groups map to -1, +1
    assert adv.tolist() == pytest.approx([-1.0, 1.0, -1.0, 1.0], abs=1e-5)
    x = torch.tensor(r)
    glob = (x - x.mean()) / x.std(unbiased=False)
    assert (glob[2:] < 0).all()                      # one baseline: the proposer rows all negative
    assert not torch.allclose(adv, glob, atol=0.1)
    with pytest.raises(ValueError):
        SP.trr_advantages([1.0, 2.0], [g[0]])


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
    assert rlvr.group_advantages(torch.tensor([-0.5, -0.5, -0.5, -1.0]), 4).abs().sum() > 1
    assert SP.estimate_advantages([-0.5, -0.5, -0.5, -1.0], 4).tolist() == [0.0] * 4
    assert SP.estimate_advantages([1.0] * 4, 4).tolist() == [0.0] * 4
    # solved once, with a format error among the misses: the format error gets the lowest
    a = SP.estimate_advantages([1.0, -0.5, -0.5, -1.0], 4)
    assert a[0] > 0 > a[1] == a[2] > a[3]
    # groups are task by task: the same rewards in another order are another batch
    a = SP.estimate_advantages([1.0, -0.5, -0.5, -0.5], 2)
    assert a[:2].tolist() == pytest.approx([0.7071, -0.7071], abs=1e-3) and a[2:].tolist() == [0, 0]


# ---------------------------------------------------------------------------------------------
# Buffers
# ---------------------------------------------------------------------------------------------
def _task(i, step):
    return {"program": f"def f(x):\n    return x + {i}", "input": "1", "output": repr(1 + i),
            "step": step}


def test_pick_solver_tasks_newest_first_then_fill():
    rng = random.Random(0)
    buf = [_task(i, 0) for i in range(6)] + [_task(10 + i, 3) for i in range(2)]
    for _ in range(20):
        got = SP.pick_solver_tasks(buf, 4, step=3, rng=rng)
        assert len(got) == 4
        assert sum(t["step"] == 3 for t in got) == 2            # both new tasks are in
        assert len({t["program"] for t in got}) == 4            # filled without replacement
    # more new tasks than the batch: only new ones, no repeats
    buf2 = [_task(i, 5) for i in range(6)] + [_task(10, 1)]
    got = SP.pick_solver_tasks(buf2, 4, 5, rng)
    assert all(t["step"] == 5 for t in got) and len({t["program"] for t in got}) == 4
    # buffer smaller than the batch: everything once, then repeats
    got = SP.pick_solver_tasks(buf[:2], 5, 9, rng)
    assert len(got) == 5 and {t["program"] for t in got} == {buf[0]["program"], buf[1]["program"]}
    assert SP.pick_solver_tasks([], 4, 1, rng) == []
    assert SP.pick_solver_tasks(buf, 0, 3, rng) == []


def test_pick_solver_tasks_fill_is_uniform():
    rng = random.Random(1)
    buf = [_task(i, 0) for i in range(4)] + [_task(9, 2)]
    counts = collections.Counter()
    for _ in range(2000):
        for t in SP.pick_solver_tasks(buf, 2, 2, rng):
            counts[t["program"]] += 1
    assert counts[buf[4]["program"]] == 2000
    for t in buf[:4]:
        assert 400 < counts[t["program"]] < 600   # each old task ~1/4 of 2000 fills


def test_add_to_buffer_dedup():
    buf = []
    assert SP.add_to_buffer(buf, _task(1, 0), step=4)
    assert buf[0]["step"] == 4                                           # stamped with the step
    dup = dict(_task(1, 0), program="def f(x):\n    return  x + 1")     # same up to whitespace
    assert not SP.add_to_buffer(buf, dup, step=5)
    assert SP.add_to_buffer(buf, dict(_task(1, 0), input="2"), step=5)   # same program, new input
    assert len(buf) == 2
    ind = {"program": "def f(x):\n    return x", "inputs": ["1", "2"], "outputs": ["1", "2"],
           "message": "m"}
    assert SP.add_to_buffer(buf, ind, 6)
    assert not SP.add_to_buffer(buf, dict(ind, message="other"), 7)      # same program + inputs
    assert SP.add_to_buffer(buf, dict(ind, inputs=["1", "3"]), 7)
    assert len(buf) == 4
    task = _task(7, 0)
    SP.add_to_buffer(buf, task, 9)
    assert task["step"] == 0                                  # the caller's dict is untouched


def test_sample_refs_uniform_without_replacement():
    rng = random.Random(0)
    buf = [_task(i, 0) for i in range(5)]
    refs = SP.sample_refs(buf, 3, rng)
    assert len(refs) == 3 and len({r["program"] for r in refs}) == 3
    assert len(SP.sample_refs(buf[:1], 3, rng)) == 1
    assert SP.sample_refs(buf, 0, rng) == []
    assert SP.sample_refs([], 3, rng) == []
    for _ in range(200):                                          # never a repeat
        assert len({r["program"] for r in SP.sample_refs(buf, 4, rng)}) == 4
    assert sorted(r["program"] for r in SP.sample_refs(buf, 9, rng)) == \
        sorted(t["program"] for t in buf)
    counts = collections.Counter(r["program"] for _ in range(3000)
                                 for r in SP.sample_refs(buf, 2, rng))
    assert all(1050 < counts[t["program"]] < 1350 for t in buf)   # 2/5 of 3000 = 1200 each


def test_task_helpers():
    ident = SP.identity_triplet()
    assert ident["step"] == 0 and ident["output"] == ident["input"]
    assert SP.task_key(_task(1, 0)) == ("def f(x): return x + 1", "1")
    ind = {"program": "def f(x):\n  return x", "inputs": ["1", "2"], "outputs": ["1", "2"],
           "message": "m", "valid": True}
    assert SP.task_key(ind) == ("def f(x): return x", ("1", "2"))
    assert SP.as_task({**ind, "type": "induction"}) == {k: ind[k] for k in
                                                        ("program", "inputs", "outputs", "message")}
    assert SP.as_task({**_task(1, 0), "type": "abduction", "valid": True}) == {
        k: _task(1, 0)[k] for k in ("program", "input", "output")}


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


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------
def test_reject_reason():
    assert SP.reject_reason("exception: NameError: name 'y' is not defined") == \
        "exception:NameError"
    assert SP.reject_reason("syntax: invalid syntax (line 2)") == "syntax"
    assert SP.reject_reason("timeout: exceeded 2 s wall time") == "timeout"
    assert SP.reject_reason(None) == "error" and SP.reject_reason("") == "error"


def test_validate_toy_proposals():
    def ded(prog, inp):
        return f"{prog}\n```\n```input\n{inp}\n```\n```output"
    texts = [ded("def f(s):\n    return s[::-1]", "'abc'"),
             ded("def f(x):\n    return y", "1"),                 # NameError when run
             ded("def f(x):\n    return x +", "1"),               # a syntax error
             "def f(s):\n    return s\n```\n",                     # no input block
             "garbage"]
    out = REAL_VALIDATE("deduction", texts, [None] * 5, "toy", 4, 2.0)
    assert out[0] == {"program": "def f(s):\n    return s[::-1]", "input": "'abc'",
                      "valid": True, "reason": "ok", "output": "'cba'"}
    assert [o["valid"] for o in out] == [True, False, False, False, False]
    assert out[1]["reason"] == "exception:NameError"
    assert out[3]["reason"] == "no_input" and out[4]["reason"] == "no_program"
    assert out[2]["reason"] not in ("ok", "no_program", "no_input")
    prog = "def f(x):\n    return x * 2"
    inputs = "".join(T.fence("input", str(i)) for i in range(4))
    ind = [inputs + T.fence("message", "doubles"), inputs, T.fence("input", "1")]
    out = REAL_VALIDATE("induction", ind, [prog] * 3, "toy", 4, 2.0)
    assert out[0]["valid"] and out[0]["outputs"] == ["0", "2", "4", "6"]
    assert out[0]["inputs"] == ["0", "1", "2", "3"] and out[0]["message"] == "doubles"
    assert out[1]["reason"] == "no_message" and out[2]["reason"] == "too_few_inputs"
    const = REAL_VALIDATE("induction", [ind[0]], ["def f(x):\n    return 7"], "toy", 4, 2.0)[0]
    assert not const["valid"] and const["reason"] == "outputs_identical"


# ---------------------------------------------------------------------------------------------
# Settings, flags, presets, the console line
# ---------------------------------------------------------------------------------------------
def test_check_config_errors():
    with pytest.raises(SystemExit, match="--task-types"):
        SP.check_config(SP.Config(task_types="deduction,planning"))
    with pytest.raises(SystemExit, match="--task-types"):
        SP.check_config(SP.Config(task_types=" , "))
    with pytest.raises(SystemExit, match="--proposer-reward"):
        SP.check_config(SP.Config(proposer_reward="max"))
    for name in ("steps", "n_estimate", "seed_size"):
        with pytest.raises(SystemExit, match=f"--{name.replace('_', '-')} must be >= 1"):
            SP.check_config(SP.Config(**{name: 0}))
    with pytest.raises(SystemExit, match="--eval-n must be >= 2"):
        SP.check_config(SP.Config(eval_n=1))
    with pytest.raises(SystemExit, match="--eval-every >= 0"):
        SP.check_config(SP.Config(eval_every=-1))
    with pytest.raises(SystemExit, match="--n-inputs must be >= 2"):
        SP.check_config(SP.Config(n_inputs=1))
    assert SP.check_config(SP.Config(task_types="deduction, abduction")) == ["deduction",
                                                                           "abduction"]
    assert SP.check_config(SP.Config()) == list(T.TASK_TYPES)


def test_help_documents_every_flag_grouped(capsys):
    import dataclasses

    with pytest.raises(SystemExit) as e:
        M.parse_flags(SP.Config, ["--help"], doc=SP.__doc__)
    assert e.value.code == 0
    out = capsys.readouterr().out
    opts = out.split("\noptions:\n", 1)[1]
    where, text, sec, flag = {}, {}, None, None
    for line in opts.splitlines():
        if line and not line.startswith(" ") and line.endswith(":"):
            sec, flag = line[:-1], None
        elif line.startswith("  --"):
            flag = line.split()[0].rstrip(",")
            where[flag], text[flag] = sec, line
        elif line.startswith(" ") and flag:
            text[flag] += " " + line.strip()
    for f in dataclasses.fields(SP.Config):
        flag = "--" + f.name.replace("_", "-")
        assert flag in where, flag
        # the help carries the field's comment, not only the default
        words = re.sub(r"--[\w-]+,?|\b[A-Z_]{2,}\b", "", text[flag].split("(default:")[-2])
        assert len(words.strip()) > 10, flag
    assert where["--model"] == where["--resume"] == "run and hardware"
    assert where["--lr"] == where["--loss-agg"] == where["--kl-coef"] == \
        "policy gradient (shared by rlvr.py and selfplay.py)"
    for flag in ("--seed-tasks", "--freeze-proposer", "--proposer-reward", "--task-types",
                 "--k-refs", "--trivial-zero", "--train-on-estimates", "--solve-batch-size"):
        assert where[flag] == "self-play (AZR)", flag
    assert "--no-freeze-proposer" in out and "--no-trivial-zero" in out
    assert "Presets" in out                                   # the module docstring heads --help
    # the flags parse into a Config; unset tri-state booleans stay None for the preset
    cfg = M.parse_flags(SP.Config, ["--seed-tasks", "s.jsonl", "--no-trivial-zero", "--k-refs",
                                    "0", "--freeze-proposer"])
    assert (cfg.seed_tasks, cfg.trivial_zero, cfg.k_refs, cfg.freeze_proposer) == \
        ("s.jsonl", False, 0, True)
    assert cfg.train_on_estimates is None and cfg.lr is None


class _Stop(Exception):
    pass


def _config_only(cfg, monkeypatch):
    """main() up to seeding (the presets and the config are settled by then)."""
    def stop(S):
        raise _Stop
    monkeypatch.setattr(SP, "seed_buffers", stop)
    with pytest.raises(_Stop):
        SP.main(cfg)
    return json.loads((Path(cfg.out) / "config.json").read_text())


def test_toy_preset_fills_unset_flags_and_explicit_flags_win(micro_policy, tmp_path,
                                                             monkeypatch, capsys):
    path, _, _ = micro_policy
    cfg = SP.Config(model=path, out=str(tmp_path / "toy"), device="cpu", eval_n=2)
    written = _config_only(cfg, monkeypatch)
    assert written["style"] == "toy" and written["script"] == "selfplay.py"
    for k, v in SP.PRESETS["toy"].items():
        assert getattr(cfg, k) == v and written[k] == v, k
    assert "toy preset" in capsys.readouterr().out
    cfg = SP.Config(model=path, out=str(tmp_path / "toy2"), device="cpu", eval_n=2, lr=0.5,
                    k_refs=0, trivial_zero=False, solve_batch_size=3, loss_agg="constant")
    written = _config_only(cfg, monkeypatch)
    assert (written["lr"], written["k_refs"], written["trivial_zero"],
            written["solve_batch_size"], written["loss_agg"]) == (0.5, 0, False, 3, "constant")
    assert written["n_inputs"] == SP.PRESETS["toy"]["n_inputs"]        # the rest still filled
    out = capsys.readouterr().out
    preset = out.split("toy preset: ", 1)[1].split(" | ", 1)[0]
    assert "'lr'" not in preset and "'k_refs'" not in preset and "'n_inputs'" in preset


@pytest.mark.parametrize("solve_batch_size", [None, 0])
def test_azr_preset_solve_batch_is_the_batch_size(micro_policy, tmp_path, monkeypatch,
                                                  solve_batch_size):
    path, _, _ = micro_policy
    cfg = SP.Config(model=path, out=str(tmp_path / "azr"), device="cpu", eval_n=2, style="azr",
                    batch_size=5, solve_batch_size=solve_batch_size)
    written = _config_only(cfg, monkeypatch)
    assert written["style"] == "azr" and cfg.solve_batch_size == written["solve_batch_size"] == 5
    for k, v in SP.PRESETS["azr"].items():
        if k not in ("solve_batch_size", "batch_size"):  # batch_size: the explicit 5 wins
            assert written[k] == v, k


def test_main_checks_after_the_preset(micro_policy, tmp_path):
    path, _, _ = micro_policy
    # the toy preset turns --train-on-estimates on: one estimation sample is no group
    with pytest.raises(SystemExit, match="--n-estimate >= 2"):
        SP.main(SP.Config(model=path, out=str(tmp_path / "a"), device="cpu", n_estimate=1))
    with pytest.raises(SystemExit, match="--loss-agg"):
        SP.main(SP.Config(model=path, out=str(tmp_path / "b"), device="cpu", loss_agg="sum"))
    with pytest.raises(SystemExit, match="--batch-size must be >= 1"):
        SP.main(SP.Config(model=path, out=str(tmp_path / "c"), device="cpu", batch_size=0))


def test_step_line():
    # s is weighted by valid proposals: (0.25 * 3 + 0.75 * 1) / 4 = 0.375
    m = {"propose/valid_rate": 0.375, "propose/deduction/s_mean": 0.25,
         "propose/deduction/s_hist": [1, 1, 1, 0], "propose/abduction/s_hist": [0, 0, 1, 0],
         "propose/abduction/s_mean": 0.75, "solve/deduction/accuracy": 0.5,
         "solve/abduction/accuracy": 0.125, "solve/induction/accuracy": 1.0,
         "propose/entropy": 1.23456, "solve/entropy": 0.5, "time/step": 3.14159}
    line = SP.step_line(m, 7, 120, list(T.TASK_TYPES))
    assert line.startswith("step   7/120 | ")
    assert "valid 0.38" in line
    assert "| s 0.38 |" in line
    assert "solve ded 0.50 abd 0.12 ind 1.00" in line
    assert "H propose 1.235 solve 0.500" in line
    assert line.endswith("| 3.1s")
    m.update({"eval/accuracy": 0.1234, "eval/se": 0.0123})
    assert SP.step_line(m, 7, 120, list(T.TASK_TYPES)).endswith("| 3.1s | held-out 0.123 ± 0.012")
    # nothing proposed or solved: placeholders, no crash
    line = SP.step_line({"time/step": 1.0}, 1, 2, ["deduction"])
    assert "valid -" in line and "s nan" in line and "solve -" in line
    assert "H propose - solve -" in line


# ---------------------------------------------------------------------------------------------
# Seeding
# ---------------------------------------------------------------------------------------------
SEED_ROWS = [
    {"program": "def f(x):\n    return x + 1", "input": "3"},
    {"program": "def f(s):\n    return s[::-1]", "input": "'ab'"},
    {"code": "def f(x):\n    return x * 2", "input": 2},            # CRUXEval's field name
    {"program": "def f(x):\n    return x + 1", "inputs": ["1", "2", "3", "4"],
     "message": "adds one"},
]


def _write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


def _session(tmp_path, types=T.TASK_TYPES, **kw):
    base = dict(out=str(tmp_path / "run"), exec_timeout=2.0, n_inputs=4, k_refs=2,
                batch_size=2, seed_size=3, trivial_zero=True)
    base.update(kw)
    cfg = SP.Config(**base)
    return SP.Session(cfg, list(types), "toy", None, None, None,
                      M.RunDir(cfg.out, logs=("tasks.jsonl",)), random.Random(0), {}, {})


def _no_proposals(*a, **k):
    raise AssertionError("the model was asked to propose")


def test_seed_tasks_file_seeds_without_proposals(tmp_path, monkeypatch):
    monkeypatch.setattr(SP, "propose", _no_proposals)
    rows = SEED_ROWS + [SEED_ROWS[0]]                                  # a duplicate row
    S = _session(tmp_path, seed_tasks=_write_jsonl(tmp_path / "seed.jsonl", rows), seed_size=1)
    m = SP.seed_buffers(S)
    assert m["seed/rounds"] == 0 and m["seed/proposals"] == 0
    ded = S.buffers["deduction"]
    assert [(t["program"], t["input"], t["output"]) for t in ded] == [
        ("def f(x):\n    return x + 1", "3", "4"),
        ("def f(s):\n    return s[::-1]", "'ab'", "'ba'"),
        ("def f(x):\n    return x * 2", "2", "4")]                      # outputs: the executor's
    assert all(t["step"] == 0 for t in ded)
    assert S.buffers["abduction"] == ded and S.buffers["abduction"] is not ded
    assert S.buffers["abduction"][0] is not ded[0]                    # copies, not shared dicts
    assert S.buffers["induction"] == [{"program": "def f(x):\n    return x + 1",
                                       "inputs": ["1", "2", "3", "4"],
                                       "outputs": ["2", "3", "4", "5"],
                                       "message": "adds one", "step": 0}]
    assert not (S.run.path / "tasks.jsonl").read_text().strip()


def test_seed_tasks_one_row_is_enough_for_deduction_and_abduction(tmp_path, monkeypatch):
    monkeypatch.setattr(SP, "propose", _no_proposals)
    S = _session(tmp_path, types=("deduction", "abduction"), seed_size=3,
                 seed_tasks=_write_jsonl(tmp_path / "seed.jsonl", SEED_ROWS[:1]))
    assert SP.seed_buffers(S)["seed/proposals"] == 0
    assert len(S.buffers["deduction"]) == len(S.buffers["abduction"]) == 1


def test_seed_tasks_file_with_every_type_needs_no_proposals(tmp_path, monkeypatch):
    monkeypatch.setattr(SP, "propose", _no_proposals)
    S = _session(tmp_path, seed_size=16, seed_tasks=_write_jsonl(tmp_path / "seed.jsonl",
                                                                 SEED_ROWS))
    SP.seed_buffers(S)
    assert all(S.buffers[t] for t in T.TASK_TYPES)


@pytest.mark.parametrize("bad,match", [
    ("{not json", "line 2: malformed JSON"),
    ('["a", "list"]', "line 2: expected a JSON object"),
    ({"program": "def f(x):\n    return x"}, "line 2: expected program \\+ input"),
    ({"input": "1"}, "line 2: expected program \\+ input"),
    ({"program": "def f(x):\n    return x", "inputs": ["1", "2"]}, "line 2: expected program"),
    ({"program": "def f(x):\n    return x +", "input": "1"}, "line 2: not a valid task"),
    ({"program": "def f(x):\n    return y", "input": "1"}, "line 2: not a valid task"),
    ({"program": "import os\ndef f(x):\n    return os.getcwd()", "input": "1"},
     "line 2: not a valid task"),
    ({"program": "def f(x):\n    return 10 // x", "inputs": ["1", "0"], "message": "m"},
     "line 2: not a valid task"),
])
def test_seed_tasks_bad_row_names_the_line(tmp_path, monkeypatch, bad, match):
    monkeypatch.setattr(SP, "propose", _no_proposals)
    S = _session(tmp_path, seed_tasks=_write_jsonl(tmp_path / "seed.jsonl", [SEED_ROWS[0], bad]))
    with pytest.raises(SystemExit, match=match) as e:
        SP.seed_buffers(S)
    assert "--seed-tasks" in str(e.value) and "seed.jsonl" in str(e.value)


def test_seed_tasks_missing_file(tmp_path):
    S = _session(tmp_path, seed_tasks=str(tmp_path / "nope.jsonl"))
    with pytest.raises(SystemExit, match="--seed-tasks .*nope.jsonl: file not found"):
        SP.seed_buffers(S)


def test_seed_tasks_error_line_counts_blank_lines(tmp_path, monkeypatch):
    monkeypatch.setattr(SP, "propose", _no_proposals)
    bad = {"program": "def f(x):\n    return y", "input": "1"}
    path = tmp_path / "seed.jsonl"
    path.write_text(json.dumps(SEED_ROWS[0]) + "\n\n" + json.dumps(bad) + "\n")
    S = _session(tmp_path, seed_tasks=str(path))
    with pytest.raises(SystemExit, match="line 3: not a valid task"):
        SP.seed_buffers(S)


def test_seed_tasks_rejects_constant_induction_row(tmp_path, monkeypatch):
    monkeypatch.setattr(SP, "propose", _no_proposals)
    row = {"program": "def f(x):\n    return 0", "inputs": ["1", "2", "3", "4"], "message": "m"}
    S = _session(tmp_path, seed_tasks=_write_jsonl(tmp_path / "seed.jsonl", [SEED_ROWS[0], row]),
                 seed_size=1)
    with pytest.raises(SystemExit, match="line 2"):
        SP.seed_buffers(S)


def _fake_proposal(t, valid, reason="ok", prog=None, step=0, phase="seed", trivial=False,
                   set_aside=False):
    p = {"type": t, "valid": valid, "reason": reason, "text": "text", "step": step,
         "phase": phase, "s": None, "successes": None, "trivial": trivial,
         "set_aside": set_aside, "program": prog or "def f(x):\n    return x"}
    if valid and t == "induction":
        p.update(inputs=["1", "2", "3", "4"], outputs=["2", "3", "4", "5"], message="m")
    elif valid:
        p.update(input="1", output="2")
    return p


def test_seed_buffers_from_proposals(tmp_path, monkeypatch):
    """No file: deduction/abduction proposals (the identity triplet as the reference while the
    seed set is empty) until the seed set is full, then induction proposals on seed programs;
    every proposal goes to tasks.jsonl, invalid and set-aside ones join no buffer."""
    calls, n = [], [0]

    def fake_propose(S, specs, step, phase):
        calls.append(specs)
        props = []
        for j, (t, refs, prog) in enumerate(specs):
            n[0] += 1
            if j % 3 == 0:
                props.append(_fake_proposal(t, False, "no_program", phase=phase))
            elif j % 3 == 1 and t != "induction":
                props.append(_fake_proposal(t, True, trivial=True, set_aside=True, phase=phase))
            else:
                own = prog or f"def f(x):\n    return x + {n[0]}"
                props.append(_fake_proposal(t, True, prog=own, phase=phase))
                if t == "induction":
                    props[-1]["inputs"] = [str(n[0] + i) for i in range(4)]
        return [], props

    monkeypatch.setattr(SP, "propose", fake_propose)
    S = _session(tmp_path, seed_size=3)
    m = SP.seed_buffers(S)
    ded, ind = S.buffers["deduction"], S.buffers["induction"]
    assert len(ded) == 3 and len(ind) == 3 and S.buffers["abduction"] == ded
    assert all(t["step"] == 0 for t in ded + ind)
    first = calls[0]
    assert len(first) == 8                                         # max(batch size, 8) per round
    assert {t for t, _, _ in first} == {"deduction", "abduction"}
    assert all(refs == [SP.identity_triplet()] for _, refs, _ in first)
    # once the seed set holds tasks, the references are drawn from it
    later = [refs for c in calls[1:] for t, refs, _ in c if t != "induction"]
    assert later and all(refs and all(r in ded for r in refs) for refs in later)
    ind_specs = [s for c in calls for s in c if s[0] == "induction"]
    assert ind_specs and all(prog in {t["program"] for t in ded} and refs == []
                             for _, refs, prog in ind_specs)
    rows = [json.loads(x) for x in (S.run.path / "tasks.jsonl").read_text().splitlines()]
    assert len(rows) == sum(len(c) for c in calls) == m["seed/proposals"]
    assert m["seed/rounds"] == len(calls)
    assert all(r["phase"] == "seed" and r["step"] == 0 and r["reward"] is None for r in rows)
    assert m["seed/valid_rate"] == pytest.approx(sum(r["valid"] for r in rows) / len(rows))
    assert {r["reason"] for r in rows} == {"ok", "no_program"}


def test_seeding_failure_writes_every_proposal_and_counts_reasons(tmp_path, monkeypatch):
    reasons = ["no_program", "syntax", "exception:NameError", "no_program"]

    def fake_propose(S, specs, step, phase):
        return [], [_fake_proposal(t, False, reasons[j % 4], phase=phase)
                    for j, (t, _, _) in enumerate(specs)]

    monkeypatch.setattr(SP, "propose", fake_propose)
    S = _session(tmp_path, seed_size=2)
    with pytest.raises(SystemExit, match="seeding failed") as e:
        SP.seed_buffers(S)
    msg = str(e.value)
    rows = [json.loads(x) for x in (S.run.path / "tasks.jsonl").read_text().splitlines()]
    assert len(rows) == 40 * 8 and all(r["phase"] == "seed" and not r["valid"] for r in rows)
    assert "after 40 rounds (320 proposals)" in msg and "0/2" in msg
    counted = ast.literal_eval(msg.split("Proposals by outcome: ", 1)[1].split("}", 1)[0] + "}")
    assert counted == {"no_program": 160, "syntax": 80, "exception:NameError": 80}
    assert str(S.run.path / "tasks.jsonl") in msg and "--seed-tasks" in msg


def test_seeding_failure_does_not_count_ok_as_a_rejection(tmp_path, monkeypatch):
    def fake_propose(S, specs, step, phase):  # the toy model copying the identity triplet
        return [], [_fake_proposal(t, True, trivial=True, set_aside=True, phase=phase)
                    for t, _, _ in specs]

    monkeypatch.setattr(SP, "propose", fake_propose)
    S = _session(tmp_path, seed_size=2)
    with pytest.raises(SystemExit, match="seeding failed") as e:
        SP.seed_buffers(S)
    outcomes = str(e.value).split("Proposals by outcome: ", 1)[1]
    assert "'ok'" not in outcomes and "'valid but guessable or a duplicate': 320" in outcomes


def test_seeding_fails_clearly_on_the_micro_model(micro_policy, tmp_path):
    """The random micro policy proposes nothing valid: a clear error after 40 rounds, not a
    hang, and its proposals are on disk."""
    path, _, _ = micro_policy
    out = tmp_path / "s"
    with pytest.raises(SystemExit, match="seeding failed") as e:
        SP.main(SP.Config(model=path, out=str(out), device="cpu", seed_size=2, eval_n=2,
                          batch_size=2, propose_max_tokens=6, solve_max_tokens=4, n_inputs=4))
    rows = [json.loads(x) for x in (out / "tasks.jsonl").read_text().splitlines()]
    assert len(rows) == 320 and not any(r["valid"] for r in rows)
    counted = ast.literal_eval(str(e.value).split("Proposals by outcome: ", 1)[1].split("}", 1)[0] + "}")
    assert counted == dict(collections.Counter(r["reason"] for r in rows))


# ---------------------------------------------------------------------------------------------
# End to end on the micro model
# ---------------------------------------------------------------------------------------------
def synthetic_validate(kind="valid", keep_every=0):
    """A stand-in for SP.validate: the model's text is replaced by a synthetic toy proposal
    derived from it (so it stays deterministic), then the REAL validate judges it. kind "valid":
    `x + c` programs, c >= 100 (never a seed program); "identity": a guessable copy. Every
    keep_every-th text (by its hash) is left as the model wrote it (invalid)."""
    def fake(task_type, texts, programs, style, n_inputs, timeout):
        new = []
        for text in texts:
            h = zlib.crc32(text.encode())
            if keep_every and h % keep_every == 0:
                new.append(text)
            elif task_type == "induction":
                new.append("".join(T.fence("input", str(h % 5 + i)) for i in range(n_inputs))
                           + T.fence("message", "m"))
            elif kind == "identity":
                new.append("def f(x):\n    return x\n```\n```input\n1\n```\n```output")
            else:
                new.append(f"def f(x):\n    return x + {100 + h % 50}\n```\n```input\n{h % 7}"
                           f"\n```\n```output")
        return REAL_VALIDATE(task_type, new, programs, style, n_inputs, timeout)
    return fake


def even_length_score(kind, tasks, texts, style, timeout=None):
    return [len(x) % 2 == 0 for x in texts], [True] * len(texts)


def _seed_file(tmp_path):
    return _write_jsonl(tmp_path / "seed.jsonl", SEED_ROWS)


def _small_cfg(path, out, tmp_path, **kw):
    base = dict(model=path, out=str(out), steps=2, batch_size=2, n_estimate=2, eval_n=2,
                n_inputs=4, propose_max_tokens=24, solve_max_tokens=12, eval_every=1,
                micro_batch=8, device="cpu", train_on_estimates=False, solve_batch_size=2,
                seed_tasks=_seed_file(tmp_path), seed_size=1)
    base.update(kw)
    return SP.Config(**base)


def _read(path):
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _no_time(rows):
    return [{k: v for k, v in r.items() if not k.startswith(("time/", "mem/"))} for r in rows]


def test_two_steps_end_to_end_and_exact_resume(micro_policy, tmp_path, monkeypatch, capsys):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, _, _ = micro_policy
    monkeypatch.setattr(SP, "validate", synthetic_validate("valid", keep_every=4))
    monkeypatch.setattr(T, "score", even_length_score)
    kw = dict(train_on_estimates=True, save_every=1)
    out = tmp_path / "run"
    summary = SP.main(_small_cfg(path, out, tmp_path, **kw))
    console = capsys.readouterr().out
    assert summary["steps"] == 2
    assert {p.name for p in out.iterdir()} >= {"config.json", "metrics.jsonl", "tasks.jsonl",
                                               "eval.jsonl", "samples.jsonl", "summary.json",
                                               "checkpoints"}
    config = json.loads((out / "config.json").read_text())
    assert config["script"] == "selfplay.py" and config["types"] == list(T.TASK_TYPES)
    assert config["seed_tasks"].endswith("seed.jsonl") and config["steps"] == 2
    assert json.loads((out / "summary.json").read_text()) == summary
    assert {"base", "final", "gain", "gain_se"} <= set(summary)
    metrics = _read(out / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [0, 1, 2]
    assert metrics[0]["seed/rounds"] == 0 and metrics[0]["buffer/induction"] == 1
    assert metrics[0]["buffer/deduction"] == metrics[0]["buffer/abduction"] == 3
    last = metrics[-1]
    for key in ("solve/deduction/reward_mean", "solve/abduction/entropy",
                "solve/induction/response_len", "solve/deduction/accuracy",
                "solve/induction/format_error_rate", "propose/deduction/valid_rate",
                "propose/abduction/s_mean", "propose/induction/s_hist",
                "propose/deduction/learnable_rate", "propose/deduction/trivial_rate",
                "propose/valid_rate", "buffer/induction", "time/propose", "time/estimate",
                "time/solve", "time/update", "time/step", "eval/accuracy", "eval/se",
                "eval/induction/accuracy", "propose/deduction/entropy", "propose/entropy",
                "solve/entropy", "entropy", "update/skipped", "mem/rss_peak_gib"):
        assert key in last, key
    assert all(len(m[f"propose/{t}/s_hist"]) == 3 for m in metrics[1:] for t in T.TASK_TYPES
               if f"propose/{t}/s_hist" in m)
    assert any(m["update/skipped"] == 0 and m["update/grad_norm"] > 0 for m in metrics[1:])
    evals = _read(out / "eval.jsonl")  # per-task correctness of every evaluation, 2 tasks/type
    assert [e["step"] for e in evals] == [0, 1, 2]
    assert all(set(e) - {"step"} == set(T.TASK_TYPES) and
               all(len(v) == 2 and set(v) <= {"0", "1"} for k, v in e.items() if k != "step")
               for e in evals)
    tasks = _read(out / "tasks.jsonl")
    assert len(tasks) == 2 * 2 * 3 and all(t["phase"] == "train" for t in tasks)  # no seeding
    assert [t["step"] for t in tasks] == [1] * 6 + [2] * 6
    assert collections.Counter(t["type"] for t in tasks) == {t: 4 for t in T.TASK_TYPES}
    assert all({"step", "phase", "type", "program", "s", "successes", "n", "reward", "valid",
                "reason", "trivial", "text"} <= set(t) for t in tasks)
    assert any(t["valid"] for t in tasks) and any(not t["valid"] for t in tasks)
    for t in tasks:
        if not t["valid"]:
            assert t["reward"] == -1.0 and t["s"] is None and t["reason"] != "ok"
        else:
            assert t["n"] == 2 and t["s"] == t["successes"] / 2
            assert t["reward"] == (0.0 if t["trivial"] else SP.proposer_reward(t["s"]))
    samples = _read(out / "samples.jsonl")
    assert {(s["role"], s["type"]) for s in samples} == {(r, t) for r in ("propose", "solve")
                                                          for t in T.TASK_TYPES}
    lines = [x for x in console.splitlines() if x.startswith("step ")]
    assert len(lines) == 2 and lines[0].startswith("step 1/2 | valid ")
    assert "held-out" in lines[-1] and "| solve ded " in lines[0]
    ck = sorted((out / "checkpoints").glob("step_*"))
    assert [c.name for c in ck] == ["step_000001", "step_000002"]
    net = AutoModelForCausalLM.from_pretrained(str(ck[-1]))
    AutoTokenizer.from_pretrained(str(ck[-1]))
    base = AutoModelForCausalLM.from_pretrained(path)
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in base.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(net.state_dict().values(),
                                                     base.state_dict().values()))  # it trained
    # resume: one more step from the checkpoint gives exactly the uninterrupted run's step 3
    summary = SP.main(_small_cfg(path, out, tmp_path, steps=3, resume=True, **kw))
    assert summary["steps"] == 3 and "gain_se" in summary
    ref = tmp_path / "ref"
    SP.main(_small_cfg(path, ref, tmp_path, steps=3, **kw))
    for f in ("metrics.jsonl", "tasks.jsonl", "eval.jsonl", "samples.jsonl"):
        a, b = _no_time(_read(out / f)), _no_time(_read(ref / f))
        assert a == b, f
    assert [m["step"] for m in _read(out / "metrics.jsonl")] == [0, 1, 2, 3]
    wa = load_file(str(out / "checkpoints" / "step_000003" / "model.safetensors"))
    wb = load_file(str(ref / "checkpoints" / "step_000003" / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def _spy_update(monkeypatch, call_through=True):
    seen = []
    real = rlvr.update_policy

    def spy(model, optimizer, experiences, cfg, ref_model=None, constant_len=0):
        seen.append({"rows": sum(len(e) for e in experiences), "exps": list(experiences),
                     "cfg": cfg, "constant_len": constant_len})
        return real(model, optimizer, experiences, cfg, ref_model, constant_len) \
            if call_through else {"loss": 0.0}

    monkeypatch.setattr(rlvr, "update_policy", spy)
    return seen


def _ones(rewards, groups, eps=1e-6):
    return torch.ones(len(groups))


def test_freeze_proposer_excludes_proposer_rows(micro_policy, tmp_path, monkeypatch):
    path, _, _ = micro_policy
    seen = _spy_update(monkeypatch, call_through=False)
    monkeypatch.setattr(SP, "trr_advantages", _ones)   # non-zero advantages: the update runs
    one = dict(steps=1, task_types="deduction")

    def rows(name, **kw):
        SP.main(_small_cfg(path, tmp_path / name, tmp_path, **one, **kw))
        return seen[-1]["rows"]

    assert rows("frozen", freeze_proposer=True) == 2          # the solver rows only
    assert rows("both") == 2 + 2                               # proposer + solver
    assert len(_read(tmp_path / "frozen" / "tasks.jsonl")) == 2   # still proposed and logged
    # --train-on-estimates: the n_estimate samples of every valid proposal join the update
    monkeypatch.setattr(SP, "validate", synthetic_validate("valid"))
    assert rows("est", train_on_estimates=True) == 2 + 2 + 2 * 2
    t = _read(tmp_path / "est" / "tasks.jsonl")
    assert all(x["valid"] and not x["trivial"] and x["n"] == 2 and x["s"] is not None for x in t)
    assert rows("est-frozen", train_on_estimates=True, freeze_proposer=True) == 2 + 2 * 2
    # a guessable proposal (output == input): its solve rate is still estimated, but its
    # estimation samples train the solver only with --no-trivial-zero (they reward copying)
    monkeypatch.setattr(SP, "validate", synthetic_validate("identity"))
    for name, trivial_zero, n_rows in (("tz", True, 2 + 2), ("no-tz", False, 2 + 2 + 2 * 2)):
        assert rows(name, train_on_estimates=True, trivial_zero=trivial_zero) == n_rows, name
        t = _read(tmp_path / name / "tasks.jsonl")
        assert all(x["trivial"] and x["n"] == 2 for x in t)
        if trivial_zero:
            assert all(x["reward"] == 0.0 for x in t)
    m = _read(tmp_path / "tz" / "metrics.jsonl")[-1]
    assert m["buffer/deduction"] == 3 and m["propose/deduction/trivial_rate"] == 1.0


def test_constant_loss_agg_divides_by_the_generation_budget(micro_policy, tmp_path,
                                                            monkeypatch):
    """--loss-agg constant: L is the larger of the two roles' max new tokens (Dr. GRPO), not a
    micro-batch's width."""
    path, _, _ = micro_policy
    seen = _spy_update(monkeypatch)
    monkeypatch.setattr(SP, "trr_advantages", _ones)
    SP.main(_small_cfg(path, tmp_path / "c", tmp_path, steps=1, task_types="deduction",
                       loss_agg="constant"))
    assert [s["constant_len"] for s in seen] == [24] and seen[0]["cfg"].loss_agg == "constant"
    SP.main(_small_cfg(path, tmp_path / "d", tmp_path, steps=1, task_types="deduction",
                       loss_agg="constant", propose_max_tokens=8, solve_max_tokens=20))
    assert seen[-1]["constant_len"] == 20


def test_update_rows_carry_their_own_advantages(micro_policy, tmp_path, monkeypatch):
    """Every row handed to update_policy holds the response whose reward made its advantage:
    with a fake scorer (correct iff the answer text has even length) and a frozen proposer, a
    solver row's advantage is positive exactly when its decoded response has even length."""
    path, _, tok = micro_policy
    seen = _spy_update(monkeypatch, call_through=False)
    monkeypatch.setattr(T, "score", even_length_score)
    monkeypatch.setattr(SP, "validate", synthetic_validate("valid"))
    SP.main(_small_cfg(path, tmp_path / "r", tmp_path, steps=1, task_types="deduction",
                       freeze_proposer=True, train_on_estimates=True, batch_size=3,
                       solve_batch_size=4, n_estimate=3))
    exps = seen[-1]["exps"]
    assert sum(len(e) for e in exps) == 4 + 3 * 3      # solver batch + estimation samples
    checked = 0
    for e in exps:
        for i in range(len(e)):
            ids = e.input_ids[i, e.prompt_len:][e.response_mask[i].bool()]
            text = tok.decode(ids.tolist(), skip_special_tokens=True)
            if e.advantages[i] != 0:
                assert (e.advantages[i] > 0) == (len(text) % 2 == 0), text
                checked += 1
    assert checked >= 4


def test_update_skipped_when_all_advantages_are_zero(micro_policy, tmp_path, monkeypatch,
                                                     capsys):
    path, _, _ = micro_policy
    seen = _spy_update(monkeypatch)
    monkeypatch.setattr(SP, "trr_advantages", lambda r, g, eps=1e-6: torch.zeros(len(g)))
    SP.main(_small_cfg(path, tmp_path / "z", tmp_path, steps=1, task_types="deduction"))
    assert seen == []
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("step 1/1")][0]
    assert line.endswith("| update skipped: all advantages 0")
    m = _read(tmp_path / "z" / "metrics.jsonl")[-1]
    assert m["update/skipped"] == 1 and "update/loss" not in m
    # an entropy bonus still moves the policy: no skip
    SP.main(_small_cfg(path, tmp_path / "e", tmp_path, steps=1, task_types="deduction",
                       entropy_coef=0.01))
    assert len(seen) == 1
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("step 1/1")][0]
    assert "skipped" not in line
    assert _read(tmp_path / "e" / "metrics.jsonl")[-1]["update/skipped"] == 0


def test_eval_n_one_is_refused_or_runs(micro_policy, tmp_path):
    path, _, _ = micro_policy
    out = tmp_path / "e1"
    try:
        SP.main(_small_cfg(path, out, tmp_path, steps=1, task_types="deduction", eval_n=1))
    except SystemExit as e:
        assert "--eval-n" in str(e) and not (out / "metrics.jsonl").exists()
        return
    assert (out / "summary.json").exists()


def test_eval_every_zero_is_refused_or_runs(micro_policy, tmp_path):
    path, _, _ = micro_policy
    out = tmp_path / "e0"
    try:
        SP.main(_small_cfg(path, out, tmp_path, steps=1, task_types="deduction", eval_every=0))
    except SystemExit as e:
        assert "--eval-every" in str(e)
        return
    assert (out / "summary.json").exists()
