"""sft.py: targets, prompt masking, loss values, the schedule, bucketing and the data stream,
gradient accumulation, and the run loop: run folder, exact resume and its data-settings check,
non-finite steps, presets, flags, bad data, out-of-memory advice."""
import json
import math

import pytest
import torch

import model as M
import sft
import tasks as T


def _examples(tok, n=8, seed=0, style="toy"):
    rows = T.make_arith(n, seed, "train")
    ex, dropped = sft.tokenize_examples(rows, tok, style, max_len=512)
    assert dropped == 0
    return ex


# ---------------------------------------------------------------- targets and tokenization
def test_build_target_toy_and_azr():
    sol = "4*2=8. 3+8=11. <answer>11</answer>"
    assert sft.build_target(sol, 11, "toy") == " 4*2=8. 3+8=11. <answer>11</answer>"
    assert sft.build_target("4*2=8. 3+8=11.", 11, "toy") == " 4*2=8. 3+8=11. <answer>11</answer>"
    assert sft.build_target("  4*2=8.\n", 8, "toy") == " 4*2=8. <answer>8</answer>"
    assert sft.build_target("", 8, "toy") == " <answer>8</answer>"
    assert sft.build_target(sol, 11, "azr") == " 4*2=8. 3+8=11. </think> <answer>11</answer>"
    # GSM8K solution (reasoning only, answer separate)
    assert sft.build_target("She has 3+4=7 apples.", "7", "azr") == \
        " She has 3+4=7 apples. </think> <answer>7</answer>"
    # an R1 response is kept as it is (minus the <think> the prompt already opened)
    r1 = "<think> 2+2=4 </think> <answer>4</answer>"
    assert sft.build_target(r1, "4", "azr") == " 2+2=4 </think> <answer>4</answer>"
    # ... and gets the answer when it closes its thinking without one
    assert sft.build_target("<think> 2+2=4 </think>", "4", "azr") == \
        " 2+2=4 </think> <answer>4</answer>"
    # every target scores as right under the math scorer
    for target, gold, style in ((sft.build_target(sol, 11, "toy"), 11, "toy"),
                                (sft.build_target("3+4=7.", "7", "azr"), "7", "azr")):
        assert T.score("math", [{"answer": gold}], [target], style)[0] == [True]


def test_tokenize_examples_prompt_then_response_eos(micro_policy):
    _, _, tok = micro_policy
    rows = [{"question": "3+4*2", "answer": 11, "solution": "4*2=8. 3+8=11. <answer>11</answer>"}]
    (p, r), = sft.tokenize_examples(rows, tok, "toy", 512)[0]
    assert tok.decode(p, skip_special_tokens=True) == "Problem: 3+4*2\nSolution:"
    assert p[0] == tok.bos_token_id and p == tok("Problem: 3+4*2\nSolution:")["input_ids"]
    assert r[-1] == tok.eos_token_id and tok.bos_token_id not in r
    assert tok.decode(r[:-1]) == " 4*2=8. 3+8=11. <answer>11</answer>"
    ex, dropped = sft.tokenize_examples(rows * 3, tok, "toy", max_len=len(p) + len(r) - 1)
    assert ex == [] and dropped == 3
    ex, dropped = sft.tokenize_examples(rows, tok, "toy", max_len=len(p) + len(r))
    assert len(ex) == 1 and dropped == 0  # max_len itself is kept
    (pa, ra), = sft.tokenize_examples(rows, tok, "azr", 4096)[0]
    assert tok.decode(pa, skip_special_tokens=True) == T.math_prompt("3+4*2", "azr")
    assert tok.decode(ra[:-1]) == " 4*2=8. 3+8=11. </think> <answer>11</answer>"


def test_collate_labels_mask_prompt_and_padding():
    ids, mask, labels = sft.collate([([1, 5, 6], [7, 2]), ([1, 5], [8, 9, 9, 2])], pad_id=0)
    assert ids.tolist() == [[1, 5, 6, 7, 2, 0], [1, 5, 8, 9, 9, 2]]
    assert mask.tolist() == [[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]]
    assert labels.tolist() == [[-100, -100, -100, 7, 2, -100], [-100, -100, 8, 9, 9, 2]]
    assert ids.dtype == mask.dtype == labels.dtype == torch.long


# ---------------------------------------------------------------- loss
def test_sft_loss_hand_values():
    V = 4
    labels = torch.tensor([[-100, -100, 2, 3]])
    # uniform logits: every response token costs log V; argmax (index 0) is never right
    loss, correct, n = sft.sft_loss(torch.zeros(1, 4, V), labels)
    assert n == 2 and correct == 0 and loss.item() == pytest.approx(math.log(V))
    # position 1 predicts token 2 with logit 10, position 2 predicts 3 uniformly
    z = torch.zeros(1, 4, V)
    z[0, 1, 2] = 10.0
    loss, correct, n = sft.sft_loss(z, labels)
    nll1 = -math.log(math.exp(10) / (math.exp(10) + 3))
    assert correct == 1 and loss.item() == pytest.approx((nll1 + math.log(V)) / 2, rel=1e-5)
    # an explicit token count divides the summed loss by it instead
    loss4, _, _ = sft.sft_loss(z, labels, n_tokens=4)
    assert loss4.item() == pytest.approx((nll1 + math.log(V)) / 4, rel=1e-5)
    # the last position predicts nothing: its logits do not matter
    z2 = z.clone()
    z2[0, 3] = torch.tensor([5., -3., 2., 9.])
    assert sft.sft_loss(z2, labels)[0].item() == pytest.approx(loss.item())
    # no response token: 0, not NaN
    loss0, c0, n0 = sft.sft_loss(z, torch.full((1, 4), -100))
    assert loss0.item() == 0.0 and (c0, n0) == (0, 0)


def test_loss_depends_only_on_response_labels():
    """A change to a prompt token's label (the token itself, as next-token target) leaves the
    loss unchanged; a change to a response token changes it."""
    torch.manual_seed(0)
    prompt, resp = [1, 5, 6, 7], [8, 9, 2]
    logits = torch.randn(1, 7, 12)
    base, _, _ = sft.sft_loss(logits, sft.collate([(prompt, resp)], 0)[2])
    for i in range(1, len(prompt)):  # every prompt position that is some token's target
        changed = list(prompt)
        changed[i] = 11
        loss, _, _ = sft.sft_loss(logits, sft.collate([(changed, resp)], 0)[2])
        assert torch.equal(loss, base)
    loss, _, _ = sft.sft_loss(logits, sft.collate([(prompt, [8, 10, 2])], 0)[2])
    assert not torch.allclose(loss, base)


def test_lr_schedule_hand_values():
    """sft's schedule: M.lr_at with a linear warm-up and a cosine decay to lr/10 at the last
    step (sft.main calls it with total = steps - 1 for steps 0 .. steps - 1)."""
    lr = lambda s: M.lr_at(s, 1.0, warmup=4, total=14, decay_to=0.1)  # noqa: E731
    assert [lr(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr(4) == pytest.approx(1.0)
    assert lr(9) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 5 / 10)))
    assert lr(14) == pytest.approx(0.1)
    assert all(lr(s) >= lr(s + 1) for s in range(4, 14))  # decreasing after the warm-up
    assert M.lr_at(2, 1.0, warmup=4) == 0.75 and M.lr_at(13, 1.0, warmup=4) == 1.0


# ---------------------------------------------------------------- bucketing and the stream
def test_length_buckets_cover_sort_and_shuffle():
    lengths = [5, 9, 3, 9, 1, 7, 2, 8, 6, 4, 3]
    a = sft.length_bucketed_batches(lengths, 3, seed=0, epoch=0)
    assert sorted(i for b in a for i in b) == list(range(11))       # each example once
    assert sorted(len(b) for b in a) == [2, 3, 3, 3]
    # chunks are runs of the length-sorted order: their length ranges do not interleave
    spans = sorted((min(lengths[i] for i in b), max(lengths[i] for i in b)) for b in a)
    assert all(hi <= lo2 for (_, hi), (lo2, _) in zip(spans, spans[1:]))
    assert a == sft.length_bucketed_batches(lengths, 3, seed=0, epoch=0)  # deterministic
    orders = {tuple(map(tuple, sft.length_bucketed_batches(lengths, 3, 0, e))) for e in range(6)}
    assert len(orders) > 1                                           # reshuffled each epoch
    seeds = {tuple(map(tuple, sft.length_bucketed_batches(lengths, 3, s, 0))) for s in range(6)}
    assert len(seeds) > 1                                            # and per seed
    # the order of the buckets is shuffled too (not short-to-long): 10! orders, 1 sorted
    mins = [min(b) for b in sft.length_bucketed_batches(list(range(40)), 4, seed=0, epoch=0)]
    assert sorted(mins) == list(range(0, 40, 4)) and mins != sorted(mins)


def test_data_stream_position_fixes_what_comes_next():
    lengths = [5, 9, 3, 9, 1, 7, 2, 8, 6, 4, 3]
    examples = [([0] * n, [i]) for i, n in enumerate(lengths)]
    stream = sft.DataStream(examples, 3, seed=0)
    assert stream.per_epoch == 4
    first = [stream.next() for _ in range(9)]                        # into epoch 2
    plan0 = sft.length_bucketed_batches(stream.lengths, 3, 0, 0)
    assert first[:4] == [[examples[i] for i in b] for b in plan0]
    assert sorted(r for b in first[4:8] for _, r in b) == [[i] for i in range(11)]
    assert stream.position == 9 and stream.position / stream.per_epoch == pytest.approx(9 / 4)
    for pos in (2, 4, 5, 8):                                         # a resumed stream
        again = sft.DataStream(examples, 3, seed=0, position=pos)
        assert [again.next() for _ in range(9 - pos)] == first[pos:], pos
    assert sft.DataStream(examples, 3, seed=1).next() != first[0] or \
        sft.DataStream(examples, 3, seed=2).next() != first[0]


# ---------------------------------------------------------------- gradient accumulation
def test_grad_accumulation_equals_one_big_batch(micro_policy):
    path, _, tok = micro_policy
    model, _ = M.load_policy(path, device="cpu")
    model.train()
    ex = _examples(tok, n=8, seed=3)
    assert len({len(p) + len(r) for p, r in ex}) > 1                 # really ragged

    def grads(chunks):
        model.zero_grad(set_to_none=True)
        stats = sft.accumulate_grads(model, chunks, tok.pad_token_id, bf16=False)
        return stats, {n: p.grad.clone() for n, p in model.named_parameters()}

    big_stats, big = grads([ex])
    assert big_stats["resp_tokens"] == sum(len(r) for _, r in ex)
    for k in (2, 4):  # uneven token counts per micro-batch
        stats, acc = grads([ex[i:i + k] for i in range(0, 8, k)])
        assert stats["loss"] == pytest.approx(big_stats["loss"], rel=1e-5)
        assert stats["token_acc"] == big_stats["token_acc"]
        assert stats["resp_tokens"] == big_stats["resp_tokens"]
        for n in big:
            torch.testing.assert_close(acc[n], big[n], rtol=1e-4, atol=1e-6)
    # and the loss is the token mean of the big batch
    with torch.no_grad():
        ids, mask, labels = sft.collate(ex, tok.pad_token_id)
        logits = model(input_ids=ids, attention_mask=mask).logits
        ref = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, len(tok)),
                                                labels[:, 1:].reshape(-1), ignore_index=-100)
        right = ((logits[:, :-1].argmax(-1) == labels[:, 1:]) & (labels[:, 1:] != -100)).sum()
    assert big_stats["loss"] == pytest.approx(ref.item(), rel=1e-5)
    assert big_stats["token_acc"] == pytest.approx(int(right) / big_stats["resp_tokens"])


# ---------------------------------------------------------------- end to end: run and resume
def _cfg(path, out, **kw):
    base = dict(model=path, out=str(out), steps=4, micro_batch=4, grad_accum=2, lr=3e-3,
                warmup=1, eval_every=2, eval_n=6, max_new_tokens=12, save_every=2, bf16=False,
                device="cpu")
    base.update(kw)
    return sft.Config(**base)


def _lines(out, file="metrics.jsonl"):
    return [json.loads(x) for x in (out / file).read_text().splitlines()]


def _metrics(out):  # without the wall-clock timings and the process's memory
    return [{k: v for k, v in r.items() if not k.startswith(("time/", "mem/"))}
            for r in _lines(out)]


def _crash_after(monkeypatch, crash_step):
    """RunDir.log raises KeyboardInterrupt right after it logs `crash_step` to metrics.jsonl (a
    crash between logging and checkpointing); returns a function that puts the real one back."""
    real_log = M.RunDir.log

    def crashing_log(self, step, rows, file="metrics.jsonl"):
        real_log(self, step, rows, file)
        if step == crash_step and file == "metrics.jsonl":
            raise KeyboardInterrupt

    monkeypatch.setattr(M.RunDir, "log", crashing_log)
    return lambda: monkeypatch.setattr(M.RunDir, "log", real_log)


def test_two_step_run_writes_the_run_folder(micro_policy, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, base, _ = micro_policy
    out = tmp_path / "run"
    summary = sft.main(_cfg(path, out, steps=2, grad_accum=1))
    assert {p.name for p in out.iterdir()} >= {"config.json", "metrics.jsonl", "eval.jsonl",
                                               "samples.jsonl", "summary.json", "checkpoints"}
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"] == path and cfg["script"] == "sft.py" and cfg["style"] == "toy"
    assert cfg["lr"] == 3e-3 and cfg["n_examples"] > 1000
    lines = _lines(out)
    assert [m["step"] for m in lines] == [0, 1, 2]
    for k in ("loss", "token_acc", "resp_tokens", "lr", "grad_norm", "nonfinite_grad_steps",
              "epoch", "time/step", "mem/rss_peak_gib"):
        assert all(k in m for m in lines[1:]), k
    assert all(0 < m["mem/rss_peak_gib"] < 64 for m in lines[1:])
    assert [m["epoch"] for m in lines[1:]] == [round(s / math.ceil(cfg["n_examples"] / 4), 4)
                                               for s in (1, 2)]
    assert lines[1]["loss"] == pytest.approx(math.log(101), rel=0.1)  # a random micro model
    for s in (0, 2):
        assert {"eval/accuracy", "eval/se", "eval/arith/accuracy", "entropy"} <= set(lines[s])
        assert lines[s]["entropy"] > 0
    evals = _lines(out, "eval.jsonl")
    assert [e["step"] for e in evals] == [0, 2] and all(len(e["arith"]) == 6 for e in evals)
    samples = _lines(out, "samples.jsonl")
    assert [s["step"] for s in samples] == [0] * 6 + [2] * 6
    assert all(set(s) == {"step", "set", "problem", "response", "correct"} for s in samples)
    assert json.loads((out / "summary.json").read_text()) == summary
    assert summary["steps"] == 2 and summary["base"] == {"arith": evals[0]["arith"].count("1") / 6}
    ckpts = M.RunDir(str(out)).checkpoints()
    assert [c.name for c in ckpts] == ["step_000002"]
    loaded = AutoModelForCausalLM.from_pretrained(str(ckpts[-1]))
    AutoTokenizer.from_pretrained(str(ckpts[-1]))
    w = lambda m: torch.cat([p.detach().flatten() for p in m.parameters()])  # noqa: E731
    assert not torch.equal(w(loaded), w(base))
    ts = torch.load(ckpts[-1] / "trainer_state.pt", weights_only=False)
    assert ts["step"] == 2 and ts["extra"] == {"micro_batches": 2}


def test_resume_no_lost_or_duplicated_metrics(micro_policy, tmp_path, monkeypatch):
    path = micro_policy[0]
    ref = tmp_path / "ref"
    sref = sft.main(_cfg(path, ref))
    ref_lines = _lines(ref)
    assert [m["step"] for m in ref_lines] == [0, 1, 2, 3, 4]
    # the schedule: warm-up 1, then a cosine decay to lr/10 at the last step
    assert [m["lr"] for m in ref_lines[1:]] == pytest.approx([3e-3, 3e-3, 3e-3 * .55, 3e-4])
    assert [p.name for p in M.RunDir(ref).checkpoints()] == ["step_000002", "step_000004"]

    # crash right after step 3 is logged (checkpoint at 2): resume redoes step 3 exactly once
    out = tmp_path / "crash"
    restore = _crash_after(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        sft.main(_cfg(path, out))
    restore()
    assert [m["step"] for m in _lines(out)] == [0, 1, 2, 3]
    with pytest.raises(SystemExit, match="already holds a run: pass --resume"):
        sft.main(_cfg(path, out))                                    # no silent appending
    s = sft.main(_cfg(path, out, resume=True))
    assert [m["step"] for m in _lines(out)] == [0, 1, 2, 3, 4]
    # same data position, weights, optimizer and RNG: the resumed steps repeat the reference
    assert _metrics(out) == _metrics(ref)
    for f in ("eval.jsonl", "samples.jsonl"):
        assert _lines(out, f) == _lines(ref, f), f
    assert [x["step"] for x in _lines(out, "samples.jsonl")] == [0] * 6 + [2] * 6 + [4] * 6
    assert {k: v for k, v in s.items() if k != "minutes"} == \
        {k: v for k, v in sref.items() if k != "minutes"}

    # crash before the first checkpoint: --resume starts over without repeating step 0's line
    early = tmp_path / "early"
    restore = _crash_after(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        sft.main(_cfg(path, early))
    restore()
    assert not M.RunDir(early).checkpoints()
    sft.main(_cfg(path, early, resume=True))
    assert _metrics(early) == _metrics(ref)
    assert _lines(early, "eval.jsonl") == _lines(ref, "eval.jsonl")


def test_resume_refuses_other_data_settings(micro_policy, tmp_path):
    """What fixes the data order (RESUME_KEYS) must match the run's; other settings may change.
    A refusal leaves the folder as it was."""
    path = micro_policy[0]
    out = tmp_path / "run"
    sft.main(_cfg(path, out, steps=2, grad_accum=1))
    before = (out / "metrics.jsonl").read_text()
    data = tmp_path / "d.jsonl"
    data.write_text('{"question": "2+2", "answer": "2+2=4 #### 4"}\n')
    for kw, match in ((dict(micro_batch=2), "--micro-batch 4 → 2"),
                      (dict(grad_accum=2), "--grad-accum 1 → 2"),
                      (dict(seed=1), "--seed 0 → 1"),
                      (dict(max_len=100), "--max-len 512 → 100"),
                      (dict(train_data=str(data)), "--train-data '' → ")):
        with pytest.raises(SystemExit, match="other data settings") as e:
            sft.main(_cfg(path, out, **{"steps": 2, "grad_accum": 1, "resume": True, **kw}))
        assert match in str(e.value), kw
        assert (out / "metrics.jsonl").read_text() == before
    assert set(sft.RESUME_KEYS) == {"train_data", "seed", "micro_batch", "grad_accum", "max_len"}
    sft.main(_cfg(path, out, steps=3, grad_accum=1, resume=True, lr=1e-3, eval_n=6))
    assert [m["step"] for m in _lines(out)] == [0, 1, 2, 3]


def test_nonfinite_gradient_step_is_skipped(micro_policy, tmp_path, monkeypatch):
    """A NaN gradient (step 2 here) leaves the weights untouched, and the step's metrics line
    says so; the next step trains again."""
    path = micro_policy[0]
    real = sft.accumulate_grads
    calls = []

    def nan_at_step_2(model, *a, **kw):
        stats = real(model, *a, **kw)
        calls.append(1)
        if len(calls) == 2:
            next(model.parameters()).grad.fill_(float("nan"))
        return stats

    monkeypatch.setattr(sft, "accumulate_grads", nan_at_step_2)
    snapshots = {}
    real_save = M.RunDir.save

    def keep(self, step, model, *a, **kw):
        snapshots[step] = {k: v.clone() for k, v in model.state_dict().items()}
        return real_save(self, step, model, *a, **kw)

    monkeypatch.setattr(M.RunDir, "save", keep)
    out = tmp_path / "nan"
    sft.main(_cfg(path, out, save_every=1, eval_every=100))
    lines = _lines(out)
    assert [m["nonfinite_grad_steps"] for m in lines[1:]] == [0, 1, 0, 0]
    assert not math.isfinite(lines[2]["grad_norm"])
    assert all(math.isfinite(m["grad_norm"]) for m in lines[1:] if m["step"] != 2)
    assert sorted(snapshots) == [1, 2, 3, 4]
    for k, v in snapshots[2].items():
        assert torch.isfinite(v).all(), k
        assert torch.equal(v, snapshots[1][k]), k                  # step 2 changed nothing
    assert any(not torch.equal(snapshots[3][k], snapshots[2][k]) for k in snapshots[2])


def _checkpointing_flags(loaded):
    return [m.is_activation_checkpointing if hasattr(m, "is_activation_checkpointing")
            else m.is_gradient_checkpointing for m, _ in loaded]  # transformers 5.24 / older 5.x


def test_grad_checkpointing_changes_memory_not_results(micro_policy, tmp_path, monkeypatch):
    path = micro_policy[0]
    loaded = []
    real = sft.M.load_policy
    monkeypatch.setattr(sft.M, "load_policy",
                        lambda *a, **k: loaded.append(real(*a, **k)) or loaded[-1])
    sft.main(_cfg(path, tmp_path / "a", steps=2))
    sft.main(_cfg(path, tmp_path / "b", steps=2, grad_checkpointing=True))
    assert _checkpointing_flags(loaded) == [False, True]
    assert _metrics(tmp_path / "a") == _metrics(tmp_path / "b")


def test_out_of_gpu_memory_exits_naming_the_flags(micro_policy, tmp_path, monkeypatch):
    path = micro_policy[0]

    def oom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.27 GiB\nmore")

    monkeypatch.setattr(sft, "accumulate_grads", oom)
    with pytest.raises(SystemExit) as e:
        sft.main(_cfg(path, tmp_path))
    msg = str(e.value)
    assert msg.startswith("[sft] out of GPU memory (CUDA out of memory. Tried to allocate "
                          "9.27 GiB)")
    for flag in ("--micro-batch", "--grad-accum", "--max-len", "--grad-checkpointing",
                 "--resume"):
        assert flag in msg, flag
    assert "more" not in msg
    assert [m["step"] for m in _lines(tmp_path)] == [0]  # the base evaluation was logged


class _Stop(Exception):
    pass


@pytest.mark.parametrize("kw, expect", [
    ({}, dict(sft.PRESETS["toy"])),
    (dict(lr=2e-3), {**sft.PRESETS["toy"], "lr": 2e-3}),
    (dict(max_new_tokens=9), {**sft.PRESETS["toy"], "max_new_tokens": 9}),
    (dict(style="azr"), dict(sft.PRESETS["azr"])),
    (dict(style="azr", lr=3e-6), {**sft.PRESETS["azr"], "lr": 3e-6}),
])
def test_presets_fill_unset_flags_and_an_explicit_flag_wins(micro_policy, tmp_path, monkeypatch,
                                                            kw, expect):
    """Stopped right after the preset is applied (at tokenize_examples)."""
    path = micro_policy[0]
    assert sft.PRESETS["toy"] == {"lr": 1e-3, "max_new_tokens": 64, "micro_batch": 32,
                                  "grad_accum": 1}

    def stop(*a, **k):
        raise _Stop

    monkeypatch.setattr(sft, "tokenize_examples", stop)
    cfg = sft.Config(model=path, out=str(tmp_path), eval_n=2, **kw)
    with pytest.raises(_Stop):
        sft.main(cfg)
    assert {k: getattr(cfg, k) for k in expect} == expect


# ---------------------------------------------------------------- flags and bad data
@pytest.mark.parametrize("kw, match", [
    (dict(steps=0), "--steps"), (dict(micro_batch=0), "--micro-batch"),
    (dict(grad_accum=0), "--grad-accum"), (dict(eval_n=0), "--eval-n"),
    (dict(eval_every=-1), "--eval-every"), (dict(max_len=5), "longer than --max-len 5"),
    (dict(style="chat"), "--style 'chat'"), (dict(train_data="nope.jsonl"),
                                             "nope.jsonl: file not found"),
])
def test_bad_flags_exit_naming_the_flag(micro_policy, tmp_path, kw, match):
    path = micro_policy[0]
    with pytest.raises(SystemExit, match=match):
        sft.main(_cfg(path, tmp_path / "run", **kw))
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_training_data_without_solutions_is_refused(micro_policy, tmp_path):
    path = micro_policy[0]
    nosol = tmp_path / "nosol.jsonl"
    nosol.write_text('{"problem": "1+1", "answer": "2"}\n'
                     '{"question": "2+2", "answer": "2+2=4 #### 4"}\n'
                     '{"problem": "3+3", "answer": "6", "solution": ""}\n'
                     '{"question": "4+4", "answer": "#### 8"}\n')
    with pytest.raises(SystemExit, match=r"--train-data .*nosol.jsonl: SFT needs a worked "
                                         r"solution in every row \(rows without one: \[1, 3, 4\]"):
        sft.main(_cfg(path, tmp_path / "run", train_data=str(nosol)))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(SystemExit, match="--train-data"):
        sft.main(_cfg(path, tmp_path / "run2", train_data=str(empty)))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "1+1", "answer": "so 2 #### 2"}\n{"question": \n')
    with pytest.raises(SystemExit, match="bad.jsonl, line 2: malformed JSON"):
        sft.main(_cfg(path, tmp_path / "run3", train_data=str(bad)))


def test_empty_eval_data_names_the_flag(micro_policy, tmp_path):
    path = micro_policy[0]
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(SystemExit, match="--eval"):
        sft.main(_cfg(path, tmp_path / "run", eval=[f"mine={empty}"]))


def test_negative_lr_names_the_flag(micro_policy, tmp_path):
    with pytest.raises(SystemExit, match="--lr"):
        sft.main(_cfg(micro_policy[0], tmp_path / "run", lr=-1.0))


def test_data_files_give_worked_solution_targets(micro_policy, tmp_path):
    """GSM8K and prompt/response rows → targets; a run on such a file trains on them and
    evaluates on its own --eval set."""
    good = tmp_path / "good.jsonl"
    good.write_text('{"question": "2+2", "answer": "2+2=4 #### 4"}\n'
                    '{"prompt": "3+3", "response": "3+3=6 <answer>6</answer>"}\n'
                    '{"problem": "1+5", "answer": "6", "solution": "1+5=6."}\n')
    rows = T.load_math(str(good))
    assert [sft.build_target(r["solution"], r["answer"], "toy") for r in rows] == \
        [" 2+2=4 <answer>4</answer>", " 3+3=6 <answer>6</answer>", " 1+5=6. <answer>6</answer>"]
    out = tmp_path / "run"
    sft.main(_cfg(micro_policy[0], out, steps=1, micro_batch=2, grad_accum=1, train_data=str(good),
                  eval=[f"eval={good}"], eval_n=2))
    assert json.loads((out / "config.json").read_text())["n_examples"] == 3
    lines = _lines(out)
    assert [m["step"] for m in lines] == [0, 1] and "eval/eval/accuracy" in lines[0]
    assert [(s["set"], s["problem"]) for s in _lines(out, "samples.jsonl")] == \
        [("eval", 0), ("eval", 1)] * 2
    _, _, tok = micro_policy
    ex, _ = sft.tokenize_examples(rows, tok, "toy", 512)
    first = sft.length_bucketed_batches([len(p) + len(r) for p, r in ex], 2, seed=0, epoch=0)[0]
    assert lines[1]["resp_tokens"] == sum(len(ex[i][1]) for i in first)


def test_help_documents_every_flag(capsys):
    with pytest.raises(SystemExit):
        M.parse_flags(sft.Config, ["--help"], doc=sft.__doc__)
    text = " ".join(capsys.readouterr().out.split())
    for f in sft.Config.__dataclass_fields__:
        assert f"--{f.replace('_', '-')}" in text, f
    assert "micro-batches per optimizer step" in text and "supervised fine-tuning:" in text
    cfg = M.parse_flags(sft.Config, ["--steps", "3", "--no-bf16", "--grad-accum", "2"])
    assert cfg.steps == 3 and cfg.bf16 is False and cfg.grad_accum == 2 and cfg.lr is None
    with pytest.raises(SystemExit):
        M.parse_flags(sft.Config, ["--grad-accum", "two"])
    assert "--grad-accum" in capsys.readouterr().err
