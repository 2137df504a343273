"""simplescope.tasks: attribute extraction and entity description against HF transformers hooks and
generate (patch_reference, one row at a time), the paper's filters, resumable output, Ctrl-C, saving
and loading, the CLI, and clear errors before any work. Tiny random GPT-J, float32."""
import os

import numpy as np
import pytest

import simplescope as ss
from simplescope import __main__ as cli
from simplescope.tasks import attribute as ae
from simplescope.tasks import describe as de
from patch_reference import block_output, generate_tokens

TASKS = ["country_capital_city", "star_constellation", "company_ceo"]


def ids(tok, text):
    return tok.encode(text, add_special_tokens=False).ids


def reference_generation(hf, tok, source, pos_source, layer_source, target, pos_target, layer_target, n):
    """The paper's patch with HF hooks: block output of the source at (layer, position) written
    into the target's block output, then greedy HF generate (patch in the prompt pass only)."""
    src = ids(tok, source)
    vec = block_output(hf, src, layer_source, pos_source)
    tgt = ids(tok, target)
    new = generate_tokens(hf, tgt, n, vec, layer_target, [pos_target % len(tgt)])
    return tok.decode(new, skip_special_tokens=False)


# ---------------------------------------------------------------------- attribute extraction

@pytest.fixture(scope="module")
def skipped_row(hf_tokenizer):
    """company_ceo: the first row of the filtered table whose position_source is past its source."""
    df = ae.load_task("company_ceo").df
    for i, (s, p) in enumerate(zip(df["prompt_source"], df["position_source"])):
        if p >= len(ids(hf_tokenizer, s)):
            return i, int(df["row_id"][i])
    raise AssertionError("company_ceo has no row past the end")


@pytest.mark.parametrize("task", TASKS)
def test_attribute_extraction_matches_hf(model, hf_model, hf_tokenizer, task, skipped_row):
    rows = [0, 5]
    if task == "company_ceo":
        rows.append(skipped_row[0])
    res = ss.tasks.attribute_extraction(model, task, rows=rows, progress=False)
    table = ae.load_task(task).df
    assert sorted(res.pairs()) == [(a, b) for a in range(3) for b in range(3)]  # 4 layers: the paper's 0 … 2
    assert len(res.df) == 2 * 9
    if task == "company_ceo":
        assert res.meta["n_skipped_position"] == 1 and res.meta["skipped_rows"] == [skipped_row[1]]
    for r in res.df.itertuples():
        row = table.iloc[r.sample]
        assert r.row_id == row["row_id"] and r.object == row["object"]
        want = reference_generation(hf_model, hf_tokenizer, row["prompt_source"], row["position_source"],
                                    r.layer_source, row["prompt_target"], row["position_target"], r.layer_target, 10)
        assert r.generation == want, f"{task} sample {r.sample} layers {r.layer_source}->{r.layer_target}"
        assert r.is_correct == (row["object"].replace(" ", "") in want.replace(" ", ""))
    acc = res.accuracy()
    assert acc.shape == (3, 3)
    np.testing.assert_allclose(acc.to_numpy(), res.df.groupby(["layer_source", "layer_target"])["is_correct"]
                               .mean().unstack().to_numpy())


def test_is_correct_is_the_papers_rule():
    assert ae.is_correct("Washington D.C.", " Washington D. C. is")
    assert ae.is_correct("New York", "NewYork City")
    assert not ae.is_correct("Paris", " paris")


def test_paper_filters():
    """Empty and newline sources go, then the two task-specific drops; only_correct first."""
    star = ae.load_task("star_constellation")
    assert star.dropped == {"empty_source": 21, "newline_in_source": 18, "task_specific": 1}
    assert star.n_file - sum(star.dropped.values()) == len(star.df) == 184
    assert not star.df["prompt_source"].str.contains("service").any()
    obj = ae.load_task("object_superclass")
    assert obj.dropped["task_specific"] == 1
    cap = ae.load_task("country_capital_city", only_correct=True)
    assert cap.dropped["not_correct_baseline"] == 15 and cap.df["is_correct_baseline"].all()
    assert len(ae.task_names()) == 22
    assert not any((t.df["prompt_source"] == "").any() or t.df["prompt_source"].str.contains("\n").any()
                   for t in map(ae.load_task, ae.task_names()))


def test_resume_after_interrupt_redoes_only_missing_pairs(model, tmp_path, monkeypatch):
    kw = dict(rows=[0, 1, 2], source_layers=[0, 2], target_layers=[1, 2], progress=False, unit_rows=1)
    full = ss.tasks.attribute_extraction(model, "country_capital_city", **kw)
    out = tmp_path / "run"
    real = model.generate
    calls = []

    def interrupting(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(model, "generate", interrupting)
    with pytest.raises(KeyboardInterrupt):
        ss.tasks.attribute_extraction(model, "country_capital_city", out=str(out), **kw)
    assert len(os.listdir(out / "parts")) == 2  # the two finished pairs are on disk
    calls.clear()
    monkeypatch.setattr(model, "generate", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    again = ss.tasks.attribute_extraction(model, "country_capital_city", out=str(out), **kw)
    assert len(calls) == 2  # only the two missing pairs ran
    assert again.df.equals(full.df)
    loaded = ss.tasks.TaskResult.load(out)
    assert isinstance(loaded, ss.tasks.AttributeResult) and loaded.df.equals(full.df)
    assert loaded.meta["task"] == "country_capital_city"
    for name in ("run.json", "summary.csv", "accuracy.png"):
        assert os.path.getsize(out / name) > 0
    with pytest.raises(ValueError, match="other settings"):
        ss.tasks.attribute_extraction(model, "country_capital_city", out=str(out), **dict(kw, rows=[0, 1]))


def test_save_load_plot(model, tmp_path):
    res = ss.tasks.attribute_extraction(model, "food_from_country", rows=[0, 1], source_layers=[1],
                                        target_layers=[0, 2], progress=False)
    res.save(tmp_path / "saved")
    back = ss.tasks.TaskResult.load(tmp_path / "saved")
    assert back.df.equals(res.df) and back.meta["n_samples"] == res.meta["n_samples"]
    assert back.summary().equals(res.summary())
    fig = back.plot(path=tmp_path / "acc.png")
    assert fig is not None and os.path.getsize(tmp_path / "acc.png") > 0


def _write_tsv(path, rows, columns):
    import pandas as pd
    pd.DataFrame(rows, columns=columns).to_csv(path, sep="\t")
    return str(path)


COLUMNS = ["prompt_source", "position_source", "prompt_target", "position_target", "object", "subject"]


@pytest.mark.parametrize("kwargs, match", [
    (dict(task="country_capital"), r"unknown task 'country_capital' \(known: company_ceo, country_capital_city"),
    (dict(task="country_capital_city", source_layers=[4]), r"source_layers: layer 4 out of range \[0, 4\)"),
    (dict(task="country_capital_city", target_layers=[-1]), r"target_layers: layer -1 out of range"),
    (dict(task="country_capital_city", rows=[500]), "rows: position 500 outside the filtered table"),
    (dict(task="country_capital_city", max_new_tokens=0), "max_new_tokens"),
    (dict(task="missing-object"), "lacks the column object"),
    (dict(task="bad-target-position"), "row 0: position_target -9 outside the target"),
    (dict(task="bad-source-position"), "row 1: position_source -30 outside the source prompt"),
])
def test_bad_input_fails_before_any_work(model, tmp_path, kwargs, match):
    files = {
        "missing-object": _write_tsv(tmp_path / "a.tsv", [["the cat", 1, "x is", -2, "cat"]],
                                     [c for c in COLUMNS if c != "object"]),
        "bad-target-position": _write_tsv(tmp_path / "b.tsv", [["the cat", 1, "Name x", -9, "o", "s"]], COLUMNS),
        "bad-source-position": _write_tsv(tmp_path / "c.tsv", [["the cat", 1, "Name x", -1, "o", "s"],
                                                                ["the dog", -30, "Name x", -1, "o", "s"]], COLUMNS),
    }
    kwargs = dict(kwargs)
    kwargs["task"] = files.get(kwargs["task"], kwargs["task"])
    out = tmp_path / "out"
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        ss.tasks.attribute_extraction(model, out=str(out), progress=False, **kwargs)
    assert not out.exists()


def test_custom_tsv_task(model, tmp_path):
    path = _write_tsv(tmp_path / "mine.tsv", [["The Eiffel Tower", 3, "The city of x", -1, "Paris", "Eiffel Tower"]],
                      COLUMNS)
    res = ss.tasks.attribute_extraction(model, path, source_layers=[0], target_layers=[0], progress=False)
    assert res.meta["task"] == "mine" and len(res.df) == 1


def test_cli_attribute_extraction(tiny_dir, tmp_path, capsys):
    out = tmp_path / "cli"
    rc = cli.main(["task", "attribute-extraction", "--model", tiny_dir, "--task", "country_capital_city",
                   "--rows", "0-1", "--source-layers", "0", "--target-layers", "0,2", "--out", str(out),
                   "--no-progress"])
    assert rc == 0
    assert "accuracy" in capsys.readouterr().out
    res = ss.tasks.TaskResult.load(out)
    assert res.pairs() == [(0, 0), (0, 2)] and len(res.df) == 4
    assert os.path.getsize(out / "accuracy.png") > 0
    rc = cli.main(["task", "attribute-extraction", "--model", tiny_dir, "--task", "nope", "--out", str(out)])
    assert rc == 2 and "unknown task 'nope'" in capsys.readouterr().err


# ---------------------------------------------------------------------- entity description

ENTITIES = ["Paris", "Albert Einstein", "Microsoft"]
REFS = ["capital of France", "German-born theoretical physicist", "American technology corporation"]


def test_describe_matches_hf(model, hf_model, hf_tokenizer):
    res = ss.tasks.describe(model, ENTITIES, references=REFS, progress=False)
    assert sorted(res.pairs()) == [(0, 0), (1, 1), (2, 2)]
    tgt = ids(hf_tokenizer, ss.tasks.DESCRIBE_PROMPT)
    assert hf_tokenizer.decode([tgt[-1]]) == " x"
    for r in res.df.itertuples():
        src = ids(hf_tokenizer, r.entity)
        vec = block_output(hf_model, src, r.layer_source, len(src) - 1)
        full = hf_tokenizer.decode(generate_tokens(hf_model, tgt, 20, vec, r.layer_target, [len(tgt) - 1]))
        assert full.startswith(r.generation), f"{r.entity} layer {r.layer_source}"
        want = full.split(",", 1)[0].strip()
        assert r.description == want, f"{r.entity} layer {r.layer_source}"
        assert r.rougeL == pytest.approx(rouge_reference(r.reference, want), abs=1e-12)
    summ = res.summary()
    np.testing.assert_allclose(summ["rougeL"], res.df.groupby("layer_source")["rougeL"].mean().to_numpy())


def rouge_reference(ref, pred):
    from rouge_score import rouge_scorer
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True).score(ref, pred)["rougeL"].fmeasure


def lcs_f(ref: str, pred: str) -> float:
    """RougeL F-measure by hand (lowercase, alphanumeric tokens, no stemming)."""
    import re
    a, b = re.findall(r"[a-z0-9]+", ref.lower()), re.findall(r"[a-z0-9]+", pred.lower())
    if not a or not b:
        return 0.0
    t = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a)):
        for j in range(len(b)):
            t[i + 1][j + 1] = t[i][j] + 1 if a[i] == b[j] else max(t[i][j + 1], t[i + 1][j])
    p, r = t[-1][-1] / len(b), t[-1][-1] / len(a)
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def test_rouge_l_equals_rouge_score_on_fixed_strings():
    refs = ["the cat sat on the mat", "American actor", "Capital city of France", "physicist", ""]
    preds = ["the cat was on the mat", "an American film actor", "city in France", "", "anything"]
    got = ss.tasks.rouge_l(refs, preds, use_stemmer=False)
    np.testing.assert_allclose(got, [lcs_f(r, p) for r, p in zip(refs, preds)], atol=1e-12)
    assert got[0] == pytest.approx(5 / 6)
    stem = ss.tasks.rouge_l(["running dogs"], ["run dog"], use_stemmer=True)
    assert stem[0] == pytest.approx(rouge_reference("running dogs", "run dog")) == pytest.approx(1.0)


def test_describe_fixed_target_layer_resume_and_cli(model, tiny_dir, tmp_path, capsys):
    out = tmp_path / "d"
    a = ss.tasks.describe(model, ENTITIES[:2], layers=[0, 2], target_layer=1, out=str(out), progress=False)
    assert a.pairs() == [(0, 1), (2, 1)] and np.isnan(a.df["rougeL"]).all() and a.figures() == []
    b = ss.tasks.describe(model, ENTITIES[:2], layers=[0, 2], target_layer=1, out=str(out), progress=False)
    assert b.df.equals(a.df)
    ents = tmp_path / "e.tsv"
    ents.write_text("entity\tdescription\nParis\tcapital of France\nTokyo\tcapital of Japan\n")
    rc = cli.main(["task", "describe", "--model", tiny_dir, "--entities", str(ents), "--layers", "0,1",
                   "--out", str(tmp_path / "dc"), "--no-progress"])
    assert rc == 0 and "rougeL" in capsys.readouterr().out
    assert os.path.getsize(tmp_path / "dc" / "rougeL.png") > 0


@pytest.mark.parametrize("kwargs, match", [
    (dict(entities=[]), "entities: none given"),
    (dict(entities=["Paris", ""]), "entities row 1"),
    (dict(entities=["Paris"], references=["a", "b"]), "references: 2 descriptions for 1 entities"),
    (dict(entities=["Paris"], references={"Rome": "a"}), "no description for entity 'Paris'"),
    (dict(entities=["Paris"], layers=[7]), r"layers: layer 7 out of range \[0, 4\)"),
    (dict(entities=["Paris"], prompt="Syria: country, y"), "has no token 'x'"),
])
def test_describe_bad_input(model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ss.tasks.describe(model, progress=False, **kwargs)


def test_describe_cuts_at_the_separator(model):
    """A separator the random model does produce: generation stops there and the description is
    the text before it (what a full generation cut at its first separator gives)."""
    free = ss.tasks.describe(model, ENTITIES[:2], layers=[1], separator=None, progress=False)
    g = free.df["generation"][0]
    sep = g[4:6]
    assert sep.strip(), "the reference generation is too short to cut"
    refs = [g.split(sep, 1)[0].strip() + " extra words", "unrelated"]
    cut = ss.tasks.describe(model, ENTITIES[:2], layers=[1], separator=sep, references=refs, progress=False)
    for a, b in zip(free.df.itertuples(), cut.df.itertuples()):
        assert b.description == a.generation.split(sep, 1)[0].strip()
        assert a.generation.startswith(b.generation)
        assert b.rougeL == pytest.approx(rouge_reference(b.reference, b.description), abs=1e-12)
    assert len(cut.df["generation"][0]) < len(g)
    assert 0 < cut.df["rougeL"][0] < 1  # the description is the reference less two words
