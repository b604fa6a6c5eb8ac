"""A batched ``gymnasium.vector.VectorEnv`` of RL-Restore: N episodes in one tensor on the CPU or a GPU.

``gym.make_vec("RLRestore-v0", num_envs=N, device="cuda")`` builds it; its keyword arguments (``autoreset_mode=``
among them) reach :class:`RLRestoreVectorEnv`. Every sub-environment keeps its image in one N x 3 x 63 x 63
tensor; per step each chosen tool runs once on the sub-batch that chose it.

Autoreset (``autoreset_mode=``) follows Gymnasium's conventions; ``metadata["autoreset_mode"]`` is the
instance's mode:

- ``AutoresetMode.NEXT_STEP`` (the default, Gymnasium's): the step after an episode ends resets that
  sub-environment, ignoring its action, with reward 0 and ``terminated`` False.
- ``AutoresetMode.SAME_STEP``: a sub-environment whose episode ends in a step starts its next episode in that
  same step, so every sub-environment acts at every step (under a random policy at N = 64 the tools run on
  about 59 rows per step instead of 39). That row's reward and ``terminated`` are those of the finished
  episode's last step; its observation and its entries of ``infos`` are the new episode's first (step 0, no
  previous tool). ``infos["final_obs"]`` (an object array: the finished episode's last observation as the
  single environment returns it, None elsewhere) and ``infos["final_info"]`` (its ``psnr``, ``psnr_input`` and
  ``toolchain``, each with its mask) hold the finished episodes; ``infos["_final_obs"]`` and
  ``infos["_final_info"]`` are true exactly where an episode ended. Both keys are absent in a step where none
  ended.

The mode may be given as the enum, its value (``"NextStep"``, ``"SameStep"``) or ``"next_step"`` /
``"same_step"``; ``AutoresetMode.DISABLED`` is not supported. A sub-environment left ended by a step that raised
(:class:`~restore_gym.engine.ToolOutputError`, a listener) starts its next episode at the next step: in
NEXT_STEP instead of acting, in SAME_STEP before acting in it. The SB3 adapter (:mod:`restore_gym.sb3`, which
resets finished sub-environments itself) and :func:`restore_gym.rollout.run_one_episode_each` take NEXT_STEP
environments only.

``reset(options={"reset_mask": m})`` resets only the masked sub-environments. Sub-environment ``i`` draws its
patches from its own generator, seeded ``seed + i`` (or the i-th of a list of seeds), so in either autoreset
mode it replays exactly the episodes of a single ``RLRestore-v0`` reset with that seed. In ``split="test"``
mode sub-environment ``i`` walks the test set patches ``i, i + N, i + 2N, ...``.
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

from restore_gym.data import ImageSource
from restore_gym.engine import NUM_ACTIONS, check_actions, check_flag
from restore_gym.env import (
    build_episodes,
    check_render_mode,
    observation_row,
    observation_space,
    observe,
    render_batch_row,
    toolbox_metadata,
)
from restore_gym.toolbox import Toolbox

SUPPORTED_AUTORESET_MODES: tuple[AutoresetMode, ...] = (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP)


def check_autoreset_mode(mode: AutoresetMode | str) -> AutoresetMode:
    """``mode`` as an :class:`AutoresetMode` if it names NEXT_STEP or SAME_STEP (the enum, its value such as
    ``"SameStep"``, or its name in lower case such as ``"same_step"``), else a ValueError."""
    for supported in SUPPORTED_AUTORESET_MODES:
        if mode is supported or (isinstance(mode, str) and mode in (supported.value, supported.name.lower())):
            return supported
    raise ValueError(f"unsupported autoreset_mode {mode!r}; RLRestoreVectorEnv supports AutoresetMode.NEXT_STEP "
                     "(the default; also 'NextStep' or 'next_step') and AutoresetMode.SAME_STEP ('SameStep' or "
                     "'same_step'), not AutoresetMode.DISABLED")


def default_prefetch(device: torch.device | str) -> bool:
    """Whether the vector environment prefetches patches on ``device`` unless told: on CUDA, not on the CPU."""
    return torch.device(device).type == "cuda"


class RLRestoreVectorEnv(VectorEnv):
    """N RL-Restore episodes in lockstep; the arguments are those of :class:`RLRestoreEnv` plus ``num_envs``,
    ``autoreset_mode`` (see the module docstring) and ``prefetch``: degrade the next patches of the
    sub-environments on a worker thread while the tools run (the same patches either way). By default
    (``None``, :func:`default_prefetch`) on for CUDA, where the CPU is otherwise idle, and off for the CPU: there
    the worker's torch calls start a second OpenMP thread team beside the tools' own, and on this project's
    2-core CPU (quiet, N = 64) prefetching lowered the environment's tool applications per second from 131 to
    110 with fresh patches and from 165 to 112 with the pool (``python -m benchmarks.throughput --prefetch
    on,off`` compares the two).

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
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
    ) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        self.num_envs = int(num_envs)
        self.autoreset_mode = check_autoreset_mode(autoreset_mode)
        if prefetch is not None:
            check_flag(prefetch, "prefetch")
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
        self.metadata = {**self.metadata, **toolbox_metadata(toolbox, self.toolbox),
                         "autoreset_mode": self.autoreset_mode}
        self._rngs = [seeding.np_random()[0] for _ in range(self.num_envs)]
        self._test_index = np.arange(self.num_envs)
        self._started = False
        # The next patches of the rows that start together are degraded ahead, together, on a worker thread while
        # the tools run: a row's generator is only ever used by its own draws, in order, so the patches are the
        # same either way.
        self._pending: list[tuple[Future, int] | None] = [None] * self.num_envs  # (job, position in it)
        if prefetch is None:
            prefetch = default_prefetch(self.device)
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

    def _draw_arguments(self, rows: np.ndarray) -> tuple[list[np.random.Generator], np.ndarray, torch.device]:
        """The arguments of ``self.supply.draw`` for the next patch of each of ``rows`` (their generators, their
        places in the test set, the device); advances the rows' walk of the test set. The prefetching thread gets
        them, never the environment itself: the last reference to an environment must not be dropped there, or
        its ``close`` would wait on that very thread."""
        places = self._test_index[rows].copy()
        if self.supply.test_set is not None:
            self._test_index[rows] += self.num_envs
        return [self._rngs[row] for row in rows.tolist()], places, self.device

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
            self.batch.load(np.array(unprefetched), self.supply.draw(*self._draw_arguments(np.array(unprefetched))))
        if self._executor is not None:
            future = self._executor.submit(self.supply.draw, *self._draw_arguments(rows))
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

    def _infos(self, mask: np.ndarray | None = None) -> dict[str, Any]:
        """Every sub-environment's info, or (``mask``) that of the masked ones as Gymnasium batches infos: each key
        with its own mask ``_key``, 0 or None outside it."""
        mask = np.ones(self.num_envs, dtype=bool) if mask is None else mask
        chains = np.full(self.num_envs, None, dtype=object)
        for row in np.nonzero(mask)[0].tolist():
            chains[row] = list(self.batch.chains[row])
        return {
            "psnr": np.where(mask, self.batch.psnr_now, 0.0), "_psnr": mask.copy(),
            "psnr_input": np.where(mask, self.batch.psnr_input, 0.0), "_psnr_input": mask.copy(),
            "toolchain": chains, "_toolchain": mask.copy(),
        }

    def _final_infos(self, ended: np.ndarray) -> dict[str, Any]:
        """SAME_STEP's record of the episodes ending now (``ended``, a mask): their last observations and infos."""
        rows = np.nonzero(ended)[0]
        observations = observe(self.batch, self.observation_mode, rows)
        final_obs = np.full(self.num_envs, None, dtype=object)
        for k, row in enumerate(rows.tolist()):
            final_obs[row] = observation_row(observations, k)
        return {"final_obs": final_obs, "_final_obs": ended.copy(),
                "final_info": self._infos(ended), "_final_info": ended.copy()}

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
        """One step of every sub-environment; the autoreset mode says when those whose episode ended start anew."""
        if not self._started:
            raise RuntimeError("step() was called before reset(); call reset() first")
        actions = check_actions(actions, self.num_envs)
        same_step = self.autoreset_mode is AutoresetMode.SAME_STEP
        rewards = np.zeros(self.num_envs, dtype=np.float64)
        terminated = np.zeros(self.num_envs, dtype=bool)
        ended_before = np.nonzero(self.batch.ended)[0]  # at an earlier step, even one that raised
        if same_step and ended_before.size:  # only after a step that raised: they start now, then act
            self._start(ended_before)
        acting = np.nonzero(~self.batch.ended)[0]
        if acting.size:
            rewards[acting], terminated[acting] = self.batch.step(acting, actions[acting])
        starting = np.nonzero(terminated)[0] if same_step else ended_before
        final = self._final_infos(terminated) if same_step and starting.size else {}
        if starting.size:
            self._start(starting)
        truncated = np.zeros(self.num_envs, dtype=bool)
        return observe(self.batch, self.observation_mode), rewards, terminated, truncated, {**final, **self._infos()}

    def render(self) -> tuple[np.ndarray, ...] | None:
        if self.render_mode != "rgb_array":
            return None
        return tuple(render_batch_row(self.batch, row) for row in range(self.num_envs))
