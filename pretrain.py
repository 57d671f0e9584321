"""pretrain.py — build the toy base model from scratch on CPU.

There is no model hub here, so zeroplay carries an embedded default: a ~6M-parameter Llama-style
causal LM with a character-level tokenizer, pretrained for ~22 minutes on 2 CPU cores on the toy
world (toydata.py) rendered in exactly the prompt formats that selfplay.py, rlvr.py and sft.py use:

  solver documents    (deduction / abduction / induction prompt + answer block)
  proposer documents  (K reference triplets + a new program, input, output; induction inputs+message)
  arithmetic          ("Problem: 3+4*2\\nSolution: 4*2=8. 3+8=11. <answer>11</answer>")

so the base already speaks every format and has a graded, non-zero success rate — the headroom
that self-play, RLVR and SFT then compete for. It prints held-out greedy accuracy on toy deduction
and toy arithmetic at the end and saves everything with `save_pretrained`.

    python pretrain.py                       # → runs/toy-base (the default --model "toy")
    python pretrain.py --steps 100 --out /tmp/quick-base
"""
from __future__ import annotations

import dataclasses
import math
import random
import string
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

import model as M
import toydata
from rlvr import math_prompt
from selfplay import fence, propose_induction_prompt, propose_prompt, solve_prompt


@dataclass
class Config:
    out: str = M.TOY_BASE          # where to save the base (save_pretrained folder)
    seed: int = 0                  # seeds random, numpy and torch
    steps: int = 1200              # optimizer steps (about 22 min on 2 idle CPU cores)
    batch_size: int = 16           # rows of `context` packed tokens per step
    context: int = 512             # tokens per row (characters: the tokenizer is char-level)
    hidden: int = 256              # model width
    layers: int = 6                # transformer blocks
    heads: int = 4                 # attention heads
    ffn: int = 1024                # MLP width
    lr: float = 2e-3               # peak learning rate (AdamW)
    warmup: int = 30               # linear warm-up steps, then cosine decay to lr/10
    weight_decay: float = 0.01     # AdamW weight decay
    bf16: bool = True              # bf16 autocast for the forward/backward (about 2x on AMX CPUs)
    eval_problems: int = 200       # held-out problems per set for the final greedy evaluation
    threads: int = 0               # torch threads (0 = torch's default)
    log_every: int = 100           # one console line every N steps


# ----------------------------------------------------------------------------------------------
# Tokenizer: one token per character, built offline with the `tokenizers` library
# ----------------------------------------------------------------------------------------------
def build_char_tokenizer():
    """A character-level tokenizer over printable ASCII with <pad>, <bos>, <eos>, <unk>;
    `add_special_tokens=True` prepends <bos>, as the pretraining documents start with it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<bos>", "<eos>", "<unk>"]
    vocab = {t: i for i, t in enumerate(specials)}
    for c in sorted(set(string.printable) - set("\x0b\x0c\r")):
        vocab.setdefault(c, len(vocab))
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    tk.decoder = decoders.Fuse()
    tk.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", vocab["<bos>"])])
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<bos>", eos_token="<eos>",
                                   pad_token="<pad>", unk_token="<unk>", padding_side="left")


def build_model(tok, hidden=256, layers=6, heads=4, ffn=1024, context=512):
    """A Llama-architecture causal LM from a transformers config (Llama rather than Qwen2: a
    qwen2 config makes AutoTokenizer rebuild a char tokenizer with Qwen's regex and drop spaces)."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=ffn,
                      num_hidden_layers=layers, num_attention_heads=heads,
                      num_key_value_heads=heads, max_position_embeddings=max(context, 1024),
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return AutoModelForCausalLM.from_config(cfg)


# ----------------------------------------------------------------------------------------------
# The corpus: the toy world rendered in the project's prompt formats
# ----------------------------------------------------------------------------------------------
DOC_MIX = [  # (kind, weight)
    ("solve_deduction", 0.26), ("solve_abduction", 0.10), ("solve_induction", 0.08),
    ("propose_io", 0.24), ("propose_induction", 0.07), ("arith", 0.25)]


def proposal_doc(new: dict, refs: list[dict], task_type: str) -> str:
    """Proposer document: the propose prompt with K refs, then the new program, its input and
    the executor's output (sampling stops at ```output; the output teaches the format)."""
    return (propose_prompt(task_type, refs, "toy") + new["program"] + "\n```\n"
            + fence("input", new["input"]) + fence("output", new["output"]))


def make_documents(n_docs: int, seed: int) -> list[str]:
    """`n_docs` training documents (without <bos>/<eos>), deterministic for a seed."""
    rng = random.Random(seed)
    n_code = int(n_docs * 0.75) + 100
    code = toydata.make_code_tasks(n_code, seed, "train")
    ind = toydata.make_induction_tasks(max(200, int(n_docs * 0.16)), seed + 1, "train")
    arith = toydata.make_arith(max(200, int(n_docs * 0.26)), seed + 2, "train")
    by_family: dict[str, list[dict]] = {}
    for t in code:
        by_family.setdefault(t["family"], []).append(t)
    kinds, weights = zip(*DOC_MIX)
    docs = []
    for _ in range(n_docs):
        kind = rng.choices(kinds, weights)[0]
        if kind == "solve_deduction":
            t = rng.choice(code)
            docs.append(solve_prompt("deduction", t, "toy") + t["output"] + "\n```")
        elif kind == "solve_abduction":
            t = rng.choice(code)
            docs.append(solve_prompt("abduction", t, "toy") + t["input"] + "\n```")
        elif kind == "solve_induction":
            t = rng.choice(ind)
            half = len(t["inputs"]) // 2
            vis = list(zip(t["inputs"][:half], t["outputs"][:half]))
            docs.append(solve_prompt("induction", {"visible": vis, "message": t["message"]},
                                     "toy") + t["program"] + "\n```")
        elif kind == "propose_io":
            new = rng.choice(code)
            k = rng.choices([0, 1, 2, 3], [0.1, 0.3, 0.4, 0.2])[0]
            refs = []
            if k and rng.random() < 0.5:  # half the docs: one reference from the same family
                refs.append(rng.choice(by_family[new["family"]]))
            while len(refs) < k:
                refs.append(rng.choice(code))
            refs = [r for r in refs if r["program"] != new["program"]]
            rng.shuffle(refs)
            docs.append(proposal_doc(new, refs, rng.choice(["deduction", "abduction"])))
        elif kind == "propose_induction":
            t = rng.choice(ind)
            docs.append(propose_induction_prompt(t["program"], len(t["inputs"]), "toy")
                        + "".join(fence("input", i) for i in t["inputs"])
                        + fence("message", t["message"]))
        else:
            t = rng.choice(arith)
            docs.append(math_prompt(t["question"], "toy") + " " + t["solution"])
    return docs


def pack(docs: list[str], tok, context: int) -> torch.Tensor:
    """Concatenate <bos> doc <eos> streams and cut them into rows of `context` tokens. Documents
    longer than a row are dropped (the model never sees a truncated prompt)."""
    ids: list[int] = []
    for d in docs:
        t = tok(d, add_special_tokens=True)["input_ids"] + [tok.eos_token_id]
        if len(t) <= context:
            ids.extend(t)
    n_rows = len(ids) // context
    return torch.tensor(ids[:n_rows * context], dtype=torch.long).view(n_rows, context)


# ----------------------------------------------------------------------------------------------
# Evaluation: held-out greedy accuracy (the numbers the issue asks pretrain to print)
# ----------------------------------------------------------------------------------------------
def heldout_accuracy(model, tok, n: int = 200, seed: int = 1234) -> dict:
    """Greedy exact-answer accuracy on held-out toy deduction and toy arithmetic problems
    (programs/questions from the held-out split, never trained on)."""
    import verifier
    from selfplay import extract_answer, stop_strings

    code = toydata.make_code_tasks(n, seed, "heldout")
    ro = M.sample(model, tok, [solve_prompt("deduction", t, "toy") for t in code], n=1,
                  temperature=0, max_new_tokens=64, stop=stop_strings("solve", "deduction", "toy"))
    ded = [verifier.check_deduction(t["output"], extract_answer(x, "deduction", "toy") or "")
           for t, x in zip(code, ro.texts)]
    arith = toydata.make_arith(n, seed, "heldout")
    ro = M.sample(model, tok, [math_prompt(t["question"], "toy") for t in arith], n=1,
                  temperature=0, max_new_tokens=96, stop=["</answer>"])
    ari = [verifier.check_math(x, t["answer"]) for t, x in zip(arith, ro.texts)]
    se = lambda p, k: math.sqrt(max(p * (1 - p), 1e-12) / k)  # noqa: E731
    d, a = sum(ded) / len(ded), sum(ari) / len(ari)
    return {"deduction_acc": d, "deduction_se": se(d, len(ded)), "arith_acc": a,
            "arith_se": se(a, len(ari)), "n": n, "seed": seed,
            "deduction_correct": "".join(str(int(c)) for c in ded),
            "arith_correct": "".join(str(int(c)) for c in ari)}


def git_commit() -> str | None:
    """The commit this build ran at (with "-dirty" for uncommitted changes), or None."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=here, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return sha + ("-dirty" if dirty else "")


# ----------------------------------------------------------------------------------------------
def main(cfg: Config) -> dict:
    M.seed_everything(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t0 = time.time()
    tok = build_char_tokenizer()
    model = build_model(tok, cfg.hidden, cfg.layers, cfg.heads, cfg.ffn, cfg.context)
    n_params = sum(p.numel() for p in model.parameters())
    tokens_needed = cfg.steps * cfg.batch_size * cfg.context
    docs = make_documents(int(tokens_needed / 180 * 1.15) + 1000, cfg.seed)  # ~180 chars a doc
    data = pack(docs, tok, cfg.context)                                           # [R, C]
    M.say(f"[pretrain] {n_params / 1e6:.2f}M params, vocab {len(tok)}, {len(docs)} docs → "
          f"{data.shape[0]} rows of {cfg.context} tokens ({time.time() - t0:.0f}s) | "
          f"{cfg.steps} steps of {cfg.batch_size} x {cfg.context} tokens")
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95),
                            weight_decay=cfg.weight_decay)

    def lr_at(step):  # linear warm-up, cosine decay to lr/10
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        frac = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))

    g = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(data.shape[0], generator=g)
    model.train()
    bar = M.progress(range(cfg.steps), "pretrain")
    t_train = time.time()
    for step in bar:
        idx = order[(torch.arange(cfg.batch_size) + step * cfg.batch_size) % data.shape[0]]
        batch = data[idx]                                                         # [B, C]
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16 and
                            batch.device.type == "cpu"):
            loss = model(input_ids=batch, labels=batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            M.say(f"[pretrain] step {step + 1}/{cfg.steps} | loss {loss.item():.3f} | lr "
                  f"{lr_at(step):.2e} | {time.time() - t_train:.0f}s")
    train_s = time.time() - t_train
    model.eval()
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    model.save_pretrained(cfg.out)
    tok.save_pretrained(cfg.out)
    acc = heldout_accuracy(model, tok, cfg.eval_problems)
    report = {"command": " ".join(["python", "pretrain.py"] + sys.argv[1:]),
              "commit": git_commit(), "threads": torch.get_num_threads(),
              "torch": torch.__version__, "params": n_params, "steps_done": step + 1,
              "final_loss": loss.item(), "train_seconds": round(train_s),
              "total_seconds": round(time.time() - t0), **acc, "config": dataclasses.asdict(cfg)}
    import json
    (Path(cfg.out) / "pretrain_report.json").write_text(json.dumps(report, indent=2) + "\n")
    M.say(f"[pretrain] done: {report['steps_done']} steps in {report['total_seconds']}s | "
          f"held-out greedy accuracy: deduction {acc['deduction_acc']:.1%} ± "
          f"{acc['deduction_se']:.1%}, arithmetic {acc['arith_acc']:.1%} ± {acc['arith_se']:.1%} "
          f"(n={acc['n']} each)")
    M.say(f"[pretrain] saved {cfg.out} (Hugging Face folder + pretrain_report.json). Next: "
          f"python selfplay.py --model {cfg.out}")
    return report


def parse_args(argv=None) -> Config:
    cfg = M.parse_config(Config, argv, description=__doc__.split("\n\n")[0])
    if cfg.steps < 1 or cfg.batch_size < 1 or cfg.context < 64:
        raise SystemExit("--steps and --batch-size must be >= 1 and --context >= 64")
    return cfg


if __name__ == "__main__":
    main(parse_args())
