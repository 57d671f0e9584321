"""Tests for analyze.py: pass@k estimator, bootstrap, trend statistics, streamed update sparsity,
and the whole report built from tiny fixture runs."""
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import analyze as A


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


def test_pass_at_k_stable_at_n_1024():
    n = 1024
    for c in (0, 1, 3, 100, 512, 1000, 1024):
        for k in (1, 2, 16, 256, 1024):
            v = A.pass_at_k(n, c, k)
            assert 0.0 <= v <= 1.0 and math.isfinite(v)
            exact = 1 - math.comb(n - c, k) / math.comb(n, k)   # exact big-integer binomials
            assert v == pytest.approx(exact, abs=1e-9)
    assert A.pass_at_k(n, 1, 1) == pytest.approx(1 / 1024)
    # monotone in k
    vals = [A.pass_at_k(n, 3, k) for k in range(1, n + 1)]
    assert all(b >= a - 1e-15 for a, b in zip(vals, vals[1:]))


def test_pass_at_k_rejects_bad_input():
    for bad in ((4, 5, 1), (4, -1, 1), (4, 1, 0), (4, 1, 5), (0, 0, 1)):
        with pytest.raises(ValueError):
            A.pass_at_k(*bad)


def test_pass_at_k_curve_and_ks():
    assert A.default_ks(16) == [1, 2, 4, 8, 16]
    assert A.default_ks(12) == [1, 2, 4, 8, 12]
    assert A.default_ks(1) == [1]
    curve = A.pass_at_k_curve([0, 1, 4], 4, [1, 2, 4])
    assert curve.tolist() == pytest.approx([(0 + 0.25 + 1) / 3, (0 + 0.5 + 1) / 3, (0 + 1 + 1) / 3])


# ---------------------------------------------------------------------------------------------
# bootstrap and trend statistics
# ---------------------------------------------------------------------------------------------
def test_bootstrap_constant_values_give_a_point_interval():
    assert A.bootstrap_ci([0.3] * 20, n_boot=200) == pytest.approx((0.3, 0.3))


def test_bootstrap_mean_of_bernoulli_matches_normal_theory():
    # 400 problems, half solved: the bootstrap SE of the mean is sqrt(.25/400) = 0.025, so the
    # 95% interval is 0.5 ± 1.96·0.025 = [0.451, 0.549]
    v = np.array([0, 1] * 200, float)
    lo, hi = A.bootstrap_ci(v, None, n_boot=4000, seed=1)
    assert lo == pytest.approx(0.451, abs=0.01) and hi == pytest.approx(0.549, abs=0.01)


def test_bootstrap_two_values_known_distribution():
    # resampling [0, 1] twice: mean 0 w.p. 1/4, 0.5 w.p. 1/2, 1 w.p. 1/4 → 95% CI is [0, 1]
    # and the central 40% interval is {0.5}
    assert A.bootstrap_ci([0.0, 1.0], n_boot=2000, seed=0) == (0.0, 1.0)
    assert A.bootstrap_ci([0.0, 1.0], n_boot=2000, seed=0, alpha=0.6) == (0.5, 0.5)


def test_bootstrap_vector_statistic_and_seed():
    mat = np.random.default_rng(0).random((30, 3))
    lo, hi = A.bootstrap_ci(mat, None, n_boot=300, seed=5)
    assert lo.shape == (3,) and np.all(lo <= mat.mean(0)) and np.all(mat.mean(0) <= hi)
    lo2, _ = A.bootstrap_ci(mat, None, n_boot=300, seed=5)
    assert np.array_equal(lo, lo2)


def test_rank_spearman_trend():
    assert A.rankdata([10, 20, 20, 5]).tolist() == [2, 3.5, 3.5, 1]
    assert A.spearman([1, 2, 3, 4], [1, 4, 9, 16]) == pytest.approx(1.0)
    assert A.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(A.spearman([1, 2, 3], [5, 5, 5]))
    steps = np.arange(40)
    t = A.trend(steps, 2 * steps + 1, n_boot=200)
    assert t["rho"] == pytest.approx(1.0) and t["lo"] == pytest.approx(1.0)
    assert t["slope_per_100"] == pytest.approx(200.0)
    xs, ys, lo, hi, cnt = A.bin_by_step([3, 1, 2, 0], [3, 1, 3, 1], 2)
    assert xs.tolist() == [0.5, 2.5] and ys.tolist() == [1, 3] and cnt.tolist() == [2, 2]
    assert lo.tolist() == [1, 3] and hi.tolist() == [1, 3]          # constant within each bin


# ---------------------------------------------------------------------------------------------
# update sparsity
# ---------------------------------------------------------------------------------------------
def _ckpt(folder, tensors, shard=False):
    folder = Path(folder)
    folder.mkdir(parents=True)
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    if not shard:
        save_file(tensors, str(folder / "model.safetensors"))
        return str(folder)
    names = sorted(tensors)
    half = len(names) // 2
    wm = {}
    for i, part in enumerate((names[:half], names[half:])):
        fn = f"model-{i + 1:05d}-of-00002.safetensors"
        save_file({k: tensors[k] for k in part}, str(folder / fn))
        wm.update({k: fn for k in part})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": wm}))
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
    # mlp (values 1e-6): 4 entries (one row) moved by 3e-6: representable in bf16 → a change of ~3e-6,
    # nonzero but <= 1e-5 (unchanged at tol 1e-5, changed at tol 1e-7)
    after["model.layers.0.mlp.up_proj.weight"][0] += 3e-6
    # o_proj: whole matrix moved by 0.5 (stored in bf16 in the after-checkpoint)
    after["model.layers.1.self_attn.o_proj.weight"] = after["model.layers.1.self_attn.o_proj.weight"] + 0.5
    after = {k: (v.to(torch.bfloat16) if "o_proj" in k else v) for k, v in after.items()}
    a = _ckpt(tmp_path / "a", before)
    b = _ckpt(tmp_path / "b", after, shard=True)
    s = A.update_sparsity(a, b, tol=[1e-5, 1e-7])
    total = 112
    assert s["numel"] == total and s["dtype"] == "bfloat16" and s["tol"] == 1e-5
    changed_1e5 = 4 + 16                          # k_proj row + all of o_proj
    assert s["global"] == pytest.approx(1 - changed_1e5 / total)
    assert s["by_tol"][1e-5] == pytest.approx(1 - changed_1e5 / total)
    assert s["by_tol"][1e-7] == pytest.approx(1 - (changed_1e5 + 4) / total)   # + the mlp row (4 wide)
    assert s["exact_zero"] == pytest.approx(1 - (changed_1e5 + 4) / total)
    assert s["per_kind"]["attn_q"] == 1.0                       # rounded away in bf16
    assert s["per_kind"]["attn_k"] == pytest.approx(12 / 16)
    assert s["per_kind"]["attn_o"] == 0.0
    assert s["per_kind"]["mlp"] == 1.0 and s["per_kind"]["norm"] == 1.0
    assert s["per_kind"]["embedding"] == 1.0
    assert s["per_layer"] == {0: pytest.approx(1 - 4 / 52), 1: pytest.approx(4 / 20)}
    assert set(s["stored_dtypes"]) == {"F32", "BF16"}


def test_sparsity_tied_weights_counted_once(tmp_path):
    emb0 = torch.randn(10, 4)
    emb1 = emb0.clone()
    emb1[0] += 1.0                                            # 4 changed entries in the embedding
    base = {"model.embed_tokens.weight": emb0, "model.norm.weight": torch.ones(4)}
    # (1) lm_head absent from both files (save_pretrained of a tied model)
    a = _ckpt(tmp_path / "a", base)
    b = _ckpt(tmp_path / "b", {**base, "model.embed_tokens.weight": emb1})
    s = A.update_sparsity(a, b)
    assert s["numel"] == 44 and s["global"] == pytest.approx(40 / 44)
    assert "lm_head" not in s["per_kind"]
    # (2) lm_head saved as a copy of the embedding in both checkpoints: counted once
    c = _ckpt(tmp_path / "c", {**base, "lm_head.weight": emb0.clone()})
    d = _ckpt(tmp_path / "d", {**base, "model.embed_tokens.weight": emb1, "lm_head.weight": emb1.clone()})
    s = A.update_sparsity(c, d)
    assert s["numel"] == 44 and s["global"] == pytest.approx(40 / 44) and s["tied"] == ["lm_head.weight"]
    # (3) lm_head only in one of them (one checkpoint saved tied): still counted once
    s = A.update_sparsity(a, d)
    assert s["numel"] == 44 and "lm_head" not in s["per_kind"]
    # (4) untied head that differs from the embedding: a separate matrix, counted
    e = _ckpt(tmp_path / "e", {**base, "lm_head.weight": torch.zeros(10, 4)})
    f = _ckpt(tmp_path / "f", {**base, "lm_head.weight": torch.zeros(10, 4)})
    s = A.update_sparsity(e, f)
    assert s["numel"] == 84 and s["per_kind"]["lm_head"] == 1.0 and s["global"] == 1.0


def test_sparsity_streams_big_tensors_in_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(A, "CHUNK_ELEMS", 8)                  # force row chunks of 2 rows x 4
    before = {"model.layers.0.mlp.down_proj.weight": torch.zeros(7, 4)}
    after = {"model.layers.0.mlp.down_proj.weight": torch.zeros(7, 4)}
    after["model.layers.0.mlp.down_proj.weight"][6, :3] = 1.0
    s = A.update_sparsity(_ckpt(tmp_path / "a", before), _ckpt(tmp_path / "b", after))
    assert s["global"] == pytest.approx(25 / 28) and s["numel"] == 28


def test_sparsity_errors(tmp_path):
    a = _ckpt(tmp_path / "a", {"x.weight": torch.zeros(2, 2)})
    b = _ckpt(tmp_path / "b", {"x.weight": torch.zeros(3, 2)})
    c = _ckpt(tmp_path / "c", {"y.weight": torch.zeros(2, 2)})
    with pytest.raises(ValueError, match="shapes differ"):
        A.update_sparsity(a, b)
    with pytest.raises(ValueError, match="different tensors"):
        A.update_sparsity(a, c)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no .safetensors"):
        A.update_sparsity(a, tmp_path / "empty")


def test_output_kind():
    cases = {"3": "int ≥ 0", "0": "int ≥ 0", "-5": "int < 0", "'ab'": "str", "''": "str",
             "[1, 2]": "list", "(1, 2)": "list", "True": "bool", "None": "other", "1.5": "other",
             "{1: 2}": "other", "oops(": "other", "f(1)": "other"}
    assert {o: A.output_kind(o) for o in cases} == cases


def test_task_mix_bins_and_shares():
    def task(step, out, kind="deduction", valid=True):
        return {"step": step, "type": kind, "valid": valid, "output": out}
    tasks = [task(0, "'seed'"),                              # seeding (step 0): left out
             task(1, "'a'"), task(2, "3"), task(3, "-1"), task(4, "'b'", "abduction"),
             task(5, "[1]"), task(6, "2"), task(6, "7"), task(7, "True"),
             task(8, "'x'", valid=False), task(8, "'y'", "induction")]  # invalid, induction: out
    m = A.task_mix(tasks, 2)   # steps 1-7 in two bins of width 3.5: steps 1-4 and 5-7
    assert m["bins"] == [[1, 4], [5, 7]] and m["n"] == [4, 4]
    assert m["share"]["str"] == [0.5, 0.0]
    assert m["share"]["int ≥ 0"] == [0.25, 0.5]
    assert m["share"]["int < 0"] == [0.25, 0.0]
    assert m["share"]["list"] == [0.0, 0.25] and m["share"]["bool"] == [0.0, 0.25]
    assert A.task_mix([task(0, "1"), task(3, "1", "induction")], 4) is None
    # an empty stretch of steps is dropped, not reported as 0/0
    m = A.task_mix([task(1, "1"), task(9, "'s'")], 3)
    assert m["n"] == [1, 1] and m["share"]["str"] == [0.0, 1.0]


def test_param_kind_and_layer():
    assert A.param_kind("model.embed_tokens.weight") == "embedding"
    assert A.param_kind("lm_head.weight") == "lm_head"
    assert A.param_kind("model.layers.3.self_attn.v_proj.bias") == "attn_v"
    assert A.param_kind("model.layers.3.post_attention_layernorm.weight") == "norm"
    assert A.param_kind("model.norm.weight") == "norm"
    assert A.param_kind("model.layers.3.mlp.gate_proj.weight") == "mlp"
    assert A.param_kind("model.rotary_emb.inv_freq") == "other"
    assert A.layer_index("model.layers.12.mlp.up_proj.weight") == 12
    assert A.layer_index("model.norm.weight") is None


# ---------------------------------------------------------------------------------------------
# metrics readers
# ---------------------------------------------------------------------------------------------
def test_entropy_series_and_summary():
    metrics = [{"step": s, "entropy": 2.0 - 0.1 * s, "propose/entropy": 1.5, "solve/entropy": 1.0 + (s == 3),
                "solve/deduction/entropy": 0.9, "reward_mean": 0.1, "time/entropy": 4.0}
               for s in range(1, 11)]
    metrics.append({"step": 11, "entropy": float("nan")})
    ser = A.entropy_series(metrics)
    assert set(ser) == {"entropy", "propose/entropy", "solve/entropy", "solve/deduction/entropy"}
    assert ser["entropy"][0].tolist() == list(range(1, 11))    # the NaN row is dropped
    assert A.split_key("solve/deduction/entropy") == ("solve", "deduction")
    assert A.split_key("propose/entropy") == ("propose", None)
    assert A.split_key("entropy") == ("all", None)
    summ = A.entropy_summary(ser)
    assert summ["entropy"]["start"] == pytest.approx(1.9) and summ["entropy"]["end"] == pytest.approx(1.0)
    assert summ["proposer_above_solver"] == pytest.approx(0.9)   # 1.5 > 1.0 except step 3 (2.0)


# ---------------------------------------------------------------------------------------------
# the whole report from tiny fixture runs
# ---------------------------------------------------------------------------------------------
def _fake_run(root, name, base_path, selfplay, perturb_steps=(1, 2)):
    """A run folder as the training scripts write it: config.json, metrics.jsonl, checkpoints
    saved with RunDir from a perturbed copy of the micro policy, and tasks.jsonl for self-play."""
    import model as M
    import toydata

    run = M.RunDir(str(root / name))
    run.write_config({"model": base_path, "script": "selfplay.py" if selfplay else "rlvr.py"})
    net, tok = M.load_policy(base_path, device="cpu")
    for i, step in enumerate(perturb_steps):
        with torch.no_grad():  # change one matrix a bit more at each checkpoint
            w = net.model.layers[0].self_attn.q_proj.weight
            w[: 2 * (i + 1)] += 0.05
        run.save_checkpoint(step, net, tok)
    for step in range(1, 7):
        m = {"entropy": 2.0 - 0.1 * step, "reward_mean": 0.1 * step}
        if selfplay:
            m.update({"propose/entropy": 1.8 - 0.05 * step, "solve/entropy": 1.5 - 0.1 * step,
                      "propose/deduction/entropy": 1.7, "solve/deduction/entropy": 1.4,
                      "solve/abduction/entropy": 1.3, "propose/deduction/valid_rate": 0.8,
                      "propose/abduction/valid_rate": 0.6})
        run.log(step, m)
    if selfplay:
        with open(run.path / "tasks.jsonl", "w") as f:
            for j, t in enumerate(toydata.make_code_tasks(8, 1, "train")):
                f.write(json.dumps({"step": 1 + j // 2, "type": "deduction", "program": t["program"],
                                    "input": t["input"], "output": t["output"], "s": (j % 3) / 2,
                                    "reward": 0.5, "valid": True, "reason": ""}) + "\n")
            f.write(json.dumps({"step": 3, "type": "abduction", "program": "def f(x):\n    return x",
                                "input": "1", "output": "1", "s": 0.0, "reward": 0.0, "valid": False,
                                "reason": "x"}) + "\n")
    return str(run.path)


def test_full_report_from_fixture_runs(tmp_path, micro_policy, monkeypatch):
    import model as M

    base_path, _, _ = micro_policy
    sp = _fake_run(tmp_path, "selfplay_a", base_path, selfplay=True)
    rl = _fake_run(tmp_path, "rlvr_a", base_path, selfplay=False, perturb_steps=(3,))
    out = tmp_path / "analysis"
    cfg = A.Config(runs=[sp, rl], out=str(out), n=2, problems=3, max_new_tokens=6,
                   curriculum_tasks=4, curriculum_bins=2, n_boot=50, batch_size=8, device="cpu",
                   tol=[1e-5, 1e-3])
    res = A.main(cfg)

    # sparsity: every checkpoint compared to the base, fractions in [0, 1], more change later
    s = res["sparsity"]["selfplay_a"]
    assert s["steps"] == [1, 2]
    g1, g2 = (s["by_step"][k]["global"] for k in (1, 2))
    assert 0.0 < g2 < g1 < 1.0
    q_kind = s["by_step"][2]["per_kind"]
    assert q_kind["attn_q"] < 1.0 and q_kind["mlp"] == 1.0 and q_kind["embedding"] == 1.0
    assert s["by_step"][2]["per_layer"][1] == 1.0 and s["by_step"][2]["per_layer"][0] < 1.0
    assert "lm_head" not in q_kind                                # tied to the embedding
    # entropy by role, pass@k for base + both finals on every toy set, curriculum for self-play only
    assert set(res["entropy"]["selfplay_a"]) >= {"entropy", "propose/entropy", "solve/deduction/entropy"}
    assert set(res["passk"]) == {"arith", "deduction", "abduction", "induction"}
    for by in res["passk"].values():
        assert set(by) == {"base", "selfplay_a", "rlvr_a"}
        for st in by.values():
            assert st["ks"] == [1, 2] and len(st["counts"]) == 3
            assert all(lo - 1e-9 <= v <= hi + 1e-9 for v, lo, hi in zip(st["curve"], st["lo"], st["hi"]))
    assert set(res["coverage"]["arith"]) == {"selfplay_a", "rlvr_a"}
    assert list(res["curriculum"]) == ["selfplay_a"] and len(res["curriculum"]["selfplay_a"]["steps"]) == 4
    assert res["comparison"]["selfplay_a"]["final_valid_rate"] == pytest.approx(0.7)
    mix = res["task_mix"]["selfplay_a"]          # 8 valid deduction tasks over steps 1-4, 2 bins
    assert list(res["task_mix"]) == ["selfplay_a"] and mix["n"] == [4, 4]
    assert all(sum(v[i] for v in mix["share"].values()) == pytest.approx(1.0) for i in range(2))

    report = (out / "report.md").read_text()
    for needle in ("## Update sparsity", "bfloat16", "unchanged @ 1e-05", "## pass@k", "### Coverage",
                   "## Curriculum", "## Time per stage", "## Findings", "Task mix — selfplay_a"):
        assert needle in report, needle
    for fig in ("sparsity_vs_step.png", "sparsity_per_layer_kind.png", "entropy_all_runs.png",
                "entropy_roles_selfplay_a.png", "passk_arith.png", "curriculum_selfplay_a.png",
                "selfplay_comparison.png"):
        assert (out / fig).stat().st_size > 1000, fig
    assert json.loads((out / "results.json").read_text())["base"]

    # a second call with the same settings samples nothing (everything from the cache)
    def no_sampling(*a, **k):
        raise AssertionError("sampled although every result is cached")

    monkeypatch.setattr(M, "sample", no_sampling)
    res2 = A.main(A.Config(**{**cfg.__dict__, "skip_sparsity": True}))
    assert all(st["cached"] for by in res2["passk"].values() for st in by.values())
    assert res2["passk"]["arith"]["base"]["counts"] == res["passk"]["arith"]["base"]["counts"]


def test_runs_without_pieces_degrade_and_bad_input_is_named(tmp_path, micro_policy):
    base_path, _, _ = micro_policy
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text(json.dumps({"model": base_path, "script": "selfplay.py"}))
    res = A.main(A.Config(runs=[str(bare)], out=str(tmp_path / "o"), skip_passk=True, n_boot=20))
    assert any("no checkpoints" in x for x in res["notes"])
    assert any("no tasks.jsonl" in x for x in res["notes"])
    assert any("no entropy keys" in x for x in res["notes"])
    assert (tmp_path / "o" / "report.md").exists()

    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model": "some/other-model"}))
    with pytest.raises(SystemExit, match="do not share one base"):
        A.main(A.Config(runs=[str(bare), str(other)], out=str(tmp_path / "o2"), skip_passk=True))
    with pytest.raises(SystemExit, match="not a run folder"):
        A.main(A.Config(runs=[str(tmp_path / "nope")], out=str(tmp_path / "o3")))
    with pytest.raises(SystemExit, match="name=path"):
        A.parse_args(["--runs", str(bare), "--eval", "gsm8k"])
    with pytest.raises(SystemExit, match="--tol"):
        A.parse_args(["--runs", str(bare), "--tol", "-1"])


def test_score_batch_toy_answers():
    ded = [{"program": "def f(s):\n    return s[::-1]", "input": "'ab'", "output": "'ba'"}]
    assert A.score_batch("deduction", ded, [["'ba'\n```", "'ab'\n```", "'ba' but no fence"]], "toy") \
        == [[True, False, False]]
    abd = [{"program": "def f(x):\n    return x + 1", "input": "2", "output": "3"}]
    assert A.score_batch("abduction", abd, [["2\n```", "5\n```", "2\n```"]], "toy") == [[True, False, True]]
    ind = [{"program": "def f(x):\n    return abs(x - 5)", "inputs": ["1", "9", "3", "2"],
            "outputs": ["4", "4", "2", "3"], "message": "m"}]
    view = A.induction_view(ind[0])
    assert view["visible"] == [("1", "4"), ("9", "4")] and len(view["pairs"]) == 4
    good, bad = "def f(x):\n    return abs(x - 5)\n```", "def f(x):\n    return 4\n```"  # bad fits visible only
    assert A.score_batch("induction", ind, [[good, bad]], "toy") == [[True, False]]
    math_ = [{"question": "3+4*2", "answer": 11}]
    assert A.score_batch("math", math_, [[" 4*2=8. 3+8=11. <answer>11</answer>", "<answer>12</answer>"]],
                         "toy") == [[True, False]]
