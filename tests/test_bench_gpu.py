"""bench/gpu.py: its pure functions on hand-computed values, and the whole benchmark run on CPU
with --tiny (the same code path the GPU run takes, tiny models and sizes)."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# loaded by path: putting bench/ on sys.path would let bench/verifier.py shadow verifier.py
_spec = importlib.util.spec_from_file_location("bench_gpu", REPO / "bench" / "gpu.py")
G = sys.modules["bench_gpu"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(G)

# a hand-sized Qwen2 shape: head dim 2, q width 4, kv width 2
SMALL = dict(hidden_size=4, intermediate_size=8, num_hidden_layers=1, num_attention_heads=2,
             num_key_value_heads=1, vocab_size=10, tie_word_embeddings=True)
GIB = 2 ** 30


def test_param_count_by_hand():
    # layer: q 4*4+4, k and v 2*(4*2+2), o 4*4, MLP 3*4*8, norms 2*4 = 160; + final norm 4
    assert G.param_count(SMALL) == {"total": 204, "embedding": 40, "body": 164}
    untied = G.param_count({**SMALL, "tie_word_embeddings": False})
    assert untied["total"] == 244


def test_param_count_matches_published_qwen25_sizes():
    # Qwen2.5-0.5B: 0.49B (0.36B non-embedding); Qwen2.5-1.5B: 1.54B (1.31B non-embedding)
    n05 = G.param_count({**G.QWEN25_COMMON, **G.QWEN25["0.5b"]})
    n15 = G.param_count({**G.QWEN25_COMMON, **G.QWEN25["1.5b"]})
    assert n05["total"] == 494_032_768 and round(n05["body"] / 1e9, 2) == 0.36
    assert n15["total"] == 1_543_714_304 and round(n15["body"] / 1e9, 2) == 1.31


def test_param_count_matches_transformers_model():
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    shape = {**G.QWEN25_COMMON, **G.QWEN25["1.5b"]}
    with torch.device("meta"):  # no memory: shapes only
        model = AutoModelForCausalLM.from_config(Qwen2Config(**shape))
    assert sum(p.numel() for p in model.parameters()) == G.param_count(shape)["total"]


def test_update_flops_by_hand():
    # S = 5: 2*164*5 (body) + 2*10*4*(3+1) (LM head) + 2*1*4*25 (attention) = 2160 per forward
    assert G.update_flops(SMALL, seqs=1, prompt_len=2, new_tokens=3) == 3 * 2160
    assert G.update_flops(SMALL, 1, 2, 3, no_grad_forwards=1) == 4 * 2160
    assert G.update_flops(SMALL, 2, 2, 3) == 2 * 3 * 2160


def test_decode_flops_by_hand():
    # prefill 2*164*2 + 2*40 + 2*4*2^2 = 768; steps 2*(164+40)*2 + 4*4*(2*2 + 1) = 896
    assert G.decode_flops(SMALL, seqs=1, prompt_len=2, new_tokens=2) == 768 + 896


def test_memory_estimate_by_hand():
    e = G.memory_estimate(SMALL, micro_batch=1, prompt_len=2, new_tokens=3)
    # N = 204: bf16 weights and grads 2 B, AdamW states 4 B; per layer per token
    # 16*4 + 10*4 + 8*2 + 8*8 = 184 B x 5 tokens + final norm 8*4*4; logits 18*4*10
    assert e["weights"] * GIB == pytest.approx(408)
    assert e["grads"] * GIB == pytest.approx(408)
    assert e["optimizer"] * GIB == pytest.approx(816)
    assert e["activations"] * GIB == pytest.approx(920 + 128)
    assert e["logits"] * GIB == pytest.approx(720)
    assert e["total"] * GIB == pytest.approx(408 + 408 + 816 + 1048 + 720)
    ck = G.memory_estimate(SMALL, 1, 2, 3, grad_checkpointing=True)
    assert ck["activations"] * GIB == pytest.approx(2 * 4 * 5 + 920 + 128)
    fp32 = G.memory_estimate(SMALL, 1, 2, 3, weight_bytes=4)
    assert fp32["weights"] * GIB == pytest.approx(816) and fp32["optimizer"] * GIB == \
        pytest.approx(1632)


def test_memory_estimate_static_of_qwen25_05b():
    shape = {**G.QWEN25_COMMON, **G.QWEN25["0.5b"]}
    e = G.memory_estimate(shape, 8, 128, 512)
    assert e["weights"] + e["grads"] + e["optimizer"] == pytest.approx(8 * 494_032_768 / GIB)


def test_peak_tflops_for():
    assert G.peak_tflops_for("NVIDIA H100 80GB HBM3") == 989.0
    assert G.peak_tflops_for("NVIDIA H100 PCIe") == 756.0
    assert G.peak_tflops_for("NVIDIA H200") == 989.0
    assert G.peak_tflops_for("NVIDIA A100-SXM4-80GB") == 312.0
    assert G.peak_tflops_for("Tesla T4") is None


def test_padded_tokenizer_decodes_every_id():
    base = G.build_tokenizer()
    tok = G.build_tokenizer(500)
    assert len(tok) == 500 and tok.padding_side == "left"
    assert (tok.pad_token_id, tok.eos_token_id, tok.bos_token_id) == \
        (base.pad_token_id, base.eos_token_id, base.bos_token_id)
    text = "def f(x):\n    return x"
    assert tok(text)["input_ids"] == base(text)["input_ids"]  # prompts stay character-level
    assert tok.decode([len(base), 499]) == f"<|{len(base)}|><|499|>"
    with pytest.raises(ValueError, match="smaller"):
        G.build_tokenizer(10)


def test_bad_models_flag_is_a_clear_error():
    with pytest.raises(SystemExit, match="--models"):
        G.main(G.Config(device="cpu", tiny=True, models="3b"))


def test_tiny_run_on_cpu(tmp_path):
    """The whole benchmark, --tiny on CPU: every RESULT figure present and positive; the
    sampler check passed; the gold verifier workload was all valid and right (so the gold
    texts match selfplay's formats)."""
    out = tmp_path / "gpu.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu.py"), "--device", "cpu",
                           "--tiny", "--threads", "1", "--peak-tflops", "1", "--out", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("RESULT ")
    kv = dict(item.split("=", 1) for item in last.split()[1:])
    assert kv["device"] == "cpu" and kv["tiny"] == "1"
    for m in ("0.5b", "1.5b"):
        for key in ("sample_tok_per_s", "generate_tok_per_s", "ratio", "update_s", "peak_gib",
                    "mfu", "selfplay_step_s", "update_changed_frac", "verify_gold_s"):
            assert float(kv[f"{key}_{m}"]) > 0, (key, m, last)
    res = json.loads(out.read_text())
    assert res["sampler_check"] < 1e-3
    for m in ("0.5b", "1.5b"):
        r = res["models"][m]
        assert r["update"]["sequences"] == 4 * 2 and r["update"]["new_tokens"] == 16
        assert r["selfplay"]["update_skipped"] == 0
        gold = r["selfplay"]["gold_verify"]
        assert gold["valid"] == gold["proposals"] > 0
        assert gold["correct"] == gold["answers"] > 0
    assert "0.5b/bf16/mb8/full" in res["memory_estimate"]
