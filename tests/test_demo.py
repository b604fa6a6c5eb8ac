import json

from restore_gym import demo


def test_the_main_job_writes_its_pictures_and_numbers(tmp_path):
    demo.main(out=str(tmp_path / "demo"), patches=4)
    folder = tmp_path / "demo"
    assert {"patches.png", "photo.png", "photo-restored.png", "demo.json"} <= {p.name for p in folder.iterdir()}
    summary = json.loads((folder / "demo.json").read_text())
    patches, photo = summary["test_patches"], summary["whole_photo"]
    assert patches["patches"] == 4 and summary["difficulty"] == "moderate"
    assert photo["psnr"] > photo["psnr_input"] and photo["mode"] == "vote"
