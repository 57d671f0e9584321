"""sft.py: targets, prompt masking, loss values, schedule, bucketing, gradient accumulation,
resume, bad-data errors."""
import json
import math

import pytest
import torch

import model as M
import sft
import toydata


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run ~100x faster on 1 torch thread than on 2 when the shared machine is
    oversubscribed (2-thread backward passes stall); restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _examples(tok, n=8, seed=0, style="toy"):
    rows = toydata.make_arith(n, seed, "train")
    ex, dropped = sft.tokenize_examples(rows, tok, style, max_len=512)
    assert dropped == 0
    return ex


# ---------------------------------------------------------------- targets and tokenization
def test_build_target_toy_and_azr():
    sol = "4*2=8. 3+8=11. <answer>11</answer>"
    assert sft.build_target(sol, 11, "toy") == " 4*2=8. 3+8=11. <answer>11</answer>"
    assert sft.build_target("4*2=8. 3+8=11.", 11, "toy") == " 4*2=8. 3+8=11. <answer>11</answer>"
    assert sft.build_target(sol, 11, "azr") == " 4*2=8. 3+8=11. </think> <answer>11</answer>"
    # GSM8K solution (reasoning only, answer separate)
    assert sft.build_target("She has 3+4=7 apples.", "7", "azr") == \
        " She has 3+4=7 apples. </think> <answer>7</answer>"
    # an R1 response is kept as it is (minus the <think> the prompt already opened)
    r1 = "<think> 2+2=4 </think> <answer>4</answer>"
    assert sft.build_target(r1, "4", "azr") == " 2+2=4 </think> <answer>4</answer>"


def test_tokenize_examples_prompt_then_response_eos(micro_policy):
    _, _, tok = micro_policy
    rows = [{"question": "3+4*2", "answer": 11, "solution": "4*2=8. 3+8=11. <answer>11</answer>"}]
    (p, r), = sft.tokenize_examples(rows, tok, "toy", 512)[0]
    assert tok.decode(p, skip_special_tokens=True) == "Problem: 3+4*2\nSolution:"
    assert p[0] == tok.bos_token_id and p == tok("Problem: 3+4*2\nSolution:")["input_ids"]
    assert r[-1] == tok.eos_token_id
    assert tok.decode(r[:-1]) == " 4*2=8. 3+8=11. <answer>11</answer>"
    ex, dropped = sft.tokenize_examples(rows * 3, tok, "toy", max_len=len(p) + len(r) - 1)
    assert ex == [] and dropped == 3


def test_collate_labels_mask_prompt_and_padding():
    ids, mask, labels = sft.collate([([1, 5, 6], [7, 2]), ([1, 5], [8, 9, 9, 2])], pad_id=0)
    assert ids.tolist() == [[1, 5, 6, 7, 2, 0], [1, 5, 8, 9, 9, 2]]
    assert mask.tolist() == [[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]]
    assert labels.tolist() == [[-100, -100, -100, 7, 2, -100], [-100, -100, 8, 9, 9, 2]]


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
    lr = lambda s, sch="cosine": sft.lr_at(s, 1.0, warmup=4, total=14, schedule=sch,  # noqa
                                           min_ratio=0.1)
    assert [lr(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr(4) == pytest.approx(1.0)
    assert lr(9) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 5 / 9)))
    assert lr(13) == pytest.approx(0.1)
    assert lr(50) == pytest.approx(0.1)
    assert lr(2, "constant") == 0.75 and lr(13, "constant") == 1.0


def test_accuracy_gain_hand_values():
    g = sft.accuracy_gain([0, 1, 0, 0], [1, 1, 1, 0])
    assert g["gain"] == pytest.approx(0.5)
    assert g["gain_se_unpaired"] == pytest.approx(math.sqrt(0.25 * 0.75 / 4 + 0.75 * 0.25 / 4))
    assert g["gain_se_paired"] == pytest.approx(math.sqrt(1 / 3) / 2)  # d = 1,0,1,0
    with pytest.raises(ValueError, match="equally long"):
        sft.accuracy_gain([1, 0], [1])


# ---------------------------------------------------------------- bucketing
def test_length_buckets_cover_sort_and_shuffle():
    lengths = [5, 9, 3, 9, 1, 7, 2, 8, 6, 4, 3]
    a = sft.length_bucketed_batches(lengths, 3, seed=0, epoch=0)
    assert sorted(i for b in a for i in b) == list(range(11))       # each example once
    assert [len(b) for b in a].count(3) == 3
    # chunks are runs of the length-sorted order: their length ranges do not interleave
    spans = sorted((min(lengths[i] for i in b), max(lengths[i] for i in b)) for b in a)
    assert all(hi <= lo2 for (_, hi), (lo2, _) in zip(spans, spans[1:]))
    assert a == sft.length_bucketed_batches(lengths, 3, seed=0, epoch=0)
    orders = {tuple(map(tuple, sft.length_bucketed_batches(lengths, 3, 0, e))) for e in range(6)}
    assert len(orders) > 1                                           # reshuffled each epoch
    # the order of the buckets is shuffled too (not short-to-long): 10! orders, 1 sorted
    mins = [min(b) for b in sft.length_bucketed_batches(list(range(40)), 4, seed=0, epoch=0)]
    assert sorted(mins) == list(range(0, 40, 4)) and mins != sorted(mins)
    stream = sft.DataStream([([0] * n, [1]) for n in lengths], 3, seed=0)
    first = [stream.next() for _ in range(5)]                        # crosses into epoch 1
    again = sft.DataStream(stream.examples, 3, seed=0, position=2)
    assert again.next() == first[2] and stream.epoch == pytest.approx(5 / 4)


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
    for k in (2, 4):  # uneven token counts per micro-batch
        stats, acc = grads([ex[i:i + k] for i in range(0, 8, k)])
        assert stats["loss"] == pytest.approx(big_stats["loss"], rel=1e-5)
        assert stats["token_acc"] == big_stats["token_acc"]
        for n in big:
            torch.testing.assert_close(acc[n], big[n], rtol=1e-4, atol=1e-6)
    # and the loss is the token mean of the big batch
    with torch.no_grad():
        ids, mask, labels = sft.collate(ex, tok.pad_token_id)
        ref = torch.nn.functional.cross_entropy(
            model(input_ids=ids, attention_mask=mask).logits[:, :-1].reshape(-1, len(tok)),
            labels[:, 1:].reshape(-1), ignore_index=-100)
    assert big_stats["loss"] == pytest.approx(ref.item(), rel=1e-5)


# ---------------------------------------------------------------- end to end: run and resume
def _cfg(path, out, **kw):
    base = dict(model=path, out=str(out), n_train=48, steps=4, micro_batch=4, grad_accum=2,
                lr=3e-3, warmup=1, eval_every=2, eval_n=6, eval_max_new_tokens=12,
                entropy_prompts=4, save_every=2, bf16=False, device="cpu", threads=0)
    base.update(kw)
    return sft.Config(**base)


def _lines(out):
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def _crash_after(monkeypatch, crash_step):
    """Make RunDir.log raise KeyboardInterrupt right after it logs `crash_step` (a crash between
    logging and checkpointing); returns the real RunDir.log to put back."""
    real_log = M.RunDir.log

    def crashing_log(self, step, metrics, file="metrics.jsonl"):
        real_log(self, step, metrics, file)
        if step == crash_step:
            raise KeyboardInterrupt

    monkeypatch.setattr(M.RunDir, "log", crashing_log)
    return real_log

def test_resume_no_lost_or_duplicated_metrics(micro_policy, tmp_path, monkeypatch):
    path = micro_policy[0]
    ref = tmp_path / "ref"
    sft.main(_cfg(path, ref))
    ref_lines = _lines(ref)
    assert [m["step"] for m in ref_lines] == [0, 1, 2, 3, 4]
    for k in ("loss", "token_acc", "lr", "grad_norm", "tokens_per_s", "mem/rss_peak_gib"):
        assert all(k in m for m in ref_lines[1:])
    for s in (0, 2, 4):
        assert {"eval/accuracy", "eval/accuracy_se", "entropy"} <= set(ref_lines[s])
        assert ref_lines[s]["entropy"] > 0
    assert [p.name for p in M.RunDir(ref).checkpoints()] == ["step_000002", "step_000004"]
    cfg = json.loads((ref / "config.json").read_text())
    assert cfg["model"] == path and cfg["script"] == "sft.py"

    # crash right after step 3 is logged (checkpoint at 2): resume redoes step 3 exactly once
    out = tmp_path / "crash"
    real_log = _crash_after(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        sft.main(_cfg(path, out))
    monkeypatch.setattr(M.RunDir, "log", real_log)
    assert [m["step"] for m in _lines(out)] == [0, 1, 2, 3]
    with pytest.raises(SystemExit, match="--resume"):
        sft.main(_cfg(path, out))                                    # no silent appending
    with pytest.raises(SystemExit, match="micro-batch"):
        sft.main(_cfg(path, out, resume=True, micro_batch=2, grad_accum=4))
    sft.main(_cfg(path, out, resume=True))
    lines = _lines(out)
    assert [m["step"] for m in lines] == [0, 1, 2, 3, 4]
    # same data position, weights, optimizer and RNG: the resumed steps repeat the reference
    for a, b in zip(lines, ref_lines):
        assert a["loss" if a["step"] else "eval/accuracy"] == pytest.approx(
            b["loss" if b["step"] else "eval/accuracy"], rel=1e-4)
        if "entropy" in a:
            assert a["entropy"] == pytest.approx(b["entropy"], rel=1e-4)
    samples = [json.loads(x)["step"] for x in (out / "samples.jsonl").read_text().splitlines()]
    assert samples == [0] * 6 + [2] * 6 + [4] * 6

    # crash before the first checkpoint: --resume starts over without repeating step 0's line
    early = tmp_path / "early"
    _crash_after(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        sft.main(_cfg(path, early))
    monkeypatch.setattr(M.RunDir, "log", real_log)
    sft.main(_cfg(path, early, resume=True))
    assert [m["step"] for m in _lines(early)] == [0, 1, 2, 3, 4]


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
    real_save = M.RunDir.save_checkpoint

    def keep(self, step, model, *a, **kw):
        snapshots[step] = {k: v.clone() for k, v in model.state_dict().items()}
        return real_save(self, step, model, *a, **kw)

    monkeypatch.setattr(M.RunDir, "save_checkpoint", keep)
    out = tmp_path / "nan"
    sft.main(_cfg(path, out, save_every=1))
    lines = _lines(out)
    assert [m["nonfinite_grad_steps"] for m in lines[1:]] == [0, 1, 0, 0]
    assert not math.isfinite(lines[2]["grad_norm"])
    for k, v in snapshots[2].items():
        assert torch.isfinite(v).all(), k
        assert torch.equal(v, snapshots[1][k]), k                  # step 2 changed nothing
    assert any(not torch.equal(snapshots[3][k], snapshots[2][k]) for k in snapshots[2])


# ---------------------------------------------------------------- bad data
def test_bad_data_gives_named_errors(tmp_path):
    with pytest.raises(SystemExit, match="nope.jsonl: file not found"):
        sft.load_rows(str(tmp_path / "nope.jsonl"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "1+1", "answer": "so 2 #### 2"}\n{"question": \n')
    with pytest.raises(SystemExit, match="bad.jsonl, line 2: malformed JSON"):
        sft.load_rows(str(bad))
    nosol = tmp_path / "nosol.jsonl"
    nosol.write_text('{"problem": "1+1", "answer": "2"}\n'
                     '{"question": "2+2", "answer": "2+2=4 #### 4"}\n'
                     '{"problem": "3+3", "answer": "6", "solution": ""}\n')
    with pytest.raises(SystemExit, match=r"2 of 3 rows have no worked solution \(rows 1, 3"):
        sft.load_rows(str(nosol))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(SystemExit, match="no rows"):
        sft.load_rows(str(empty))
    good = tmp_path / "good.jsonl"
    good.write_text('{"question": "2+2", "answer": "2+2=4 #### 4"}\n'
                    '{"prompt": "3+3", "response": "3+3=6 <answer>6</answer>"}\n')
    rows = sft.load_rows(str(good))
    assert [sft.build_target(r["solution"], r["answer"], "toy") for r in rows] == \
        [" 2+2=4 <answer>4</answer>", " 3+3=6 <answer>6</answer>"]


def test_cli_documents_every_flag_and_rejects_bad_values(capsys):
    with pytest.raises(SystemExit):
        sft.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for f in sft.Config.__dataclass_fields__:
        assert f"--{f.replace('_', '-')}" in text
    assert "micro-batches per optimizer step" in text
    cfg = sft.parse_args(["--steps", "3", "--betas", "0.9", "0.99", "--no-bf16"])
    assert cfg.steps == 3 and cfg.betas == [0.9, 0.99] and cfg.bf16 is False
    with pytest.raises(SystemExit, match="schedule"):
        sft.parse_args(["--schedule", "linear"])
    with pytest.raises(SystemExit, match="grad-accum"):
        sft.parse_args(["--grad-accum", "0"])
