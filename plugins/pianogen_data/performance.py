"""A piano performance as events: what the composer writes, a MIDI file holds and the sampler renders.

Times are seconds of performance time (tempo already applied), so a composed piece, a MAESTRO MIDI file
and a transcription all meet in one form. The sampler reads the arrays; the composer also records what
it chose (``info``: meters, tempi, textures), which the variety tests count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pianogen.interfaces import Note

SUSTAIN_CC = 64  # MIDI controller numbers of the pedals
SOFT_CC = 67
PEDAL_DOWN = 64  # a CC64/CC67 value at or above this means the pedal is down (the MIDI convention)


@dataclass
class Performance:
    notes: list[Note]
    sustain: list[tuple[float, int]] = field(default_factory=list)  # (seconds, CC64 value 0..127), time-sorted
    soft: list[tuple[float, int]] = field(default_factory=list)  # (seconds, CC67 value 0..127), time-sorted
    info: dict[str, Any] = field(default_factory=dict)  # what made it (the composer's choices), JSON-able

    @property
    def duration(self) -> float:
        """Seconds until the last key is released (release tails and pedal come on top)."""
        ends = [n.offset for n in self.notes] + [t for t, _ in self.sustain] + [t for t, _ in self.soft]
        return max(ends, default=0.0)

    def arrays(self) -> dict[str, np.ndarray]:
        """The notes as parallel arrays sorted by onset: onset, offset (float64 s), pitch, velocity (int64)."""
        notes = sorted(self.notes, key=lambda n: (n.onset, n.pitch))
        return {"onset": np.array([n.onset for n in notes], dtype=np.float64),
                "offset": np.array([n.offset for n in notes], dtype=np.float64),
                "pitch": np.array([n.pitch for n in notes], dtype=np.int64),
                "velocity": np.array([n.velocity for n in notes], dtype=np.int64)}

    @staticmethod
    def pedal_down_at(events: list[tuple[float, int]], times: np.ndarray) -> np.ndarray:
        """Whether the pedal of ``events`` is down at each of ``times`` (bool array like ``times``)."""
        if not events:
            return np.zeros(np.shape(times), dtype=bool)
        t = np.array([e[0] for e in events])
        down = np.array([e[1] >= PEDAL_DOWN for e in events])
        idx = np.searchsorted(t, times, side="right") - 1
        return np.where(idx >= 0, down[np.clip(idx, 0, None)], False)
