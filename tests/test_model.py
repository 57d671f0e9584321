"""model.py: flags from dataclasses, presets, the learning-rate schedule, loading, sampling,
log-probs/entropy, JSON lines, run folders (checkpoints with keep-last, truncation, resume).

This module deliberately has no `from __future__ import annotations`: the dataclasses below that
should parse use string annotations (as every script's do under the future import), and one test
checks real annotations."""
import functools
import json
import math
from dataclasses import dataclass, field

import pytest
import torch

import model as M


# ----------------------------------------------------------------------------------------------
# Flags and presets
# ----------------------------------------------------------------------------------------------
@dataclass
class _Base:
    """base settings"""
    seed: "int" = 0               # the seed
    fast: "bool" = False          # go fast
    name: "str" = "x"             # a name


@dataclass
class _Script(_Base):
    """script settings"""
    seed: "int" = 7               # the script's seed
    steps: "int" = 3              # how many steps
    lr: "float | None" = None     # learning rate (None: the preset's)
    tags: "list[str]" = field(default_factory=lambda: ["a"])  # some tags
    ks: "list[int] | None" = None  # some ints
    flag: "bool" = True           # a switch


def test_parse_flags_types_bools_lists_and_none_defaults():
    c = M.parse_flags(_Script, ["--steps", "5", "--no-flag", "--fast", "--tags", "x", "y",
                                "--lr", "0.5", "--ks", "1", "2", "--name", "run"])
    assert (c.steps, c.flag, c.fast, c.tags, c.lr, c.ks, c.name) == \
        (5, False, True, ["x", "y"], 0.5, [1, 2], "run")
    assert type(c.steps) is int and type(c.lr) is float and c.ks == [1, 2]
    d = M.parse_flags(_Script, [])
    assert d == _Script() and d.lr is None and d.ks is None and d.tags == ["a"] and d.seed == 7
    assert M.parse_flags(_Script, ["--seed", "3", "--flag"]).seed == 3
    with pytest.raises(SystemExit):
        M.parse_flags(_Script, ["--steps", "five"])          # an int flag refuses a word


def test_parse_flags_help_grouped_by_declaring_class(capsys):
    with pytest.raises(SystemExit) as e:
        M.parse_flags(_Script, ["--help"], doc="the script's doc")
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "the script's doc" in out
    out = out[out.index("options:"):]                  # the groups, after the usage line
    base, script = out.index("base settings:"), out.index("script settings:")
    assert base < script
    # a flag goes to the class that first declares it, even when a subclass overrides it ...
    for flag in ("--seed", "--fast, --no-fast", "--name"):
        assert base < out.index(flag) < script, flag
    for flag in ("--steps", "--lr", "--tags", "--ks", "--flag, --no-flag"):
        assert out.index(flag) > script, flag
    # ... with the overriding class's help and default; help is the field's trailing comment
    assert "the script's seed (default: 7)" in out and "the seed (default" not in out
    assert "how many steps (default: 3)" in out
    assert "learning rate (None: the preset's) (default: None)" in out
    assert "some tags (default: ['a'])" in out


def test_parse_flags_real_annotations():
    @dataclass
    class Cfg:
        steps: int = 3          # how many steps
        lr: float = 0.1         # learning rate
        flag: bool = True       # a switch
        tags: list[str] = None  # some tags
    c = M.parse_flags(Cfg, ["--steps", "5", "--no-flag", "--tags", "a", "b"])
    assert (c.steps, c.lr, c.flag, c.tags) == (5, 0.1, False, ["a", "b"])


def test_parse_flags_group_of_a_class_without_docstring_is_its_name(capsys):
    @dataclass
    class Cfg:
        x: "int" = 0  # an x
    with pytest.raises(SystemExit):
        M.parse_flags(Cfg, ["--help"])
    assert "\nCfg:\n" in capsys.readouterr().out


def test_apply_preset_fills_only_none_fields():
    @dataclass
    class Cfg:
        lr: "float | None" = None
        batch: "int | None" = None
        name: "str | None" = None
        flag: "bool | None" = None
    cfg = Cfg(lr=None, batch=0, name="mine", flag=False)  # 0 and False are settings, not None
    presets = {"toy": {"lr": 0.1, "batch": 8, "name": "t", "flag": True},
               "azr": {"lr": 1e-6, "batch": 64, "name": "a", "flag": True}}
    assert M.apply_preset(cfg, presets, "toy") == {"lr": 0.1}
    assert (cfg.lr, cfg.batch, cfg.name, cfg.flag) == (0.1, 0, "mine", False)
    assert M.apply_preset(cfg, presets, "azr") == {}   # nothing left at None
    assert cfg.lr == 0.1


# ----------------------------------------------------------------------------------------------
# Learning-rate schedule
# ----------------------------------------------------------------------------------------------
def test_lr_at_warmup_then_constant():
    assert [M.lr_at(s, 1.0, warmup=4) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert M.lr_at(0, 3e-4) == 3e-4 and M.lr_at(10_000, 3e-4, total=10) == 3e-4  # no decay_to


def test_lr_at_cosine_to_decay_to_hand_values():
    # lr 2, warm-up 2, total 8, decay_to 0.1: frac = (step - 2) / 6,
    # lr = 2 (0.1 + 0.9 * 0.5 (1 + cos(pi frac)))
    lrs = {s: M.lr_at(s, 2.0, warmup=2, total=8, decay_to=0.1) for s in range(9)}
    assert lrs[0] == pytest.approx(1.0) and lrs[1] == pytest.approx(2.0)   # warm-up
    assert lrs[2] == pytest.approx(2.0)              # frac 0
    assert lrs[4] == pytest.approx(1.55)             # frac 1/3: cos = 1/2 → 0.1 + 0.9 * 0.75
    assert lrs[5] == pytest.approx(1.1)              # frac 1/2: half-way, 0.1 + 0.45
    assert lrs[6] == pytest.approx(0.65)             # frac 2/3: cos = -1/2 → 0.1 + 0.9 * 0.25
    assert lrs[8] == pytest.approx(0.2)              # frac 1: decay_to * lr
    assert all(lrs[s] >= lrs[s + 1] for s in range(1, 8))
    # decay_to = 0.0 is a decay to zero, not "no decay"; warm-up 0 starts at the full rate
    assert M.lr_at(0, 1.0, total=10, decay_to=0.0) == pytest.approx(1.0)
    assert M.lr_at(5, 1.0, total=10, decay_to=0.0) == pytest.approx(0.5)
    assert M.lr_at(10, 1.0, total=10, decay_to=0.0) == pytest.approx(0.0, abs=1e-12)


# ----------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------
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


def test_resolve_model_names_a_missing_toy_base(tmp_path, monkeypatch):
    assert M.resolve_model("Qwen/Qwen2.5-3B") == "Qwen/Qwen2.5-3B"   # not "toy": as it is
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setattr(M, "TOY_BASE", str(tmp_path))
    with pytest.raises(SystemExit, match=r"missing model\.safetensors, tokenizer\.json, "
                                         r"tokenizer_config\.json.*git checkout -- toy_base"):
        M.resolve_model("toy")


def test_prompt_style_and_dtype(micro_policy):
    _, _, tok = micro_policy
    assert M.prompt_style(tok) == "toy" and M.prompt_style(tok, "azr") == "azr"
    with pytest.raises(SystemExit, match="--style 'r1'"):
        M.prompt_style(tok, "r1")
    cpu = torch.device("cpu")
    assert M.pick_dtype(cpu) == torch.float32 and M.pick_dtype(cpu, "bfloat16") == torch.bfloat16
    with pytest.raises(SystemExit, match="--dtype 'fp8'"):
        M.pick_dtype(cpu, "fp8")


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


def test_pick_device_cuda_without_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert M.pick_device("auto").type == "cpu"
    with pytest.raises(SystemExit, match="--device cuda:1: CUDA is not available"):
        M.pick_device("cuda:1")


def test_memory_stats_on_cpu_is_the_process_peak_in_gib():
    import resource

    M.reset_peak_memory("cpu")  # a no-op on CPU, must not fail
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    mem = M.memory_stats(torch.device("cpu"))
    assert set(mem) == {"mem/rss_peak_gib"}  # the CUDA keys only on CUDA
    assert mem["mem/rss_peak_gib"] == pytest.approx(kib / 2 ** 20, rel=0.05)
    assert 0.01 < mem["mem/rss_peak_gib"] < 64


# ----------------------------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------------------------
def test_sample_shapes_masks_and_order(micro_policy):
    _, model, tok = micro_policy
    prompts = ["a", "hello there", "xyz"]
    ro = M.sample(model, tok, prompts, n=4, temperature=1.0, max_new_tokens=12, seed=0)
    N, T = 12, ro.response_mask.shape[1]
    assert ro.input_ids.shape == (N, ro.prompt_len + T) == ro.attention_mask.shape
    assert ro.prompt_index == [0] * 4 + [1] * 4 + [2] * 4
    assert torch.equal(ro.response_mask.sum(1).long(), ro.lengths)
    assert int(ro.lengths.max()) <= 12 and len(ro.texts) == N == len(ro)
    # prompts are left-padded so every prompt ends at column P
    for i, p in enumerate(prompts):
        ids = tok(p)["input_ids"]
        row = ro.input_ids[i * 4]
        assert row[ro.prompt_len - len(ids):ro.prompt_len].tolist() == ids
    # unfinished responses are exactly max_new_tokens long; old_logp is 0 off the mask
    assert all(int(l) == 12 for l, f in zip(ro.lengths, ro.finished) if not f)
    assert float((ro.old_logp * (1 - ro.response_mask)).abs().sum()) == 0.0
    assert float((ro.entropy * (1 - ro.response_mask)).abs().sum()) == 0.0


def test_sample_batches_give_the_same_greedy_texts(micro_policy):
    _, model, tok = micro_policy
    prompts = ["a", "hello there", "xyz", "def f(x):"]
    one = M.sample(model, tok, prompts, n=2, temperature=0, max_new_tokens=8, batch_size=64)
    small = M.sample(model, tok, prompts, n=2, temperature=0, max_new_tokens=8, batch_size=2)
    assert one.texts == small.texts and torch.equal(one.lengths, small.lengths)


def test_sample_refuses_bad_temperature_or_top_p(micro_policy):
    _, model, tok = micro_policy
    with pytest.raises(ValueError, match="temperature"):
        M.sample(model, tok, ["a"], temperature=-1)
    with pytest.raises(ValueError, match="top_p"):
        M.sample(model, tok, ["a"], top_p=0.0)


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

    @functools.wraps(orig_forward)  # (the same signature: the sampler picks its cache keyword)
    def forward(*a, **k):  # ... except a large EOS logit
        out = orig_forward(*a, **k)
        out.logits[..., eos] += 50.0
        return out
    m.forward = forward
    ro = M.sample(m, tok, ["x", "yy"], n=3, max_new_tokens=10, seed=1)
    assert ro.finished.all() and (ro.lengths == 1).all()
    assert ro.texts == [""] * 6            # EOS is removed from the text, kept in the mask
    assert ro.response_mask.sum() == 6

    @functools.wraps(orig_forward)
    def forward2(*a, **k):  # always emit 'Z' : stop string "ZZ" ends after two tokens
        out = orig_forward(*a, **k)
        out.logits[..., tok.convert_tokens_to_ids("Z")] += 50.0
        return out
    m.forward = forward2
    ro = M.sample(m, tok, ["q"], n=2, max_new_tokens=10, stop=["ZZ"], seed=1)
    assert ro.texts == ["ZZ", "ZZ"] and ro.finished.all() and (ro.lengths == 2).all()
    ro = M.sample(m, tok, ["q"], n=1, max_new_tokens=5, seed=1)      # no stop: the cap
    assert ro.texts == ["ZZZZZ"] and not ro.finished.any()


def test_greedy_is_deterministic(micro_policy):
    _, model, tok = micro_policy
    a = M.sample(model, tok, ["abc", "d"], n=2, temperature=0, max_new_tokens=8)
    b = M.sample(model, tok, ["abc", "d"], n=2, temperature=0, max_new_tokens=8)
    assert a.texts == b.texts and a.texts[0] == a.texts[1]


def test_seeded_sampling_reproducible(micro_policy):
    _, model, tok = micro_policy
    a = M.sample(model, tok, ["abc"], n=4, max_new_tokens=8, seed=3)
    b = M.sample(model, tok, ["abc"], n=4, max_new_tokens=8, seed=3)
    c = M.sample(model, tok, ["abc"], n=4, max_new_tokens=8, seed=4)
    assert a.texts == b.texts and torch.equal(a.old_logp, b.old_logp)
    assert a.texts != c.texts   # a random char model: another seed, other samples


def test_top_p_filter_keeps_smallest_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(M.top_p_filter(logits, 0.7))
    assert kept.tolist() == [[True, True, False, False]]
    kept = torch.isfinite(M.top_p_filter(logits, 0.5))
    assert kept.tolist() == [[True, False, False, False]]
    assert torch.isfinite(M.top_p_filter(logits, 1.0)).all()


# ----------------------------------------------------------------------------------------------
# Log-probs and entropy
# ----------------------------------------------------------------------------------------------
def test_logprobs_and_entropy_match_direct_computation(micro_policy):
    _, model, tok = micro_policy
    ro = M.sample(model, tok, ["hello", "a"], n=2, temperature=0.7, max_new_tokens=6, seed=0)
    with torch.no_grad():
        logp, ent = M.forward_logprobs(model, ro.input_ids, ro.attention_mask, ro.prompt_len,
                                       temperature=0.7)
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


def test_sampler_entropy_matches_forward_pass(micro_policy):
    _, model, tok = micro_policy
    ro = M.sample(model, tok, ["hello", "ab"], n=3, temperature=0.8, max_new_tokens=6, seed=2)
    with torch.no_grad():
        _, ent = M.forward_logprobs(model, ro.input_ids, ro.attention_mask, ro.prompt_len,
                                    temperature=0.8)
    assert torch.allclose(ro.entropy, ent * ro.response_mask, atol=1e-4)


def test_forward_logprobs_gradient_modes(micro_policy):
    _, model, tok = micro_policy
    ro = M.sample(model, tok, ["hi"], n=2, max_new_tokens=4, seed=0)
    logp, ent = M.forward_logprobs(model, ro.input_ids, ro.attention_mask, ro.prompt_len)
    assert logp.requires_grad and not ent.requires_grad
    _, ent = M.forward_logprobs(model, ro.input_ids, ro.attention_mask, ro.prompt_len,
                                entropy_grad=True)
    assert ent.requires_grad
    logp, ent = M.forward_logprobs(model, ro.input_ids, ro.attention_mask, ro.prompt_len,
                                   with_entropy=False)
    assert ent is None and logp.shape == ro.response_mask.shape


def test_entropy_from_logits_uniform_and_masked_mean():
    z = torch.zeros(2, 3, 8)
    assert torch.allclose(M.entropy_from_logits(z), torch.full((2, 3), math.log(8.0)))
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert M.masked_mean(x, mask) == pytest.approx(7 / 3)
    assert M.masked_mean(x, torch.zeros_like(mask)) == 0.0


# ----------------------------------------------------------------------------------------------
# JSON lines and run folders
# ----------------------------------------------------------------------------------------------
def test_read_jsonl_names_the_file_and_the_line(tmp_path):
    p = tmp_path / "data.jsonl"
    p.write_text('{"a": 1}\n\n  \n{"a": 2}\n')
    assert M.read_jsonl(p) == [{"a": 1}, {"a": 2}]          # blank lines are skipped
    p.write_text('{"a": 1}\n\n{"a": 2\n')
    with pytest.raises(SystemExit, match=r"data\.jsonl, line 3: malformed JSON"):
        M.read_jsonl(p)
    p.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(SystemExit, match=r"data\.jsonl, line 2: expected a JSON object"):
        M.read_jsonl(p)
    with pytest.raises(SystemExit, match=r"^--data .*missing\.jsonl: file not found"):
        M.read_jsonl(tmp_path / "missing.jsonl", what="--data ")


def test_rundir_log_read_and_malformed_metrics_line_named(tmp_path):
    run = M.RunDir(tmp_path)
    assert run.read() == [] and run.checkpoints() == []
    run.log(1, {"loss": 0.5})
    run.log(2, [{"text": "a"}, {"text": "b"}], file="samples.jsonl")
    run.log(3, {"loss": torch.tensor(0.25)})       # a tensor is written as a float
    assert run.read() == [{"step": 1, "loss": 0.5}, {"step": 3, "loss": 0.25}]
    assert run.read("samples.jsonl") == [{"step": 2, "text": "a"}, {"step": 2, "text": "b"}]
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\nnot json\n')
    with pytest.raises(SystemExit, match=r"metrics\.jsonl, line 2: malformed"):
        run.read()


def test_rundir_truncate_drops_later_and_half_written_lines(tmp_path):
    run = M.RunDir(tmp_path, logs=("metrics.jsonl", "samples.jsonl", "tasks.jsonl"))
    for s in (1, 2, 3):
        run.log(s, {"loss": float(s)})
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "lo')                    # a crash in the middle of a line
    run.log(2, [{"t": "a"}, {"t": "b"}], file="samples.jsonl")
    run.log(3, {"t": "c"}, file="samples.jsonl")
    run.log(3, {"x": 1}, file="eval.jsonl")          # not one of the run's logs: untouched
    run.truncate(2)
    assert run.read() == [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 2.0}]
    assert (tmp_path / "metrics.jsonl").read_text().endswith("}\n")  # appendable again
    assert [r["t"] for r in run.read("samples.jsonl")] == ["a", "b"]
    assert run.read("eval.jsonl") == [{"step": 3, "x": 1}]          # tasks.jsonl: absent, fine
    run.truncate(0)
    assert run.read() == [] and run.read("samples.jsonl") == []


def _trained_copy(path, tok):
    """A fresh copy of the micro policy with one AdamW step taken (non-empty optimizer state)."""
    model, _ = M.load_policy(path, device="cpu")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x = torch.tensor([tok("abcdef")["input_ids"]])
    model(input_ids=x, labels=x).loss.backward()
    opt.step()
    return model, opt


def _optimizer_state(ck):
    return torch.load(ck / "trainer_state.pt", weights_only=False)["optimizer"]


def test_rundir_save_keeps_newest_and_strips_older_optimizer_state(micro_policy, tmp_path):
    path, _, tok = micro_policy
    model, opt = _trained_copy(path, tok)
    run = M.RunDir(tmp_path / "run")
    for step in (1, 2, 3, 4):
        d = run.save(step, model, tok, opt, extra={"at": step}, keep=2)
        assert d == run.ckpt_dir / f"step_{step:06d}"
    assert [c.name for c in run.checkpoints()] == ["step_000003", "step_000004"]
    assert not list(run.ckpt_dir.glob(".tmp_*"))              # renamed into place
    older, newest = run.checkpoints()
    assert _optimizer_state(older) is None
    assert _optimizer_state(newest)["state"][0]["step"] == opt.state_dict()["state"][0]["step"]
    ts = torch.load(older / "trainer_state.pt", weights_only=False)
    assert ts["step"] == 3 and ts["extra"] == {"at": 3} and "rng" in ts  # the rest is kept
    # keep=0 keeps every checkpoint, the optimizer state still only in the newest
    run2 = M.RunDir(tmp_path / "all")
    for step in (1, 2, 3):
        run2.save(step, model, tok, opt)
    assert [_optimizer_state(c) is None for c in run2.checkpoints()] == [True, True, False]
    # keep=1 leaves only the newest, which resumes with its optimizer
    run2.save(5, model, tok, opt, keep=1)
    assert [c.name for c in run2.checkpoints()] == ["step_000005"]
    fresh, _ = M.load_policy(path, device="cpu")
    opt2 = torch.optim.AdamW(fresh.parameters(), lr=1e-2)
    assert run2.resume(fresh, opt2)[0] == 5 and opt2.state_dict()["state"]


def test_rundir_checkpoint_resume_truncates_logs(micro_policy, tmp_path):
    path, _, tok = micro_policy
    model, opt = _trained_copy(path, tok)
    run = M.RunDir(tmp_path / "run")
    run.write_config({"model": path})
    assert json.loads((tmp_path / "run" / "config.json").read_text()) == {"model": path}
    for step in (1, 2):
        run.log(step, {"loss": float(step)})
    run.save(2, model, tok, opt, extra={"buffer": [1, 2]})
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    expected_next = torch.rand(3)             # the draw that follows the checkpoint
    run.log(3, {"loss": 3.0})                 # a step whose checkpoint was never written
    run.log(3, [{"text": "lost"}], file="samples.jsonl")
    fresh, _ = M.load_policy(path, device="cpu")
    opt2 = torch.optim.AdamW(fresh.parameters(), lr=1e-2)
    torch.manual_seed(999)
    step, extra = M.RunDir(tmp_path / "run").resume(fresh, opt2)
    assert step == 2 and extra == {"buffer": [1, 2]}
    assert all(torch.equal(saved[k], v) for k, v in fresh.state_dict().items())
    assert opt2.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]
    assert [r["step"] for r in run.read()] == [1, 2]
    assert not (tmp_path / "run" / "samples.jsonl").read_text().strip()
    assert torch.equal(torch.rand(3), expected_next)   # RNG restored to the checkpoint's
    assert M.RunDir(tmp_path / "empty").resume(fresh, opt2) == (0, {})


def test_rundir_claim_refuses_or_starts_over(tmp_path):
    run = M.RunDir(tmp_path / "run", logs=("metrics.jsonl", "tasks.jsonl"))
    run.claim(resume=False)                       # empty folder: fine
    run.log(1, {"loss": 1.0})
    (run.path / "tasks.jsonl").write_text("{}\n")
    (run.path / "notes.txt").write_text("mine\n")
    with pytest.raises(SystemExit, match="already holds a run: pass --resume"):
        run.claim(resume=False)
    run.claim(resume=True)                        # nothing saved: start over
    assert not (run.path / "metrics.jsonl").exists() and not (run.path / "tasks.jsonl").exists()
    assert (run.path / "notes.txt").exists()      # not a log of the run


def test_sample_counts_its_host_syncs(micro_policy):
    """On a CPU the host looks after every token: one wait per decode step (6 tokens forced,
    the last step ends the loop before its look, so 5 per decoding batch), plus one per step
    for the stop-string search when there are stop strings (6 more). bench/gpu.py reports it."""
    _, model, tok = micro_policy
    prompts = ["ab", "cd", "ef"]
    plain = M.sample(model, tok, prompts, max_new_tokens=6, min_new_tokens=6, batch_size=2)
    assert plain.host_syncs == 2 * 5  # batch_size 2 → two decoding batches
    stops = M.sample(model, tok, prompts, max_new_tokens=6, min_new_tokens=6, batch_size=4,
                     stop=["\u2603"])
    assert stops.host_syncs == 5 + 6
