// classlab workbench: the run page's interactive charts, drawn with the vendored uPlot (static/uplot.min.js):
// training curves with zoom (drag), smoothing, a log scale for the loss and another run overlaid; per-class
// precision, recall and F1; the calibration bins against the diagonal. The PNGs stay in the reports.
"use strict";

const COLOURS = { train: "#1f77b4", val: "#ff7f0e", other_train: "#7f7f7f", other_val: "#bcbd22" };

function smooth(values, weight) {
  // TensorBoard's smoothing: an exponential moving average, debiased at the start; gaps stay gaps
  if (!weight) return values;
  let last = 0, n = 0;
  return values.map((v) => {
    if (v === null) return null;
    last = last * weight + (1 - weight) * v;
    n += 1;
    return last / (1 - Math.pow(weight, n));
  });
}

function chartWidth(box) {
  return Math.max(280, Math.min(560, (box.clientWidth || 900) / 2 - 16));
}

function curveChart(box, title, key, runs, options) {
  // runs: [{label, curves}] where curves has epoch, train_<key>, val_<key>; the first is this run
  const tables = runs.map((r) => [r.curves.epoch, smooth(r.curves["train_" + key], options.weight),
                                  smooth(r.curves["val_" + key], options.weight)]);
  const data = tables.length > 1 ? uPlot.join(tables) : tables[0];
  const series = [{ label: "epoch" }];
  runs.forEach((r, i) => {
    const own = i === 0;
    series.push({ label: (own ? "" : r.label + " ") + "train", stroke: own ? COLOURS.train : COLOURS.other_train,
                  width: 2, spanGaps: true });
    series.push({ label: (own ? "" : r.label + " ") + "validation", stroke: own ? COLOURS.val : COLOURS.other_val,
                  width: 2, dash: [6, 4], spanGaps: true });
  });
  const log = options.log && key === "loss";
  const element = document.createElement("div");
  element.className = "chart-box";
  box.appendChild(element);
  return new uPlot({
    title: title + (log ? " (log scale)" : ""), width: chartWidth(box), height: 240, series,
    scales: { x: { time: false }, y: log ? { distr: 3 } : {} },
    axes: [{ label: "epoch" }, {}],
    cursor: { drag: { x: true, y: false } },
  }, data, element);
}

async function drawCurves(own) {
  const box = document.getElementById("curve-charts");
  const controls = { weight: document.getElementById("smoothing"), log: document.getElementById("log-loss"),
                     overlay: document.getElementById("overlay") };
  const cache = {};
  const redraw = async () => {
    box.replaceChildren();
    const other = controls.overlay.value;
    if (other && !cache[other]) cache[other] = await (await fetch("/runs/" + encodeURIComponent(other) + "/charts.json")).json();
    const options = { weight: Number(controls.weight.value), log: controls.log.checked };
    for (const [stage, curves] of Object.entries(own.curves)) {
      const runs = [{ label: own.run, curves }];
      const theirs = other && cache[other] && (cache[other].curves[stage] || Object.values(cache[other].curves).pop());
      if (theirs) runs.push({ label: other.slice(0, 19), curves: theirs });
      const name = stage === "training" ? "" : stage + ": ";
      curveChart(box, name + "loss", "loss", runs, options);
      curveChart(box, name + "accuracy", "acc", runs, options);
    }
    if (!Object.keys(own.curves).length) box.textContent = "This run kept no training history.";
  };
  for (const c of Object.values(controls)) c.addEventListener("change", redraw);
  controls.weight.addEventListener("input", redraw);
  await redraw();
}

function perClassChart(element, bars) {
  if (!bars.names.length) return;
  const x = bars.names.map((_, i) => i);
  const dots = (label, stroke, size) => ({ label, stroke, fill: stroke, paths: () => null, points: { show: true, size } });
  new uPlot({
    title: "per class (drag to zoom)", width: Math.min(900, Math.max(360, 40 * x.length + 120)), height: 240,
    series: [{ label: "class", value: (u, i) => (i === null ? "" : bars.names[i]) },
             dots("precision", "#1f77b4", 9), dots("recall", "#ff7f0e", 9), dots("F1", "#2ca02c", 7)],
    scales: { x: { time: false, range: [-0.5, x.length - 0.5] }, y: { range: [0, 1] } },
    axes: [{ values: (u, ticks) => ticks.map((t) => (Number.isInteger(t) ? (bars.names[t] || "").slice(0, 10) : "")),
             splits: () => x }, {}],
    cursor: { drag: { x: true, y: false } },
  }, [x, bars.precision, bars.recall, bars.f1], element);
}

function calibrationChart(element, bins) {
  if (!bins || !bins.confidence.length) return;
  new uPlot({
    title: "calibration: accuracy against confidence, per bin", width: 420, height: 300,
    series: [{ label: "confidence", value: (u, v) => (v === null ? "" : v.toFixed(3)) },
             { label: "perfect", stroke: "#999", dash: [4, 4], width: 1 },
             { label: "accuracy", stroke: "#d62728", fill: "#d62728", width: 2, points: { show: true, size: 8 } }],
    scales: { x: { time: false, range: [0, 1] }, y: { range: [0, 1] } },
    axes: [{ label: "confidence" }, { label: "accuracy" }],
  }, [bins.confidence, bins.confidence, bins.accuracy], element);
}

document.addEventListener("DOMContentLoaded", async () => {
  const source = document.querySelector("[data-charts]");
  if (!source || typeof uPlot === "undefined") return;
  const data = await (await fetch(source.dataset.charts)).json();
  if (document.getElementById("charts")) await drawCurves(data);
  const perClass = document.getElementById("perclass-chart");
  if (perClass) perClassChart(perClass, data.per_class);
  const calibration = document.getElementById("calibration-chart");
  if (calibration) calibrationChart(calibration, data.calibration);
});
