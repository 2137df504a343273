"""``python -m simplescope task NAME ...``: each task as a command that writes its results and figures.

    task attribute-extraction --model DIR --task NAME [--out DIR] [--rows 0-99] [--only-correct]
    task describe --model DIR [--entities FILE] [--layers 0-5] [--out DIR]
    task cross-model --source DIR --target DIR [--data FILE | --train FILE --eval FILE] [--out DIR]

``--model demo`` (and ``--source demo`` / ``--target demo``) is the demo model of
``python -m simplescope demo``. The output folder (default tasks-out/<task>[-<name>]) holds
run.json, parts/ (the rows), summary.csv and the figures; running the same command again after an
interruption keeps the finished layer pairs and does the rest.
"""
from __future__ import annotations

import argparse
import os
import sys

TASK_COMMANDS = ("attribute-extraction", "describe", "cross-model")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def add_parser(sub) -> None:
    t = sub.add_parser("task", help="the Patchscopes paper's other experiments (attribute extraction, "
                                    "entity description, cross-model patching)")
    ts = t.add_subparsers(dest="task_command", metavar="{" + ",".join(TASK_COMMANDS) + "}")
    ts.required = True

    def common(p):
        p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N")
        p.add_argument("--dtype", default="float32", help="float32 (default), float16, bfloat16")
        p.add_argument("--out", default=None, help="output folder (default tasks-out/<task>); a rerun resumes it")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")

    a = ts.add_parser("attribute-extraction", help="§4.2: read a subject's attribute out of its hidden state")
    a.add_argument("--model", help="GPT-J model folder, or 'demo'")
    a.add_argument("--task", help="task name (see --list) or a .tsv / .tsv.zst file with the same columns")
    a.add_argument("--list", action="store_true", help="list the bundled tasks and exit")
    a.add_argument("--rows", default=None, help="rows of the filtered table: 0-99, 0,5,7 (default all)")
    a.add_argument("--source-layers", default=None, help="default 0 … n_layer-2")
    a.add_argument("--target-layers", default=None, help="default 0 … n_layer-2")
    a.add_argument("--max-new-tokens", type=int, default=10)
    a.add_argument("--only-correct", action="store_true", help="only rows whose is_correct_baseline is true")
    common(a)

    d = ts.add_parser("describe", help="§4.3: describe entities from their hidden states, layer by layer")
    d.add_argument("--model", required=True, help="GPT-J model folder, or 'demo'")
    d.add_argument("--entities", default=None,
                   help="a .txt (one entity a line) or .tsv (columns entity[, description]); default: the bundled list")
    d.add_argument("--layers", default=None, help="source layers (default 0 … n_layer-2)")
    d.add_argument("--target-layer", type=int, default=None, help="patch into this layer (default: the same layer)")
    d.add_argument("--max-new-tokens", type=int, default=20)
    common(d)

    c = ts.add_parser("cross-model", help="§4.4: affine maps between two models' layers, evaluated by patching")
    c.add_argument("--source", required=True, help="source model folder, or 'demo'")
    c.add_argument("--target", required=True, help="target model folder, or 'demo'")
    c.add_argument("--data", default=None, help="a corpus (.jsonl[.zst], .txt[.zst]) split into training and eval "
                                                "texts (default: the bundled demo corpus)")
    c.add_argument("--train", default=None, help="training corpus (instead of --data)")
    c.add_argument("--eval", default=None, help="evaluation corpus (instead of --data)")
    c.add_argument("--n-train", type=int, default=240, help="training texts (default 240)")
    c.add_argument("--n-eval", type=int, default=60, help="evaluation texts (default 60)")
    c.add_argument("--positions-per-text", type=int, default=4, help="training positions per text (default 4)")
    c.add_argument("--source-layers", default=None, help="default all")
    c.add_argument("--target-layers", default=None, help="default all")
    c.add_argument("--seed", type=int, default=42)
    c.add_argument("--save-maps", action="store_true", help="keep the fitted maps in OUT/maps")
    common(c)


def _rows(text):
    from ..__main__ import UserError, parse_layers
    if text is None:
        return None
    try:
        return parse_layers(text)
    except UserError as e:
        raise UserError(str(e).replace("--layers", "--rows").replace("layer index", "row")) from None


def _layers(text, flag):
    from ..__main__ import UserError, parse_layers
    try:
        return parse_layers(text)
    except UserError as e:
        raise UserError(str(e).replace("--layers", flag)) from None


def _model_dir(arg, flag):
    from ..__main__ import UserError, ensure_demo_model
    if arg is None:
        raise UserError(f"{flag} is required")
    if arg == "demo" and not os.path.exists(arg):
        return ensure_demo_model(log=_log)
    if not os.path.isdir(arg):
        raise UserError(f"{flag} {arg}: no such model folder")
    return arg


def _load(path, args):
    from ..model import load
    m = load(path, device=args.device, dtype=args.dtype)
    _log(f"loaded {path}: {m.n_layers} layers, n_embd {m.config['n_embd']}, {args.device}, {args.dtype}")
    return m


def _out(args, default):
    from ..__main__ import UserError
    out = args.out or os.path.join("tasks-out", default)
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"--out {out} exists and is not a folder")
    return out


def run(args, stdout=None) -> int:
    """Runs the task the parsed arguments name; UserError / ValueError for bad input."""
    from . import attribute
    stdout = stdout or sys.stdout
    cmd = args.task_command
    progress = not args.no_progress
    if cmd == "attribute-extraction":
        if args.list:
            for name in attribute.task_names():
                t = attribute.load_task(name)
                print(f"{attribute.task_group(name)}/{name}\t{len(t.df)} rows", file=stdout)
            return 0
        from ..__main__ import UserError
        if not args.task:
            raise UserError("--task is required (see --list)")
        attribute.load_task(args.task)  # an unknown name or a bad file fails before the model loads
        model_dir = _model_dir(args.model, "--model")
        out = _out(args, f"attribute-extraction-{attribute._resolve(args.task)[0]}")
        kw = dict(rows=_rows(args.rows), source_layers=_layers(args.source_layers, "--source-layers"),
                  target_layers=_layers(args.target_layers, "--target-layers"), max_new_tokens=args.max_new_tokens,
                  only_correct=args.only_correct)
        with _load(model_dir, args) as model:
            res = _interruptible(out, lambda: attribute.attribute_extraction(model, args.task, out=out, progress=progress, **kw))
        m = res.meta
        _log(f"task {m['task']}: {m['n_file_rows']} rows in the file, {m['n_filtered']} after the paper's filters "
             f"(dropped: {m['dropped']}), {m['n_skipped_position']} skipped (position_source past the end of the source)")
        grid = res.accuracy()
        print(f"accuracy, source layer (rows) x target layer (columns), {m['n_samples']} samples:", file=stdout)
        print(grid.round(3).to_string(), file=stdout)
    elif cmd == "describe":
        from .describe import ENTITIES_FILE, describe, read_entities
        entities, refs = read_entities(args.entities or ENTITIES_FILE)
        model_dir = _model_dir(args.model, "--model")
        out = _out(args, "describe")
        with _load(model_dir, args) as model:
            res = _interruptible(out, lambda: describe(model, entities, layers=_layers(args.layers, "--layers"),
                                                       references=refs, target_layer=args.target_layer,
                                                       max_new_tokens=args.max_new_tokens, out=out, progress=progress))
        print(res.summary().round(3).to_string(index=False), file=stdout)
    elif cmd == "cross-model":
        from .cross_model import cross_model
        train, evals = _corpora(args)
        src_dir, tgt_dir = _model_dir(args.source, "--source"), _model_dir(args.target, "--target")
        out = _out(args, "cross-model")
        with _load(src_dir, args) as source:
            with (_load(tgt_dir, args) if os.path.realpath(tgt_dir) != os.path.realpath(src_dir)
                  else _Same(source)) as target:
                res = _interruptible(out, lambda: cross_model(
                    source, target, train, evals, _layers(args.source_layers, "--source-layers"),
                    _layers(args.target_layers, "--target-layers"), positions_per_text=args.positions_per_text,
                    seed=args.seed, out=out, progress=progress, save_maps=args.save_maps))
        for mt in ("prec1", "surprisal"):
            print(f"{mt}, source layer (rows) x target layer (columns), {res.meta['n_eval']} texts:", file=stdout)
            print(res.grid(mt).round(3).to_string(), file=stdout)
    print(f"wrote {out}", file=stdout)
    return 0


class _Same:
    """The source model as the target too (one load)."""

    def __init__(self, m):
        self.m = m

    def __enter__(self):
        return self.m

    def __exit__(self, *exc):
        return False


def _corpora(args):
    from ..__main__ import DEMO_CORPUS, UserError
    from ..data_io import read_corpus
    if args.n_train < 1 or args.n_eval < 1:
        raise UserError("--n-train and --n-eval must be >= 1")
    if args.train or args.eval:
        if not (args.train and args.eval) or args.data:
            raise UserError("give --train and --eval together, or --data alone")
        return read_corpus(args.train, max_docs=args.n_train), read_corpus(args.eval, max_docs=args.n_eval)
    texts = read_corpus(args.data or DEMO_CORPUS, max_docs=args.n_train + args.n_eval)
    if len(texts) < args.n_train + args.n_eval:
        raise UserError(f"{args.data or DEMO_CORPUS} holds {len(texts)} documents: too few for --n-train "
                        f"{args.n_train} and --n-eval {args.n_eval}")
    return texts[:args.n_train], texts[args.n_train:]


def _interruptible(out, fn):
    try:
        return fn()
    except KeyboardInterrupt:
        _log(f"interrupted: the finished layer pairs are in {out}; run the same command again to continue")
        raise
