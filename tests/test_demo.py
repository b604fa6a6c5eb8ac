"""The main job's pieces: the whole photo it restores and the picture of patches it draws (restore_gym.demo)."""

import numpy as np
from PIL import Image

from restore_gym import demo
from restore_gym.toolbox import Toolbox


def test_the_whole_photo_is_restored_and_drawn_side_by_side(tmp_path):
    summary = demo._photo("moderate", Toolbox.pretrained(), "vote", tmp_path)
    height, width = summary["size"]
    with Image.open(tmp_path / "photo.png") as picture, Image.open(tmp_path / "photo-restored.png") as restored:
        assert picture.size == (3 * width + 2 * 8, height) and restored.size == (width, height)
    assert summary["psnr"] > summary["psnr_input"] + 3 and summary["record"]["chain"]


def test_the_patch_picture_has_a_row_per_patch_and_a_column_per_method():
    columns = [np.random.default_rng(k).random((4, 63, 63, 3), dtype=np.float32) for k in range(len(demo.COLUMNS))]
    picture = demo._patch_picture(columns, [0, 3])
    side = 63 * demo.ZOOM
    assert picture.size == (len(demo.COLUMNS) * (side + 6) - 6, 2 * side + 6 + 20)
