// Shared by every page: the page's JSON, fetching the API, number formatting, polling.
"use strict";

const expq = {
  data() {
    const node = document.getElementById("page-data");
    return node ? JSON.parse(node.textContent) : {};
  },

  async json(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || `${response.status} from ${url}`);
    return body;
  },

  number(value, digits = 4) {
    if (value === null || value === undefined) return "-";
    if (typeof value !== "number") return String(value);
    return Number.isInteger(value) ? String(value) : value.toPrecision(digits).replace(/\.?0+(e|$)/, "$1");
  },

  // Calls `step` every `ms` until it returns false; one call at a time.
  every(ms, step) {
    const tick = async () => {
      let again = true;
      try {
        again = await step();
      } catch (error) {
        console.error(error);
      }
      if (again !== false) setTimeout(tick, ms);
    };
    setTimeout(tick, ms);
  },

  cell(row, text) {
    const td = document.createElement("td");
    td.textContent = text;
    row.appendChild(td);
    return td;
  },

  TERMINAL: new Set(["succeeded", "failed", "diverged", "cancelled", "pruned"]),
  LAYOUT: { margin: { t: 40, r: 20, b: 45, l: 60 }, legend: { orientation: "h", x: 0, y: 1.15 } },
  CONFIG: { displaylogo: false, responsive: true },
};
