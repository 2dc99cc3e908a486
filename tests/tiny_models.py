"""A small random Llama with a ChatML tokenizer built on the spot (no download): a real
transformers model for training tests and for benchmarks/cuda_check.py, where the embedded
default cannot go. It learns nothing useful; it runs every code path fast."""

from __future__ import annotations

from pathlib import Path


def tiny_llama(hidden_size: int = 32, layers: int = 2, heads: int = 2, max_positions: int = 2048, seed: int = 0):
    """(model, tokenizer): a LlamaForCausalLM of `layers` layers of width `hidden_size` (MLP
    2x wider) over tests.local_tokenizers.chatml_tokenizer(), with its eos as pad token."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    from tests.local_tokenizers import chatml_tokenizer

    tok = chatml_tokenizer()
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=hidden_size,
                                         intermediate_size=2 * hidden_size, num_hidden_layers=layers,
                                         num_attention_heads=heads, num_key_value_heads=heads,
                                         max_position_embeddings=max_positions, eos_token_id=tok.eos_token_id,
                                         pad_token_id=tok.pad_token_id))
    model.generation_config = GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return model, tok


def save_tiny_llama(folder: Path, **sizes) -> str:
    """tiny_llama(**sizes) saved as a model folder (weights, config, tokenizer); its path."""
    model, tok = tiny_llama(**sizes)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)
