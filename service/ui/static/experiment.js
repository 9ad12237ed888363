// An experiment: the summary's mean ± std, parallel coordinates whose axis ranges filter the
// run list below them, and a scatter of one hyperparameter against the objective.
"use strict";

(() => {
  const page = expq.data();
  // The objective must be in the run JSON; a per-timestep metric falls back to val L.
  const objective = page.runs.length && page.metric in page.runs[0] ? page.metric : "final_val_loss";
  const value = (run, name) => (name in run.params ? run.params[name] : run[name]);
  const plotted = page.runs.filter((run) => typeof run[objective] === "number");

  const drawSummary = () => {
    if (!page.groups.length || !document.getElementById("chart-summary")) return;
    const names = page.group_by.split(",").map((n) => n.trim());
    const labels = page.groups.map((g) => names.map((n) => g[n]).join(" / "));
    const numeric = names.length === 1 && page.groups.every((g) => typeof g[names[0]] === "number");
    const mean = page.groups.map((g) => g.mean);
    const std = page.groups.map((g) => g.std || 0);
    let traces;
    if (numeric) {
      const order = page.groups.map((g, i) => i).sort((a, b) => page.groups[a][names[0]] - page.groups[b][names[0]]);
      const x = order.map((i) => page.groups[i][names[0]]);
      const upper = order.map((i) => mean[i] + std[i]);
      const lower = order.map((i) => mean[i] - std[i]);
      traces = [
        { x, y: upper, mode: "lines", line: { width: 0 }, showlegend: false, hoverinfo: "skip" },
        { x, y: lower, mode: "lines", line: { width: 0 }, fill: "tonexty", fillcolor: "rgba(31,119,180,0.2)", name: "± std" },
        { x, y: order.map((i) => mean[i]), mode: "lines+markers", name: `mean ${page.metric}` },
      ];
    } else {
      traces = [{ type: "bar", x: labels, y: mean, error_y: { type: "data", array: std }, name: `mean ${page.metric} ± std` }];
    }
    Plotly.react("chart-summary", traces, { ...expq.LAYOUT, xaxis: { title: { text: page.group_by } }, yaxis: { title: { text: page.metric } } }, expq.CONFIG);
  };

  // One axis: numbers as they are, words as positions with their labels.
  const axis = (name, runs) => {
    const values = runs.map((run) => value(run, name));
    if (values.every((v) => typeof v === "number")) return { label: name, values };
    const words = [...new Set(values.map(String))].sort();
    return {
      label: name, values: values.map((v) => words.indexOf(String(v))),
      tickvals: words.map((_, i) => i), ticktext: words,
    };
  };
  const dimensions = [...page.varying.map((name) => axis(name, plotted)), axis(objective, plotted)];

  const inRange = (v, range) => {
    if (!range) return true;
    const ranges = Array.isArray(range[0]) ? range : [range];
    return ranges.some(([low, high]) => v >= low && v <= high);
  };

  const showRuns = (ranges) => {
    const body = document.querySelector("#experiment-runs tbody");
    body.replaceChildren();
    const kept = plotted.filter((run, i) => dimensions.every((d, k) => inRange(d.values[i], ranges[k])));
    for (const run of kept) {
      const row = document.createElement("tr");
      row.dataset.id = String(run.id);
      const link = document.createElement("a");
      link.href = `/runs/${run.id}`;
      link.textContent = String(run.id);
      expq.cell(row, "").appendChild(link);
      expq.cell(row, run.status);
      page.varying.forEach((name) => expq.cell(row, expq.number(value(run, name))));
      expq.cell(row, expq.number(run[objective]));
      body.appendChild(row);
    }
    document.getElementById("selected-count").textContent = `(${kept.length} of ${plotted.length} with ${objective})`;
    document.body.dataset.selected = String(kept.length);
  };

  const drawParcoords = async () => {
    const chart = document.getElementById("chart-parcoords");
    const trace = {
      type: "parcoords",
      line: { color: dimensions[dimensions.length - 1].values, colorscale: "Viridis", showscale: true },
      dimensions: dimensions.map((d) => ({ ...d })),
    };
    await Plotly.react(chart, [trace], { margin: { t: 60, r: 60, b: 30, l: 60 } }, expq.CONFIG);
    chart.on("plotly_restyle", () => {
      showRuns(chart.data[0].dimensions.map((d) => d.constraintrange));
    });
  };

  const drawScatter = () => {
    const pick = document.getElementById("scatter-x");
    const name = pick.value || "lr";
    const trace = {
      x: plotted.map((run) => value(run, name)), y: plotted.map((run) => run[objective]),
      text: plotted.map((run) => `run ${run.id}`), mode: "markers", type: "scatter",
    };
    Plotly.react("chart-scatter", [trace], { ...expq.LAYOUT, xaxis: { title: { text: name } }, yaxis: { title: { text: objective } } }, expq.CONFIG);
  };

  document.getElementById("scatter-x").addEventListener("change", drawScatter);
  drawSummary();
  drawScatter();
  showRuns([]);
  drawParcoords().then(() => { document.body.dataset.drawn = "1"; });
})();
