"""Tests for toydata.py: determinism, splits, correctness of generated tasks, loaders."""
import json
import random
import re
from collections import Counter

import pytest

import toydata as T


def _exec(program, args_text):
    """Independent re-execution of a generated (trusted) program."""
    ns = {}
    exec(program, ns)
    return repr(eval(f"ns['f']({args_text})", {"ns": ns}))


# ---------------------------------------------------------------- determinism
@pytest.mark.parametrize("fn", [T.make_code_tasks, T.make_induction_tasks, T.make_arith])
def test_determinism_per_seed(fn):
    a, b, c = fn(150, 7), fn(150, 7), fn(150, 8)
    assert a == b
    assert a != c
    assert fn(40, 7, "heldout") == fn(40, 7, "heldout")


def test_global_rng_untouched():
    random.seed(123)
    state = random.getstate()
    T.make_code_tasks(50, 1)
    T.make_induction_tasks(10, 1)
    T.make_arith(50, 1)
    assert random.getstate() == state


# ---------------------------------------------------------------- splits
def test_code_splits_disjoint():
    train = T.make_code_tasks(2000, 0, "train")
    held = T.make_code_tasks(200, 0, "heldout")
    tp, hp = {t["program"] for t in train}, {t["program"] for t in held}
    assert not tp & hp
    assert all(T.split_of(p) == "train" for p in tp)
    assert all(T.split_of(p) == "heldout" for p in hp)
    # distinct where possible: families with few heldout programs repeat them with new inputs
    assert len(hp) >= 80 and len({(t["program"], t["input"]) for t in held}) == 200
    ind = T.make_induction_tasks(100, 0, "heldout")
    assert all(T.split_of(t["program"]) == "heldout" for t in ind)


def test_arith_splits_disjoint():
    train = {a["question"] for a in T.make_arith(3000, 0, "train")}
    held = T.make_arith(300, 0, "heldout")
    hq = {a["question"] for a in held}
    assert not train & hq
    assert len(hq) == 300


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        T.make_code_tasks(5, 0, "test")
    with pytest.raises(ValueError, match="levels"):
        T.make_arith(5, 0, levels=[4])


# ---------------------------------------------------------------- code tasks
def test_code_tasks_shape_and_outputs_correct():
    tasks = T.make_code_tasks(400, 3)
    assert len(tasks) == 400
    for t in tasks:
        assert set(t) == {"program", "input", "output", "family", "level"}
        assert t["program"].startswith("def f(")
        lines = t["program"].split("\n")
        assert all(ln.startswith("    ") for ln in lines[1:])
        assert lines[-1].strip().startswith("return")
        assert t["family"] in T.FAMILIES and t["level"] in (1, 2, 3)
        assert len(t["output"]) <= T.MAX_REPR
        assert _exec(t["program"], t["input"]) == t["output"]
    assert {t["family"] for t in tasks} == set(T.FAMILIES)
    assert {t["level"] for t in tasks} == {1, 2, 3}


def test_code_tasks_levels_filter():
    tasks = T.make_code_tasks(100, 0, levels=[3])
    assert {t["level"] for t in tasks} == {3}
    assert {t["family"] for t in tasks} <= {"loop", "pipeline", "conditional"}


def test_difficulty_mix():
    tasks = T.make_code_tasks(3000, 0)
    lv3 = sum(t["level"] == 3 for t in tasks) / len(tasks)
    assert 0.08 < lv3 < 0.25
    for t in tasks:  # ints stay small, strings short (except 'Hello World'), lists 2-4
        for m in re.findall(r"-?\d+", t["output"]):
            assert abs(int(m)) < T.INT_LIMIT
        for lit in re.findall(r"\[[\d, ]*\]", t["input"]):
            assert 2 <= len(json.loads(lit)) <= 4


# ---------------------------------------------------------------- induction
def test_induction_tasks():
    tasks = T.make_induction_tasks(120, 5, n_inputs=6)
    for t in tasks:
        assert set(t) == {"program", "inputs", "outputs", "message", "family", "level"}
        assert len(t["inputs"]) == 6 == len(set(t["inputs"]))
        assert len(t["outputs"]) == 6 and len(set(t["outputs"])) > 1
        assert t["message"] and "def" not in t["message"] and "return" not in t["message"]
        for i, o in zip(t["inputs"], t["outputs"]):
            assert _exec(t["program"], i) == o


# ---------------------------------------------------------------- arithmetic
def test_arith_answers_and_solutions():
    probs = T.make_arith(1000, 2)
    for a in probs:
        assert set(a) == {"question", "answer", "solution", "level"}
        assert eval(a["question"]) == a["answer"]
        assert a["solution"].endswith(f"<answer>{a['answer']}</answer>")
        for step in re.findall(r"(\d+[-+*]\d+)=(\d+)\.", a["solution"]):
            assert eval(step[0]) == int(step[1])
        n_ops = len(re.findall(r"[-+*]", a["question"]))
        assert a["solution"].count("=") == n_ops
        if a["level"] == 1:
            assert n_ops == 1
        elif a["level"] == 2:
            assert n_ops == 2 and "(" not in a["question"]
        else:
            assert n_ops == 3 or "(" in a["question"]
    assert {a["level"] for a in probs} == {1, 2, 3}


def test_arith_precedence_hand_computed():
    tree = ("+", 3, ("*", 4, 2))
    steps = []
    assert T._render(tree) == "3+4*2"
    assert T._solve(tree, steps) == 11 and steps == ["4*2=8.", "3+8=11."]
    tree = ("*", ("+", 5, 3), 2)
    assert T._render(tree) == "(5+3)*2"
    tree = ("-", 12, ("+", 7, 4))
    assert T._render(tree) == "12-(7+4)"
    assert T._render(("+", ("-", 12, 7), 4)) == "12-7+4"


# ---------------------------------------------------------------- loaders
def _write(tmp_path, name, lines):
    p = tmp_path / name
    p.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return p


def test_load_math_formats(tmp_path):
    gsm = _write(tmp_path, "gsm.jsonl", [
        {"question": "How many?", "answer": "He has 1,000 + 234 = <<1000+234=1234>>1234.\n#### 1,234"}, ""])
    assert T.load_math(gsm) == [dict(question="How many?", answer="1234",
                                     solution="He has 1,000 + 234 = <<1000+234=1234>>1234.")]
    m5 = _write(tmp_path, "math.jsonl", [{"problem": "1+1?", "answer": "2", "solution": "$\\boxed{2}$"},
                                         {"problem": "x?", "answer": "\\frac{1}{2}"}])
    assert T.load_math(m5) == [dict(question="1+1?", answer="2", solution="$\\boxed{2}$"),
                               dict(question="x?", answer="\\frac{1}{2}", solution=None)]
    pr = _write(tmp_path, "pr.jsonl", [{"prompt": "3+4*2", "response": "4*2=8. 3+8=11. <answer>11</answer>"}])
    assert T.load_math(pr) == [dict(question="3+4*2", answer="11",
                                    solution="4*2=8. 3+8=11. <answer>11</answer>")]


def test_load_cruxeval(tmp_path):
    p = _write(tmp_path, "crux.jsonl", [{"code": "def f(x):\n    return x", "input": "1", "output": "1",
                                         "id": "sample_0"}])
    assert T.load_cruxeval(p) == [dict(program="def f(x):\n    return x", input="1", output="1")]


def test_loader_errors(tmp_path):
    bad = _write(tmp_path, "bad.jsonl", [{"question": "q", "answer": "#### 1"}, "{not json"])
    with pytest.raises(ValueError, match=r"bad\.jsonl, line 2: malformed JSON"):
        T.load_math(bad)
    with pytest.raises(ValueError, match=r"line 2: malformed JSON"):
        T.load_jsonl(bad)
    arr = _write(tmp_path, "arr.jsonl", ["[1, 2]"])
    with pytest.raises(ValueError, match=r"arr\.jsonl, line 1: expected a JSON object"):
        T.load_jsonl(arr)
    nokey = _write(tmp_path, "nokey.jsonl", [{"code": "def f(x):\n    return x", "input": "1", "output": "1"},
                                             {"code": "def f(x):\n    return x", "input": "1"}])
    with pytest.raises(ValueError, match=r"nokey\.jsonl, line 2: missing key 'output'"):
        T.load_cruxeval(nokey)
    noans = _write(tmp_path, "noans.jsonl", [{"problem": "p"}])
    with pytest.raises(ValueError, match=r"line 1: missing key 'answer'"):
        T.load_math(noans)
    noq = _write(tmp_path, "noq.jsonl", [{"foo": 1}])
    with pytest.raises(ValueError, match=r"line 1: missing key 'question'"):
        T.load_math(noq)
    with pytest.raises(ValueError, match="not found"):
        T.load_jsonl(tmp_path / "missing.jsonl")


def test_heldout_family_mix_follows_train():
    # Families with few programs have only a handful of heldout ones; the heldout set must still
    # draw them at their weight (repeating a program with new inputs), not favour the families
    # with thousands of programs (it once held 59% conditionals against 18% in train).
    def mix(tasks):
        c = Counter(t["family"] for t in tasks)
        return {f: c[f] / len(tasks) for f in c}
    tasks = T.make_code_tasks(400, 3, "heldout")
    held, train = mix(tasks), mix(T.make_code_tasks(4000, 3, "train"))
    for fam, share in train.items():
        if fam != "identity":  # identity has no heldout program
            assert abs(held.get(fam, 0.0) - share) < 0.07, (fam, held.get(fam), share)
    assert len({(t["program"], t["input"]) for t in tasks}) == 400  # never the same task twice
