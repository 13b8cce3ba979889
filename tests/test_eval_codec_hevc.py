"""HEVC / H.264 intra as anchors of `taskcomp eval-codec` (issue 38): CRF sweeps recorded like JPEG / WebP, BD-rates
against HEVC 4:2:0 and 4:4:4 in the table and the summary, the methods and --crfs checked."""

import json

import pytest
from PIL import Image

pytest.importorskip("av")

from taskcomp.bench import codec_eval  # noqa: E402
from taskcomp.cli import main  # noqa: E402

CRFS = [26, 36, 46]


@pytest.fixture
def two_images(tmp_path, sample_128):
    """Two 64-px crops of the sample in one folder."""
    d = tmp_path / "imgs"
    d.mkdir()
    Image.fromarray(sample_128[:64, :64]).save(d / "a.png")
    Image.fromarray(sample_128[64:, 64:]).save(d / "b.png")
    return d


def _run(args, capsys):
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_hevc_records_from_the_command(tmp_path, two_images, capsys):
    out = tmp_path / "ev"
    args = ["eval-codec", "--images", two_images, "--methods", "hevc", "--crfs", ",".join(map(str, CRFS))]
    rc, stdout, err = _run([*args, "--out", out, "--device", "cpu"], capsys)
    assert rc == 0, err
    recs = [json.loads(l) for l in (out / "records.jsonl").read_text().splitlines()]
    assert len(recs) == 2 * len(CRFS) and {r["method"] for r in recs} == {"hevc"}
    for r in recs:
        assert r["setting"] == f"crf={r['crf']:g}" and r["chroma"] == "420"
        assert r["bytes"] > 0 and r["bpp"] == pytest.approx(8 * r["bytes"] / (64 * 64))
        assert r["psnr"] > 20 and r["enc_s"] > 0 and r["dec_s"] > 0 and r["weights"].startswith("pyav-")
    for name in ("a.png", "b.png"):
        by_crf = sorted((r["crf"], r["bpp"], r["psnr"]) for r in recs if r["image"] == name)
        assert [c for c, _, _ in by_crf] == CRFS
        bpp, db = [b for _, b, _ in by_crf], [p for _, _, p in by_crf]
        assert bpp[0] > bpp[1] > bpp[2] and db[0] > db[2]  # the rate rises, and the quality, as CRF falls
    # a rerun finds every point done
    rc, _, err = _run([*args, "--out", out, "--device", "cpu"], capsys)
    assert rc == 0 and len((out / "records.jsonl").read_text().splitlines()) == len(recs)


def test_table_and_summary_hold_bd_rates_against_hevc(tmp_path, two_images):
    images = sorted(two_images.glob("*.png"))
    out = tmp_path / "ev"
    recs = codec_eval.evaluate(None, "sft-small", images, out, baselines=("webp", "hevc", "hevc444"), crfs=CRFS)
    assert {r["method"] for r in recs} == {"webp", "hevc", "hevc444"}
    assert {r["chroma"] for r in recs if r["method"] == "hevc444"} == {"444"}
    s = codec_eval.summarize(recs, out, "sft-small", dataset="tiny")
    vs = s["bd_rate_vs_standard_percent"]
    assert set(vs) == {"webp"} and set(vs["webp"]) == {"hevc", "hevc444"}
    assert isinstance(vs["webp"]["hevc"], float) and vs["webp"]["hevc"] == s["bd_rate_psnr_percent"]["webp vs hevc"]
    assert s["standard_codecs"]["hevc"]["crf"] == sorted(CRFS, reverse=True)  # the curve runs by rising bpp
    table = (out / "rd_table.md").read_text()
    assert "| test | vs hevc | vs hevc444 |" in table and "| hevc | crf=36 |" in table
    assert "4:2:0, preset slow" in table and "CRFs 26..46 step 10" in table
    doc = json.loads((out / "hevc.json").read_text())
    res = doc["results"]
    assert res["crf"] == sorted(CRFS, reverse=True) and res["bpp"] == sorted(res["bpp"])
    assert len(res["psnr-rgb"]) == len(res["encoding_time"]) == len(res["decoding_time"]) == len(CRFS)
    assert (out / "rd_psnr.png").is_file()


@pytest.mark.parametrize(
    "args, words",
    [
        (["--methods", "hevc,av1"], ("unknown methods", "av1", "hevc444")),
        (["--methods", "hevc", "--crfs", "20,60"], ("--crfs", "[0, 51]")),
        (["--methods", "hevc", "--crfs", "x"], ("--crfs",)),
    ],
)
def test_bad_methods_and_crfs_are_one_line_errors(tmp_path, two_images, capsys, args, words):
    rc, _, err = _run(["eval-codec", "--images", two_images, *args, "--out", tmp_path / "ev"], capsys)
    lines = [l for l in err.strip().splitlines() if l]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert all(w in lines[0] for w in words), lines[0]


def test_default_methods_include_hevc_and_drop_it_without_pyav(tmp_path, two_images, capsys, monkeypatch):
    import taskcomp.cli.coding as coding
    from taskcomp.codec.standard import MissingExtraError

    seen = []
    monkeypatch.setattr(coding, "evaluate", lambda *a, **k: seen.append(k["baselines"]) or [])
    monkeypatch.setattr(coding, "check_roundtrip", lambda *a, **k: [])
    monkeypatch.setattr(coding, "summarize", lambda *a, **k: {})
    args = ["eval-codec", "--images", two_images, "--out", tmp_path / "ev", "--device", "cpu"]
    assert _run(args, capsys)[0] == 0 and seen[-1] == ("jpeg", "webp", "hevc")

    def missing():
        raise MissingExtraError("no PyAV")

    monkeypatch.setattr(coding, "require_pyav", missing)
    rc, out, _ = _run(args, capsys)
    assert rc == 0 and seen[-1] == ("jpeg", "webp") and "HEVC left out" in out
