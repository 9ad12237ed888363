// Workers: live workers and queue depths from /api/workers, refreshed every 3 s.
"use strict";

(() => {
  const fill = (id, rows) => {
    const body = document.querySelector(`#${id} tbody`);
    body.replaceChildren();
    for (const cells of rows) {
      const row = document.createElement("tr");
      cells.forEach((text) => expq.cell(row, text));
      body.appendChild(row);
    }
  };
  const show = async () => {
    const fleet = await expq.json("/api/workers");
    const broker = document.getElementById("broker");
    broker.textContent = fleet.up
      ? `broker ${fleet.broker}: up; ${fleet.workers.length} live workers answered`
      : `broker ${fleet.broker}: down (${fleet.error})`;
    broker.className = fleet.up ? "info" : "error";
    fill("workers", fleet.workers.map((w) => [
      w.worker, (w.queues || []).join(","), expq.number(w.concurrency), w.device,
      (w.active_runs || []).map((r) => r.run_id).join(" ") || "-", expq.number(w.uptime_seconds),
    ]));
    fill("queues", fleet.queues.map((q) => [q.queue, String(q.waiting), String(q.in_flight)]));
    document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
  };
  show().catch(console.error);
  expq.every(3000, show);
})();
