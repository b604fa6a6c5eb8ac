"""A batched ``gymnasium.vector.VectorEnv`` of RL-Restore: N episodes in one tensor on the CPU or a GPU.

``gym.make_vec("RLRestore-v0", num_envs=N, device="cuda")`` builds it. Every sub-environment keeps its
image in one N x 3 x 63 x 63 tensor; per step each chosen tool runs once on the sub-batch that chose it.
Autoreset follows Gymnasium's default (``AutoresetMode.NEXT_STEP``): the step after an episode ends
resets that sub-environment, ignoring its action, with reward 0. ``reset(options={"reset_mask": m})``
resets only the masked sub-environments. Sub-environment ``i`` draws its patches from its own generator,
seeded ``seed + i`` (or the i-th of a list of seeds), so it replays exactly the episodes of a single
``RLRestore-v0`` reset with that seed. In ``split="test"`` mode sub-environment ``i`` walks the test set
patches ``i, i + N, i + 2N, ...``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from restore_gym.data import ImageSource, PatchStack
from restore_gym.engine import NUM_ACTIONS, check_actions
from restore_gym.env import (
    build_episodes,
    check_render_mode,
    observation_space,
    observe,
    render_batch_row,
    toolbox_metadata,
)
from restore_gym.toolbox import Toolbox


class RLRestoreVectorEnv(VectorEnv):
    """N RL-Restore episodes in lockstep; the arguments are those of :class:`RLRestoreEnv` plus ``num_envs``
    and ``prefetch``: degrade the next patches of the sub-environments on a worker thread while the tools run (the
    same patches either way). By default on for CUDA, where the CPU is otherwise idle, and off for the CPU,
    where the tools already keep every core busy and the thread only adds contention.

    The fresh patches of the sub-environments that start in one step are degraded together
    (:func:`restore_gym.degrade.degrade_batch`: blur and noise on the environment's device), each the patch the
    reference path draws with that sub-environment's generator.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 2, "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        num_envs: int = 1,
        difficulty: str = "moderate",
        split: str = "train",
        source: str | os.PathLike | ImageSource = "builtin",
        toolbox: Toolbox | str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
        observation: str = "dict",
        end_on_psnr_drop: bool | None = None,
        quantize: bool = False,
        render_mode: str | None = None,
        prefetch: bool | None = None,
        patches: str = "fresh",
        pool_size: int = 100_000,
        pool_seed: int = 0,
        precision: str = "float32",
    ) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        self.num_envs = int(num_envs)
        self.render_mode = check_render_mode(render_mode, self.metadata)
        self.observation_mode = observation
        self.single_observation_space = observation_space(observation)
        self.single_action_space = spaces.Discrete(NUM_ACTIONS)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.supply, self.batch = build_episodes(self.num_envs, difficulty, split, source, toolbox, device,
                                                 end_on_psnr_drop, quantize, patches, pool_size, pool_seed,
                                                 precision)
        self.toolbox, self.device = self.batch.toolbox, self.batch.device
        self.metadata = {**self.metadata, **toolbox_metadata(toolbox, self.toolbox)}
        self._rngs = [seeding.np_random()[0] for _ in range(self.num_envs)]
        self._test_index = np.arange(self.num_envs)
        self._started = False
        # The next patches of the rows that start together are degraded ahead, together, on a worker thread while
        # the tools run: a row's generator is only ever used by its own draws, in order, so the patches are the
        # same either way.
        self._pending: list[tuple[Future, int] | None] = [None] * self.num_envs  # (job, position in it)
        if prefetch is None:
            prefetch = self.device.type == "cuda"
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="restore-gym-patches") if prefetch else None

    @property
    def difficulty(self) -> str:
        return self.supply.difficulty

    def add_episode_listener(self, listener) -> None:
        """Call ``listener(reports)`` with the list of :class:`EpisodeReport` of the episodes ending in a step."""
        self.batch.listeners.append(listener)

    def _seeds(self, seed: int | Sequence[int | None] | None) -> list[int | None]:
        if seed is None or isinstance(seed, (int, np.integer)):
            return [None if seed is None else int(seed) + i for i in range(self.num_envs)]
        seeds = list(seed)
        if len(seeds) != self.num_envs:
            raise ValueError(f"got {len(seeds)} seeds for {self.num_envs} sub-environments")
        return seeds

    def _draw(self, rows: np.ndarray) -> PatchStack:
        """The next patch of each of ``rows``, degraded together."""
        patches = self.supply.draw([self._rngs[row] for row in rows.tolist()], self._test_index[rows], self.device)
        if self.supply.test_set is not None:
            self._test_index[rows] += self.num_envs
        return patches

    def _start(self, rows: np.ndarray) -> None:
        """Start new episodes in ``rows``, from their prefetched patches where there are any."""
        prefetched: dict[int, tuple[Future, list[int], list[int]]] = {}
        unprefetched = []
        for row in rows.tolist():
            if self._pending[row] is None:
                unprefetched.append(row)
                continue
            future, position = self._pending[row]
            self._pending[row] = None
            group = prefetched.setdefault(id(future), (future, [], []))
            group[1].append(row)
            group[2].append(position)
        for future, group_rows, positions in prefetched.values():
            self.batch.load(np.array(group_rows), future.result().take(positions))
        if unprefetched:
            self.batch.load(np.array(unprefetched), self._draw(np.array(unprefetched)))
        if self._executor is not None:
            future = self._executor.submit(self._draw, rows.copy())
            for position, row in enumerate(rows.tolist()):
                self._pending[row] = (future, position)

    def _discard_prefetched(self, rows: np.ndarray) -> None:
        for row in rows.tolist():
            if self._pending[row] is not None:
                self._pending[row][0].result()
                self._pending[row] = None

    def close_extras(self, **kwargs: Any) -> None:
        if getattr(self, "_executor", None) is not None:  # absent when __init__ raised
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def _infos(self) -> dict[str, Any]:
        everyone = np.ones(self.num_envs, dtype=bool)
        chains = np.empty(self.num_envs, dtype=object)
        chains[:] = [list(chain) for chain in self.batch.chains]
        return {
            "psnr": self.batch.psnr_now.copy(), "_psnr": everyone,
            "psnr_input": self.batch.psnr_input.copy(), "_psnr_input": everyone,
            "toolchain": chains, "_toolchain": everyone,
        }

    def reset(
        self, *, seed: int | Sequence[int | None] | None = None, options: dict | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Reset all sub-environments, or those of ``options["reset_mask"]``; see the module docstring for seeds."""
        options = dict(options or {})
        mask = np.asarray(options.pop("reset_mask", np.ones(self.num_envs, dtype=bool)))
        if options:
            raise ValueError(f"unknown reset option(s) {sorted(options)}; the vector environment takes 'reset_mask'")
        if mask.dtype != bool or mask.shape != (self.num_envs,):
            raise ValueError(f"reset_mask must be a boolean array of shape ({self.num_envs},), got {mask!r}")
        if not self._started and not mask.all():
            raise RuntimeError("the first reset must reset every sub-environment (no reset_mask)")
        reseeded = np.array([mask[row] and s is not None for row, s in enumerate(self._seeds(seed))])
        self._discard_prefetched(np.nonzero(reseeded)[0])
        for row, s in enumerate(self._seeds(seed)):
            if reseeded[row]:
                self._rngs[row] = seeding.np_random(s)[0]
                self._test_index[row] = row
        self._start(np.nonzero(mask)[0])
        self._started = True
        return observe(self.batch, self.observation_mode), self._infos()

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """One step of every sub-environment; those that ended at an earlier step are reset instead."""
        if not self._started:
            raise RuntimeError("step() was called before reset(); call reset() first")
        actions = check_actions(actions, self.num_envs)
        rewards = np.zeros(self.num_envs, dtype=np.float64)
        terminated = np.zeros(self.num_envs, dtype=bool)
        restarting = np.nonzero(self.batch.ended)[0]  # ended at an earlier step, even one that raised
        acting = np.nonzero(~self.batch.ended)[0]
        if acting.size:
            rewards[acting], terminated[acting] = self.batch.step(acting, actions[acting])
        if restarting.size:
            self._start(restarting)
        truncated = np.zeros(self.num_envs, dtype=bool)
        return observe(self.batch, self.observation_mode), rewards, terminated, truncated, self._infos()

    def render(self) -> tuple[np.ndarray, ...] | None:
        if self.render_mode != "rgb_array":
            return None
        return tuple(render_batch_row(self.batch, row) for row in range(self.num_envs))
