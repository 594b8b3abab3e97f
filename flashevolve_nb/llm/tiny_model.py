"""A tiny Llama-shaped model folder made on the spot, for running a real vLLM engine on a CPU.

No download: a byte-level BPE tokenizer is trained on local text, a
``LlamaConfig`` small enough for a CPU is written beside it, and vLLM is
started with ``load_format="dummy"`` so the weights are random. What comes
out is gibberish; the engine's scheduling, batching, OpenAI server, usage
accounting and failure modes are the real thing. Needs ``tokenizers`` and
``transformers`` (both come with vLLM).

The shape follows what vLLM's CPU attention accepts (head_dim 64).
"""

from __future__ import annotations

import glob
import importlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["CHAT_TEMPLATE", "build_tiny_model"]

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
_SPECIAL = ["<s>", "</s>", "<unk>", "<pad>", "<|system|>", "<|user|>", "<|assistant|>"]


def build_tiny_model(
    folder: str | Path,
    *,
    vocab_size: int = 2048,
    max_position_embeddings: int = 4096,
    corpus: Iterable[str] | None = None,
) -> Path:
    """Write a tokenizer and a tiny ``LlamaConfig`` to ``folder``; returns the folder.

    ``corpus``: text to train the tokenizer on; by default the licence texts
    every Debian-like system ships, or this package's own sources.
    """
    # Optional dependencies (they come with vLLM): imported by name, untyped.
    tk: Any = importlib.import_module("tokenizers")
    tf: Any = importlib.import_module("transformers")
    Tokenizer, decoders, models = tk.Tokenizer, tk.decoders, tk.models
    pre_tokenizers, trainers = tk.pre_tokenizers, tk.trainers
    LlamaConfig, PreTrainedTokenizerFast = tf.LlamaConfig, tf.PreTrainedTokenizerFast

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=_SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(list(corpus if corpus is not None else _local_text()), trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(out)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    config.save_pretrained(out)
    return out


def _local_text() -> Iterator[str]:
    paths = sorted(glob.glob("/usr/share/common-licenses/*"))
    if not paths:
        paths = sorted(str(p) for p in Path(__file__).resolve().parents[1].rglob("*.py"))
    for path in paths:
        try:
            yield Path(path).read_text(errors="replace")
        except (IsADirectoryError, PermissionError):
            continue
