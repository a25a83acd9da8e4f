// Postwire console and portal: the only script of these pages (served from this origin; the
// Content-Security-Policy allows nothing else). It adds two conveniences and needs neither:
// "select all" on the dead-letter list, and live progress of running bulk replays.
"use strict";

(function () {
  function selectAll() {
    var all = document.getElementById("select-all");
    if (!all) return;
    all.addEventListener("change", function () {
      document.querySelectorAll("input.pick").forEach(function (box) { box.checked = all.checked; });
    });
  }

  function setText(row, role, text) {
    var el = row.querySelector('[data-role="' + role + '"]');
    if (el) el.textContent = text;
  }

  function showJob(row, job) {
    var done = job.queued + job.skipped;
    var bar = row.querySelector('[data-role="bar"]');
    if (bar) {
      bar.max = job.matched > 0 ? job.matched : 1;
      bar.value = job.matched > 0 ? done : (job.status === "running" ? 0 : 1);
    }
    var pct = job.matched > 0 ? Math.floor(done * 100 / job.matched) : (job.status === "running" ? 0 : 100);
    setText(row, "pct", pct + "%");
    setText(row, "counts", job.queued + " queued, " + job.skipped + " skipped of " + job.matched);
    setText(row, "status", job.status);
    var status = row.querySelector('[data-role="status"]');
    if (status) status.className = "status st-" + job.status;
    row.dataset.status = job.status;
    if (job.status !== "running") {
      var cancel = row.querySelector('[data-role="cancel"]');
      if (cancel) cancel.remove();
    }
  }

  function pollReplays() {
    var rows = Array.prototype.slice.call(document.querySelectorAll("tr.job"));
    if (!rows.length) return;
    function tick() {
      var running = rows.filter(function (r) { return r.dataset.status === "running"; });
      if (!running.length) return;
      var query = running.map(function (r) { return "id=" + encodeURIComponent(r.dataset.job); }).join("&");
      fetch("/console/api/replays?" + query, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (resp) { return resp.ok ? resp.json() : null; })
        .then(function (body) {
          if (body) {
            body.data.forEach(function (job) {
              var row = document.querySelector('tr.job[data-job="' + job.id + '"]');
              if (row) showJob(row, job);
            });
          }
          window.setTimeout(tick, 1000);
        })
        .catch(function () { window.setTimeout(tick, 3000); });
    }
    tick();
  }

  document.addEventListener("DOMContentLoaded", function () {
    selectAll();
    pollReplays();
  });
})();
