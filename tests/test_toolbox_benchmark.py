import pytest

from benchmarks import toolbox as bench
from restore_gym.engine import MAX_TOOLS
from restore_gym.toolbox import NUM_TOOLS, Toolbox


@pytest.fixture(scope="module")
def greedy():
    return bench.greedy_oracle(Toolbox.pretrained(), "moderate", max_patches=12)


def test_the_greedy_oracle_s_steps_add_up_to_its_gain(greedy):
    assert len(greedy["step_gains"]) == MAX_TOOLS
    assert sum(greedy["step_gains"]) == pytest.approx(greedy["gain"], abs=1e-4)
    assert greedy["step_gains"][0] > 0  # the oracle only acts where a tool gains


def test_the_greedy_oracle_s_step_counts_agree_with_its_tool_choices(greedy):
    acting = greedy["patches_acting"]
    assert acting[0] <= 12 and all(a >= b for a, b in zip(acting, acting[1:]))
    assert [sum(counts) for counts in greedy["tools_per_step"]] == acting
    assert all(len(counts) == NUM_TOOLS for counts in greedy["tools_per_step"])


def test_the_step_tables_name_every_test_set_and_toolbox(greedy):
    result = {"mild": {"greedy_steps": {"ours": greedy, "authors": greedy}}}
    text = "\n".join(bench.greedy_steps_markdown(result))
    assert text.count("| mild | ours |") == 1 + MAX_TOOLS  # the steps row and one usage row per step
    assert f"{greedy['gain']:+.3f}" in text
