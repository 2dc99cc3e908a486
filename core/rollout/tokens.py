"""The full token sequence of a trajectory, its assistant mask and logprobs, built as it grows."""

from __future__ import annotations

import math
import sys
from array import array
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np


@dataclass
class TokenSequence:
    """Prompt, generated and scaffolding ids in order, with a mask that is 1 on generated ids.

    logprobs holds the model's logprob for generated ids and NaN elsewhere (nats); prompt_len is
    the length of the opening prompt (what TRL calls prompt ids); the rest is the completion.
    trainer_logprobs (training runs only, else None): the trainer's logprob of every token
    under the weights that sampled it, NaN on the prompt, length = len(ids); see
    core.train.store.StepRecorder.record_trainer_logprobs.
    """

    ids: list[int] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    prompt_len: int = 0
    trainer_logprobs: list[float] | None = None

    def add_prompt(self, ids: Sequence[int]) -> tuple[int, int]:
        span = self._add(ids, 0, None)
        self.prompt_len = len(self.ids)
        return span

    def add_generated(self, ids: Sequence[int], logprobs: Sequence[float]) -> tuple[int, int]:
        if len(ids) != len(logprobs):
            raise ValueError(f"{len(ids)} generated ids but {len(logprobs)} logprobs")
        return self._add(ids, 1, logprobs)

    def add_scaffold(self, ids: Sequence[int]) -> tuple[int, int]:
        return self._add(ids, 0, None)

    def _add(self, ids: Sequence[int], bit: int, logprobs: Sequence[float] | None) -> tuple[int, int]:
        start = len(self.ids)
        self.ids.extend(map(int, ids))  # map runs in C: a generator here cost ~0.2 ms per 1,000 ids
        self.mask.extend([bit] * len(ids))
        self.logprobs.extend(logprobs if logprobs is not None else [math.nan] * len(ids))
        return start, len(self.ids)

    @property
    def completion_len(self) -> int:
        return len(self.ids) - self.prompt_len

    @property
    def generated_count(self) -> int:
        return sum(self.mask)

    # Compact blobs for the store: int32 ids, uint8 mask, float32 logprobs (little-endian).
    # array.array converts Python lists about 3x faster than numpy.asarray; blobs are read
    # back with numpy, which names the byte order explicitly.
    def to_blobs(self) -> tuple[bytes, bytes, bytes]:
        ids, logprobs = array("i", self.ids), array("f", self.logprobs)
        if sys.byteorder == "big":
            ids.byteswap()
            logprobs.byteswap()
        return ids.tobytes(), bytes(self.mask), logprobs.tobytes()

    @classmethod
    def from_blobs(cls, ids: bytes, mask: bytes, logprobs: bytes, prompt_len: int,
                   trainer_logprobs: bytes | None = None) -> "TokenSequence":
        return cls(
            ids=np.frombuffer(ids, dtype="<i4").tolist(),
            mask=np.frombuffer(mask, dtype=np.uint8).tolist(),
            logprobs=np.frombuffer(logprobs, dtype="<f4").tolist(),
            prompt_len=prompt_len,
            trainer_logprobs=None if trainer_logprobs is None else np.frombuffer(trainer_logprobs, dtype="<f4").tolist(),
        )

    @staticmethod
    def logprob_blob(values: Sequence[float]) -> bytes:
        """float32 little-endian bytes of `values` (the store's layout for logprob columns)."""
        return np.asarray(values, dtype="<f4").tobytes()
