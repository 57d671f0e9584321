"""rlvr.py: advantages, the clipped loss and its aggregations (hand-computed), the one on-policy
update (micro-batching, the gradient of the loss, skipped rows, KL and entropy terms, non-finite
steps), the 0/1 math reward, learning a trivial verifiable task, and the run loop: run folder,
checkpoints, exact resume, presets, flags, out-of-memory advice."""
import copy
import json
import math
import time

import pytest
import torch

import model as M
import rlvr
import tasks as T
from rlvr import PG, Experience, group_advantages, policy_loss, update_policy


def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


# ---------------------------------------------------------------------------------------------
# prompts (pretrain.py renders the toy base's documents with these; the format must not drift)
# ---------------------------------------------------------------------------------------------
def test_math_prompt_and_stop_toy_format():
    assert T.math_prompt("3+4*2", "toy") == "Problem: 3+4*2\nSolution:"
    assert T.stop_strings("solve", "math", "toy") == ["</answer>"]
    assert T.stop_strings("solve", "math", "azr") == ["</answer>"]
    p = T.math_prompt("What is 2+2?", "azr")
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
    # the docstring's example
    assert torch.allclose(group_advantages(torch.tensor([1., 0, 0, 0]), 4, "group"),
                          torch.tensor([1.5, -.5, -.5, -.5]), atol=1e-3)


def test_zero_variance_groups_get_zero_advantage():
    r = torch.tensor([1., 1., 0., 0., 0., 1.])
    for scale in ("group", "batch", "none"):
        a = group_advantages(r, 2, scale)
        assert torch.equal(a[:4], torch.zeros(4)), scale
        assert (a[4:] != 0).all(), scale


def test_group_advantages_bad_input():
    with pytest.raises(ValueError, match="groups of 3"):
        group_advantages(torch.zeros(4), 3)
    with pytest.raises(ValueError, match="scale"):
        group_advantages(torch.zeros(4), 2, "mean")
    with pytest.raises(ValueError, match="group_size >= 2"):
        group_advantages(torch.zeros(4), 1, "group")
    with pytest.raises(ValueError, match="at least 2"):
        group_advantages(torch.zeros(1), 1, "batch")
    assert torch.equal(group_advantages(torch.tensor([1., 0.]), 1, "none"), torch.zeros(2))


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
    tok, st = policy_loss(logp, old, adv, mask, "token_mean")
    assert tok.item() == pytest.approx((-2.7 + 2.1) / 5)
    seq, _ = policy_loss(logp, old, adv, mask, "seq_mean")
    assert seq.item() == pytest.approx((-2.7 / 3 + 2.1 / 2) / 2)
    const, _ = policy_loss(logp, old, adv, mask, "constant", constant_len=4)
    assert const.item() == pytest.approx(-0.6 / (2 * 4))
    const_w, _ = policy_loss(logp, old, adv, mask, "constant")  # L = the width T = 3
    assert const_w.item() == pytest.approx(-0.6 / (2 * 3))
    # clipped: the 1.5 ratio of A>0 (high) and the 0.7 ratio of A<0 (low), of 5 tokens
    assert st["clip_frac"] == pytest.approx(2 / 5)
    assert st["tokens"] == 5 and st["kl"] == 0.0
    # DAPO clip-higher: the 1.5 ratio is now clipped at 1.28
    hi, st = policy_loss(logp, old, adv, mask, "token_mean", clip_high=.28)
    assert hi.item() == pytest.approx((-1 - 1.28 - .5 + 2.1) / 5)
    assert st["clip_frac"] == pytest.approx(2 / 5)
    # a wider low clip: 0.7 is inside [0.6, ..], so row 1's first token is -(-.7) = .7
    lo, st = policy_loss(logp, old, adv, mask, "token_mean", clip_low=.4)
    assert lo.item() == pytest.approx((-2.7 + .7 + 1.3) / 5)
    assert st["clip_frac"] == pytest.approx(1 / 5)


def test_policy_loss_gradient_is_zero_where_clipped_and_off_mask():
    logp, old, adv, mask = _loss_inputs()
    loss, _ = policy_loss(logp, old, adv, mask, "token_mean")
    loss.backward()
    # d/dlogp of -rho*A = -rho*A ; clipped and masked tokens get 0
    expect = torch.tensor([[-1., 0., -.5], [0., 1.3, 0.]]) / 5
    assert torch.allclose(logp.grad, expect, atol=1e-6)


def test_policy_loss_on_policy_is_plain_policy_gradient():
    """ratio = 1 (old = logp.detach()): clipping is inactive, gradient = -A * mask / tokens."""
    logp, _, adv, mask = _loss_inputs()
    loss, st = policy_loss(logp, logp.detach(), adv, mask, "token_mean")
    loss.backward()
    assert torch.allclose(logp.grad, -adv[:, None] * mask / 5)
    assert st["clip_frac"] == 0


def test_policy_loss_kl_and_entropy_terms():
    logp = torch.tensor([[-1., -2.]])
    ref = torch.tensor([[-2., -2.]])
    mask = torch.ones(1, 2)
    assert torch.allclose(rlvr.k3_kl(logp, ref), torch.tensor([[math.exp(-1), 0.]]))
    assert torch.all(rlvr.k3_kl(torch.randn(3, 4), torch.randn(3, 4)) >= 0)
    base, _ = policy_loss(logp, logp, torch.tensor([0.]), mask)
    kl, st = policy_loss(logp, logp, torch.tensor([0.]), mask, ref_logp=ref, kl_coef=0.5)
    assert kl.item() - base.item() == pytest.approx(0.5 * math.exp(-1) / 2)
    assert st["kl"] == pytest.approx(math.exp(-1) / 2)
    ent, _ = policy_loss(logp, logp, torch.tensor([0.]), mask,
                         entropy=torch.tensor([[1., 3.]]), entropy_coef=0.1)
    assert ent.item() == pytest.approx(-0.1 * 2)
    # a term without its coefficient (or a coefficient without its input) adds nothing
    for kw in (dict(ref_logp=ref), dict(kl_coef=0.5), dict(entropy=torch.tensor([[1., 3.]]))):
        loss, st = policy_loss(logp, logp, torch.tensor([0.]), mask, **kw)
        assert loss.item() == 0.0 and st["kl"] == 0.0, kw


def test_policy_loss_micro_batches_with_global_total_sum_to_full_batch():
    logp, old, adv, mask = _loss_inputs()
    for agg, total in (("token_mean", 5), ("seq_mean", 2), ("constant", 2)):
        full, _ = policy_loss(logp, old, adv, mask, agg=agg, constant_len=3)
        parts = sum(policy_loss(logp[i:i + 1], old[i:i + 1], adv[i:i + 1], mask[i:i + 1],
                                agg=agg, total=total, constant_len=3)[0] for i in range(2))
        assert parts.item() == pytest.approx(full.item()), agg


def test_policy_loss_rejects_bad_agg():
    logp, old, adv, mask = _loss_inputs()
    with pytest.raises(ValueError, match="agg 'mean'"):
        policy_loss(logp, old, adv, mask, "mean")


def test_check_pg_names_the_flag():
    with pytest.raises(SystemExit, match="--loss-agg 'mean'"):
        rlvr.check_pg(PG(loss_agg="mean"))
    with pytest.raises(SystemExit, match="--loss-agg None"):  # no preset filled it
        rlvr.check_pg(PG())
    with pytest.raises(SystemExit, match="--temperature"):
        rlvr.check_pg(PG(loss_agg="token_mean", temperature=0.0))
    for bad in ("micro_batch", "sample_batch", "save_every"):
        with pytest.raises(SystemExit, match="--micro-batch, --sample-batch and --save-every"):
            rlvr.check_pg(PG(loss_agg="token_mean", **{bad: 0}))
    rlvr.check_pg(PG(loss_agg="constant"))


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


def _pg(**kw):
    return PG(**{"bf16": False, "max_grad_norm": 0, "loss_agg": "token_mean", **kw})


def _step(path, exps, constant_len=0, ref_model=None, opt="sgd", **pg):
    """One update from a fresh copy of the micro model; returns (new weights, stats, optimizer)."""
    model, _ = M.load_policy(path, device="cpu")
    opt = torch.optim.SGD(model.parameters(), lr=0.5) if opt == "sgd" else \
        torch.optim.AdamW(model.parameters(), lr=0.5)
    stats = update_policy(model, opt, copy.deepcopy(exps), _pg(**pg), ref_model,
                          constant_len=constant_len)
    return _weights(model), stats, opt


@pytest.mark.parametrize("agg", ["token_mean", "seq_mean", "constant"])
def test_update_micro_batching_equals_one_big_batch(micro_policy, agg):
    path, model, tok = micro_policy
    exps = _experiences(model, tok)
    w_big, st, _ = _step(path, exps, constant_len=8, loss_agg=agg, micro_batch=64)
    w_small, st_small, _ = _step(path, exps, constant_len=8, loss_agg=agg, micro_batch=1)
    w0 = _weights(model)
    assert (w_big - w0).abs().max() > 1e-4  # the step did something
    assert torch.allclose(w_big, w_small, atol=1e-6), agg
    assert st["loss"] == pytest.approx(st_small["loss"], abs=1e-6)
    assert st["grad_norm"] == pytest.approx(st_small["grad_norm"], rel=1e-4)
    assert st["clip_frac"] == 0.0 and st["kl"] == 0.0  # on policy: the ratio is exactly 1
    assert st["sequences"] == 12 and st["skipped_frac"] == 0.0
    assert st["tokens"] == sum(float(e.response_mask.sum()) for e in exps)
    assert st["nonfinite_grad_steps"] == 0
    # fp32: the training forward recomputes the sampler's log-probs up to float noise
    assert 0 <= st["logp_mismatch_max"] < 1e-4


def test_update_constant_agg_without_length_uses_the_widest_response(micro_policy):
    """loss_agg=constant, constant_len 0: L is the widest response of the whole batch, so
    micro-batching (which trims each micro-batch to its own widest row) changes nothing."""
    path, model, tok = micro_policy
    ro = M.sample(model, tok, ["# deduction\nabc", "# abduction\nxy"], n=6, max_new_tokens=30,
                  seed=0)
    assert len(set(ro.lengths.tolist())) > 2          # responses of many lengths
    exps = [Experience.from_rollout(ro, torch.tensor([1., -1, .5, -.5, 2, -2] * 2))]
    w_big, _, _ = _step(path, exps, loss_agg="constant", micro_batch=64)
    w_small, _, _ = _step(path, exps, loss_agg="constant", micro_batch=1)
    widest = int(ro.response_mask.sum(-1).max())
    w_fixed, _, _ = _step(path, exps, constant_len=widest, loss_agg="constant", micro_batch=1)
    w_other, _, _ = _step(path, exps, constant_len=widest + 10, loss_agg="constant")
    assert torch.allclose(w_big, w_small, atol=1e-6)
    assert torch.allclose(w_small, w_fixed, atol=1e-6)
    assert not torch.allclose(w_fixed, w_other, atol=1e-6)  # the length is really used


def test_update_gradient_matches_direct_loss(micro_policy):
    """One experience: update_policy's step equals SGD on policy_loss of one full forward, also
    when it skips the zero-advantage rows (which still count in the denominator)."""
    path, model, tok = micro_policy
    e = _experiences(model, tok)[0]
    e.advantages[[0, 3]] = 0.0  # rows update_policy skips (zero gradient), still in the mean
    w_upd, st, _ = _step(path, [e], loss_agg="seq_mean", micro_batch=2)
    assert st["skipped_frac"] == pytest.approx(2 / 6)
    assert st["sequences"] == 6 and st["tokens"] == float(e.response_mask.sum())
    m2, _ = M.load_policy(path, device="cpu")
    opt = torch.optim.SGD(m2.parameters(), lr=0.5)
    logp, _ = M.forward_logprobs(m2, e.input_ids, e.attention_mask, e.prompt_len)
    loss, _ = policy_loss(logp, logp.detach(), e.advantages, e.response_mask, agg="seq_mean")
    loss.backward()
    gnorm = float(torch.cat([p.grad.flatten() for p in m2.parameters()]).norm())
    opt.step()
    assert torch.allclose(w_upd, _weights(m2), atol=1e-6)
    assert st["loss"] == pytest.approx(loss.item(), abs=1e-6)
    assert st["grad_norm"] == pytest.approx(gnorm, rel=1e-4)


def test_update_clips_the_gradient_norm(micro_policy):
    path, model, tok = micro_policy
    exps = _experiences(model, tok)
    w0 = _weights(model)
    w_free, st, _ = _step(path, exps, max_grad_norm=0)
    w_clip, st_clip, _ = _step(path, exps, max_grad_norm=st["grad_norm"] / 4)
    assert st_clip["grad_norm"] == pytest.approx(st["grad_norm"], rel=1e-5)  # pre-clip norm
    # SGD: the clipped step is the unclipped one scaled by 1/4
    assert torch.allclose(w_clip - w0, (w_free - w0) / 4, atol=1e-6)


def test_update_all_zero_advantages_changes_nothing(micro_policy):
    """Every row skipped, but counted: no gradient, no optimizer step."""
    path, model, tok = micro_policy
    exps = _experiences(model, tok)
    for e in exps:
        e.advantages.zero_()
    w, st, opt = _step(path, exps, opt="adamw")
    assert torch.equal(w, _weights(model)) and len(opt.state) == 0
    assert st["skipped_frac"] == 1.0 and st["sequences"] == 12 and st["grad_norm"] == 0.0
    assert st["loss"] == 0.0 and st["nonfinite_grad_steps"] == 0
    assert update_policy(model, opt, [], _pg()) == {}  # nothing to update


def test_update_skips_a_step_whose_gradient_is_not_finite(micro_policy):
    """A NaN gradient (on CUDA, cuDNN attention once produced one) must not reach the weights:
    the optimizer step is skipped and counted."""
    path, model, tok = micro_policy
    exps = _experiences(model, tok)
    w0 = _weights(model)
    bad = copy.deepcopy(exps)
    bad[0].advantages[0] = float("nan")  # → NaN loss → NaN gradient
    w, st, opt = _step(path, bad, opt="adamw", micro_batch=4)
    assert torch.equal(w, w0) and st["nonfinite_grad_steps"] == 1
    assert math.isnan(st["grad_norm"]) and len(opt.state) == 0  # AdamW never stepped
    w, st, opt = _step(path, exps, opt="adamw", micro_batch=4)
    assert st["nonfinite_grad_steps"] == 0 and math.isfinite(st["grad_norm"])
    assert torch.isfinite(w).all() and not torch.equal(w, w0) and len(opt.state) > 0


def _perturbed_copy(path, scale=0.05):
    ref, _ = M.load_policy(path, device="cpu")
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return ref


def test_update_with_kl_to_a_reference(micro_policy):
    path, model, tok = micro_policy
    exps = _experiences(model, tok)
    same, _ = M.load_policy(path, device="cpu")
    _, st, _ = _step(path, exps, ref_model=same, kl_coef=0.1)
    assert 0 <= st["kl"] < 1e-6  # KL(policy || itself) before the step
    ref = _perturbed_copy(path)
    _, st, _ = _step(path, exps, ref_model=ref, kl_coef=0.1)
    # the logged KL is the token mean of k3 over every response token, against the reference
    lp, ref_lp, masks = [], [], []
    with torch.no_grad():
        for e in exps:
            lp.append(M.forward_logprobs(model, e.input_ids, e.attention_mask, e.prompt_len)[0])
            ref_lp.append(M.forward_logprobs(ref, e.input_ids, e.attention_mask, e.prompt_len)[0])
            masks.append(e.response_mask)
    expect = sum(float((rlvr.k3_kl(a, b) * m).sum()) for a, b, m in zip(lp, ref_lp, masks)) / \
        sum(float(m.sum()) for m in masks)
    assert st["kl"] > 1e-4 and st["kl"] == pytest.approx(expect, rel=1e-4)


@pytest.mark.parametrize("term", ["kl", "entropy"])
def test_update_with_kl_or_entropy_matches_direct_loss_and_keeps_zero_rows(micro_policy, term):
    """With a KL or entropy term a zero-advantage row has a gradient, so it is not skipped; the
    step still equals SGD on the direct loss (the entropy with its gradient)."""
    path, model, tok = micro_policy
    e = _experiences(model, tok)[0]
    e.advantages[[0, 3]] = 0.0
    ref = _perturbed_copy(path) if term == "kl" else None
    kw = dict(kl_coef=0.5) if term == "kl" else dict(entropy_coef=0.1)
    w_upd, st, _ = _step(path, [e], ref_model=ref, loss_agg="seq_mean", micro_batch=2, **kw)
    assert st["skipped_frac"] == 0.0
    m2, _ = M.load_policy(path, device="cpu")
    opt = torch.optim.SGD(m2.parameters(), lr=0.5)
    logp, ent = M.forward_logprobs(m2, e.input_ids, e.attention_mask, e.prompt_len,
                                   entropy_grad=True)
    ref_logp = None
    if ref is not None:
        with torch.no_grad():
            ref_logp = M.forward_logprobs(ref, e.input_ids, e.attention_mask, e.prompt_len)[0]
    loss, _ = policy_loss(logp, logp.detach(), e.advantages, e.response_mask, agg="seq_mean",
                          ref_logp=ref_logp, entropy=ent, **kw)
    loss.backward()
    opt.step()
    assert torch.allclose(w_upd, _weights(m2), atol=1e-6)
    # and the term matters: without it the step is another one
    w_plain, _, _ = _step(path, [e], loss_agg="seq_mean", micro_batch=2)
    assert not torch.allclose(w_upd, w_plain, atol=1e-5)


def test_update_with_kl_but_no_reference_names_ref_model(micro_policy):
    path, model, tok = micro_policy
    with pytest.raises(SystemExit, match="ref_model"):
        _step(path, _experiences(model, tok), kl_coef=0.1)


def test_experience_select_trims_padding_without_changing_logprobs(micro_policy):
    _, model, tok = micro_policy
    e = _experiences(model, tok)[1]
    idx = torch.tensor([3, 5])  # the short prompt "x": most prompt columns are padding
    sub = e.select(idx)
    assert sub.input_ids.shape[1] < e.input_ids.shape[1]
    assert sub.prompt_len < e.prompt_len and len(sub) == 2
    assert torch.equal(sub.advantages, e.advantages[idx])
    with torch.no_grad():
        lp, _ = M.forward_logprobs(model, sub.input_ids, sub.attention_mask, sub.prompt_len)
    T_ = sub.response_mask.shape[1]
    assert T_ == int(e.response_mask[idx].sum(-1).max())
    assert torch.allclose(lp * sub.response_mask, e.old_logp[idx][:, :T_], atol=1e-4)


# ---------------------------------------------------------------------------------------------
# the reward and the GRPO step
# ---------------------------------------------------------------------------------------------
def _cfg(**kw):
    return rlvr.Config(**{"bf16": False, "loss_agg": "token_mean", "lr": 1e-2,
                          "max_new_tokens": 6, **kw})


def test_reward_is_one_exactly_when_math_verify_accepts(micro_policy, monkeypatch):
    """The sampled texts are replaced by chosen ones: 1 for a right answer (also one math-verify
    must decide, 8/2), 0 for a wrong or missing one — no format reward."""
    path, _, _ = micro_policy
    model, tok = M.load_policy(path, device="cpu")
    texts = [" 2+2=4. <answer>4</answer>", " 2+2=5. <answer>5</answer>", " 2+2=4.",
             " <answer>\\frac{8}{2}</answer>"]
    real = M.sample

    def chosen_texts(*a, **k):
        ro = real(*a, **k)
        ro.texts = list(texts)
        return ro

    monkeypatch.setattr(M, "sample", chosen_texts)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    m, ro, rewards = rlvr.grpo_step(model, tok, opt, ["Problem: 2+2\nSolution:"], [4],
                                    _cfg(group_size=4), "toy")
    assert rewards.tolist() == [1.0, 0.0, 0.0, 1.0]
    assert rewards.tolist() == [float(x) for x in
                                T.score("math", [{"answer": 4}] * 4, texts, "toy")[0]]
    assert m["reward_mean"] == 0.5 and m["zero_std_frac"] == 0.0
    assert m["update/skipped_frac"] == 0.0  # all four answers get a non-zero advantage


def test_grpo_learns_trivial_verifiable_task(micro_policy, monkeypatch):
    """A micro model learns to start its answer with a digit (the reward, patched)."""
    path, _, _ = micro_policy
    monkeypatch.setattr(rlvr.T, "score", lambda kind, tasks, texts, style, timeout=None: (
        [t[:1].isdigit() for t in texts], [True] * len(texts)))
    M.seed_everything(0)
    model, tok = M.load_policy(path, device="cpu")
    cfg = _cfg(group_size=8, max_new_tokens=3, warmup_steps=1)
    opt = rlvr.make_optimizer(model, cfg.lr)
    prompts = [f"Problem: {i}+{i}\nSolution:" for i in range(8)]
    history = []
    for _ in range(30):
        m, _, _ = rlvr.grpo_step(model, tok, opt, prompts, [None] * 8, cfg, "toy")
        history.append(m["reward_mean"])
    assert sum(history[:3]) / 3 < 0.35
    assert sum(history[-3:]) / 3 > 0.8, history


def test_grpo_step_logs_entropy_of_all_responses(micro_policy, monkeypatch):
    """Skipped (zero-advantage) and trained rows together: the token-mean entropy of the whole
    rollout under the policy that sampled it (lr 0 keeps the policy fixed to check it)."""
    path, _, _ = micro_policy
    monkeypatch.setattr(rlvr.T, "score", lambda kind, tasks, texts, style, timeout=None: (
        [t[:1] < "a" for t in texts], [True] * len(texts)))
    M.seed_everything(1)
    model, tok = M.load_policy(path, device="cpu")
    cfg = _cfg(group_size=4, max_new_tokens=5)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    m, ro, r = rlvr.grpo_step(model, tok, opt, ["ab", "cd", "ef"], [0, 1, 2], cfg, "toy")
    assert 0 < m["update/skipped_frac"] < 1  # both kinds of rows are present
    assert m["zero_std_frac"] == pytest.approx(m["update/skipped_frac"])
    with torch.no_grad():
        _, ent = M.forward_logprobs(model, ro.input_ids, ro.attention_mask, ro.prompt_len,
                                    cfg.temperature)
    assert m["entropy"] == pytest.approx(M.masked_mean(ent, ro.response_mask), rel=1e-4)
    assert m["reward_mean"] == pytest.approx(float(r.mean()))
    assert m["response_len_mean"] == pytest.approx(float(ro.lengths.float().mean()))
    assert m["response_len_max"] == int(ro.lengths.max()) <= 5
    assert m["clipped_frac"] == pytest.approx(float((~ro.finished).float().mean()))


def test_batch_indices_are_seeded_epochs():
    n, k = 5, 3
    first = rlvr.batch_indices(n, 1, k, seed=0) + rlvr.batch_indices(n, 2, k, seed=0)
    assert sorted(first[:5]) == list(range(5))        # epoch 0: each problem once
    assert rlvr.batch_indices(n, 2, k, seed=0) == first[3:]  # a step depends on (seed, step) only
    many = [i for s in range(1, 11) for i in rlvr.batch_indices(n, s, k, seed=0)]
    assert all(sorted(many[e * 5:(e + 1) * 5]) == list(range(5)) for e in range(6))
    assert len({tuple(many[e * 5:(e + 1) * 5]) for e in range(6)}) > 1  # reshuffled per epoch
    assert [i for s in range(1, 11) for i in rlvr.batch_indices(n, s, k, seed=1)] != many


# ---------------------------------------------------------------------------------------------
# finish: the paired held-out gain from eval.jsonl
# ---------------------------------------------------------------------------------------------
def test_finish_summary_hand_values(tmp_path):
    run = M.RunDir(str(tmp_path / "run"))
    run.log(0, {"arith": "0100"}, "eval.jsonl")
    run.log(2, {"arith": "0000"}, "eval.jsonl")
    run.log(4, {"arith": "1110"}, "eval.jsonl")
    # d = 1, 0, 1, 0: gain .5; one cluster per problem: u = ±.125, SE sqrt(4/3 · 4/64)
    s = rlvr.finish("rlvr", run, 4, time.time(), {"arith": [0, 1, 2, 3]})
    assert s["base"] == {"arith": .25} and s["final"] == {"arith": .75} and s["steps"] == 4
    assert s["gain"] == pytest.approx(.5) and s["gain_se"] == pytest.approx(math.sqrt(1 / 12))
    assert json.loads((run.path / "summary.json").read_text()) == s
    # problems 0, 2 and 1, 3 share a program: u = ±.25, SE sqrt(2 · 2/16)
    s = rlvr.finish("rlvr", run, 4, time.time(), {"arith": [0, 1, 0, 1]})
    assert s["gain_se"] == pytest.approx(.5)
    # no base evaluation: no gain
    other = M.RunDir(str(tmp_path / "other"))
    other.log(3, {"arith": "0100"}, "eval.jsonl")
    assert set(rlvr.finish("rlvr", other, 3, time.time(), {"arith": [0] * 4})) == \
        {"steps", "minutes"}


# ---------------------------------------------------------------------------------------------
# the loop: run folder, metrics, checkpoints and exact resume
# ---------------------------------------------------------------------------------------------
def _fake_score(kind, tasks, texts, style, timeout=None):
    """The loop's mechanics, not the verifier: "right" when the text's characters and the gold's
    last digit have an even code sum (a random micro model then gets non-zero advantages)."""
    ok = [(sum(map(ord, x)) + ord(str(t["answer"])[-1:] or "0")) % 2 == 0
          for t, x in zip(tasks, texts)]
    return ok, [True] * len(ok)


def _argv(out, path, steps, resume=False, extra=()):
    return ["--model", path, "--out", str(out), "--steps", str(steps), "--prompts-per-step", "2",
            "--group-size", "4", "--max-new-tokens", "6", "--eval-n", "6", "--eval-every", "100",
            "--save-every", "2", "--lr", "1e-2", "--no-bf16", "--micro-batch", "3",
            "--sample-batch", "8"] + (["--resume"] if resume else []) + list(extra)


def _run(out, path, steps, resume=False, extra=()):
    return rlvr.main(M.parse_flags(rlvr.Config, _argv(out, path, steps, resume, extra)))


def _lines(folder, file="metrics.jsonl"):
    return [json.loads(x) for x in (folder / file).read_text().splitlines()]


def _metrics(folder):  # without the wall-clock timings and the process's memory
    return [{k: v for k, v in r.items() if not k.startswith(("time/", "mem/"))}
            for r in _lines(folder)]


def _crash_after(monkeypatch, crash_step):
    """RunDir.log raises KeyboardInterrupt right after it logs `crash_step` to metrics.jsonl (a
    crash between logging and checkpointing)."""
    real_log = M.RunDir.log

    def crashing_log(self, step, rows, file="metrics.jsonl"):
        real_log(self, step, rows, file)
        if step == crash_step and file == "metrics.jsonl":
            raise KeyboardInterrupt

    monkeypatch.setattr(M.RunDir, "log", crashing_log)
    return lambda: monkeypatch.setattr(M.RunDir, "log", real_log)


@pytest.fixture
def fake_score(monkeypatch):
    monkeypatch.setattr(rlvr.T, "score", _fake_score)


def test_two_step_run_writes_the_run_folder(micro_policy, tmp_path, fake_score):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, base, _ = micro_policy
    out = tmp_path / "run"
    summary = _run(out, path, 2)
    assert {p.name for p in out.iterdir()} >= {"config.json", "metrics.jsonl", "eval.jsonl",
                                               "samples.jsonl", "summary.json", "checkpoints"}
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"] == path and cfg["script"] == "rlvr.py" and cfg["style"] == "toy"
    assert cfg["lr"] == 1e-2 and cfg["max_new_tokens"] == 6 and cfg["group_size"] == 4
    assert cfg["loss_agg"] == rlvr.PRESETS["toy"]["loss_agg"]  # left unset: the preset's
    raw = _lines(out)
    assert [r["step"] for r in raw] == [0, 1, 2]
    assert {"reward_mean", "reward_std", "entropy", "response_len_mean", "response_len_max",
            "clipped_frac", "zero_std_frac", "update/loss", "update/grad_norm",
            "update/clip_frac", "update/kl", "update/logp_mismatch_max", "update/tokens",
            "update/sequences", "update/skipped_frac", "update/nonfinite_grad_steps", "lr",
            "time/generate", "time/score", "time/update", "mem/rss_peak_gib"} <= set(raw[1])
    assert all(0 < r["mem/rss_peak_gib"] < 64 for r in raw[1:])  # GiB, not KiB or bytes
    assert all(r["update/sequences"] == 8 for r in raw[1:])
    assert any(r["update/skipped_frac"] < 1 for r in raw[1:])  # something was trained
    assert [r["lr"] for r in raw[1:]] == [pytest.approx(2e-3), pytest.approx(4e-3)]  # warm-up 5
    for r in (raw[0], raw[2]):
        assert {"eval/accuracy", "eval/se", "eval/arith/accuracy", "eval/arith/se"} <= set(r)
    assert "eval/accuracy" not in raw[1]
    evals = _lines(out, "eval.jsonl")
    assert [e["step"] for e in evals] == [0, 2]
    assert all(set(e) == {"step", "arith"} and len(e["arith"]) == 6 for e in evals)
    assert raw[2]["eval/accuracy"] == pytest.approx(evals[1]["arith"].count("1") / 6)
    samples = _lines(out, "samples.jsonl")
    assert [s["step"] for s in samples] == [1] * 4 + [2] * 4
    assert all({"prompt", "response", "reward"} <= set(s) for s in samples)
    # summary: the paired, clustered gain between the first and the last evaluation
    held = T.make_arith(6, T.EVAL_SEED, "heldout")
    gain, se = T.paired_gain({"arith": evals[0]["arith"]}, {"arith": evals[1]["arith"]},
                             T.program_ids({"arith": ("math", held)}))
    assert json.loads((out / "summary.json").read_text()) == summary
    assert summary["steps"] == 2 and summary["gain"] == pytest.approx(gain)
    assert summary["gain_se"] == pytest.approx(se, nan_ok=True)
    assert summary["base"] == {"arith": evals[0]["arith"].count("1") / 6}
    # a Hugging Face checkpoint, different from the base after the updates
    ckpts = M.RunDir(str(out)).checkpoints()
    assert [c.name for c in ckpts] == ["step_000002"]
    loaded = AutoModelForCausalLM.from_pretrained(str(ckpts[-1]))
    AutoTokenizer.from_pretrained(str(ckpts[-1]))
    assert not torch.equal(_weights(loaded), _weights(base))
    ts = torch.load(ckpts[-1] / "trainer_state.pt", weights_only=False)
    assert ts["step"] == 2 and ts["optimizer"] is not None and "base" in ts["extra"]


def test_resume_after_a_crash_repeats_the_uninterrupted_run(micro_policy, tmp_path, fake_score,
                                                            monkeypatch):
    path, _, _ = micro_policy
    a, b = tmp_path / "a", tmp_path / "b"
    extra = ["--eval-every", "2"]
    sa = _run(a, path, 4, extra=extra)
    restore = _crash_after(monkeypatch, 3)  # checkpoint at step 2, crash after logging step 3
    with pytest.raises(KeyboardInterrupt):
        _run(b, path, 4, extra=extra)
    restore()
    assert [r["step"] for r in _lines(b)] == [0, 1, 2, 3]
    with pytest.raises(SystemExit, match="already holds a run: pass --resume"):
        _run(b, path, 4, extra=extra)                    # no silent appending
    assert [r["step"] for r in _lines(b)] == [0, 1, 2, 3]  # the refusal touched nothing
    sb = _run(b, path, 4, resume=True, extra=extra)
    ma, mb = _metrics(a), _metrics(b)
    assert [r["step"] for r in mb] == [0, 1, 2, 3, 4]
    assert ma == mb  # the resumed run is the uninterrupted run
    for f in ("samples.jsonl", "eval.jsonl"):
        assert _lines(a, f) == _lines(b, f), f
    assert {k: v for k, v in sa.items() if k != "minutes"} == \
        {k: v for k, v in sb.items() if k != "minutes"}
    assert [c.name for c in M.RunDir(str(b)).checkpoints()] == ["step_000002", "step_000004"]
    for c in M.RunDir(str(a)).checkpoints():  # the weights too
        from safetensors.torch import load_file
        wa, wb = load_file(str(c / "model.safetensors")), \
            load_file(str(b / "checkpoints" / c.name / "model.safetensors"))
        assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_resume_without_checkpoint_starts_over(micro_policy, tmp_path, fake_score, monkeypatch):
    """An attempt killed before its first checkpoint leaves only logs: a plain run refuses the
    folder, and --resume starts over without appending to them."""
    path, _, _ = micro_policy
    a, b = tmp_path / "a", tmp_path / "b"
    _run(a, path, 2)
    restore = _crash_after(monkeypatch, 1)  # before the checkpoint of step 2
    with pytest.raises(KeyboardInterrupt):
        _run(b, path, 2)
    restore()
    assert not M.RunDir(str(b)).checkpoints()
    with pytest.raises(SystemExit, match="already holds a run"):
        _run(b, path, 2)
    _run(b, path, 2, resume=True)
    assert [r["step"] for r in _metrics(b)] == [0, 1, 2]
    assert _metrics(a) == _metrics(b)
    assert _lines(a, "samples.jsonl") == _lines(b, "samples.jsonl")


@pytest.mark.parametrize("crash_step", [3, 1])
def test_resume_gives_the_same_eval_jsonl(micro_policy, tmp_path, fake_score, monkeypatch,
                                          crash_step):
    """crash_step 3: after an evaluation newer than the checkpoint (step 2); crash_step 1:
    before the first checkpoint (the resumed run starts over)."""
    path, _, _ = micro_policy
    a, b = tmp_path / "a", tmp_path / "b"
    extra = ["--eval-every", "1"]
    _run(a, path, 4, extra=extra)
    restore = _crash_after(monkeypatch, crash_step)
    with pytest.raises(KeyboardInterrupt):
        _run(b, path, 4, extra=extra)
    restore()
    _run(b, path, 4, resume=True, extra=extra)
    assert _metrics(a) == _metrics(b)  # this part holds
    assert [e["step"] for e in _lines(b, "eval.jsonl")] == [0, 1, 2, 3, 4]
    assert _lines(a, "eval.jsonl") == _lines(b, "eval.jsonl")


def _checkpointing_flags(loaded):
    return [m.is_activation_checkpointing if hasattr(m, "is_activation_checkpointing")
            else m.is_gradient_checkpointing for m, _ in loaded]  # transformers 5.24 / older 5.x


def test_grad_checkpointing_changes_memory_not_results(micro_policy, tmp_path, fake_score,
                                                       monkeypatch):
    """--grad-checkpointing turns on activation recomputation for the policy (not the frozen
    reference); on CPU the recomputed forward is the same arithmetic, so the run logs exactly
    the same numbers."""
    path, _, _ = micro_policy
    loaded = []
    real = rlvr.M.load_policy
    monkeypatch.setattr(rlvr.M, "load_policy",
                        lambda *a, **k: loaded.append(real(*a, **k)) or loaded[-1])
    kl = ["--kl-coef", "0.05"]  # loads a reference too
    _run(tmp_path / "a", path, 2, extra=kl)
    _run(tmp_path / "b", path, 2, extra=kl + ["--grad-checkpointing"])
    assert _checkpointing_flags(loaded) == [False, False, True, False]
    ma = _metrics(tmp_path / "a")
    assert ma == _metrics(tmp_path / "b")
    # the KL to the base: 0 before the first update (the policy is the base), then > 0
    assert 0 <= ma[1]["update/kl"] < 1e-6 and ma[2]["update/kl"] > 0


def test_out_of_gpu_memory_exits_naming_the_flags(micro_policy, tmp_path, fake_score,
                                                  monkeypatch):
    path, _, _ = micro_policy

    def oom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.27 GiB\nmore")

    monkeypatch.setattr(rlvr, "update_policy", oom)
    with pytest.raises(SystemExit) as e:
        _run(tmp_path, path, 2)
    msg = str(e.value)
    assert msg.startswith("[rlvr] out of GPU memory (CUDA out of memory. Tried to allocate "
                          "9.27 GiB)")
    assert "--micro-batch" in msg and "--sample-batch" in msg and "--grad-checkpointing" in msg
    assert "--resume" in msg and "more" not in msg
    assert [r["step"] for r in _lines(tmp_path)] == [0]  # the base evaluation was logged


class _Stop(Exception):
    pass


@pytest.mark.parametrize("flags, expect", [
    ([], dict(rlvr.PRESETS["toy"])),
    (["--lr", "1e-2", "--max-new-tokens", "7"], {**rlvr.PRESETS["toy"], "lr": 1e-2,
                                                 "max_new_tokens": 7}),
    (["--loss-agg", "seq_mean"], {**rlvr.PRESETS["toy"], "loss_agg": "seq_mean"}),
    (["--style", "azr"], dict(rlvr.PRESETS["azr"])),
    (["--style", "azr", "--lr", "2e-6"], {**rlvr.PRESETS["azr"], "lr": 2e-6}),
])
def test_presets_fill_unset_flags_and_an_explicit_flag_wins(micro_policy, tmp_path, monkeypatch,
                                                            flags, expect):
    """The micro policy has the toy tokenizer, so style auto is toy. Stopped right after the
    preset is applied (at check_pg)."""
    path, _, _ = micro_policy
    assert rlvr.PRESETS["toy"] == {"lr": 3e-5, "loss_agg": "token_mean", "max_new_tokens": 56,
                                   "micro_batch": 64, "entropy_coef": 0.0}
    seen = []

    def stop(cfg):
        seen.append(cfg)
        raise _Stop

    monkeypatch.setattr(rlvr, "check_pg", stop)
    cfg = M.parse_flags(rlvr.Config, ["--model", path, "--out", str(tmp_path), "--eval-n", "2"]
                        + flags)
    assert cfg.lr is None or "--lr" in flags
    with pytest.raises(_Stop):
        rlvr.main(cfg)
    assert seen == [cfg]
    assert {k: getattr(cfg, k) for k in expect} == expect


@pytest.mark.parametrize("flags, match", [
    (["--loss-agg", "sum"], "--loss-agg 'sum'"),
    (["--scale-rewards", "std"], "--scale-rewards 'std'"),
    (["--group-size", "1"], "--group-size"),
    (["--temperature", "0"], "--temperature"),
    (["--micro-batch", "0"], "--micro-batch"),
    (["--sample-batch", "0"], "--sample-batch"),
    (["--steps", "0"], "--steps"),
    (["--prompts-per-step", "0"], "--prompts-per-step"),
    (["--eval-every", "-1"], "--eval-every"),
    (["--style", "chat"], "--style 'chat'"),
    (["--dtype", "int8"], "--dtype 'int8'"),
    (["--model", "./no/such/folder"], "--model ./no/such/folder"),
    (["--train-data", "missing.jsonl"], "missing.jsonl: file not found"),
])
def test_bad_flags_exit_naming_the_flag(micro_policy, tmp_path, flags, match):
    path, _, _ = micro_policy
    argv = ["--model", path, "--out", str(tmp_path / "run"), "--eval-n", "2"] + flags
    with pytest.raises(SystemExit, match=match):
        rlvr.main(M.parse_flags(rlvr.Config, argv))
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_unparsable_flag_value_names_the_flag(capsys):
    with pytest.raises(SystemExit):
        M.parse_flags(rlvr.Config, ["--group-size", "two"])
    assert "--group-size" in capsys.readouterr().err


def test_eval_n_zero_names_eval_n(micro_policy, tmp_path):
    path, _, _ = micro_policy
    with pytest.raises(SystemExit, match="--eval-n"):
        rlvr.main(M.parse_flags(rlvr.Config, ["--model", path, "--out", str(tmp_path),
                                              "--eval-n", "0"]))


def test_negative_lr_names_the_flag(micro_policy, tmp_path):
    path, _, _ = micro_policy
    with pytest.raises(SystemExit, match="--lr"):
        rlvr.main(M.parse_flags(rlvr.Config, ["--model", path, "--out", str(tmp_path),
                                              "--eval-n", "2", "--lr", "-1"]))


def test_run_with_fewer_than_four_sequences_per_step(micro_policy, tmp_path, fake_score):
    path, _, _ = micro_policy
    _run(tmp_path, path, 1, extra=["--prompts-per-step", "1", "--group-size", "2"])
    assert [r["step"] for r in _lines(tmp_path)] == [0, 1]


def test_help_documents_every_flag_grouped(capsys):
    with pytest.raises(SystemExit):
        M.parse_flags(rlvr.Config, ["--help"], doc=rlvr.__doc__)
    text = " ".join(capsys.readouterr().out.split())
    for f in rlvr.Config.__dataclass_fields__:
        assert f"--{f.replace('_', '-')}" in text, f
    assert "policy gradient (shared by rlvr.py and selfplay.py):" in text
    assert "GRPO on math:" in text and "answers sampled per prompt" in text
    cfg = M.parse_flags(rlvr.Config, ["--steps", "3", "--no-bf16", "--kl-coef", "0.1"])
    assert cfg.steps == 3 and cfg.bf16 is False and cfg.kl_coef == 0.1 and cfg.lr is None


def test_default_bf16_autocast_is_cuda_only_so_cpu_update_matches_the_sampler(micro_policy):
    """The sampler autocasts on CUDA only; so must the update, or on a CPU it differentiates
    log-probs other than those the sampler drew (bf16 autocast there: 0.04-0.3 nats off)."""
    path, model, tok = micro_policy
    _, st, _ = _step(path, _experiences(model, tok), bf16=True)
    assert st["logp_mismatch_max"] < 1e-4
