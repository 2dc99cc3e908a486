"""Small tokenizers built on the spot (no download) that carry real chat templates.

They are trained BPE tokenizers with the special tokens of each template family, so the mask
and drift logic is tested on the same kind of object a real model ships.
"""

from __future__ import annotations

import importlib.util
import re
from functools import lru_cache
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

CHATML_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Meta's Llama 3 (8B Instruct) template.
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

# A template whose rendering of a message depends on the whole chat (it numbers messages from the
# end), so rendering after a fixed base conversation is not a prefix: the fallback path.
COUNTDOWN_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + ' ' + "
    "(messages|length - loop.index0)|string + '\n' + message['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_TEXT = [
    "The Veltran Observatory was founded in 1873 on the island of Qoruna.",
    "Search the knowledge corpus with a query and answer the question.",
    '{"name": "search_corpus", "parameters": {"query": "capital of Qoruna"}}',
    "Result 1: The capital is Maribel. ------ Result 2: No results found.",
    "<think> I should search first. </think> The answer is Paris, 42, 1999.",
    "system user assistant tool ipython You are a helpful research assistant.",
]


def _train(specials: list[str]) -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_TEXT * 20, trainer=trainer)
    return tok


@lru_cache(maxsize=None)
def chatml_tokenizer() -> PreTrainedTokenizerFast:
    tok = PreTrainedTokenizerFast(tokenizer_object=_train(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]),
                                  eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token="<|im_start|>")
    tok.chat_template = CHATML_TEMPLATE
    return tok


@lru_cache(maxsize=None)
def llama3_tokenizer() -> PreTrainedTokenizerFast:
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                "<|eot_id|>", "<|eom_id|>"]
    tok = PreTrainedTokenizerFast(tokenizer_object=_train(specials), bos_token="<|begin_of_text|>",
                                  eos_token="<|eot_id|>", pad_token="<|end_of_text|>")
    tok.chat_template = LLAMA3_TEMPLATE
    return tok


@lru_cache(maxsize=None)
def countdown_tokenizer() -> PreTrainedTokenizerFast:
    tok = PreTrainedTokenizerFast(tokenizer_object=_train(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]),
                                  eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.chat_template = COUNTDOWN_TEMPLATE
    return tok


# --- The published templates TRL ships, on local tokenizers with each family's special tokens ----
# Templates are read from the installed trl package (never copied here); finding the folder does
# not import trl (which takes ~10 s).
TRL_TEMPLATES = Path(importlib.util.find_spec("trl").submodule_search_locations[0]) / "chat_templates"

_SPECIAL = re.compile(r"<\|[^<>\s|]{1,40}\|>|<｜[^<>\s]{1,40}｜>|<\|[a-z_]{1,20}>|<[a-z_]{1,20}\|>")

FAMILIES: dict[str, tuple[str | None, str, tuple[str, ...]]] = {
    # template stem: (bos, eos = the end-of-turn token the model stops on, extra special tokens)
    "qwen2_5": (None, "<|im_end|>", ("<|endoftext|>",)),
    "qwen3": (None, "<|im_end|>", ("<|endoftext|>",)),
    "qwen3_instruct_2507": (None, "<|im_end|>", ("<|endoftext|>",)),
    "qwen3_5_think": (None, "<|im_end|>", ("<|endoftext|>",)),
    "qwen3_5_nothink": (None, "<|im_end|>", ("<|endoftext|>",)),
    "qwen3_6": (None, "<|im_end|>", ("<|endoftext|>",)),
    "qwen3_8": (None, "<|im_end|>", ("<|endoftext|>",)),
    "qwen3_vl": (None, "<|im_end|>", ("<|endoftext|>",)),
    "qwen2_5_vl": (None, "<|im_end|>", ("<|endoftext|>",)),
    "llama3": ("<|begin_of_text|>", "<|eot_id|>", ("<|end_of_text|>", "<|eom_id|>", "<|python_tag|>")),
    "llama3_1": ("<|begin_of_text|>", "<|eot_id|>", ("<|end_of_text|>", "<|eom_id|>", "<|python_tag|>")),
    "llama3_2": ("<|begin_of_text|>", "<|eot_id|>", ("<|end_of_text|>", "<|eom_id|>", "<|python_tag|>")),
    "gemma": ("<bos>", "<end_of_turn>", ("<eos>", "<start_of_turn>")),
    "gemma3": ("<bos>", "<end_of_turn>", ("<eos>", "<start_of_turn>")),
    "gemma4": ("<bos>", "<turn|>", ("<eos>",)),
    "gemma4_v2": ("<bos>", "<turn|>", ("<eos>",)),
    "gemma4_v3": ("<bos>", "<turn|>", ("<eos>",)),
    "gemma4_v4": ("<bos>", "<turn|>", ("<eos>",)),
    "gemma4_v5": ("<bos>", "<turn|>", ("<eos>",)),
    "diffusion_gemma": ("<bos>", "<turn|>", ("<eos>",)),
    "phi3": (None, "<|end|>", ("<|endoftext|>",)),
    "phi3_5": (None, "<|end|>", ("<|endoftext|>",)),
    "deepseekv3": ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", ()),
    "deepseek_r1_distill": ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", ()),
    "glm4moe": (None, "<|user|>", ("<|endoftext|>", "[gMASK]", "<sop>")),
    "lfm2": ("<|startoftext|>", "<|im_end|>", ()),
    "lfm2_v2": ("<|startoftext|>", "<|im_end|>", ()),
    "lfm2_2_5": ("<|startoftext|>", "<|im_end|>", ()),
    "lfm2_2_5_v2": ("<|startoftext|>", "<|im_end|>", ()),
    "nemotron_3_nano": (None, "<|im_end|>", ("<|endoftext|>",)),
    "nemotron_3_super": (None, "<|im_end|>", ("<|endoftext|>",)),
    "nemotron_3_ultra": (None, "<|im_end|>", ("<|endoftext|>",)),
    "nemotron_3_5_lightning": (None, "<|im_end|>", ("<|endoftext|>",)),
    "cohere": ("<BOS_TOKEN>", "<|END_OF_TURN_TOKEN|>", ()),
    "cohere2": ("<BOS_TOKEN>", "<|END_OF_TURN_TOKEN|>", ()),
    "gptoss": (None, "<|return|>", ("<|call|>",)),
    "muse_glimmer": (None, "<|eot|>", ()),
    "smolvlm": ("<|im_start|>", "<end_of_utterance>", ()),
    "idefics3": ("<|im_start|>", "<end_of_utterance>", ()),
    "llava_next": ("<s>", "</s>", ()),
}


def trl_template(stem: str) -> str:
    """The text of a chat template TRL ships, read from the installed package."""
    return (TRL_TEMPLATES / f"{stem}.jinja").read_text(encoding="utf-8")


@lru_cache(maxsize=None)
def family_tokenizer(stem: str, template: str | None = None) -> PreTrainedTokenizerFast:
    """A small BPE tokenizer carrying the special tokens of a template family and its template.

    The specials are the family's bos/eos and every `<|...|>`-shaped literal the template writes,
    so each one is a single id as in the real tokenizer.
    """
    bos, eos, extra = FAMILIES.get(stem, (None, "<|im_end|>", ()))
    text = template if template is not None else trl_template(stem)
    specials = [t for t in (bos, eos) if t] + list(extra) + sorted(set(_SPECIAL.findall(text)))
    specials = list(dict.fromkeys(specials))
    pad = "<|endoftext|>" if "<|endoftext|>" in specials else eos
    tok = PreTrainedTokenizerFast(tokenizer_object=_train(specials), bos_token=bos, eos_token=eos, pad_token=pad)
    tok.chat_template = text
    return tok


# Test templates reproducing two published rules that TRL's collection does not ship.
# Mistral Nemo / Small 3.x: "Tool call IDs should be alphanumeric strings with length 9!".
MISTRAL_LIKE_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message.role == 'system' %}[SYSTEM_PROMPT]{{ message.content }}[/SYSTEM_PROMPT]"
    "{% elif message.role == 'user' %}[INST]{{ message.content }}[/INST]"
    "{% elif message.role == 'assistant' %}{{ message.content }}{{ eos_token }}"
    "{% elif message.role == 'tool' %}"
    "{% if message.tool_call_id is not defined or message.tool_call_id|length != 9 %}"
    "{{ raise_exception('Tool call IDs should be alphanumeric strings with length 9!') }}{% endif %}"
    '[TOOL_RESULTS]{"content": {{ message.content|tojson }}, "call_id": "{{ message.tool_call_id }}"}[/TOOL_RESULTS]'
    "{% else %}{{ raise_exception('Only user, assistant, system and tool roles are supported!') }}{% endif %}"
    "{% endfor %}"
)

# Hermes-2-Pro-style tool use: the system turn lists the tools, read without checking they exist.
HERMES_LIKE_TEMPLATE = (
    "{%- set first_tool = tools[0] %}<|im_start|>system\nYou may call {{ first_tool.function.name }}."
    "<|im_end|>\n{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@lru_cache(maxsize=None)
def mistral_like_tokenizer() -> PreTrainedTokenizerFast:
    specials = ["<s>", "</s>", "[INST]", "[/INST]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]", "[SYSTEM_PROMPT]",
                "[/SYSTEM_PROMPT]"]
    tok = PreTrainedTokenizerFast(tokenizer_object=_train(specials), bos_token="<s>", eos_token="</s>",
                                  pad_token="</s>")
    tok.chat_template = MISTRAL_LIKE_TEMPLATE
    return tok


@lru_cache(maxsize=None)
def hermes_like_tokenizer() -> PreTrainedTokenizerFast:
    tok = PreTrainedTokenizerFast(tokenizer_object=_train(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]),
                                  eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.chat_template = HERMES_LIKE_TEMPLATE
    return tok
