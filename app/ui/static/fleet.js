// One fleet's page while it runs: its event stream moves the progress line at every update,
// and each finished round brings the report's content again (charts, the round's device
// timeline), swapped in place without a reload. Hand-written, no library.
"use strict";
(function () {
  var body = document.body, id = body.dataset.fleet;
  var live = document.getElementById("live"), line = document.getElementById("progress");
  var active = ["queued", "running", "paused"];
  if (active.indexOf(body.dataset.status) < 0 || !window.EventSource) { return; }
  var seen = Number(body.dataset.roundsDone), busy = false, again = false;
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch("/ui/fleets/" + id + "/live?devices_from=" + body.dataset.devicesFrom,
          {credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) { if (html !== null) { live.innerHTML = html; } })
      .finally(function () { busy = false; if (again) { again = false; refresh(); } });
  }
  function progress(fleet) {
    var p = fleet.progress;
    body.dataset.status = fleet.status;
    line.textContent = fleet.status + ": round " + p.round + " of " + p.rounds + ", " +
      p.updates_done + " of " + p.updates_in_round + " updates of this round done, " +
      p.rounds_done + " rounds finished";
    if (p.rounds_done !== seen) { seen = p.rounds_done; refresh(); }
  }
  var source = new EventSource("/v1/fleets/" + id + "/events");
  source.addEventListener("progress", function (e) { progress(JSON.parse(e.data)); });
  source.addEventListener("end", function (e) {
    source.close();
    var fleet = JSON.parse(e.data);
    progress(fleet);
    line.textContent = fleet.status + ": " + fleet.progress.rounds_done + " of " +
      fleet.progress.rounds + " rounds" + (fleet.error ? " (" + fleet.error + ")" : "");
    refresh(); // the final report's content
  });
})();
