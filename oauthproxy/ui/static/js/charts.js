/* Charts: time series with the vendored uPlot (MIT, vendor/uplot/), bar lists in
 * plain HTML.  Every chart carries its numbers as a table too (in a <details>),
 * so screen readers and keyboard users get the same data as the picture. */

import uPlot from "../vendor/uplot/uPlot.esm.js";
import { h, DASH } from "./dom.js";

const COLOURS = { "1xx": "#8a8f98", "2xx": "#2da44e", "3xx": "#1f6feb", "4xx": "#d29922", "5xx": "#cf222e", p50: "#1f6feb", p99: "#bf3989" };

function timeLabel(seconds) {
  return new Date(seconds * 1000).toISOString().slice(11, 16) + " UTC";
}

function dataTable(caption, labels, xs, ys, format) {
  return h("details", { class: "chart-data" }, h("summary", {}, "Data as a table"),
    h("div", { class: "table-wrap" }, h("table", { class: "records" },
      h("caption", { class: "visually-hidden" }, caption),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Time (UTC)"), labels.map((l) => h("th", { scope: "col" }, l)))),
      h("tbody", {}, xs.map((x, i) => h("tr", {}, h("th", { scope: "row" }, timeLabel(x)),
        ys.map((y) => h("td", {}, y[i] === null || y[i] === undefined ? DASH : format(y[i])))))))));
}

/**
 * A time-series chart: {title, labels: ["2xx", ...], xs: [t...], ys: [[...], ...],
 * unit: "req/s"}.  Returns a <figure>; call .destroy() when the screen goes.
 */
export function timeChart({ title, description, labels, xs, ys, unit, format }) {
  const plot = h("div", { class: "plot", role: "img", "aria-label": title + ": " + (description || "") });
  const fmt = format || ((v) => String(v));
  const figure = h("figure", { class: "chart" }, h("figcaption", {}, h("h4", {}, title)), plot,
    dataTable(title, labels, xs, ys, fmt));
  const width = Math.max(320, Math.min(720, (document.getElementById("screen") || document.body).clientWidth / 2 - 40));
  const options = {
    width, height: 220,
    legend: { live: true },
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: true } },
    axes: [
      { stroke: "#888", grid: { stroke: "rgba(128,128,128,0.15)" } },
      { stroke: "#888", grid: { stroke: "rgba(128,128,128,0.15)" }, label: unit, size: 56 },
    ],
    series: [{ label: "time", value: (u, v) => (v === null ? DASH : timeLabel(v)) },
      ...labels.map((label) => ({ label, stroke: COLOURS[label] || "#1f6feb", width: 2, spanGaps: false, value: (u, v) => (v === null ? DASH : fmt(v)) }))],
  };
  const chart = new uPlot(options, [xs, ...ys], plot);
  figure.destroy = () => chart.destroy();
  return figure;
}

/** A bar list: [{name, value}] as a table whose bars are sized to the largest value. */
export function bars({ title, rows, note, empty }) {
  const top = Math.max(1, ...rows.map((r) => r.value));
  const body = rows.length
    ? rows.map((r) => {
      const bar = h("span", { class: "bar" });
      bar.style.width = Math.round((100 * r.value) / top) + "%";
      return h("tr", {}, h("th", { scope: "row" }, r.name), h("td", {}, bar), h("td", { class: "count" }, String(r.value)));
    })
    : [h("tr", {}, h("td", { colspan: 3, class: "empty" }, empty || "Nothing in this window."))];
  return h("figure", { class: "chart" }, h("figcaption", {}, h("h4", {}, title)),
    h("table", { class: "bars" }, h("caption", { class: "visually-hidden" }, title),
      h("thead", { class: "visually-hidden" }, h("tr", {}, h("th", { scope: "col" }, "Name"), h("th", { scope: "col" }, "Share"), h("th", { scope: "col" }, "Requests"))),
      h("tbody", {}, body)),
    note ? h("p", { class: "hint" }, note) : null);
}
