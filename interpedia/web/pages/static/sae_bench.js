// /sae-bench: click a column header to sort the table by it (again to reverse). No inline script (CSP).
(function () {
  "use strict";

  function sortBy(table, col, numeric, desc) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    function key(row) {
      var cell = row.cells[col];
      var v = cell ? cell.getAttribute("data-v") : null;
      if (numeric) return v === null ? NaN : parseFloat(v);
      return (v || (cell ? cell.textContent : "")).toLowerCase();
    }
    rows.sort(function (a, b) {
      var ka = key(a), kb = key(b);
      // rows without a value go last whichever way the column is sorted
      if (numeric && isNaN(ka)) return isNaN(kb) ? 0 : 1;
      if (numeric && isNaN(kb)) return -1;
      var c = ka < kb ? -1 : ka > kb ? 1 : 0;
      return desc ? -c : c;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }

  function init() {
    var table = document.getElementById("bench-table");
    if (!table) return;
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      var button = th.querySelector("button.sort");
      if (!button) return;
      button.addEventListener("click", function () {
        var desc = th.getAttribute("aria-sort") === "ascending";
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", desc ? "descending" : "ascending");
        sortBy(table, col, th.getAttribute("data-sort") === "num", desc);
      });
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
