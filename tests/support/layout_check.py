"""What the browser tests measure about the layout of a page or an exported figure: the boxes of every text
element of every Plotly figure (titles, subplot titles, tick and axis labels, colour-bar labels, legends,
texts in cells), of the figure's toolbar, and of the page's images and captions; and every line of a
wrapped title, for a pair cut in two.

:data:`LAYOUT_PROBLEMS` is a JavaScript function for ``page.evaluate``; it returns one line per problem:
two boxes that overlap, a text that leaves its figure, a toolbar over a text, a colour bar not the height
of its panels. An empty list is a clean page."""

from __future__ import annotations

LAYOUT_PROBLEMS = r"""() => {
    const SLACK = 1;  // px: anti-aliased edges may touch
    const box = e => { const r = e.getBoundingClientRect();
                       return {l: r.left, t: r.top, r: r.right, b: r.bottom, w: r.width, h: r.height}; };
    const hidden = s => s.display === 'none' || s.visibility === 'hidden' || s.opacity === '0';
    const shown = e => { for (let n = e; n && n.nodeType === 1; n = n.parentNode)
                             if (hidden(getComputedStyle(n))) return false;
                         return true; };
    const folded = e => { const d = e.closest('details'); return d && !d.open; };  // a closed expander
    const overlap = (a, b) => Math.min(a.r, b.r) - Math.max(a.l, b.l) > SLACK
                              && Math.min(a.b, b.b) - Math.max(a.t, b.t) > SLACK;
    const label = s => JSON.stringify(s.replace(/\s+/g, ' ').trim().slice(0, 50));
    const items = [], problems = [];
    [...document.querySelectorAll('.js-plotly-plot')].forEach((gd, f) => {
        const title = (gd.querySelector('.gtitle') || {}).textContent || `figure ${f}`;
        const where = `in ${label(title)}`;
        const frame = box(gd.querySelector('.main-svg'));
        const texts = [...gd.querySelectorAll('text')]
            .filter(t => !t.closest('.hoverlayer') && t.textContent.trim() && shown(t) && !folded(t))
            .map(t => ({what: `text ${label(t.textContent)} ${where}`, box: box(t), figure: f}))
            .filter(t => t.box.w > 0 && t.box.h > 0);
        for (const t of texts) {
            const b = t.box;
            const out = b.l < frame.l - SLACK || b.t < frame.t - SLACK || b.r > frame.r + SLACK
                        || b.b > frame.b + SLACK;
            if (out)
                problems.push(`${t.what} leaves its figure`);
        }
        items.push(...texts);
        const bar = gd.querySelector('.modebar');
        if (bar) {
            const b = box(bar);
            for (const t of texts) if (overlap(b, t.box)) problems.push(`the toolbar covers ${t.what}`);
        }
        const panels = [...gd.querySelectorAll('.heatmaplayer image, .imagelayer image, .layer-above image')]
            .map(box).filter(b => b.h > 0);
        for (const fill of gd.querySelectorAll('.colorbar .cbfills')) {
            const c = box(fill);
            if (!panels.length || c.h === 0) continue;
            const top = Math.min(...panels.map(p => p.t)), bottom = Math.max(...panels.map(p => p.b));
            if (c.t < top - 3 || c.b > bottom + 3 || c.h < 0.6 * (bottom - top))
                problems.push(`a colour bar ${where} runs ${c.t.toFixed(0)}..${c.b.toFixed(0)} px, `
                              + `its panels ${top.toFixed(0)}..${bottom.toFixed(0)} px`);
        }
    });
    const pictures = '[data-testid="stImage"] img, [data-testid="stImageCaption"]';
    for (const e of [...document.querySelectorAll(pictures)].filter(e => !folded(e)))
        items.push({what: `page ${e.tagName === 'IMG' ? 'image' : 'caption ' + label(e.textContent)}`,
                    box: box(e), figure: -1});
    for (let i = 0; i < items.length; i++)
        for (let j = i + 1; j < items.length; j++)
            if (overlap(items[i].box, items[j].box))
                problems.push(`${items[i].what} overlaps ${items[j].what}`);
    // a pair "(3, 3)" or a number and its unit is never split over two lines of a title or a subtitle
    for (const line of document.querySelectorAll('.js-plotly-plot tspan.line')) {
        const text = line.textContent.trim();
        if (/\(-?\d+,$/.test(text) || /^-?\d+\)/.test(text) || /^px\b/.test(text))
            problems.push(`a line of ${label(line.parentNode.textContent)} is cut inside a pair: `
                          + label(text));
    }
    return problems;
}"""


# every heatmap the page draws: its colour scale as Plotly.js holds it (after Streamlit's front end has
# rewritten the chart's JSON, so a replaced colour shows here), its value range, and, for one drawn opaque
# and over no picture, where its lowest and highest cells are in the chart's own box (pixels)
DRAWN_MAPS = r"""() => [...document.querySelectorAll('.js-plotly-plot')].map((gd, f) => {
    const full = gd._fullData || [], layout = gd._fullLayout || {};
    const title = ((gd.querySelector('.gtitle') || {}).textContent || `figure ${f}`).slice(0, 60);
    const frame = gd.getBoundingClientRect();
    return full.filter(t => t.type === 'heatmap' && t.visible !== false).map(t => {
        const xa = layout['xaxis' + t.xaxis.slice(1)], ya = layout['yaxis' + t.yaxis.slice(1)];
        const pictured = full.some(o => o.type === 'image' && o.xaxis === t.xaxis && o.yaxis === t.yaxis);
        const z = t.z || [];
        let low = null, high = null;
        z.forEach((row, r) => (row || []).forEach((v, c) => {
            if (v === null || Number.isNaN(v)) return;
            if (!low || v < low.v) low = {v, r, c};
            if (!high || v > high.v) high = {v, r, c};
        }));
        // the cell's centre (a query's outline runs along the cell's edge), or for a matrix that writes its
        // values in the cells a point a third of the way to the cell's top-left corner, clear of the text
        const written = t.texttemplate ? 1 / 3 : 0;
        const cw = written * xa._length / Math.max(1, (z[0] || []).length);
        const ch = written * ya._length / Math.max(1, z.length);
        const at = cell => {
            const xv = t.x && t.x.length ? t.x[cell.c] : t.x0 + cell.c * t.dx;
            const yv = t.y && t.y.length ? t.y[cell.r] : t.y0 + cell.r * t.dy;
            return {v: cell.v, x: xa._offset + xa.c2p(xa.d2c(xv)) - cw,
                    y: ya._offset + ya.c2p(ya.d2c(yv)) - ch};
        };
        return {figure: f, title, colorscale: t.colorscale, zmin: t.zmin, zmax: t.zmax,
                opacity: t.opacity, pictured, frame: [frame.left, frame.top],
                cells: low && high ? [at(low), at(high)] : []};
    });
}).flat()"""


# what a page shows, to read in Python: the main column's width (inside its padding) and text, and for each
# figure its stable name, its title, its drawn width, the widths of its map panels, the tick labels of each
# colour bar, every text it draws, and its x axis's range
PAGE_FACTS = r"""() => {
    const main = document.querySelector('[data-testid="stMainBlockContainer"]');
    const style = getComputedStyle(main);
    const column = main.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    const figures = [...document.querySelectorAll('.js-plotly-plot')].map(gd => {
        const layout = gd._fullLayout || {};
        return {
            name: ((gd.layout || {}).meta || {}).name || '',
            title: (gd.querySelector('.gtitle') || {}).textContent || '',
            width: gd.getBoundingClientRect().width,
            heatmaps: (gd._fullData || []).filter(t => t.type === 'heatmap').length,
            panels: [...gd.querySelectorAll('.heatmaplayer image, .layer-above image')]
                .map(i => i.getBoundingClientRect().width).filter(w => w > 0),
            bars: [...gd.querySelectorAll('.colorbar')].map(bar =>
                [...bar.querySelectorAll('.cbaxis text')].map(t => t.textContent)),
            texts: [...gd.querySelectorAll('text')].filter(t => !t.closest('.hoverlayer'))
                .map(t => t.textContent.trim()).filter(Boolean),
            xrange: layout.xaxis ? layout.xaxis.range : null,
        };
    });
    return {column, text: main.innerText, figures};
}"""


def repeated_phrase(text: str) -> str:
    """The first word or two words said twice in a row in ``text`` (case and punctuation aside), or ''."""
    import re

    words = re.findall(r"[a-z]+", text.lower())
    for n in (1, 2):
        for i in range(len(words) - 2 * n + 1):
            if words[i : i + n] == words[i + n : i + 2 * n] and len("".join(words[i : i + n])) > 3:
                return " ".join(words[i : i + n])
    return ""
