"""Make the in-repo package importable (python/ on sys.path) and build the shared test fixtures:
tiny random GPT-J models saved by HF transformers with the bundled GPT-J tokenizer."""
import os
import shutil
import sys

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
PYTHON_DIR = os.path.join(REPO, "python")
sys.path.insert(0, PYTHON_DIR)

TOKENIZER_DIR = os.path.join(PYTHON_DIR, "simplescope", "data", "tokenizer")
DEMO_CORPUS = os.path.join(PYTHON_DIR, "simplescope", "data", "demo.jsonl.zst")

#: The default tiny model: GPT-J's real vocabulary (so the real tokenizer works), 4 layers.
TINY = dict(n_embd=64, n_layer=4, n_head=4, rotary_dim=8, vocab_size=50400, n_positions=128,
            bos_token_id=50256, eos_token_id=50256)


def make_tiny_gptj(path, seed=1234, tokenizer=True, **overrides):
    """Saves a random GPT-J (HF transformers, safetensors) to path and returns the HF model.
    Weights are re-drawn with std 1/sqrt(fan_in) so every block changes the residual a lot."""
    import torch
    from transformers import GPTJConfig, GPTJForCausalLM

    cfg = dict(TINY, **overrides)
    torch.manual_seed(seed)
    model = GPTJForCausalLM(GPTJConfig(**cfg)).eval()
    g = torch.Generator().manual_seed(seed + 1)
    from simplescope._randmodel import redraw_weights
    redraw_weights(model, g, bias_std=0.1, ln_std=0.1)
    model.save_pretrained(path, safe_serialization=True)
    if tokenizer:
        for name in os.listdir(TOKENIZER_DIR):
            shutil.copyfile(os.path.join(TOKENIZER_DIR, name), os.path.join(path, name))
    return model


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """Folder of the default tiny GPT-J (config TINY, seed 1234) with tokenizer files."""
    path = str(tmp_path_factory.mktemp("tiny-gptj"))
    make_tiny_gptj(path)
    return path


@pytest.fixture(scope="session")
def hf_model(tiny_dir):
    """The tiny model as HF transformers reads it back (float32, eval mode)."""
    import torch
    from transformers import GPTJForCausalLM

    torch.set_num_threads(1)  # tiny model: threads only add overhead on a busy 2-core machine
    return GPTJForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32).eval()


@pytest.fixture(scope="session")
def hf_tokenizer():
    """HF `tokenizers` on the same tokenizer.json the package ships."""
    from tokenizers import Tokenizer

    return Tokenizer.from_file(os.path.join(TOKENIZER_DIR, "tokenizer.json"))


@pytest.fixture(scope="session")
def model(tiny_dir):
    """simplescope's view of the tiny model (cpu, float32), shared by the tests."""
    import simplescope as ss

    m = ss.load(tiny_dir, device="cpu", dtype="float32")
    yield m
    m.close()


@pytest.fixture(scope="session")
def prompts(hf_tokenizer):
    """A few real documents from the bundled corpus (5 to 60 tokens, well inside the tiny
    model's context of 128) and two hand-made sentences."""
    from simplescope.data_io import read_corpus

    docs = [t for t in read_corpus(DEMO_CORPUS)
            if 5 <= len(hf_tokenizer.encode(t, add_special_tokens=False).ids) <= 60][:6]
    return docs + ["The quick brown fox jumps over the lazy dog.", "1 2 3 4 5 6 7 8"]
