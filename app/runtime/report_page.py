"""A model's phone-readiness report as one HTML page a person reads offline: no script, no
external asset, tables that use the window's width."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape

from app.runtime.report_types import ModelReport

_CSS = ("body{font-family:system-ui,sans-serif;margin:1em 2vw;color:#222;line-height:1.4}"
        "table{border-collapse:collapse;margin:.5em 0 1.5em;width:100%}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;vertical-align:top}"
        "th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}"
        "th.ops{text-align:left}td.ops{text-align:left;font-family:ui-monospace,monospace;"
        "font-size:90%}"
        "code,pre{font-family:ui-monospace,monospace;background:#f6f6f6}"
        "pre{padding:.5em;overflow-x:auto}.warn{color:#a40000;font-weight:bold}"
        "svg.bars{max-width:60em;display:block;margin:0 0 1.5em}"
        ".grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(28em,1fr));gap:0 2em}")


def render(report: ModelReport) -> str:
    """The report page."""
    r = report
    parts = [f"<h1>Phone readiness of model {escape(r.name)}</h1>",
             f"<p><code>{escape(r.model_id)}</code> &middot; sha256 <code>{escape(r.sha256)}"
             "</code></p>"]
    parts += [f'<p class="warn">{escape(n)}</p>' if "beyond" in n else f"<p>{escape(n)}</p>"
              for n in r.notes]
    parts.append('<div class="grid"><div><h2>Size</h2>' + _table(
        ("", "value"),
        [("model (.tflite)", size(r.model_bytes)), ("checkpoint (save signature)",
                                                    size(r.checkpoint_bytes)),
         ("trainable parameters (variables save writes)", f"{r.trainable_parameters:,}"),
         ("frozen parameters (constant weights)", f"{r.frozen_parameters:,}")]) + "</div>")
    t = r.timing
    parts.append("<div><h2>On this server</h2>" + _table(
        ("", "value"),
        [(f"train step, batch {t.train_batch}", ms(t.train_ms_per_step)),
         ("train, per example", ms(t.train_ms_per_example)),
         (f"infer, batch {t.infer_batch}", ms(t.infer_ms_per_batch))]) + "</div></div>")
    parts.append("<h2>Operators per signature</h2>" + _table(
        ("signature", "subgraphs", "TFLite built-ins", "Select TF ops", "custom ops"),
        [(k, ", ".join(map(str, s.subgraphs)), _ops(s.builtin), _ops(s.flex), _ops(s.custom))
         for k, s in r.signatures.items()], raw=(2, 3, 4)))
    parts.append("<h2>On the catalogue's device classes</h2>" + _table(
        ("class", "slowdown", f"train step (batch {t.train_batch})",
         f"infer (batch {t.infer_batch})", "model download", "checkpoint down / up",
         "energy a train step"),
        [(d.name, "\u2013" if d.slowdown is None else f"{d.slowdown:g}x",
          ms(d.train_ms_per_step), ms(d.infer_ms_per_batch), seconds(d.model_download_s),
          f"{seconds(d.checkpoint_download_s)} / {seconds(d.checkpoint_upload_s)}",
          "\u2013" if d.train_joules_per_step is None else f"{d.train_joules_per_step:.3g} J")
         for d in r.devices]))
    bars = [("this server", t.train_ms_per_step)] + [(d.name, d.train_ms_per_step)
                                                     for d in r.devices]
    parts.append(bar_chart(f"train step, batch {t.train_batch}", bars))
    s = r.shipping
    parts.append("<h2>Shipping it</h2>" + _table(
        ("runtime build", "C++ binary", "Android APK", "this model"),
        [(b.label, size(b.cpp_binary_bytes), size(b.android_apk_bytes),
          "runs" if b.applies else "cannot run it") for b in s.runtime]))
    parts.append("<p>Selectively built AARs (TensorFlow's table):</p>" + _table(
        ("model", "arch", "tensorflow-lite.aar", "tensorflow-lite-select-tf-ops.aar"),
        [(a.model, a.arch, size(a.builtin_aar_bytes),
          "\u2013" if a.select_tf_ops_aar_bytes is None else size(a.select_tf_ops_aar_bytes))
         for a in s.selective_aar]))
    parts.append(f"<p>A selective build for this model: <code>{escape(s.selective_build)}"
                 "</code></p>")
    parts.append("<p>Android, <code>build.gradle.kts</code>:</p>" + _pre(s.gradle))
    parts.append("<p>iOS, <code>Podfile</code>:</p>" + _pre(s.cocoapods))
    if s.ios_linker_flags:
        parts.append("<p>iOS, Other Linker Flags:</p>" + _pre(s.ios_linker_flags))
    parts.append("<p>Sources (read " + escape(s.retrieved) + "): " + "; ".join(
        f'{escape(src.title)}, <a href="{escape(src.url)}">{escape(src.url)}</a>'
        for src in s.sources) + "</p>")
    body = "\n".join(parts)
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><meta name='viewport' "
            f"content='width=device-width,initial-scale=1'><title>model {escape(r.name)}: "
            f"phone readiness</title><style>{_CSS}</style></head><body>{body}</body></html>")


def size(n: int) -> str:
    """Bytes in the unit their size calls for."""
    if n < 1024:
        return f"{n} B"
    if n < 1024**2:
        return f"{n / 1024:.1f} KB"
    return f"{n / 1024**2:.1f} MB"


def ms(value: float | None) -> str:
    """Milliseconds in the unit their size calls for."""
    if value is None:
        return "\u2013"
    if value < 1:
        return f"{value * 1000:.0f} \u00b5s"
    if value < 1000:
        return f"{value:.3g} ms"
    return f"{value / 1000:.3g} s"


def seconds(value: float) -> str:
    """Seconds in the unit their size calls for."""
    return ms(value * 1000)


def _ops(ops: dict[str, int]) -> str:
    return ", ".join(f"{escape(k)}&nbsp;&times;{v}" for k, v in ops.items()) or "&ndash;"


def _pre(lines: Iterable[str]) -> str:
    return "<pre>" + "\n".join(escape(x) for x in lines) + "</pre>"


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], raw: Sequence[int] = ()) -> str:
    """A table; every cell is escaped but those of the columns in `raw` (built by _ops)."""
    out = ["<table><tr>" + "".join(
        f'<th class="ops">{escape(h)}</th>' if i in raw and i >= 2 else f"<th>{escape(h)}</th>"
        for i, h in enumerate(head)) + "</tr>"]
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            text = cell if i in raw else escape(cell)
            cls = ' class="ops"' if i in raw and i >= 2 else ""
            cells.append(f"<td{cls}>{text}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "".join(out) + "</table>"


def bar_chart(title: str, bars: Sequence[tuple[str, float | None]]) -> str:
    """Horizontal bars as inline SVG (no script, no font files), as wide as the page."""
    known = [(label, v) for label, v in bars if v is not None and v > 0]
    if not known:
        return ""
    top, row, label_w, width = 22, 22, 110, 600
    longest = max(v for _, v in known)
    out = [f'<svg class="bars" viewBox="0 0 {width + label_w + 90} {top + row * len(known)}" '
           f'width="100%" role="img" aria-label="{escape(title)}" '
           'xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" font-size="12">',
           f'<text x="0" y="14" font-weight="bold">{escape(title)}</text>']
    for i, (label, v) in enumerate(known):
        y = top + i * row
        w = max(1.0, width * v / longest)
        out.append(f'<text x="0" y="{y + 14}">{escape(label)}</text>'
                   f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row - 6}" '
                   f'fill="#0072B2"/><text x="{label_w + w + 6:.1f}" y="{y + 14}">'
                   f"{escape(ms(v))}</text>")
    return "".join(out) + "</svg>"
