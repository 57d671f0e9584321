"""What the real-model path relies on, checked on the tiny random policy: chunked log-probs equal
the direct ones (values and gradients), fp32 master weights keep an lr 1e-6 update that bf16
weights round away, the memory estimate on hand-computed values, and the R1 format check of
proposals (AZR: a missing <answer> or </think>, or text between them, is a format error)."""
import torch

import model as M


def _batch(tok, B=3, P=5, T=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, len(tok), (B, P + T), generator=g)                 # [B, P+T]
    mask = torch.ones_like(ids)
    mask[0, :2] = 0                                                            # left padding
    return ids, mask, P


def test_chunked_logprobs_equal_the_direct_ones(micro_policy, monkeypatch):
    path, _, tok = micro_policy
    model, _ = M.load_policy(path, device="cpu")
    ids, mask, P = _batch(tok)
    logits = model(input_ids=ids, attention_mask=mask,
                   position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits[:, P - 1:-1]
    want = torch.log_softmax(logits.float(), -1).gather(-1, ids[:, P:, None])[..., 0]  # [B, T]
    direct, h_direct = M.forward_logprobs(model, ids, mask, P)
    assert torch.allclose(direct, want, atol=1e-5)
    direct.sum().backward()
    g_direct = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    # chunks of 7 positions: 40 response tokens → 6 chunks, the last one short
    monkeypatch.setattr(M, "LOGIT_CHUNK", 7 * 3 * len(tok))
    chunked, h_chunked = M.forward_logprobs(model, ids, mask, P)
    assert torch.allclose(chunked, direct, atol=1e-6)
    assert torch.allclose(h_chunked, h_direct, atol=1e-5)
    chunked.sum().backward()
    for a, p in zip(g_direct, model.parameters()):
        assert torch.allclose(p.grad, a, atol=1e-5)


def test_fp32_master_weights_keep_an_lr_1e_6_update_bf16_weights_lose_it(micro_policy):
    path, _, tok = micro_policy
    changed = {}
    for dtype in (torch.float32, torch.bfloat16):
        model, _ = M.load_policy(path, device="cpu")
        model.to(dtype)
        before = [p.detach().clone() for p in model.parameters()]
        opt = torch.optim.AdamW(model.parameters(), lr=1e-6, weight_decay=0.0)
        ids, mask, P = _batch(tok)
        logp, _ = M.forward_logprobs(model, ids, mask, P, with_entropy=False)
        (-logp.float().mean()).backward()
        opt.step()
        moved = sum(int((p.detach() != b).sum()) for p, b in zip(model.parameters(), before))
        changed[dtype] = moved / sum(b.numel() for b in before)
    # Adam's first step moves every entry with a gradient by ~lr: kept in fp32 (spacing 6e-8 at
    # 0.5), below half the bf16 spacing (2e-3 at 0.5) for nearly every weight
    assert changed[torch.float32] > 0.9
    assert changed[torch.bfloat16] < 0.05


class _Cfg:
    hidden_size, num_hidden_layers, vocab_size, intermediate_size = 4, 2, 10, 8
    num_attention_heads, num_key_value_heads, tie_word_embeddings = 2, 2, False


def test_memory_estimate_grows_with_the_micro_batch_and_checkpointing_saves():
    e1 = M.memory_estimate(_Cfg(), 1, 6, 4, grad_checkpointing=False)
    e2 = M.memory_estimate(_Cfg(), 2, 6, 4, grad_checkpointing=False)
    ec = M.memory_estimate(_Cfg(), 2, 6, 4, grad_checkpointing=True)
    # per layer: q, k, v with biases 3 x (4·4 + 4), o 4·4, MLP 3·4·8, two norms 2·4 → 180;
    # 2 layers + final norm 4 + untied embeddings and head 2·10·4 → 444 parameters
    assert abs(e1["params_b"] - 444e-9) < 1e-15
    # fp32: weights, gradients and AdamW's two states are 4 + 4 + 8 bytes a parameter
    assert e1["grads"] == e1["weights"] and abs(e1["optimizer"] - 2 * e1["weights"]) < 1e-12
    assert e1["weights"] == e1["params_b"] * 1e9 * 4 / 2 ** 30
    assert abs(e2["activations"] - 2 * e1["activations"]) < 1e-12
    assert ec["activations"] < e2["activations"] and ec["weights"] == e2["weights"]
    assert abs(e2["total"] - sum(e2[k] for k in ("weights", "grads", "optimizer", "activations",
                                                  "logits"))) < 1e-9


def test_r1_proposals_without_the_format_get_the_format_penalty():
    import selfplay as SP

    body = "```python\ndef f(x):\n    return x + 1\n```\n```input\n3\n```"
    texts = [f"plan</think>\n<answer>\n{body}\n</answer>",  # well formed
             f"plan</think>\n{body}",                        # no <answer>
             f"plan\n<answer>\n{body}\n</answer>",           # no </think>
             f"plan</think> and more text <answer>\n{body}\n</answer>"]  # text between the tags
    out = SP.validate("deduction", texts, [None] * 4, "azr", 10, timeout=5.0)
    assert [o["valid"] for o in out] == [True, False, False, False]
    assert out[0]["output"] == "4" and [o["reason"] for o in out[1:]] == ["format"] * 3
    rewards = [SP.proposal_reward(o["valid"], None) for o in out[1:]]
    assert rewards == [-1.0] * 3
