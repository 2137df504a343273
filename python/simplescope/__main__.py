"""Command line: ``python -m simplescope eval ...``, ``python -m simplescope demo --out DIR`` and
``python -m simplescope task ...`` (the Patchscopes tasks; simplescope/tasks/cli.py).

eval  evaluates a GPT-J model folder on a JSONL / JSONL.zst corpus (optionally through a preset,
      whose BOS / positions / seed settings apply unless overridden) and writes results.json,
      results.msgpack, prec1.png and surprisal.png into --out, then prints the per-layer table.
demo  the same on an embedded default: a small random GPT-J (made locally with HF transformers
      on first use and cached under $SIMPLESCOPE_CACHE or ~/.cache/simplescope) and the bundled
      corpus data/demo.jsonl.zst with the ``seed`` preset.

User errors (a missing model folder, a bad data file, an unknown preset, method or device) print
one line and exit with status 2; Ctrl-C stops the run and exits with 130.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time

from .methods import BUILTIN_METHODS

PKG_DIR = os.path.dirname(os.path.abspath(__file__))
DATA_DIR = os.path.join(PKG_DIR, "data")
TOKENIZER_DIR = os.path.join(DATA_DIR, "tokenizer")
DEMO_CORPUS = os.path.join(DATA_DIR, "demo.jsonl.zst")
EXIT_USER = 2
EXIT_INTERRUPTED = 130

#: The demo model: a random GPT-J small enough to run anywhere, with GPT-J's real vocabulary so
#: the bundled tokenizer applies.  Changing anything here changes the cache folder's name.
DEMO_SPEC = {
    "config": {"n_embd": 256, "n_layer": 8, "n_head": 8, "rotary_dim": 32, "vocab_size": 50400,
               "n_positions": 2048, "bos_token_id": 50256, "eos_token_id": 50256},
    "seed": 1234,
    # Weights re-drawn with std 1/sqrt(fan_in) (HF's default 0.02 leaves every block close to the
    # identity, so all layers would look alike).
    "init": "linear~N(0,1/fan_in) bias~N(0,0.01) embed~N(0,1) ln=1+N(0,0.01)",
    "format": 1,
}
DEMO_MARKER = "simplescope-demo.json"


class UserError(Exception):
    """A mistake in the command line or its inputs: printed as one line, exit status 2."""


# ------------------------------------------------------------------------------ arguments

def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def parse_methods(text: str) -> list[str]:
    names = _csv(text)
    if not names:
        raise UserError("--methods: no method named")
    for n in names:
        if n not in BUILTIN_METHODS:
            raise UserError(f"--methods: unknown method {n!r} (known: {', '.join(BUILTIN_METHODS)})")
    if len(set(names)) != len(names):
        raise UserError(f"--methods: a method is listed twice in {text!r}")
    return names


def parse_layers(text: str | None) -> list[int] | None:
    """'all' / None, '0,3,7', or inclusive ranges '0-5' (mixable: '0-3,7')."""
    if text is None or text.strip().lower() == "all":
        return None
    out: list[int] = []
    for part in _csv(text):
        m = re.fullmatch(r"(-?\d+)(?:-(\d+))?", part)
        if not m or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))):
            raise UserError(f"--layers: {part!r} is not a layer index or a range such as 0-5")
        lo = int(m.group(1))
        out.extend(range(lo, int(m.group(2)) + 1) if m.group(2) is not None else [lo])
    if not out:
        raise UserError("--layers: no layer named")
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m simplescope",
                                description="Patchscope-style decoding of GPT-J's residual stream, layer by layer.")
    sub = p.add_subparsers(dest="command", metavar="{eval,demo,task}")
    sub.required = True

    def common(sp, max_docs_default):
        sp.add_argument("--methods", default=",".join(BUILTIN_METHODS),
                        help="comma-separated: logitlens, patchscope, simplescope (default: all three)")
        sp.add_argument("--layers", default=None, help="source layers: all (default), 0,3,7 or 0-5")
        sp.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N")
        sp.add_argument("--dtype", default="float32", help="float32 (default), float16, bfloat16")
        sp.add_argument("--max-docs", type=int, default=max_docs_default,
                        help=f"evaluate at most N documents (0 = all; default {max_docs_default})")
        sp.add_argument("--out", required=True, help="output folder (created if missing)")
        sp.add_argument("--no-progress", action="store_true", help="no progress bar")

    e = sub.add_parser("eval", help="evaluate a model folder on a corpus")
    e.add_argument("--model", required=True, help="GPT-J model folder (HF layout) or HF cache folder")
    e.add_argument("--data", required=True, help="corpus: .jsonl, .jsonl.zst, .txt or .txt.zst")
    e.add_argument("--preset", default=None, help="document selection and settings: seed or paper")
    e.add_argument("--positions", default=None,
                   help="random, notebook, paper or last (default: the preset's - seed: notebook, "
                        "paper: paper - else random)")
    e.add_argument("--seed", type=int, default=None, help="seed of the positions, an int64 (default: the preset's, else 42)")
    e.add_argument("--tf32", dest="tf32", action="store_true", default=None,
                   help="CUDA: allow TF32 matmuls during the run (default: torch's setting)")
    e.add_argument("--bos", dest="bos", action="store_true", default=None,
                   help="prepend <|endoftext|> (default: the preset's, else yes)")
    e.add_argument("--no-bos", dest="bos", action="store_false", help="do not prepend <|endoftext|>")
    common(e, 0)

    d = sub.add_parser("demo", help="a small random GPT-J on the bundled corpus (seed preset)")
    common(d, 100)
    from .tasks import cli as tasks_cli  # task: the paper's other experiments (simplescope.tasks)
    tasks_cli.add_parser(sub)
    return p


# ------------------------------------------------------------------------------ demo model

def cache_root() -> str:
    env = os.environ.get("SIMPLESCOPE_CACHE")
    if env:
        return env
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "simplescope")


def demo_model_dir(root: str | None = None) -> str:
    """The cache folder of the demo model (it depends on DEMO_SPEC and the bundled tokenizer)."""
    h = hashlib.sha256(json.dumps(DEMO_SPEC, sort_keys=True).encode())
    with open(os.path.join(TOKENIZER_DIR, "tokenizer.json"), "rb") as f:
        h.update(f.read())
    return os.path.join(root or cache_root(), f"demo-gptj-{h.hexdigest()[:12]}")


def _write_demo_model(path: str) -> None:
    try:
        import torch
        from transformers import GPTJConfig, GPTJForCausalLM
    except ImportError as e:
        raise UserError(f"the demo makes its model with HF transformers, which is not installed ({e}); "
                        "pip install transformers") from None
    torch.manual_seed(DEMO_SPEC["seed"])
    model = GPTJForCausalLM(GPTJConfig(**DEMO_SPEC["config"])).eval()
    g = torch.Generator().manual_seed(DEMO_SPEC["seed"])
    from ._randmodel import redraw_weights
    redraw_weights(model, g, bias_std=0.01, ln_std=0.01)
    model.save_pretrained(path, safe_serialization=True)
    for name in os.listdir(TOKENIZER_DIR):
        shutil.copyfile(os.path.join(TOKENIZER_DIR, name), os.path.join(path, name))
    with open(os.path.join(path, DEMO_MARKER), "w") as f:
        json.dump(DEMO_SPEC, f, indent=1)


def ensure_demo_model(root: str | None = None, log=None) -> str:
    """The demo model folder, made on first use.  It is written into a temporary folder beside
    the final one and renamed into place, so an interrupted first run never leaves a folder that
    looks complete; a concurrent maker's finished copy is kept."""
    final = demo_model_dir(root)
    if os.path.exists(os.path.join(final, DEMO_MARKER)):
        return final
    parent = os.path.dirname(final)
    os.makedirs(parent, exist_ok=True)
    if os.path.isdir(final):  # not ours (no marker): set it aside rather than trust it
        shutil.rmtree(final, ignore_errors=True)
    if log:
        log(f"making the demo model (random GPT-J, {DEMO_SPEC['config']['n_layer']} layers) in {final} ...")
    t0 = time.perf_counter()
    tmp = tempfile.mkdtemp(prefix=".tmp-" + os.path.basename(final) + "-", dir=parent)
    try:
        _write_demo_model(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if not os.path.exists(os.path.join(final, DEMO_MARKER)):
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process finished first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if log:
        log(f"demo model ready in {time.perf_counter() - t0:.1f} s")
    return final


# ------------------------------------------------------------------------------ running

def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_eval(model_dir: str, data: str, out: str, preset=None, methods=BUILTIN_METHODS, layers=None,
             positions=None, seed=None, bos=None, device="cpu", dtype="float32", max_docs=0,
             progress=True, stdout=None, tf32=None):
    """Reads the corpus, evaluates, writes the files and prints the table; returns the Results."""
    from . import data_io

    stdout = stdout or sys.stdout
    _check_eval_args(model_dir, out, max_docs, positions, seed)
    texts, settings = data_io.load_corpus(data, preset=preset, max_docs=max_docs or 0)
    settings = settings or {}
    prepend_bos = settings.get("prepend_bos", True) if bos is None else bos
    positions = positions or settings.get("positions") or "random"
    seed = int(settings.get("seed", 42) if seed is None else seed)
    _log(f"{len(texts)} documents from {data}" + (f" (preset {preset})" if preset else ""))
    res = _evaluate_folder(model_dir, device, dtype, texts, methods=list(methods), positions=positions,
                           seed=seed, prepend_bos=prepend_bos, layers=layers, progress=progress,
                           preset=preset or None, tf32=tf32)
    res.meta.update({"data": os.path.abspath(data), "max_docs": max_docs or 0})
    _log_run(res)
    written = write_outputs(res, out)
    print(res.table(), file=stdout)
    print("wrote " + ", ".join(written), file=stdout)
    return res


POSITION_MODES = ("random", "notebook", "paper", "last")  # as simplescope.model.POSITION_MODES


def _check_eval_args(model_dir: str, out: str, max_docs, positions, seed=None) -> None:
    """UserError for an --out that is a file, a negative --max-docs, an unknown --positions, a
    --seed outside int64 or a model path that is not a folder."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"--out {out} exists and is not a folder")
    if max_docs is not None and max_docs < 0:
        raise UserError(f"--max-docs must be >= 0 (0 = all), got {max_docs}")
    if positions is not None and positions not in POSITION_MODES:
        raise UserError(f"--positions {positions!r}: unknown mode (known: {', '.join(POSITION_MODES)})")
    if seed is not None and not -(1 << 63) <= seed < (1 << 63):
        raise UserError(f"--seed {seed} is outside the int64 range [-2**63, 2**63 - 1]")
    if not os.path.exists(model_dir):
        raise UserError(f"model folder {model_dir} does not exist")
    if not os.path.isdir(model_dir):
        raise UserError(f"model path {model_dir} is not a folder")


def _evaluate_folder(model_dir: str, device: str, dtype: str, texts, **evaluate_args):
    """Loads the model, evaluates the texts and frees the model again."""
    from .model import load

    t0 = time.perf_counter()
    model = load(model_dir, device=device, dtype=dtype)
    _log(f"loaded {model_dir}: {model.n_layers} layers, n_embd {model.config['n_embd']}, "
         f"{device}, {dtype} ({time.perf_counter() - t0:.1f} s)")
    try:
        return model.evaluate(texts, **evaluate_args)
    finally:
        model.close()


def _log_run(res) -> None:
    """Notes on stderr: documents cut to the context, and the evaluation's time."""
    if res.meta.get("n_truncated"):
        _log(f"note: {res.meta['n_truncated']} documents were cut to the model's context")
    stats = res.meta.get("stats") or {}
    if stats.get("seconds") is not None:
        _log(f"evaluated in {stats['seconds']:.2f} s")


def write_outputs(res, out: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")  # files only: never open a window
    import matplotlib.pyplot as plt

    os.makedirs(out, exist_ok=True)
    written = res.save(out)
    for metric in ("prec1", "surprisal"):
        path = os.path.join(out, f"{metric}.png")
        fig = res.plot(metric, path=path)
        plt.close(fig)
        written.append(path)
    return written


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "task":
            from .tasks import cli as tasks_cli
            return tasks_cli.run(args)
        methods = parse_methods(args.methods)
        layers = parse_layers(args.layers)
        common = dict(methods=methods, layers=layers, device=args.device, dtype=args.dtype,
                      max_docs=args.max_docs, progress=not args.no_progress)
        if args.command == "eval":
            run_eval(args.model, args.data, args.out, preset=args.preset, positions=args.positions,
                     seed=args.seed, bos=args.bos, tf32=args.tf32, **common)
        else:
            model_dir = ensure_demo_model(log=_log)
            run_eval(model_dir, DEMO_CORPUS, args.out, preset="seed", **common)
    except KeyboardInterrupt:
        _log("simplescope: interrupted")
        return EXIT_INTERRUPTED
    except (UserError, ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
            PermissionError) as e:
        # InputError is a ValueError: the core's message names the argument, file or key.
        _log(f"simplescope: error: {_one_line(e)}")
        return EXIT_USER
    except Exception as e:
        from ._native import Cancelled, SimplescopeError
        if isinstance(e, Cancelled):
            _log("simplescope: cancelled")
            return EXIT_INTERRUPTED
        if isinstance(e, SimplescopeError):
            _log(f"simplescope: failed: {_one_line(e)}")
            return 1
        raise
    return 0


def _one_line(e: BaseException) -> str:
    """The message's first line (an internal error's Go stack trace stays out of it)."""
    msg = str(e).strip() or type(e).__name__
    if isinstance(e, FileNotFoundError) and e.filename and str(e.filename) not in msg:
        msg = f"{e.filename}: {msg}"
    return " ".join(msg.splitlines()[0].split())


if __name__ == "__main__":
    sys.exit(main())
