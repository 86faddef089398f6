"""Oracle recipes: a prompt that shows the model something derived from the row's gold label.

A deployed agent gets the customer's message and nothing that was read off a gold label, so a recipe whose prompt
does show such text measures an upper bound, not what the agent will score in production. rlft formats row columns
into prompts in one place, `data.prompt_template` (`rlft.data.loading`: training and evaluation prompts, `rlft label`,
`rlft export`'s example); `data.system_prompt` is not formatted with row columns (only `{labels}`, the label set, is
replaced), so it cannot read a row's gold label. Two kinds of column are gold-derived:

* the label column itself (`data.label_column`, e.g. `{intent}`);
* `policy` while `data.policies` is set: `rlft.data.loading.add_policy_column` fills it with the text of the row's *gold*
  label (a `{policy}` column from the user's own file, without `data.policies`, is not rlft's to judge).

`decoding.lookup` is not an oracle: it appends the text of the label the *model* chose.
`rlft check`, the evaluation report header and the model card print `oracle_note` for such a recipe.
"""

from __future__ import annotations

import string
from typing import Any

POLICY_COLUMN = "policy"  # the column `data.policies` adds (rlft.data.loading.add_policy_column)


def _field_names(template: str) -> list[str]:
    """Column names a `str.format` template reads, in order (nested fields in format specs included).

    `{intent.upper}` or `{intent[0]}` read the column `intent`; `{}` / `{0}` read no column.
    """
    names: list[str] = []
    for _, field, spec, _ in string.Formatter().parse(template):
        if field:
            base = field.split(".", 1)[0].split("[", 1)[0]
            if base and not base.isdigit():
                names.append(base)
        if spec and "{" in spec:
            names += _field_names(spec)
    return names


def oracle_columns(recipe: Any) -> list[str]:
    """The gold-derived columns the recipe's prompt reads (`policy`, the label column), in template order.

    `recipe` is an `rlft.recipe.sections.Recipe` (only its `data` section is read). An empty list: not an oracle. A template
    that cannot be parsed (unbalanced braces) reads nothing here; `rlft validate` reports it.
    """
    data = recipe.data
    gold = {data.label_column}
    if data.policies:
        gold.add(POLICY_COLUMN)
    try:
        fields = _field_names(data.prompt_template or "")
    except ValueError:
        return []
    return [f for f in dict.fromkeys(fields) if f in gold]


def oracle_note(recipe: Any) -> str | None:
    """One line saying the recipe is an oracle and why its figures are an upper bound; None when it is not one."""
    columns = oracle_columns(recipe)
    if not columns:
        return None
    label = recipe.data.label_column
    parts = [f"{{{c}}}, the gold {label}'s text from data.policies" if c == POLICY_COLUMN and c != label
             else f"{{{c}}}, the gold {label} itself" for c in columns]
    return (f"oracle: the prompt reads {'; and '.join(parts)}; a deployed agent has no gold label, so these figures "
            f"are an upper bound, not a headline")
