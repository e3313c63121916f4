"""How a benchmark measures: the options that travel from the command line to every step, as one object."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BenchOptions:
    """Runs, warm-up, time cap, what to time besides the model, and where the artifacts are cached."""

    runs: int = 50
    warmup: int = 5
    max_seconds: float | None = 20.0  # cap on the warm-up and on the timed runs, each
    dataset: str | None = None
    input_size: tuple[int, int] | None = None
    pipeline: bool = True  # also time pre / model / post of the full pipeline
    progress: bool = True
    cpus: str | None = None  # pin to these CPUs (e.g. "4-7")
    benchmark_model: str | None = None  # a TFLite benchmark_model binary to time TFLite artifacts with
    agree: bool = False  # also measure each artifact's agreement AP with its PyTorch model, here

    @property
    def remote_timeout(self) -> float:
        """Seconds one timing command may take: both capped phases per measurement, plus loading."""
        per = (self.max_seconds or 600) * (4 if self.pipeline else 1)
        return per + 300  # model load, warm-up and engine deserialisation
