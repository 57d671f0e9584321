"""analyze.py — the paper's analyses for any set of zeroplay runs that share one base model.

    python analyze.py --runs runs/selfplay runs/rlvr runs/sft [--out runs/analysis]

Stages (each can be skipped; missing inputs are reported, never a crash):
  1. update sparsity   base vs every checkpoint of every run (Mukherjee et al. 2025, arXiv 2505.11711)
  2. entropy dynamics  token entropy vs step from metrics.jsonl; self-play split by role and task
  3. pass@k            base and each run's final checkpoint on held-out toy arithmetic, the toy code
                       tasks (deduction, abduction, induction) and `--eval name=path` benchmarks;
                       unbiased estimator (Chen et al. 2021), 95% bootstrap bands, coverage table
  4. curriculum        re-solve proposed deduction tasks from tasks.jsonl with one fixed checkpoint;
                       solve rate, response length and program size vs proposal step (Chae et al. 2025)
  5. self-play comparison  held-out accuracy, entropy by role, valid-proposal rate, solve-rate
                       histograms overlaid across self-play runs (proposer-reward / frozen ablations)
Output: <out>/report.md, <out>/*.png, <out>/results.json, <out>/cache/ (sampled responses).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import time
import warnings
from contextlib import ExitStack
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm


# ----------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------
@dataclass
class Config:
    runs: list = field(default_factory=list, metadata={
        "help": "run folders to analyse (config.json, metrics.jsonl, checkpoints/, tasks.jsonl); "
                "all must share one base model (config.json 'model')"})
    out: str = field(default="runs/analysis", metadata={
        "help": "output folder for report.md, figures, results.json and the sample cache"})
    eval: list = field(default_factory=list, metadata={
        "help": "extra benchmark JSONL files as name=path; a name containing 'crux' is read as "
                "CRUXEval (output prediction, scored like deduction), anything else as math "
                "(GSM8K / MATH-500 / prompt-response format)"})
    sets: list = field(default_factory=lambda: ["arith", "deduction", "abduction", "induction"],
                       metadata={"help": "built-in held-out toy eval sets for pass@k"})
    n: int = field(default=16, metadata={"help": "samples per problem (pass@k for k=1,2,4..n)"})
    problems: int = field(default=64, metadata={
        "help": "problems per eval set (toy sets are generated, benchmark files are truncated)"})
    temperature: float = field(default=0.6, metadata={"help": "sampling temperature (Yue et al.)"})
    top_p: float = field(default=0.95, metadata={"help": "nucleus sampling top-p (Yue et al.)"})
    max_new_tokens: int = field(default=0, metadata={
        "help": "response token cap; 0 = per-set default (toy style: math 96, deduction/abduction "
                "72, induction 200; azr style: 1024)"})
    batch_size: int = field(default=64, metadata={"help": "sequences per sampling batch"})
    seed: int = field(default=0, metadata={"help": "seed for problem generation, sampling, bootstrap"})
    n_boot: int = field(default=1000, metadata={"help": "bootstrap resamples for confidence bands"})
    tol: list = field(default_factory=lambda: [1e-5], metadata={
        "help": "sparsity tolerances: an entry is unchanged when |delta| <= tol (bf16 weights, "
                "delta in float32); the first one is the headline number"})
    curriculum_tasks: int = field(default=64, metadata={
        "help": "valid proposed deduction tasks sampled across training from tasks.jsonl "
                "(800 in the paper; 0 skips the curriculum)"})
    curriculum_solver: str = field(default="final", metadata={
        "help": "checkpoint that re-solves the curriculum tasks: base, final (each run's last "
                "checkpoint) or a checkpoint PATH"})
    curriculum_bins: int = field(default=6, metadata={"help": "proposal-step bins on curriculum plots"})
    skip_sparsity: bool = field(default=False, metadata={"help": "skip the update-sparsity stage"})
    skip_passk: bool = field(default=False, metadata={"help": "skip pass@k sampling"})
    skip_curriculum: bool = field(default=False, metadata={"help": "skip the curriculum re-solve"})
    no_cache: bool = field(default=False, metadata={"help": "ignore cached samples (they are rewritten)"})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda[:i]"})
    dtype: str = field(default="auto", metadata={"help": "auto (bf16 on CUDA, fp32 on CPU), float32, bfloat16"})
    threads: int = field(default=1, metadata={
        "help": "torch CPU threads (0 = torch's default; 1 is fastest for the toy base on a "
                "busy 2-core machine)"})


def parse_args(argv=None) -> Config:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in fields(Config):
        flag = "--" + f.name.replace("_", "-")
        default = f.default_factory() if callable(f.default_factory) else f.default
        help_ = f"{f.metadata['help']} (default: {default})"
        if f.type == "bool":
            p.add_argument(flag, action="store_true", help=help_)
        elif f.type == "list":
            typ = float if f.name == "tol" else str
            p.add_argument(flag, nargs="+" if f.name == "runs" else "*", type=typ, default=default,
                           required=f.name == "runs", help=help_)
        else:
            p.add_argument(flag, type={"int": int, "float": float, "str": str}[f.type],
                           default=default, help=help_)
    cfg = Config(**vars(p.parse_args(argv)))
    check_config(cfg)
    return cfg


def check_config(cfg: Config) -> None:
    """Bad flags → SystemExit naming the flag."""
    if not cfg.runs:
        raise SystemExit("--runs: give at least one run folder")
    if cfg.threads < 0:
        raise SystemExit(f"--threads must be >= 0, got {cfg.threads}")
    if cfg.n < 1 or cfg.problems < 1:
        raise SystemExit(f"--n and --problems must be >= 1 (got {cfg.n}, {cfg.problems})")
    if not 0 < cfg.top_p <= 1 or cfg.temperature <= 0:
        raise SystemExit(f"--temperature must be > 0 and --top-p in (0, 1] "
                         f"(got {cfg.temperature}, {cfg.top_p})")
    if not cfg.tol or any(t < 0 for t in cfg.tol):
        raise SystemExit(f"--tol: give one or more tolerances >= 0 (got {cfg.tol})")
    for s in cfg.sets:
        if s not in TOY_SETS:
            raise SystemExit(f"--sets: unknown set {s!r} (choose from {', '.join(TOY_SETS)})")
    for e in cfg.eval:
        name, sep, path = e.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"--eval {e!r}: expected name=path, e.g. gsm8k=data/gsm8k_test.jsonl")
        if not Path(path).is_file():
            raise SystemExit(f"--eval {e!r}: no such file {path}")
    if cfg.curriculum_tasks < 0 or cfg.curriculum_bins < 1:
        raise SystemExit("--curriculum-tasks must be >= 0 and --curriculum-bins >= 1")


TOY_SETS = ("arith", "deduction", "abduction", "induction")


# ----------------------------------------------------------------------------------------------
# Statistics (pure functions)
# ----------------------------------------------------------------------------------------------
def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem with c correct among n samples (Chen et al. 2021, eq. 1):
    1 - C(n-c, k) / C(n, k), in the numerically stable product form used by Chen et al. and
    Yue et al.: 1 - prod_{i=n-c+1..n} (1 - k/i). Exactly 1 when n - c < k."""
    n, c, k = int(n), int(c), int(k)
    if n < 1 or not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n (got n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    i = np.arange(n - c + 1, n + 1, dtype=np.float64)                              # [c]
    return float(1.0 - np.prod(1.0 - k / i))


def default_ks(n: int) -> list[int]:
    """k = 1, 2, 4, ... up to n (n itself appended when it is not a power of two)."""
    ks = [2 ** i for i in range(int(math.log2(n)) + 1)] if n >= 1 else []
    return ks + ([n] if ks and ks[-1] != n else [])


def pass_at_k_matrix(counts, n: int, ks) -> np.ndarray:
    """Per-problem pass@k: counts [P] correct-out-of-n → [P, K]."""
    return np.array([[pass_at_k(n, c, k) for k in ks] for c in counts], dtype=np.float64).reshape(
        len(counts), len(ks))


def pass_at_k_curve(counts, n: int, ks) -> np.ndarray:
    """pass@k averaged over problems (Chen et al.): counts [P] → [K]."""
    if len(counts) == 0:
        raise ValueError("pass_at_k_curve: no problems")
    return pass_at_k_matrix(counts, n, ks).mean(axis=0)


def bootstrap_ci(values_per_problem, stat_fn=None, n_boot: int = 1000, seed: int = 0,
                 alpha: float = 0.05):
    """Percentile bootstrap over problems (rows are resampled with replacement).

    values_per_problem: [P] or [P, ...]; stat_fn maps a resampled [P, ...] array to a scalar or an
    array (default: mean over axis 0). Returns (lo, hi) at the (alpha/2, 1-alpha/2) percentiles,
    each a float or an array shaped like stat_fn's output. Resamples whose statistic is nan (e.g.
    a rank correlation of a constant resample) are left out."""
    v = np.asarray(values_per_problem, dtype=np.float64)
    if v.ndim == 0 or len(v) == 0:
        raise ValueError("bootstrap_ci: need at least one problem")
    if not 0 < alpha < 1:
        raise ValueError(f"bootstrap_ci: alpha must be in (0, 1), got {alpha}")
    stat_fn = stat_fn or (lambda x: x.mean(axis=0))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(v), size=(n_boot, len(v)))                          # [B, P]
    stats = np.stack([np.asarray(stat_fn(v[i]), dtype=np.float64) for i in idx])   # [B, ...]
    with warnings.catch_warnings():  # resamples where the statistic is undefined (nan) are ignored
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanpercentile(stats, [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=0)
    return (float(lo), float(hi)) if np.ndim(lo) == 0 else (lo, hi)


def rankdata(x) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (as scipy.stats.rankdata)."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    for val in np.unique(x):  # average the ranks of tied values
        tie = x == val
        if tie.sum() > 1:
            ranks[tie] = ranks[tie].mean()
    return ranks


def spearman(x, y) -> float:
    """Spearman rank correlation (Pearson correlation of average ranks); nan if either is constant."""
    rx, ry = rankdata(x), rankdata(y)
    if len(rx) < 2 or rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def trend(steps, values, n_boot: int = 1000, seed: int = 0) -> dict:
    """Trend of a per-task quantity against proposal step: Spearman rho with a bootstrap 95% CI
    over tasks, plus the least-squares slope per 100 steps."""
    s, v = np.asarray(steps, float), np.asarray(values, float)
    ok = np.isfinite(s) & np.isfinite(v)
    s, v = s[ok], v[ok]
    if len(s) < 3:
        return {"rho": float("nan"), "lo": float("nan"), "hi": float("nan"),
                "slope_per_100": float("nan"), "n": int(len(s))}
    pairs = np.stack([s, v], 1)                                                    # [N, 2]
    lo, hi = bootstrap_ci(pairs, lambda p: spearman(p[:, 0], p[:, 1]), n_boot, seed)
    slope = float(np.polyfit(s, v, 1)[0] * 100) if s.std() > 0 and v.std() > 0 else (
        0.0 if s.std() > 0 else float("nan"))
    return {"rho": spearman(s, v), "lo": lo, "hi": hi, "slope_per_100": slope, "n": int(len(s))}


def bin_by_step(steps, values, n_bins: int, n_boot: int = 200, seed: int = 0):
    """Equal-count bins over proposal step → (bin mean step [B], mean value [B], 95% bootstrap
    CI low [B], high [B], count [B]). Percentile CIs stay inside the range of the data (a rate
    never gets a band below 0)."""
    s, v = np.asarray(steps, float), np.asarray(values, float)
    order = np.argsort(s, kind="mergesort")
    groups = [g for g in np.array_split(order, min(n_bins, len(s))) if len(g)]
    xs = np.array([s[g].mean() for g in groups])
    ys = np.array([v[g].mean() for g in groups])
    cis = np.array([bootstrap_ci(v[g], None, n_boot, seed) for g in groups]).reshape(len(groups), 2)
    return xs, ys, cis[:, 0], cis[:, 1], np.array([len(g) for g in groups])


# ----------------------------------------------------------------------------------------------
# Update sparsity (streamed from safetensors)
# ----------------------------------------------------------------------------------------------
KINDS = ("embedding", "attn_q", "attn_k", "attn_v", "attn_o", "mlp", "norm", "lm_head", "other")
CHUNK_ELEMS = 1 << 24  # at most 16M entries (64 MB in float32) of one tensor in memory at a time


def param_kind(name: str) -> str:
    """Matrix kind of a parameter name (Llama/Qwen/GPT-2 names)."""
    n = name.lower()
    if "lm_head" in n:
        return "lm_head"
    if "embed" in n or re.search(r"(^|\.)(wte|wpe)\.", n):
        return "embedding"
    if "norm" in n or re.search(r"(^|\.)ln_?\w*\.", n):
        return "norm"
    for key, kind in (("q_proj", "attn_q"), ("k_proj", "attn_k"), ("v_proj", "attn_v"),
                      ("o_proj", "attn_o")):
        if key in n:
            return kind
    if "mlp" in n or any(k in n for k in ("gate_proj", "up_proj", "down_proj", "fc1", "fc2")):
        return "mlp"
    return "other"


def layer_index(name: str) -> int | None:
    """Transformer block index of a parameter (`model.layers.3.` → 3), None outside the blocks."""
    m = re.search(r"(?:^|\.)(?:layers|h|blocks)\.(\d+)\.", name)
    return int(m.group(1)) if m else None


def weight_files(folder) -> dict[str, str]:
    """Tensor name → safetensors file of a checkpoint folder (sharded with an index json, a single
    model.safetensors, or a .safetensors file given directly)."""
    p = Path(folder)
    if p.is_file() and p.suffix == ".safetensors":
        files = [p]
    elif not p.is_dir():
        raise ValueError(f"{folder}: no such checkpoint folder")
    elif (p / "model.safetensors.index.json").exists():
        wm = json.loads((p / "model.safetensors.index.json").read_text())["weight_map"]
        return {k: str(p / v) for k, v in wm.items()}
    else:
        files = sorted(p.glob("*.safetensors"))
    if not files:
        raise ValueError(f"{folder}: no .safetensors weights (sparsity reads safetensors "
                         f"checkpoints only; re-save with save_pretrained)")
    from safetensors import safe_open

    out = {}
    for f in files:
        with safe_open(str(f), framework="pt") as h:
            out.update({k: str(f) for k in h.keys()})
    return out


def _chunks(handle_a, handle_b, name: str):
    """Yield matching float32 chunks of one tensor from two checkpoints, each first cast to bf16
    (a no-op for bf16 storage, round-to-nearest-even for fp32/fp16 storage)."""
    sa, sb = handle_a.get_slice(name), handle_b.get_slice(name)
    shape_a, shape_b = list(sa.get_shape()), list(sb.get_shape())
    if shape_a != shape_b:
        raise ValueError(f"tensor {name}: shapes differ between checkpoints ({shape_a} vs {shape_b})")
    numel = int(np.prod(shape_a)) if shape_a else 1
    if len(shape_a) == 0 or numel <= CHUNK_ELEMS:
        a, b = handle_a.get_tensor(name), handle_b.get_tensor(name)
        yield a.to(torch.bfloat16).float().reshape(-1), b.to(torch.bfloat16).float().reshape(-1)
        return
    rows = max(1, CHUNK_ELEMS // max(1, numel // shape_a[0]))
    for r in range(0, shape_a[0], rows):
        a, b = sa[r:r + rows], sb[r:r + rows]
        yield a.to(torch.bfloat16).float().reshape(-1), b.to(torch.bfloat16).float().reshape(-1)


def _tied_lm_head(handles_a, handles_b, files_a, files_b) -> bool:
    """lm_head.weight present in both files and equal to the input embedding in both (a tied
    weight saved twice): it must be counted once."""
    emb = next((k for k in files_a if param_kind(k) == "embedding" and k.endswith("embed_tokens.weight")), None)
    head = next((k for k in files_a if param_kind(k) == "lm_head"), None)
    if emb is None or head is None or emb not in files_b or head not in files_b:
        return False
    for handles, files in ((handles_a, files_a), (handles_b, files_b)):
        e, h = handles[files[emb]].get_slice(emb), handles[files[head]].get_slice(head)
        if list(e.get_shape()) != list(h.get_shape()):
            return False
        if not torch.equal(handles[files[emb]].get_tensor(emb), handles[files[head]].get_tensor(head)):
            return False
    return True


def update_sparsity(before, after, tol=1e-5) -> dict:
    """Update sparsity of Mukherjee et al. 2025: S = 1 - ||theta_after - theta_before||_0 / n.

    Both checkpoints are read tensor by tensor (chunked, memory-mapped) so two large checkpoints are
    never both whole in memory. Each tensor is cast to bfloat16 (as stored, or rounded to nearest
    from fp32 — so fp32 updates below bf16 resolution vanish, as in the paper's bf16 setting); the
    difference is taken in float32 (exact, where the official script subtracts in bf16). An entry
    is unchanged when |delta| <= tol; `torch.isclose(delta, 0, atol=tol)` in the paper's code.
    Tied weights count once: an `lm_head.weight` missing from a file, or equal to the input
    embedding in both checkpoints, is skipped. `tol` may be one float or a list (first = headline).

    Returns {"global": unchanged fraction at tol[0], "exact_zero": fraction with delta == 0,
    "by_tol": {tol: fraction}, "per_layer": {layer: fraction at tol[0]}, "per_kind": {kind:
    fraction}, "numel", "numel_per_kind", "dtype": "bfloat16", "tol", "tols", "tied",
    "stored_dtypes"}. Per-layer and per-kind fractions pool entries (not a mean over tensors)."""
    tols = [float(t) for t in (tol if isinstance(tol, (list, tuple)) else [tol])]
    if not tols or any(t < 0 for t in tols):
        raise ValueError(f"update_sparsity: tolerances must be >= 0, got {tols}")
    files_a, files_b = weight_files(before), weight_files(after)
    only_a = sorted(set(files_a) - set(files_b) - {k for k in files_a if param_kind(k) == "lm_head"})
    only_b = sorted(set(files_b) - set(files_a) - {k for k in files_b if param_kind(k) == "lm_head"})
    if only_a or only_b:
        raise ValueError(f"checkpoints {before} and {after} hold different tensors "
                         f"(only in before: {only_a[:3]}, only in after: {only_b[:3]})")
    from safetensors import safe_open

    total = 0
    zero = 0
    unchanged = np.zeros(len(tols), dtype=np.int64)                                # [n_tol]
    per_layer: dict[int, list[int]] = {}
    per_kind: dict[str, list[int]] = {}
    stored = set()
    with ExitStack() as stack:
        ha = {f: stack.enter_context(safe_open(f, framework="pt")) for f in set(files_a.values())}
        hb = {f: stack.enter_context(safe_open(f, framework="pt")) for f in set(files_b.values())}
        tied = []
        names = sorted(set(files_a) & set(files_b))
        heads = [k for k in names if param_kind(k) == "lm_head"]
        if heads and _tied_lm_head(ha, hb, files_a, files_b):
            tied = heads[:1]
        # lm_head present in only one file = tied in that one: count the embedding only
        tied += sorted((set(files_a) ^ set(files_b)))
        for name in names:
            if name in tied:
                continue
            stored.add(ha[files_a[name]].get_slice(name).get_dtype())
            stored.add(hb[files_b[name]].get_slice(name).get_dtype())
            t_n, t_u0 = 0, 0
            for a, b in _chunks(ha[files_a[name]], hb[files_b[name]], name):
                delta = (b - a).abs()                                               # [chunk]
                t_n += delta.numel()
                zero += int((delta == 0).sum())
                u = [int((delta <= t).sum()) for t in tols]
                unchanged += np.array(u, dtype=np.int64)
                t_u0 += u[0]
            total += t_n
            li, kind = layer_index(name), param_kind(name)
            if li is not None:
                acc = per_layer.setdefault(li, [0, 0])
                acc[0] += t_u0
                acc[1] += t_n
            acc = per_kind.setdefault(kind, [0, 0])
            acc[0] += t_u0
            acc[1] += t_n
    if total == 0:
        raise ValueError(f"checkpoints {before} and {after} share no tensors")
    return {
        "global": float(unchanged[0] / total),
        "exact_zero": float(zero / total),
        "by_tol": {t: float(u / total) for t, u in zip(tols, unchanged)},
        "per_layer": {i: u / n for i, (u, n) in sorted(per_layer.items())},
        "per_kind": {k: per_kind[k][0] / per_kind[k][1] for k in KINDS if k in per_kind},
        "numel": int(total),
        "numel_per_kind": {k: per_kind[k][1] for k in KINDS if k in per_kind},
        "dtype": "bfloat16",
        "tol": tols[0],
        "tols": tols,
        "tied": tied,
        "stored_dtypes": sorted(stored),
    }


# ----------------------------------------------------------------------------------------------
# Run folders
# ----------------------------------------------------------------------------------------------
def read_jsonl(path) -> list[dict]:
    """JSON lines of a file; a truncated last line (a run still writing) is skipped with a note,
    a malformed line elsewhere is an error naming file and line."""
    p = Path(path)
    if not p.exists():
        return []
    lines = p.read_text().splitlines()
    rows = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i == len(lines):
                print(f"[analyze] {p}:{i}: skipping a truncated last line")
                continue
            raise SystemExit(f"{p}:{i}: malformed JSON line ({e.msg})") from None
    return rows


@dataclass
class Run:
    path: str
    name: str
    config: dict
    metrics: list
    tasks: list | None          # tasks.jsonl rows (self-play only), None when absent
    checkpoints: list           # [(step, folder)] sorted by step

    @property
    def final(self):
        """(step, folder) of the final checkpoint (highest step), or None."""
        return self.checkpoints[-1] if self.checkpoints else None

    @property
    def is_selfplay(self) -> bool:
        return (self.tasks is not None or "selfplay" in str(self.config.get("script", ""))
                or any(k.startswith("propose/") for m in self.metrics for k in m))


def load_run(path: str) -> Run:
    p = Path(path)
    if not (p / "config.json").exists():
        raise SystemExit(f"--runs {path}: not a run folder (no config.json)")
    try:
        config = json.loads((p / "config.json").read_text())
    except json.JSONDecodeError as e:
        raise SystemExit(f"{p / 'config.json'}: malformed JSON ({e.msg})") from None
    ckpts = []
    for d in (p / "checkpoints").glob("step_*"):
        m = re.fullmatch(r"step_(\d+)", d.name)
        if m and d.is_dir() and (d / "config.json").exists():
            ckpts.append((int(m.group(1)), str(d)))
    tasks = read_jsonl(p / "tasks.jsonl") if (p / "tasks.jsonl").exists() else None
    return Run(path=str(p), name=p.name, config=config, metrics=read_jsonl(p / "metrics.jsonl"),
               tasks=tasks, checkpoints=sorted(ckpts))


def unique_names(runs: list[Run]) -> None:
    """Make run names unique (parent/name when two folders share a basename)."""
    seen = {}
    for r in runs:
        seen.setdefault(r.name, []).append(r)
    for name, rs in seen.items():
        if len(rs) > 1:
            for r in rs:
                r.name = f"{Path(r.path).parent.name}/{name}"


def shared_base(runs: list[Run]) -> str:
    """The one base model all runs start from (config.json 'model'); SystemExit otherwise."""
    def norm(m):
        if m == "toy":
            import model as M
            return str(Path(M.TOY_BASE).resolve())
        return str(Path(m).resolve()) if Path(m).exists() else m

    bases = {}
    for r in runs:
        if "model" not in r.config:
            raise SystemExit(f"{r.path}/config.json: no 'model' entry (the base it was trained from)")
        bases.setdefault(norm(str(r.config["model"])), []).append(r.name)
    if len(bases) > 1:
        lines = "; ".join(f"{b} ← {', '.join(n)}" for b, n in bases.items())
        raise SystemExit(f"the runs do not share one base model ({lines}); analyse runs of "
                         f"different bases separately")
    return next(iter(bases))


def fingerprint(path: str) -> str:
    """Identity of a checkpoint for the sample cache: resolved path + size/mtime of its files
    (a hub id or missing path is keyed by its name)."""
    p = Path(path)
    if not p.exists():
        return str(path)
    files = [p] if p.is_file() else sorted(q for q in p.iterdir() if q.is_file())
    return str(p.resolve()) + "|" + ";".join(
        f"{q.name}:{q.stat().st_size}:{q.stat().st_mtime_ns}" for q in files
        if q.suffix in (".safetensors", ".json", ".bin", ".gguf", ".model", ".txt"))


def weights_folder(name: str) -> str | None:
    """A local folder holding safetensors weights for a model name (local path, or a hub id in the
    local Hugging Face cache); None when there is none."""
    p = Path(name)
    if p.exists():
        return str(p) if p.is_dir() else None
    try:
        from huggingface_hub import snapshot_download
        return snapshot_download(name, allow_patterns=["*.json", "*.safetensors"],
                                 local_files_only=True)
    except Exception:  # not cached / not a hub id
        return None


# ----------------------------------------------------------------------------------------------
# Entropy dynamics (from metrics.jsonl)
# ----------------------------------------------------------------------------------------------
ROLE_NAMES = {"propose": "proposer", "solve": "solver"}


def entropy_series(metrics: list[dict]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every entropy key of a run → (steps, values): "entropy", "<role>/entropy" and
    "<role>/<task>/entropy" (read generically; non-finite values dropped; "time/..." keys are
    timings, not entropies)."""
    keys = sorted({k for m in metrics for k in m
                   if k == "entropy" or (k.endswith("/entropy") and not k.startswith("time/"))})
    series = {k: metric_series(metrics, k) for k in keys}
    return {k: v for k, v in series.items() if v is not None}


def split_key(key: str) -> tuple[str, str | None]:
    """"solve/deduction/entropy" → ("solve", "deduction"); "propose/entropy" → ("propose", None);
    "entropy" → ("all", None)."""
    parts = key.split("/")
    if len(parts) == 1:
        return "all", None
    if len(parts) == 2:
        return parts[0], None
    return parts[0], "/".join(parts[1:-1])


def metric_series(metrics: list[dict], key: str):
    """(steps, values) of one numeric metric, sorted by step; None when never logged."""
    pts = [(m["step"], m[key]) for m in metrics if "step" in m and isinstance(m.get(key), (int, float))
           and math.isfinite(m[key])]
    if not pts:
        return None
    s, v = zip(*sorted(pts))
    return np.array(s, float), np.array(v, float)


def entropy_summary(series: dict) -> dict:
    """Start/end values (mean of the first/last 10% of steps) and relative change per key, plus
    the fraction of shared steps where proposer entropy is above solver entropy."""
    out = {}
    for k, (s, v) in series.items():
        w = max(1, len(v) // 10)
        a, b = float(v[:w].mean()), float(v[-w:].mean())
        out[k] = {"start": a, "end": b, "change": (b - a) / a if a else float("nan"),
                  "first_step": float(s[0]), "last_step": float(s[-1])}
    if "propose/entropy" in series and "solve/entropy" in series:
        ps = dict(zip(*series["propose/entropy"]))
        ss = dict(zip(*series["solve/entropy"]))
        common = sorted(set(ps) & set(ss))
        if common:
            out["proposer_above_solver"] = float(np.mean([ps[t] > ss[t] for t in common]))
    return out


# ----------------------------------------------------------------------------------------------
# Evaluation sets, sampling (cached) and scoring
# ----------------------------------------------------------------------------------------------
@dataclass
class EvalSet:
    name: str       # "arith", "deduction", ..., or the --eval name
    kind: str       # how prompts are built and answers scored: math|deduction|abduction|induction
    problems: list  # dicts in the toydata formats
    source: str     # where the problems came from (part of the cache key)


def toy_eval_sets(cfg: Config) -> list[EvalSet]:
    """Held-out toy problems: arithmetic, and code tasks of each type (never seen in training:
    toydata splits train/heldout by hash)."""
    import toydata

    sets, src = [], f"toydata heldout n={cfg.problems} seed={cfg.seed}"
    if "arith" in cfg.sets:
        sets.append(EvalSet("arith", "math", toydata.make_arith(cfg.problems, cfg.seed, "heldout"), src))
    if "deduction" in cfg.sets or "abduction" in cfg.sets:
        code = toydata.make_code_tasks(cfg.problems, cfg.seed, "heldout")
        sets += [EvalSet(t, t, code, src) for t in ("deduction", "abduction") if t in cfg.sets]
    if "induction" in cfg.sets:
        sets.append(EvalSet("induction", "induction",
                            toydata.make_induction_tasks(cfg.problems, cfg.seed, "heldout"), src))
    return sets


def benchmark_sets(cfg: Config) -> list[EvalSet]:
    """--eval name=path files: CRUXEval (name contains 'crux') as output prediction, anything
    else as math (GSM8K, MATH-500, prompt/response)."""
    import toydata

    sets = []
    for e in cfg.eval:
        name, _, path = e.partition("=")
        try:
            if "crux" in name.lower():
                probs, kind = toydata.load_cruxeval(path), "deduction"
            else:
                probs, kind = toydata.load_math(path), "math"
        except (ValueError, KeyError) as err:  # toydata.DataError names file and line
            raise SystemExit(f"--eval {e}: {err}") from None
        if not probs:
            raise SystemExit(f"--eval {e}: the file holds no problems")
        st = Path(path).stat()
        sets.append(EvalSet(name, kind, probs[:cfg.problems],
                            f"{Path(path).resolve()}:{st.st_size}:{st.st_mtime_ns}:{cfg.problems}"))
    return sets


def induction_view(task: dict) -> dict:
    """selfplay.induction_view (the solver's visible half of the pairs plus the message) with
    `pairs`, all (input, output) pairs: evaluation judges a candidate program on every pair."""
    import selfplay

    return {**selfplay.induction_view(task), "pairs": list(zip(task["inputs"], task["outputs"]))}


def build_prompt(kind: str, problem: dict, style: str) -> str:
    import rlvr
    import selfplay

    if kind == "math":
        return rlvr.math_prompt(problem["question"], style)
    if kind == "induction":
        return selfplay.solve_prompt("induction", induction_view(problem), style)
    return selfplay.solve_prompt(kind, problem, style)


def stop_for(kind: str, style: str) -> list[str]:
    import rlvr
    import selfplay

    return rlvr.math_stop(style) if kind == "math" else selfplay.stop_strings("solve", kind, style)


def max_tokens_for(cfg: Config, kind: str, style: str) -> int:
    if cfg.max_new_tokens > 0:
        return cfg.max_new_tokens
    if style != "toy":
        return 1024
    return {"math": 96, "deduction": 72, "abduction": 72, "induction": 200}[kind]


def score_batch(kind: str, problems: list[dict], texts: list[list[str]], style: str) -> list[list[bool]]:
    """Correctness of every response ([P][n] texts → [P][n] bools). math: verifier.check_math on
    the gold answer; code tasks: the answer block is extracted (selfplay.extract_answer; None =
    format error = wrong) and checked by the verifier — deduction: output equality; abduction:
    f(answer) == gold output in the sandbox; induction: the candidate program reproduces every
    (input, output) pair. Identical (problem, answer) pairs are checked once, sandbox jobs in one
    parallel batch."""
    import selfplay
    import verifier

    if kind == "math":
        keys = [[(i, t) for t in ts] for i, ts in enumerate(texts)]
    else:
        keys = [[(i, selfplay.extract_answer(t, kind, style)) for t in ts] for i, ts in enumerate(texts)]
    todo = sorted({k for row in keys for k in row if k[1] is not None}, key=repr)
    if kind == "math":
        ok = [verifier.check_math(a, problems[i]["answer"]) for i, a in todo]
    elif kind == "deduction":
        ok = [verifier.check_deduction(problems[i]["output"], a) for i, a in todo]
    elif kind == "abduction":
        ok = verifier.check_abduction_many([(problems[i]["program"], problems[i]["output"], a)
                                            for i, a in todo])
    elif kind == "induction":
        ok = verifier.check_induction_many([(a, induction_view(problems[i])["pairs"]) for i, a in todo])
    else:
        raise ValueError(f"unknown eval kind {kind!r}")
    verdict = dict(zip(todo, (bool(x) for x in ok)))
    return [[verdict.get(k, False) for k in row] for row in keys]


def _sha(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


class ModelCache:
    """Loads a checkpoint only when some eval set misses the sample cache; one model at a time."""

    def __init__(self, cfg: Config):
        self.cfg, self.path, self.pair = cfg, None, None

    def get(self, path: str):
        if self.path != path:
            import model as M

            self.pair = None
            self.pair = M.load_policy(path, device=self.cfg.device, dtype=self.cfg.dtype)
            self.path = path
        return self.pair


def sample_set(models: ModelCache, ckpt: str, label: str, es: EvalSet, style: str, cfg: Config,
               cache_dir: Path, n: int | None = None) -> dict:
    """n samples per problem of one checkpoint on one eval set, scored; cached on disk under a
    hash of (checkpoint path + file mtimes, eval set + prompts, n, temperature, top_p,
    max_new_tokens, seed), so a repeated call samples nothing.

    Returns {"correct": [P][n] bool, "lengths": [P][n] response tokens, "texts": [P][n],
    "cached": bool}."""
    import model as M

    n = n or cfg.n
    prompts = [build_prompt(es.kind, p, style) for p in es.problems]
    mnt = max_tokens_for(cfg, es.kind, style)
    key = _sha({"ckpt": fingerprint(ckpt), "set": es.name, "kind": es.kind, "source": es.source,
                "prompts": _sha(prompts), "n": n, "temperature": cfg.temperature,
                "top_p": cfg.top_p, "max_new_tokens": mnt, "seed": cfg.seed, "style": style})
    path = cache_dir / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', label)}__{es.name}__{key[:16]}.json"
    if path.exists() and not cfg.no_cache:
        data = json.loads(path.read_text())
        data["cached"] = True
        return data
    model, tok = models.get(ckpt)
    stop = stop_for(es.kind, style)
    per_call = max(1, cfg.batch_size // n)  # prompts per sample() call
    texts, lengths = [], []
    bar = tqdm(total=len(prompts), desc=f"sample {label}/{es.name}", unit="problem", leave=False)
    for c in range(0, len(prompts), per_call):
        M.seed_everything(cfg.seed + c)
        with torch.no_grad():
            ro = M.sample(model, tok, prompts[c:c + per_call], n=n, temperature=cfg.temperature,
                          top_p=cfg.top_p, max_new_tokens=mnt, stop=stop,
                          batch_size=cfg.batch_size, seed=cfg.seed + c)
        for i in range(len(ro.texts) // n):
            texts.append(ro.texts[i * n:(i + 1) * n])
            lengths.append([int(x) for x in ro.lengths[i * n:(i + 1) * n]])
        bar.update(len(ro.texts) // n)
    bar.close()
    correct = score_batch(es.kind, es.problems, texts, style)
    data = {"label": label, "checkpoint": str(ckpt), "set": es.name, "n": n, "max_new_tokens": mnt,
            "correct": correct, "lengths": lengths, "texts": texts}
    cache_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    data["cached"] = False
    return data


def passk_stats(correct: list[list[bool]], n: int, ks: list[int], cfg: Config) -> dict:
    counts = [int(sum(c)) for c in correct]
    mat = pass_at_k_matrix(counts, n, ks)                                          # [P, K]
    lo, hi = bootstrap_ci(mat, None, cfg.n_boot, cfg.seed)
    return {"counts": counts, "n": n, "ks": ks, "curve": mat.mean(0).tolist(),
            "lo": np.atleast_1d(lo).tolist(), "hi": np.atleast_1d(hi).tolist()}


def coverage(base_counts, run_counts) -> dict:
    """Support argument of Yue et al.: problems solved (>= 1 of n) by the run but never by the
    base, by the base but never by the run, by both, by neither."""
    b, r = np.asarray(base_counts) > 0, np.asarray(run_counts) > 0
    return {"run_only": int((r & ~b).sum()), "base_only": int((b & ~r).sum()),
            "both": int((r & b).sum()), "neither": int((~r & ~b).sum())}


# ----------------------------------------------------------------------------------------------
# Figures (matplotlib, Agg)
# ----------------------------------------------------------------------------------------------
def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, out: Path, name: str, figures: list) -> None:
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    _plt().close(fig)
    figures.append(name)


def plot_sparsity(sparsity: dict, tols: list, out: Path, figures: list) -> None:
    plt = _plt()
    tag = f"bf16 weights, unchanged = |Δ| ≤ {tols[0]:g}"
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for ri, (name, sp) in enumerate(sparsity.items()):
        steps = sp["steps"]
        x0 = [] if 0 in steps else [0]  # the base itself: 100% unchanged at step 0
        for j, t in enumerate(tols):
            ax.plot(x0 + steps, [100.0] * len(x0) + [100 * sp["by_step"][s]["by_tol"][t] for s in steps],
                    marker="o", color=f"C{ri}", linestyle=["-", "--", "-.", (0, (5, 1))][j % 4],
                    label=f"{name} (|Δ| ≤ {t:g})")
        ax.plot(x0 + steps, [100.0] * len(x0) + [100 * sp["by_step"][s]["exact_zero"] for s in steps],
                marker="x", color=f"C{ri}", alpha=0.6, linestyle=":", label=f"{name} (Δ = 0 exactly)")
    ax.set(title=f"Update sparsity vs base against training step\n({tag})",
           xlabel="training step of the checkpoint", ylabel="entries unchanged vs base (%)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    _save(fig, out, "sparsity_vs_step.png", figures)

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, sp in sparsity.items():
        fin = sp["by_step"][sp["steps"][-1]]
        layers = sorted(fin["per_layer"])
        axes[0].plot(layers, [100 * fin["per_layer"][i] for i in layers], marker="o",
                     label=f"{name} (step {sp['steps'][-1]})")
    axes[0].set(title=f"Per-layer sparsity, final checkpoint vs base\n({tag})",
                xlabel="transformer layer index", ylabel="entries unchanged (%)")
    axes[0].xaxis.get_major_locator().set_params(integer=True)
    axes[0].grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    names = list(sparsity)
    kinds = [k for k in KINDS if any(k in sparsity[r]["by_step"][sparsity[r]["steps"][-1]]["per_kind"]
                                     for r in names)]
    w = 0.8 / max(1, len(names))
    for j, name in enumerate(names):
        fin = sparsity[name]["by_step"][sparsity[name]["steps"][-1]]
        axes[1].bar(np.arange(len(kinds)) + j * w, [100 * fin["per_kind"].get(k, np.nan) for k in kinds],
                    width=w, label=name)
    axes[1].set_xticks(np.arange(len(kinds)) + w * (len(names) - 1) / 2, kinds, rotation=30)
    axes[1].set(title=f"Sparsity by matrix kind, final checkpoint vs base\n({tag})",
                xlabel="parameter kind (tied embedding counted once)", ylabel="entries unchanged (%)",
                ylim=(0, 102))
    axes[1].legend(fontsize=8)
    _save(fig, out, "sparsity_per_layer_kind.png", figures)


def plot_entropy(runs: list[Run], series: dict, out: Path, figures: list) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in runs:
        s = series[r.name]
        key = "entropy" if "entropy" in s else ("solve/entropy" if "solve/entropy" in s else None)
        if key:
            ax.plot(*s[key], label=f"{r.name} ({key})")
    ax.set(title="Policy entropy of training rollouts against step (all runs)",
           xlabel="training step", ylabel="mean token entropy (nats)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, out, "entropy_all_runs.png", figures)
    for r in runs:
        s = series[r.name]
        roles = sorted({split_key(k)[0] for k in s} - {"all"})
        if not roles:
            continue
        fig, axes = plt.subplots(1, len(roles) + 1, figsize=(5 * (len(roles) + 1), 4), squeeze=False)
        axes = axes[0]
        for k in ("entropy", *[f"{ro}/entropy" for ro in roles]):
            if k in s:
                ro = split_key(k)[0]
                axes[0].plot(*s[k], label=ROLE_NAMES.get(ro, "whole model" if ro == "all" else ro))
        axes[0].set(title=f"{r.name}: entropy by role", xlabel="training step",
                    ylabel="mean token entropy (nats)")
        for ax, ro in zip(axes[1:], roles):
            for k in s:
                role, task = split_key(k)
                if role == ro and task is not None:
                    ax.plot(*s[k], label=task)
            ax.set(title=f"{r.name}: {ROLE_NAMES.get(ro, ro)} entropy by task type",
                   xlabel="training step", ylabel="mean token entropy (nats)")
        for ax in axes:
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
            else:
                ax.text(0.5, 0.5, "no per-task entropy keys", ha="center", va="center",
                        transform=ax.transAxes)
        _save(fig, out, f"entropy_roles_{re.sub(r'[^A-Za-z0-9_.-]+', '_', r.name)}.png", figures)


def plot_passk(passk: dict, cfg: Config, out: Path, figures: list) -> None:
    plt = _plt()
    for set_name, by_model in passk.items():
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        for label, st in by_model.items():
            ks = st["ks"]
            line, = ax.plot(ks, st["curve"], marker="o", label=label,
                            linestyle="--" if label == "base" else "-")
            ax.fill_between(ks, st["lo"], st["hi"], color=line.get_color(), alpha=0.15)
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.minorticks_off()
        ax.set(title=f"pass@k on {set_name} ({len(next(iter(by_model.values()))['counts'])} problems, "
                     f"n={cfg.n}, T={cfg.temperature}, top-p={cfg.top_p})\nshaded: 95% bootstrap over problems",
               xlabel="k (samples allowed per problem)", ylabel="pass@k (fraction of problems)",
               ylim=(-0.02, 1.02))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        _save(fig, out, f"passk_{re.sub(r'[^A-Za-z0-9_.-]+', '_', set_name)}.png", figures)


# ----------------------------------------------------------------------------------------------
# Curriculum (Chae et al.: later proposals are harder and get longer answers)
# ----------------------------------------------------------------------------------------------
def valid_deduction_tasks(tasks: list[dict]) -> list[dict]:
    keep = [t for t in tasks if t.get("type") == "deduction" and t.get("valid")
            and all(isinstance(t.get(k), str) for k in ("program", "input", "output"))
            and isinstance(t.get("step"), (int, float))]
    return sorted(keep, key=lambda t: t["step"])


def pick_across_steps(tasks: list[dict], k: int) -> list[dict]:
    """k tasks evenly spaced over the step-sorted list (so every stretch of training is
    represented in proportion to how many tasks it proposed)."""
    if k >= len(tasks):
        return list(tasks)
    idx = np.unique(np.linspace(0, len(tasks) - 1, k).round().astype(int))
    return [tasks[i] for i in idx]


OUTPUT_KINDS = ("int ≥ 0", "int < 0", "str", "list", "bool", "other")


def output_kind(output: str) -> str:
    """The kind of a task's output repr: int ≥ 0, int < 0, str, list (or tuple), bool, other."""
    import ast

    try:
        v = ast.literal_eval(output)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return "other"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int < 0" if v < 0 else "int ≥ 0"
    if isinstance(v, str):
        return "str"
    if isinstance(v, (list, tuple)):
        return "list"
    return "other"


def task_mix(tasks: list[dict], bins: int) -> dict | None:
    """What the proposer asks about over training: the share of each output kind among valid
    deduction and abduction proposals, in `bins` equal stretches of steps (seeding, step 0,
    left out). A trained proposer drifting away from a kind of task is one way self-play's
    solver can improve on its own tasks and lose on held-out ones. None without such tasks."""
    keep = [t for t in tasks if t.get("type") in ("deduction", "abduction") and t.get("valid")
            and isinstance(t.get("output"), str) and isinstance(t.get("step"), (int, float))
            and t["step"] > 0]
    if not keep:
        return None
    lo, hi = min(t["step"] for t in keep), max(t["step"] for t in keep)
    width = (hi - lo + 1) / bins
    groups = [[] for _ in range(bins)]
    for t in keep:
        groups[min(int((t["step"] - lo) / width), bins - 1)].append(output_kind(t["output"]))
    edges = [(lo + math.ceil(i * width), lo + math.ceil((i + 1) * width) - 1) for i in range(bins)]
    return {"bins": [list(e) for e, g in zip(edges, groups) if g],
            "n": [len(g) for g in groups if g],
            "share": {k: [g.count(k) / len(g) for g in groups if g] for k in OUTPUT_KINDS}}


def plot_curriculum(name: str, cur: dict, cfg: Config, out: Path, figures: list) -> None:
    plt = _plt()
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    panels = [("solve_rate", "re-solve rate (fraction of n samples)", axes[0, 0]),
              ("response_len", "response length (tokens)", axes[0, 1]),
              ("program_chars", "program size (characters)", axes[1, 0])]
    steps = np.array(cur["steps"], float)
    for key, ylab, ax in panels:
        v = np.array(cur[key], float)
        ax.scatter(steps, v, s=8, alpha=0.3, label="one task")
        xs, ys, lo, hi, _ = bin_by_step(steps, v, cfg.curriculum_bins, seed=cfg.seed)
        ax.errorbar(xs, ys, yerr=[ys - lo, hi - ys], marker="o", color="C3", capsize=3,
                    label="binned mean, 95% bootstrap CI")
        t = cur["trend"][key]
        ax.set(title=f"{ylab.split(' (')[0]} vs proposal step\nSpearman ρ={t['rho']:.2f} "
                     f"[{t['lo']:.2f}, {t['hi']:.2f}]", xlabel="training step the task was proposed",
               ylabel=ylab)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    ax = axes[1, 1]
    if cur.get("train_s_steps"):
        xs, ys, lo, hi, _ = bin_by_step(cur["train_s_steps"], cur["train_s"], cfg.curriculum_bins,
                                        seed=cfg.seed)
        ax.errorbar(xs, ys, yerr=[ys - lo, hi - ys], marker="o", capsize=3,
                    label="all valid deduction proposals (binned, 95% CI)")
        ax.legend(fontsize=7)
    ax.set(title="solve rate s recorded during training (tasks.jsonl)",
           xlabel="training step the task was proposed", ylabel="training-time solve rate s",
           ylim=(-0.02, 1.02))
    axes[0, 0].set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    fig.suptitle(f"Curriculum of {name}: {len(steps)} proposed deduction tasks re-solved by "
                 f"{cur['solver_label']} (n={cur['n']}, T={cfg.temperature})")
    _save(fig, out, f"curriculum_{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png", figures)


# ----------------------------------------------------------------------------------------------
# Self-play comparison (proposer reward / frozen proposer ablations)
# ----------------------------------------------------------------------------------------------
def valid_rate_series(metrics: list[dict]):
    """propose/valid_rate, else the mean of propose/<task>/valid_rate at each step."""
    s = metric_series(metrics, "propose/valid_rate")
    if s is not None:
        return s
    keys = sorted({k for m in metrics for k in m if re.fullmatch(r"propose/[^/]+/valid_rate", k)})
    rows = [(m["step"], np.mean([m[k] for k in keys if isinstance(m.get(k), (int, float))]))
            for m in metrics if "step" in m and any(isinstance(m.get(k), (int, float)) for k in keys)]
    return (np.array([r[0] for r in rows], float), np.array([r[1] for r in rows], float)) if rows else None


def accuracy_keys(metrics: list[dict]) -> list[str]:
    return sorted({k for m in metrics for k in m if k.startswith("eval/") and "acc" in k})


def plot_comparison(sp_runs: list[Run], passk: dict, out: Path, figures: list) -> dict:
    plt = _plt()
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    summary = {}
    ax = axes[0, 0]
    any_acc = False
    for r in sp_runs:
        for k in accuracy_keys(r.metrics):
            ax.plot(*metric_series(r.metrics, k), marker=".", label=f"{r.name} {k}")
            any_acc = True
    if any_acc:
        ax.set(title="Held-out accuracy during training (metrics eval/*acc*)", xlabel="training step",
               ylabel="accuracy (fraction)")
    elif passk:
        sets = list(passk)
        labels = ["base"] + [r.name for r in sp_runs]
        w = 0.8 / len(labels)
        for j, lab in enumerate(labels):
            ax.bar(np.arange(len(sets)) + j * w, [passk[s].get(lab, {}).get("curve", [np.nan])[0]
                                                  for s in sets], width=w, label=lab,
                   color="0.6" if lab == "base" else f"C{j - 1}")
        ax.set_xticks(np.arange(len(sets)) + w * (len(labels) - 1) / 2, sets)
        ax.set(title="Held-out pass@1 of the final checkpoints (grey: base)", xlabel="eval set",
               ylabel="pass@1 (fraction of problems)", ylim=(0, 1.02))
    else:
        ax.text(0.5, 0.5, "no held-out accuracy\n(no eval/* metrics, pass@k skipped)",
                ha="center", va="center", transform=ax.transAxes)
        ax.set(title="Held-out accuracy", xlabel="training step", ylabel="accuracy")
    ax = axes[0, 1]
    for j, r in enumerate(sp_runs):
        for role, ls in (("propose", "-"), ("solve", "--")):
            s = metric_series(r.metrics, f"{role}/entropy")
            if s is not None:
                ax.plot(*s, linestyle=ls, color=f"C{j}", label=f"{r.name} {ROLE_NAMES[role]}")
    ax.set(title="Entropy by role (solid: proposer, dashed: solver)", xlabel="training step",
           ylabel="mean token entropy (nats)")
    ax = axes[1, 0]
    for r in sp_runs:
        s = valid_rate_series(r.metrics)
        if s is not None:
            ax.plot(*s, label=r.name)
            summary.setdefault(r.name, {})["final_valid_rate"] = float(s[1][-max(1, len(s[1]) // 10):].mean())
    ax.set(title="Valid-proposal rate", xlabel="training step", ylabel="valid proposals (fraction)",
           ylim=(-0.02, 1.02))
    ax = axes[1, 1]
    bins = np.linspace(0, 1, 11)
    for r in sp_runs:
        s = [t["s"] for t in (r.tasks or []) if t.get("valid") and isinstance(t.get("s"), (int, float))]
        if s:
            ax.hist(s, bins=bins, histtype="step", density=True, linewidth=1.5, label=f"{r.name} ({len(s)} tasks)")
            summary.setdefault(r.name, {})["mean_s"] = float(np.mean(s))
            summary[r.name]["learnable"] = float(np.mean([0 < x < 1 for x in s]))
    ax.set(title="Solve-rate histogram of valid proposals (tasks.jsonl s)",
           xlabel="solver success rate s on the task", ylabel="density (tasks)")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle("Self-play runs compared (proposer reward / ablations)")
    _save(fig, out, "selfplay_comparison.png", figures)
    return summary


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------
def _ci(v, lo, hi) -> str:
    return f"{v:.3f} [{lo:.3f}, {hi:.3f}]"


def findings(res: dict, cfg: Config) -> list[str]:
    """One short factual line per finding (numbers only; CIs decide the wording)."""
    lines = []
    tol = cfg.tol[0]
    sp = res.get("sparsity", {})
    for name, s in sp.items():
        fin = s["by_step"][s["steps"][-1]]
        kinds = sorted(fin["per_kind"].items(), key=lambda kv: kv[1])
        lines.append(f"Sparsity — {name} (step {s['steps'][-1]}): {fin['global']:.1%} of bf16 entries "
                     f"unchanged vs base at |Δ| ≤ {tol:g} ({fin['exact_zero']:.1%} exactly equal); most "
                     f"updated kind {kinds[0][0]} ({kinds[0][1]:.1%} unchanged), least updated "
                     f"{kinds[-1][0]} ({kinds[-1][1]:.1%}).")
    if len(sp) > 1:
        order = sorted(sp, key=lambda n: -sp[n]["by_step"][sp[n]["steps"][-1]]["global"])
        lines.append("Sparsity order (sparsest first): " + " > ".join(
            f"{n} ({sp[n]['by_step'][sp[n]['steps'][-1]]['global']:.1%})" for n in order) + ".")
    for name, e in res.get("entropy", {}).items():
        key = "entropy" if "entropy" in e else ("solve/entropy" if "solve/entropy" in e else None)
        if key:
            v = e[key]
            lines.append(f"Entropy — {name}: {key} {v['start']:.3f} → {v['end']:.3f} nats "
                         f"({v['change']:+.0%}) over steps {v['first_step']:.0f}–{v['last_step']:.0f}.")
        if "proposer_above_solver" in e:
            lines.append(f"Entropy — {name}: proposer entropy above solver entropy at "
                         f"{e['proposer_above_solver']:.0%} of logged steps.")
    for set_name, by in res.get("passk", {}).items():
        if "base" not in by:
            continue
        b = by["base"]
        for label, st in by.items():
            if label == "base":
                continue
            d1 = st["curve"][0] - b["curve"][0]
            dn = st["curve"][-1] - b["curve"][-1]
            sig1 = "CIs overlap" if st["lo"][0] <= b["hi"][0] and b["lo"][0] <= st["hi"][0] else "CIs disjoint"
            sign = "CIs overlap" if st["lo"][-1] <= b["hi"][-1] and b["lo"][-1] <= st["hi"][-1] else "CIs disjoint"
            cross = next((k for k, r_, b_ in zip(st["ks"], st["curve"], b["curve"]) if b_ >= r_), None)
            msg = (f"pass@k — {set_name}, {label} vs base: pass@1 {d1:+.3f} ({sig1}), "
                   f"pass@{st['ks'][-1]} {dn:+.3f} ({sign})")
            if d1 > 0 and cross is not None:
                msg += f"; base catches up at k={cross}"
            cov = res.get("coverage", {}).get(set_name, {}).get(label)
            if cov:
                msg += (f"; solved within n={st['n']} by {label} only: {cov['run_only']}, "
                        f"by base only: {cov['base_only']}")
            lines.append(msg + ".")
    for name, c in res.get("curriculum", {}).items():
        parts = []
        for key, what in (("solve_rate", "solve rate"), ("response_len", "response length"),
                          ("program_chars", "program size")):
            t = c["trend"][key]
            word = ("rises" if t["lo"] > 0 else "falls" if t["hi"] < 0 else "no clear trend") \
                if math.isfinite(t["rho"]) else "undefined"
            parts.append(f"{what} {word} (ρ={t['rho']:.2f} [{t['lo']:.2f}, {t['hi']:.2f}])")
        lines.append(f"Curriculum — {name} (re-solved by {c['solver_label']}, {len(c['steps'])} tasks): "
                     + "; ".join(parts) + " with proposal step.")
    for name, m in res.get("task_mix", {}).items():
        (a, _), (_, b) = m["bins"][0], m["bins"][-1]
        bits = [f"{k} {v[0]:.2f} → {v[-1]:.2f}" for k, v in m["share"].items() if max(v) > 0]
        lines.append(f"Task mix — {name}: output kinds of valid deduction/abduction proposals, "
                     f"steps {a}-{m['bins'][0][1]} ({m['n'][0]} tasks) → steps {m['bins'][-1][0]}-{b} "
                     f"({m['n'][-1]} tasks): " + ", ".join(bits) + ".")
    for name, c in res.get("comparison", {}).items():
        bits = [f"{k.replace('_', ' ')} {v:.2f}" for k, v in c.items()]
        lines.append(f"Self-play — {name}: " + ", ".join(bits) + ".")
    return lines


def write_report(res: dict, cfg: Config, out: Path, figures: list, notes: list, timings: dict) -> str:
    L = ["# zeroplay analysis", "",
         "Runs: " + ", ".join(f"`{r}` ({v['path']})" for r, v in res["runs"].items()) + "  ",
         f"Base model: `{res['base']}`  ",
         f"Settings: n={cfg.n} samples/problem, {cfg.problems} problems/set, T={cfg.temperature}, "
         f"top-p={cfg.top_p}, max new tokens {cfg.max_new_tokens or 'per set'}, seed={cfg.seed}, bootstrap {cfg.n_boot}× over problems (95%), "
         f"sparsity tolerances {', '.join(f'{t:g}' for t in cfg.tol)}", "", "## Findings", ""]
    L += [f"- {x}" for x in findings(res, cfg)] or ["- (no analysis produced a result)"]
    sp = res.get("sparsity", {})
    if sp:
        tols = cfg.tol
        kinds = [k for k in KINDS if any(k in s["by_step"][s["steps"][-1]]["per_kind"] for s in sp.values())]
        L += ["", "## Update sparsity (final checkpoint vs base)", "",
              f"dtype: **bfloat16** (weights cast to bf16 as stored or rounded; Δ in float32); an entry "
              f"is unchanged when |Δ| ≤ tol. Per-kind columns at tol = {tols[0]:g}; tied embedding "
              f"counted once.", "",
              "| run | step | dtype | " + " | ".join(f"unchanged @ {t:g}" for t in tols)
              + " | exact zero | " + " | ".join(kinds) + " |",
              "|" + "---|" * (4 + len(tols) + len(kinds))]
        for name, s in sp.items():
            f = s["by_step"][s["steps"][-1]]
            L.append(f"| {name} | {s['steps'][-1]} | {f['dtype']} | "
                     + " | ".join(f"{f['by_tol'][t]:.2%}" for t in tols) + f" | {f['exact_zero']:.2%} | "
                     + " | ".join(f"{f['per_kind'][k]:.2%}" if k in f["per_kind"] else "–" for k in kinds) + " |")
    ent = res.get("entropy", {})
    if ent:
        L += ["", "## Entropy (mean of first / last 10% of logged steps, nats)", "",
              "| run | key | start | end | change |", "|---|---|---|---|---|"]
        for name, e in ent.items():
            for k, v in e.items():
                if isinstance(v, dict):
                    L.append(f"| {name} | {k} | {v['start']:.3f} | {v['end']:.3f} | {v['change']:+.0%} |")
    pk = res.get("passk", {})
    if pk:
        L += ["", f"## pass@k (unbiased estimator, n={cfg.n}, T={cfg.temperature}, top-p={cfg.top_p}; "
                  f"value [95% bootstrap CI])", ""]
        for set_name, by in pk.items():
            ks = next(iter(by.values()))["ks"]
            L += [f"**{set_name}** ({len(next(iter(by.values()))['counts'])} problems)", "",
                  "| model | " + " | ".join(f"pass@{k}" for k in ks) + " | mean response tokens |",
                  "|" + "---|" * (len(ks) + 2)]
            for label, st in by.items():
                L.append(f"| {label} | " + " | ".join(_ci(v, lo, hi) for v, lo, hi in
                                                      zip(st["curve"], st["lo"], st["hi"]))
                         + f" | {st['mean_len']:.1f} |")
            L.append("")
        cov = res.get("coverage", {})
        if any(cov.values()):
            L += [f"### Coverage within n={cfg.n} samples (problems solved at least once)", "",
                  "| set | run | run only (never by base) | base only (never by run) | both | neither |",
                  "|---|---|---|---|---|---|"]
            for set_name, by in cov.items():
                for label, c in by.items():
                    L.append(f"| {set_name} | {label} | {c['run_only']} | {c['base_only']} | "
                             f"{c['both']} | {c['neither']} |")
    cur = res.get("curriculum", {})
    if cur:
        L += ["", "## Curriculum (proposed deduction tasks re-solved by one fixed checkpoint)", "",
              "| run | solver | tasks | quantity | Spearman ρ vs step [95% CI] | slope per 100 steps |",
              "|---|---|---|---|---|---|"]
        for name, c in cur.items():
            for key in ("solve_rate", "response_len", "program_chars"):
                t = c["trend"][key]
                L.append(f"| {name} | {c['solver_label']} | {len(c['steps'])} | {key} | "
                         f"{_ci(t['rho'], t['lo'], t['hi'])} | {t['slope_per_100']:.3g} |")
    L += ["", "## Figures", ""] + [f"- ![{f}]({f})" for f in figures]
    if notes:
        L += ["", "## Skipped or degraded", ""] + [f"- {x}" for x in notes]
    L += ["", "## Time per stage", "", "| stage | seconds |", "|---|---|"]
    L += [f"| {k} | {v:.1f} |" for k, v in timings.items()]
    text = "\n".join(L) + "\n"
    (out / "report.md").write_text(text)
    return text


# ----------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------
def prompt_style_of(base: str) -> str:
    """Prompt style of the shared base, read from its tokenizer only (no weights loaded)."""
    import model as M
    from transformers import AutoTokenizer

    kw, src = {}, base
    if base.endswith(".gguf"):
        src, kw["gguf_file"] = str(Path(base).parent), Path(base).name
    try:
        return M.prompt_style(AutoTokenizer.from_pretrained(src, **kw))
    except OSError as e:
        raise SystemExit(f"base model {base}: could not load its tokenizer ({str(e).splitlines()[0]})") from None


def main(cfg: Config) -> dict:
    check_config(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t_start = time.time()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    cache_dir = out / "cache"
    figures, notes, timings = [], [], {}

    def note(msg: str) -> None:
        print(f"[analyze] {msg}", flush=True)
        notes.append(msg)

    def stage(name: str, t0: float) -> None:
        timings[name] = time.time() - t0
        print(f"[analyze] stage {name}: {timings[name]:.1f}s", flush=True)

    t = time.time()
    runs = [load_run(p) for p in cfg.runs]
    unique_names(runs)
    base = shared_base(runs)
    res = {"config": dict(cfg.__dict__), "base": base, "runs": {r.name: {"path": r.path, "final_step": r.final[0] if r.final else None,
                                           "selfplay": r.is_selfplay} for r in runs}}
    for r in runs:
        if not r.checkpoints:
            note(f"{r.name}: no checkpoints/step_* folder → no sparsity, pass@k or curriculum for it")
    stage("load runs", t)

    # 1. update sparsity ---------------------------------------------------------------------
    t = time.time()
    if cfg.skip_sparsity:
        note("update sparsity skipped (--skip-sparsity)")
    else:
        bw = weights_folder(base)
        jobs = [(r, s, f) for r in runs for s, f in r.checkpoints]
        if bw is None:
            note(f"update sparsity skipped: no local safetensors weights for the base {base}")
        elif jobs:
            sp = {}
            for r, step, folder in tqdm(jobs, desc="sparsity", unit="ckpt"):
                try:
                    s = update_sparsity(bw, folder, cfg.tol)
                except ValueError as e:
                    note(f"sparsity {r.name} step {step}: {e}")
                    continue
                d = sp.setdefault(r.name, {"steps": [], "by_step": {}})
                d["steps"].append(step)
                d["by_step"][step] = s
            res["sparsity"] = sp
            if sp:
                plot_sparsity(sp, cfg.tol, out, figures)
    stage("sparsity", t)

    # 2. entropy dynamics ----------------------------------------------------------------------
    t = time.time()
    series = {r.name: entropy_series(r.metrics) for r in runs}
    for r in runs:
        if not series[r.name]:
            note(f"{r.name}: no entropy keys in metrics.jsonl → no entropy curve")
    res["entropy"] = {n: entropy_summary(s) for n, s in series.items() if s}
    if res["entropy"]:
        plot_entropy([r for r in runs if series[r.name]], series, out, figures)
    stage("entropy", t)

    models = ModelCache(cfg)
    need_models = not cfg.skip_passk or (not cfg.skip_curriculum and cfg.curriculum_tasks > 0)
    style = prompt_style_of(base) if need_models else None

    # 3. pass@k ------------------------------------------------------------------------------
    t = time.time()
    if cfg.skip_passk:
        note("pass@k skipped (--skip-passk)")
    else:
        sets = toy_eval_sets(cfg) + benchmark_sets(cfg)
        ks = default_ks(cfg.n)
        targets = [("base", base)] + [(r.name, r.final[1]) for r in runs if r.final]
        passk, cov = {}, {}
        for label, ckpt in targets:
            for es in sets:
                data = sample_set(models, ckpt, label, es, style, cfg, cache_dir)
                st = passk_stats(data["correct"], cfg.n, ks, cfg)
                st["mean_len"] = float(np.mean(data["lengths"])) if data["lengths"] else float("nan")
                st["cached"] = data["cached"]
                passk.setdefault(es.name, {})[label] = st
        for es in sets:
            b = passk[es.name]["base"]["counts"]
            cov[es.name] = {lab: coverage(b, st["counts"]) for lab, st in passk[es.name].items() if lab != "base"}
        res["passk"], res["coverage"] = passk, cov
        n_cached = sum(st["cached"] for by in passk.values() for st in by.values())
        print(f"[analyze] pass@k: {n_cached}/{sum(len(by) for by in passk.values())} "
              f"(model, set) pairs read from the cache {cache_dir}", flush=True)
        plot_passk(passk, cfg, out, figures)
    stage("pass@k", t)

    # 4. curriculum ----------------------------------------------------------------------------
    t = time.time()
    if cfg.skip_curriculum or cfg.curriculum_tasks == 0:
        note("curriculum skipped (--skip-curriculum or --curriculum-tasks 0)")
    else:
        cur = {}
        for r in runs:
            if r.tasks is None:
                if r.is_selfplay:
                    note(f"{r.name}: no tasks.jsonl → no curriculum figure")
                continue
            tasks = valid_deduction_tasks(r.tasks)
            if len(tasks) < 3:
                note(f"{r.name}: only {len(tasks)} valid deduction tasks in tasks.jsonl → no curriculum figure")
                continue
            if cfg.curriculum_solver == "base":
                solver, slabel = base, "base"
            elif cfg.curriculum_solver == "final":
                if r.final is None:
                    note(f"{r.name}: no final checkpoint to re-solve the curriculum → skipped")
                    continue
                solver, slabel = r.final[1], f"{r.name} final (step {r.final[0]})"
            else:
                if not Path(cfg.curriculum_solver).exists():
                    raise SystemExit(f"--curriculum-solver {cfg.curriculum_solver}: expected base, "
                                     f"final or an existing checkpoint folder")
                solver, slabel = cfg.curriculum_solver, cfg.curriculum_solver
            picked = pick_across_steps(tasks, cfg.curriculum_tasks)
            es = EvalSet("curriculum", "deduction", picked, f"{r.path}/tasks.jsonl:{_sha(picked)}")
            data = sample_set(models, solver, f"curriculum_{r.name}", es, style, cfg, cache_dir)
            c = {"solver_label": slabel, "n": cfg.n, "steps": [t_["step"] for t_ in picked],
                 "solve_rate": [float(np.mean(x)) for x in data["correct"]],
                 "response_len": [float(np.mean(x)) for x in data["lengths"]],
                 "program_chars": [len(t_["program"]) for t_ in picked]}
            c["trend"] = {k: trend(c["steps"], c[k], cfg.n_boot, cfg.seed)
                          for k in ("solve_rate", "response_len", "program_chars")}
            with_s = [t_ for t_ in tasks if isinstance(t_.get("s"), (int, float))]
            c["train_s_steps"] = [t_["step"] for t_ in with_s]
            c["train_s"] = [float(t_["s"]) for t_ in with_s]
            cur[r.name] = c
            plot_curriculum(r.name, c, cfg, out, figures)
        res["curriculum"] = cur
    mix = {r.name: m for r in runs if r.tasks is not None
           and (m := task_mix(r.tasks, cfg.curriculum_bins)) is not None}
    if mix:
        res["task_mix"] = mix
    stage("curriculum", t)

    # 5. self-play comparison ------------------------------------------------------------------
    t = time.time()
    sp_runs = [r for r in runs if r.is_selfplay]
    if sp_runs and not any(r.metrics or r.tasks for r in sp_runs):
        note("self-play runs have neither metrics.jsonl nor tasks.jsonl → no comparison figure")
    elif sp_runs:
        res["comparison"] = plot_comparison(sp_runs, res.get("passk", {}), out, figures)
    else:
        note("no self-play run among --runs → no self-play comparison figure")
    stage("self-play comparison", t)

    timings["total"] = time.time() - t_start
    res["timings"], res["notes"], res["figures"] = timings, notes, figures
    write_report(res, cfg, out, figures, notes, timings)
    (out / "results.json").write_text(json.dumps(res, indent=1, default=float))
    print_summary(res, cfg, out)
    return res


def print_summary(res: dict, cfg: Config, out: Path) -> None:
    print("\n" + "=" * 78)
    print(f"zeroplay analysis of {len(res['runs'])} run(s); base {res['base']}")
    for name, s in res.get("sparsity", {}).items():
        f = s["by_step"][s["steps"][-1]]
        print(f"  sparsity  {name:<20} {f['global']:7.2%} unchanged (bf16, |Δ|≤{cfg.tol[0]:g}), "
              f"exact-zero {f['exact_zero']:.2%}")
    for name, e in res.get("entropy", {}).items():
        k = "entropy" if "entropy" in e else next((x for x in e if isinstance(e[x], dict)), None)
        if k:
            print(f"  entropy   {name:<20} {k}: {e[k]['start']:.3f} → {e[k]['end']:.3f} nats")
    for set_name, by in res.get("passk", {}).items():
        row = "  ".join(f"{lab} {st['curve'][0]:.2f}/{st['curve'][-1]:.2f}" for lab, st in by.items())
        print(f"  pass@1/@{cfg.n} {set_name:<11} {row}")
    for name, c in res.get("curriculum", {}).items():
        t = c["trend"]
        print(f"  curriculum {name:<19} ρ(step, solve)={t['solve_rate']['rho']:+.2f}  "
              f"ρ(step, length)={t['response_len']['rho']:+.2f}  ρ(step, size)={t['program_chars']['rho']:+.2f}")
    print("  time: " + ", ".join(f"{k} {v:.0f}s" for k, v in res["timings"].items()))
    if res["notes"]:
        print(f"  {len(res['notes'])} note(s): see report (e.g. {res['notes'][0]})")
    print(f"  report: {out / 'report.md'} ({len(res['figures'])} figures)")
    print("=" * 78)


if __name__ == "__main__":
    main(parse_args())
