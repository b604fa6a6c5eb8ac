import pytest
import torch

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


def test_where_theirs_win_splits_the_patches_by_their_best_tool():
    theirs = torch.tensor([[1.0, 0.0] + [-1.0] * 10, [0.0, 2.0] + [-1.0] * 10, [0.0, 3.0] + [-1.0] * 10])
    ours = torch.tensor([[0.5, 0.7] + [-1.0] * 10, [0.0, 1.0] + [-1.0] * 10, [0.0, 2.0] + [4.0] + [-1.0] * 9])
    rows = bench.where_theirs_win(ours, theirs)
    assert [(r["tool"], r["patches"]) for r in rows] == [(1, 1), (2, 2)]
    assert rows[0] == {"tool": 1, "patches": 1, "authors": 1.0, "ours": 0.5, "our_best": pytest.approx(0.7)}
    assert rows[1]["authors"] == 2.5 and rows[1]["ours"] == 1.5 and rows[1]["our_best"] == 2.5
    text = "\n".join(bench.where_theirs_win_markdown({"severe": {"where_theirs_win": rows}}))
    assert "| severe | t2 | 2 | +2.50 | +1.50 | +2.50 | +0.00 |" in text
    assert bench.where_theirs_win_markdown({"severe": {}}) == [""]
