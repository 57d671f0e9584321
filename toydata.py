"""The toy world: small `def f(...)` programs, toy arithmetic, and benchmark loaders.

Everything here is seeded and deterministic: each public generator builds its own
`random.Random(seed)` and never touches the global RNG. No torch import.

Public API
    make_code_tasks(n, seed, split="train", levels=None)   -> [dict(program, input, output, family, level)]
    make_induction_tasks(n, seed, split="train", n_inputs=6, levels=None)
                                                           -> [dict(program, inputs, outputs, message, family, level)]
    make_arith(n, seed, split="train", levels=None)         -> [dict(question, answer, solution, level)]
    split_of(text) -> "train" | "heldout"                  (stable hash split used by all generators)
    run_program(program, args_text) -> value               (in-process exec, for OUR generated programs only)
    load_jsonl(path), load_math(path), load_cruxeval(path)  (errors name file, line and problem)
    describe()                                              (`python toydata.py` prints samples + histograms)

Difficulty mix (following a measured trial of a 5M-param char-level model on this kind of world):
ints 0-12, `*` only by 2 or 3, int results kept in (-30, 30), strings <= 6 chars (plus 'Hello World'),
lists of 2-4 digits, about 15% level-3 tasks (loops, 3-step pipelines, if/elif/else), and
conditionals weighted up because they were the most learnable family.
"""
import hashlib
import json
import random
import re
import sys
from collections import Counter
from pathlib import Path

# ----------------------------------------------------------------------------------------------
# Value domains
# ----------------------------------------------------------------------------------------------
WORDS = ["Hello World", "hello", "world", "abc", "cat", "dog", "level", "noon", "apple", "banana",
         "python", "zero", "play", "code", "moon", "tree", "hi", "ok", "aab", "data"]
LETTERS = "abcdefghijklmnopqrstuvwxyz"
MAX_REPR = 40          # drop tasks whose output repr is longer than this
INT_LIMIT = 30         # drop tasks with any int result (also inside lists) with |v| >= INT_LIMIT
LEVELS = (1, 2, 3)
SPLITS = ("train", "heldout")


class DataError(ValueError):
    """Bad data file or bad argument; the message names the file/line/key or the problem."""


def split_of(text):
    """Stable split of a program text or arithmetic question: ~10% 'heldout', rest 'train'."""
    return "heldout" if int(hashlib.sha1(text.encode()).hexdigest(), 16) % 10 == 0 else "train"


def _rand_int(rng):
    return rng.randint(0, 12)


def _rand_str(rng):
    if rng.random() < 0.5:
        return rng.choice(WORDS)
    return "".join(rng.choice(LETTERS) for _ in range(rng.randint(2, 6)))


def _rand_list(rng):
    return [rng.randint(0, 9) for _ in range(rng.randint(2, 4))]


# argument kinds -> value samplers
KINDS = {
    "int": _rand_int,                           # 0..12
    "pos": lambda rng: rng.randint(1, 5),       # divisor / modulus
    "rep": lambda rng: rng.randint(1, 3),       # repeat count / small multiplier
    "idx": lambda rng: rng.randint(0, 4),       # slice bound
    "str": _rand_str,
    "list": _rand_list,
}
VAR = {"int": "x", "str": "s", "list": "nums"}  # parameter name for single-argument programs
KIND_WORD = {"int": "a number", "str": "a string", "list": "a list of numbers"}


def _c(rng, lo=1, hi=6):
    return rng.randint(lo, hi)


def _m(rng):
    return rng.choice([2, 3])


def _ch(rng):
    return rng.choice("aeiolnost")


# ----------------------------------------------------------------------------------------------
# Program families. Each returns (params, kinds, body_lines, level, message).
# body lines carry their own extra indentation (relative to the function body).
# ----------------------------------------------------------------------------------------------
def fam_identity(rng):
    kind = rng.choice(["int", "str", "list"])
    v = VAR[kind]
    return [v], [kind], [f"return {v}"], 1, f"a very short function of {KIND_WORD[kind]}"


def fam_arithmetic(rng):
    c, m = _c(rng), _m(rng)
    if rng.random() < 0.6:
        expr = rng.choice([f"x + {c}", f"x - {c}", f"x * {m}", f"x // {m}", f"x % {_c(rng, 2, 5)}",
                           f"{c} - x", f"abs(x - {c + 3})"])
        level = 1
    else:
        expr = rng.choice([f"x * {m} + {c}", f"x * {m} - {c}", f"(x + {c}) % {_c(rng, 2, 5)}",
                           f"(x + {c}) // {m}", f"x + x", f"x - x // {m}", f"x * x % 10",
                           f"x // {m} + x % {m}"])
        level = 2
    msg = "uses the number twice" if expr.count("x") >= 2 else "does arithmetic on a number"
    return ["x"], ["int"], [f"return {expr}"], level, msg


def fam_two_arg(rng):
    c = _c(rng)
    form = rng.choice(["ii", "ii", "sn", "st", "ln"])
    if form == "ii":
        bkind = "int"
        if rng.random() < 0.6:
            expr, level = rng.choice(["a + b", "a - b", "max(a, b)", "min(a, b)", "b - a"]), 1
        else:
            expr, level = rng.choice(["a % b", "a // b", "a * b", "abs(a - b)", f"(a + b) % {_c(rng, 2, 5)}",
                                      "a * 2 + b", "a + b + b"]), 2
            if expr in ("a % b", "a // b"):
                bkind = "pos"
            if expr == "a * b":
                bkind = "rep"
        return ["a", "b"], ["int", bkind], [f"return {expr}"], level, "takes two numbers"
    if form == "sn":
        expr = rng.choice(["s[:n]", "s[n:]", "s * n", "s[n]", "s[n:] + s[:n]", "len(s) + n"])
        kind = "rep" if expr == "s * n" else "idx"
        level = 1 if expr in ("s[:n]", "s[n:]", "s * n", "s[n]") else 2
        return ["s", "n"], ["str", kind], [f"return {expr}"], level, "takes a string and a number"
    if form == "st":
        expr = rng.choice(["s + t", "t + s", "len(s) + len(t)", "s == t", f"s + '{rng.choice(' -')}' + t",
                           "s[0] + t[0]", "max(s, t)"])
        level = 1 if expr in ("s + t", "t + s", "s == t") else 2
        return ["s", "t"], ["str", "str"], [f"return {expr}"], level, "takes two strings"
    expr = rng.choice(["nums[:n]", "nums + [n]", "nums.count(n)", "n in nums", "sum(nums) + n",
                       "[v + n for v in nums]", "[v for v in nums if v > n]"])
    level = 1 if expr in ("nums[:n]", "nums + [n]", "n in nums", "nums.count(n)") else 2
    return ["nums", "n"], ["list", "idx"], [f"return {expr}"], level, "takes a list and a number"


def fam_string(rng):
    ch, ch2 = _ch(rng), _ch(rng)
    if rng.random() < 0.6:
        expr = rng.choice(["s.upper()", "s.lower()", "s[::-1]", "s[0]", "s[-1]", "s[:2]", "s[1:]",
                           "len(s)", f"s + '{ch}'", f"s.count('{ch}')", "s.capitalize()",
                           "s.swapcase()", "s.title()", f"'{ch}' in s"])
        level = 1
    else:
        expr = rng.choice(["s[::2]", "s[1:-1]", f"s.find('{ch}')", f"s.replace('{ch}', '{ch2}')",
                           "s == s[::-1]", f"s.startswith('{ch}')", "s.split()", "s[0] + s[-1]",
                           "s[-2:] + s[:2]", "len(s) % 3", "s.upper()[::-1]", "s * 2"])
        level = 2
    return ["s"], ["str"], [f"return {expr}"], level, "works on a string"


def fam_list(rng):
    c = _c(rng, 1, 5)
    if rng.random() < 0.55:
        expr = rng.choice(["sum(nums)", "len(nums)", "max(nums)", "min(nums)", "sorted(nums)",
                           "nums[::-1]", "nums[0]", "nums[-1]", "nums[:2]", f"nums + [{c}]",
                           "sorted(nums, reverse=True)", f"nums.count({c})", "nums[1:]"])
        level = 1
    else:
        expr = rng.choice([f"[v + {c} for v in nums]", f"[v * {_m(rng)} for v in nums]",
                           f"[v for v in nums if v > {c}]", "[v % 2 for v in nums]",
                           "sum(v for v in nums if v % 2 == 0)", f"len([v for v in nums if v < {c}])",
                           "max(nums) - min(nums)", "nums.index(max(nums))", "[v - 1 for v in nums]",
                           "sum(nums) % 10", "sorted(nums)[1]"])
        level = 2
    return ["nums"], ["list"], [f"return {expr}"], level, "works on a list of numbers"


def fam_conditional(rng):
    kind = rng.choice(["int", "int", "int", "str", "str", "list", "ii"])
    three = rng.random() < 0.15 and kind in ("int", "list", "ii")
    c = _c(rng, 3, 9)
    if kind == "int":
        params, kinds, msg = ["x"], ["int"], "decides between cases of a number"
        rets = [f"x + {_c(rng)}", f"x - {_c(rng)}", f"x * {_m(rng)}", f"x // {_m(rng)}", "x % 3",
                str(_c(rng, 0, 9)), "0", "x", "-x", f"{c} - x"]
        if three:
            c2 = c + _c(rng, 1, 4)
            conds = [f"x < {c}", f"x < {c2}"]
        else:
            conds = [rng.choice([f"x > {c}", f"x < {c}", "x % 2 == 0", f"x == {c}", f"x >= {c}",
                                 "x % 3 == 0"])]
    elif kind == "str":
        params, kinds, msg = ["s"], ["str"], "checks something about a string"
        ch = _ch(rng)
        rets = ["s.upper()", "s[::-1]", "s[:2]", "len(s)", "'yes'", "'no'", "s + '!'", "s[0]", "s[-1]",
                "s.lower()"]
        conds = [rng.choice([f"len(s) > {_c(rng, 2, 5)}", "s == s[::-1]", f"'{ch}' in s",
                             f"s.startswith('{ch}')", "s[0] == s[-1]", "s.islower()", f"len(s) % 2 == 0"])]
    elif kind == "list":
        params, kinds, msg = ["nums"], ["list"], "branches on a list of numbers"
        rets = ["max(nums)", "min(nums)", "sum(nums)", "sorted(nums)", "nums[0]", "len(nums)",
                "nums[::-1]", "nums[-1]", "0"]
        if three:
            s1 = _c(rng, 5, 12)
            conds = [f"sum(nums) < {s1}", f"sum(nums) < {s1 + _c(rng, 3, 8)}"]
        else:
            conds = [rng.choice([f"sum(nums) > {_c(rng, 5, 20)}", f"len(nums) > {_c(rng, 2, 3)}",
                                 f"{_c(rng, 0, 9)} in nums", "nums[0] < nums[-1]", "nums == sorted(nums)",
                                 f"max(nums) > {_c(rng, 4, 8)}"])]
    else:
        params, kinds, msg = ["a", "b"], ["int", "int"], "compares two numbers"
        rets = ["a - b", "b - a", "a + b", "a", "b", "0", "a * 2", "b // 2", f"a + {_c(rng)}"]
        if three:
            conds = ["a > b", "a == b"]
        else:
            conds = [rng.choice(["a > b", "a < b", "a == b", "a % 2 == 0", f"a + b > {c + 6}",
                                 "a >= b"])]
    picks = rng.sample(rets, len(conds) + 1)
    lines = [f"if {conds[0]}:", f"    return {picks[0]}"]
    if len(conds) == 2:
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
_FAM_NAMES = list(FAMILIES)
_FAM_WEIGHTS = [FAMILIES[k][1] for k in _FAM_NAMES]


def _draw_family(rng):
    return rng.choices(_FAM_NAMES, weights=_FAM_WEIGHTS)[0]


def _draw_program(rng, levels, family):
    """Draw (program_text, kinds, level, message) of `family` with level in `levels`, or None."""
    for _ in range(50):
        params, kinds, body, level, msg = FAMILIES[family][0](rng)
        if level in levels:
            text = f"def f({', '.join(params)}):\n" + "\n".join("    " + ln for ln in body)
            return text, kinds, level, msg
    return None  # this family has no program at the requested levels (e.g. identity at level 3)


def _draw_args(rng, kinds):
    values = [KINDS[k](rng) for k in kinds]
    return ", ".join(repr(v) for v in values)


# ----------------------------------------------------------------------------------------------
# Executing the generator's own programs
# ----------------------------------------------------------------------------------------------
_FN_CACHE = {}


def run_program(program, args_text):
    """Return f(*args) for a program text and an argument text.

    SAFETY: this exec's in-process and is only for the trusted programs generated in this
    file. Model-written code must never go through here; it runs in verifier.py's sandbox.
    """
    fn = _FN_CACHE.get(program)
    if fn is None:
        ns = {}
        exec(compile(program, "<toy>", "exec"), ns)  # trusted: our own generated program text
        fn = _FN_CACHE[program] = ns["f"]
        if len(_FN_CACHE) > 200_000:
            _FN_CACHE.clear()
    args = eval(f"({args_text},)", {"__builtins__": {}})  # trusted: repr of our own drawn values
    return fn(*args)


def _small(v):
    if isinstance(v, bool) or isinstance(v, str):
        return True
    if isinstance(v, int):
        return abs(v) < INT_LIMIT
    if isinstance(v, list):
        return all(_small(x) for x in v)
    return False  # floats, None, tuples... are not part of the toy world


def _output(program, args_text):
    """repr of f(*args), or None if it raises, is too long, or has big ints."""
    try:
        value = run_program(program, args_text)
    except Exception:
        return None
    if not _small(value):
        return None
    out = repr(value)
    return out if len(out) <= MAX_REPR else None


def _check(split, levels):
    if split not in SPLITS:
        raise DataError(f"split must be one of {SPLITS}, got {split!r}")
    levels = tuple(LEVELS if levels is None else levels)
    if not levels or any(lv not in LEVELS for lv in levels):
        raise DataError(f"levels must be a non-empty subset of {LEVELS}, got {levels!r}")
    return set(levels)


_MAX_DUP_TRIES = 30  # per item: how many already-seen candidates to skip before accepting a repeat
_MAX_KIND_TRIES = 1000  # per heldout item: failed candidates of its kind before the kind is redrawn


def _generate(n, rng, split, draw_kind, make_one, key):
    """Shared loop: for each item draw its kind (family or level) with draw_kind(rng), then
    candidates with make_one(rng, split, seen, kind) -> dict | None | "dup"; keep those of `split`.

    Train items: a failed candidate (None) redraws the kind; items may repeat a program (with a
    different input). Heldout items keep their drawn kind through failed candidates (up to
    _MAX_KIND_TRIES; a kind with no heldout item at all, like identity, is then redrawn), get
    distinct `key` texts where possible (up to _MAX_DUP_TRIES already-seen ones skipped per
    item, then a repeat with new inputs) and are never the same task twice unless the kind has
    run out. So the heldout mix of kinds follows the train weights even for a family with only
    a few heldout programs. (Redrawing the kind there skewed the heldout code tasks towards the
    families with thousands of programs: 59% conditionals, against 18% in train.)"""
    held = split == "heldout"
    out, seen, exact = [], set(), set()
    budget = 2000 * n + 10_000
    while len(out) < n:
        dups, fails, kind = 0, 0, draw_kind(rng)
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
                kind, fails = draw_kind(rng), 0
        seen.add(item[key])
        exact.add(repr(item))
        out.append(item)
    return out


# ----------------------------------------------------------------------------------------------
# Public generators
# ----------------------------------------------------------------------------------------------
def make_code_tasks(n, seed, split="train", levels=None):
    """n deduction/abduction tasks: dict(program, input, output, family, level).

    Deterministic per (n, seed, split, levels). Programs of the other split are rejected
    (split_of(program)), so train and heldout never share a program text."""
    lv = _check(split, levels)
    rng = random.Random(seed)

    def one(rng, split, seen, family):
        for _ in range(20):  # retry within the family so the family mix follows FAMILIES weights
            drawn = _draw_program(rng, lv, family)
            if drawn is None:
                return None
            program, kinds, level, _ = drawn
            if split_of(program) != split:
                continue
            if seen is not None and program in seen:
                return "dup"
            args = _draw_args(rng, kinds)
            output = _output(program, args)
            if output is None:
                continue
            if family != "identity" and output == args and rng.random() < 0.75:
                continue  # output == input is guessable; keep only a few of these
            return dict(program=program, input=args, output=output, family=family, level=level)
        return None

    return _generate(n, rng, split, _draw_family, one, "program")


def make_induction_tasks(n, seed, split="train", n_inputs=6, levels=None):
    """n induction tasks: dict(program, inputs, outputs, message, family, level).

    inputs are n_inputs distinct argument texts; outputs are not all identical."""
    lv = _check(split, levels)
    if n_inputs < 2:
        raise DataError(f"n_inputs must be >= 2, got {n_inputs}")
    rng = random.Random(seed)

    def one(rng, split, seen, family):
        drawn = None if family == "identity" else _draw_program(rng, lv, family)
        if drawn is None:
            return None
        program, kinds, level, msg = drawn
        if split_of(program) != split:
            return None
        if seen is not None and program in seen:
            return "dup"
        inputs, outputs = [], []
        for _ in range(n_inputs * 6):
            args = _draw_args(rng, kinds)
            if args in inputs:
                continue
            output = _output(program, args)
            if output is None:
                continue
            inputs.append(args)
            outputs.append(output)
            if len(inputs) == n_inputs:
                break
        if len(inputs) < n_inputs or len(set(outputs)) < 2:
            return None
        return dict(program=program, inputs=inputs, outputs=outputs, message=msg, family=family,
                    level=level)

    return _generate(n, rng, split, _draw_family, one, "program")


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
    va = _solve(a, steps)
    vb = None if va is None else _solve(b, steps)
    if vb is None:
        return None
    if op == "*" and min(va, vb) > 5:
        return None  # keep products small: one factor is at most 5
    v = va + vb if op == "+" else va - vb if op == "-" else va * vb
    if not 0 <= v <= ARITH_MAX:
        return None
    steps.append(f"{va}{op}{vb}={v}.")
    return v


def make_arith(n, seed, split="train", levels=None):
    """n arithmetic problems: dict(question, answer, solution, level).

    level 1: one operation; 2: two operations, no parentheses; 3: three operations or
    parentheses. Operands 0-20 (75% single digits), one factor of every product <= 5, all
    intermediate values in 0..60. solution = worked steps in evaluation order, e.g.
    '4*2=8. 3+8=11. <answer>11</answer>'. Split by split_of(question)."""
    lv = sorted(_check(split, levels))
    weights = [ARITH_LEVEL_WEIGHTS[x] for x in lv]
    rng = random.Random(seed)

    def draw_level(rng):
        return rng.choices(lv, weights=weights)[0]

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

    return _generate(n, rng, split, draw_level, one, "question")


# ----------------------------------------------------------------------------------------------
# Loaders for benchmark files
# ----------------------------------------------------------------------------------------------
def _iter_jsonl(path):
    """Yield (line_number, object) for each non-blank line; DataError names file and line."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{path}: file not found")
    with open(p, encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}, line {i}: malformed JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}, line {i}: expected a JSON object, got {type(row).__name__}")
            yield i, row


def load_jsonl(path):
    """List of JSON objects, one per non-blank line. DataError names file and line on bad input."""
    return [row for _, row in _iter_jsonl(path)]


def _need(row, key, path, line):
    if key not in row:
        raise DataError(f"{path}, line {line}: missing key {key!r} (keys: {sorted(row)})")
    return row[key]


def _final_answer(text):
    """Final answer in a free-form response: <answer>..</answer>, '#### x', or last \\boxed{..}."""
    m = re.findall(r"<answer>(.*?)</answer>", text, re.S)
    if m:
        return m[-1].strip()
    if "####" in text:
        return text.rsplit("####", 1)[1].strip().replace(",", "")
    i = text.rfind("\\boxed{")
    if i >= 0:
        depth, j = 1, i + len("\\boxed{")
        for k in range(j, len(text)):
            depth += {"{": 1, "}": -1}.get(text[k], 0)
            if depth == 0:
                return text[j:k].strip()
    return text.strip()


def load_math(path):
    """Math benchmark rows -> [dict(question, answer: str, solution: str|None)].

    Formats, detected per line: GSM8K {question, answer='...#### 42'} (answer '42', commas
    removed; solution = text before ####), MATH-500 {problem, answer[, solution]}, and
    {prompt, response} (answer from <answer>, ####, or the last \\boxed{} of the response)."""
    out = []
    for line, row in _iter_jsonl(path):
        if "question" in row:
            q, a = row["question"], str(_need(row, "answer", path, line))
            if "####" in a:
                sol, ans = a.rsplit("####", 1)
                out.append(dict(question=q, answer=ans.strip().replace(",", ""), solution=sol.strip()))
            else:
                out.append(dict(question=q, answer=a.strip(), solution=row.get("solution")))
        elif "problem" in row:
            out.append(dict(question=row["problem"], answer=str(_need(row, "answer", path, line)).strip(),
                            solution=row.get("solution")))
        elif "prompt" in row:
            resp = row.get("response")
            if "answer" in row:
                ans = str(row["answer"]).strip()
            else:
                ans = _final_answer(str(_need(row, "response", path, line)))
            out.append(dict(question=row["prompt"], answer=ans, solution=resp))
        else:
            raise DataError(f"{path}, line {line}: missing key 'question' (or 'problem' / 'prompt')")
    return out


def load_cruxeval(path):
    """CRUXEval rows {code, input, output} -> [dict(program, input, output)] ('program' also accepted)."""
    out = []
    for line, row in _iter_jsonl(path):
        code = row["program"] if "program" in row and "code" not in row else _need(row, "code", path, line)
        out.append(dict(program=code, input=str(_need(row, "input", path, line)),
                        output=str(_need(row, "output", path, line))))
    return out


# ----------------------------------------------------------------------------------------------
# describe
# ----------------------------------------------------------------------------------------------
def describe(n=2000, seed=0):
    """Print a few samples of each kind and family/level histograms."""
    code = make_code_tasks(n, seed)
    print(f"== code tasks (train, n={n}) ==")
    shown = set()
    for t in code:
        if t["family"] not in shown:
            shown.add(t["family"])
            print(f"# {t['family']} L{t['level']}\n{t['program']}\n  f({t['input']}) == {t['output']}\n")
    fam = Counter(t["family"] for t in code)
    lev = Counter(t["level"] for t in code)
    print("family %:", {k: round(100 * v / n, 1) for k, v in fam.most_common()})
    print("level  %:", {k: round(100 * v / n, 1) for k, v in sorted(lev.items())})
    print(f"distinct programs: {len({t['program'] for t in code})}/{n}")
    held = make_code_tasks(200, seed, "heldout")
    print(f"heldout distinct programs: {len({t['program'] for t in held})}/200\n")
    print("== induction ==")
    for t in make_induction_tasks(2, seed):
        print(f"{t['program']}\n  message: {t['message']}")
        for i, o in zip(t["inputs"], t["outputs"]):
            print(f"  f({i}) == {o}")
        print()
    ar = make_arith(n, seed)
    print("== arithmetic ==")
    for lv in LEVELS:
        t = next(a for a in ar if a["level"] == lv)
        print(f"L{lv}: {t['question']} -> {t['solution']}")
    print("level %:", {k: round(100 * v / n, 1) for k, v in sorted(Counter(a["level"] for a in ar).items())})
    print("answers >= 10: %.0f%%" % (100 * sum(a["answer"] >= 10 for a in ar) / n))


if __name__ == "__main__":
    describe(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
