"""analyze.py — the analyses of Chae et al. 2025 over runs that share one base, and the verdicts.

    python analyze.py --runs runs/selfplay runs/rlvr runs/sft [--out runs/analysis]

  sparsity    entries unchanged vs the base (bf16, |Δ| <= 1e-5; Mukherjee et al. 2025), per
              checkpoint: Chae et al. RQ4
  entropy     token entropy of the training rollouts against step, by role: RQ2 (their Fig. 4)
  pass@k      the unbiased estimator (Chen et al. 2021) on the held-out toy sets and --eval
              files, 95% bootstrap intervals that resample programs: RQ1 (their Fig. 1)
  curriculum  proposed deduction tasks re-solved by the base (a fixed solver): solve rate,
              response length and program size against the step they were proposed: RQ3
  claims      one verdict per claim, from those numbers by the rules in `verdict_*`

Writes <out>/report.md, results.json and one figure per analysis. Left out on purpose: a cache of
samples, per-layer figures, and significance tests beyond the bootstrap.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

import model as M
import tasks as T


@dataclass
class Config:
    """analysis"""
    runs: list[str] = field(default_factory=list)  # run folders sharing one base model
    out: str = "runs/analysis"     # report.md, results.json and figures go here
    eval: list[str] = field(default_factory=list)  # extra benchmarks as name=path (a name with 'crux' is CRUXEval, else math)
    n: int = 16                    # samples per problem for pass@k (k = 1, 2, 4, ..., n)
    eval_n: int = 64               # problems per set
    temperature: float = 0.6       # sampling temperature for pass@k and the curriculum (Yue et al.)
    top_p: float = 0.95            # nucleus sampling (Yue et al.)
    curriculum_tasks: int = 256    # proposed deduction tasks re-solved (spread over training; the paper: 800; 0: none)
    tol: float = 1e-5              # sparsity: an entry is unchanged when |Δ| <= tol in bf16 (Mukherjee et al.)
    seed: int = 0                  # sampling and bootstrap seed
    device: str = "auto"           # auto | cpu | cuda[:N]
    sample_batch: int = 64         # sequences sampled together


# ==============================================================================================
# Statistics (pure functions, tested on hand-computed values) and update sparsity
# ==============================================================================================
def pass_at_k(n: int, c: int, k: int) -> float:
    """Chae et al. RQ1. Unbiased pass@k of one problem with c correct of n samples (Chen et al.
    2021, Eq. 1): 1 - C(n-c, k) / C(n, k), in the stable form 1 - Π_{i=n-c+1..n} (1 - k/i)."""
    if n < 1 or not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n (n={n}, c={c}, k={k})")
    return 1.0 if n - c < k else float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def bootstrap(values, clusters=None, stat=np.mean, n_boot: int = 1000, seed: int = 0):
    """95% percentile interval of stat(values) ([P] or [P, ...], stat over axis 0), resampling
    whole clusters with replacement (the problems of one program are not independent draws)."""
    v = np.asarray(values, dtype=np.float64)
    ids = np.arange(len(v)) if clusters is None else np.unique(clusters, return_inverse=True)[1]
    members = [np.flatnonzero(ids == c) for c in range(ids.max() + 1)]
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(n_boot):
        rows = np.concatenate([members[c] for c in rng.integers(0, len(members), len(members))])
        stats.append(np.asarray(stat(v[rows]), dtype=np.float64))
    lo, hi = np.nanpercentile(np.stack(stats), [2.5, 97.5], axis=0)
    return lo, hi


def spearman(x, y) -> float:
    """Spearman's rank correlation (Pearson on average ranks); nan when either is constant."""
    def ranks(a):  # a tie of c values ending at rank e shares the rank e - (c - 1) / 2
        _, inv, c = np.unique(np.asarray(a, float), return_inverse=True, return_counts=True)
        return (np.cumsum(c) - (c - 1) / 2)[inv]
    rx, ry = ranks(x), ranks(y)
    return float(np.corrcoef(rx, ry)[0, 1]) if len(rx) > 1 and rx.std() and ry.std() else math.nan


def windows(values, frac: float = 0.1):
    """Mean and standard error of the first and the last 10% of a per-step series (at least 2
    points each; the step-to-step spread gives the SE), or None when it is too short."""
    v = np.asarray(values, float)
    w = max(2, int(len(v) * frac))
    if len(v) < 2 * w:
        return None
    return [(x.mean(), x.std(ddof=1) / math.sqrt(w)) for x in (v[:w], v[-w:])]


def relative_change(values) -> dict | None:
    """(end - start) / start of a series (`windows`) with a normal 95% interval."""
    ws = windows(values)
    if ws is None or not ws[0][0]:
        return None
    (a, sa), (b, sb) = ws
    change, half = (b - a) / a, 1.96 * math.hypot(sa, sb) / abs(a)
    return {"start": a, "end": b, "change": change, "lo": change - half, "hi": change + half}


REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"


def verdict_sign(lo: float, hi: float, expect: int) -> str:
    """A claimed sign (+1/-1) judged by a 95% interval: reproduced when it lies on that side of
    0, not reproduced when it lies on the other, inconclusive when it holds 0."""
    lo, hi = (lo, hi) if expect > 0 else (-hi, -lo)
    return REPRODUCED if lo > 0 else NOT_REPRODUCED if hi < 0 else INCONCLUSIVE


def verdict_collapse(c: dict, margin: float = 0.10) -> str:
    """Entropy collapse: a significant fall of at least `margin` (our reading of "collapse");
    not reproduced when the interval rules out such a fall."""
    if c["hi"] < 0 and c["change"] <= -margin:
        return REPRODUCED
    return NOT_REPRODUCED if c["lo"] > -margin else INCONCLUSIVE


def verdict_between(low: float, mid: float, high: float) -> str:
    """An order low < mid < high: reproduced when it holds, not reproduced when mid lies
    outside [low, high], inconclusive on a tie."""
    return REPRODUCED if low < mid < high else NOT_REPRODUCED if not low <= mid <= high \
        else INCONCLUSIVE


def update_sparsity(before: str, after: str, tol: float = 1e-5) -> dict:
    """Chae et al. RQ4. S = 1 - ||θ_after - θ_before||_0 / n of Mukherjee et al.: each tensor
    cast to bf16 (as stored, or rounded from fp32, as in their setting), the difference taken in
    fp32, an entry unchanged when |Δ| <= tol. A tied lm_head counts once. Streamed from the
    safetensors files, tensor by tensor."""
    from safetensors import safe_open

    def files(d):  # tensor name → the file holding it
        fs = sorted(Path(d).glob("*.safetensors"))
        M.check(bool(fs), f"{d}: no .safetensors weights (sparsity reads safetensors only)")
        out = {}
        for f in fs:
            with safe_open(str(f), framework="pt") as h:
                out.update(dict.fromkeys(h.keys(), f))
        return out
    fb, fa = files(after), files(before)
    total = same = zero = 0
    layers: dict[int, list[int]] = {}
    for name in sorted(fa.keys() & fb.keys()):  # a tied weight saved in one checkpoint is skipped
        with safe_open(str(fa[name]), framework="pt") as ha, \
                safe_open(str(fb[name]), framework="pt") as hb:
            a, b = ha.get_tensor(name), hb.get_tensor(name)
        M.check(a.shape == b.shape, f"sparsity: {name} has shape {list(a.shape)} in "
                                    f"{before} but {list(b.shape)} in {after}")
        d = (b.to(torch.bfloat16).float() - a.to(torch.bfloat16).float()).abs()
        kept = int((d <= tol).sum())
        total, same, zero = total + d.numel(), same + kept, zero + int((d == 0).sum())
        parts = name.split(".")
        if "layers" in parts:
            acc = layers.setdefault(int(parts[parts.index("layers") + 1]), [0, 0])
            acc[0], acc[1] = acc[0] + kept, acc[1] + d.numel()
    M.check(total > 0, f"sparsity: {before} and {after} share no tensor (not the same model)")
    return {"global": same / total, "exact_zero": zero / total, "numel": total,
            "per_layer": {i: u / n for i, (u, n) in sorted(layers.items())}}


# ==============================================================================================
# Runs, sampling, the analyses
# ==============================================================================================
def load_run(path: str) -> dict:
    """A run folder → {name, path, config, role, metrics, tasks, checkpoints [(step, folder)]}.
    The role names what claims compare: selfplay, selfplay-peak50, selfplay-frozen, rlvr, sft."""
    p = Path(path)
    M.check((p / "config.json").is_file(), f"--runs {path}: not a run folder (no config.json)")
    cfg = json.loads((p / "config.json").read_text())
    run = M.RunDir(path)
    role = Path(cfg.get("script", "?")).stem
    if role == "selfplay" and cfg.get("freeze_proposer"):
        role = "selfplay-frozen"
    elif role == "selfplay" and cfg.get("proposer_reward") != "learnability":
        role = f"selfplay-{cfg.get('proposer_reward')}"
    return {"name": p.name, "path": str(p), "config": cfg, "role": role, "metrics": run.read(),
            "tasks": run.read("tasks.jsonl"),
            "checkpoints": [(int(c.name[5:]), str(c)) for c in run.checkpoints()]}


def eval_sets(cfg: Config, style: str, n_inputs: int) -> dict:
    """The held-out toy sets (toy style) and the --eval benchmarks: name → (kind, problems)."""
    sets = T.toy_sets(["deduction", "abduction", "induction", "arith"], cfg.eval_n, n_inputs) \
        if style == "toy" else {}
    return {**sets, **T.benchmark_sets(cfg.eval, cfg.eval_n)}


def evaluate(cfg: Config, model, tok, sets: dict, style: str) -> dict:
    """T.evaluate with the analysis's sampling, answers capped per kind: the toy's answers are
    short; real models reason first."""
    caps = {"math": 96, "deduction": 72, "abduction": 72, "induction": 200} if style == "toy" \
        else dict.fromkeys(("math", "deduction", "abduction", "induction", "humaneval"), 1024)
    return T.evaluate(model, tok, sets, style, caps, n=cfg.n, temperature=cfg.temperature,
                      top_p=cfg.top_p, batch_size=cfg.sample_batch, seed=cfg.seed)


def passk(cfg: Config, results: dict, clusters: list) -> dict:
    """pass@k for k = 1, 2, 4, ..., n of one model on one set: the curve and its 95% interval
    over programs; `counts` are the correct answers of each problem."""
    counts = [sum(c) for c in results["correct"]]
    ks = [2 ** i for i in range(int(math.log2(cfg.n)) + 1)]
    mat = np.array([[pass_at_k(cfg.n, c, k) for k in ks] for c in counts])     # [P, K]
    lo, hi = bootstrap(mat, clusters, lambda x: x.mean(0), seed=cfg.seed)
    return {"ks": ks, "curve": mat.mean(0).tolist(), "lo": lo.tolist(), "hi": hi.tolist(),
            "counts": counts, "mean_len": float(np.mean(results["lengths"]))}


def paired_diff(cfg: Config, pk: dict, a: str, b: str, names: list, clusters: dict) -> dict:
    """pass@1 and pass@n of model a minus model b on the same problems of `names` (pooled),
    with a 95% bootstrap interval over programs (both models resampled together)."""
    rows, ids = [], []
    for s in names:
        for ca, cb, c in zip(pk[s][a]["counts"], pk[s][b]["counts"], clusters[s]):
            rows.append([pass_at_k(cfg.n, ca, 1) - pass_at_k(cfg.n, cb, 1),
                         pass_at_k(cfg.n, ca, cfg.n) - pass_at_k(cfg.n, cb, cfg.n)])
            ids.append(c)
    lo, hi = bootstrap(rows, ids, lambda x: x.mean(0), seed=cfg.seed)
    return {"diff": np.mean(rows, 0).tolist(), "lo": lo.tolist(), "hi": hi.tolist(),
            "problems": len(rows)}


def curriculum(cfg: Config, run: dict, base, tok, style: str) -> dict | None:
    """Chae et al. RQ3: up to --curriculum-tasks valid deduction proposals spread over training,
    each re-solved n times by the base (a fixed solver: none favoured for training on late tasks);
    Spearman ρ of the step against solve rate, response length and program size, bootstrapped."""
    tasks = sorted((t for t in run["tasks"] if t.get("type") == "deduction" and t.get("valid")
                    and t.get("phase") == "train"), key=lambda t: t["step"])
    if len(tasks) < 3 or cfg.curriculum_tasks < 1:
        return None
    idx = np.unique(np.linspace(0, len(tasks) - 1, min(cfg.curriculum_tasks, len(tasks))).round())
    picked = [tasks[int(i)] for i in idx]
    res = evaluate(cfg, base, tok, {"curriculum": ("deduction", picked)}, style)["curriculum"]
    steps = [t["step"] for t in picked]
    out = {"n_tasks": len(picked), "steps": steps}
    for key, vals in (("solve_rate", [float(np.mean(c)) for c in res["correct"]]),
                      ("response_len", [float(np.mean(x)) for x in res["lengths"]]),
                      ("program_chars", [len(t["program"]) for t in picked])):
        lo, hi = bootstrap(np.stack([steps, vals], 1), None,
                           lambda p: spearman(p[:, 0], p[:, 1]), seed=cfg.seed)
        out[key] = {"values": vals, "rho": spearman(steps, vals), "lo": float(lo), "hi": float(hi)}
    return out


def series(run: dict, key: str):
    pts = sorted((m["step"], m[key]) for m in run["metrics"]
                 if isinstance(m.get(key), (int, float)))
    return [p[0] for p in pts], [p[1] for p in pts]


def claims(cfg: Config, res: dict, runs: dict) -> list[dict]:
    """One row per claim (claim, measured, 95% interval, verdict); a missing input is said so."""
    rows, pk = [], res.get("passk", {})
    code = [s for s in T.TASK_TYPES if s in pk]
    sp, fz, pk50 = (runs.get(r) for r in ("selfplay", "selfplay-frozen", "selfplay-peak50"))
    ent = {r: series(sp, f"{r}/entropy") if sp else ([], []) for r in ("propose", "solve")}

    def claim(text, needs):  # a row, inconclusive for want of `needs` until `fill` decides it
        rows.append({"claim": text, "measured": "-", "interval": "-",
                     "verdict": f"{INCONCLUSIVE} (missing: {needs})"})
        return rows[-1]

    def fill(row, measured, interval, verdict):
        row.update(measured=measured, interval=interval, verdict=verdict)

    c = claim("RQ1: self-play raises pass@1 over the base; at large k the base matches it",
              "pass@k of a self-play run and the base on the code sets")
    if sp and code and all(sp["name"] in pk[s] for s in code):
        d = paired_diff(cfg, pk, sp["name"], "base", code, res["clusters"])
        fill(c, f"code sets, {d['problems']} problems: Δpass@1 {d['diff'][0]:+.3f}, "
                f"Δpass@{cfg.n} {d['diff'][1]:+.3f}", f"[{d['lo'][0]:+.3f}, {d['hi'][0]:+.3f}]; "
                f"[{d['lo'][1]:+.3f}, {d['hi'][1]:+.3f}]",
             REPRODUCED if d["lo"][0] > 0 and d["lo"][1] <= 0 else
             NOT_REPRODUCED if d["hi"][0] < 0 or d["lo"][1] > 0 else INCONCLUSIVE)
    c = claim("RQ2: the entropy of both roles collapses (falls by 10% or more)",
              "propose/solve entropy over enough steps of a self-play run")
    ch = {r: relative_change(y) for r, (_, y) in ent.items()}
    if all(ch.values()):
        vs = [verdict_collapse(v) for v in ch.values()]
        fill(c, "; ".join(f"{r} {v['start']:.3f} → {v['end']:.3f} ({v['change']:+.0%})"
                          for r, v in ch.items()),
             "; ".join(f"[{v['lo']:+.0%}, {v['hi']:+.0%}]" for v in ch.values()),
             vs[0] if vs[0] == vs[1] else INCONCLUSIVE)
    c = claim("RQ2: the proposer's entropy stays above the solver's",
              "both roles' entropy in a self-play run")
    p, q = (dict(zip(*ent[r])) for r in ("propose", "solve"))
    d = [p[k] - q[k] for k in sorted(set(p) & set(q))]
    if len(d) >= 2:
        m, half = np.mean(d), 1.96 * np.std(d, ddof=1) / math.sqrt(len(d))
        fill(c, f"proposer - solver {m:+.3f} nats over {len(d)} steps",
             f"[{m - half:+.3f}, {m + half:+.3f}]", verdict_sign(m - half, m + half, +1))
    c = claim("RQ2: a frozen proposer keeps the entropy higher",
              "entropy of a frozen-proposer run and a self-play run")
    ends = [windows(series(r, "entropy")[1]) if r else None for r in (fz, sp)]
    if all(ends):
        (ef, sf), (es, ss) = ends[0][1], ends[1][1]
        m, half = ef - es, 1.96 * math.hypot(sf, ss)
        fill(c, f"last 10% of steps: frozen {ef:.3f} vs {es:.3f} nats",
             f"[{m - half:+.3f}, {m + half:+.3f}]", verdict_sign(m - half, m + half, +1))
    c = claim("RQ4: self-play's update sparsity lies between SFT's (dense) and RLVR's (sparse)",
              "checkpoints of an SFT, a self-play and an RLVR run")
    s = {r: res["sparsity"][runs[r]["name"]][-1]["global"] for r in ("sft", "selfplay", "rlvr")
         if r in runs and runs[r]["name"] in res.get("sparsity", {})}
    if len(s) == 3:
        fill(c, f"unchanged (bf16, |Δ| <= {cfg.tol:g}): SFT {s['sft']:.2%}, self-play "
                f"{s['selfplay']:.2%}, RLVR {s['rlvr']:.2%}", "exact counts, one seed",
             verdict_between(s["sft"], s["selfplay"], s["rlvr"]))
    cur = res.get("curriculum", {}).get(sp["name"]) if sp else None
    for key, sign, rq in (("solve_rate", -1, "RQ3: the proposer's tasks get harder over training"),
                          ("response_len", +1, "RQ3: the answers to later tasks get longer")):
        c = claim(rq, "tasks.jsonl of a self-play run")
        if cur:
            t = cur[key]
            fill(c, f"ρ(step, {key}) = {t['rho']:+.2f} over {cur['n_tasks']} tasks re-solved by "
                    f"the base", f"[{t['lo']:+.2f}, {t['hi']:+.2f}]",
                 verdict_sign(t["lo"], t["hi"], sign))
    c = claim("RQ5: the peak50 proposer reward does not beat learnability (the paper: -2%)",
              "pass@k of a peak50 and a learnability self-play run")
    if sp and pk50 and code and all(r["name"] in pk[s] for s in code for r in (sp, pk50)):
        d = paired_diff(cfg, pk, pk50["name"], sp["name"], code, res["clusters"])
        fill(c, f"code pass@1 peak50 - learnability {d['diff'][0]:+.3f}",
             f"[{d['lo'][0]:+.3f}, {d['hi'][0]:+.3f}]", verdict_sign(d["lo"][0], d["hi"][0], -1))
    return rows


def figures(res: dict, runs: list[dict], out: Path) -> list[str]:
    """One figure per analysis: entropy by role, sparsity against step, pass@k, curriculum."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        made.append(name)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, r in enumerate(runs):
        for key, ls in (("propose/entropy", "-"), ("solve/entropy", "--"), ("entropy", ":")):
            x, y = series(r, key)
            if x and (key != "entropy" or not r["role"].startswith("selfplay")):
                ax.plot(x, y, ls, color=f"C{i}", label=f"{r['name']} {key.split('/')[0]}")
    ax.set(title="Token entropy of the training rollouts (solid: proposer, dashed: solver)",
           xlabel="training step", ylabel="mean token entropy (nats)")
    ax.legend(fontsize=7)
    save(fig, "entropy.png")
    if res.get("sparsity"):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for name, pts in res["sparsity"].items():
            ax.plot([0] + [p["step"] for p in pts], [100] + [100 * p["global"] for p in pts], "o-",
                    label=name)
        ax.set(title="Weights unchanged vs the base (bf16, |Δ| <= tol)", xlabel="training step",
               ylabel="entries unchanged (%)")
        ax.legend(fontsize=8)
        save(fig, "sparsity.png")
    if res.get("passk"):
        fig, axes = plt.subplots(1, len(res["passk"]), figsize=(4 * len(res["passk"]), 3.8),
                                 squeeze=False)
        for ax, (name, by) in zip(axes[0], res["passk"].items()):
            for label, st in by.items():
                line, = ax.plot(st["ks"], st["curve"], "o-" if label != "base" else "k--",
                                label=label)
                ax.fill_between(st["ks"], st["lo"], st["hi"], color=line.get_color(), alpha=0.15)
            ax.set(title=f"pass@k, {name}", xscale="log", xlabel="k", ylabel="pass@k", ylim=(0, 1))
            ax.legend(fontsize=7)
        save(fig, "passk.png")
    for name, cur in res.get("curriculum", {}).items():
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
        for ax, key, unit in zip(axes, ("solve_rate", "response_len"), ("fraction", "tokens")):
            ax.scatter(cur["steps"], cur[key]["values"], s=8, alpha=0.4)
            ax.set(title=f"{name}: {key} (re-solved by the base), ρ = {cur[key]['rho']:+.2f}",
                   xlabel="step the task was proposed", ylabel=f"{key} ({unit})")
        save(fig, f"curriculum_{name.replace('/', '_')}.png")
    return made


def report(res: dict, cfg: Config, out: Path) -> str:
    runs = ", ".join(f"`{n}` ({r['role']})" for n, r in res["runs"].items())
    L = ["# zeroplay analysis", "", f"Base: `{res['base']}`. Runs: {runs}. pass@k: n={cfg.n} at "
         f"T={cfg.temperature}, top-p {cfg.top_p}, {cfg.eval_n} problems per set, 95% bootstrap "
         "intervals over programs.", "",
         "| claim (Chae et al.) | measured | 95% interval | verdict |", "|---|---|---|---|"]
    cell = lambda x: str(x).replace("|", "\\|")  # noqa: E731  (|Δ| inside a table cell)
    L += ["| " + " | ".join(cell(c[k]) for k in ("claim", "measured", "interval", "verdict"))
          + " |" for c in res["claims"]]
    L += ["", "Verdicts: reproduced when the interval lies on the claimed side, not reproduced "
          "when it lies on the other side, inconclusive when it holds both (entropy collapse: "
          "a significant fall of 10% or more).", ""]
    if res.get("passk"):
        ks = [2 ** i for i in range(int(math.log2(cfg.n)) + 1)]  # as in passk
        L += ["| set | model | " + " | ".join(f"pass@{k}" for k in ks) + " |",
              "|---|---|" + "---|" * len(ks)]
        L += [f"| {s} | {m} | " + " | ".join(f"{v:.3f}" for v in st["curve"]) + " |"
              for s, by in res["passk"].items() for m, st in by.items()]
    L += ["", *[f"![{f}]({f})" for f in res["figures"]]]
    (out / "report.md").write_text("\n".join(L) + "\n")
    return "\n".join(L)


def main(cfg: Config) -> dict:
    M.check(bool(cfg.runs), "--runs: give at least one run folder")
    M.check(cfg.n >= 1 and cfg.n & (cfg.n - 1) == 0,
            "--n must be a power of two (k = 1, 2, 4, ..., n)")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = [load_run(p) for p in cfg.runs]
    for r in runs:  # two folders of one name (runs/s0/selfplay, runs/s1/selfplay): parent/name
        if sum(q["name"] == r["name"] for q in runs) > 1:
            r["name"] = f"{Path(r['path']).parent.name}/{r['name']}"
    M.check(len({r["name"] for r in runs}) == len(runs),
            f"--runs {cfg.runs}: a folder is given twice")
    bases = {M.resolve_model(r["config"].get("model", "?")) for r in runs}
    M.check(len(bases) == 1, f"the runs do not share one base model: {sorted(bases)}")
    base_path = bases.pop()
    by_role = {r["role"]: r for r in reversed(runs)}  # the first run of each role
    res = {"base": base_path, "runs": {r["name"]: {"path": r["path"], "role": r["role"]}
                                       for r in runs}, "sparsity": {}, "passk": {}}
    base, tok = M.load_policy(base_path, cfg.device)
    base_dir = Path(base_path)
    if not base_dir.is_dir():  # a GGUF file or a hub id: its (dequantised) weights, saved once
        base_dir = out / "base"
        if not (base_dir / "config.json").exists():
            base.save_pretrained(base_dir)
    for r in runs:  # sparsity of every checkpoint against the base
        if r["checkpoints"]:
            res["sparsity"][r["name"]] = [{"step": s, **update_sparsity(base_dir, f, cfg.tol)}
                                          for s, f in r["checkpoints"]]
            M.say(f"[analyze] sparsity {r['name']}: {res['sparsity'][r['name']][-1]['global']:.2%}"
                  f" unchanged at step {r['checkpoints'][-1][0]}")
    style = M.prompt_style(tok, runs[0]["config"].get("style", "auto"))
    sets = eval_sets(cfg, style, runs[0]["config"].get("n_inputs") or 6)
    res["clusters"] = T.program_ids(sets)
    models = [("base", base_path)] + [(r["name"], r["checkpoints"][-1][1]) for r in runs
                                      if r["checkpoints"]]
    for label, path in models:  # pass@k of the base and of each run's final checkpoint
        model = base if label == "base" else M.load_policy(path, cfg.device)[0]
        for name, r in evaluate(cfg, model, tok, sets, style).items():
            res["passk"].setdefault(name, {})[label] = passk(cfg, r, res["clusters"][name])
        M.say(f"[analyze] pass@1/pass@{cfg.n} {label}: " + ", ".join(
            f"{s} {by[label]['curve'][0]:.2f}/{by[label]['curve'][-1]:.2f}"
            for s, by in res["passk"].items()))
    res["curriculum"] = {r["name"]: c for r in runs if r["role"].startswith("selfplay")
                         and (c := curriculum(cfg, r, base, tok, style))}
    res["claims"] = claims(cfg, res, by_role)
    res["figures"] = figures(res, runs, out)
    (out / "results.json").write_text(json.dumps(res, indent=1, default=float) + "\n")
    report(res, cfg, out)
    for c in res["claims"]:
        M.say(f"[analyze] {c['verdict']:<14} {c['claim']}: {c['measured']}")
    M.say(f"[analyze] {out / 'report.md'}, results.json and {len(res['figures'])} figures")
    return res


if __name__ == "__main__":
    main(M.parse_flags(Config, doc=__doc__))
