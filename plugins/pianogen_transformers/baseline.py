"""The PianoGen report's baseline: a decoder-only Transformer over RVQ level 1 alone.

It is the multi-output model restricted to one level (one embedding table, one head), kept
as its own name so recipes say what the report trained.
"""

from __future__ import annotations

from dataclasses import dataclass

from pianogen.errors import PianogenError
from pianogen_transformers.multi_output import MultiOutputConfig, MultiOutputTransformer


@dataclass
class BaselineConfig(MultiOutputConfig):
    n_levels: int = 1  # must be 1: the baseline reads and predicts RVQ level 1 only

    def __post_init__(self) -> None:
        if self.n_levels != 1:
            raise PianogenError(
                f"the baseline model reads RVQ level 1 only, but {self.n_levels} levels were asked for; "
                "set [codec] levels = 1, or use model 'multi_output' or 'delay' for more levels"
            )
        super().__post_init__()


class BaselineTransformer(MultiOutputTransformer):
    """codes LongTensor[B, 1, T] -> logits FloatTensor[B, 1, T, V]; built from a BaselineConfig."""
