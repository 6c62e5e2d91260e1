// Small SVG charts (no library): stacked bars. Colours come from CSS classes (ser-1 .. ser-5),
// never from style attributes (the console's CSP allows no inline style).

const NS = 'http://www.w3.org/2000/svg';

function s(tag, attrs, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

// a whole-number step of 1, 2 or 5 x 10^k for four grid lines that reach past `n`
function gridStep(n) {
  const raw = Math.max(1, n / 4);
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}

// rows: [{label, values: [n per series]}]; series: [{name, cls}]
export function stackedBars(rows, series, {width = 720, height = 240, title = ''} = {}) {
  const pad = {l: 36, r: 8, t: 18, b: 30};
  const svg = s('svg', {viewBox: `0 0 ${width} ${height}`, class: 'chart', role: 'img', 'aria-label': title});
  const totals = rows.map((r) => r.values.reduce((a, b) => a + b, 0));
  const step = gridStep(Math.max(0, ...totals));
  const max = step * 4;
  const plotW = width - pad.l - pad.r;
  const plotH = height - pad.t - pad.b;
  for (let i = 0; i <= 4; i += 1) {
    const y = pad.t + plotH - (plotH * i) / 4;
    svg.append(s('line', {x1: pad.l, x2: width - pad.r, y1: y, y2: y, class: 'grid'}));
    svg.append(s('text', {x: pad.l - 6, y: y + 4, class: 'axis', 'text-anchor': 'end'}, String(step * i)));
  }
  const slot = plotW / Math.max(1, rows.length);
  const barW = Math.max(2, Math.min(40, slot * 0.7));
  const every = Math.ceil(rows.length / Math.max(1, Math.floor(plotW / 34)));   // labels that fit
  rows.forEach((row, i) => {
    const x = pad.l + slot * i + (slot - barW) / 2;
    let y = pad.t + plotH;
    row.values.forEach((v, k) => {
      if (!v) return;
      const bh = (plotH * v) / max;
      y -= bh;
      const rect = s('rect', {x, y, width: barW, height: bh, class: series[k].cls});
      rect.append(s('title', {}, `${row.label} ${series[k].name}: ${v}`));
      svg.append(rect);
    });
    if (totals[i]) svg.append(s('text', {x: x + barW / 2, y: y - 3, class: 'axis total', 'text-anchor': 'middle'}, String(totals[i])));
    if (i % every === 0) svg.append(s('text', {x: x + barW / 2, y: height - 10, class: 'axis', 'text-anchor': 'middle'}, row.label));
  });
  return svg;
}

export function legend(series) {
  const box = document.createElement('div');
  box.className = 'legend';
  for (const item of series) {
    const key = document.createElement('span');
    const dot = s('svg', {viewBox: '0 0 10 10', width: 10, height: 10});
    dot.append(s('rect', {width: 10, height: 10, rx: 2, class: item.cls}));
    key.append(dot, ` ${item.name}`);
    box.append(key);
  }
  return box;
}
