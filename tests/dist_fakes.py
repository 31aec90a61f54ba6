"""A stand-in configuration and run functions for the sweep tests (optmm.scaleout.sweep).

Importable by Dask workers: a LocalCluster spawns its worker processes with the test process's
``sys.path`` (multiprocessing's spawn passes it on), and pytest puts ``tests/`` on it, so the workers
import this module by name, as they would import :mod:`optmm.sim`.

:class:`FakeConfig` has what a sweep uses of ``optmm.sim.SimConfig``: ``load``, ``with_overrides``
(dotted ``section.field`` keys; an unknown key raises ``ValueError`` naming it), ``content_hash``
and ``to_dict``. The run functions return numbers that are a pure function of (config, seed).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BASE_TOML = """\
[quoter]
gamma_risk_aversion = 1e-4
[hedger]
band_shares = 500.0
[flow]
latency_steps = 0
"""


@dataclass(frozen=True)
class FakeConfig:
    """Sections of fields, as plain JSON; frozen, hashable by content."""

    text: str  # canonical JSON of {section: {field: value}}

    @classmethod
    def load(cls, path: str | Path) -> FakeConfig:
        with open(path, "rb") as fh:
            return cls.from_dict(tomllib.load(fh))

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> FakeConfig:
        return cls(json.dumps(doc, sort_keys=True))

    def to_dict(self) -> dict[str, Any]:
        return dict(json.loads(self.text))

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def with_overrides(self, overrides: dict[str, Any]) -> FakeConfig:
        doc = self.to_dict()
        for key, value in overrides.items():
            section, _, name = key.partition(".")
            if section not in doc or name not in doc[section]:
                raise ValueError(f"unknown config key {key!r}")
            doc[section][name] = value
        return FakeConfig.from_dict(doc)

    def get(self, key: str) -> Any:
        section, _, name = key.partition(".")
        return self.to_dict()[section][name]


def _uniform(config: FakeConfig, seed: int, salt: str) -> float:
    digest = hashlib.sha256(f"{config.content_hash}:{seed}:{salt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def fast_run(config: FakeConfig, seed: int) -> dict[str, Any]:
    """Summary-like metrics: P&L rises and falls with gamma, inventory falls with it; nested and text too."""
    gamma = float(config.get("quoter.gamma_risk_aversion"))
    band = float(config.get("hedger.band_shares"))
    latency = float(config.get("flow.latency_steps"))
    noise = _uniform(config, seed, "pnl") - 0.5
    spread = 1000.0 - 50.0 * latency + 200.0 * noise
    pnl = spread - 3e5 * gamma - 0.1 * band + (1.0 + 10.0 * latency) * 500.0 * noise
    return {
        "config_hash": config.content_hash,
        "seed": seed,
        "strategy": "fake",
        "total_pnl_mean": pnl,
        "total_pnl_std": 0.0,
        "max_abs_delta_shares": band * (1.0 + _uniform(config, seed, "delta")) / (1.0 + 1e3 * gamma),
        "pulls": int(10 * _uniform(config, seed, "pulls")),
        "sharpe": None,
        "attribution": {"spread_capture": spread, "hedge_cost": 0.1 * band},
        "time_in_layer": {"NORMAL": 0.9, "SOFT": 0.1},
        "log_gamma": math.log10(gamma),
    }


def slow_run(config: FakeConfig, seed: int) -> dict[str, Any]:
    """:func:`fast_run`, after 0.2 s: long enough to lose a worker with runs in flight."""
    time.sleep(0.2)
    return fast_run(config, seed)


def failing_run(config: FakeConfig, seed: int) -> dict[str, Any]:
    """:func:`fast_run`, except that seed 3 raises."""
    if seed == 3:
        raise ArithmeticError(f"seed {seed} diverged")
    return fast_run(config, seed)
