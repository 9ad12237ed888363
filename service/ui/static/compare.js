// Compare: every chosen run's L curves overlaid, one trace a run.
"use strict";

(async () => {
  const { ids } = expq.data();
  const all = await Promise.all(ids.map((id) => expq.json(`/api/runs/${id}/losses`)));
  for (const name of ["val", "train"]) {
    const traces = all
      .filter((losses) => losses.splits[name])
      .map((losses) => ({
        x: losses.splits[name].L.epoch, y: losses.splits[name].L.value,
        name: `run ${losses.run_id}`, mode: "lines",
      }));
    const layout = { ...expq.LAYOUT, xaxis: { title: { text: "epoch" } }, yaxis: { title: { text: `${name} L` } } };
    await Plotly.react(`chart-${name}`, traces, layout, expq.CONFIG);
  }
  document.body.dataset.drawn = "1";
})();
