"""Data layouts of the recipe runner (taskcomp.runner.layouts): tiny synthetic folders, plus the real data
where present."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from taskcomp.runner.layouts import LayoutError, annotation_file, data_spec, list_items, list_layout

# ImageNet-1k (torchvision / timm order): 0 tench n01440764, 1 goldfish n01443537, 2 great white shark n01484850
TENCH, GOLDFISH, SHARK = "n01440764", "n01443537", "n01484850"


def _img(path, size=(8, 6)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((size[1], size[0], 3), np.uint8)).save(path)
    return path


def _recipe(data, task="classification", **methods):
    return {"name": "t", "task": task, "data": data, "methods": methods or {"original": {}}}


def _err(recipe, root, *words):
    with pytest.raises(LayoutError) as e:
        list_items(recipe, root)
    msg = str(e.value)
    assert "\n" not in msg, msg
    for w in words:
        assert w in msg, msg
    return msg


def test_imagenet_sample_layout_and_string_data(tmp_path):
    d = tmp_path / "mysample"
    for f in ("a.jpg", "b.jpg"):
        _img(d / "images" / f)
    (d / "labels.csv").write_text("file,synset,class_index,name\na.jpg,n01440764,0,tench\nb.jpg,n01443537,1,goldfish\n")
    items = list_items(_recipe("mysample"), tmp_path)  # a string: folder under the data root, default layout
    assert [(i["id"], i["label"]) for i in items] == [("a.jpg", 0), ("b.jpg", 1)]
    assert items[0]["path"] == d / "images" / "a.jpg"
    # the same with an explicit mapping and an absolute path
    assert list_items(_recipe({"path": str(d), "layout": "imagenet-sample"}), "/nonexistent") == items
    (d / "images" / "b.jpg").unlink()
    _err(_recipe("mysample"), tmp_path, "1 of the 2 files", "b.jpg")
    (d / "labels.csv").unlink()
    _err(_recipe("mysample"), tmp_path, "imagenet-sample", "labels.csv", "found")


def test_imagefolder_class_index_from_model_order(tmp_path):
    _img(tmp_path / "val" / SHARK / "x.JPEG")
    _img(tmp_path / "val" / SHARK / "sub" / "y.png")  # torchvision's ImageFolder walks class folders
    _img(tmp_path / "val" / TENCH / "z.JPEG")
    _img(tmp_path / "val" / "7" / "w.jpg")  # class-index folder names are accepted too
    (tmp_path / "val" / TENCH / "notes.txt").write_text("not an image")
    items = list_items(_recipe({"path": "val", "layout": "imagefolder"}), tmp_path)
    got = {i["id"]: i["label"] for i in items}
    # the shark's sorted position among these folders is 1 (0 is "7"), its ImageNet index is 2
    assert got == {"7/w.jpg": 7, f"{SHARK}/sub/y.png": 2, f"{SHARK}/x.JPEG": 2, f"{TENCH}/z.JPEG": 0}


def test_imagefolder_wrong_inputs(tmp_path):
    _img(tmp_path / "flat" / "a.jpg")
    _err(_recipe({"path": "flat", "layout": "imagefolder"}), tmp_path, "imagefolder", "subfolder", "flat folder")
    _img(tmp_path / "named" / "cats" / "a.jpg")
    _err(_recipe({"path": "named", "layout": "imagefolder"}), tmp_path, "'cats'", "WordNet id")
    _img(tmp_path / "big" / "1000" / "a.jpg")
    _err(_recipe({"path": "big", "layout": "imagefolder"}), tmp_path, "1000", "out of range")
    _img(tmp_path / "w21k" / "n99999999" / "a.jpg")
    _err(_recipe({"path": "w21k", "layout": "imagefolder"}), tmp_path, "n99999999", "not one of")
    _err(_recipe({"path": "missing", "layout": "imagefolder"}), tmp_path, "does not exist")


def _flat(tmp_path, n=3):
    d = tmp_path / "val"
    for k in range(1, n + 1):
        _img(d / f"ILSVRC2012_val_{k:08d}.JPEG")
    return d


def test_imagenet_flat_kaggle_and_two_column(tmp_path):
    d = _flat(tmp_path)
    (tmp_path / "LOC_val_solution.csv").write_text(  # found beside the folder
        "ImageId,PredictionString\n"
        f"ILSVRC2012_val_00000002,{TENCH} 1 2 3 4 {TENCH} 5 6 7 8\n"
        f"ILSVRC2012_val_00000001,{SHARK} 1 2 3 4\n"
        f"ILSVRC2012_val_00000003,{GOLDFISH} 1 2 3 4\nILSVRC2012_val_00000009,{GOLDFISH} 1 2 3 4\n"
    )
    items = list_items(_recipe({"path": "val", "layout": "imagenet-flat"}), tmp_path)
    assert [(i["id"], i["label"]) for i in items] == [
        ("ILSVRC2012_val_00000001.JPEG", 2),
        ("ILSVRC2012_val_00000002.JPEG", 0),
        ("ILSVRC2012_val_00000003.JPEG", 1),
    ]
    (d / "gt.csv").write_text(
        "file,synset\n"
        + "".join(f"ILSVRC2012_val_{k:08d}.JPEG,{s}\n" for k, s in ((1, GOLDFISH), (2, SHARK), (3, TENCH)))
    )
    r = list_items(_recipe({"path": "val", "layout": "imagenet-flat", "labels": "gt.csv"}), tmp_path)
    assert [i["label"] for i in r] == [1, 2, 0]
    (d / "gt.txt").write_text(
        "ILSVRC2012_val_00000001.JPEG 5\nILSVRC2012_val_00000002.JPEG 6\nILSVRC2012_val_00000003.JPEG 999\n"
    )
    r = list_items(_recipe({"path": "val", "layout": "imagenet-flat", "labels": "gt.txt"}), tmp_path)
    assert [i["label"] for i in r] == [5, 6, 999]
    (d / "short.txt").write_text("ILSVRC2012_val_00000001.JPEG 5\n")
    _err(
        _recipe({"path": "val", "layout": "imagenet-flat", "labels": "short.txt"}),
        tmp_path,
        "2 of 3 images",
        "ILSVRC2012_val_00000002.JPEG",
    )


def test_imagenet_flat_devkit(tmp_path):
    from scipy.io import savemat

    _flat(tmp_path)
    gt = tmp_path / "ILSVRC2012_validation_ground_truth.txt"
    gt.write_text("1\n2\n1\n")
    _err(_recipe({"path": "val", "layout": "imagenet-flat"}), tmp_path, "meta.mat", "LOC_val_solution.csv")
    # the devkit's meta.mat: synsets with ILSVRC2012_ID, WNID, ..., num_children (leaves: 0)
    dt = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("gloss", "O"), ("num_children", "O")]
    syn = np.array(
        [(1, SHARK, "shark", "", 0), (2, TENCH, "tench", "", 0), (1001, "n00000001", "fish", "", 2)], dtype=dt
    )
    savemat(str(tmp_path / "meta.mat"), {"synsets": syn})
    items = list_items(_recipe({"path": "val", "layout": "imagenet-flat"}), tmp_path)
    assert [i["label"] for i in items] == [2, 0, 2]
    assert items[0]["id"] == "ILSVRC2012_val_00000001.JPEG"


def test_imagenet_flat_without_ground_truth(tmp_path):
    _flat(tmp_path)
    _err(_recipe({"path": "val", "layout": "imagenet-flat"}), tmp_path, "ground-truth", "layout folder")


def test_folder_is_label_free(tmp_path):
    _img(tmp_path / "pics" / "b.png")
    _img(tmp_path / "pics" / "sub" / "a.jpg")
    (tmp_path / "pics" / "readme.md").write_text("x")
    rec = _recipe({"path": "pics", "layout": "folder"}, original={}, task_aware={"lambda": [1], "use_label": False})
    items = list_items(rec, tmp_path)
    assert [(i["id"], i["label"]) for i in items] == [("b.png", None), ("sub/a.jpg", None)]
    # task_aware maps with labels (the default) cannot run on it: one line saying what to set
    _err(_recipe({"path": "pics", "layout": "folder"}, task_aware={"lambda": [1]}), tmp_path, "use_label: false")
    (tmp_path / "empty").mkdir()
    _err(_recipe({"path": "empty", "layout": "folder"}), tmp_path, "layout folder expects", "0 image files")


def _coco(d, files=("a.jpg", "b.jpg")):
    return {
        "images": [{"id": 10 + k, "file_name": f, "width": 8, "height": 6} for k, f in enumerate(files)],
        "annotations": [{"id": 1, "image_id": 10, "category_id": 1, "bbox": [1, 1, 3, 3], "area": 9, "iscrowd": 0}],
        "categories": [{"id": 1, "name": "person"}],
    }


def test_coco_any_json_and_image_folder(tmp_path):
    d = tmp_path / "coco2017"
    (d / "annotations").mkdir(parents=True)
    (d / "annotations" / "instances_val2017.json").write_text(json.dumps(_coco(d)))
    for f in ("b.jpg", "a.jpg"):
        _img(d / "val2017" / f)
    rec = _recipe({"path": "coco2017", "layout": "coco", "images": "val2017"}, task="detection")
    items = list_items(rec, tmp_path)  # the JSON found in annotations/
    assert [(i["id"], i["coco_id"]) for i in items] == [("a.jpg", 10), ("b.jpg", 11)]
    assert items[0]["path"] == d / "val2017" / "a.jpg"
    assert annotation_file(rec, tmp_path) == d / "annotations" / "instances_val2017.json"
    rec2 = _recipe(
        {
            "path": str(d / "val2017"),
            "layout": "coco",
            "annotations": str(d / "annotations" / "instances_val2017.json"),
        },
        task="detection",
    )
    assert [i["id"] for i in list_items(rec2, "/nonexistent")] == ["a.jpg", "b.jpg"]
    # wrong: no JSON, a JSON that is not COCO, images elsewhere
    _err(
        _recipe({"path": "coco2017/val2017", "layout": "coco"}, task="detection"),
        tmp_path,
        "COCO instances JSON",
        "no JSON",
    )
    (d / "val2017" / "x.json").write_text("[1, 2]")
    _err(
        _recipe({"path": "coco2017", "layout": "coco", "annotations": "val2017/x.json"}, task="detection"),
        tmp_path,
        "'images' and 'annotations'",
    )
    _err(_recipe({"path": "coco2017", "layout": "coco"}, task="detection"), tmp_path, "2 of the 2 images", "images:")


def test_sroie_and_documents(tmp_path):
    s = tmp_path / "receipts"
    _img(s / "images" / "001.jpg")
    _img(s / "images" / "002.jpg")
    (s / "boxes").mkdir()
    (s / "boxes" / "001.csv").write_text("1,1,5,1,5,4,1,4,TOTAL 3.00\n")
    items = list_items(_recipe("receipts", task="text"), tmp_path)
    assert [(i["id"], i["boxes"], i["gt_text"]) for i in items] == [
        ("001.jpg", s / "boxes" / "001.csv", None),
        ("002.jpg", None, None),
    ]
    _err(_recipe({"path": "receipts/images", "layout": "sroie"}, task="text"), tmp_path, "boxes/", "layout documents")

    d = tmp_path / "docs"
    _img(d / "a.png")
    (d / "a.txt").write_text("HELLO\nWORLD")
    _img(d / "b" / "c.png")
    _img(d / "d.png")
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "d.txt").write_text("from text_dir")
    items = list_items(_recipe({"path": "docs", "layout": "documents", "text_dir": "../texts"}, task="text"), tmp_path)
    assert [(i["id"], i["gt_text"], i["boxes"]) for i in items] == [
        ("a.png", "HELLO\nWORLD", None),
        ("b/c.png", None, None),
        ("d.png", "from text_dir", None),
    ]
    _err(
        _recipe({"path": "docs", "layout": "documents"}, task="text", task_aware={"lambda": [1], "use_gt": True}),
        tmp_path,
        "use_gt: false",
    )
    _err(
        _recipe({"path": "docs", "layout": "documents", "text_dir": "b"}, task="text"), tmp_path, "text_dir", "no file"
    )


def test_recipe_data_spec_errors(tmp_path):
    _img(tmp_path / "pics" / "a.png")
    assert data_spec(_recipe("pics"), tmp_path) == (tmp_path / "pics", "imagenet-sample", {})
    assert data_spec(_recipe({"path": "pics"}, task="text"), tmp_path) == (tmp_path / "pics", "sroie", {})
    _err(_recipe({"path": "pics", "layout": "imagenet-folder"}), tmp_path, "unknown data layout", "imagefolder")
    _err(_recipe({"path": "pics", "layout": "coco"}), tmp_path, "does not serve task classification", "imagefolder")
    _err(_recipe({"path": "pics", "layout": "imagefolder", "label": "x.csv"}), tmp_path, "no option 'label'", "classes")
    _err(_recipe({"layout": "folder"}), tmp_path, "needs a path")


def test_task_adapters_without_labels_or_boxes():
    """Label-free classification prepares without a label; text without boxes measures CER vs the original only,
    and whole-page CER with gt_text (stub objectives: no models)."""
    import torch

    from taskcomp.runner.tasks import ClassificationTask, TextTask

    class Cls:
        def prepare(self, x, label=None):
            return {"label": label}

    t = ClassificationTask.__new__(ClassificationTask)
    t.objective, t.evaluators, t.use_label = Cls(), {"m": Cls()}, False
    t.maps_use_label = False
    opt, state = t.contexts(torch.zeros(1, 3, 4, 4), {"id": "a", "label": None})
    assert opt == {"label": None} and state["eval"]["m"] == {"label": None}
    t.use_label = t.maps_use_label = True
    with pytest.raises(ValueError, match="use_label: false"):
        t.contexts(torch.zeros(1, 3, 4, 4), {"id": "a", "label": None})
    assert t.contexts(torch.zeros(1, 3, 4, 4), {"id": "a", "label": 3})[0] == {"label": 3}

    class Ocr:
        def read(self, x):
            return [([[0, 0], [4, 0], [4, 2], [0, 2]], "HELLO", 0.9), ([[0, 3], [4, 3], [4, 5], [0, 5]], "W0RLD", 0.9)]

        def evaluate(self, x, ctx, readings=None):
            return [{"cer": 0.5, "word_acc": 0.25}]

    tt = TextTask.__new__(TextTask)
    tt.objective = Ocr()
    arr = np.zeros((6, 6, 3), np.uint8)
    state = {"orig": None, "mask": np.zeros((6, 6), bool)}
    x = torch.zeros(1, 3, 6, 6)
    rec = tt.metrics(arr, arr, x, state, {"boxes": None, "gt_text": None, "gt": []})
    assert rec == {"cer/original": 0.5, "word_acc/original": 0.25}  # no ground truth: no made-up CER 0
    rec = tt.metrics(arr, arr, x, state, {"boxes": None, "gt_text": "HELLO\nWORLD", "gt": []})
    assert rec["cer/gt"] == pytest.approx(1 / 11) and rec["word_acc/gt"] == 0.5


# ------------------------------------------------------------------------------------------ real data


def _sample_rows(data_root, n):
    with open(data_root / "imagenet-sample" / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [rows[i] for i in np.linspace(0, len(rows) - 1, n).round().astype(int)]


def test_imagefolder_copy_of_imagenet_sample_matches_labels(tmp_path, data_root):
    if not (data_root / "imagenet-sample" / "labels.csv").is_file():
        pytest.skip("imagenet-sample not in the data root")
    rows = _sample_rows(data_root, 12)
    for r in rows:
        dst = tmp_path / "if" / r["synset"] / r["file"]
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.symlink_to(data_root / "imagenet-sample" / "images" / r["file"])
        (tmp_path / "flat").mkdir(exist_ok=True)
        (tmp_path / "flat" / r["file"]).symlink_to(data_root / "imagenet-sample" / "images" / r["file"])
    rec = {
        "name": "t",
        "task": "classification",
        "objective": {"name": "classification", "model": "tf_efficientnet_lite0"},
        "data": {"path": str(tmp_path / "if"), "layout": "imagefolder"},
        "methods": {"task_aware": {"use_label": True}},
    }
    items = list_items(rec, data_root)
    assert {i["id"].split("/")[1]: i["label"] for i in items} == {r["file"]: int(r["class_index"]) for r in rows}
    ref = {i["id"]: i["label"] for i in list_items({**rec, "data": "imagenet-sample"}, data_root)}
    assert all(ref[i["path"].name] == i["label"] for i in items)
    flat = list_items(
        {
            **rec,
            "data": {"path": str(tmp_path / "flat"), "layout": "folder"},
            "methods": {"task_aware": {"use_label": False}},
        },
        data_root,
    )
    assert sorted(i["id"] for i in flat) == sorted(r["file"] for r in rows)
    assert all(i["label"] is None for i in flat)
    # the same flat folder with the sample's labels.csv as its ground-truth file
    lab = list_items(
        {
            **rec,
            "data": {
                "path": str(tmp_path / "flat"),
                "layout": "imagenet-flat",
                "labels": str(data_root / "imagenet-sample" / "labels.csv"),
            },
        },
        data_root,
    )
    assert {i["id"]: i["label"] for i in lab} == {r["file"]: int(r["class_index"]) for r in rows}


def test_default_layouts_on_real_data(data_root):
    if not (data_root / "coco-val" / "instances.json").is_file() or not (data_root / "sroie" / "boxes").is_dir():
        pytest.skip("coco-val / sroie not in the data root")
    coco = list_items({"task": "detection", "data": "coco-val", "methods": {}}, data_root)
    assert len(coco) == 158 and all(i["path"].is_file() and isinstance(i["coco_id"], int) for i in coco)
    assert (
        annotation_file({"task": "detection", "data": "coco-val"}, data_root)
        == data_root / "coco-val" / "instances.json"
    )
    sroie = list_items({"task": "text", "data": "sroie", "methods": {}}, data_root)
    assert len(sroie) == 100 and sroie[0]["id"] == "007.jpg" and sroie[0]["boxes"].name == "007.csv"
    assert list_layout("sroie", data_root / "sroie")[0]["id"] == "007.jpg"
