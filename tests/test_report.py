"""Pictures and the HTML report: files decode at the expected size, numbers back the pictures."""
from __future__ import annotations

import re
from statistics import NormalDist

import numpy as np
import pytest
from PIL import Image

import vaekit
from vaekit import latent
from vaekit.cli import main
from vaekit.plots import grid_size


def _size(path):
    with Image.open(path) as im:
        im.load()
        return im.size, im.mode


def test_training_writes_every_picture_and_a_report(digits_run):
    for name in ("samples.png", "reconstructions.png", "latent.png", "manifold.png", "interpolation.png",
                 "curves.png", "report.html"):
        assert (digits_run / name).is_file(), name
    assert _size(digits_run / "manifold.png")[0] == grid_size(20, 20, 8, 8)
    assert _size(digits_run / "interpolation.png")[0] == grid_size(1, 12, 8, 8)
    assert _size(digits_run / "curves.png")[0][0] > 800


def test_report_references_only_existing_files_and_every_picture(digits_run):
    page = (digits_run / "report.html").read_text()
    sources = re.findall(r'src="([^"]+)"', page)
    assert sources and all((digits_run / s).is_file() for s in sources)
    assert all(not s.startswith("/") for s in sources)  # relative: the folder can be moved
    assert set(sources) == {p.name for p in digits_run.glob("*.png")}
    assert "test loss" in page and "5-NN label accuracy" in page


def test_gaussian_quantile_grid():
    q = latent.gaussian_quantiles(3)
    assert q == pytest.approx([NormalDist().inv_cdf(0.05), 0.0, NormalDist().inv_cdf(0.95)], abs=1e-6)
    codes = latent.manifold_codes(4, np.array([0.0, 7.0, 0.0]), dims=(2, 0))
    grid = codes.reshape(4, 4, 3)
    assert grid[0, :, 2] == pytest.approx(latent.gaussian_quantiles(4))  # columns scan z3 upwards
    assert grid[:, 0, 0] == pytest.approx(latent.gaussian_quantiles(4)[::-1])  # rows scan z1 downwards
    assert (grid[..., 1] == 7.0).all()  # the other dims stay at the base point


def test_plot_commands_write_the_grid_asked_for(digits_run, tmp_path, capsys):
    out = tmp_path / "m.png"
    assert main(["plot", "manifold", str(digits_run), "--n", "5", "--out", str(out)]) == 0
    assert _size(out)[0] == grid_size(5, 5, 8, 8)
    out = tmp_path / "i.png"
    assert main(["plot", "interpolate", str(digits_run), "--from", "3", "--to", "7", "--steps", "4",
                 "--out", str(out)]) == 0
    assert _size(out)[0] == grid_size(1, 6, 8, 8)
    assert main(["plot", "interpolate", str(digits_run), "--from", "0", "--to", "100000"]) == 2
    assert "test item 100000 does not exist" in capsys.readouterr().err


def test_latent_2d_knn_accuracy_far_above_chance(tmp_path):
    run = tmp_path / "run"  # ten digit classes: chance is 0.1
    vaekit.train(dataset="digits", hidden=(256, 128), latent_dim=2, epochs=100, run_dir=run, device="cpu",
                 progress=False, pictures=False)  # the CPU's trajectory: the threshold was set on it
    info = vaekit.plot(run, "latent")
    assert info["latent_dim"] == 2 and info["knn5_accuracy"] >= 0.5  # 0.57 measured in fp32, 0.7+ in bf16
    assert _size(run / "latent.png")[1] in ("RGB", "RGBA")


def test_tabular_run_gets_latent_curves_and_error_but_no_image_grids(tmp_path):
    rng = np.random.default_rng(1)
    values = rng.normal(size=(200, 2)) @ rng.normal(size=(2, 5))
    path = tmp_path / "t.csv"
    path.write_text("a,b,c,d,e,label\n" + "\n".join(",".join(f"{v:.4f}" for v in r) + f",{int(r[0] > 0)}"
                                                   for r in values))
    run = tmp_path / "run"
    vaekit.train(dataset=f"csv:{path}", hidden=(16,), latent_dim=2, epochs=5, run_dir=run, progress=False)
    names = {p.name for p in run.glob("*.png")}
    assert names == {"latent.png", "curves.png", "recon_error.png"}
    assert all((run / s).is_file() for s in re.findall(r'src="([^"]+)"', (run / "report.html").read_text()))


def test_rgb_folder_pictures_are_colour(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(40):
        colour = rng.integers(0, 256, 3)
        Image.fromarray(np.full((12, 12, 3), colour, np.uint8)).save(folder / f"{i}.png")
    run = tmp_path / "run"
    vaekit.train(dataset=f"folder:{folder}", hidden=(32,), latent_dim=2, epochs=3, run_dir=run, progress=False)
    size, mode = _size(run / "samples.png")
    assert mode == "RGB" and size == grid_size(8, 8, 12, 12)
    assert _size(run / "manifold.png")[0] == grid_size(20, 20, 12, 12)


def test_pictures_show_test_items_from_across_the_split_not_its_first_class(tmp_path):
    from vaekit.reporting import _shown_test_items, load_run
    for name, colour in (("a_red", (255, 0, 0)), ("b_blue", (0, 0, 255))):
        (tmp_path / "imgs" / name).mkdir(parents=True)
        for i in range(60):
            Image.new("RGB", (8, 8), colour).save(tmp_path / "imgs" / name / f"{i}.png")
    vaekit.train(dataset=f"folder:{tmp_path / 'imgs'}", epochs=1, run_dir=tmp_path / "r", progress=False,
                 pictures=False)
    run = load_run(tmp_path / "r")
    assert run.splits.test.y[:8].tolist() == [0] * 8  # the split keeps file order: the first 8 are one class
    shown = _shown_test_items(run)  # (8, 3, 8, 8) in [0, 1]
    red = shown[:, 0].mean((1, 2)) > 0.5
    assert len(shown) == 8 and 0 < int(red.sum()) < 8


def test_a_test_split_of_one_item_still_gets_its_latent_picture(tmp_path):
    path = tmp_path / "tiny.csv"  # 10 rows: the test split holds a single item
    path.write_text("a,b,label\n" + "\n".join(f"{i},{i % 3},{'cat' if i % 2 else 'dog'}" for i in range(10)))
    assert main(["train", "--dataset", f"csv:{path}", "--epochs", "2", "--run-dir", str(tmp_path / "r"),
                 "--quiet"]) == 0  # was: ValueError while unpacking the second principal axis
    assert _size(tmp_path / "r" / "latent.png")[1] in ("RGB", "RGBA")


def test_report_keeps_the_settings_a_picture_was_made_with_and_picks_items_by_class(tmp_path, capsys):
    run = tmp_path / "run"
    vaekit.train(dataset="digits", hidden=(32,), latent_dim=2, epochs=3, run_dir=run, progress=False)
    assert main(["plot", "manifold", str(run), "--n", "15"]) == 0
    assert main(["plot", "interpolate", str(run), "--from-class", "3", "--to-class", "7", "--steps", "6"]) == 0
    test_y = vaekit.load_data("digits:test").y
    i, j = int(np.flatnonzero(test_y == 3)[0]), int(np.flatnonzero(test_y == 7)[0])
    assert f'"interpolation": [{i}, {j}, 6]' in capsys.readouterr().out
    assert main(["report", str(run)]) == 0
    assert _size(run / "manifold.png")[0] == grid_size(15, 15, 8, 8)  # not redrawn at the default 20
    assert _size(run / "interpolation.png")[0] == grid_size(1, 8, 8, 8)
    assert f"Test items {i} and {j}, 6 steps." in (run / "report.html").read_text()
    assert main(["plot", "interpolate", str(run), "--from-class", "11"]) == 2
    assert capsys.readouterr().err.strip() == ("vaekit: error: digits: no test item of class '11'; classes are "
                                               "0, 1, 2, 3, 4, 5, 6, 7, 8, 9")
    assert main(["plot", "interpolate", str(run), "--from", "2", "--from-class", "3"]) == 2
    assert "--from-index and --from-class both pick the from item" in capsys.readouterr().err


def test_report_scales_image_grids_up_in_a_grid_layout(digits_run):
    page = (digits_run / "report.html").read_text()
    shown = dict(re.findall(r'<img src="([^"]+)"[^>]* width="(\d+)"', page))
    for name, factor in (("samples.png", 2), ("reconstructions.png", 2), ("interpolation.png", 2),
                         ("manifold.png", 1)):
        assert int(shown[name]) == factor * _size(digits_run / name)[0][0], name
    assert 'class="pictures"' in page and "image-rendering:pixelated" in page
    assert re.search(r'<figure class=wide><img src="interpolation.png"', page)


def test_per_epoch_table_marks_its_gap_and_the_best_epoch(tmp_path, digits_run):
    import json
    import shutil
    from vaekit.reporting import write_report
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(digits_run / "config.json", run)
    (run / "metrics.jsonl").write_text("".join(json.dumps({"epoch": e, "train_loss": 100.0 - e / 10, "best": e <= 100})
                                               + "\n" for e in range(1, 241)))
    (run / "summary.json").write_text(json.dumps({"best_epoch": 100}))
    page = write_report(run).read_text()
    epochs = re.findall(r"<tr(?: class=\"best\")?><td>(\d+)", page)
    assert epochs == [str(e) for e in [*range(1, 11), 100, *range(221, 241)]]
    gaps = re.findall(r"epochs (\d+)-(\d+) not shown", page)
    assert gaps == [("11", "99"), ("101", "220")]
    assert '<tr class="best"><td>100 &#9733;</td>' in page
