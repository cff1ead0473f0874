// The dashboard: live progress of running fleets from their event streams, and the compare
// button enabled once two fleets are picked. Hand-written, no library.
"use strict";
(function () {
  var MAX_STREAMS = 6; // a browser holds ~6 connections per host; keep one for the pages
  function pct(v) { return v === null || v === undefined ? "\u2013" : (100 * v).toFixed(1) + "%"; }
  function show(row, fleet) {
    var p = fleet.progress, badge = row.querySelector(".badge");
    badge.textContent = fleet.status;
    badge.className = "badge " + fleet.status;
    row.dataset.status = fleet.status;
    var done = p.rounds_done || 0, share = p.rounds ? done / p.rounds : 0;
    row.querySelector(".progress").innerHTML =
      '<span class="bar-progress"><span style="width:' + (100 * share).toFixed(1) +
      '%"></span></span> ' + done + " of " + p.rounds + " rounds";
    var last = fleet.last_round || {};
    var acc = last.global_accuracy !== undefined && last.global_accuracy !== null ?
      last.global_accuracy : last.client_accuracy_mean;
    row.querySelector(".accuracy").textContent = pct(acc) +
      (fleet.status === "running" || fleet.status === "queued" ? " (so far)" : "");
  }
  var rows = document.querySelectorAll("tr[data-fleet]"), streams = 0;
  rows.forEach(function (row) {
    if (["queued", "running", "paused"].indexOf(row.dataset.status) < 0 ||
        streams >= MAX_STREAMS || !window.EventSource) { return; }
    streams += 1;
    var source = new EventSource("/v1/fleets/" + row.dataset.fleet + "/events");
    source.addEventListener("progress", function (e) { show(row, JSON.parse(e.data)); });
    source.addEventListener("end", function (e) { show(row, JSON.parse(e.data)); source.close(); });
  });
  var form = document.getElementById("pick"), button = document.getElementById("compare");
  function count() { return form.querySelectorAll("input[name=ids]:checked").length; }
  function update() { button.disabled = count() < 2; }
  form.addEventListener("change", update);
  update();
})();
