"""`rlft export RUN_DIR [--merged] [--out DIR]`: what a server needs to decode a trained run the way it trained.

    rlft export runs/intent_grpo                 # adapter + tokenizer + serving.json in runs/intent_grpo/export
    rlft export runs/intent_grpo --merged --out runs/intent_grpo_merged   # base with the adapter merged in

Reads a finished `rlft train` output folder (adapter, `recipe.yaml`, `metrics.json`) and writes into `--out`:

- the adapter and tokenizer (default), or with `--merged` the base model with the adapter merged in
  (`merge_and_unload`, loaded unquantized even for a QLoRA run) saved with the tokenizer: a plain transformers
  directory that vLLM, `transformers serve` or `AutoModelForCausalLM.from_pretrained` load without rlft or PEFT;
- `serving.json`: system prompt, prompt template, the `decoding:` section (prefill, label constraint, suffix), the
  label list, the vLLM structured-outputs regex (`rlft.decoding.prompting.structured_output_regex`), a chat-templated prompt
  example with its token ids, and request bodies for an OpenAI-compatible server (docs/evaluation.md#serving).

`serving.json` passes through `rlft.run.redact.redact_secrets`. An `--out` holding an earlier export is replaced whole;
any other non-empty folder is refused. Not here: evaluating the export (`rlft eval`
takes the adapter folder) or launching a server.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

from rlft.errors import UserError
from rlft.run.redact import redact_secrets

SERVING_FILE = "serving.json"
EXAMPLE_UTTERANCE = "I want my money back"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "vocab.json", "merges.txt", "tokenizer.model", "added_tokens.json", "generation_config.json")


class ExportError(UserError):
    """A run folder `rlft export` cannot export (not a finished run, no adapter, bad --out)."""


def load_run(run_dir: str | Path) -> tuple[Any, dict[str, Any]]:
    """(recipe, metrics) of a finished run; a folder without them is a one-line `ExportError`."""
    from rlft.recipe.load import load_recipe

    run = Path(run_dir)
    if not run.is_dir():
        raise ExportError(f"rlft export {run_dir}: not a directory (expected an `rlft train` output folder)")
    for name in ("recipe.yaml", "metrics.json"):
        if not (run / name).is_file():
            raise ExportError(f"rlft export {run_dir}: no {name} in it; expected a finished `rlft train` output "
                              f"folder (adapter, recipe.yaml, metrics.json)")
    recipe = load_recipe(run / "recipe.yaml", check=False)
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    return recipe, metrics


def example_prompt(recipe: Any, labels: list[str], utterance: str = EXAMPLE_UTTERANCE) -> list[dict[str, str]]:
    """A conversational prompt built the way training built them (system prompt + prompt template)."""
    from rlft.data.shapes import as_prompt, system_message, template_fields

    values = {name: utterance for name in template_fields(recipe.data.prompt_template)}
    return as_prompt(system_message(recipe.data, labels), recipe.data.prompt_template.format(**values))


def serving_config(recipe: Any, metrics: dict[str, Any], tokenizer: Any, model_format: str,
                   model_name: str = "rlft-model") -> dict[str, Any]:
    """The `serving.json` record: every setting a server needs to decode as training did (secrets redacted)."""
    from rlft.decoding.prompting import prompt_ids, structured_output_regex
    from rlft.run.outputs import portable_base
    from rlft import __version__

    labels = list(metrics.get("labels") or recipe.data.labels or [])
    d = recipe.decoding
    if d.constrain_labels and not labels:
        raise ExportError(f"{recipe.source_file}: decoding.constrain_labels is on but the run recorded no labels")
    regex = structured_output_regex(labels, d)
    # redacted before the ids are computed, so text, messages and ids all say the same (a credential in a URL in
    # the system prompt is masked everywhere; the server must then be given the real prompt by other means)
    messages = redact_secrets(example_prompt(recipe, labels))
    system = messages[0]["content"] if messages and messages[0]["role"] == "system" else None
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = prompt_ids(tokenizer, messages, d)
    max_tokens = recipe.evaluation.max_new_tokens
    assistant = [{"role": "assistant", "content": d.prefill}] if d.prefill else []
    chat: dict[str, Any] = {"model": model_name, "temperature": 0, "max_tokens": max_tokens,
                            "messages": messages + assistant}
    if d.prefill:  # vLLM: continue the assistant turn that starts with the prefill instead of opening a new one
        chat.update(add_generation_prompt=False, continue_final_message=True)
    completion: dict[str, Any] = {"model": model_name, "temperature": 0, "max_tokens": max_tokens, "prompt": ids}
    for body in (chat, completion):
        if regex:
            body["structured_outputs"] = {"regex": regex}
        if d.stop_at_suffix and not d.constrain_labels:
            body["stop"] = [d.label_suffix]
            body["include_stop_str_in_output"] = True
        if len(d.reply_stop) > 1:  # one character is in the regex already
            body["stop"] = [d.reply_stop]
    base_name, _ = portable_base(recipe)
    record = {
        "rlft_version": __version__,
        "format": model_format,
        "base_model": base_name,
        "algorithm": recipe.algorithm,
        "system_prompt": system,
        "prompt_template": recipe.data.prompt_template,
        "decoding": dataclasses.asdict(d),
        "labels": labels,
        "structured_output_regex": regex,
        "regex_applies_to": "the generated text after the prefill" if regex else None,
        "max_new_tokens": max_tokens,
        "prompt_example": {"messages": messages, "text": text + d.prefill, "prompt_ids": ids,
                           "note": "prompt_ids are rlft.decoding.prompting.prompt_ids (chat template ids + prefill ids): the "
                                   "exact tokens training decoded after; `text` re-tokenized may differ at the "
                                   "template/prefill seam"},
        "requests": {"chat_completions": chat, "completions": completion,
                     "note": "vLLM OpenAI server bodies (structured_outputs needs vLLM >= 0.10.2; older vLLM takes "
                             "guided_regex). transformers serve accepts neither structured_outputs nor "
                             "continue_final_message: send `completions` with prompt_example.text (docs/"
                             "evaluation.md#serving)"},
    }
    return redact_secrets(record)


def _copy_files(src: Path, out: Path, names: tuple[str, ...]) -> list[str]:
    copied = []
    for name in names:
        if (src / name).is_file():
            shutil.copyfile(src / name, out / name)
            copied.append(name)
    return copied


def export(run_dir: str | Path, out: str | Path | None = None, merged: bool = False) -> dict[str, Any]:
    """Export a finished run (see the module docstring); returns the serving record plus `out` and `files`.

    >>> import rlft
    >>> info = rlft.export("runs/intent_grpo", merged=True)           # doctest: +SKIP
    >>> info["structured_output_regex"], info["out"]                  # doctest: +SKIP
    """
    recipe, metrics = load_run(run_dir)
    run = Path(run_dir)
    out_dir = Path(out) if out is not None else run / "export"
    if out_dir.resolve() == run.resolve():
        raise ExportError(f"rlft export {run_dir}: --out must differ from the run folder")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) \
            and not (out_dir / SERVING_FILE).is_file():
        raise ExportError(f"rlft export --out {out_dir}: exists and is not an earlier export (no {SERVING_FILE}); "
                          f"choose a new or empty folder")
    has_adapter = (run / "adapter_config.json").is_file()
    if not has_adapter and recipe.adapter.type != "none":
        raise ExportError(f"rlft export {run_dir}: no adapter_config.json in it (the run saved no adapter)")
    if (out_dir / SERVING_FILE).is_file():  # an earlier export: replaced whole, never mixed with this one
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(run))
    if merged and has_adapter:
        _write_merged(recipe, run, out_dir, tokenizer)
        model_format = "merged"
    elif merged or not has_adapter:  # a full fine-tune: the run folder already holds the whole model
        _copy_files(run, out_dir, tuple(p.name for p in run.iterdir() if p.is_file() and p.suffix in
                                        (".safetensors", ".json", ".jinja", ".txt", ".model")))
        model_format = "full"
    else:
        _copy_files(run, out_dir, ADAPTER_FILES + TOKENIZER_FILES)
        model_format = "adapter"
    record = serving_config(recipe, metrics, tokenizer, model_format)
    (out_dir / SERVING_FILE).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return {**record, "out": str(out_dir), "files": sorted(p.name for p in out_dir.iterdir())}


def _write_merged(recipe: Any, run: Path, out_dir: Path, tokenizer: Any) -> None:
    """Base (unquantized, on CPU) + the run's adapter, merged and saved as a plain transformers model."""
    from peft import PeftModel

    from rlft.run.models import load_model

    model_cfg = dataclasses.replace(recipe.model, device="cpu")
    base, _ = load_model(model_cfg, dataclasses.replace(recipe.adapter, type="none"), "cpu")
    model = PeftModel.from_pretrained(base, str(run)).merge_and_unload()
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))


def _run(args: argparse.Namespace) -> int:
    info = export(args.run_dir, args.out, args.merged)
    print(f"[rlft] {info['format']} model + {SERVING_FILE} in {info['out']}")
    if info["structured_output_regex"]:
        print(f"[rlft] structured-outputs regex: {info['structured_output_regex']}")
    return 0


def add_export_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("export", help="write a trained run for serving: adapter or merged model + serving.json",
                       description="Export a finished `rlft train` run: the adapter (or, with --merged, the base "
                                   "model with the adapter merged in) plus serving.json (system prompt, prefill, "
                                   "label regex for vLLM structured outputs, request examples).")
    p.add_argument("run_dir", help="an `rlft train` output folder")
    p.add_argument("--merged", action="store_true", help="merge the adapter into the base model (merge_and_unload)")
    p.add_argument("--out", help="export folder (default: RUN_DIR/export)")
    p.set_defaults(func=_run)
    return p
