// The runs table: compare the ticked runs; running runs refresh themselves from /api/runs.
"use strict";

(() => {
  const button = document.getElementById("compare");
  const picks = () => [...document.querySelectorAll("input.pick:checked")].map((box) => box.value);
  document.getElementById("runs").addEventListener("change", () => {
    button.disabled = picks().length < 2;
  });
  button.addEventListener("click", () => {
    window.location.href = `/compare?ids=${picks().join(",")}`;
  });

  let live = expq.data().live || [];
  const update = (run) => {
    const row = document.querySelector(`tr[data-id="${run.id}"]`);
    if (!row) return;
    row.dataset.status = run.status;
    const set = (field, text) => {
      const td = row.querySelector(`[data-field="${field}"]`);
      if (td) td.textContent = text;
    };
    set("status", run.status);
    row.querySelector('[data-field="status"]').className = `status ${run.status}`;
    set("epochs", `${run.epochs_done}/${run.params.epochs}`);
    for (const field of ["final_train_loss", "final_val_loss", "best_val_loss", "final_metric"]) {
      set(field, expq.number(run[field]));
    }
    set("worker", run.worker || "-");
  };
  if (live.length) {
    expq.every(2000, async () => {
      const where = encodeURIComponent(`id in (${live.join(",")})`);
      const runs = await expq.json(`/api/runs?where=${where}&limit=${live.length}`);
      runs.forEach(update);
      live = runs.filter((run) => !expq.TERMINAL.has(run.status)).map((run) => run.id);
      document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
      return live.length > 0;
    });
  }
})();
