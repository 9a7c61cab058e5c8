// Time series charts on uPlot (vendored, a global from its IIFE build), with an Okabe-Ito
// palette (told apart with the common colour-vision deficiencies) and, for screen readers,
// a summary label and the same figures as a table.
import { h } from "./dom.js";

export const PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00",
  "#F0E442"];
export const OTHER = "#999999"; // "every other model": grey, not a colour of its own

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

// series: [{label, values, format}] over buckets (ISO instants); kind "line" or "bars"
export function timeChart({ title, buckets, series, timeZone, formatX, kind = "line" }) {
  const x = buckets.map((b) => Date.parse(b) / 1000);
  const figure = h("figure", { class: "chart" });
  const caption = h("figcaption", {}, title);
  const plotBox = h("div", {
    class: "chart-plot",
    role: "img",
    "aria-label": summary(title, buckets, series, formatX),
  });
  figure.append(caption, plotBox, dataTable(title, buckets, series, formatX));
  const axisColor = cssVar("--muted") || "#666";
  const gridColor = cssVar("--grid") || "#ddd";
  const opts = {
    width: 600,
    height: 220,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), timeZone),
    cursor: { focus: { prox: 16 } },
    legend: { live: true },
    scales: { x: { time: true } },
    axes: [
      { stroke: axisColor, grid: { stroke: gridColor, width: 1 }, ticks: { stroke: gridColor } },
      {
        stroke: axisColor,
        grid: { stroke: gridColor, width: 1 },
        ticks: { stroke: gridColor },
        size: 70,
        values: (u, splits) => splits.map((v) => series[0].format(v)),
      },
    ],
    series: [
      {},
      ...series.map((s, i) => ({
        label: s.label,
        stroke: PALETTE[i % PALETTE.length],
        width: 2,
        fill: kind === "bars" ? `${PALETTE[i % PALETTE.length]}99` : `${PALETTE[i % PALETTE.length]}22`,
        paths: kind === "bars" ? uPlot.paths.bars({ size: [0.7, 60] }) : undefined,
        points: { show: buckets.length < 40 },
        value: (u, v) => (v == null ? "—" : s.format(v)),
      })),
    ],
  };
  const data = [x, ...series.map((s) => s.values)];
  const plot = new uPlot(opts, data, plotBox);
  // follow the container's width (uPlot draws at a fixed size)
  const resize = new ResizeObserver(() => {
    const width = Math.max(240, Math.floor(plotBox.clientWidth));
    if (width !== plot.width) plot.setSize({ width, height: 220 });
  });
  resize.observe(plotBox);
  figure.dispose = () => {
    resize.disconnect();
    plot.destroy();
  };
  return figure;
}

function summary(title, buckets, series, formatX) {
  if (!buckets.length) return `${title}: no data`;
  const parts = series.map((s) => {
    const values = s.values.map((v) => v || 0);
    const total = values.reduce((a, b) => a + b, 0);
    const peak = Math.max(...values);
    const at = buckets[values.indexOf(peak)];
    return `${s.label}: total ${s.format(total)}, peak ${s.format(peak)} at ${formatX(at)}`;
  });
  return `${title}, ${buckets.length} buckets from ${formatX(buckets[0])}. ${parts.join("; ")}.`;
}

function dataTable(title, buckets, series, formatX) {
  return h("table", { class: "sr-only" },
    h("caption", {}, `${title} (data)`),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Bucket"),
      series.map((s) => h("th", { scope: "col" }, s.label)))),
    h("tbody", {}, buckets.map((b, i) => h("tr", {},
      h("th", { scope: "row" }, formatX(b)),
      series.map((s) => h("td", {}, s.values[i] == null ? "—" : s.format(s.values[i])))))));
}

// stacked bars: series [{label, values, format, other}] drawn as running sums, tallest first,
// so that each series' bar shows its own share; the legend gives each series' own value
// counts: ticks on whole numbers only (1, 2, 5, 10, …), never 2.5 requests
const INTEGER_INCRS = [1, 2, 5].flatMap((m) => [1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7].map((p) => m * p))
  .sort((a, b) => a - b);

export function stackedBars({ title, buckets, series, timeZone, formatX, format, integer = false }) {
  const x = buckets.map((b) => Date.parse(b) / 1000);
  const sums = [];
  let running = buckets.map(() => 0);
  for (const s of series) {
    running = running.map((v, i) => v + (s.values[i] || 0));
    sums.push(running);
  }
  const figure = h("figure", { class: "chart" });
  const plotBox = h("div", {
    class: "chart-plot", role: "img", "aria-label": summary(title, buckets, series, formatX),
  });
  figure.append(h("figcaption", {}, title), plotBox, dataTable(title, buckets, series, formatX));
  const axisColor = cssVar("--muted") || "#666";
  const gridColor = cssVar("--grid") || "#ddd";
  const colour = (i) => (series[i].other ? OTHER : PALETTE[i % PALETTE.length]);
  // drawn from the top of the stack down: later series paint over the lower part
  const order = series.map((_, i) => i).reverse();
  const plot = new uPlot({
    width: 600,
    height: 260,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), timeZone),
    legend: { live: true },
    scales: { x: { time: true } },
    axes: [
      {
        stroke: axisColor, grid: { stroke: gridColor, width: 1 }, ticks: { stroke: gridColor },
        // one tick per bucket (every few on long ranges), labelled by the bucket's own day
        splits: () => x.filter((_, i) => i % Math.ceil(x.length / 12) === 0),
        values: (u, splits) => splits.map((v) => formatX(new Date(v * 1000).toISOString())),
      },
      {
        stroke: axisColor, grid: { stroke: gridColor, width: 1 }, ticks: { stroke: gridColor },
        size: 70, values: (u, splits) => splits.map((v) => format(v)),
        incrs: integer ? INTEGER_INCRS : undefined,
      },
    ],
    series: [{}, ...order.map((i) => ({
      label: series[i].label,
      stroke: colour(i),
      fill: colour(i),
      width: 1,
      paths: uPlot.paths.bars({ size: [0.75, 60] }),
      points: { show: false },
      value: (u, v, s, idx) => (idx == null ? "—" : format(series[i].values[idx] || 0)),
    }))],
  }, [x, ...order.map((i) => sums[i])], plotBox);
  const resize = new ResizeObserver(() => {
    const width = Math.max(240, Math.floor(plotBox.clientWidth));
    if (width !== plot.width) plot.setSize({ width, height: 260 });
  });
  resize.observe(plotBox);
  figure.dispose = () => {
    resize.disconnect();
    plot.destroy();
  };
  return figure;
}
