"""The baselines of :mod:`restore_gym.baselines` (random, stop, best-tool, best-chain and the oracles), from the
config section ``baselines``. Only ``random`` runs once per seed; the others are deterministic and run once."""

from __future__ import annotations

from typing import Any, ClassVar

from benchmarks.leaderboard.checks import check_int, check_mapping, check_names, check_seeds
from benchmarks.leaderboard.context import Context
from benchmarks.leaderboard.kinds.base import DEFAULT_SEEDS, EVAL_SECONDS_PER_PATCH, Entry, Outcome, policy_outcome
from restore_gym.baselines import BASELINES, VALIDATION_SIZE
from restore_gym.evaluation import make_policy
from restore_gym.toolbox import TOOL_SPECS, Toolbox, count_parameters

STOCHASTIC_BASELINES = frozenset({"random"})
ORACLE = "exhaustive-oracle"  # the gain the other entries are measured against
SEARCHES = frozenset({"best-tool", "best-chain"})  # chosen on the training images
# The progress bar's estimates: seconds per test patch, and per validation patch of a search (once per difficulty).
EVAL_SECONDS = {ORACLE: 11.7, "greedy-oracle": 0.2}
VALIDATION_SEARCH_SECONDS = {"best-chain": 8.0, "best-tool": 0.05}


class BaselineEntry(Entry):
    """A baseline policy over the sweep's toolbox."""

    kind = "baseline"
    section = "baselines"
    line = ":"
    keys: ClassVar[dict[str, Any]] = {"names": list(BASELINES), "seeds": DEFAULT_SEEDS,
                                      "validation_size": VALIDATION_SIZE}

    @classmethod
    def validate(cls, value: Any, where: str) -> dict[str, Any]:
        section = check_mapping(value, where, cls.keys)
        section["names"] = check_names(section["names"], list(BASELINES), f"{where}.names")
        section["seeds"] = check_seeds(section["seeds"], f"{where}.seeds")
        check_int(section["validation_size"], f"{where}.validation_size", 1)
        return section

    @classmethod
    def entries(cls, section: dict[str, Any]) -> list[Entry]:
        return [cls(name, section["seeds"] if name in STOCHASTIC_BASELINES else section["seeds"][:1],
                    {"validation_size": section["validation_size"]}) for name in section["names"]]

    @property
    def uses_training_source(self) -> bool:
        return self.base_name in SEARCHES

    def eval_cost(self, patches: int) -> float:
        cost = patches * EVAL_SECONDS.get(self.base_name, EVAL_SECONDS_PER_PATCH)
        return cost + self.spec["validation_size"] * VALIDATION_SEARCH_SECONDS.get(self.base_name, 0.0)

    def evaluate(self, ctx: Context, toolbox: Toolbox | None, difficulty: str, seed: int) -> Outcome:
        assert toolbox is not None
        policy = make_policy(self.base_name, toolbox, difficulty, seed, validation_size=self.spec["validation_size"],
                             device=ctx.device, source=ctx.source)
        chain = getattr(policy, "details", {}).get("chain")
        parameters = count_parameters(toolbox) if chain is None else sum(TOOL_SPECS[t].params for t in set(chain))
        return policy_outcome(policy, ctx, toolbox, difficulty, seed, parameters, None)
