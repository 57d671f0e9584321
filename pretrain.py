"""pretrain.py — build the toy base from scratch on a CPU (the project ships the result in
toy_base/; this is how it was made).

A 6.3M-parameter Llama with a character tokenizer, pretrained on the toy world (tasks.py) written
in exactly the prompt formats the scripts use: solver documents of the three task types,
proposer documents with 0-3 references, and arithmetic with worked solutions. So the base
already speaks every format and has a graded, non-zero success rate: the headroom that self-play,
RLVR and SFT then compete for. Length is set in steps, so every machine builds the same base.

    python pretrain.py --out my_base               # 1200 steps, about 22 min on 2 CPU cores
    python pretrain.py --out /tmp/quick --steps 100

Left out on purpose: a BPE tokenizer, data loaders, evaluation during training.
"""
from __future__ import annotations

import dataclasses
import json
import random
import string
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

import model as M
import tasks as T


@dataclass
class Config:
    """pretraining"""
    out: str = "runs/toy-base"     # where to save the base (a save_pretrained folder)
    seed: int = 0                  # seeds random, numpy and torch
    steps: int = 1200              # optimizer steps
    batch_size: int = 16           # rows of `context` packed tokens per step
    context: int = 512             # tokens (characters) per row
    hidden: int = 256              # model width
    layers: int = 6                # transformer blocks
    heads: int = 4                 # attention heads
    ffn: int = 1024                # MLP width
    lr: float = 2e-3               # peak learning rate (AdamW); linear warm-up, cosine decay to lr/10
    warmup: int = 30               # warm-up steps
    eval_n: int = 200              # held-out problems per set for the final greedy evaluation


def build_char_tokenizer():
    """One token per printable ASCII character plus <pad>, <bos>, <eos>, <unk>; encoding prepends
    <bos>, as the pretraining documents start with it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    chars = sorted(set(string.printable) - set("\x0b\x0c\r"))
    vocab = {t: i for i, t in enumerate(["<pad>", "<bos>", "<eos>", "<unk>", *chars])}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    tk.decoder = decoders.Fuse()
    tk.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", vocab["<bos>"])])
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<bos>", eos_token="<eos>",
                                   pad_token="<pad>", unk_token="<unk>", padding_side="left")


def build_model(tok, hidden=256, layers=6, heads=4, ffn=1024, context=512):
    """A Llama from a transformers config (not Qwen2: a qwen2 config makes AutoTokenizer rebuild
    a character tokenizer with Qwen's regex, which drops spaces)."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    return AutoModelForCausalLM.from_config(LlamaConfig(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=heads, tie_word_embeddings=True,
        max_position_embeddings=max(context, 1024), bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id))


DOC_MIX = {"solve_deduction": 0.26, "solve_abduction": 0.10, "solve_induction": 0.08,
           "propose_io": 0.24, "propose_induction": 0.07, "arith": 0.25}


def make_documents(n_docs: int, seed: int) -> list[str]:
    """`n_docs` training documents (without <bos>/<eos>), deterministic for a seed. A proposer
    document is the propose prompt, a new program and input, and the executor's output: sampling
    stops at ```output, and the output teaches the format."""
    rng = random.Random(seed)
    code = T.make_code_tasks(int(n_docs * 0.75) + 100, seed, "train")
    ind = T.make_induction_tasks(max(200, int(n_docs * 0.16)), seed + 1, "train")
    arith = T.make_arith(max(200, int(n_docs * 0.26)), seed + 2, "train")
    by_family: dict[str, list[dict]] = {}
    for t in code:
        by_family.setdefault(t["family"], []).append(t)
    docs = []
    for _ in range(n_docs):
        kind = rng.choices(list(DOC_MIX), list(DOC_MIX.values()))[0]
        if kind in ("solve_deduction", "solve_abduction"):
            t, ty = rng.choice(code), kind[6:]
            docs.append(T.solve_prompt(ty, t, "toy") + t["output" if ty == "deduction" else "input"]
                        + "\n```")
        elif kind == "solve_induction":
            t = rng.choice(ind)
            docs.append(T.solve_prompt("induction", T.induction_view(t), "toy") + t["program"]
                        + "\n```")
        elif kind == "propose_io":
            new = rng.choice(code)
            k = rng.choices([0, 1, 2, 3], [0.1, 0.3, 0.4, 0.2])[0]
            refs = [rng.choice(by_family[new["family"]])] if k and rng.random() < 0.5 else []
            while len(refs) < k:
                refs.append(rng.choice(code))
            refs = [r for r in refs if r["program"] != new["program"]]
            rng.shuffle(refs)
            docs.append(T.propose_prompt(rng.choice(["deduction", "abduction"]), refs, "toy")
                        + new["program"] + "\n```\n" + T.fence("input", new["input"])
                        + T.fence("output", new["output"]))
        elif kind == "propose_induction":
            t = rng.choice(ind)
            docs.append(T.propose_induction_prompt(t["program"], len(t["inputs"]), "toy")
                        + "".join(T.fence("input", i) for i in t["inputs"])
                        + T.fence("message", t["message"]))
        else:
            t = rng.choice(arith)
            docs.append(T.math_prompt(t["question"], "toy") + " " + t["solution"])
    return docs


def pack(docs: list[str], tok, context: int) -> torch.Tensor:
    """<bos> doc <eos> streams cut into rows of `context` tokens [R, C]; documents longer than a
    row are dropped (the model never sees a truncated prompt)."""
    ids: list[int] = []
    for d in docs:
        t = tok(d, add_special_tokens=True)["input_ids"] + [tok.eos_token_id]
        if len(t) <= context:
            ids.extend(t)
    n_rows = len(ids) // context
    return torch.tensor(ids[:n_rows * context], dtype=torch.long).view(n_rows, context)


def heldout_accuracy(model, tok, n: int = 200) -> dict:
    """Greedy accuracy on held-out toy deduction and arithmetic (programs and questions of the
    held-out split, never in the corpus), with the per-problem results as 0/1 strings."""
    sets = T.toy_sets(["deduction", "arith"], n)
    res = T.evaluate(model, tok, sets, "toy", {"deduction": 64, "math": 96})
    acc = T.accuracy(res)
    out = {"n": n, "seed": T.EVAL_SEED}
    for name, digits in T.correct_strings(res).items():
        out.update({f"{name}_acc": acc[f"eval/{name}/accuracy"],
                    f"{name}_se": acc[f"eval/{name}/se"], f"{name}_correct": digits})
    return out


def git_commit() -> str | None:
    """The commit this build ran at (with "-dirty" for uncommitted changes), or None."""
    run = lambda *a: subprocess.run(["git", *a], cwd=M.REPO, capture_output=True,  # noqa: E731
                                    text=True, check=True).stdout.strip()
    try:
        return run("rev-parse", "HEAD") + ("-dirty" if run("status", "--porcelain", "-uno") else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def main(cfg: Config) -> dict:
    M.check(cfg.steps >= 1 and cfg.batch_size >= 1 and cfg.context >= 64,
            "--steps and --batch-size must be >= 1 and --context >= 64")
    M.seed_everything(cfg.seed)
    t0 = time.time()
    tok = build_char_tokenizer()
    model = build_model(tok, cfg.hidden, cfg.layers, cfg.heads, cfg.ffn, cfg.context)
    n_params = sum(p.numel() for p in model.parameters())
    docs = make_documents(int(cfg.steps * cfg.batch_size * cfg.context / 180 * 1.15) + 1000,
                          cfg.seed)  # ~180 characters a document
    data = pack(docs, tok, cfg.context)                                        # [R, C]
    M.say(f"[pretrain] {n_params / 1e6:.2f}M params, vocab {len(tok)}, {len(docs)} documents → "
          f"{data.shape[0]} rows of {cfg.context} tokens ({time.time() - t0:.0f}s) | {cfg.steps} "
          f"steps of {cfg.batch_size} rows")
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.01)
    order = torch.randperm(data.shape[0], generator=torch.Generator().manual_seed(cfg.seed))
    model.train()
    t_train = time.time()
    for step in M.progress(range(cfg.steps), "pretrain"):
        batch = data[order[(torch.arange(cfg.batch_size) + step * cfg.batch_size) % len(data)]]
        lr = M.lr_at(step, cfg.lr, cfg.warmup, cfg.steps, decay_to=0.1)
        for group in opt.param_groups:
            group["lr"] = lr
        with torch.autocast("cpu", dtype=torch.bfloat16):  # about 2x faster on AMX CPUs
            loss = model(input_ids=batch, labels=batch).loss                  # batch: [B, C]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if (step + 1) % 100 == 0 or step + 1 == cfg.steps:
            M.say(f"[pretrain] step {step + 1}/{cfg.steps} | loss {loss.item():.3f} | lr {lr:.2e}"
                  f" | {time.time() - t_train:.0f}s")
    model.eval()
    model.save_pretrained(cfg.out)
    tok.save_pretrained(cfg.out)
    acc = heldout_accuracy(model, tok, cfg.eval_n)
    report = {"command": " ".join(["python", "pretrain.py"] + sys.argv[1:]),
              "commit": git_commit(), "threads": torch.get_num_threads(),
              "torch": torch.__version__, "params": n_params, "steps_done": cfg.steps,
              "final_loss": loss.item(), "train_seconds": round(time.time() - t_train),
              "total_seconds": round(time.time() - t0), **acc, "config": dataclasses.asdict(cfg)}
    (Path(cfg.out) / "pretrain_report.json").write_text(json.dumps(report, indent=2) + "\n")
    M.say(f"[pretrain] done: {cfg.steps} steps in {report['total_seconds']}s | held-out greedy "
          f"accuracy: deduction {acc['deduction_acc']:.1%} ± {acc['deduction_se']:.1%}, "
          f"arithmetic {acc['arith_acc']:.1%} ± {acc['arith_se']:.1%} (n={cfg.eval_n} each)")
    M.say(f"[pretrain] saved {cfg.out}. Next: python selfplay.py --model {cfg.out}")
    return report


if __name__ == "__main__":
    main(M.parse_flags(Config, doc=__doc__))
