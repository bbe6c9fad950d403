"""The gallery page: one self-contained HTML file (inline CSS and JavaScript, no network).

The data (names, links, thumbnails, merges) goes into a
``<script type="application/json">`` block, with ``<``, ``>`` and ``&``
written as JSON escapes so no file name can end the block; the script reads
it with ``JSON.parse`` and builds every element with ``textContent`` and
properties, never with HTML strings, so a name is always shown as text.

The script cuts the merges at the slider's sim with a union-find (the same
replay as :func:`imagecluster.gallery._merges.cut_merges`), orders the
clusters as ``imagecluster cluster`` does, and renders rows only as they
come near the screen; images load lazily. 100,000 photos are one array
pass and a sort per slider move.
"""

import html
import json

__all__ = ["render_page"]


def render_page(data, *, title):
    """The page's HTML text.

    Parameters
    ----------
    data : dict
        JSON-able gallery data (see :func:`imagecluster.gallery.write_gallery`).
    title : str
        Shown as the page's title and heading (escaped here).

    Returns
    -------
    str
    """
    blob = json.dumps(data, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    blob = blob.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return (
        _TEMPLATE.replace("%%TITLE%%", html.escape(title, quote=True))
        .replace("%%STYLE%%", _STYLE)
        .replace("%%SCRIPT%%", _SCRIPT)
        .replace("%%DATA%%", blob)
    )


_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="generator" content="imagecluster">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>%%TITLE%%</title>
<style>%%STYLE%%</style>
</head>
<body>
<header>
<h1>%%TITLE%%</h1>
<div class="controls">
<label for="sim-range">sim</label>
<input type="range" id="sim-range" min="0.5" max="1" step="0.01" aria-label="sim">
<input type="number" id="sim" min="0.5" max="1" step="any" aria-label="sim, exact">
<span id="summary" role="status"></span>
</div>
<p class="legend"><b>sim</b> is how alike photos must be, on average, to share a cluster: the cosine
similarity of their content fingerprints. 1 = identical, 0.9 near-duplicates, 0.8 bursts, 0.7 bursts and
re-takes of one scene, 0.5 loosely related. What you see at a sim is exactly what
<code>imagecluster cluster --sim</code> gives. Keys: &larr;/&rarr; previous/next cluster, Enter opens its
first photo; click a photo to open it.</p>
</header>
<main id="rows"></main>
<div id="sentinel"></div>
<details id="unclustered"><summary></summary><div class="thumbs"></div>
<button type="button" id="more-unclustered" hidden>show more</button></details>
<script type="application/json" id="gallery-data">%%DATA%%</script>
<script>%%SCRIPT%%</script>
</body>
</html>
"""

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #f4f4f4; color: #222; }
header { position: sticky; top: 0; z-index: 2; background: #fff; padding: 8px 16px; border-bottom: 1px solid #ccc; }
h1 { font-size: 18px; margin: 0 0 4px; overflow-wrap: anywhere; }
.controls { display: flex; gap: 8px; align-items: center; flex-wrap: wrap; }
#sim-range { width: 320px; }
#sim { width: 7em; }
.legend { margin: 4px 0 0; color: #555; font-size: 12px; max-width: 70em; }
main, details { padding: 0 16px; }
section.cluster { background: #fff; margin: 12px 0; padding: 8px; border-radius: 6px; outline: none;
  border: 2px solid transparent; }
section.cluster.current { border-color: #2a6ad8; }
h2 { font-size: 14px; margin: 0 0 6px; }
.thumbs { display: flex; flex-wrap: wrap; gap: 6px; }
figure { margin: 0; width: 136px; }
figure a { display: flex; width: 128px; height: 128px; align-items: center; justify-content: center;
  background: #e8e8e8; }
figure img { max-width: 128px; max-height: 128px; width: auto; height: auto; }
figcaption { font-size: 11px; overflow-wrap: anywhere; white-space: pre-wrap; max-height: 4.2em; overflow: hidden; }
.missing { color: #888; font-size: 11px; padding: 4px; }
summary { cursor: pointer; margin: 12px 0; font-weight: bold; }
button { margin: 6px 0; }
"""

_SCRIPT = r"""
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("gallery-data").textContent);
  const n = data.names.length;
  const TOLERANCE = 1e-6, ROWS_AT_ONCE = 20, THUMBS_AT_ONCE = 120, LOOSE_AT_ONCE = 400;
  const rowsEl = document.getElementById("rows");
  const sentinel = document.getElementById("sentinel");
  const range = document.getElementById("sim-range");
  const box = document.getElementById("sim");
  const summary = document.getElementById("summary");
  const loose = document.getElementById("unclustered");
  const looseThumbs = loose.querySelector(".thumbs");
  const moreLoose = document.getElementById("more-unclustered");
  const parent = new Int32Array(n), size = new Float64Array(n), total = new Float64Array(n);
  let groups = [], unclustered = [], rendered = 0, looseShown = 0, current = -1, sim = data.sim;

  function find(x) {
    while (parent[x] !== x) { parent[x] = parent[parent[x]]; x = parent[x]; }
    return x;
  }

  // The clusters at sim s, ordered as `imagecluster cluster` orders them.
  function cut(s) {
    for (let i = 0; i < n; i++) { parent[i] = i; size[i] = 1; total[i] = 0; }
    const cutoff = s - TOLERANCE, ma = data.ma, mb = data.mb, ms = data.ms;
    for (let k = 0; k < ms.length && ms[k] >= cutoff; k++) {
      let a = find(ma[k]), b = find(mb[k]);
      if (a === b) continue;
      if (b < a) { const t = a; a = b; b = t; }
      parent[b] = a;
      total[a] += total[b] + ms[k] * size[a] * size[b];  // a merge's height is its groups' mean cross similarity
      size[a] += size[b];
    }
    const members = new Map();
    for (let i = 0; i < n; i++) {
      const r = find(i);
      const g = members.get(r);
      if (g) g.push(i); else members.set(r, [i]);
    }
    const out = [], rest = [];
    for (const [root, g] of members) {
      let kept = g;
      if (data.partner) {  // a RAW + JPEG pair in one cluster is one shot: keep its linked file
        kept = g.filter(i => !(data.partner[i] >= 0 && !data.linked[i] && find(data.partner[i]) === root));
      }
      if (g.length >= data.minSize && kept.length >= data.minSize) {
        const pairs = g.length * (g.length - 1) / 2;
        out.push({photos: kept, before: g.length, first: g[0], sim: total[root] / pairs});
      } else {
        for (const i of kept) rest.push(i);
      }
    }
    out.sort((x, y) => y.photos.length - x.photos.length || y.before - x.before || x.first - y.first);
    rest.sort((x, y) => x - y);
    return [out, rest];
  }

  function thumb(i) {
    const fig = document.createElement("figure");
    const link = document.createElement("a");
    link.href = data.urls[i];
    link.target = "_blank";
    link.rel = "noopener";
    link.title = data.names[i];
    const t = data.thumbs[i];
    if (t) {
      const img = document.createElement("img");
      img.loading = "lazy";
      img.decoding = "async";
      img.alt = data.names[i];
      img.width = data.tw[i];
      img.height = data.th[i];
      img.src = data.thumbDir + t;
      link.appendChild(img);
    } else {
      const span = document.createElement("span");
      span.className = "missing";
      span.textContent = "no preview";
      link.appendChild(span);
    }
    const caption = document.createElement("figcaption");
    caption.textContent = data.names[i].slice(data.names[i].lastIndexOf("/") + 1);
    caption.title = data.names[i];
    fig.appendChild(link);
    fig.appendChild(caption);
    return fig;
  }

  function addThumbs(container, photos, from, count) {
    const part = document.createDocumentFragment();
    const stop = Math.min(photos.length, from + count);
    for (let k = from; k < stop; k++) part.appendChild(thumb(photos[k]));
    container.appendChild(part);
    return stop;
  }

  function row(index) {
    const g = groups[index];
    const section = document.createElement("section");
    section.className = "cluster";
    section.tabIndex = -1;
    section.dataset.index = String(index);
    const heading = document.createElement("h2");
    heading.textContent = "cluster " + (index + 1) + ": " + g.photos.length + " photos, internal similarity "
      + g.sim.toFixed(3);
    const thumbs = document.createElement("div");
    thumbs.className = "thumbs";
    let shown = addThumbs(thumbs, g.photos, 0, THUMBS_AT_ONCE);
    section.appendChild(heading);
    section.appendChild(thumbs);
    if (shown < g.photos.length) {
      const more = document.createElement("button");
      more.type = "button";
      more.textContent = "show all " + g.photos.length;
      more.addEventListener("click", () => {
        shown = addThumbs(thumbs, g.photos, shown, g.photos.length);
        more.remove();
      });
      section.appendChild(more);
    }
    return section;
  }

  function renderMore() {
    const part = document.createDocumentFragment();
    const stop = Math.min(groups.length, rendered + ROWS_AT_ONCE);
    for (; rendered < stop; rendered++) part.appendChild(row(rendered));
    rowsEl.appendChild(part);
  }

  function fill() {  // render rows until the screen (and a margin) is full
    while (rendered < groups.length && sentinel.getBoundingClientRect().top < window.innerHeight + 1500) renderMore();
  }

  function showLoose() {
    looseShown = addThumbs(looseThumbs, unclustered, looseShown, LOOSE_AT_ONCE);
    moreLoose.hidden = looseShown >= unclustered.length;
  }

  function regroup(s) {
    sim = s;
    [groups, unclustered] = cut(s);
    rowsEl.textContent = "";
    looseThumbs.textContent = "";
    rendered = 0;
    looseShown = 0;
    current = -1;
    const clustered = groups.reduce((sum, g) => sum + g.photos.length, 0);
    summary.textContent = groups.length + " clusters with " + clustered + " photos at sim " + s
      + "; " + unclustered.length + " not clustered";
    loose.querySelector("summary").textContent = "Not clustered at this sim: " + unclustered.length + " photos";
    loose.hidden = unclustered.length === 0;
    if (loose.open) showLoose();
    fill();
  }

  function setSim(value, from) {
    const s = Number(value);
    if (!(s >= 0.5 && s <= 1)) return;  // also NaN
    if (from !== range) range.value = String(s);
    if (from !== box) box.value = String(s);
    regroup(s);
  }

  function go(index) {
    if (!groups.length) return;
    index = Math.max(0, Math.min(groups.length - 1, index));
    while (rendered <= index) renderMore();
    const old = rowsEl.querySelector("section.current");
    if (old) old.classList.remove("current");
    current = index;
    const section = rowsEl.children[index];
    section.classList.add("current");
    section.focus({preventScroll: true});
    section.scrollIntoView({block: "nearest"});
  }

  range.addEventListener("input", () => setSim(range.value, range));
  box.addEventListener("change", () => setSim(box.value, box));
  box.addEventListener("keydown", e => { if (e.key === "Enter") setSim(box.value, box); });
  moreLoose.addEventListener("click", showLoose);
  loose.addEventListener("toggle", () => { if (loose.open && looseShown === 0) showLoose(); });
  document.addEventListener("keydown", e => {
    const target = e.target;
    if (target instanceof HTMLInputElement || target instanceof HTMLButtonElement || e.altKey || e.ctrlKey
        || e.metaKey) return;
    if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
      go(current + (e.key === "ArrowRight" ? 1 : -1));
      e.preventDefault();
    } else if (e.key === "Enter" && current >= 0 && !(target instanceof HTMLAnchorElement)) {
      const link = rowsEl.children[current].querySelector("a");
      if (link) link.click();
      e.preventDefault();
    }
  });
  if ("IntersectionObserver" in window) {
    new IntersectionObserver(entries => { if (entries.some(e => e.isIntersecting)) fill(); },
                             {rootMargin: "1500px"}).observe(sentinel);
  }
  window.addEventListener("scroll", fill, {passive: true});
  window.imageclusterGallery = {setSim: s => setSim(s, null), clusters: () => groups.map(g => g.photos.slice())};
  setSim(data.sim, null);
})();
"""
