// A run's page: L by epoch (best epoch marked), chosen L_t by epoch, heatmaps of L_t; live.
"use strict";

(() => {
  const page = expq.data();
  const steps = document.getElementById("lt-steps");
  const split = document.getElementById("lt-split");
  let losses = null;

  const best = (curve) => {
    let at = -1;
    curve.value.forEach((v, i) => {
      if (v !== null && (at < 0 || v < curve.value[at])) at = i;
    });
    return at;
  };

  const drawTotal = () => {
    const traces = [];
    for (const name of ["train", "val"]) {
      const curve = losses.splits[name] && losses.splits[name].L;
      if (curve) traces.push({ x: curve.epoch, y: curve.value, name: `${name} L`, mode: "lines" });
    }
    const val = losses.splits.val && losses.splits.val.L;
    const at = val ? best(val) : -1;
    if (at >= 0) {
      traces.push({
        x: [val.epoch[at]], y: [val.value[at]], name: `best val L (epoch ${val.epoch[at]})`,
        mode: "markers", marker: { size: 11, symbol: "star", color: "crimson" },
      });
    }
    Plotly.react("chart-total", traces, { ...expq.LAYOUT, xaxis: { title: { text: "epoch" } }, yaxis: { title: { text: "L" } } }, expq.CONFIG);
  };

  // Every L_t is chosen up to SHOWN of them; past that an evenly spaced SHOWN, first and last
  // included (64 lines at once read as one band), and the others one click away.
  const SHOWN = 8;
  const fillSteps = () => {
    const known = new Set([...steps.options].map((o) => o.value));
    const all = losses.timesteps;
    const stride = all.length <= SHOWN ? 1 : (all.length - 1) / (SHOWN - 1);
    const chosen = new Set(all.length <= SHOWN ? all : [...Array(SHOWN).keys()].map((i) => all[Math.round(i * stride)]));
    for (const t of all) {
      if (known.has(String(t))) continue;
      steps.add(new Option(`t=${t}`, String(t), chosen.has(t), chosen.has(t)));
    }
  };

  const drawSteps = () => {
    const chosen = [...steps.selectedOptions].map((o) => o.value);
    const series = (losses.splits[split.value] || {}).L_t || {};
    const traces = chosen.filter((t) => series[t]).map((t) => ({
      x: series[t].epoch, y: series[t].value, name: `L_${t}`, mode: "lines",
    }));
    Plotly.react("chart-steps", traces, { ...expq.LAYOUT, xaxis: { title: { text: "epoch" } }, yaxis: { title: { text: `${split.value} L_t` } } }, expq.CONFIG);
  };

  const drawHeatmaps = () => {
    for (const name of ["train", "val"]) {
      const map = losses.splits[name] && losses.splits[name].heatmap;
      const layout = {
        ...expq.LAYOUT, title: { text: `${name} L_t` },
        xaxis: { title: { text: "epoch" } }, yaxis: { title: { text: "timestep t" } },
      };
      const traces = map ? [{ type: "heatmap", x: map.epoch, y: map.timestep, z: map.z, colorscale: "Viridis" }] : [];
      Plotly.react(`heatmap-${name}`, traces, layout, expq.CONFIG);
    }
  };

  const describe = () => {
    const note = document.getElementById("downsampled");
    const heat = (losses.splits.val || losses.splits.train || {}).heatmap;
    const parts = [];
    if (losses.downsampled) {
      parts.push(`Downsampled on the server: ${losses.epochs} epochs drawn as buckets of ${losses.bucket} epochs (L) and ${losses.step_bucket} epochs (each L_t), each bucket keeping its min and max.`);
    }
    if (heat && heat.bucket > 1) parts.push(`Heatmap columns average ${heat.bucket} epochs each.`);
    note.textContent = parts.join(" ");
    note.hidden = parts.length === 0;
  };

  const draw = () => {
    fillSteps();
    drawTotal();
    drawSteps();
    drawHeatmaps();
    describe();
    document.body.dataset.drawn = String(Number(document.body.dataset.drawn || 0) + 1);
  };

  const load = async () => {
    losses = await expq.json(`/api/runs/${page.id}/losses`);
    draw();
  };

  const refresh = async () => {
    const run = await expq.json(`/api/runs/${page.id}`);
    const status = document.getElementById("status");
    status.textContent = run.status;
    status.className = `status ${run.status}`;
    document.getElementById("epochs").textContent = `${run.epochs_done}/${run.params.epochs}`;
    document.getElementById("attempt").textContent = `${run.attempt}/${run.max_attempts}`;
    document.getElementById("worker").textContent = `${run.device || "-"} / ${run.worker || "-"}`;
    document.getElementById("final").textContent = `${expq.number(run.final_train_loss)} / ${expq.number(run.final_val_loss)}`;
    document.getElementById("best").textContent = expq.number(run.best_val_loss);
    document.getElementById("metric").textContent = expq.number(run.final_metric);
    document.getElementById("started").textContent = run.started_at || "-";
    document.getElementById("finished").textContent = run.finished_at || "-";
    await load();
    return !expq.TERMINAL.has(run.status);
  };

  split.addEventListener("change", drawSteps);
  steps.addEventListener("change", drawSteps);
  document.getElementById("lt-all").addEventListener("click", () => {
    [...steps.options].forEach((o) => { o.selected = true; });
    drawSteps();
  });
  load().then(() => { if (page.live) expq.every(2000, refresh); });
})();
