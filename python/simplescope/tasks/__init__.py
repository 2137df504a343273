"""The Patchscopes paper's other experiments as tasks (arXiv 2401.06102, §4.2–§4.4), built on
Model.hidden_states / patch / generate:

    res = ss.tasks.attribute_extraction(model, "country_capital_city")   # §4.2, source x target grid
    res = ss.tasks.describe(model, ["Paris", "Albert Einstein"], references=[...])   # §4.3, by layer
    res = ss.tasks.cross_model(source, target, train_texts, eval_texts)   # §4.4, source x target grid

Each returns a result with ``df`` (one row per example and layer pair), ``summary()``, ``plot()``,
``save(dir)`` and ``ss.tasks.TaskResult.load(dir)``; with ``out=DIR`` a run writes its rows as it
goes and, started again with the same arguments, keeps the finished layer pairs. Each is also a
command: ``python -m simplescope task {attribute-extraction,describe,cross-model} ...``.
"""
from ._store import TaskResult
from .attribute import AttributeResult, attribute_extraction, load_task, task_names
from .cross_model import CrossModelResult, cross_model, fit_maps
from .describe import DESCRIBE_PROMPT, DescribeResult, describe, rouge_l

#: The tasks, by their command names.
TASKS = {"attribute-extraction": attribute_extraction, "describe": describe, "cross-model": cross_model}

__all__ = ["TaskResult", "AttributeResult", "DescribeResult", "CrossModelResult", "attribute_extraction",
           "describe", "cross_model", "fit_maps", "load_task", "task_names", "rouge_l", "DESCRIBE_PROMPT", "TASKS"]
