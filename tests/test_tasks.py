"""tasks.py: prompts and parsers, math answers (math-verify), scoring of every kind, the toy
world's generators, the benchmark loaders, the one evaluator, and the paired gain."""
import json
import math
import random
import re
from collections import Counter
from types import SimpleNamespace

import pytest
import torch

import model as M
import tasks as T
import verifier


def _exec(program, args_text):
    """Independent re-execution of a generated (trusted) program."""
    ns = {}
    exec(program, ns)
    return repr(eval(f"ns['f']({args_text})", {"ns": ns}))


# Hand-made tasks, short enough for the micro policy's 256-token context.
DOUBLE = {"program": "def f(x):\n    return x * 2", "input": "3", "output": "6"}
REVERSE = {"program": "def f(s):\n    return s[::-1]", "input": "'ab'", "output": "'ba'"}
MOD3 = {"program": "def f(x):\n    return x % 3", "input": "4", "output": "1"}
PLUS1 = {"program": "def f(x):\n    return x + 1", "inputs": ["1", "2", "3", "4"],
         "outputs": ["2", "3", "4", "5"], "message": "adds one"}


# ==============================================================================================
# Prompts and parsers
# ==============================================================================================
def test_toy_proposal_roundtrip():
    ref = {"program": "def f(x):\n    return x", "input": "'Hello World'",
           "output": "'Hello World'"}   # AZR's zero triplet, as selfplay seeds it
    prompt = T.propose_prompt("deduction", [ref], "toy")
    assert prompt.endswith("# new\n```python\n") and "def f(x):\n    return x" in prompt
    # what the toy base writes after the prompt (pretrain.proposal_doc), cut at the stop string
    text = "def f(s):\n    return s[::-1]\n```\n```input\n'abc'\n```\n```output"
    assert T.parse_proposal(text, "toy") == ("def f(s):\n    return s[::-1]", "'abc'")
    assert T.parse_proposal("def f(s):\n    return s\n```\n", "toy") == "no_input"
    assert T.parse_proposal("garbage", "toy") == "no_program"


def test_induction_proposal_and_view():
    text = "".join(T.fence("input", str(i)) for i in range(6)) + T.fence("message", "adds one")
    inputs, msg = T.parse_induction_proposal(text, "toy", 6)
    assert inputs == [str(i) for i in range(6)] and msg == "adds one"
    assert T.parse_induction_proposal(text, "toy", 7) == "too_few_inputs"
    dup = T.fence("input", "1") * 6 + T.fence("message", "m")       # repeats count once
    assert T.parse_induction_proposal(dup, "toy", 2) == "too_few_inputs"
    no_msg = "".join(T.fence("input", str(i)) for i in range(6))
    assert T.parse_induction_proposal(no_msg, "toy", 6) == "no_message"
    view = T.induction_view({"program": "p", "inputs": list("abcdef"), "outputs": list("ABCDEF"),
                             "message": "m"})
    assert view["visible"] == [("a", "A"), ("b", "B"), ("c", "C")]
    assert view["hidden"] == [("d", "D"), ("e", "E"), ("f", "F")]
    prompt = T.solve_prompt("induction", view, "toy")
    assert "```input\nc\n```" in prompt and "```input\nd\n```" not in prompt
    assert prompt.endswith("```message\nm\n```\n```python\n")
    one = T.induction_view({"inputs": ["a"], "outputs": ["A"]})   # too few to split: both see it
    assert one["visible"] == one["hidden"] == [("a", "A")]


def test_azr_proposal_parse():
    text = ("reasoning</think> <answer>\n```python\ndef f(a):\n    return a * 2\n```\n"
            "```input\n3\n```\n</answer>")
    assert T.parse_proposal(text, "azr") == ("def f(a):\n    return a * 2", "3")
    assert T.extract_answer("x</think><answer>```output\n6\n```</answer>", "deduction",
                            "azr") == "6"
    assert T.extract_answer("x</think><answer>6</answer>", "deduction", "azr") == "6"
    assert T.extract_answer("no think tags", "deduction", "azr") is None
    assert T.extract_answer("<answer>6</answer>", "deduction", "azr") is None  # no </think>
    assert T.extract_answer("x</think><answer>6", "deduction", "azr") is None  # unclosed


def test_solver_prompts_and_stop_strings():
    toy = T.solve_prompt("deduction", DOUBLE, "toy")
    assert toy == "# deduction\n```python\ndef f(x):\n    return x * 2\n```\n```input\n3\n```\n" \
                  "```output\n"
    assert T.solve_prompt("abduction", DOUBLE, "toy").endswith("```output\n6\n```\n```input\n")
    azr = T.solve_prompt("deduction", DOUBLE, "azr")
    assert azr.startswith("A conversation between User and Assistant") and \
        azr.endswith("Assistant: <think>") and "```input\n3\n```" in azr
    assert T.math_prompt("3+4*2", "toy") == "Problem: 3+4*2\nSolution:"
    assert T.stop_strings("solve", "deduction", "toy") == ["\n```"]
    assert T.stop_strings("solve", "math", "toy") == ["</answer>"]
    assert T.stop_strings("propose", "abduction", "toy") == ["```output"]
    assert T.stop_strings("propose", "induction", "toy") == []
    assert T.stop_strings("solve", "induction", "azr") == ["</answer>"]


def test_same_value_and_norm_code():
    assert T.same_value("[1, 2]", "[1,2]") and T.same_value("'a'", '"a"')
    assert not T.same_value("1", "True") and not T.same_value("1", "1.0")   # same type too
    assert not T.same_value("f(1)", "f(2)") and T.same_value("f( 1)", "f(1)")
    assert T.norm_code("def f(x):\n    return  x") == "def f(x): return x"


# ==============================================================================================
# Math answers (math-verify)
# ==============================================================================================
@pytest.mark.parametrize("text,expected", [
    ("4*2=8. 3+8=11. <answer>11</answer>", "11"),                    # the toy's solutions
    ("<answer> 5 </answer>", "5"),
    ("<answer>7</answer> then <answer>8</answer>", "8"),              # the last one
    ("<answer>The answer is \\boxed{60\\%}</answer>", "60\\%"),        # a \boxed inside wins
    ("work \\boxed{\\frac{1}{2}} then <answer>\\boxed{\\dfrac{1}{2}}</answer>", "\\dfrac{1}{2}"),
    ("<answer>3</answer> \\boxed{4}", "3"),                           # <answer> beats a \boxed
    ("so $\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}$.", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("a \\boxed{1} b \\boxed{2}", "2"),
    ("The answer is 5.", None),                                       # neither: a format error
    ("<answer>5", None),
    ("\\boxed{5", None),
])
def test_math_answer(text, expected):
    assert T.math_answer(text) == expected


# Gold answers as they appear in the benchmark files: GSM8K's "#### N" (commas as thousands
# separators, removed by load_math: "#### 2,125" → "2125"; "#### 18" is its first row, "#### -10"
# a temperature, "#### 60" a "What percentage" question) and MATH-500's `answer` field
# ("\\frac{14}{3}", "\\dfrac{17}{50}", "3\\sqrt{13}", "11\\sqrt2", "(3,4]", "(2,\\infty)",
# "x \\in [-2,7]", "(6,31,-1)", "\\left( 3, \\frac{\\pi}{2} \\right)", "90^\\circ", "x=5",
# "\\text{Evelyn}", "1.25", "0.15", "58,500", "1,-2").
@pytest.mark.parametrize("answer,gold,expected", [
    # GSM8K-style integers: units and words around the number, commas, dollar signs
    ("18", "18", True), ("17", "18", False), ("18.0", "18", True), ("18.50", "18", False),
    ("5 dollars", "5", True), ("\\$18", "18", True), ("$18", "18", True),
    ("The answer is 18.", "18", True), ("18 eggs, not 17", "18", False), ("17 eggs", "18", False),
    ("-10 degrees", "-10", True), ("10", "-10", False), ("-5", "5", False),
    ("2,125", "2125", True), ("2,125 blocks", "2125", True), ("2125", "2,125", True),
    ("21,25", "2125", False), ("007", "7", True), ("25", "5", False), ("1/5", "5", False),
    ("(1, 3)", "(2, 3)", False), ("(2, 3)", "(2,3)", True), ("(3, 2)", "(2,3)", False),
    # percent
    ("60\\%", "60", True), ("60%", "60", True), ("60 percent", "60", True),
    ("61\\%", "60", False), ("15\\%", "0.15", True),
    # fractions, \dfrac, decimals
    ("\\frac{1}{2}", "0.5", True), ("0.5", "\\frac{1}{2}", True), ("1/2", "\\frac{1}{2}", True),
    ("\\frac{28}{6}", "\\frac{14}{3}", True), ("14/3", "\\frac{14}{3}", True),
    ("\\frac{3}{14}", "\\frac{14}{3}", False), ("4.67", "\\frac{14}{3}", False),
    ("\\frac{17}{50}", "\\dfrac{17}{50}", True), ("0.34", "\\dfrac{17}{50}", True),
    ("0.35", "\\dfrac{17}{50}", False), ("\\frac54", "1.25", True),
    # roots
    ("3\\sqrt{13}", "3\\sqrt{13}", True), ("\\sqrt{117}", "3\\sqrt{13}", True),
    ("\\sqrt{52}", "3\\sqrt{13}", False), ("11\\sqrt{2}", "11\\sqrt2", True),
    ("\\sqrt{2}\\cdot 11", "11\\sqrt2", True), ("11\\sqrt3", "11\\sqrt2", False),
    # intervals
    ("[0, 1)", "[0,1)", True), ("[0, 1]", "[0,1)", False), ("(3,4]", "(3,4]", True),
    ("(3,4)", "(3,4]", False), ("(2,\\infty)", "(2,\\infty)", True),
    ("x \\in [-2, 7]", "x \\in [-2,7]", True), ("[-2,7]", "x \\in [-2,7]", True),
    ("(-2,7)", "x \\in [-2,7]", False),
    # tuples and lists of solutions
    ("(6, 31, -1)", "(6,31,-1)", True), ("(6,31,1)", "(6,31,-1)", False),
    ("(3, \\pi/2)", "\\left( 3, \\frac{\\pi}{2} \\right)", True),
    ("\\left(3, \\frac{\\pi}{2}\\right)", "\\left( 3, \\frac{\\pi}{2} \\right)", True),
    ("(3, \\frac{\\pi}{3})", "\\left( 3, \\frac{\\pi}{2} \\right)", False),
    ("-2, 1", "1,-2", True), ("-2", "1,-2", False),
    ("58500", "58,500", True), ("5,85,00", "58,500", False),
    # degrees
    ("90^\\circ", "90^\\circ", True), ("90", "90^\\circ", True), ("91^\\circ", "90^\\circ", False),
    # equations and text
    ("x = 5", "x=5", True), ("5", "x=5", True), ("x=6", "x=5", False), ("x = 5", "5", True),
    ("\\text{Evelyn}", "\\text{Evelyn}", True), ("Evelyn", "\\text{Evelyn}", True),
    ("\\text{Bob}", "\\text{Evelyn}", False),
    # nothing to compare
    (None, "5", False), ("", "5", False), ("5", "", False),
])
def test_check_math_answer_forms(answer, gold, expected):
    assert T.check_math(answer, gold) is expected


def test_check_math_int_gold_and_extraction_together():
    # what score sees: the extracted answer of a whole response, against a GSM8K or toy gold
    assert T.check_math(T.math_answer("so <answer>\\boxed{2,125}</answer>"), "2125")
    assert T.check_math(T.math_answer("<answer>5 dollars</answer>"), 5)        # an int gold
    assert not T.check_math(T.math_answer("It is 5."), 5)                       # no answer


def test_check_math_a_list_gold_is_not_a_number():
    assert not T.check_math("-21", "-2,1")       # MATH-500: "Find all the integer roots ..."
    assert not T.check_math("12", "1,2")


# ==============================================================================================
# Scoring
# ==============================================================================================
def test_score_deduction():
    tasks = [DOUBLE, DOUBLE, DOUBLE, DOUBLE, REVERSE, REVERSE]
    texts = ["6\n```", " 6 \n```\nmore", "7\n```", "6", "'ba'\n```", '"ba"\n```']
    correct, formed = T.score("deduction", tasks, texts, "toy")
    assert correct == [True, True, False, False, True, True]
    assert formed == [True, True, True, False, True, True]       # "6" never closed its block
    azr = ["t</think> <answer>\n```output\n6\n```\n</answer>", "t</think><answer>6</answer>",
           "<answer>6</answer>", "t</think><answer>```output\n12\n```</answer>"]
    correct, formed = T.score("deduction", [DOUBLE] * 4, azr, "azr")
    assert correct == [True, True, False, False] and formed == [True, True, False, True]


def test_score_abduction_any_input_that_gives_the_output():
    texts = ["1\n```", "4\n```", "2\n```", "'a'\n```", "1, 2\n```", "1"]
    correct, formed = T.score("abduction", [MOD3] * 6, texts, "toy")
    assert correct == [True, True, False, False, False, False]   # 'a' raises, 1, 2: arity
    assert formed == [True, True, True, True, True, False]
    azr = ["t</think><answer>\n```input\n3\n```\n</answer>", "t</think><answer>4</answer>"]
    assert T.score("abduction", [DOUBLE] * 2, azr, "azr") == ([True, False], [True, True])


def test_score_induction_on_the_hidden_pairs():
    right = "def f(x):\n    return x + 1"
    visible_only = "def f(x):\n    return {1: 2, 2: 3}[x]"     # fits what the solver saw
    hidden_only = "def f(x):\n    return {3: 4, 4: 5}[x]"      # fits what it is judged on
    texts = [right + "\n```", visible_only + "\n```", hidden_only + "\n```",
             "def f(x) return\n```", right]
    correct, formed = T.score("induction", [PLUS1] * 5, texts, "toy")
    assert correct == [True, False, True, False, False]
    assert formed == [True, True, True, True, False]
    azr = f"t</think><answer>\n```python\n{right}\n```\n</answer>"
    assert T.score("induction", [PLUS1], [azr], "azr") == ([True], [True])


def test_score_math():
    texts = ["3+2=5. <answer>5</answer>", "so \\boxed{5}", "<answer>6</answer>", "It is 5.",
             "<answer>\\frac{10}{2}</answer>"]
    correct, formed = T.score("math", [{"question": "3+2", "answer": 5}] * 5, texts, "toy")
    assert correct == [True, True, False, False, True]
    assert formed == [True, True, True, False, True]


def test_score_checks_identical_answers_once(monkeypatch):
    calls = Counter()

    def counting(name, fn):
        def wrapper(*a, **k):
            calls[name] += 1
            calls[name + "/jobs"] += len(a[0]) if name.endswith("many") else 1
            return fn(*a, **k)
        return wrapper
    for name in ("check_deduction", "check_abduction_many", "check_induction_many"):
        monkeypatch.setattr(verifier, name, counting(name, getattr(verifier, name)))
    monkeypatch.setattr(T, "check_math", counting("check_math", T.check_math))

    # deduction: "6" twice for DOUBLE (two texts, one answer), "7", and "6" for another task
    ok, _ = T.score("deduction", [DOUBLE, DOUBLE, DOUBLE, REVERSE, DOUBLE],
                    ["6\n```", "6\n```junk", "7\n```", "6\n```", "6"], "toy")
    assert ok == [True, True, False, False, False] and calls["check_deduction"] == 3
    # abduction: one sandbox batch, with the two distinct inputs
    ok, _ = T.score("abduction", [MOD3] * 5, ["1\n```", "4\n```", "1\n```", "1\n```", "x"], "toy")
    assert ok == [True, True, True, True, False]
    assert calls["check_abduction_many"] == 1 and calls["check_abduction_many/jobs"] == 2
    # induction: three identical candidates, one job
    calls.clear()
    ok, _ = T.score("induction", [PLUS1] * 3, ["def f(x):\n    return x + 1\n```"] * 3, "toy")
    assert ok == [True] * 3 and calls["check_induction_many/jobs"] == 1
    # math: <answer>5</answer>, \boxed{5} and <answer> 5 </answer> all extract to "5"
    ok, _ = T.score("math", [{"answer": "5"}] * 4,
                    ["<answer>5</answer>", "\\boxed{5}", "<answer> 5 </answer>", "no"], "toy")
    assert ok == [True, True, True, False] and calls["check_math"] == 1


# ==============================================================================================
# The toy world
# ==============================================================================================
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
    assert all(T.split_of(q) == "heldout" for q in hq)


def test_unknown_split_is_an_error_naming_it():
    # (no up-front check any more: the generator finds no item of the split and says so)
    with pytest.raises(RuntimeError, match="could not generate 1 test items"):
        T.make_arith(1, 0, "test")


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


def test_difficulty_mix():
    tasks = T.make_code_tasks(3000, 0)
    lv3 = sum(t["level"] == 3 for t in tasks) / len(tasks)
    assert 0.08 < lv3 < 0.25
    for t in tasks:  # ints stay small, strings short (except 'Hello World'), lists 2-4
        for m in re.findall(r"-?\d+", t["output"]):
            assert abs(int(m)) < T.INT_LIMIT
        for lit in re.findall(r"\[[\d, ]*\]", t["input"]):
            assert 2 <= len(json.loads(lit)) <= 4


def test_induction_tasks():
    tasks = T.make_induction_tasks(120, 5, n_inputs=6)
    assert len(tasks) == 120
    for t in tasks:
        assert set(t) == {"program", "inputs", "outputs", "message", "family", "level"}
        assert len(t["inputs"]) == 6 == len(set(t["inputs"]))
        assert len(t["outputs"]) == 6 and len(set(t["outputs"])) > 1
        assert t["message"] and "def" not in t["message"] and "return" not in t["message"]
        assert t["family"] != "identity"
        for i, o in zip(t["inputs"], t["outputs"]):
            assert _exec(t["program"], i) == o
    assert all(len(t["inputs"]) == 4 for t in T.make_induction_tasks(10, 5, n_inputs=4))


def test_arith_answers_and_solutions():
    probs = T.make_arith(1000, 2)
    for a in probs:
        assert set(a) == {"question", "answer", "solution", "level"}
        assert eval(a["question"]) == a["answer"] and 0 <= a["answer"] <= T.ARITH_MAX
        assert a["solution"].endswith(f"<answer>{a['answer']}</answer>")
        assert T.math_answer(a["solution"]) == str(a["answer"])   # the scorer reads it back
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
    assert T._solve(("*", 6, 7), []) is None            # one factor of a product is <= 5
    assert T._solve(("-", 3, 4), []) is None            # no negative intermediate values


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


def test_toy_sets_are_the_fixed_heldout_sets():
    sets = T.toy_sets(["deduction", "abduction", "induction", "arith"], 5)
    assert {k: v[0] for k, v in sets.items()} == {"deduction": "deduction",
                                                  "abduction": "abduction",
                                                  "induction": "induction", "arith": "math"}
    assert sets["deduction"][1] is sets["abduction"][1]          # the same code tasks
    assert all(len(v[1]) == 5 for v in sets.values())
    assert all(T.split_of(p["program"]) == "heldout" for p in sets["induction"][1])
    assert all(T.split_of(p["question"]) == "heldout" for p in sets["arith"][1])
    assert T.toy_sets(["arith"], 5) == {"arith": sets["arith"]}


# ==============================================================================================
# Benchmark loaders
# ==============================================================================================
def _write(tmp_path, name, lines):
    p = tmp_path / name
    p.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return str(p)


def test_load_math_formats(tmp_path):
    gsm = _write(tmp_path, "gsm.jsonl", [
        {"question": "How many?",
         "answer": "He has 1,000 + 234 = <<1000+234=1234>>1234.\n#### 1,234"}, ""])
    assert T.load_math(gsm) == [dict(question="How many?", answer="1234",
                                     solution="He has 1,000 + 234 = <<1000+234=1234>>1234.")]
    plain = _write(tmp_path, "plain.jsonl", [{"question": "q", "answer": " 42 "}])
    assert T.load_math(plain) == [dict(question="q", answer="42", solution=None)]
    m5 = _write(tmp_path, "math.jsonl", [
        {"problem": "1+1?", "answer": "2", "solution": "$\\boxed{2}$", "level": 1},
        {"problem": "x?", "answer": "\\frac{1}{2}"}])
    assert T.load_math(m5) == [dict(question="1+1?", answer="2", solution="$\\boxed{2}$"),
                               dict(question="x?", answer="\\frac{1}{2}", solution=None)]
    pr = _write(tmp_path, "pr.jsonl", [
        {"prompt": "3+4*2", "response": "4*2=8. 3+8=11. <answer>11</answer>"},
        {"prompt": "half?", "response": "it is $\\boxed{\\frac{1}{2}}$"},
        {"prompt": "p", "response": "r <answer>1</answer>", "answer": 7}])
    assert T.load_math(pr) == [
        dict(question="3+4*2", answer="11", solution="4*2=8. 3+8=11. <answer>11</answer>"),
        dict(question="half?", answer="\\frac{1}{2}", solution="it is $\\boxed{\\frac{1}{2}}$"),
        dict(question="p", answer="7", solution="r <answer>1</answer>")]
    # one file may mix the formats: detected per line
    mixed = _write(tmp_path, "mixed.jsonl", [{"problem": "a", "answer": "1"},
                                             {"question": "b", "answer": "#### 2"}])
    assert [r["answer"] for r in T.load_math(mixed)] == ["1", "2"]


def test_load_cruxeval(tmp_path):
    p = _write(tmp_path, "crux.jsonl", [
        {"code": "def f(x):\n    return x", "input": "1", "output": "1", "id": "sample_0"},
        {"program": "def f(a, b):\n    return a", "input": "(1, ), 2", "output": "(1,)"}])
    assert T.load_cruxeval(p) == [dict(program="def f(x):\n    return x", input="1", output="1"),
                                  dict(program="def f(a, b):\n    return a", input="(1, ), 2",
                                       output="(1,)")]


def test_loader_errors(tmp_path):
    bad = _write(tmp_path, "bad.jsonl", [{"question": "q", "answer": "#### 1"}, "{not json"])
    with pytest.raises(SystemExit, match=r"bad\.jsonl, line 2: malformed JSON"):
        T.load_math(bad)
    with pytest.raises(SystemExit, match=r"bad\.jsonl, line 2: malformed JSON"):
        T.load_cruxeval(bad)
    arr = _write(tmp_path, "arr.jsonl", ["[1, 2]"])
    with pytest.raises(SystemExit, match=r"arr\.jsonl, line 1: expected a JSON object"):
        T.load_math(arr)
    nokey = _write(tmp_path, "nokey.jsonl", [
        {"code": "def f(x):\n    return x", "input": "1", "output": "1"},
        {"code": "def f(x):\n    return x", "input": "1"}])
    with pytest.raises(SystemExit, match=r"nokey\.jsonl, line 2: missing key 'output'"):
        T.load_cruxeval(nokey)
    noans = _write(tmp_path, "noans.jsonl", [{"problem": "p"}])
    with pytest.raises(SystemExit, match=r"noans\.jsonl, line 1: missing key 'answer'"):
        T.load_math(noans)
    noresp = _write(tmp_path, "noresp.jsonl", [{"prompt": "p"}])
    with pytest.raises(SystemExit, match=r"line 1: missing key 'response'"):
        T.load_math(noresp)
    noq = _write(tmp_path, "noq.jsonl", [{"question": "q", "answer": "1"}, {"foo": 1}])
    with pytest.raises(SystemExit, match=r"noq\.jsonl, line 2: expected a 'question', "
                                         r"'problem' or 'prompt' key"):
        T.load_math(noq)
    with pytest.raises(SystemExit, match=r"missing\.jsonl: file not found"):
        T.load_math(str(tmp_path / "missing.jsonl"))


def test_loader_error_names_the_file_line_after_a_blank_line(tmp_path):
    p = _write(tmp_path, "gap.jsonl", [{"problem": "p", "answer": "1"}, "", {"foo": 1}])
    with pytest.raises(SystemExit, match=r"gap\.jsonl, line 3: "):
        T.load_math(p)
    c = _write(tmp_path, "gapc.jsonl", ["", {"code": "c", "input": "1"}])
    with pytest.raises(SystemExit, match=r"gapc\.jsonl, line 2: missing key 'output'"):
        T.load_cruxeval(c)


# ==============================================================================================
# The evaluator
# ==============================================================================================
def _eval_sets():
    code = [DOUBLE, REVERSE]
    return {"deduction": ("deduction", code), "abduction": ("abduction", code),
            "induction": ("induction", [PLUS1]),
            "arith": ("math", [{"question": "2+3", "answer": 5}, {"question": "4*2", "answer": 8}])}


def _fake_sampler(table, calls):
    """Stands in for model.sample: the canned responses of each prompt, and a record per call."""
    def fake(model, tok, prompts, n=1, temperature=1.0, top_p=1.0, max_new_tokens=128,
             stop=None, batch_size=64, seed=None, min_new_tokens=0):
        calls.append(dict(prompts=list(prompts), n=n, stop=list(stop), cap=max_new_tokens,
                          seed=seed, temperature=temperature))
        texts = [table[p][j] for p in prompts for j in range(n)]
        return SimpleNamespace(texts=texts, lengths=torch.tensor([len(t) for t in texts]))
    return fake


def test_evaluate_groups_prompts_by_stop_and_cap_and_maps_answers_back(monkeypatch):
    sets = _eval_sets()
    # two responses per problem: (first, second) and whether each is right
    canned = {
        "deduction": [("6\n```", "7\n```"), ("'ab'\n```", "'ba'\n```")],
        "abduction": [("3\n```", "3"), ("'ab'\n```", "'ba'\n```")],
        "induction": [("def f(x):\n    return x + 1\n```", "def f(x):\n    return x\n```")],
        "arith": [(" 2+3=5. <answer>5</answer>", "<answer>6</answer>"),
                  ("<answer>9</answer>", "4*2=8. <answer>8</answer>")]}
    expected = {"deduction": [[True, False], [False, True]],
                "abduction": [[True, False], [True, False]],
                "induction": [[True, False]], "arith": [[True, False], [False, True]]}
    table, prompts_of = {}, {}
    for name, (kind, probs) in sets.items():
        prompts_of[name] = [T.eval_prompt(kind, p, "toy") for p in probs]
        table.update(zip(prompts_of[name], canned[name]))
    assert len(table) == 7                               # every prompt is distinct
    calls = []
    monkeypatch.setattr(M, "sample", _fake_sampler(table, calls))
    caps = {"deduction": 8, "abduction": 8, "induction": 16, "math": 6}
    out = T.evaluate(None, None, sets, "toy", caps, n=2, temperature=1.0, seed=5)
    assert {name: r["correct"] for name, r in out.items()} == expected
    for name, r in out.items():
        assert r["texts"] == [list(c) for c in canned[name]]
        assert r["lengths"] == [[len(a), len(b)] for a, b in canned[name]]
    # one call per (stop strings, cap): deduction and abduction together, induction (its own
    # cap) apart, math (its own stop string) apart
    got = sorted((tuple(c["stop"]), c["cap"], sorted(c["prompts"])) for c in calls)
    assert got == sorted([
        (("\n```",), 8, sorted(prompts_of["deduction"] + prompts_of["abduction"])),
        (("\n```",), 16, sorted(prompts_of["induction"])),
        (("</answer>",), 6, sorted(prompts_of["arith"]))])
    assert all(c["n"] == 2 and c["seed"] == 5 and c["temperature"] == 1.0 for c in calls)


def test_evaluate_one_sampling_call_when_stops_and_cap_are_shared(monkeypatch):
    sets = _eval_sets()
    table = {T.eval_prompt(k, p, "azr"): ["t</think><answer>no</answer>"]
             for k, probs in sets.values() for p in probs}
    calls = []
    monkeypatch.setattr(M, "sample", _fake_sampler(table, calls))
    out = T.evaluate(None, None, sets, "azr", 32)
    assert len(calls) == 1 and len(calls[0]["prompts"]) == 7 and calls[0]["stop"] == ["</answer>"]
    assert calls[0]["temperature"] == 0.0 and calls[0]["n"] == 1          # greedy by default
    assert {name: r["correct"] for name, r in out.items()} == {
        "deduction": [[False]] * 2, "abduction": [[False]] * 2, "induction": [[False]],
        "arith": [[False]] * 2}


def _check_shapes(out, sets, n, cap):
    assert set(out) == set(sets)
    for name, (kind, probs) in sets.items():
        r = out[name]
        assert set(r) == {"correct", "lengths", "texts"}
        assert len(r["correct"]) == len(r["lengths"]) == len(r["texts"]) == len(probs)
        for c, l, t in zip(r["correct"], r["lengths"], r["texts"]):
            assert len(c) == len(l) == len(t) == n
            assert all(isinstance(x, bool) for x in c) and all(isinstance(x, str) for x in t)
            assert all(type(x) is int and 1 <= x <= cap for x in l)
        # the verdicts are those of scoring the returned texts
        flat = [t for row in r["texts"] for t in row]
        ok, _ = T.score(kind, [p for p in probs for _ in range(n)], flat, "toy")
        assert [x for row in r["correct"] for x in row] == ok


def test_evaluate_micro_policy_greedy_and_seeded(micro_policy, monkeypatch):
    _, model, tok = micro_policy
    real, calls = M.sample, []

    def counting(*a, **k):
        calls.append(len(a[2]))
        return real(*a, **k)
    monkeypatch.setattr(M, "sample", counting)
    sets = _eval_sets()
    greedy = T.evaluate(model, tok, sets, "toy", max_new_tokens=8)
    _check_shapes(greedy, sets, 1, 8)
    assert sorted(calls) == [2, 5]       # the 5 code prompts together, the 2 math ones apart
    # greedy: the very texts of sampling those prompts directly
    prompts = [T.eval_prompt("deduction", p, "toy") for p in sets["deduction"][1]]
    direct = real(model, tok, prompts, temperature=0, max_new_tokens=8, stop=["\n```"])
    assert [row[0] for row in greedy["deduction"]["texts"]] == direct.texts
    # n = 2 at temperature 1 with a seed: reproducible, two different samples per problem
    a = T.evaluate(model, tok, sets, "toy", max_new_tokens=8, n=2, temperature=1.0, seed=3)
    b = T.evaluate(model, tok, sets, "toy", max_new_tokens=8, n=2, temperature=1.0, seed=3)
    _check_shapes(a, sets, 2, 8)
    assert a == b
    assert any(t[0] != t[1] for r in a.values() for t in r["texts"])


# ==============================================================================================
# Accuracy and the paired gain
# ==============================================================================================
def test_accuracy_and_correct_strings_hand_computed():
    results = {"a": {"correct": [[True], [False], [True], [True]]},
               "b": {"correct": [[False, True], [False, False]]}}    # greedy = the first sample
    acc = T.accuracy(results)
    se_a = math.sqrt(0.75 * 0.25 / 4)
    assert acc == pytest.approx({"eval/a/accuracy": 0.75, "eval/a/se": se_a,
                                 "eval/b/accuracy": 0.0, "eval/b/se": 0.0,
                                 "eval/accuracy": 0.375, "eval/se": se_a / 2})
    assert T.correct_strings(results) == {"a": "1011", "b": "00"}
    assert T.correct_strings({"a": {"correct": [[1], [0], [True]]}}) == {"a": "101"}
    thirty = T.accuracy({"c": {"correct": [[True]] * 30 + [[False]] * 70}})
    assert thirty["eval/c/se"] == pytest.approx(math.sqrt(0.21 / 100))


def test_paired_gain_hand_computed():
    # set a: d = [1-0, 1-1, 0-0, 1-0] = [1, 0, 0, 1]: mean 0.5,
    #   var (ddof 1) = (0.25+0.25+0.25+0.25)/3 = 1/3, var of the mean = 1/12
    # set b: d = [0, -1, 0, 0]: mean -0.25, var = (0.0625*3 + 0.5625)/3 = 0.25, /4 = 1/16
    base = {"a": [0, 1, 0, 0], "b": [1, 1, 0, 0]}
    final = {"a": [1, 1, 0, 1], "b": [1, 0, 0, 0]}
    gain, se = T.paired_gain(base, final)
    assert gain == pytest.approx((0.5 - 0.25) / 2)
    assert se == pytest.approx(math.sqrt(1 / 12 + 1 / 16) / 2)
    # identical answers: no gain and no noise, whatever the accuracy
    assert T.paired_gain(base, base) == (0.0, 0.0)
    # only the sets evaluated in both count
    assert T.paired_gain(base, {"a": final["a"]}) == pytest.approx((0.5, math.sqrt(1 / 12)))
    # the paired SE is below the independent-samples SE when the models mostly agree
    b = {"a": [1] * 30 + [0] * 70}
    f = {"a": [1] * 30 + [1] * 5 + [0] * 65}
    g, se = T.paired_gain(b, f)
    indep = math.hypot(math.sqrt(0.30 * 0.70 / 100), math.sqrt(0.35 * 0.65 / 100))
    assert g == pytest.approx(0.05) and se < indep / 2
    # booleans (as evaluate returns them) count as 0/1
    assert T.paired_gain({"a": [False, True]}, {"a": [True, True]}) == pytest.approx((0.5, 0.5))


def test_paired_gain_bad_input():
    with pytest.raises(ValueError, match="same >= 2 problems"):
        T.paired_gain({"a": [1, 0]}, {"a": [1, 0, 1]})
    with pytest.raises(ValueError, match="same >= 2 problems"):
        T.paired_gain({"a": [1]}, {"a": [0]})
    with pytest.raises(ValueError, match="no set evaluated in both"):
        T.paired_gain({"a": [1, 0]}, {"b": [1, 0]})


def test_paired_gain_clusters_must_name_one_cluster_per_problem():
    with pytest.raises(ValueError, match="cluster"):
        T.paired_gain({"a": [1, 0]}, {"a": [1, 1]}, {"a": [0]})


def test_paired_gain_clustered_by_program_hand_computed():
    # set a: d = [1, 1, 0, 0], mean 0.5, n 4; set b: d = [1, 0], mean 0.5, n 2; T = 2 sets.
    # u per problem = (d - mean) / (n T): a -> [1/16, 1/16, -1/16, -1/16], b -> [1/8, -1/8].
    # clusters 0: a0 + a1 + b0 = 1/4; 1: a2 = -1/16; 2: a3 = -1/16; 3: b1 = -1/8.
    # SE^2 = G/(G-1) * sum u_c^2 = 4/3 * (1/16 + 1/256 + 1/256 + 1/64) = 4/3 * 22/256
    base = {"a": [0, 0, 0, 0], "b": [0, 0]}
    final = {"a": [1, 1, 0, 0], "b": [1, 0]}
    gain, se = T.paired_gain(base, final, {"a": [0, 0, 1, 2], "b": [0, 3]})
    assert gain == pytest.approx(0.5)
    assert se == pytest.approx(math.sqrt(4 / 3 * 22 / 256))
    # one set, every problem its own cluster: exactly the unclustered paired SE
    b1, f1 = {"a": [0, 1, 0, 0, 1, 0]}, {"a": [1, 1, 0, 1, 0, 0]}
    assert T.paired_gain(b1, f1, {"a": list(range(6))})[1] == pytest.approx(
        T.paired_gain(b1, f1)[1])
    # 5 of 20 problems flip together because they share a program: the clustered SE is larger
    b2, f2 = {"a": [0] * 20}, {"a": [1] * 5 + [0] * 15}
    shared = {"a": [0] * 5 + list(range(1, 16))}
    assert T.paired_gain(b2, f2, shared)[1] > 1.5 * T.paired_gain(b2, f2)[1]
    # a single cluster says nothing about the spread: the SE is unknown
    assert math.isnan(T.paired_gain({"a": [0, 0]}, {"a": [1, 0]}, {"a": [7, 7]})[1])


def test_program_ids_shared_across_sets_and_whitespace():
    sets = {"deduction": ("deduction", [{"program": "def f(x):\n    return x"},
                                        {"program": "def f(x): return x+1"}]),
            "induction": ("induction", [{"program": "def f(x):  return x+1"},
                                        {"program": "def f(x):\n    return x"}]),
            "arith": ("math", [{"question": "1+2", "answer": 3}, {"question": "4*2", "answer": 8},
                               {"question": "1+2", "answer": 3}])}
    assert T.program_ids(sets) == {"deduction": [0, 1], "induction": [1, 0], "arith": [2, 3, 2]}
