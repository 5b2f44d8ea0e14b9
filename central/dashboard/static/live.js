// Live device rows: the server pushes a rendered row per change over server-sent events.
(function () {
  "use strict";
  var table = document.getElementById("devices");
  var single = document.getElementById("device-state");  // the device page
  var badge = document.getElementById("live");
  if ((!table && !single) || !window.EventSource) { return; }
  var body = table ? table.tBodies[0] : null;
  var wantState = table ? table.dataset.filterState : "";
  var wantClinic = table ? table.dataset.filterClinic : "";

  function fmtAgo(seconds) {
    var s = Math.max(0, seconds);
    if (s < 120) { return Math.floor(s) + " s"; }
    if (s < 7200) { return Math.floor(s / 60) + " min"; }
    if (s < 172800) { return Math.floor(s / 3600) + " h"; }
    return Math.floor(s / 86400) + " d";
  }

  function refreshAges() {
    var now = Date.now() / 1000;
    document.querySelectorAll("td.ago[data-ts]").forEach(function (cell) {
      var ts = parseFloat(cell.dataset.ts);
      if (!isNaN(ts)) { cell.textContent = fmtAgo(now - ts); }
    });
  }

  function recount() {
    var rows = body.querySelectorAll("tr[data-state]");
    var counts = {};
    rows.forEach(function (r) { counts[r.dataset.state] = (counts[r.dataset.state] || 0) + 1; });
    document.querySelectorAll("[id^=count-]").forEach(function (el) {
      var key = el.id.slice(6);
      if (key !== "all" && !wantState) { el.textContent = counts[key] || 0; }
    });
    if (!wantState) { document.getElementById("count-all").textContent = rows.length; }
  }

  function placeSingle(data) {
    if (data.id !== single.dataset.device) { return; }
    single.textContent = data.state;
    single.className = "state " + data.state;
  }

  function place(data) {
    if (!table) { placeSingle(data); return; }
    if (wantClinic && data.clinic !== wantClinic) { return; }
    var old = document.getElementById("dev-" + data.id);
    var holder = document.createElement("tbody");
    holder.innerHTML = data.html;
    var row = holder.firstElementChild;
    if (wantState && data.state !== wantState) {
      if (old) { old.remove(); }
    } else if (old) {
      old.replaceWith(row);
    } else {
      var empty = body.querySelector("tr.empty");
      if (empty) { empty.remove(); }
      body.appendChild(row);
    }
    row && row.classList.add("changed");
    setTimeout(function () { row && row.classList.remove("changed"); }, 1500);
    recount();
  }

  var source = new EventSource("/events");
  source.addEventListener("open", function () { if (badge) { badge.dataset.status = "on"; } });
  source.addEventListener("error", function () { if (badge) { badge.dataset.status = "off"; } });
  source.addEventListener("device", function (e) { place(JSON.parse(e.data)); });
  setInterval(refreshAges, 5000);
})();
