// The recognize-latency chart of BENCHMARKS.md as a standalone SVG: median latency (log scale)
// against gallery size (log scale) for our service, for the guide's on-the-fly design as measured,
// and the ranges the guide itself quotes.

export interface Series {
  label: string;
  colour: string;
  dashed?: boolean;
  /** [gallery size, ms] */
  points: [number, number][];
}

export interface Band {
  label: string;
  /** Gallery sizes and ms covered. */
  x: [number, number];
  y: [number, number];
}

const WIDTH = 760;
const HEIGHT = 440;
const MARGIN = { left: 70, right: 70, top: 20, bottom: 50 };
const FONT = 'font-family="sans-serif" font-size="12"';
const LEGEND_WIDTH = 270;

const escapeXml = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function sizeLabel(n: number): string {
  if (n >= 1_000_000) return `${n / 1_000_000}M`;
  if (n >= 1_000) return `${n / 1_000}k`;
  return String(n);
}

function msLabel(ms: number): string {
  return ms >= 1000 ? `${ms / 1000} s` : `${ms} ms`;
}

function msValue(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${ms.toFixed(0)} ms`;
}

export function latencyChart(title: string, series: Series[], bands: Band[]): string {
  const xs = [...series.flatMap((s) => s.points.map(([x]) => x)), ...bands.flatMap((b) => b.x)];
  const ys = [...series.flatMap((s) => s.points.map(([, y]) => y)), ...bands.flatMap((b) => b.y)];
  const xDecades = [Math.floor(Math.log10(Math.min(...xs))), Math.ceil(Math.log10(Math.max(...xs)))];
  const yDecades = [Math.floor(Math.log10(Math.min(...ys))), Math.ceil(Math.log10(Math.max(...ys)))];
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const px = (x: number) => MARGIN.left + ((Math.log10(x) - xDecades[0]) / (xDecades[1] - xDecades[0])) * plotW;
  const py = (y: number) => MARGIN.top + plotH - ((Math.log10(y) - yDecades[0]) / (yDecades[1] - yDecades[0])) * plotH;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}">`,
    `<title>${escapeXml(title)}</title>`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="white"/>`,
  ];
  for (let d = xDecades[0]; d <= xDecades[1]; d++) {
    const x = px(10 ** d);
    out.push(`<line x1="${x}" y1="${MARGIN.top}" x2="${x}" y2="${MARGIN.top + plotH}" stroke="#ddd"/>`);
    out.push(`<text x="${x}" y="${MARGIN.top + plotH + 18}" text-anchor="middle" ${FONT}>${sizeLabel(10 ** d)}</text>`);
  }
  for (let d = yDecades[0]; d <= yDecades[1]; d++) {
    const y = py(10 ** d);
    out.push(`<line x1="${MARGIN.left}" y1="${y}" x2="${MARGIN.left + plotW}" y2="${y}" stroke="#ddd"/>`);
    out.push(`<text x="${MARGIN.left - 8}" y="${y + 4}" text-anchor="end" ${FONT}>${msLabel(10 ** d)}</text>`);
  }
  out.push(`<text x="${MARGIN.left + plotW / 2}" y="${HEIGHT - 10}" text-anchor="middle" ${FONT}>gallery size (enrolled faces / stored visitor images), log scale</text>`);
  out.push(`<text transform="translate(16 ${MARGIN.top + plotH / 2}) rotate(-90)" text-anchor="middle" ${FONT}>recognize latency over HTTP, log scale</text>`);
  for (const band of bands) {
    const [x0, x1] = band.x.map(px);
    const [y0, y1] = band.y.map(py);
    out.push(`<rect x="${x0}" y="${y1}" width="${x1 - x0}" height="${y0 - y1}" fill="#999" fill-opacity="0.18" stroke="#999" stroke-dasharray="3 3"/>`);
    out.push(`<text x="${x0 + 4}" y="${y1 + 14}" ${FONT} fill="#555">${escapeXml(band.label)}</text>`);
  }
  series.forEach((s, i) => {
    const path = s.points.map(([x, y], j) => `${j === 0 ? 'M' : 'L'}${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(' ');
    out.push(`<path d="${path}" fill="none" stroke="${s.colour}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`);
    for (const [x, y] of s.points) {
      out.push(`<circle cx="${px(x).toFixed(1)}" cy="${py(y).toFixed(1)}" r="4" fill="${s.colour}"/>`);
      // Values below their point, clear of the p95 line above and of the band labels.
      if (!s.dashed) out.push(`<text x="${(px(x) + 6).toFixed(1)}" y="${(py(y) + 16).toFixed(1)}" ${FONT} fill="${s.colour}">${msValue(y)}</text>`);
    }
    // Legend in the top right corner, where neither design has points.
    const lx = MARGIN.left + plotW - LEGEND_WIDTH;
    const ly = MARGIN.top + 16 + i * 18;
    out.push(`<line x1="${lx}" y1="${ly - 4}" x2="${lx + 28}" y2="${ly - 4}" stroke="${s.colour}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`);
    out.push(`<text x="${lx + 34}" y="${ly}" ${FONT}>${escapeXml(s.label)}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
