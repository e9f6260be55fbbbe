"""`recog report`: one self-contained HTML file about a results prefix, for people.

Counts over time per label, per camera, score histograms per label, the errors, and a contact
sheet of thumbnails per label fetched from the source images and video frames, so a reviewer
can eyeball what the model called a truck. Charts are inline SVG and thumbnails inline JPEG:
the file opens anywhere, offline, and can be mailed.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import shlex
import tarfile
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

from PIL import Image, ImageOps

from recog import storage, video
from recog.crops import cut_crops
from recog.preprocess import to_rgb
from recog.query import Results, describe_runs
from recog.sources import clean_text
from recog.storage import StorageOptions

PALETTE = {"car": "#4e79a7", "pickup": "#a0cbe8", "van": "#f28e2b", "truck": "#e15759", "bus": "#76b7b2",
           "motorcycle": "#59a14f", "bicycle": "#edc948", "other_vehicle": "#b07aa1", "not_vehicle": "#bab0ac"}
OTHER_COLORS = ["#9c755f", "#ff9da7", "#8cd17d", "#86bcb6", "#d4a6c8", "#fabfd2", "#79706e", "#d37295"]
THUMB_PX = 160


def color(label: str, labels: list[str]) -> str:
    return PALETTE.get(label) or OTHER_COLORS[labels.index(label) % len(OTHER_COLORS)]


# ---- charts (inline SVG) ----------------------------------------------------------------------

def stacked_bars_svg(buckets: list[str], series: dict[str, list[int]], labels: list[str], width: int = 900,
                     height: int = 260) -> str:
    """Vertical stacked bars: one bar per bucket, one color per label."""
    left, bottom, top = 50, 40, 10
    plot_w, plot_h = width - left - 10, height - bottom - top
    totals = [sum(series[lab][i] for lab in series) for i in range(len(buckets))]
    peak = max(totals, default=0) or 1
    bar_w = plot_w / max(1, len(buckets))
    parts = [f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">',
             f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 10}" y2="{top + plot_h}" stroke="#888"/>',
             f'<text x="{left - 6}" y="{top + 10}" text-anchor="end" class="axis">{peak}</text>',
             f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end" class="axis">0</text>']
    for i, bucket in enumerate(buckets):
        y = top + plot_h
        for lab in labels:
            n = series.get(lab, [0] * len(buckets))[i]
            if not n:
                continue
            h = plot_h * n / peak
            y -= h
            parts.append(f'<rect x="{left + i * bar_w + 1:.1f}" y="{y:.1f}" width="{max(1.0, bar_w - 2):.1f}" '
                         f'height="{h:.1f}" fill="{color(lab, labels)}"><title>{html.escape(bucket)} {lab}: {n}</title></rect>')
    step = max(1, len(buckets) // 8)
    for i in range(0, len(buckets), step):
        parts.append(f'<text x="{left + (i + 0.5) * bar_w:.1f}" y="{height - bottom + 16}" text-anchor="middle" '
                     f'class="axis">{html.escape(buckets[i])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def horizontal_bars_svg(rows: list[tuple[str, dict[str, int]]], labels: list[str], width: int = 900) -> str:
    """One stacked horizontal bar per row (e.g. camera), label colors."""
    left, row_h = 180, 22
    height = row_h * len(rows) + 10
    peak = max((sum(c.values()) for _, c in rows), default=0) or 1
    parts = [f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">']
    for j, (name, counts) in enumerate(rows):
        y, x = 5 + j * row_h, float(left)
        parts.append(f'<text x="{left - 8}" y="{y + 14}" text-anchor="end" class="axis">{html.escape(name[:28])}</text>')
        for lab in labels:
            n = counts.get(lab, 0)
            if n:
                w = (width - left - 60) * n / peak
                parts.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row_h - 6}" fill="{color(lab, labels)}">'
                             f'<title>{html.escape(name)} {lab}: {n}</title></rect>')
                x += w
        parts.append(f'<text x="{x + 6:.1f}" y="{y + 14}" class="axis">{sum(counts.values())}</text>')
    parts.append("</svg>")
    return "".join(parts)


def histogram_svg(counts: list[int], fill: str, width: int = 200, height: int = 80) -> str:
    """Ten bins of score, 0..1."""
    peak = max(counts, default=0) or 1
    bar_w = width / len(counts)
    bars = "".join(f'<rect x="{i * bar_w + 1:.1f}" y="{height - 14 - (height - 20) * n / peak:.1f}" '
                   f'width="{bar_w - 2:.1f}" height="{(height - 20) * n / peak:.1f}" fill="{fill}">'
                   f'<title>score {i / len(counts):.1f}-{(i + 1) / len(counts):.1f}: {n}</title></rect>'
                   for i, n in enumerate(counts))
    return (f'<svg class="hist" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">{bars}'
            f'<text x="0" y="{height - 2}" class="axis">0</text><text x="{width}" y="{height - 2}" '
            f'text-anchor="end" class="axis">1</text></svg>')


def legend(labels: list[str]) -> str:
    return "".join(f'<span class="key"><i style="background:{color(lab, labels)}"></i>{html.escape(lab)}</span>'
                   for lab in labels)


# ---- thumbnails -----------------------------------------------------------------------------------

def thumbnail(img: Image.Image) -> str:
    """A small JPEG as a data: URI."""
    img = to_rgb(ImageOps.exif_transpose(img))
    img.thumbnail((THUMB_PX, THUMB_PX))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def fetch_thumbnails(rows: list[dict], opts: StorageOptions, problems: list[str]) -> dict[int, str]:
    """Thumbnails for the rows (keyed by position in `rows`); a shard is read once for all its rows.
    A source that cannot be read any more has no thumbnail, and says why in `problems`."""
    by_source: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        by_source[r["source_uri"]].append(i)

    def one_source(item: tuple[str, list[int]]) -> dict[int, str]:
        uri, idx = item
        out = {}
        try:
            if rows[idx[0]]["pts_s"] is not None:  # video frames, in one pass over the video
                frames = video.frames_at(uri, [rows[i]["pts_s"] for i in idx], opts)
                out.update((i, thumbnail(frames[rows[i]["pts_s"]])) for i in idx if rows[i]["pts_s"] in frames)
            elif rows[idx[0]]["shard"] is not None:  # members of a tar shard
                wanted = defaultdict(list)
                for i in idx:
                    wanted[rows[i]["member"]].append(i)
                with storage.open_input(uri, opts) as f, tarfile.open(fileobj=f, mode="r|*") as tar:
                    for member in tar:
                        if clean_text(member.name) in wanted:
                            thumb = thumbnail(Image.open(io.BytesIO(tar.extractfile(member).read())))
                            out.update((i, thumb) for i in wanted.pop(clean_text(member.name)))
                        if not wanted:
                            break
            else:  # a loose image
                thumb = thumbnail(Image.open(io.BytesIO(storage.read_bytes(uri, opts))))
                out.update((i, thumb) for i in idx)
        except Exception as e:  # noqa: BLE001 - a report is still worth having without this picture
            problems.append(f"{uri}: {type(e).__name__}: {e}")
        return out

    thumbs: dict[int, str] = {}
    with ThreadPoolExecutor(8) as pool:
        for part in pool.map(one_source, by_source.items()):
            thumbs.update(part)
    return thumbs


# ---- the page ------------------------------------------------------------------------------------

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px auto;max-width:960px;color:#222}
h1{font-size:22px} h2{font-size:17px;margin-top:32px;border-bottom:1px solid #ddd}
.axis{font-size:11px;fill:#555} .key{margin-right:14px;white-space:nowrap}
.key i{display:inline-block;width:11px;height:11px;margin-right:4px;vertical-align:-1px}
table{border-collapse:collapse} td,th{padding:3px 10px;border-bottom:1px solid #eee;text-align:left}
td.n{text-align:right} .hists{display:flex;flex-wrap:wrap;gap:16px} .hists div{font-size:12px}
.sheet{display:flex;flex-wrap:wrap;gap:8px} figure{margin:0;width:164px;font-size:11px}
figure img{width:160px;height:120px;object-fit:contain;background:#f3f3f3;border:2px solid #ccc}
figcaption{overflow-wrap:anywhere} .muted{color:#777}
"""


BUCKETS_S = (1, 10, 60, 600, 3600, 6 * 3600, 86400, 7 * 86400, 30 * 86400)


def time_buckets(results: Results, table: str = "results", fallback: str = "processed_at",
                 fallback_what: str = "processing time") -> tuple[str, int, str, list[dt.datetime]]:
    """Which time column of `table` to chart (recording time if any row has one, else `fallback`),
    a bucket size that gives at most 60 bars, and every bucket from the first to the last (gaps
    show as gaps)."""
    def span_of(column: str) -> dict:
        return results.sql(f"SELECT count({column}) AS n, min({column}) AS lo, max({column}) AS hi FROM {table}").to_pylist()[0]

    span, column, what = span_of("wall_time"), "wall_time", "recording time"
    if not span["n"]:
        span, column, what = span_of(fallback), fallback, f"{fallback_what} (no recording times known)"
    if span["lo"] is None:
        return column, 3600, what, []
    seconds = (span["hi"] - span["lo"]).total_seconds()
    size = next((b for b in BUCKETS_S if seconds / b <= 60), BUCKETS_S[-1])
    first = dt.datetime.fromtimestamp(span["lo"].timestamp() // size * size, dt.timezone.utc)
    buckets = [first + dt.timedelta(seconds=size * i) for i in range(int((span["hi"] - first).total_seconds() // size) + 1)]
    return column, size, what, buckets


def bucket_name(t: dt.datetime, size: int) -> str:
    return t.strftime("%H:%M:%S" if size < 60 else "%m-%d %H:%M" if size < 86400 else "%Y-%m-%d")


def over_time(results: Results, table: str, where: str, labels: list[str], fallback: str, fallback_what: str) -> str:
    """A stacked bar chart of `table`'s rows (matching `where`) per time bucket and label."""
    column, size, what, buckets = time_buckets(results, table, fallback, fallback_what)
    if not buckets:
        return "<p class='muted'>no times</p>"
    first = int(buckets[0].timestamp()) // size
    series = {lab: [0] * len(buckets) for lab in labels}
    for r in results.sql(f"SELECT floor(epoch({column}) / {size})::BIGINT AS b, label, count(*) AS n FROM {table} "
                         f"WHERE label IS NOT NULL AND {column} IS NOT NULL AND {where} GROUP BY ALL").to_pylist():
        series[r["label"]][r["b"] - first] += r["n"]
    return (f"<p class='muted'>by {what}, {size:,} s per bar (UTC)</p>"
            + stacked_bars_svg([bucket_name(b, size) for b in buckets], series, labels))


def figure(thumb: str | None, label: str, labels: list[str], caption: str, where: str) -> str:
    img = (f"<img src='{thumb}' alt='{html.escape(label)}' style='border-color:{color(label, labels)}'>"
           if thumb else "<div class='muted'>(source not readable)</div>")
    return f"<figure>{img}<figcaption>{caption}<br><span class='muted'>{html.escape(where)}</span></figcaption></figure>"


def results_section(results: Results, opts: StorageOptions, thumbs_per_label: int, problems: list[str]) -> list[str]:
    """The image and footage jobs' rows: over time, per camera, scores, errors, a contact sheet."""
    q = results.sql
    labels = [r["label"] for r in q("SELECT label, count(*) AS n FROM results WHERE label IS NOT NULL "
                                     "GROUP BY ALL ORDER BY n DESC").to_pylist()]
    totals = q("SELECT count(*) AS n, count(error) AS errors, count(DISTINCT camera) AS cameras FROM results").to_pylist()[0]
    per_camera: dict[str, dict[str, int]] = defaultdict(dict)
    for r in q("SELECT coalesce(camera, '(no camera)') AS camera, label, count(*) AS n FROM results "
               "WHERE label IS NOT NULL GROUP BY ALL").to_pylist():
        per_camera[r["camera"]][r["label"]] = r["n"]
    cameras = sorted(per_camera.items(), key=lambda kv: -sum(kv[1].values()))[:40]
    hist: dict[str, list[int]] = {lab: [0] * 10 for lab in labels}
    for r in q("SELECT label, least(floor(score * 10), 9)::INT AS bin, count(*) AS n FROM results "
               "WHERE label IS NOT NULL GROUP BY ALL").to_pylist():
        hist[r["label"]][r["bin"]] = r["n"]
    errors = q("SELECT split_part(error, ':', 1) AS kind, count(*) AS n, any_value(source_uri) AS example "
               "FROM results WHERE error IS NOT NULL GROUP BY ALL ORDER BY n DESC LIMIT 20").to_pylist()
    # A fixed pseudo-random sample per label (same report for the same results), least sure first.
    sample = q(f"""SELECT * FROM (
            SELECT source_uri, shard, member, key, pts_s, camera, wall_time, label, score, topk_labels[1] AS top,
                   row_number() OVER (PARTITION BY label ORDER BY hash(source_uri, key, pts_s)) AS k
            FROM results WHERE label IS NOT NULL) WHERE k <= {int(thumbs_per_label)}
        ORDER BY label, score""").to_pylist()
    thumbs = fetch_thumbnails(sample, opts, problems)

    out = [f"<p>{totals['n']} rows ({totals['errors']} errors); {totals['cameras']} camera(s).</p>",
           f"<p>{legend(labels)}</p>",
           "<h2>Over time</h2>", over_time(results, "results", "true", labels, "processed_at", "processing time"),
           "<h2>Per camera</h2>", horizontal_bars_svg(cameras, labels),
           "<h2>Scores</h2><div class='hists'>"]
    out += [f"<div>{html.escape(lab)}<br>{histogram_svg(hist[lab], color(lab, labels))}</div>" for lab in labels]
    out.append("</div><h2>Errors</h2>")
    if errors:
        out.append("<table><tr><th>kind</th><th>rows</th><th>for example</th></tr>" + "".join(
            f"<tr><td>{html.escape(e['kind'])}</td><td class='n'>{e['n']}</td><td>{html.escape(e['example'])}</td></tr>"
            for e in errors) + "</table>")
    else:
        out.append("<p>none</p>")
    out.append(f"<h2>Contact sheet</h2><p class='muted'>up to {thumbs_per_label} per label, least sure first</p>")
    for lab in labels:
        figures = [figure(thumbs.get(i), lab, labels, f"{r['score']:.2f} ({html.escape(r['top'] or '')})",
                          f"{r['camera'] or ''} {r['member'] or r['key'] or r['source_uri'].rsplit('/', 1)[-1]}"
                          + (f" t={r['pts_s']:.1f}s" if r["pts_s"] is not None else ""))
                   for i, r in enumerate(sample) if r["label"] == lab]
        out.append(f"<h3>{html.escape(lab)}</h3><div class='sheet'>{''.join(figures)}</div>")
    return out


def vehicles_section(results: Results, opts: StorageOptions, thumbs_per_label: int, problems: list[str]) -> list[str]:
    """The vehicles job's tables: crossings per line over time by type, counts, and a contact sheet
    of each type's vehicles (their best crop, cut from the video)."""
    q = results.sql
    labels = [r["label"] for r in q("SELECT label, count(*) AS n FROM vehicles WHERE label IS NOT NULL "
                                     "GROUP BY ALL ORDER BY n DESC").to_pylist()]
    totals = q("SELECT count(track_id) AS n, count(error) AS errors, count(warning) AS warnings, "
               "count(DISTINCT camera) AS cameras FROM vehicles").to_pylist()[0]
    out = [f"<h2>Vehicles</h2><p>{totals['n']} vehicles tracked ({totals['errors']} without a label, "
           f"{totals['warnings']} flagged); {totals['cameras']} camera(s). {legend(labels)}</p>"]
    if results.has("crossings"):
        counts = q("SELECT line, direction, label, count(*) AS n FROM crossings GROUP BY ALL ORDER BY line, direction, n DESC")
        out.append("<h2>Crossings</h2><table><tr><th>line</th><th>direction</th><th>type</th><th>vehicles</th></tr>" + "".join(
            f"<tr><td>{html.escape(r['line'])}</td><td>{r['direction']}</td><td>{html.escape(r['label'] or '(no label)')}</td>"
            f"<td class='n'>{r['n']}</td></tr>" for r in counts.to_pylist()) + "</table>")
        for line in [r["line"] for r in q("SELECT DISTINCT line FROM crossings ORDER BY line").to_pylist()]:
            quoted = line.replace("'", "''")
            out += [f"<h3>{html.escape(line)} over time</h3>",
                    over_time(results, "crossings", f"line = '{quoted}'", labels, "to_timestamp(pts_s)", "seconds into the video")]
    columns = "source_uri, camera, track_id, label, fine_label, score, first_pts_s, best_pts_s, best_box, lines"
    sample = q(f"""SELECT * FROM (
            SELECT {columns}, row_number() OVER (PARTITION BY label ORDER BY hash(source_uri, track_id)) AS k
            FROM vehicles WHERE label IS NOT NULL AND best_box IS NOT NULL) WHERE k <= {int(thumbs_per_label)}
        ORDER BY label, score""").to_pylist()
    # per camera (the 20 with most vehicles), its least sure vehicles: what to review first
    cameras = q("SELECT camera, count(*) AS n FROM vehicles WHERE label IS NOT NULL GROUP BY ALL ORDER BY n DESC, camera LIMIT 20").to_pylist()
    unsure = q(f"""SELECT * FROM (
            SELECT {columns}, row_number() OVER (PARTITION BY camera ORDER BY score, source_uri, track_id) AS k
            FROM vehicles WHERE label IS NOT NULL AND best_box IS NOT NULL) WHERE k <= {int(thumbs_per_label)}
        ORDER BY camera, score""").to_pylist()
    thumbs = fetch_crops(sample + unsure, opts, problems)  # each video read once for both sheets

    def caption(r: dict) -> tuple[str, str]:
        return (f"{r['score']:.2f} ({html.escape(r['fine_label'] or '')})",
                f"{r['camera'] or ''} {r['source_uri'].rsplit('/', 1)[-1]} t={r['best_pts_s']:.1f}s " + " ".join(r["lines"] or []))

    out.append(f"<h2>Vehicles by type</h2><p class='muted'>up to {thumbs_per_label} per type, their best crop, least sure first</p>")
    for lab in labels:
        figures = [figure(thumbs.get(i), lab, labels, *caption(r)) for i, r in enumerate(sample) if r["label"] == lab]
        out.append(f"<h3>{html.escape(lab)}</h3><div class='sheet'>{''.join(figures)}</div>")
    out += review_section(results, cameras, unsure, {i - len(sample): t for i, t in thumbs.items() if i >= len(sample)},
                          labels, thumbs_per_label, caption)
    return out


def review_section(results: Results, cameras: list[dict], unsure: list[dict], thumbs: dict[int, str], labels: list[str],
                   thumbs_per_label: int, caption) -> list[str]:
    """What to review, per camera: each type's score distribution, the least sure vehicles, and the
    command that exports them as a class-folder tree to correct (and fine-tune on)."""
    hist: dict = defaultdict(lambda: [0] * 10)
    for r in results.sql("SELECT camera, label, least(floor(score * 10), 9)::INT AS bin, count(*) AS n FROM vehicles "
                         "WHERE label IS NOT NULL GROUP BY ALL").to_pylist():
        hist[r["camera"], r["label"]][r["bin"]] = r["n"]
    out = [f"<h2>To review</h2><p class='muted'>Per camera: how sure the model was of each type, and its {thumbs_per_label} "
           f"least sure vehicles. <code>recog crops</code> exports them, least sure first, as a folder per type: move the "
           f"misfiled crops, then fine-tune on the folder (README, <i>Review and fine-tune per camera</i>).</p>"]
    for cam in cameras:
        camera = cam["camera"]
        name = camera if camera is not None else "(no camera)"
        command = ["recog", "crops", results.output, "--to", f"review/{camera or 'all'}"] + \
            (["--camera", camera] if camera is not None else []) + ["--limit", "200"]
        out.append(f"<h3>{html.escape(name)}: {cam['n']} vehicles</h3><div class='hists'>" + "".join(
            f"<div>{html.escape(lab)}<br>{histogram_svg(hist[camera, lab], color(lab, labels))}</div>"
            for lab in labels if (camera, lab) in hist) + "</div>")
        out.append(f"<pre>{html.escape(shlex.join(command))}</pre>")
        figures = [figure(thumbs.get(i), r["label"], labels, f"{html.escape(r['label'])} {caption(r)[0]}", caption(r)[1])
                   for i, r in enumerate(unsure) if r["camera"] == camera]
        out.append(f"<div class='sheet'>{''.join(figures)}</div>")
    return out


def fetch_crops(rows: list[dict], opts: StorageOptions, problems: list[str]) -> dict[int, str]:
    """Thumbnails of vehicles: each one's best crop, cut from its video as the vehicles job cut it
    (recog.crops); why one could not be made goes to `problems`."""
    crops = cut_crops([(i, r["source_uri"], r["best_pts_s"], r["best_box"]) for i, r in enumerate(rows)], opts, problems)
    return {i: thumbnail(crop) for i, (crop, _) in crops.items()}


def build_report(results: Results, title: str, opts: StorageOptions, thumbs_per_label: int = 12,
                 problems: list[str] | None = None) -> str:
    """The report as one HTML string: a section per kind of table the results hold. Why thumbnails
    could not be made (a source moved or deleted) goes to `problems`, one line per source."""
    problems = [] if problems is None else problems
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<style>{CSS}</style></head><body>", f"<h1>{html.escape(title)}</h1>",
           f"<p>From {html.escape(describe_runs(results.runs))}. Made {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC.</p>"]
    if results.has("results"):
        out += results_section(results, opts, thumbs_per_label, problems)
    if results.has("vehicles"):
        out += vehicles_section(results, opts, thumbs_per_label, problems)
    out.append("</body></html>")
    return "\n".join(out)
