"""model.py: loading, sampling, log-probs/entropy, checkpoints and resume, config parsing."""
import json
from dataclasses import dataclass

import pytest
import torch

import model as M


def test_char_tokenizer_roundtrip_after_save(micro_policy, tmp_path):
    path, _, tok = micro_policy
    text = "def f(x):\n    return x * 2\n```input\n'Hello World', [1, 2]\n```"
    ids = tok(text, add_special_tokens=True)["input_ids"]
    assert ids[0] == tok.bos_token_id and len(ids) == len(text) + 1
    assert tok.decode(ids, skip_special_tokens=True) == text
    _, tok2 = M.load_policy(path, device="cpu")
    assert tok2(text)["input_ids"] == ids and tok2.padding_side == "left"


def test_save_load_roundtrip_same_logits(micro_policy, tmp_path):
    path, model, tok = micro_policy
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    m2, _ = M.load_policy(str(tmp_path), device="cpu")
    x = torch.tensor([tok("abc def")["input_ids"]])
    assert torch.equal(model(input_ids=x).logits, m2(input_ids=x).logits)


def test_load_policy_errors_name_the_problem(tmp_path):
    with pytest.raises(SystemExit, match="no such folder"):
        M.load_policy(str(tmp_path / "nope"))
    with pytest.raises(SystemExit, match="no config.json"):
        M.load_policy(str(tmp_path))
    with pytest.raises(SystemExit, match="no such GGUF"):
        M.load_policy(str(tmp_path / "x.gguf"))


def test_pick_device_on_cuda_switches_off_cudnn_attention(monkeypatch):
    """cuDNN attention gave NaN gradients on an H100 (model.pick_device); every CUDA path goes
    through pick_device, so the switch is there (the flag is settable on a CPU build too)."""
    before = torch.backends.cuda.cudnn_sdp_enabled()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    try:
        torch.backends.cuda.enable_cudnn_sdp(True)
        assert M.pick_device("cpu").type == "cpu" and torch.backends.cuda.cudnn_sdp_enabled()
        assert M.pick_device("auto").type == "cuda"
        assert not torch.backends.cuda.cudnn_sdp_enabled()
    finally:
        torch.backends.cuda.enable_cudnn_sdp(before)


def test_memory_stats_on_cpu_is_the_process_peak_in_gib():
    import resource

    M.reset_peak_memory("cpu")  # a no-op on CPU, must not fail
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    mem = M.memory_stats(torch.device("cpu"))
    assert set(mem) == {"mem/rss_peak_gib"}  # the CUDA keys only on CUDA
    assert mem["mem/rss_peak_gib"] == pytest.approx(kib / 2 ** 20, rel=0.05)
    assert 0.01 < mem["mem/rss_peak_gib"] < 64


def test_sample_shapes_masks_and_order(micro_policy):
    _, model, tok = micro_policy
    prompts = ["a", "hello there", "xyz"]
    ro = M.sample(model, tok, prompts, n=4, temperature=1.0, max_new_tokens=12, seed=0)
    N, T = 12, ro.response_mask.shape[1]
    assert ro.input_ids.shape == (N, ro.prompt_len + T) == ro.attention_mask.shape
    assert ro.prompt_index == [0] * 4 + [1] * 4 + [2] * 4
    assert torch.equal(ro.response_mask.sum(1).long(), ro.lengths)
    assert int(ro.lengths.max()) <= 12 and len(ro.texts) == N
    # prompts are left-padded so every prompt ends at column P
    for i, p in enumerate(prompts):
        ids = tok(p)["input_ids"]
        row = ro.input_ids[i * 4]
        assert row[ro.prompt_len - len(ids):ro.prompt_len].tolist() == ids
    # unfinished responses are exactly max_new_tokens long; old_logp is 0 off the mask
    assert all(int(l) == 12 for l, f in zip(ro.lengths, ro.finished) if not f)
    assert float((ro.old_logp * (1 - ro.response_mask)).abs().sum()) == 0.0


def test_sample_stops_at_eos_and_stop_strings(micro_policy):
    _, model, tok = micro_policy
    # Bias the micro model so EOS is almost certain after a couple of tokens.
    m = type(model)(model.config)
    m.load_state_dict(model.state_dict())
    with torch.no_grad():
        m.lm_head.weight.zero_() if not m.config.tie_word_embeddings else None
        m.model.norm.weight.zero_()                   # logits = 0 everywhere ...
        m.lm_head.bias = None
    m.eval()
    eos = tok.eos_token_id
    orig_forward = m.forward

    def forward(*a, **k):  # ... except a large EOS logit
        out = orig_forward(*a, **k)
        out.logits[..., eos] += 50.0
        return out
    m.forward = forward
    ro = M.sample(m, tok, ["x", "yy"], n=3, max_new_tokens=10, seed=1)
    assert ro.finished.all() and (ro.lengths == 1).all()
    assert ro.texts == [""] * 6            # EOS is removed from the text, kept in the mask
    assert ro.response_mask.sum() == 6

    def forward2(*a, **k):  # always emit 'Z' : stop string "ZZ" ends after two tokens
        out = orig_forward(*a, **k)
        out.logits[..., tok.convert_tokens_to_ids("Z")] += 50.0
        return out
    m.forward = forward2
    ro = M.sample(m, tok, ["q"], n=2, max_new_tokens=10, stop=["ZZ"], seed=1)
    assert ro.texts == ["ZZ", "ZZ"] and ro.finished.all() and (ro.lengths == 2).all()


def test_greedy_is_deterministic(micro_policy):
    _, model, tok = micro_policy
    a = M.sample(model, tok, ["abc", "d"], n=2, temperature=0, max_new_tokens=8)
    b = M.sample(model, tok, ["abc", "d"], n=2, temperature=0, max_new_tokens=8)
    assert a.texts == b.texts and a.texts[0] == a.texts[1]


def test_seeded_sampling_reproducible(micro_policy):
    _, model, tok = micro_policy
    a = M.sample(model, tok, ["abc"], n=4, max_new_tokens=8, seed=3)
    b = M.sample(model, tok, ["abc"], n=4, max_new_tokens=8, seed=3)
    assert a.texts == b.texts


def test_top_p_filter_keeps_smallest_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(M.top_p_filter(logits, 0.7))
    assert kept.tolist() == [[True, True, False, False]]
    kept = torch.isfinite(M.top_p_filter(logits, 0.5))
    assert kept.tolist() == [[True, False, False, False]]
    assert torch.isfinite(M.top_p_filter(logits, 1.0)).all()


def test_logprobs_and_entropy_match_direct_computation(micro_policy):
    _, model, tok = micro_policy
    ro = M.sample(model, tok, ["hello", "a"], n=2, temperature=0.7, max_new_tokens=6, seed=0)
    logp, ent = M.batched_logprobs(model, ro.input_ids, ro.attention_mask, ro.prompt_len,
                                   temperature=0.7, micro_batch=3)
    # the sampling-time log-probs equal the recomputed ones (same distribution)
    assert torch.allclose(logp * ro.response_mask, ro.old_logp, atol=1e-4)
    # direct computation, one unpadded sequence at a time
    for i in range(len(ro)):
        keep = ro.attention_mask[i].bool()
        seq = ro.input_ids[i][keep][None]
        n_resp = int(ro.lengths[i])
        with torch.no_grad():
            z = model(input_ids=seq).logits[0].float() / 0.7
        z = z[-n_resp - 1:-1]                                   # positions predicting the response
        lp = z.log_softmax(-1)
        p = lp.exp()
        assert torch.allclose(lp.gather(-1, seq[0, -n_resp:, None]).squeeze(-1),
                              logp[i, :n_resp], atol=1e-4)
        assert torch.allclose(-(p * lp).sum(-1), ent[i, :n_resp], atol=1e-4)


def test_forward_logprobs_gradient_modes(micro_policy):
    _, model, tok = micro_policy
    ro = M.sample(model, tok, ["hi"], n=2, max_new_tokens=4, seed=0)
    logp, ent = M.forward_logprobs(model, ro.input_ids, ro.attention_mask, ro.prompt_len)
    assert logp.requires_grad and not ent.requires_grad
    _, ent = M.forward_logprobs(model, ro.input_ids, ro.attention_mask, ro.prompt_len,
                                entropy_grad=True)
    assert ent.requires_grad


def test_entropy_from_logits_uniform():
    z = torch.zeros(2, 3, 8)
    assert torch.allclose(M.entropy_from_logits(z), torch.full((2, 3), float(torch.log(torch.tensor(8.)))))


def test_rundir_checkpoint_resume_truncates_logs(micro_policy, tmp_path):
    path, _, _ = micro_policy
    model, tok = M.load_policy(path, device="cpu")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    run = M.RunDir(tmp_path / "run")
    run.write_config({"model": path})
    for step in (1, 2):
        run.log(step, {"loss": float(step)})
    x = torch.tensor([tok("abcdef")["input_ids"]])
    model(input_ids=x, labels=x).loss.backward()
    opt.step()
    run.save_checkpoint(2, model, tok, opt, extra={"buffer": [1, 2]})
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    expected_next = torch.rand(3)             # the draw that follows the checkpoint
    run.log(3, {"loss": 3.0})                 # a step whose checkpoint was never written
    run.write_samples(3, [{"text": "lost"}])
    fresh, _ = M.load_policy(path, device="cpu")
    opt2 = torch.optim.AdamW(fresh.parameters(), lr=1e-2)
    torch.manual_seed(999)
    step, extra = M.RunDir(tmp_path / "run").resume(fresh, opt2)
    assert step == 2 and extra == {"buffer": [1, 2]}
    assert all(torch.equal(saved[k], v) for k, v in fresh.state_dict().items())
    assert opt2.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]
    assert [r["step"] for r in run.read_metrics()] == [1, 2]
    assert not (tmp_path / "run" / "samples.jsonl").read_text().strip()
    assert torch.equal(torch.rand(3), expected_next)   # RNG restored to the checkpoint's


def test_rundir_malformed_metrics_line_named(tmp_path):
    run = M.RunDir(tmp_path)
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\nnot json\n')
    with pytest.raises(SystemExit, match=r"metrics.jsonl:2: malformed"):
        run.read_metrics()


def test_parse_config_flags_and_help():
    @dataclass
    class Cfg:
        steps: int = 3          # how many steps
        lr: float = 0.1         # learning rate
        name: str = "x"         # a name
        flag: bool = True       # a switch
        tags: list[str] = None  # some tags
    c = M.parse_config(Cfg, ["--steps", "5", "--no-flag", "--tags", "a", "b"])
    assert (c.steps, c.lr, c.flag, c.tags) == (5, 0.1, False, ["a", "b"])


def test_sampler_entropy_matches_forward_pass(micro_policy):
    _, model, tok = micro_policy
    ro = M.sample(model, tok, ["hello", "ab"], n=3, temperature=0.8, max_new_tokens=6, seed=2)
    _, ent = M.batched_logprobs(model, ro.input_ids, ro.attention_mask, ro.prompt_len,
                                temperature=0.8)
    assert torch.allclose(ro.entropy, ent * ro.response_mask, atol=1e-4)


def test_rundir_claim_refuses_or_starts_over(tmp_path):
    run = M.RunDir(tmp_path / "run")
    run.claim(resume=False)                       # empty folder: fine
    run.log(1, {"loss": 1.0})
    (run.path / "tasks.jsonl").write_text("{}\n")
    with pytest.raises(SystemExit, match="already holds a run: pass --resume"):
        run.claim(resume=False)
    run.claim(resume=True, logs=("metrics.jsonl", "tasks.jsonl"))  # nothing saved: start over
    assert not (run.path / "metrics.jsonl").exists() and not (run.path / "tasks.jsonl").exists()
