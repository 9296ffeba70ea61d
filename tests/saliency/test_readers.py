"""Readers of the layouts researchers hold (MIT1003, CAT2000, SALICON, points
with a stated coordinate order), each on a small fixture built here in its
real layout; the viewing-geometry blur; points outside their image."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.io
from PIL import Image

from salclass.errors import UserError
from salclass.saliency.fixations import (OSIE_SIGMA, SALICON_SIGMA, VIEW_DEGREES, ReadOptions, open_fixation_data)

RNG = np.random.default_rng(0)


def _image(path, h, w):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(RNG.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)


def _binary(path, h, w, points):
    """A fixation-points image: white pixels at (x, y) points, as MIT1003 and CAT2000 ship them."""
    m = np.zeros((h, w), np.uint8)
    for x, y in points:
        m[y, x] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(m).save(path)


def _blob(path, h, w, x, y):
    yy, xx = np.mgrid[0:h, 0:w]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((255 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 50.0)).astype(np.uint8)).save(path)


def _points_of(ds, i):
    return sorted(map(tuple, ds.fixation_points(i).tolist()))


def test_mit1003_as_distributed(tmp_path):
    """ALLSTIMULI/NAME.jpeg with ALLFIXATIONMAPS/NAME_fixMap.jpg and NAME_fixPts.jpg;
    the JPEG-compressed points image yields exactly its white pixels."""
    pts = {"i05june05_static_street_boston_p1010764": [(10, 10), (50, 30), (51, 31)],
           "i1000978262": [(70, 40)]}
    for stem, p in pts.items():
        _image(tmp_path / "ALLSTIMULI" / f"{stem}.jpeg", 60, 80)
        _blob(tmp_path / "ALLFIXATIONMAPS" / f"{stem}_fixMap.jpg", 60, 80, *p[0])
        _binary(tmp_path / "ALLFIXATIONMAPS" / f"{stem}_fixPts.jpg", 60, 80, p)
    ds = open_fixation_data(tmp_path)
    assert ds.kind == "mit1003" and len(ds) == 2 and ds.has_fixations
    assert ds.names == sorted(f"{s}.jpeg" for s in pts)
    for i, stem in enumerate(sorted(pts)):
        assert _points_of(ds, i) == sorted(pts[stem])
        d = ds.density(i)
        assert d.max() == pytest.approx(1.0) and np.unravel_index(d.argmax(), d.shape) == pts[stem][0][::-1]
    assert "own maps" in ds.ground_truth
    with pytest.raises(UserError, match="--ppd"):
        open_fixation_data(tmp_path, ReadOptions(ppd=30))


def test_mit1003_all_in_one_folder_without_points(tmp_path):
    _image(tmp_path / "a.jpeg", 30, 40)
    _blob(tmp_path / "a_fixMap.jpg", 30, 40, 5, 5)
    ds = open_fixation_data(tmp_path)
    assert ds.kind == "mit1003" and ds.names == ["a.jpeg"] and not ds.has_fixations


def test_cat2000_as_distributed(tmp_path):
    """trainSet/Stimuli/CATEGORY/NNN.jpg, FIXATIONMAPS/CATEGORY/NNN.jpg and
    FIXATIONLOCS/CATEGORY/NNN.mat (a binary fixLocs matrix of the image's size)."""
    base = tmp_path / "trainSet"
    spots = {("Action", "001"): [(3, 4), (20, 10)], ("Action", "002"): [(30, 5)], ("Sketch", "001"): [(7, 25)]}
    for (cat, stem), p in spots.items():
        _image(base / "Stimuli" / cat / f"{stem}.jpg", 27, 48)
        _blob(base / "FIXATIONMAPS" / cat / f"{stem}.jpg", 27, 48, *p[0])
        locs = np.zeros((27, 48))
        for x, y in p:
            locs[y, x] = 1
        (base / "FIXATIONLOCS" / cat).mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(base / "FIXATIONLOCS" / cat / f"{stem}.mat", {"fixLocs": locs})
    ds = open_fixation_data(tmp_path)
    assert ds.kind == "cat2000"
    assert ds.names == ["Action/001.jpg", "Action/002.jpg", "Sketch/001.jpg"]
    for i, key in enumerate(sorted(spots)):
        assert _points_of(ds, i) == sorted(spots[key])
    assert ds.density(2).shape == (27, 48)


def _salicon(root):
    """images/train/ and fixations/fixations_train2014.json as the SALICON 2015 release has them."""
    images = [{"id": 9, "file_name": "COCO_train2014_000000000009.jpg", "width": 64, "height": 48},
              {"id": 25, "file_name": "COCO_train2014_000000000025.jpg", "width": 64, "height": 48}]
    annotations = [  # (row, column), 1-based
        {"id": 1, "image_id": 9, "worker_id": 101, "fixations": [[1, 1], [48, 64]]},
        {"id": 2, "image_id": 9, "worker_id": 102, "fixations": [[10, 20]]},
        {"id": 3, "image_id": 25, "worker_id": 102, "fixations": [[24, 32], [25, 33]]},
    ]
    for im in images:
        _image(root / "images" / "train" / im["file_name"], 48, 64)
    (root / "fixations").mkdir(parents=True)
    (root / "fixations" / "fixations_train2014.json").write_text(
        json.dumps({"type": "fixations", "images": images, "annotations": annotations}))
    return root


def test_salicon_json(tmp_path):
    ds = open_fixation_data(_salicon(tmp_path))
    assert ds.kind == "salicon" and len(ds) == 2 and ds.num_subjects == 2
    fx = ds.fixations(0)
    np.testing.assert_array_equal(fx.x, [0, 63, 19])
    np.testing.assert_array_equal(fx.y, [0, 47, 9])
    np.testing.assert_array_equal(fx.subject, [0, 0, 1])
    assert ds.fixations(1).subject.tolist() == [1, 1]
    assert ds.ppd((48, 64)) == SALICON_SIGMA and "19 px" in ds.ground_truth


def _scene_like(root, order):
    """stimuli/ + tidy/fixations.mat: a cell array of images x subjects, each
    cell K x 4 (two coordinates in `order`, then onset and duration), one cell
    empty, as ../shared/data/scene has it."""
    sizes = [(40, 100), (100, 40)]   # (h, w): points read in the wrong order fall outside
    xy = [np.array([[90.0, 5.0], [80.0, 30.0]]), np.array([[5.0, 90.0], [30.0, 70.0]])]
    for k, (h, w) in enumerate(sizes):
        _image(root / "stimuli" / f"{k + 1:03d}.jpg", h, w)
    cell = np.empty((2, 2), dtype=object)
    for k in range(2):
        pts = xy[k] if order == "xy" else xy[k][:, ::-1]
        cell[k, 0] = np.hstack([pts, [[0.1, 0.2], [0.3, 0.2]]])
    cell[0, 1] = np.hstack([(xy[0] if order == "xy" else xy[0][:, ::-1])[:1], [[0.5, 0.1]]])
    cell[1, 1] = np.zeros((0, 0))
    (root / "tidy").mkdir(parents=True)
    scipy.io.savemat(root / "tidy" / "fixations.mat", {"fixations": cell})
    return root, xy


def test_points_given_as_row_column_need_points_yx(tmp_path, run_cli):
    root, xy = _scene_like(tmp_path, "yx")
    with pytest.raises(UserError, match=r"fall outside their image.*pass --points yx"):
        open_fixation_data(root)
    ds = open_fixation_data(root, ReadOptions(points="yx"))
    assert ds.kind == "points" and ds.num_subjects == 2 and not ds.notes
    np.testing.assert_array_equal(ds.fixations(0).x, [90, 80, 90])
    np.testing.assert_array_equal(ds.fixations(0).y, [5, 30, 5])
    np.testing.assert_array_equal(ds.fixations(0).subject, [0, 0, 1])
    np.testing.assert_array_equal(ds.fixations(1).x, xy[1][:, 0])
    # The command line: one clear line without --points yx, a table with it.
    code, out, err = run_cli("saliency", "eval", "--data", root, "--split", "all")
    assert code == 2 and "--points yx" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    code, out, err = run_cli("saliency", "eval", "--data", root, "--split", "all", "--points", "yx", "--json")
    assert code == 0, err
    assert json.loads(out)["scores"]["centre_bias"]["nss"] is not None


def test_points_in_xy_order_and_per_image_files(tmp_path):
    root, xy = _scene_like(tmp_path / "cell", "xy")
    assert open_fixation_data(root).fixations(1).x.tolist() == xy[1][:, 0].tolist()
    per_image = tmp_path / "files"
    _image(per_image / "images" / "a.png", 20, 30)
    _image(per_image / "images" / "b.png", 20, 30)
    (per_image / "fixations").mkdir()
    np.savetxt(per_image / "fixations" / "a.csv", [[3, 4], [29, 19]], delimiter=",", header="x,y")
    np.save(per_image / "fixations" / "b.npy", np.array([[1.0, 2.0]]))
    ds = open_fixation_data(per_image)
    assert ds.kind == "points" and _points_of(ds, 0) == [(3, 4), (29, 19)] and _points_of(ds, 1) == [(1, 2)]


def test_outside_points_are_rejected_or_dropped_and_counted(tmp_path):
    root = tmp_path
    for sub in ("images", "maps", "fixations"):
        (root / sub).mkdir()
    _image(root / "images" / "a.png", 20, 30)
    _blob(root / "maps" / "a.png", 20, 30, 5, 5)
    # x = 29.4 is on the last column; x = 29.6 and y = -0.6 are off the image.
    np.save(root / "fixations" / "a.npy", np.array([[29.4, 3.0], [29.6, 3.0], [4.0, -0.6], [5.0, 5.0]]))
    with pytest.raises(UserError, match="2 of 4 fixation points fall outside"):
        open_fixation_data(root)
    ds = open_fixation_data(root, ReadOptions(outside="drop"))
    assert _points_of(ds, 0) == [(5, 5), (29, 3)]
    assert ds.notes == ["dropped 2 of 4 fixation points that fall outside their image (--outside drop)"]


def test_blur_follows_the_viewing_geometry(tmp_path):
    root, _ = _scene_like(tmp_path, "xy")
    single = open_fixation_data(root).subset(["002.jpg"])   # 100 x 40, a fixation at (5, 90)
    d = single.density(0, subjects=[0])
    # Unknown geometry: one degree is the image width / VIEW_DEGREES pixels.
    sigma = 40 / VIEW_DEGREES
    assert d[90, 5] == pytest.approx(1.0)
    assert d[90 - 3, 5] / d[90, 5] == pytest.approx(np.exp(-0.5 * (3 / sigma) ** 2), rel=1e-3)
    given = open_fixation_data(root, ReadOptions(ppd=3.0)).subset(["002.jpg"])
    d = given.density(0, subjects=[0])
    assert d[90 - 3, 5] / d[90, 5] == pytest.approx(np.exp(-0.5), rel=1e-3)
    assert "3 px per degree (--ppd)" in given.ground_truth
    with pytest.raises(UserError, match="ppd must be positive"):
        from salclass.settings import load_settings
        load_settings(ReadOptions, None, ["ppd=0"])


def test_osie_is_recognised_by_its_records_not_its_file_names(tmp_path, osie_root):
    """Data in OSIE's format but not OSIE gets the seeded split and the unknown-geometry
    blur; a stimuli/ + fixations.mat holding a cell array is not taken for OSIE."""
    osie = open_fixation_data(osie_root)
    assert osie.kind == "osie" and osie.is_osie and osie.ppd((600, 800)) == OSIE_SIGMA
    names = [f"img{k}.jpg" for k in range(8)]
    for n in names:
        _image(tmp_path / "own" / "stimuli" / n, 30, 40)
    subj = {"fix_x": np.array([10.0, 20.0]), "fix_y": np.array([5.0, 6.0]), "fix_duration": np.array([200, 300])}
    recs = np.empty((len(names), 1), dtype=object)
    for k, n in enumerate(names):
        recs[k, 0] = {"img": n, "subjects": np.array([subj, subj], dtype=object).reshape(2, 1)}
    scipy.io.savemat(tmp_path / "own" / "fixations.mat", {"fixations": recs})
    own = open_fixation_data(tmp_path / "own")
    assert own.kind == "osie" and not own.is_osie and own.num_subjects == 2
    assert len(own.split("test")) == 2 and own.ppd((30, 40)) == pytest.approx(40 / VIEW_DEGREES)
    assert own.fixations(0).x.tolist() == [9.0, 19.0, 9.0, 19.0]
    root, _ = _scene_like(tmp_path / "cell", "xy")
    (root / "tidy" / "fixations.mat").rename(root / "fixations.mat")
    assert open_fixation_data(root).kind == "points"


def test_scene_as_it_is(scene_root):
    with pytest.raises(UserError, match="3,378 of 43,894 .*--points yx"):
        open_fixation_data(scene_root)
    ds = open_fixation_data(scene_root, ReadOptions(points="yx", outside="drop"))
    assert len(ds) == 500 and ds.num_subjects == 12 and ds.kind == "points"
    assert ds.notes == ["dropped 9 of 43,894 fixation points that fall outside their image (--outside drop)"]
    raw = scipy.io.loadmat(scene_root / "tidy" / "fixations.mat")["fixations"]
    np.testing.assert_array_equal(ds.fixations(0).of_subjects([0]).y, raw[0, 0][:, 0])
