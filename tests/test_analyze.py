"""Tests for analyze.py: the pass@k estimator, the (cluster) bootstrap, Spearman, the window
statistics and the verdict rules on hand-computed values; update sparsity on hand-made
safetensors checkpoints; run roles; the claims on hand-made results; and the whole analysis over
tiny runs made by the real selfplay/rlvr/sft scripts on the micro policy."""
import itertools
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import analyze as A
import model as M
import tasks as T

VERDICTS = {A.REPRODUCED, A.NOT_REPRODUCED, A.INCONCLUSIVE}


# ---------------------------------------------------------------------------------------------
# pass@k
# ---------------------------------------------------------------------------------------------
def brute_pass_at_k(n, c, k):
    """Fraction of the k-subsets of n samples (c of them correct) that hold >= 1 correct one."""
    samples = [1] * c + [0] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_pass_at_k_matches_brute_force(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert A.pass_at_k(n, c, k) == pytest.approx(brute_pass_at_k(n, c, k), abs=1e-12)


def test_pass_at_k_hand_values():
    assert A.pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert A.pass_at_k(4, 1, 2) == pytest.approx(0.5)       # 1 - C(3,2)/C(4,2) = 1 - 3/6
    assert A.pass_at_k(4, 2, 2) == pytest.approx(5 / 6)     # 1 - C(2,2)/C(4,2)
    assert A.pass_at_k(10, 0, 5) == 0.0
    assert A.pass_at_k(10, 6, 5) == 1.0                     # n - c < k
    assert A.pass_at_k(1, 1, 1) == 1.0 and A.pass_at_k(1, 0, 1) == 0.0


def test_pass_at_k_stable_at_n_1024():
    n = 1024
    for c in (0, 1, 3, 100, 512, 1000, 1024):
        for k in (1, 2, 16, 256, 1024):
            v = A.pass_at_k(n, c, k)
            assert 0.0 <= v <= 1.0 and math.isfinite(v)
            exact = 1 - math.comb(n - c, k) / math.comb(n, k)   # exact big-integer binomials
            assert v == pytest.approx(exact, abs=1e-9)
    assert A.pass_at_k(n, 1, 1) == pytest.approx(1 / 1024)
    vals = [A.pass_at_k(n, 3, k) for k in range(1, n + 1)]     # monotone in k
    assert all(b >= a - 1e-15 for a, b in zip(vals, vals[1:]))


def test_pass_at_k_rejects_bad_input():
    for bad in ((4, 5, 1), (4, -1, 1), (4, 1, 0), (4, 1, 5), (0, 0, 1)):
        with pytest.raises(ValueError):
            A.pass_at_k(*bad)


def test_passk_curve_counts_and_interval():
    cfg = A.Config(n=4)
    results = {"correct": [[False] * 4, [True, False, False, False], [True] * 4],
               "lengths": [[1, 2, 3, 4], [2, 2, 2, 2], [6, 6, 6, 6]]}
    st = A.passk(cfg, results, [0, 1, 2])
    assert st["ks"] == [1, 2, 4] and st["counts"] == [0, 1, 4]
    assert st["curve"] == pytest.approx([(0 + 0.25 + 1) / 3, (0 + 0.5 + 1) / 3, (0 + 1 + 1) / 3])
    assert st["mean_len"] == pytest.approx(3.5)
    assert all(lo <= v <= hi for v, lo, hi in zip(st["curve"], st["lo"], st["hi"]))
    # one program for all three problems: a single cluster, so the interval is the point
    st = A.passk(cfg, results, [7, 7, 7])
    assert st["lo"] == pytest.approx(st["curve"]) and st["hi"] == pytest.approx(st["curve"])


def test_paired_diff_hand_values():
    cfg = A.Config(n=4)
    # every problem: run 2/4 correct, base 1/4 → Δpass@1 = 0.25 exactly, Δpass@4 = 0
    pk = {"deduction": {"run": {"counts": [2, 2, 2]}, "base": {"counts": [1, 1, 1]}},
          "abduction": {"run": {"counts": [2, 2]}, "base": {"counts": [1, 1]}}}
    clusters = {"deduction": [0, 1, 2], "abduction": [0, 1]}
    d = A.paired_diff(cfg, pk, "run", "base", ["deduction", "abduction"], clusters)
    assert d["problems"] == 5
    assert d["diff"] == pytest.approx([0.25, 0.0])
    assert d["lo"] == pytest.approx([0.25, 0.0]) and d["hi"] == pytest.approx([0.25, 0.0])
    # one problem solved always by the run and never by the base, one by neither: 0.5 on average
    pk = {"deduction": {"run": {"counts": [4, 0]}, "base": {"counts": [0, 0]}}}
    d = A.paired_diff(cfg, pk, "run", "base", ["deduction"], {"deduction": [0, 1]})
    assert d["diff"] == pytest.approx([0.5, 0.5])
    assert d["lo"][0] == pytest.approx(0.0) and d["hi"][0] == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------
# bootstrap (per problem and per cluster)
# ---------------------------------------------------------------------------------------------
def test_bootstrap_constant_values_give_a_point_interval():
    lo, hi = A.bootstrap([0.3] * 20, n_boot=200)
    assert (lo, hi) == pytest.approx((0.3, 0.3))


def test_bootstrap_mean_of_bernoulli_matches_normal_theory():
    # 400 problems, half solved: the bootstrap SE of the mean is sqrt(.25/400) = 0.025, so the
    # 95% interval is 0.5 ± 1.96·0.025 = [0.451, 0.549]
    v = np.array([0, 1] * 200, float)
    lo, hi = A.bootstrap(v, None, n_boot=4000, seed=1)
    assert lo == pytest.approx(0.451, abs=0.01) and hi == pytest.approx(0.549, abs=0.01)


def test_bootstrap_two_values_known_distribution():
    # resampling [0, 1] twice: mean 0 w.p. 1/4, 0.5 w.p. 1/2, 1 w.p. 1/4 → the 95% interval is [0, 1]
    assert A.bootstrap([0.0, 1.0], n_boot=2000, seed=0) == (0.0, 1.0)


def test_bootstrap_vector_statistic_and_seed():
    mat = np.random.default_rng(0).random((30, 3))
    col_mean = lambda x: x.mean(0)  # noqa: E731
    lo, hi = A.bootstrap(mat, None, col_mean, n_boot=300, seed=5)
    assert lo.shape == (3,) and hi.shape == (3,)
    assert np.all(lo < mat.mean(0)) and np.all(mat.mean(0) < hi)
    lo2, hi2 = A.bootstrap(mat, None, col_mean, n_boot=300, seed=5)
    assert np.array_equal(lo, lo2) and np.array_equal(hi, hi2)        # seeded
    lo3, _ = A.bootstrap(mat, None, col_mean, n_boot=300, seed=6)
    assert not np.array_equal(lo, lo3)


def test_bootstrap_resamples_whole_clusters():
    # one problem of program A solved, 99 problems of program B unsolved. Per problem the mean
    # 0.01 is tight; per cluster a resample is {A, A} (mean 1) w.p. 1/4, {A, B} (0.01) w.p. 1/2
    # or {B, B} (0) w.p. 1/4, so the 95% interval is exactly [0, 1].
    v = [1.0] + [0.0] * 99
    lo, hi = A.bootstrap(v, None, n_boot=2000, seed=0)
    assert lo == 0.0 and hi <= 0.04
    lo, hi = A.bootstrap(v, ["A"] + ["B"] * 99, n_boot=2000, seed=0)
    assert (lo, hi) == (0.0, 1.0)
    # clusters that are all alike (each program solved on one input of two): every resample has
    # mean 0.5, a point interval, while resampling problems gives a wide one
    v, ids = [0, 1] * 10, [i // 2 for i in range(20)]
    assert A.bootstrap(v, ids, n_boot=500) == pytest.approx((0.5, 0.5))
    lo, hi = A.bootstrap(v, None, n_boot=500)
    assert lo < 0.35 and hi > 0.65
    # cluster labels need not be sorted or contiguous
    lo_a, hi_a = A.bootstrap([1.0, 0.0, 0.0, 1.0], [5, 9, 5, 9], n_boot=400, seed=2)
    assert (lo_a, hi_a) == pytest.approx((0.5, 0.5))


# ---------------------------------------------------------------------------------------------
# Spearman, windows, relative change
# ---------------------------------------------------------------------------------------------
def test_spearman_with_ties():
    assert A.spearman([1, 2, 3, 4], [1, 4, 9, 16]) == pytest.approx(1.0)
    assert A.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ranks of x with a tie: [2, 3.5, 3.5, 1]; of y: [1, 2, 3, 4]. Deviations [-.5, 1, 1, -1.5]
    # and [-1.5, -.5, .5, 1.5]: cov -1.5, var 4.5 and 5 → ρ = -1.5 / sqrt(22.5)
    assert A.spearman([10, 20, 20, 5], [1, 2, 3, 4]) == pytest.approx(-1.5 / math.sqrt(22.5))
    # ties on both sides with the same structure: still a perfect monotone relation
    assert A.spearman([1, 1, 2, 2], [3, 3, 7, 7]) == pytest.approx(1.0)
    assert math.isnan(A.spearman([1, 2, 3], [5, 5, 5]))
    assert math.isnan(A.spearman([1], [2]))


def test_windows_and_relative_change_hand_values():
    # w = max(2, 6 // 10) = 2: first window [1, 3] (mean 2, sd √2, se 1), last [2, 4] (mean 3, se 1)
    (a, sa), (b, sb) = A.windows([1, 3, 5, 5, 2, 4])
    assert (a, sa, b, sb) == pytest.approx((2.0, 1.0, 3.0, 1.0))
    c = A.relative_change([1, 3, 5, 5, 2, 4])
    half = 1.96 * math.sqrt(2) / 2
    assert (c["start"], c["end"], c["change"]) == pytest.approx((2.0, 3.0, 0.5))
    assert (c["lo"], c["hi"]) == pytest.approx((0.5 - half, 0.5 + half))
    assert A.windows([1, 2, 3]) is None                      # two disjoint windows need 4 points
    assert A.relative_change([1, 2, 3]) is None
    assert A.relative_change([0, 0, 1, 1]) is None           # start 0: no relative change
    ws = A.windows(list(range(40)))                          # 40 points: windows of 4
    assert ws[0][0] == pytest.approx(1.5) and ws[1][0] == pytest.approx(37.5)
    # a halving: 4 → 2 with no spread is a -50% change with a point interval
    c = A.relative_change([4, 4, 3, 3, 2, 2])
    assert (c["change"], c["lo"], c["hi"]) == pytest.approx((-0.5, -0.5, -0.5))


# ---------------------------------------------------------------------------------------------
# verdicts: every value reachable
# ---------------------------------------------------------------------------------------------
def test_verdict_sign():
    assert A.verdict_sign(0.1, 0.3, +1) == A.REPRODUCED
    assert A.verdict_sign(-0.3, -0.1, +1) == A.NOT_REPRODUCED
    assert A.verdict_sign(-0.1, 0.1, +1) == A.INCONCLUSIVE
    assert A.verdict_sign(-0.3, -0.1, -1) == A.REPRODUCED          # claimed negative
    assert A.verdict_sign(0.1, 0.3, -1) == A.NOT_REPRODUCED
    assert A.verdict_sign(0.0, 0.0, -1) == A.INCONCLUSIVE          # a point interval at 0
    assert A.verdict_sign(0.0, 0.2, +1) == A.INCONCLUSIVE          # touching 0 is not beyond it
    assert A.verdict_sign(math.nan, 0.3, +1) == A.INCONCLUSIVE     # nan never decides


def test_verdict_collapse():
    def ch(change, lo, hi):
        return {"change": change, "lo": lo, "hi": hi}
    assert A.verdict_collapse(ch(-0.5, -0.6, -0.4)) == A.REPRODUCED
    assert A.verdict_collapse(ch(-0.10, -0.15, -0.05)) == A.REPRODUCED     # exactly the margin
    assert A.verdict_collapse(ch(-0.05, -0.08, -0.02)) == A.NOT_REPRODUCED  # significant but < 10%
    assert A.verdict_collapse(ch(0.2, 0.1, 0.3)) == A.NOT_REPRODUCED        # rises
    assert A.verdict_collapse(ch(-0.3, -0.7, 0.1)) == A.INCONCLUSIVE        # too noisy
    assert A.verdict_collapse(ch(-0.09, -0.12, -0.06)) == A.INCONCLUSIVE    # may or may not reach 10%
    assert A.verdict_collapse(ch(-0.3, -0.2, -0.1), margin=0.5) == A.NOT_REPRODUCED
    assert A.verdict_collapse(ch(-0.3, math.nan, 0.1)) == A.INCONCLUSIVE


def test_verdict_between():
    assert A.verdict_between(0.05, 0.45, 0.95) == A.REPRODUCED
    assert A.verdict_between(0.45, 0.05, 0.95) == A.NOT_REPRODUCED
    assert A.verdict_between(0.05, 0.99, 0.95) == A.NOT_REPRODUCED
    assert A.verdict_between(0.05, 0.05, 0.95) == A.INCONCLUSIVE        # tie
    assert A.verdict_between(0.05, 0.95, 0.95) == A.INCONCLUSIVE


# ---------------------------------------------------------------------------------------------
# update sparsity on hand-made checkpoints
# ---------------------------------------------------------------------------------------------
def _ckpt(folder, tensors, shards=1):
    """A folder of safetensors files holding `tensors` (split over `shards` files)."""
    folder = Path(folder)
    folder.mkdir(parents=True)
    names = sorted(tensors)
    for i in range(shards):
        part = names[i::shards]
        save_file({k: tensors[k].contiguous() for k in part},
                  str(folder / f"model-{i + 1:05d}-of-{shards:05d}.safetensors"))
    (folder / "config.json").write_text("{}")
    return str(folder)


def _base_tensors():
    return {
        "model.embed_tokens.weight": torch.ones(10, 4),                   # 40
        "model.layers.0.self_attn.q_proj.weight": torch.ones(4, 4),       # 16
        "model.layers.0.self_attn.k_proj.weight": torch.ones(4, 4),       # 16
        "model.layers.0.mlp.up_proj.weight": torch.full((5, 4), 1e-6),    # 20
        "model.layers.1.input_layernorm.weight": torch.ones(4),           # 4
        "model.layers.1.self_attn.o_proj.weight": torch.ones(4, 4),       # 16
    }                                                                     # total 112


def test_sparsity_known_deltas_bf16_rounding(tmp_path):
    before = _base_tensors()
    after = {k: v.clone() for k, v in before.items()}
    # q_proj: 4 entries moved by +1e-4: below bf16 resolution at 1.0 (2^-7), so they round back
    after["model.layers.0.self_attn.q_proj.weight"][0] += 1e-4
    # k_proj: 4 entries moved by +0.01 → 1.0078125 in bf16: a real change of 2^-7
    after["model.layers.0.self_attn.k_proj.weight"][1] += 0.01
    # mlp (values 1e-6): one row of 4 moved by 3e-6, representable in bf16 → a change of ~3e-6:
    # nonzero but <= 1e-5 (unchanged at tol 1e-5, changed at tol 1e-7)
    after["model.layers.0.mlp.up_proj.weight"][0] += 3e-6
    # o_proj: the whole matrix moved by 0.5, and stored in bf16 in the after-checkpoint
    after["model.layers.1.self_attn.o_proj.weight"] = \
        (after["model.layers.1.self_attn.o_proj.weight"] + 0.5).to(torch.bfloat16)
    a = _ckpt(tmp_path / "a", before)
    b = _ckpt(tmp_path / "b", after, shards=2)               # sharded: every file is read
    total, changed = 112, 4 + 16                             # the k_proj row + all of o_proj
    s = A.update_sparsity(a, b, tol=1e-5)
    assert s["numel"] == total
    assert s["global"] == pytest.approx(1 - changed / total)
    assert s["exact_zero"] == pytest.approx(1 - (changed + 4) / total)   # + the mlp row
    # layer 0: q (16) + k (16) + mlp (20) = 52 entries, 4 changed; layer 1: norm 4 + o 16, 16 changed
    assert s["per_layer"] == {0: pytest.approx(1 - 4 / 52), 1: pytest.approx(4 / 20)}
    s7 = A.update_sparsity(a, b, tol=1e-7)
    assert s7["global"] == pytest.approx(1 - (changed + 4) / total)
    assert s7["per_layer"][0] == pytest.approx(1 - 8 / 52)
    same = A.update_sparsity(a, a)
    assert same["global"] == 1.0 and same["exact_zero"] == 1.0 and same["numel"] == total


def test_sparsity_tied_weights_counted_once(tmp_path):
    emb0 = torch.randn(10, 4)
    emb1 = emb0.clone()
    emb1[0] += 1.0                                           # 4 changed entries in the embedding
    base = {"model.embed_tokens.weight": emb0, "model.norm.weight": torch.ones(4)}
    # lm_head absent from both files (save_pretrained of a tied model)
    a = _ckpt(tmp_path / "a", base)
    b = _ckpt(tmp_path / "b", {**base, "model.embed_tokens.weight": emb1})
    s = A.update_sparsity(a, b)
    assert s["numel"] == 44 and s["global"] == pytest.approx(40 / 44)
    # lm_head saved in one checkpoint only (the other saved tied): still counted once
    d = _ckpt(tmp_path / "d", {**base, "model.embed_tokens.weight": emb1, "lm_head.weight": emb1.clone()})
    for x, y in ((a, d), (d, a)):
        s = A.update_sparsity(x, y)
        assert s["numel"] == 44 and s["global"] == pytest.approx(40 / 44)
    # an untied head in both: a separate matrix, counted
    e = _ckpt(tmp_path / "e", {**base, "lm_head.weight": torch.zeros(10, 4)})
    f = _ckpt(tmp_path / "f", {**base, "lm_head.weight": torch.zeros(10, 4)})
    s = A.update_sparsity(e, f)
    assert s["numel"] == 84 and s["global"] == 1.0


def test_sparsity_of_a_saved_micro_policy(tmp_path, micro_policy):
    """save_pretrained of the (tied) micro policy, one matrix of layer 1 moved: exactly its
    entries are counted as changed, and only layer 1 loses sparsity."""
    path, _, _ = micro_policy
    net, tok = M.load_policy(path, device="cpu")
    total = sum(p.numel() for p in net.parameters())          # tied: the embedding once
    w = net.model.layers[1].mlp.up_proj.weight
    with torch.no_grad():
        w[:3] += 0.5
    net.save_pretrained(tmp_path / "after")
    s = A.update_sparsity(path, str(tmp_path / "after"))
    assert s["numel"] == total
    assert s["global"] == pytest.approx(1 - 3 * w.shape[1] / total)
    assert s["per_layer"][0] == 1.0 and s["per_layer"][1] < 1.0


def test_sparsity_errors_for_a_folder_without_safetensors(tmp_path):
    a = _ckpt(tmp_path / "a", {"x.weight": torch.zeros(2, 2)})
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no .safetensors"):
        A.update_sparsity(a, str(tmp_path / "empty"))
    with pytest.raises(SystemExit, match="no .safetensors"):
        A.update_sparsity(str(tmp_path / "empty"), a)
    with pytest.raises(SystemExit, match="no .safetensors"):
        A.update_sparsity(a, str(tmp_path / "does-not-exist"))


def test_sparsity_of_unrelated_checkpoints_is_a_clear_error(tmp_path):
    a = _ckpt(tmp_path / "a", {"x.weight": torch.zeros(2, 2)})
    b = _ckpt(tmp_path / "b", {"x.weight": torch.zeros(3, 2)})
    c = _ckpt(tmp_path / "c", {"y.weight": torch.zeros(2, 2)})
    with pytest.raises(SystemExit):
        A.update_sparsity(a, c)
    with pytest.raises(SystemExit):
        A.update_sparsity(a, b)


# ---------------------------------------------------------------------------------------------
# runs, sets, series
# ---------------------------------------------------------------------------------------------
def _run_folder(root, name, config, metrics=(), tasks=(), steps=()):
    run = M.RunDir(str(root / name))
    run.write_config(config)
    for m in metrics:
        run.log(m["step"], {k: v for k, v in m.items() if k != "step"})
    if tasks:
        run.log(0, list(tasks), "tasks.jsonl")
    for s in steps:
        ck = run.ckpt_dir / f"step_{s:06d}"
        ck.mkdir(parents=True)
        (ck / "config.json").write_text("{}")
    return str(run.path)


def test_load_run_roles(tmp_path):
    cases = {"sp": ({"script": "selfplay.py", "proposer_reward": "learnability"}, "selfplay"),
             "pk": ({"script": "selfplay.py", "proposer_reward": "peak50"}, "selfplay-peak50"),
             "pk25": ({"script": "selfplay.py", "proposer_reward": "peak25"}, "selfplay-peak25"),
             "fz": ({"script": "selfplay.py", "proposer_reward": "learnability",
                     "freeze_proposer": True}, "selfplay-frozen"),
             "rl": ({"script": "rlvr.py"}, "rlvr"),
             "ft": ({"script": "/abs/path/sft.py"}, "sft")}
    for name, (cfg, role) in cases.items():
        r = A.load_run(_run_folder(tmp_path, name, {"model": "m", **cfg}))
        assert r["role"] == role, name
        assert r["name"] == name and r["config"]["model"] == "m"
        assert r["metrics"] == [] and r["tasks"] == [] and r["checkpoints"] == []
    p = _run_folder(tmp_path, "full", {"model": "m", "script": "selfplay.py",
                                       "proposer_reward": "learnability"},
                    metrics=[{"step": 1, "entropy": 2.0}, {"step": 2, "entropy": 1.5}],
                    tasks=[{"type": "deduction", "valid": True}], steps=(20, 10))
    (Path(p) / "checkpoints" / "step_000030").mkdir()       # no config.json: not a checkpoint
    r = A.load_run(p)
    assert [m["entropy"] for m in r["metrics"]] == [2.0, 1.5]
    assert r["tasks"] == [{"step": 0, "type": "deduction", "valid": True}]
    assert r["checkpoints"] == [(10, str(Path(p) / "checkpoints" / "step_000010")),
                                (20, str(Path(p) / "checkpoints" / "step_000020"))]
    (tmp_path / "bare").mkdir()
    with pytest.raises(SystemExit, match="not a run folder"):
        A.load_run(str(tmp_path / "bare"))


def test_series_sorted_numeric_only():
    run = {"metrics": [{"step": 3, "x": 0.3}, {"step": 1, "x": 0.1}, {"step": 2, "y": 5},
                       {"step": 4, "x": None}, {"step": 5, "x": "n/a"}, {"step": 6, "x": 2}]}
    assert A.series(run, "x") == ([1, 3, 6], [0.1, 0.3, 2])
    assert A.series(run, "z") == ([], [])


def test_eval_sets_toy_and_files(tmp_path):
    crux = tmp_path / "crux.jsonl"
    crux.write_text("\n".join(json.dumps({"code": f"def f(x):\n    return x + {i}", "input": "1",
                                          "output": str(1 + i)}) for i in range(5)) + "\n")
    gsm = tmp_path / "gsm.jsonl"
    gsm.write_text("\n".join(json.dumps({"question": f"{i}+1?", "answer": f"so #### {i + 1}"})
                             for i in range(5)) + "\n")
    cfg = A.Config(eval=[f"cruxeval={crux}", f"gsm8k={gsm}"], eval_n=3)
    sets = A.eval_sets(cfg, "toy", 4)
    assert list(sets) == ["deduction", "abduction", "induction", "arith", "cruxeval", "gsm8k"]
    assert all(len(p) == 3 for _, p in sets.values())
    assert sets["cruxeval"][0] == "deduction" and sets["cruxeval"][1][2]["output"] == "3"
    assert sets["gsm8k"][0] == "math" and sets["gsm8k"][1][1]["answer"] == "2"
    assert len(sets["induction"][1][0]["inputs"]) == 4
    assert list(A.eval_sets(cfg, "azr", 4)) == ["cruxeval", "gsm8k"]     # real models: files only
    with pytest.raises(SystemExit, match="name=path"):
        A.eval_sets(A.Config(eval=["gsm8k"]), "toy", 6)


def test_curriculum_spreads_tasks_and_correlates_with_step(monkeypatch):
    progs = {s: "def f(x):\n    return x" + " + 1" * s for s in range(1, 8)}
    tasks = [{"step": s, "phase": "train", "type": "deduction", "valid": True,
              "program": progs[s], "input": "1", "output": str(1 + s)} for s in (5, 1, 3, 2, 4, 6, 7)]
    tasks += [{"step": 2, "phase": "train", "type": "deduction", "valid": False, "program": None},
              {"step": 3, "phase": "train", "type": "abduction", "valid": True, "program": "x"},
              {"step": 0, "phase": "seed", "type": "deduction", "valid": True, "program": "y"}]
    seen = {}

    def fake_evaluate(model, tok, sets, style, caps, n, temperature, top_p, batch_size, seed):
        (kind, picked), = sets.values()
        seen.update(kind=kind, steps=[t["step"] for t in picked], n=n, model=model,
                    temperature=temperature, top_p=top_p)
        # later tasks: solved less often, with longer answers
        return {"curriculum": {"correct": [[i < 8 - t["step"] for i in range(n)] for t in picked],
                               "lengths": [[10 * t["step"]] * n for t in picked]}}
    monkeypatch.setattr(T, "evaluate", fake_evaluate)
    cfg = A.Config(n=8, curriculum_tasks=4, temperature=0.6, top_p=0.95)
    cur = A.curriculum(cfg, {"tasks": tasks}, "BASE", None, "toy")
    # 7 valid deduction proposals of training, sorted by step; 4 spread over them (0, 2, 4, 6)
    assert seen == {"kind": "deduction", "steps": [1, 3, 5, 7], "n": 8, "model": "BASE",
                    "temperature": 0.6, "top_p": 0.95}
    assert cur["n_tasks"] == 4 and cur["steps"] == [1, 3, 5, 7]
    assert cur["solve_rate"]["values"] == pytest.approx([7 / 8, 5 / 8, 3 / 8, 1 / 8])
    assert cur["response_len"]["values"] == [10.0, 30.0, 50.0, 70.0]
    assert cur["program_chars"]["values"] == [len(progs[s]) for s in (1, 3, 5, 7)]
    for key, sign in (("solve_rate", -1), ("response_len", +1), ("program_chars", +1)):
        t = cur[key]
        assert t["rho"] == pytest.approx(sign)
        assert (t["lo"], t["hi"]) == pytest.approx((sign, sign))   # every resample is monotone
    assert A.curriculum(cfg, {"tasks": tasks[:2]}, "BASE", None, "toy") is None  # < 3 tasks
    assert A.curriculum(cfg, {"tasks": []}, "BASE", None, "toy") is None


# ---------------------------------------------------------------------------------------------
# claims on hand-made results
# ---------------------------------------------------------------------------------------------
CLAIMS = ["RQ1: self-play raises pass@1",
          "RQ2: the entropy of both roles collapses",
          "RQ2: the proposer's entropy stays above the solver's",
          "RQ2: a frozen proposer keeps the entropy higher",
          "RQ4: self-play's update sparsity lies between",
          "RQ3: the proposer's tasks get harder",
          "RQ3: the answers to later tasks get longer",
          "RQ5: the peak50 proposer reward does not beat learnability"]


def _selfplay_metrics(falling=True):
    rows = []
    for t in range(1, 21):
        wiggle = 0.01 * (-1) ** t
        prop = 2.0 - 0.08 * t + wiggle if falling else 2.0 + wiggle
        solve = 1.5 - 0.06 * t - wiggle if falling else 1.5 - wiggle
        rows.append({"step": t, "propose/entropy": prop, "solve/entropy": solve,
                     "entropy": (prop + solve) / 2})
    return rows


def _passk_entry(cfg, counts):
    return A.passk(cfg, {"correct": [[True] * c + [False] * (cfg.n - c) for c in counts],
                         "lengths": [[5] * cfg.n for _ in counts]}, list(range(len(counts))))


def _hand_results(cfg):
    """res and runs (by role) where every claim holds, except RQ5 (peak50 equals learnability)."""
    runs = {"selfplay": {"name": "sp", "metrics": _selfplay_metrics()},
            "selfplay-peak50": {"name": "pk", "metrics": _selfplay_metrics()},
            "selfplay-frozen": {"name": "fz", "metrics": _selfplay_metrics(falling=False)},
            "rlvr": {"name": "rl", "metrics": []}, "sft": {"name": "ft", "metrics": []}}
    # n = 4: the base solves 1/4 of each code problem, self-play 3/4 (gain at k=1, tie at k=4)
    pk = {s: {"base": _passk_entry(cfg, [1] * 10), "sp": _passk_entry(cfg, [3] * 10),
              "pk": _passk_entry(cfg, [3] * 10)} for s in T.TASK_TYPES}
    pk["arith"] = {"base": _passk_entry(cfg, [1] * 10), "sp": _passk_entry(cfg, [4] * 10)}
    res = {"passk": pk, "clusters": {s: list(range(10)) for s in pk},
           "sparsity": {"ft": [{"step": 5, "global": 0.9}, {"step": 10, "global": 0.05}],
                        "sp": [{"step": 10, "global": 0.45}], "rl": [{"step": 10, "global": 0.95}]},
           "curriculum": {"sp": {"n_tasks": 20,
                                 "solve_rate": {"rho": -0.9, "lo": -1.0, "hi": -0.7},
                                 "response_len": {"rho": 0.8, "lo": 0.5, "hi": 0.95}}}}
    return res, runs


def _by_claim(rows):
    assert len(rows) == len(CLAIMS)
    for row, prefix in zip(rows, CLAIMS):
        assert row["claim"].startswith(prefix), (row["claim"], prefix)
        assert set(row) == {"claim", "measured", "interval", "verdict"}
    return [r["verdict"] for r in rows]


def test_claims_with_nothing_are_all_missing():
    rows = A.claims(A.Config(), {}, {})
    verdicts = _by_claim(rows)
    assert all(v.startswith("inconclusive (missing: ") and v.endswith(")") for v in verdicts)
    assert all(r["measured"] == "-" and r["interval"] == "-" for r in rows)
    assert "frozen-proposer" in verdicts[3] and "tasks.jsonl" in verdicts[5]


def test_claims_from_hand_made_results():
    cfg = A.Config(n=4)
    res, runs = _hand_results(cfg)
    rows = A.claims(cfg, res, runs)
    assert _by_claim(rows) == [
        A.REPRODUCED,       # Δpass@1 +0.5 (point interval), Δpass@4 0
        A.REPRODUCED,       # both roles fall far more than 10% (-77%, -77%)
        A.REPRODUCED,       # proposer above the solver at every step
        A.REPRODUCED,       # the frozen run's entropy stays at 1.75, self-play's ends near 0.4
        A.REPRODUCED,       # SFT 5% < self-play 45% < RLVR 95% unchanged (last checkpoints)
        A.REPRODUCED,       # ρ(step, solve rate) < 0
        A.REPRODUCED,       # ρ(step, response length) > 0
        A.INCONCLUSIVE,     # peak50 == learnability: the interval [0, 0] holds 0
    ], rows
    assert "+0.500" in rows[0]["measured"] and "Δpass@4 +0.000" in rows[0]["measured"]
    assert "30 problems" in rows[0]["measured"]          # the three code sets, pooled
    assert "SFT 5.00%" in rows[4]["measured"] and "RLVR 95.00%" in rows[4]["measured"]
    assert rows[5]["interval"] == "[-1.00, -0.70]"
    # the other side of each rule
    res["sparsity"]["ft"][-1]["global"] = 0.5                       # SFT sparser than self-play
    runs["selfplay"]["metrics"] = _selfplay_metrics(falling=False)  # flat entropy
    res["curriculum"]["sp"]["solve_rate"] = {"rho": 0.9, "lo": 0.8, "hi": 1.0}
    res["passk"] = {s: {**by, "pk": _passk_entry(cfg, [4] * 10)} for s, by in res["passk"].items()}
    rows = A.claims(cfg, res, runs)
    v = _by_claim(rows)
    assert v[1] == A.NOT_REPRODUCED       # a flat series rules out a 10% fall
    assert v[3] == A.INCONCLUSIVE         # frozen and self-play now end at the same entropy
    assert v[4] == A.NOT_REPRODUCED and v[5] == A.NOT_REPRODUCED
    assert v[7] == A.NOT_REPRODUCED       # peak50 beats learnability everywhere


def test_claims_missing_inputs_one_at_a_time():
    cfg = A.Config(n=4)
    res, runs = _hand_results(cfg)
    del runs["selfplay-frozen"], runs["rlvr"]
    res.pop("curriculum")
    v = _by_claim(A.claims(cfg, res, runs))
    assert v[0] == A.REPRODUCED and v[1] == A.REPRODUCED
    assert v[3] == "inconclusive (missing: entropy of a frozen-proposer run and a self-play run)"
    assert v[4] == "inconclusive (missing: checkpoints of an SFT, a self-play and an RLVR run)"
    assert v[5].startswith("inconclusive (missing:") and v[6].startswith("inconclusive (missing:")
    # too few steps for two windows: the collapse claim is missing, the paired one is not
    runs["selfplay"]["metrics"] = _selfplay_metrics()[:3]
    v = _by_claim(A.claims(cfg, res, runs))
    assert v[1].startswith("inconclusive (missing: propose/solve entropy")
    assert v[2] in VERDICTS


def test_claims_collapse_from_a_falling_series():
    cfg = A.Config()
    rows = A.claims(cfg, {}, {"selfplay": {"name": "sp", "metrics": _selfplay_metrics()}})
    row = rows[1]
    assert row["verdict"] == A.REPRODUCED
    assert "propose" in row["measured"] and "solve" in row["measured"] and "%" in row["interval"]
    # only one role falls: the roles disagree, so the claim is not decided
    m = [{**r, "solve/entropy": 1.5 + 0.01 * (-1) ** r["step"]} for r in _selfplay_metrics()]
    assert A.claims(cfg, {}, {"selfplay": {"name": "sp", "metrics": m}})[1]["verdict"] \
        == A.INCONCLUSIVE


def test_claims_selfplay_run_without_passk_is_missing():
    cfg = A.Config(n=4)
    res, runs = _hand_results(cfg)
    res["passk"] = {s: {"base": by["base"]} for s, by in res["passk"].items()}  # no checkpoint
    rows = A.claims(cfg, res, runs)
    assert rows[0]["verdict"].startswith("inconclusive (missing:")
    assert rows[7]["verdict"].startswith("inconclusive (missing:")


def _claim_rows(text):
    return [line for line in text.splitlines() if line.startswith("| RQ")]


def test_report_claim_rows_have_four_cells(tmp_path):
    cfg = A.Config(n=4)
    res, runs = _hand_results(cfg)
    res.update(base="b", runs={"sp": {"role": "selfplay"}}, figures=[],
               claims=A.claims(cfg, res, runs))
    rows = _claim_rows(A.report(res, cfg, tmp_path))
    assert len(rows) == 8
    for line in rows:
        cells = [c for c in line.replace("\\|", "").split("|")[1:-1]]
        assert len(cells) == 4, line


def test_report_hand_made(tmp_path):
    cfg = A.Config(n=4)
    res, runs = _hand_results(cfg)
    res.update(base="the/base", runs={"sp": {"role": "selfplay"}, "rl": {"role": "rlvr"}},
               figures=["entropy.png"], claims=A.claims(cfg, res, runs))
    text = A.report(res, cfg, tmp_path)
    assert (tmp_path / "report.md").read_text() == text + "\n"
    assert text.startswith("# zeroplay analysis")
    assert "Base: `the/base`" in text and "`sp` (selfplay), `rl` (rlvr)" in text
    assert len(_claim_rows(text)) == 8
    assert "| set | model | pass@1 | pass@2 | pass@4 |" in text
    assert "| deduction | sp | 0.750 | 1.000 | 1.000 |" in text
    assert "| arith | base | 0.250 | 0.500 | 1.000 |" in text
    assert "![entropy.png](entropy.png)" in text


# ---------------------------------------------------------------------------------------------
# the whole analysis over tiny runs made by the real scripts on the micro policy
# ---------------------------------------------------------------------------------------------
SEED_TASKS = [{"program": "def f(x):\n    return x + 1", "input": "2"},
              {"program": "def f(s):\n    return s[::-1]", "input": "'ab'"},
              {"program": "def f(x):\n    return x * 2", "inputs": [1, 2, 3, 4], "message": "double it"}]
SP_FLAGS = ["--steps", "4", "--batch-size", "1", "--solve-batch-size", "1", "--n-estimate", "2",
            "--seed-size", "1", "--propose-max-tokens", "8", "--solve-max-tokens", "6",
            "--n-inputs", "4", "--eval-n", "2", "--eval-every", "4", "--save-every", "2",
            "--micro-batch", "8", "--sample-batch", "8", "--no-bf16", "--device", "cpu"]


@pytest.fixture(scope="module")
def fixture_runs(tmp_path_factory, micro_policy):
    """Five run folders (self-play with the learnability and peak50 rewards and with a frozen
    proposer, RLVR, SFT) written by the scripts themselves from their command lines, on the
    micro policy with tiny flags. The random policy proposes no valid task, so the buffers come
    from --seed-tasks; six valid deduction proposals are then added to the self-play run's
    tasks.jsonl so that the curriculum analysis has something to re-solve."""
    import rlvr
    import selfplay
    import sft

    root = tmp_path_factory.mktemp("fixture_runs")
    base = micro_policy[0]
    seed = root / "seed.jsonl"
    seed.write_text("".join(json.dumps(r) + "\n" for r in SEED_TASKS))
    common = ["--model", base, "--seed", "0"]
    sp_flags = [*common, *SP_FLAGS, "--seed-tasks", str(seed)]
    for name, extra in (("selfplay", []), ("selfplay-peak50", ["--proposer-reward", "peak50"]),
                        ("selfplay-frozen", ["--freeze-proposer"])):
        selfplay.main(M.parse_flags(selfplay.Config, [*sp_flags, *extra, "--out", str(root / name)]))
    rlvr.main(M.parse_flags(rlvr.Config, [
        *common, "--out", str(root / "rlvr"), "--steps", "2", "--prompts-per-step", "2",
        "--group-size", "2", "--max-new-tokens", "6", "--eval-n", "2", "--eval-every", "2",
        "--save-every", "2", "--micro-batch", "8", "--sample-batch", "8", "--no-bf16",
        "--device", "cpu"]))
    sft.main(M.parse_flags(sft.Config, [
        *common, "--out", str(root / "sft"), "--steps", "2", "--micro-batch", "4",
        "--max-new-tokens", "6", "--eval-n", "2", "--eval-every", "2", "--save-every", "1",
        "--warmup", "1", "--no-bf16", "--device", "cpu"]))
    added = [{"phase": "train", "type": "deduction", "valid": True, "program": p, "input": i,
              "output": o} for p, i, o in (("def f(x):\n    return x + 1", "2", "3"),
                                           ("def f(x):\n    return x - 1", "5", "4"),
                                           ("def f(x):\n    return x * 3", "2", "6"),
                                           ("def f(s):\n    return s + s", "'a'", "'aa'"),
                                           ("def f(x):\n    return -x", "4", "-4"),
                                           ("def f(s):\n    return s[::-1]", "'ab'", "'ba'"))]
    run = M.RunDir(str(root / "selfplay"))
    for j, t in enumerate(added):
        run.log(1 + j // 2, t, "tasks.jsonl")
    return root, base


@pytest.fixture(scope="module")
def analysis(fixture_runs):
    root, _ = fixture_runs
    runs = [str(root / n) for n in ("selfplay", "selfplay-peak50", "selfplay-frozen", "rlvr", "sft")]
    out = root / "analysis"
    res = A.main(A.Config(runs=runs, out=str(out), n=2, eval_n=2, curriculum_tasks=4,
                          device="cpu", sample_batch=16))
    return out, res


def test_fixture_runs_have_the_expected_roles(fixture_runs):
    root, base = fixture_runs
    roles = {n: A.load_run(str(root / n)) for n in ("selfplay", "selfplay-peak50",
                                                     "selfplay-frozen", "rlvr", "sft")}
    assert {n: r["role"] for n, r in roles.items()} == {
        "selfplay": "selfplay", "selfplay-peak50": "selfplay-peak50",
        "selfplay-frozen": "selfplay-frozen", "rlvr": "rlvr", "sft": "sft"}
    assert all(r["config"]["model"] == base for r in roles.values())
    assert [s for s, _ in roles["selfplay"]["checkpoints"]] == [2, 4]
    assert [s for s, _ in roles["sft"]["checkpoints"]] == [1, 2]
    assert {m["step"] for m in roles["selfplay"]["metrics"]} == {0, 1, 2, 3, 4}
    assert all("propose/entropy" in m for m in roles["selfplay"]["metrics"] if m["step"])


def test_full_analysis_from_fixture_runs(analysis, fixture_runs):
    out, res = analysis
    root, base = fixture_runs
    names = ["selfplay", "selfplay-peak50", "selfplay-frozen", "rlvr", "sft"]
    assert res["base"] == base
    assert res["runs"] == {n: {"path": str(root / n), "role": n} for n in names}
    # sparsity of every checkpoint against the base: fractions in [0, 1], SFT changes nearly all
    assert set(res["sparsity"]) == set(names)
    assert [p["step"] for p in res["sparsity"]["sft"]] == [1, 2]
    assert [p["step"] for p in res["sparsity"]["selfplay"]] == [2, 4]
    n_params = sum(p.numel() for p in M.load_policy(base, device="cpu")[0].parameters())
    for pts in res["sparsity"].values():
        for p in pts:
            assert 0.0 <= p["exact_zero"] <= p["global"] <= 1.0 and p["numel"] == n_params
    assert res["sparsity"]["sft"][-1]["global"] < 0.5
    # pass@k of the base and every run's final checkpoint on each held-out toy set
    assert set(res["passk"]) == {"deduction", "abduction", "induction", "arith"}
    for name, by in res["passk"].items():
        assert set(by) == {"base", *names}
        for st in by.values():
            assert st["ks"] == [1, 2] and len(st["counts"]) == 2
            assert all(lo - 1e-9 <= v <= hi + 1e-9 for v, lo, hi in zip(st["curve"], st["lo"], st["hi"]))
        assert len(res["clusters"][name]) == 2
    assert res["clusters"]["deduction"] == res["clusters"]["abduction"]
    # the curriculum: only the self-play run with valid proposals, 4 of its 6 re-solved
    assert list(res["curriculum"]) == ["selfplay"]
    cur = res["curriculum"]["selfplay"]
    assert cur["n_tasks"] == 4 and cur["steps"] == [1, 2, 2, 3]
    assert all(0.0 <= v <= 1.0 for v in cur["solve_rate"]["values"])
    # every claim has a row; with 4 steps and all five roles, every input is there
    verdicts = _by_claim(res["claims"])
    assert all(v in VERDICTS for v in verdicts), verdicts
    # the files
    assert set(res["figures"]) == {"entropy.png", "sparsity.png", "passk.png",
                                   "curriculum_selfplay.png"}
    for fig in res["figures"]:
        assert (out / fig).stat().st_size > 1000, fig
    saved = json.loads((out / "results.json").read_text())
    assert saved["claims"] == res["claims"] and saved["base"] == base
    assert saved["passk"]["arith"]["sft"]["counts"] == res["passk"]["arith"]["sft"]["counts"]
    report = (out / "report.md").read_text()
    for c in res["claims"]:
        assert c["claim"] in report and c["verdict"] in report
    assert len([line for line in report.splitlines()
                if line.startswith(("| deduction |", "| abduction |", "| induction |", "| arith |"))]) \
        == 4 * 6
    for fig in res["figures"]:
        assert f"![{fig}]({fig})" in report


def test_runs_of_different_bases_are_refused(fixture_runs, tmp_path):
    root, _ = fixture_runs
    other = _run_folder(tmp_path, "other", {"model": str(tmp_path / "another-base"),
                                            "script": "rlvr.py"})
    with pytest.raises(SystemExit, match="do not share one base model"):
        A.main(A.Config(runs=[str(root / "selfplay"), other], out=str(tmp_path / "o")))
    with pytest.raises(SystemExit, match="not a run folder"):
        A.main(A.Config(runs=[str(tmp_path / "nope")], out=str(tmp_path / "o")))
    with pytest.raises(SystemExit, match="--runs"):
        A.main(A.Config(runs=[], out=str(tmp_path / "o")))
    with pytest.raises(SystemExit, match="power of two"):
        A.main(A.Config(runs=[other], n=12, out=str(tmp_path / "o")))
    assert not (tmp_path / "o" / "report.md").exists()


def test_command_line_flags():
    cfg = M.parse_flags(A.Config, ["--runs", "a", "b", "--eval", "gsm8k=g.jsonl", "--n", "8",
                                   "--out", "x", "--seed", "3"])
    assert (cfg.runs, cfg.eval, cfg.n, cfg.out, cfg.seed) == (["a", "b"], ["gsm8k=g.jsonl"], 8, "x", 3)


def test_curriculum_tasks_zero_skips_or_is_refused(monkeypatch):
    monkeypatch.setattr(T, "evaluate", lambda *a, **k: {"curriculum": {"correct": [], "lengths": []}})
    tasks = [{"step": s, "phase": "train", "type": "deduction", "valid": True, "program": "p",
              "input": "1", "output": "1"} for s in range(5)]
    try:
        assert A.curriculum(A.Config(curriculum_tasks=0), {"tasks": tasks}, None, None, "toy") is None
    except SystemExit as e:
        assert "--curriculum-tasks" in str(e)


def test_runs_with_the_same_folder_name_are_not_merged(fixture_runs, tmp_path):
    root, _ = fixture_runs
    twin = tmp_path / "seed1" / "selfplay"
    shutil.copytree(root / "selfplay", twin)
    cfg = A.Config(runs=[str(root / "selfplay"), str(twin)], out=str(tmp_path / "o"), n=1,
                   eval_n=1, curriculum_tasks=3, device="cpu")
    try:
        res = A.main(cfg)
    except SystemExit as e:                      # refusing them with a message is fine too
        assert "selfplay" in str(e)
        return
    assert len(res["runs"]) == 2 and len(res["passk"]["deduction"]) == 3
