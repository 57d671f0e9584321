"""Shared fixtures: a micro policy (tiny random Llama + the toy char tokenizer), built in about a
second and saved to a temporary folder. Tests never load the full toy base."""
import os
import sys
from pathlib import Path

import pytest
import torch

# Tiny models run fastest on one thread, and a shared 2-core machine makes 2 threads much slower.
torch.set_num_threads(1)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def build_micro_policy(path, seed=0, hidden=32, layers=2, heads=2):
    """Save a tiny random Llama + char tokenizer to `path`; return (path, model, tok)."""
    import torch

    import model as M
    import pretrain

    torch.manual_seed(seed)
    tok = pretrain.build_char_tokenizer()
    net = pretrain.build_model(tok, hidden=hidden, layers=layers, heads=heads, ffn=hidden * 2,
                               context=256)
    net.save_pretrained(path)
    tok.save_pretrained(path)
    model, tok = M.load_policy(str(path), device="cpu")
    return str(path), model, tok


@pytest.fixture(scope="session")
def micro_policy(tmp_path_factory):
    """(path, model, tok) of a tiny random policy. Session-scoped: do not train it in place —
    load your own copy with model.load_policy(path) if a test updates weights."""
    return build_micro_policy(tmp_path_factory.mktemp("micro_policy"))
