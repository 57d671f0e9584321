"""rlvr.py: advantages, the clipped loss and its aggregations (hand-computed), micro-batching
equivalence of update_policy, learning a trivial verifiable task, and exact resume."""
import copy
import json
import math

import pytest
import torch

import model as M
import rlvr
from rlvr import Experience, PGConfig, group_advantages, policy_loss, update_policy


# ---------------------------------------------------------------------------------------------
# prompts (pretrain.py renders the toy base's documents with these; the format must not drift)
# ---------------------------------------------------------------------------------------------
def test_math_prompt_toy_format():
    assert rlvr.math_prompt("3+4*2", "toy") == "Problem: 3+4*2\nSolution:"
    assert rlvr.math_stop("toy") == ["</answer>"]
    p = rlvr.math_prompt("What is 2+2?", "azr")
    assert "What is 2+2?" in p and p.endswith("<think>")


# ---------------------------------------------------------------------------------------------
# advantages
# ---------------------------------------------------------------------------------------------
def test_group_advantages_hand_computed():
    r = torch.tensor([1., 0., 0., 0., 1., 1., 0., 0.])
    # group 1: mean .25, Bessel std .5 ; group 2: mean .5, std sqrt(1/3)
    g = group_advantages(r, 4, "group")
    s2 = math.sqrt(1 / 3) + 1e-4
    exp = torch.tensor([.75 / .5001, -.25 / .5001, -.25 / .5001, -.25 / .5001,
                        .5 / s2, .5 / s2, -.5 / s2, -.5 / s2])
    assert torch.allclose(g, exp, atol=1e-6)
    n = group_advantages(r, 4, "none")  # Dr. GRPO: centred only
    assert torch.allclose(n, torch.tensor([.75, -.25, -.25, -.25, .5, .5, -.5, -.5]))
    b = group_advantages(r, 4, "batch")  # group mean, batch std: std of r = sqrt(1.875 / 7)
    assert torch.allclose(b, n / (math.sqrt(1.875 / 7) + 1e-4), atol=1e-6)


def test_zero_variance_groups_get_zero_advantage_and_are_flagged():
    r = torch.tensor([1., 1., 0., 0., 0., 1.])
    for scale in ("group", "batch", "none"):
        assert torch.equal(group_advantages(r, 2, scale)[:4], torch.zeros(4))
    assert rlvr.varied_groups(r, 2).tolist() == [False, False, False, False, True, True]


def test_group_advantages_bad_input():
    with pytest.raises(ValueError, match="groups of 3"):
        group_advantages(torch.zeros(4), 3)
    with pytest.raises(ValueError, match="scale"):
        group_advantages(torch.zeros(4), 2, "mean")


# ---------------------------------------------------------------------------------------------
# the clipped surrogate and its aggregations
# ---------------------------------------------------------------------------------------------
def _loss_inputs():
    """Row 0 (A=+1): ratios 1, 1.5, 0.5 ; row 1 (A=-1): ratios 0.7, 1.3, (masked)."""
    logp = torch.tensor([[-1., -2., -3.], [-1., -1., -0.5]], requires_grad=True)
    ratio = torch.tensor([[1., 1.5, .5], [.7, 1.3, 1.]])
    old = logp.detach() - ratio.log()
    adv = torch.tensor([1., -1.])
    mask = torch.tensor([[1., 1., 1.], [1., 1., 0.]])
    return logp, old, adv, mask


def test_policy_loss_aggregations_hand_computed():
    # per-token losses, clip 0.2/0.2:
    #  row 0: -min(1,1)=-1 ; -min(1.5,1.2)=-1.2 (clipped high) ; -min(.5,.8)=-.5   sum -2.7
    #  row 1: -min(-.7,-.8)=.8 (clipped low) ; -min(-1.3,-1.2)=1.3 (not clipped)  sum 2.1
    logp, old, adv, mask = _loss_inputs()
    tok, st = policy_loss(logp, old, adv, mask, .2, .2, "token_mean")
    assert tok.item() == pytest.approx((-2.7 + 2.1) / 5)
    seq, _ = policy_loss(logp, old, adv, mask, .2, .2, "seq_mean")
    assert seq.item() == pytest.approx((-2.7 / 3 + 2.1 / 2) / 2)
    const, _ = policy_loss(logp, old, adv, mask, .2, .2, "constant", constant_len=4)
    assert const.item() == pytest.approx(-0.6 / (2 * 4))
    assert st["clip_high_frac"] == pytest.approx(1 / 5)
    assert st["clip_low_frac"] == pytest.approx(1 / 5)
    assert st["tokens"] == 5
    # DAPO clip-higher: the 1.5 ratio is now clipped at 1.28
    hi, _ = policy_loss(logp, old, adv, mask, .2, .28, "token_mean")
    assert hi.item() == pytest.approx((-1 - 1.28 - .5 + 2.1) / 5)


def test_policy_loss_gradient_is_zero_where_clipped_and_off_mask():
    logp, old, adv, mask = _loss_inputs()
    loss, _ = policy_loss(logp, old, adv, mask, .2, .2, "token_mean")
    loss.backward()
    # d/dlogp of -rho*A = -rho*A ; clipped and masked tokens get 0
    expect = torch.tensor([[-1., 0., -.5], [0., 1.3, 0.]]) / 5
    assert torch.allclose(logp.grad, expect, atol=1e-6)


def test_policy_loss_on_policy_is_plain_policy_gradient():
    """ratio = 1 (old = logp.detach()): clipping is inactive, gradient = -A * mask / tokens."""
    logp, _, adv, mask = _loss_inputs()
    loss, st = policy_loss(logp, logp.detach(), adv, mask, .2, .2, "token_mean")
    loss.backward()
    assert torch.allclose(logp.grad, -adv[:, None] * mask / 5)
    assert st["clip_low_frac"] == st["clip_high_frac"] == 0 and st["ratio_mean"] == 1


def test_policy_loss_kl_and_entropy_terms():
    logp = torch.tensor([[-1., -2.]])
    ref = torch.tensor([[-2., -2.]])
    mask = torch.ones(1, 2)
    assert torch.allclose(rlvr.k3_kl(logp, ref), torch.tensor([[math.exp(-1), 0.]]))
    base, _ = policy_loss(logp, logp, torch.tensor([0.]), mask)
    kl, st = policy_loss(logp, logp, torch.tensor([0.]), mask, ref_logp=ref, kl_coef=0.5)
    assert kl.item() - base.item() == pytest.approx(0.5 * math.exp(-1) / 2)
    assert st["kl"] == pytest.approx(math.exp(-1) / 2)
    ent, _ = policy_loss(logp, logp, torch.tensor([0.]), mask,
                         entropy=torch.tensor([[1., 3.]]), entropy_coef=0.1)
    assert ent.item() == pytest.approx(-0.1 * 2)


def test_policy_loss_micro_batches_with_global_total_sum_to_full_batch():
    logp, old, adv, mask = _loss_inputs()
    for agg, total in (("token_mean", 5), ("seq_mean", 2), ("constant", 2)):
        full, _ = policy_loss(logp, old, adv, mask, agg=agg, constant_len=3)
        parts = sum(policy_loss(logp[i:i + 1], old[i:i + 1], adv[i:i + 1], mask[i:i + 1],
                                agg=agg, total=total, constant_len=3)[0] for i in range(2))
        assert parts.item() == pytest.approx(full.item()), agg


# ---------------------------------------------------------------------------------------------
# update_policy on a micro model
# ---------------------------------------------------------------------------------------------
def _experiences(model, tok, seed=0):
    """Two rollouts with different prompt lengths, random advantages."""
    out = []
    for k, prompts in enumerate((["ab", "cd"], ["a longer prompt", "x"])):
        ro = M.sample(model, tok, prompts, n=3, max_new_tokens=6, seed=seed + k)
        adv = torch.randn(len(ro), generator=torch.Generator().manual_seed(seed + k))
        out.append(Experience.from_rollout(ro, adv))
    return out


def _step(path, exps, **pg):
    """One update from a fresh copy of the micro model with SGD; returns the new weights."""
    model, _ = M.load_policy(path, device="cpu")
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    stats = update_policy(model, opt, copy.deepcopy(exps), PGConfig(bf16=False, max_grad_norm=0,
                                                                     **pg))
    return torch.cat([p.detach().flatten() for p in model.parameters()]), stats


@pytest.mark.parametrize("agg", ["token_mean", "seq_mean", "constant"])
def test_update_micro_batching_equals_one_big_batch(micro_policy, agg):
    path, model, tok = micro_policy
    exps = _experiences(model, tok)
    w_big, st = _step(path, exps, loss_agg=agg, micro_batch=64, constant_len=8)
    w_small, _ = _step(path, exps, loss_agg=agg, micro_batch=1, constant_len=8)
    w0 = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert (w_big - w0).abs().max() > 1e-4  # the step did something
    assert torch.allclose(w_big, w_small, atol=1e-6), agg
    assert st["ratio_mean"] == pytest.approx(1.0) and st["clip_frac"] == 0.0
    assert st["sequences"] == 12


def test_update_constant_agg_without_length_uses_the_widest_response(micro_policy):
    """loss_agg=constant, constant_len 0: L is the widest response of the whole batch, so
    micro-batching (which trims each micro-batch to its own widest row) changes nothing."""
    path, model, tok = micro_policy
    ro = M.sample(model, tok, ["# deduction\nabc", "# abduction\nxy"], n=6, max_new_tokens=30,
                  seed=0)
    assert len(set(ro.lengths.tolist())) > 2          # responses of many lengths
    exps = [Experience.from_rollout(ro, torch.tensor([1., -1, .5, -.5, 2, -2] * 2))]
    w_big, _ = _step(path, exps, loss_agg="constant", micro_batch=64)
    w_small, _ = _step(path, exps, loss_agg="constant", micro_batch=1)
    widest = int(ro.response_mask.sum(-1).max())
    w_fixed, _ = _step(path, exps, loss_agg="constant", micro_batch=1, constant_len=widest)
    assert torch.allclose(w_big, w_small, atol=1e-6)
    assert torch.allclose(w_small, w_fixed, atol=1e-6)


def test_update_gradient_matches_direct_loss(micro_policy):
    """One experience: update_policy's step equals SGD on policy_loss of one full forward, also
    when it skips the zero-advantage rows."""
    path, model, tok = micro_policy
    e = _experiences(model, tok)[0]
    e.advantages[[0, 3]] = 0.0  # rows update_policy skips (zero gradient), still in the mean
    w_upd, st = _step(path, [e], loss_agg="seq_mean", micro_batch=2)
    assert st["skipped_frac"] == pytest.approx(2 / 6)
    m2, _ = M.load_policy(path, device="cpu")
    opt = torch.optim.SGD(m2.parameters(), lr=0.5)
    logp, ent = M.forward_logprobs(m2, e.input_ids, e.attention_mask, e.prompt_len)
    done = e.response_mask * (e.advantages != 0).float()[:, None]  # the rows it processed
    assert st["entropy"] == pytest.approx(M.masked_mean(ent, done), rel=1e-5)
    loss, _ = policy_loss(logp, logp.detach(), e.advantages, e.response_mask, agg="seq_mean")
    loss.backward()
    opt.step()
    w_direct = torch.cat([p.detach().flatten() for p in m2.parameters()])
    assert torch.allclose(w_upd, w_direct, atol=1e-6)


def test_update_skips_a_step_whose_gradient_is_not_finite(micro_policy):
    """A NaN gradient (on CUDA, cuDNN attention once produced one) must not reach the weights:
    that optimizer step is skipped and counted; the other steps of the update still happen."""
    path, model, tok = micro_policy
    exps = _experiences(model, tok)
    w0 = torch.cat([p.detach().flatten() for p in model.parameters()])
    bad = copy.deepcopy(exps)
    bad[0].advantages[0] = float("nan")  # → NaN loss → NaN gradient in every minibatch
    w, st = _step(path, bad, micro_batch=4)
    assert torch.equal(w, w0) and st["nonfinite_grad_steps"] == 1
    assert st["optimizer_steps"] == 0 and math.isnan(st["grad_norm"])
    w, st = _step(path, bad, minibatches=2, micro_batch=4)  # row 0 lands in one of the two
    assert st["nonfinite_grad_steps"] == 1 and st["optimizer_steps"] == 1
    assert torch.isfinite(w).all() and not torch.equal(w, w0)
    _, st = _step(path, exps, micro_batch=4)
    assert st["nonfinite_grad_steps"] == 0 and st["optimizer_steps"] == 1


def test_update_several_minibatches_recomputes_old_logp(micro_policy):
    path, model, tok = micro_policy
    exps = _experiences(model, tok)
    _, st = _step(path, exps, minibatches=2, inner_epochs=2, micro_batch=4)
    assert st["optimizer_steps"] == 4
    # fp32: the recomputed old log-probs equal the sampler's up to float noise
    assert st["logp_mismatch_max"] < 1e-4
    assert st["ratio_mean"] != 1.0  # later steps see a changed policy


def test_update_with_kl_to_reference(micro_policy):
    path, model, tok = micro_policy
    exps = _experiences(model, tok)
    ref, _ = M.load_policy(path, device="cpu")
    with pytest.raises(ValueError, match="ref_model"):
        _step(path, exps, kl_coef=0.1)
    m2, _ = M.load_policy(path, device="cpu")
    st = update_policy(m2, torch.optim.SGD(m2.parameters(), lr=0.5), copy.deepcopy(exps),
                       PGConfig(bf16=False, kl_coef=0.1, inner_epochs=2), ref_model=ref)
    assert st["kl"] > 0  # the second pass sees a policy that moved away from the reference


def test_experience_select_trims_padding_without_changing_logprobs(micro_policy):
    _, model, tok = micro_policy
    e = _experiences(model, tok)[1]
    idx = torch.tensor([3, 5])  # the short prompt "x": most prompt columns are padding
    sub = e.select(idx)
    assert sub.input_ids.shape[1] < e.input_ids.shape[1]
    with torch.no_grad():
        lp, _ = M.forward_logprobs(model, sub.input_ids, sub.attention_mask, sub.prompt_len)
    T = sub.response_mask.shape[1]
    assert torch.allclose(lp * sub.response_mask, e.old_logp[idx][:, :T], atol=1e-4)


def test_update_rejects_bad_config(micro_policy):
    _, model, tok = micro_policy
    with pytest.raises(SystemExit, match="--loss-agg"):
        update_policy(model, None, [], PGConfig(loss_agg="mean"))


# ---------------------------------------------------------------------------------------------
# it learns: a micro model learns to start its answer with a digit
# ---------------------------------------------------------------------------------------------
def test_grpo_learns_trivial_verifiable_task(micro_policy):
    path, _, _ = micro_policy
    M.seed_everything(0)
    model, tok = M.load_policy(path, device="cpu")
    cfg = rlvr.Config(group_size=8, max_new_tokens=3, lr=1e-2, bf16=False, warmup_steps=1)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    prompts = [f"Problem: {i}+{i}\nSolution:" for i in range(8)]
    reward = lambda text, gold: float(text[:1].isdigit())  # noqa: E731
    history = []
    for _ in range(30):
        m, _, _ = rlvr.grpo_step(model, tok, opt, prompts, [None] * 8, reward, cfg)
        history.append(m["reward_mean"])
    assert sum(history[:3]) / 3 < 0.35
    assert sum(history[-3:]) / 3 > 0.8, history


def test_grpo_step_logs_entropy_of_all_responses(micro_policy):
    """Skipped (zero-advantage) and trained rows together: the token-mean entropy of the whole
    rollout under the policy that sampled it (lr 0 keeps the policy fixed to check it)."""
    path, _, _ = micro_policy
    M.seed_everything(1)
    model, tok = M.load_policy(path, device="cpu")
    cfg = rlvr.Config(group_size=4, max_new_tokens=5, bf16=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    m, ro, r = rlvr.grpo_step(model, tok, opt, ["ab", "cd", "ef"], [0, 1, 2],
                              lambda text, gold: float(text[:1] < "a"), cfg)
    assert 0 < m["skipped_frac"] < 1  # both kinds of rows are present
    with torch.no_grad():
        _, ent = M.forward_logprobs(model, ro.input_ids, ro.attention_mask, ro.prompt_len,
                                    cfg.temperature)
    assert m["entropy"] == pytest.approx(M.masked_mean(ent, ro.response_mask), rel=1e-4)


# ---------------------------------------------------------------------------------------------
# the loop: run folder, metrics, checkpoints and exact resume
# ---------------------------------------------------------------------------------------------
def _fake_reward(text, gold, format_reward=0.0, style="toy"):
    return float(str(gold)[-1:] in text)


def _run(tmp, path, steps, resume=False, extra=()):
    cfg = rlvr.parse_args(["--model", path, "--out", str(tmp), "--steps", str(steps),
                           "--prompts-per-step", "2", "--group-size", "4",
                           "--max-new-tokens", "6", "--eval-problems", "6",
                           "--eval-every", "100", "--save-every", "2", "--sample-every", "1",
                           "--train-problems", "20", "--lr", "1e-2", "--no-bf16",
                           "--threads", "0"]
                          + (["--resume"] if resume else []) + list(extra))
    return rlvr.main(cfg)


def _raw(folder):
    return [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]


def _metrics(folder):  # without the wall-clock timings and the process's memory
    return [{k: v for k, v in r.items() if not k.startswith(("time_", "mem/"))}
            for r in _raw(folder)]


def test_resume_without_checkpoint_starts_over(micro_policy, tmp_path, monkeypatch):
    """An attempt killed before its first checkpoint leaves only logs: a plain run refuses the
    folder, and --resume starts over without appending to them."""
    monkeypatch.setattr(rlvr, "math_reward", _fake_reward)
    path, _, _ = micro_policy
    a, b = tmp_path / "a", tmp_path / "b"
    _run(a, path, 2)
    _run(b, path, 1, extra=["--save-every", "100"])  # checkpoints at the end only ...
    import shutil
    shutil.rmtree(b / "checkpoints")  # ... killed before saving anything
    with pytest.raises(SystemExit, match="already holds a run"):
        _run(b, path, 2)
    _run(b, path, 2, resume=True)
    assert [r["step"] for r in _metrics(b)] == [0, 1, 2]
    assert _metrics(a) == _metrics(b)


def test_run_checkpoints_and_resume_without_duplicates(micro_policy, tmp_path, monkeypatch):
    monkeypatch.setattr(rlvr, "math_reward", _fake_reward)  # loop mechanics, not the verifier
    path, _, _ = micro_policy
    a, b = tmp_path / "a", tmp_path / "b"
    _run(a, path, 4)
    _run(b, path, 3)  # checkpoints at steps 2 and 3 ...
    import shutil
    shutil.rmtree(b / "checkpoints" / "step_000003")  # ... but "crashed" before saving step 3
    with pytest.raises(SystemExit, match="--resume"):
        _run(b, path, 4)
    _run(b, path, 4, resume=True)
    ma, mb = _metrics(a), _metrics(b)
    assert [r["step"] for r in mb] == [0, 1, 2, 3, 4]
    assert ma == mb  # the resumed run is the uninterrupted run
    assert {"reward_mean", "accuracy", "entropy", "response_len_mean", "response_len_max",
            "clipped_frac", "kl", "clip_frac", "grad_norm", "lr",
            "time_generate", "mem/rss_peak_gib"} <= set(_raw(b)[1])
    assert all(0 < r["mem/rss_peak_gib"] < 64 for r in _raw(b)[1:])  # GiB, not KiB or bytes
    assert "eval/accuracy" in mb[0] and "eval/accuracy_se" in mb[4]
    assert 0 <= mb[1]["kl"] < 1e-4  # KL(policy || base) measured at step 1, before any update
    cfg = json.loads((b / "config.json").read_text())
    assert cfg["model"] == path and cfg["script"] == "rlvr.py"
    assert sorted(p.name for p in (b / "checkpoints").iterdir()) == ["step_000002",
                                                                     "step_000004"]
    samples = [json.loads(x) for x in (b / "samples.jsonl").read_text().splitlines()]
    assert [s["step"] for s in samples] == sorted(s["step"] for s in samples)


def test_grad_checkpointing_changes_memory_not_results(micro_policy, tmp_path, monkeypatch):
    """--grad-checkpointing turns on activation recomputation; on CPU the recomputed forward is
    the same arithmetic, so the run logs exactly the same numbers."""
    monkeypatch.setattr(rlvr, "math_reward", _fake_reward)
    path, _, _ = micro_policy
    loaded = []
    real = rlvr.M.load_policy
    monkeypatch.setattr(rlvr.M, "load_policy",
                        lambda *a, **k: loaded.append(real(*a, **k)) or loaded[-1])
    _run(tmp_path / "a", path, 2)
    _run(tmp_path / "b", path, 2, extra=["--grad-checkpointing"])
    on = [m.is_activation_checkpointing if hasattr(m, "is_activation_checkpointing")
          else m.is_gradient_checkpointing for m, _ in loaded]  # transformers 5.24 / older 5.x
    assert on == [False, False, True, False]  # a's policy and reference, b's policy and reference
    assert _metrics(tmp_path / "a") == _metrics(tmp_path / "b")


def test_out_of_gpu_memory_exits_naming_the_flags(micro_policy, tmp_path, monkeypatch):
    path, _, _ = micro_policy

    def oom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.27 GiB\nmore")

    monkeypatch.setattr(rlvr, "math_reward", _fake_reward)
    monkeypatch.setattr(rlvr, "update_policy", oom)
    with pytest.raises(SystemExit) as e:
        _run(tmp_path, path, 2)
    msg = str(e.value)
    assert "out of GPU memory (CUDA out of memory. Tried to allocate 9.27 GiB)" in msg
    assert "--micro-batch" in msg and "--grad-checkpointing" in msg and "more" not in msg
    assert [r["step"] for r in _raw(tmp_path)] == [0]  # the base evaluation was logged


def test_cli_rejects_bad_flags():
    with pytest.raises(SystemExit, match="--loss-agg"):
        rlvr.parse_args(["--loss-agg", "sum"])
    with pytest.raises(SystemExit, match="--scale-rewards"):
        rlvr.parse_args(["--scale-rewards", "std"])
    with pytest.raises(SystemExit, match="--group-size"):
        rlvr.parse_args(["--group-size", "1"])


def test_math_reward_uses_the_verifier():
    assert rlvr.math_reward(" 2+2=4. <answer>4</answer>", 4) == 1.0
    assert rlvr.math_reward(" 2+2=5. <answer>5</answer>", 4) == 0.0
    assert rlvr.math_reward(" 2+2=5. <answer>5</answer>", 4, format_reward=0.1) == 0.1
    assert rlvr.math_reward(" 2+2=5.", 4, format_reward=0.1) == 0.0
    toy = lambda t: rlvr.math_reward(t, 11, 0.1, "toy")  # noqa: E731
    assert toy(" 4*2=8. 3+8=12. <answer>12</answer>") == 0.1
    assert toy(" <answer>12</answer>") == 0.1
    assert toy(" 7-=11. <answer>12</answer>") == 0.0 and toy(" 1* 2=9. <answer>9</answer>") == 0.0
    assert toy(" 4*2=8. 3+8=11. <answer>11</answer>") == 1.0
