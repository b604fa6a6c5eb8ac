"""Baselines that need no learning, each a policy of :mod:`restore_gym.rollout`'s contract with a ``name``:
the ceilings and floors a learned agent is measured against.

- ``random``: uniform over the 13 actions (seeded). ``stop``: stops at once (the input itself).
- ``best-tool`` / ``best-chain``: the single tool / the fixed chain of at most 3 tools (1,885 chains, the
  empty one included) with the best mean PSNR on a VALIDATION set drawn from the TRAIN split of the image
  source at the same difficulty (:func:`validation_set`); the test set is never looked at. The chosen
  tool or chain is then applied to every patch, whatever it looks like.
- ``greedy-oracle``: the tool with the best PSNR against the clean image, until no tool gains.
- ``exhaustive-oracle``: per patch, the best of all 1,885 chains: the ceiling of the toolbox.

Chains are found by tree expansion (:func:`all_chain_psnrs`): the 12 tools on the inputs, on each of
those outputs, and on each of those: 12 + 144 + 1,728 = 1,884 tool applications per patch. Every tool
output is clamped to the environment's state range, as :class:`restore_gym.engine.PatchBatch` does, so
the PSNRs equal the environment's (without ``quantize``). Tables of a set of patches are cached in
``cache_dir() / "oracles" / f"{toolbox.fingerprint()}-{digest}.npz"``.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from restore_gym.data import ImageSource, TestSet, cache_dir, digest_of, to_nchw
from restore_gym.degrade import check_difficulty
from restore_gym.engine import MAX_TOOLS, STATE_RANGE, STOP
from restore_gym.metrics import psnr_batch
from restore_gym.records import read_npz_cache, write_npz_atomic
from restore_gym.rollout import Policy
from restore_gym.sources import resolve_source
from restore_gym.toolbox import NUM_TOOLS, Toolbox
from restore_gym.vector_env import RLRestoreVectorEnv

Chain = tuple[int, ...]

CHAINS: tuple[Chain, ...] = tuple(
    chain for length in range(MAX_TOOLS + 1) for chain in itertools.product(range(NUM_TOOLS), repeat=length)
)
"""Every chain of at most 3 tools (0-based ids), by length, then lexicographically: (), (0,), ..., (11, 11, 11)."""
NUM_CHAINS = len(CHAINS)  # 1 + 12 + 144 + 1728 = 1885
VALIDATION_SIZE = 64
VALIDATION_SEED = 20180500


def num_chains(max_length: int) -> int:
    """Number of chains of at most ``max_length`` tools; they are ``CHAINS[:num_chains(max_length)]``."""
    if not 0 <= max_length <= MAX_TOOLS:
        raise ValueError(f"max_length must be in 0..{MAX_TOOLS}, got {max_length}")
    return (NUM_TOOLS ** (max_length + 1) - 1) // (NUM_TOOLS - 1)


# ---- Policies that look at the clean image or at nothing ----------------------------------------------


@torch.inference_mode()
def all_tool_psnrs(toolbox: Toolbox, images: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """PSNR (N x 12) of every tool applied to every image of the N x 3 x H x W batch, outputs unclipped."""
    n = images.shape[0]
    candidates = images.repeat_interleave(NUM_TOOLS, dim=0)
    tools = torch.arange(NUM_TOOLS).repeat(n)
    outputs = toolbox(candidates, tools)
    return psnr_batch(outputs, clean.repeat_interleave(NUM_TOOLS, dim=0)).view(n, NUM_TOOLS)


def greedy_oracle_actions(toolbox: Toolbox, images: torch.Tensor, clean: torch.Tensor, psnr_now: torch.Tensor
                          ) -> torch.Tensor:
    """The ground-truth greedy action per image: the tool with the best PSNR, or stop if no tool gains."""
    psnrs = all_tool_psnrs(toolbox, images, clean)
    best_psnr, best_tool = psnrs.max(dim=1)
    gains = best_psnr.cpu() > psnr_now.cpu().to(best_psnr.dtype)
    return torch.where(gains, best_tool.cpu(), torch.full_like(best_tool.cpu(), STOP))


def random_policy(seed: int = 0) -> Policy:
    """Uniformly random actions (tools and stop)."""
    rng = np.random.default_rng(seed)
    return lambda vec, obs: rng.integers(0, vec.single_action_space.n, vec.num_envs)


def greedy_oracle_policy(vec: RLRestoreVectorEnv, obs: dict) -> np.ndarray:
    """The tool with the best PSNR against the clean image, or stop when none gains."""
    batch = vec.batch
    return greedy_oracle_actions(batch.toolbox, batch.images, batch.clean, torch.from_numpy(batch.psnr_now)).numpy()


# ---- Chains -----------------------------------------------------------------------------------------


@torch.inference_mode()
def _expand(toolbox: Toolbox, tool: int, states: torch.Tensor, clean: torch.Tensor, max_batch: int, keep: bool
            ) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Tool ``tool`` on every state (clamped like the environment) in sub-batches: (outputs if ``keep``, PSNRs)."""
    outputs, psnrs = [], []
    for part, target in zip(states.split(max_batch), clean.split(max_batch)):
        out = toolbox.run_tool(tool, part).clamp_(*STATE_RANGE)
        psnrs.append(psnr_batch(out, target))
        if keep:
            outputs.append(out)
    return (torch.cat(outputs) if keep else None), torch.cat(psnrs)


@torch.inference_mode()
def all_chain_psnrs(
    toolbox: Toolbox,
    degraded: torch.Tensor,
    clean: torch.Tensor,
    max_length: int = MAX_TOOLS,
    patches_per_chunk: int = 8,
    max_batch: int = 32,
) -> tuple[np.ndarray, tuple[Chain, ...]]:
    """PSNR of every chain of at most ``max_length`` tools on every patch, by tree expansion.

    ``degraded`` and ``clean`` are N x 3 x H x W on the toolbox's device. Returns an N x C float32 array
    whose column j is the PSNR after chain ``CHAINS[j]`` (column 0: the input), and those C chains.
    Costs ``num_chains(max_length) - 1`` tool applications per patch; memory is bounded by expanding
    ``patches_per_chunk`` patches at a time (their 144 depth-2 states are kept) and running at most
    ``max_batch`` images per tool call (on the CPU a larger one is slower: the README's allocator note).
    """
    count = num_chains(max_length)
    table = np.empty((degraded.shape[0], count), dtype=np.float32)
    for start in range(0, degraded.shape[0], patches_per_chunk):
        x, target = degraded[start:start + patches_per_chunk], clean[start:start + patches_per_chunk]
        n = x.shape[0]
        table[start:start + n, 0] = psnr_batch(x, target).cpu().numpy()
        states = x
        for depth in range(1, max_length + 1):
            parents = NUM_TOOLS ** (depth - 1)
            targets = target.repeat_interleave(parents, dim=0)
            keep = depth < max_length
            children, level = [], torch.empty(n * parents, NUM_TOOLS)
            for tool in range(NUM_TOOLS):
                out, psnrs = _expand(toolbox, tool, states, targets, max_batch, keep)
                level[:, tool] = psnrs.cpu()
                children.append(out)
            offset = num_chains(depth - 1)
            table[start:start + n, offset:offset + parents * NUM_TOOLS] = level.view(n, -1).numpy()
            if keep:
                # (patch, parent, tool) order: child index = parent * 12 + tool, as in CHAINS.
                states = torch.stack(children, dim=1).flatten(0, 1)
    return table, CHAINS[:count]


def oracle_cache_path(fingerprint: str, digest: str) -> Path:
    """Where the chain-PSNR table of a toolbox (by fingerprint) on a patch set (by digest) is cached."""
    return cache_dir() / "oracles" / f"{fingerprint}-{digest}.npz"


def _read_table(cached: Mapping[str, np.ndarray]) -> tuple[np.ndarray, tuple[str, str]]:
    return cached["psnrs"], (str(cached["fingerprint"]), str(cached["digest"]))


def chain_psnr_table(
    toolbox: Toolbox, patches: TestSet, max_length: int = MAX_TOOLS, use_cache: bool = True, **search: int
) -> np.ndarray:
    """:func:`all_chain_psnrs` of a test or validation set (N x ``num_chains(max_length)``), cached on disk.

    The cache is keyed by :meth:`Toolbox.fingerprint` and ``patches.digest``; a cached table with at least
    the needed columns is reused, otherwise the table is computed and written atomically (a damaged cache
    file is rebuilt with a warning naming it). ``search`` is passed on to :func:`all_chain_psnrs`
    (``patches_per_chunk``, ``max_batch``).
    """
    count = num_chains(max_length)
    fingerprint = toolbox.fingerprint()
    path = oracle_cache_path(fingerprint, patches.digest)
    cached = read_npz_cache(path, _read_table, "chain-PSNR table") if use_cache else None
    if cached is not None:
        table, keys = cached
        if keys == (fingerprint, patches.digest) and table.shape[0] == len(patches) and table.shape[1] >= count:
            return table[:, :count]
    device = next(toolbox.parameters()).device
    table, _ = all_chain_psnrs(toolbox, to_nchw(patches.degraded).to(device), to_nchw(patches.clean).to(device),
                               max_length, **search)
    if use_cache:
        write_npz_atomic(path, psnrs=table, fingerprint=np.array(fingerprint), digest=np.array(patches.digest))
    return table


def validation_set(difficulty: str, source: str | ImageSource = "builtin", size: int = VALIDATION_SIZE,
                   seed: int = VALIDATION_SEED) -> TestSet:
    """``size`` patches drawn at ``difficulty`` from the TRAIN split of ``source`` with a fixed seed.

    Returned as a :class:`TestSet` without a recorded digest; ``digest`` identifies its bytes.
    """
    check_difficulty(difficulty)
    if size < 1:
        raise ValueError(f"the validation set needs at least one patch, got size {size}")
    train = resolve_source(source, "train")
    rng = np.random.default_rng(seed)
    patches = [train.sample_patch(difficulty, rng) for _ in range(size)]
    degraded = np.stack([p.degraded for p in patches])
    return TestSet(difficulty=difficulty, degraded=degraded, clean=np.stack([p.clean for p in patches]),
                   params=[p.params for p in patches], digest=digest_of(degraded), expected_digest=None,
                   sources=[(p.image_id, p.scale, p.top, p.left) for p in patches])


def best_fixed_chain(toolbox: Toolbox, validation: TestSet, max_length: int = MAX_TOOLS, exact_length: bool = False,
                     **search: int) -> tuple[Chain, float]:
    """The chain of at most (or, with ``exact_length``, exactly) ``max_length`` tools with the best mean PSNR
    on ``validation``, and that mean PSNR (first chain in :data:`CHAINS` order on ties)."""
    means = chain_psnr_table(toolbox, validation, max_length, **search).astype(np.float64).mean(axis=0)
    first = num_chains(max_length - 1) if exact_length else 0
    best = first + int(np.argmax(means[first:]))
    return CHAINS[best], float(means[best])


@dataclass
class NamedPolicy:
    """A policy with the ``name`` every result records and ``details`` (e.g. the chain it chose and why)."""

    name: str
    act: Policy
    details: dict[str, Any] = field(default_factory=dict)

    def __call__(self, vec: RLRestoreVectorEnv, obs: Any) -> np.ndarray:
        return np.asarray(self.act(vec, obs))


def replay_actions(chains: list[Chain], steps: np.ndarray) -> np.ndarray:
    """Per row, the next tool of its chain after ``steps[row]`` tools, or stop when the chain is done."""
    return np.array([chain[s] if s < len(chain) else STOP for chain, s in zip(chains, steps.tolist())],
                    dtype=np.int64)


def fixed_chain_policy(chain: Chain, name: str, details: dict[str, Any] | None = None) -> NamedPolicy:
    """Apply ``chain`` to every patch, then stop; reads only ``obs["step"]`` (dict observations)."""
    chain = tuple(int(t) for t in chain)
    return NamedPolicy(name, lambda vec, obs: replay_actions([chain] * vec.num_envs, np.asarray(obs["step"])),
                       {"chain": list(chain), **(details or {})})


def _row_keys(images: torch.Tensor, clean: torch.Tensor) -> list[bytes]:
    """A key per row: SHA-256 of its float32 input and clean image bytes."""
    images, clean = images.detach().cpu().numpy(), clean.detach().cpu().numpy()
    return [hashlib.sha256(np.ascontiguousarray(a).tobytes() + np.ascontiguousarray(b).tobytes()).digest()
            for a, b in zip(images, clean)]


class ExhaustiveOracle:
    """Per patch, replays the best of all chains of the environment's toolbox (ties: the shorter, then first).

    A row's chain is looked up by the hash of its input and clean images. On a test-split environment the
    whole test set is searched once and cached (:func:`chain_psnr_table`); patches found nowhere else (a
    train split, patches given through reset options) are searched on the spot without caching. The table
    is rebuilt when the toolbox weights change. A best chain may pass through a state worse than the input:
    it is replayed in full only where episodes do not end on a PSNR drop (the test split's default).
    """

    name = "exhaustive-oracle"

    def __init__(self, **search: int) -> None:
        self.search = search
        self.details: dict[str, Any] = {"searched_chains": NUM_CHAINS, "tool_applications_per_patch": NUM_CHAINS - 1}
        self._fingerprint: str | None = None
        self._best: dict[bytes, Chain] = {}
        self._rows: list[Chain] = []

    def _learn(self, keys: list[bytes], table: np.ndarray) -> None:
        for key, best in zip(keys, table.argmax(axis=1).tolist()):
            self._best[key] = CHAINS[best]

    def _resolve(self, vec: RLRestoreVectorEnv, rows: np.ndarray, keys: list[bytes]) -> None:
        batch = vec.batch
        fingerprint = batch.toolbox.fingerprint()
        if fingerprint != self._fingerprint:
            self._fingerprint, self._best = fingerprint, {}
        test_set = vec.supply.test_set
        if test_set is not None and any(key not in self._best for key in keys):
            self._learn(_row_keys(to_nchw(test_set.degraded), to_nchw(test_set.clean)),
                        chain_psnr_table(batch.toolbox, test_set, **self.search))
            self.details["test_set_digest"] = test_set.digest
        missing = np.array([row for row, key in zip(rows.tolist(), keys) if key not in self._best], dtype=np.int64)
        if missing.size:
            index = torch.as_tensor(missing, device=batch.device)
            inputs, clean = batch.inputs.index_select(0, index), batch.clean.index_select(0, index)
            table, _ = all_chain_psnrs(batch.toolbox, inputs, clean, **self.search)
            self._learn(_row_keys(inputs, clean), table)

    def __call__(self, vec: RLRestoreVectorEnv, obs: Any) -> np.ndarray:
        steps = np.asarray(obs["step"])
        if len(self._rows) != vec.num_envs:
            self._rows = [()] * vec.num_envs
        starting = np.nonzero(steps == 0)[0]
        if starting.size:
            index = torch.as_tensor(starting, device=vec.batch.device)
            keys = _row_keys(vec.batch.inputs.index_select(0, index), vec.batch.clean.index_select(0, index))
            self._resolve(vec, starting, keys)
            for row, key in zip(starting.tolist(), keys):
                self._rows[row] = self._best[key]
        return replay_actions(self._rows, steps)


BaselineFactory = Callable[..., Policy]


def make_random(toolbox: Toolbox, difficulty: str, seed: int = 0, source: str | ImageSource = "builtin",
                validation_size: int = VALIDATION_SIZE) -> NamedPolicy:
    """Uniformly random actions over the 13 (tools and stop), from ``seed``."""
    return NamedPolicy("random", random_policy(seed), {"seed": seed})


def make_stop(toolbox: Toolbox, difficulty: str, seed: int = 0, source: str | ImageSource = "builtin",
              validation_size: int = VALIDATION_SIZE) -> NamedPolicy:
    """Stop at once: the result is the input."""
    return fixed_chain_policy((), "stop")


def _make_validated(name: str, max_length: int, toolbox: Toolbox, difficulty: str, source: str | ImageSource,
                    validation_size: int) -> NamedPolicy:
    validation = validation_set(difficulty, source, validation_size)
    chain, mean = best_fixed_chain(toolbox, validation, max_length, exact_length=max_length == 1)
    train = resolve_source(source, "train")
    return fixed_chain_policy(chain, name, {
        "chosen_on": {"split": "train", "source": train.describe(), "patches": len(validation),
                      "seed": VALIDATION_SEED, "digest": validation.digest, "max_length": max_length},
        "validation_mean_psnr": mean,
    })


def make_best_tool(toolbox: Toolbox, difficulty: str, seed: int = 0, source: str | ImageSource = "builtin",
                   validation_size: int = VALIDATION_SIZE) -> NamedPolicy:
    """The single tool with the best mean PSNR on the validation set (train split), applied to every patch."""
    return _make_validated("best-tool", 1, toolbox, difficulty, source, validation_size)


def make_best_chain(toolbox: Toolbox, difficulty: str, seed: int = 0, source: str | ImageSource = "builtin",
                    validation_size: int = VALIDATION_SIZE) -> NamedPolicy:
    """The chain (of at most 3 tools) with the best mean PSNR on the validation set, applied to every patch."""
    return _make_validated("best-chain", MAX_TOOLS, toolbox, difficulty, source, validation_size)


def make_greedy_oracle(toolbox: Toolbox, difficulty: str, seed: int = 0, source: str | ImageSource = "builtin",
                       validation_size: int = VALIDATION_SIZE) -> NamedPolicy:
    """The ground-truth greedy oracle (:func:`greedy_oracle_policy`)."""
    return NamedPolicy("greedy-oracle", greedy_oracle_policy)


def make_exhaustive_oracle(toolbox: Toolbox, difficulty: str, seed: int = 0, source: str | ImageSource = "builtin",
                           validation_size: int = VALIDATION_SIZE) -> ExhaustiveOracle:
    """The best of all 1,885 chains per patch (:class:`ExhaustiveOracle`)."""
    return ExhaustiveOracle()


BASELINES: dict[str, BaselineFactory] = {
    "random": make_random,
    "stop": make_stop,
    "best-tool": make_best_tool,
    "best-chain": make_best_chain,
    "greedy-oracle": make_greedy_oracle,
    "exhaustive-oracle": make_exhaustive_oracle,
}
"""Factories ``(toolbox, difficulty, seed=0, source="builtin", validation_size=64) -> policy`` by name."""
