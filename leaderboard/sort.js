/* Sortable tables: click a column header to sort by it, click again to reverse. The first click
   sorts ascending, or descending where the header says data-first="descending" (a score where
   larger is better: the best first).
   A cell sorts by its data-v attribute: numbers as numbers, other text as text; an empty key
   (a missing value) stays last in either direction. Ties keep their current order. */
(function () {
  "use strict";

  function key(cell) {
    var v = cell ? cell.getAttribute("data-v") : "";
    if (v === null) { v = cell.textContent.trim(); }
    if (v === "") { return null; }
    var n = Number(v);
    return isNaN(n) ? v : n;
  }

  function compare(a, b) {
    if (typeof a !== typeof b) { return typeof a === "number" ? -1 : 1; }
    return a < b ? -1 : (a > b ? 1 : 0);
  }

  function sortBy(table, th, col) {
    var current = th.getAttribute("aria-sort");
    var ascending = current ? current !== "ascending" : th.getAttribute("data-first") !== "descending";
    Array.prototype.forEach.call(th.parentNode.cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.map.call(body.rows, function (row, i) {
      return { row: row, key: key(row.cells[col]), i: i };
    });
    rows.sort(function (x, y) {
      if (x.key === null || y.key === null) {
        return (x.key === null) - (y.key === null) || x.i - y.i;
      }
      return (ascending ? compare(x.key, y.key) : compare(y.key, x.key)) || x.i - y.i;
    });
    rows.forEach(function (r) { body.appendChild(r.row); });
  }

  document.querySelectorAll("table.sortable").forEach(function (table) {
    var head = table.tHead && table.tHead.rows[0];
    if (!head) { return; }
    Array.prototype.forEach.call(head.cells, function (th, col) {
      var button = th.querySelector("button");
      if (button) { button.addEventListener("click", function () { sortBy(table, th, col); }); }
    });
  });

}());
