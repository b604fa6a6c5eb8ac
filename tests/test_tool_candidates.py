import pytest
import torch

from benchmarks import tool_candidates as tc
from restore_gym import train_tools as tt
from restore_gym.toolbox import Toolbox


def test_a_run_s_tools_replace_only_those_asked_for(tmp_path):
    tt.train_toolbox(tmp_path / "run", [0, 8], "builtin", tt.PRESETS["smoke"], progress=False)
    base = Toolbox.pretrained(variant="v3")
    swapped = tc.with_run_tools(base, tmp_path / "run", [0])
    trained = torch.load(tmp_path / "run" / "tool01.pt", weights_only=True)["state_dict"]
    for name, value in swapped.tools[0].state_dict().items():
        assert torch.equal(value, trained[name])
    for index in range(1, 12):  # tool 9 was trained too, but not asked for
        for name, value in swapped.tools[index].state_dict().items():
            assert torch.equal(value, base.tools[index].state_dict()[name])
    assert swapped.metadata["candidate_run"] == "run" and "candidate_run" not in base.metadata
    with pytest.raises(FileNotFoundError, match=r"finished tool file .*tool02.pt does not exist"):
        tc.with_run_tools(base, tmp_path / "run", [1])


def test_the_tables_mark_every_miss_of_the_floors():
    def row(single, steps, greedy):
        return {"tools": {"1": {"single": single, "first_step": dict(zip(("mild", "moderate", "severe"), steps))}},
                "greedy_oracle": dict(zip(("mild", "moderate", "severe"), greedy))}

    rows = {"base (v3)": row(-6.5, (2.0, 2.4, 3.0), (3.0, 3.5, 4.3)),
            "good": row(-1.0, (0.6, 0.5, 0.2), (3.8, 4.0, 4.5)),
            "authors'": row(-2.0, (0.85, 0.68, 0.56), (4.0, 4.4, 4.8))}
    table = tc.markdown(rows, [0], "authors'")
    assert "| base (v3) | -6.50 * | +2.00 | +2.40 | +3.00 |" in table
    assert "| good | -1.00 | +0.60 | +0.50 | +0.20 * |" in table
    assert "| authors' | -2.00 | +0.85 | +0.68 | +0.56 |" in table
    assert "| good | +3.800 (95%) | +4.000 (91%) | +4.500 (94%) |" in table
    assert "| base (v3) | +3.000 (75%) |" in table
    assert "floors" not in tc.markdown({"good": rows["good"]}, [0], None)


def test_a_missing_run_folder_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"run folder .*nowhere does not exist"):
        tc.parse_run(str(tmp_path / "nowhere"))
    assert tc.parse_run(f"{tmp_path}=label") == (tmp_path, "label")
