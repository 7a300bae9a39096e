"""The report's pictures, each returned as a ``data:image/png;base64,...`` URI.

Plots (bar charts, training curves) are drawn with matplotlib's object API on the Agg
canvas (no pyplot state, no display needed) in seaborn's whitegrid style, at a small size
and dpi, saved as palette PNGs so that the HTML file stays small: one figure per dataset ×
latent dim, never one per run.
Image grids of the preview files (reconstructions, interpolations) are composed directly
with numpy and Pillow at their native 32×32 resolution; 1-D signals are drawn as waveforms
(:func:`waveform_tiles`) and then composed the same way.

matplotlib and Pillow are imported inside the functions so that importing the report
package stays cheap.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

DPI = 96
PANEL_WIDTH_IN = 2.7
GRID_GAP = 1  # pixels between tiles
REFERENCE_COLOUR = "#9aa0a6"
# Reconstruction loss in training histories, in order of preference (every family logs "mse", or
# "cross_entropy" on token sequences).
LOSS_KEYS = ("mse", "cross_entropy", "autoencoder")


def png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


# ------------------------------------------------------------------------------ image grids
def tile_grid(tiles: np.ndarray, gap: int = GRID_GAP) -> tuple[bytes, int, int]:
    """PNG of a rows × cols grid of uint8 images ``(rows, cols, C, H, W)``, C = 1 or 3, with
    its width and height in pixels. Tiles are separated by ``gap`` white pixels."""
    from PIL import Image

    rows, cols, channels, h, w = tiles.shape
    canvas = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap, channels), 255, np.uint8)
    for r in range(rows):
        for c in range(cols):
            canvas[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = \
                tiles[r, c].transpose(1, 2, 0)
    image = Image.fromarray(canvas[..., 0] if channels == 1 else canvas, "L" if channels == 1 else "RGB")
    if channels == 3:  # an adaptive 256-colour palette: a third of the bytes, invisible at this size
        image = image.quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue(), image.width, image.height


WAVE_HEIGHT = 32  # pixels per channel of a drawn waveform
WAVE_WIDTH = 128  # columns of a drawn waveform (at most one per sample)


def waveform_tiles(signals: np.ndarray, scale: float) -> np.ndarray:
    """Signals ``(..., C, L)`` drawn as grey uint8 tiles ``(..., 1, C·WAVE_HEIGHT, W)``: each
    column spans the samples' minimum to maximum over its stretch of the signal (the usual
    waveform display), ``±scale`` at the tile's edges, with a light zero line; channels are
    stacked top to bottom."""
    lead, (channels, length) = signals.shape[:-2], signals.shape[-2:]
    width = min(WAVE_WIDTH, length)
    edges = np.linspace(0, length, width + 1).astype(int)[:-1]
    flat = np.asarray(signals, dtype=np.float32).reshape(-1, channels, length)
    low = np.minimum.reduceat(flat, edges, axis=-1)
    high = np.maximum.reduceat(flat, edges, axis=-1)

    def row(v: np.ndarray) -> np.ndarray:
        return np.clip(np.rint((1 - v / scale) / 2 * (WAVE_HEIGHT - 1)), 0, WAVE_HEIGHT - 1).astype(int)

    top, bottom = row(high), row(low)  # (n, C, width): a higher value is a lower row
    rows = np.arange(WAVE_HEIGHT)[None, None, :, None]
    ink = (rows >= top[:, :, None, :]) & (rows <= bottom[:, :, None, :])  # (n, C, H, width)
    tiles = np.full(ink.shape, 255, np.uint8)
    tiles[:, :, (WAVE_HEIGHT - 1) // 2, :] = 215  # the zero line
    tiles[ink] = 40
    return tiles.reshape(-1, 1, channels * WAVE_HEIGHT, width).reshape(*lead, 1, channels * WAVE_HEIGHT, width)


def _drawable(previews: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The preview arrays as image tiles: images as they are, signals drawn as waveforms at the
    originals' scale (the largest magnitude among them, so every tile shares one axis)."""
    if previews["originals"].ndim == 4:
        return previews
    scale = float(np.abs(previews["originals"].astype(np.float32)).max()) or 1.0
    return {k: waveform_tiles(v, scale) for k, v in previews.items()}


def _spelled(ids: np.ndarray, symbols: Sequence[str], pad: int, reference: np.ndarray | None = None) -> str:
    """Token ids as HTML text: trailing padding dropped, padding inside shown as its symbol, and
    (given the ``reference`` string's ids) every position that differs from it marked."""
    from markupsafe import escape

    ids = [int(i) for i in ids]
    end = len(ids)
    while end and ids[end - 1] == pad and (reference is None or int(reference[end - 1]) == pad):
        end -= 1
    out, run, marking = [], [], False
    for position, token in enumerate(ids[:end]):
        wrong = reference is not None and int(reference[position]) != token
        if wrong != marking and run:
            out.append(f'<span class="bad">{"".join(run)}</span>' if marking else "".join(run))
            run = []
        marking = wrong
        run.append(str(escape(symbols[token])))
    if run:
        out.append(f'<span class="bad">{"".join(run)}</span>' if marking else "".join(run))
    return "".join(out)


def text_previews(previews: dict[str, np.ndarray]) -> dict[str, Any]:
    """Token-sequence previews as text for the report: per test example the original, the
    decoded argmax string (positions that differ from the nearest valid string marked) and that
    nearest string; per interpolated pair the same for each step. Strings are HTML (escaped)."""
    from markupsafe import Markup

    symbols = [str(s) for s in previews["symbols"]]
    pad = int(previews.get("pad", -1))

    def rows(probabilities: np.ndarray, nearest: np.ndarray | None) -> list[dict[str, Any]]:
        argmax = np.asarray(probabilities, dtype=np.float32).argmax(axis=-2).reshape(-1, probabilities.shape[-1])
        near = None if nearest is None else np.asarray(nearest).reshape(len(argmax), -1)
        return [{"decoded": Markup(_spelled(a, symbols, pad, None if near is None else near[i])),
                 "nearest": None if near is None else Markup(_spelled(near[i], symbols, pad)),
                 "valid": near is not None and bool((near[i] == a).all())}
                for i, a in enumerate(argmax)]

    originals = [Markup(_spelled(a, symbols, pad)) for a in previews["originals"].astype(np.float32).argmax(axis=1)]
    steps = previews["interpolations"].shape[1]
    interpolations = rows(previews["interpolations"], previews.get("nearest_interpolations"))
    decoded = rows(previews["reconstructions"], previews.get("nearest_reconstructions"))
    return {"reconstructions": [{"original": o, **r} for o, r in zip(originals, decoded)],
            "interpolations": [interpolations[i:i + steps] for i in range(0, len(interpolations), steps)],
            "has_nearest": "nearest_interpolations" in previews}


def _image(tiles: np.ndarray) -> dict[str, Any]:
    data, width, height = tile_grid(tiles)
    return {"src": png_uri(data), "width": width, "height": height}


def reconstruction_grid(previews: dict[str, np.ndarray]) -> dict[str, Any]:
    """Originals (top row) over their reconstructions (bottom row): ``src``, ``width``, ``height``."""
    drawn = _drawable(previews)
    return _image(np.stack([drawn["originals"], drawn["reconstructions"]]))


def interpolation_grid(previews: dict[str, np.ndarray]) -> dict[str, Any]:
    """One row per interpolated pair, from one endpoint's decoding to the other's."""
    return _image(_drawable(previews)["interpolations"])


# ------------------------------------------------------------------------------ plots
def _style():
    """Seaborn's whitegrid look (matplotlib's bundled copy of it: importing seaborn itself,
    and pandas with it, would cost seconds for a style and a palette) and small fonts."""
    import matplotlib
    import matplotlib.style

    rc = {**matplotlib.style.library["seaborn-v0_8-whitegrid"],
          "font.family": "sans-serif", "font.sans-serif": ["DejaVu Sans"],  # bundled: every glyph we use
          "font.size": 8, "axes.titlesize": 8.5, "axes.titleweight": "bold", "axes.labelsize": 8,
          "xtick.labelsize": 7.5, "ytick.labelsize": 7.5, "legend.fontsize": 7.5}
    return matplotlib.rc_context(rc)


def plain(text: str) -> str:
    """``text`` drawn as typed: a ``$`` would otherwise start matplotlib's mathtext."""
    return text.replace("$", r"\$")


def encoder_colours(encoders: Sequence[str], references: Sequence[str]) -> dict[str, Any]:
    """A stable colour per learned encoder (tab10/tab20, in the given order); references grey."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if len(encoders) <= 10 else "tab20"]
    colours: dict[str, Any] = {e: cmap(i % cmap.N) for i, e in enumerate(encoders)}
    colours.update({e: REFERENCE_COLOUR for e in references})
    return colours


def _save(fig) -> str:
    """The figure as a palette PNG (plots use few colours; 256 keep the anti-aliasing)."""
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
    image = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    image = image.quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return png_uri(out.getvalue())


def bar_chart(panels: Sequence[dict[str, Any]], colours: dict[str, Any]) -> str | None:
    """Grouped horizontal bars: one panel per probe metric, one bar per table row.

    Each panel: ``title``, and ``bars`` — dicts with ``label``, ``encoder``, ``mean``,
    ``std`` (drawn as the error bar; 0 for a single seed) and ``reference`` (hatched grey).
    Bars with a NaN mean are left out. Returns ``None`` when there is nothing to draw.
    """
    panels = [p for p in panels if any(not math.isnan(b["mean"]) for b in p["bars"])]
    if not panels:
        return None
    from matplotlib.figure import Figure

    labels = list(dict.fromkeys(b["label"] for p in panels for b in p["bars"]))
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    with _style():
        fig = Figure(figsize=(PANEL_WIDTH_IN * cols, rows * (0.5 + 0.16 * len(labels))), layout="constrained")
        axes = fig.subplots(rows, cols, squeeze=False, sharey=True)
        for ax, panel in zip(axes.flat, panels):
            y = {label: i for i, label in enumerate(labels)}
            for b in panel["bars"]:
                if math.isnan(b["mean"]):
                    continue
                ax.barh(y[b["label"]], b["mean"], xerr=b["std"] or None, color=colours.get(b["encoder"]),
                        hatch="///" if b["reference"] else None, edgecolor="white", linewidth=0.4,
                        height=0.72, error_kw={"elinewidth": 0.8, "capsize": 1.5, "ecolor": "#333333"})
            ax.set_yticks(range(len(labels)), [plain(label) for label in labels])
            ax.set_ylim(len(labels) - 0.5, -0.5)
            ax.set_title(plain(panel["title"]), loc="left")
            ax.tick_params(pad=1)
            ax.grid(axis="y", visible=False)
        for ax in list(axes.flat)[len(panels):]:
            ax.set_visible(False)
        return _save(fig)


def training_curves(series: Sequence[dict[str, Any]], colours: dict[str, Any]) -> str | None:
    """Reconstruction loss (log scale) and online-classifier accuracy against training images.

    ``series``: dicts with ``encoder``, ``seed`` and ``history`` (``history.json`` of a run:
    ``images`` with the loss keys of :data:`LOSS_KEYS`, ``online_images`` with
    ``online_accuracy``). One line per run, coloured by encoder. ``None`` when no run has
    a history to draw.
    """
    drawable = [s for s in series if _loss(s["history"]) or s["history"].get("online_accuracy")]
    if not drawable:
        return None
    from matplotlib.figure import Figure

    with _style():
        fig = Figure(figsize=(2 * PANEL_WIDTH_IN + 1.3, 2.2), layout="constrained")
        loss_ax, acc_ax = fig.subplots(1, 2)
        seen: set[str] = set()
        loss_keys: list[str] = []
        for s in drawable:
            h, colour = s["history"], colours.get(s["encoder"])
            label = plain(s["encoder"]) if s["encoder"] not in seen else None
            seen.add(s["encoder"])
            loss = _loss(h)
            if loss:
                key, values = loss
                loss_keys += [key] if key not in loss_keys else []
                x, y = np.asarray(h.get("images", [])[:len(values)], float), np.asarray(values, float)
                keep = y > 0
                loss_ax.plot(x[keep], y[keep], color=colour, lw=1, alpha=0.85, label=label)
            if h.get("online_accuracy"):
                acc_ax.plot(h["online_images"], 100 * np.asarray(h["online_accuracy"], float), color=colour,
                            lw=1, alpha=0.85, marker="o", ms=2, label=None if loss else label)
        loss_ax.set_yscale("log")
        loss_ax.set_title(f"reconstruction loss ({', '.join(loss_keys) or 'none logged'})", loc="left")
        acc_ax.set_title("online classifier, test accuracy %", loc="left")
        for ax in (loss_ax, acc_ax):
            ax.set_xlabel("training images")
            ax.tick_params(pad=1)
            ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 3))
        fig.legend(loc="outside right upper", frameon=False)
        return _save(fig)


def _loss(history: dict[str, Any]) -> tuple[str, list[float]] | None:
    for key in LOSS_KEYS:
        if history.get(key) and history.get("images"):
            return key, history[key]
    return None


def along_training(panels: Sequence[Any], colours: dict[str, Any], paper_budget: int) -> str | None:
    """One panel per metric: score against training images (log2 axis), a line per family
    (band: ± one std over seeds), reference encoders as dashed horizontal lines, the paper's
    values as stars at ``paper_budget`` (hollow for an unverified recollection). ``panels`` are
    :class:`repeval.report.curves.Panel` s."""
    if not panels:
        return None
    from matplotlib.figure import Figure

    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    with _style():
        fig = Figure(figsize=(PANEL_WIDTH_IN * cols + 1.3, 2.2 * rows), layout="constrained")
        axes = fig.subplots(rows, cols, squeeze=False)
        seen: set[str] = set()
        for ax, panel in zip(axes.flat, panels):
            for line in panel.lines:
                colour = colours.get(line.encoder)
                x, y, s = (np.asarray(v, float) for v in (line.budgets, line.means, line.stds))
                label = plain(line.encoder) if line.encoder not in seen else None
                seen.add(line.encoder)
                ax.plot(x, y, color=colour, lw=1.2, marker="o", ms=2.5, label=label)
                if max(line.ns) > 1:  # the band stays in the metric's declared range
                    low, high = getattr(getattr(panel, "view", None), "bounds", None) or (None, None)
                    scale = getattr(getattr(panel, "view", None), "scale", 1.0)
                    ax.fill_between(x, np.clip(y - s, None if low is None else low * scale, None),
                                    np.clip(y + s, None, None if high is None else high * scale),
                                    color=colour, alpha=0.18, lw=0)
            for floor in panel.floors:
                label = plain(f"{floor['encoder']} (reference)") if floor["encoder"] not in seen else None
                seen.add(floor["encoder"])
                ax.axhline(floor["mean"], color=REFERENCE_COLOUR, lw=1, ls="--", label=label)
            for mark in panel.paper:
                ax.plot([paper_budget], [mark["value"]], marker="*", ms=7, ls="none",
                        color=colours.get(mark["encoder"]), markerfacecolor=None if mark["verified"] else "white")
            ax.set_xscale("log", base=2)
            ax.set_title(plain(panel.title), loc="left")
            ax.set_xlabel("training images")
            ax.tick_params(pad=1)
        if any(p.paper for p in panels):
            fig.supxlabel("stars: the paper's value at its 2^24 images (hollow: an unverified recollection)",
                          fontsize=7)
        for ax in list(axes.flat)[len(panels):]:
            ax.set_visible(False)
        fig.legend(loc="outside right upper", frameon=False)
        return _save(fig)


def curve_chart(panels: Sequence[Any], colours: dict[str, Any]) -> str | None:
    """Accuracy against labelled train examples per class (log scale), one panel per probe,
    one line per encoder with its 95 % interval as a band (reference encoders dashed).

    ``panels``: :class:`repeval.report.scores.CurvePanel` s. ``None`` when nothing to draw."""
    panels = [p for p in panels if any(pt for s in p.series for pt in s.points)]
    if not panels:
        return None
    from matplotlib.figure import Figure

    with _style():
        fig = Figure(figsize=(PANEL_WIDTH_IN * 1.35 * len(panels) + 1.2, 2.6), layout="constrained")
        axes = fig.subplots(1, len(panels), squeeze=False, sharey=True)[0]
        for ax, panel in zip(axes, panels):
            ticks: dict[float, str] = {}
            for series in panel.series:
                xs = np.array([p.x for p in series.points], float)
                ys = np.array([p.mean for p in series.points], float)
                colour = colours.get(series.encoder)
                ax.plot(xs, ys, color=colour, lw=1.3, marker="o", ms=3, ls="--" if series.reference else "-",
                        label=plain(series.encoder) if ax is axes[0] else None)
                band = [(p.x, p.low, p.high) for p in series.points if p.low is not None]
                if len(band) >= 2:
                    bx, lo, hi = (np.array(v, float) for v in zip(*band))
                    ax.fill_between(bx, lo, hi, color=colour, alpha=0.18, lw=0)
                for p in series.points:
                    ticks.setdefault(p.x, p.label if p.label != "all" else f"all\n({p.x:,.0f})")
            ax.set_xscale("log", base=2)
            ax.set_xticks(list(ticks), list(ticks.values()))
            ax.minorticks_off()
            ax.set_xlabel("labelled train examples per class")
            ax.set_title(plain(f"{panel.probe} probe: test accuracy {panel.unit}".strip()), loc="left")
            ax.tick_params(pad=1)
        fig.legend(loc="outside right upper", frameon=False)
        return _save(fig)


def latent_maps(maps: Sequence[dict[str, Any]]) -> str | None:
    """Small 2-D maps (t-SNE) of test latents, one panel per encoder, points coloured by class.

    ``maps``: dicts with ``label`` and ``xy`` ``(N, 2)``, ``labels`` ``(N,)``. ``None`` when empty."""
    if not maps:
        return None
    import matplotlib
    import matplotlib.lines
    from matplotlib.figure import Figure

    cmap = matplotlib.colormaps["tab10"]
    cols = min(4, len(maps))
    rows = math.ceil(len(maps) / cols)
    with _style():
        fig = Figure(figsize=(1.9 * cols + 0.9, 1.95 * rows), layout="constrained")
        axes = fig.subplots(rows, cols, squeeze=False)
        classes = sorted({int(c) for m in maps for c in np.unique(m["labels"])})
        for ax, m in zip(axes.flat, maps):
            xy, labels = np.asarray(m["xy"], float), np.asarray(m["labels"])
            ax.scatter(xy[:, 0], xy[:, 1], c=[cmap(int(c) % 10) for c in labels], s=1.5, lw=0, rasterized=True)
            ax.set_title(plain(m["label"]), loc="left")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
        for ax in list(axes.flat)[len(maps):]:
            ax.set_visible(False)
        handles = [matplotlib.lines.Line2D([], [], ls="", marker="o", ms=4, color=cmap(c % 10), label=str(c))
                   for c in classes[:20]]
        fig.legend(handles=handles, loc="outside right upper", frameon=False, title="class", handletextpad=0.1)
        return _save(fig)
