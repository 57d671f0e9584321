"""bench/gpu.py: the Qwen2.5 shapes, the padded tokenizer and the 24 GiB plan on hand values, and
the whole benchmark run on CPU with --tiny (the code path of the GPU run, tiny shapes and sizes)."""
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


def test_shapes_have_the_published_qwen25_sizes():
    import torch
    from transformers import AutoModelForCausalLM

    # Qwen2.5-0.5B: 0.49B parameters, Qwen2.5-1.5B: 1.54B (tied embeddings, counted once)
    for name, params in (("0.5b", 494_032_768), ("1.5b", 1_543_714_304)):
        with torch.device("meta"):  # shapes only, no memory
            model = AutoModelForCausalLM.from_config(G.qwen_config(name))
        assert sum(p.numel() for p in model.parameters()) == params


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


def test_memory_plan_fits_05b_not_15b_in_24_gib():
    # fp32 master weights: 0.5B's static 16 B/param is 7.4 GiB, 1.5B's 23.0 GiB (no room left)
    plan = G.memory_plan(["0.5b", "1.5b"])
    for run in ("selfplay", "rlvr"):
        assert plan[f"0.5b/{run}"]["micro_batch"] >= 1
        assert plan[f"0.5b/{run}"]["total"] <= 0.9 * 24
        assert plan[f"1.5b/{run}"]["micro_batch"] is None
        assert plan[f"1.5b/{run}"]["weights"] == pytest.approx(4 * 1_543_714_304 / 2 ** 30)


def test_update_over_budget_runs_at_micro_batch_1_with_checkpointing(monkeypatch):
    """The path 1.5B takes on the GPU (nothing fits 24 GiB), on a tiny model with a tiny budget:
    micro-batch 1, checkpointing on, labelled, and the fp32 step still changes the weights."""
    import torch

    monkeypatch.setattr(G, "BUDGET_GIB", 1e-6)
    tok = G.build_tokenizer()
    torch.manual_seed(0)
    model = G.build_model(G.qwen_config("0.5b", True, tok), tok, torch.device("cpu"))
    out = G.phase_update(model, {**G.TINY, "repeats": 1}, torch.device("cpu"), 0)
    for u in out.values():
        assert (u["micro_batch"], u["grad_checkpointing"], u["fits_24gib"]) == (1, True, False)
        assert u["changed_frac"] > 0.5


def test_bad_models_flag_is_a_clear_error():
    with pytest.raises(SystemExit, match="--models"):
        G.main(G.Config(device="cpu", tiny=True, models="3b"))


def test_tiny_run_on_cpu(tmp_path):
    """The whole benchmark, --tiny on CPU: every RESULT figure present, the sampler check
    passed, the fp32 update changed most weights, both self-play steps updated."""
    out = tmp_path / "gpu.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu.py"), "--device", "cpu",
                           "--tiny", "--repeats", "1", "--out", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("RESULT ")
    kv = dict(item.split("=", 1) for item in last.split()[1:])
    assert kv["device"] == "cpu" and kv["tiny"] == "1"
    for m in ("0.5b", "1.5b"):
        for key in ("sample_tok_s", "generate_tok_s", "ratio", "host_syncs_per_step",
                    "update_s", "update_peak_gib", "update_est_gib", "rlvr_update_s",
                    "selfplay_step_s", "selfplay_peak_gib"):
            assert float(kv[f"{key}_{m}"]) > 0, (key, m, last)
        assert float(kv[f"changed_frac_{m}"]) > 0.5  # fp32 weights keep lr 1e-6 steps
    res = json.loads(out.read_text())
    assert res["device"] == "cpu" and res["sampler_check"] < 1e-3
    assert res["result"] == last
    assert set(res["plan"]) == {f"{m}/{r}" for m in ("0.5b", "1.5b") for r in ("selfplay", "rlvr")}
    for m in ("0.5b", "1.5b"):
        r = res["models"][m]
        assert set(r["sampling"]) == {"sample", "generate", "ratio"}
        # on a CPU the sampler looks after every token (sync_every 1), at most once a step
        assert 0 < r["sampling"]["sample"]["host_syncs_per_step"] <= 1
        u = r["update"]["selfplay"]
        assert (u["sequences"], u["prompt_len"], u["new_tokens"]) == (4, 64, 32)
        assert len(r["selfplay"]["steps"]) == 2
        for step in r["selfplay"]["steps"]:
            assert step["update_skipped"] == 0  # the entropy bonus moves a random model too
            assert {"propose", "solve", "update"} <= set(step["times"])
