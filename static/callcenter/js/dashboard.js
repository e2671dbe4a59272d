/* Dashboard (F-36): live calls over ws/dashboard/, today's charts with Chart.js.
 * Consumes call.status {call_id, status, previous, reason}: a known row changes in
 * place (and leaves when the call ends); an unknown call refetches the table. */
(function () {
  "use strict";

  var root = document.getElementById("dashboard");
  if (!root) return;
  var terminal = (root.dataset.terminal || "").split(/\s+/);
  var container = root.querySelector("[data-live-calls-container]");
  var refetching = null;

  function refetch() {
    if (refetching) return refetching;
    refetching = fetch(root.dataset.liveUrl, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        container.innerHTML = html;
        window.CC.tickDurations();
      })
      .catch(function () {})
      .finally(function () { refetching = null; });
    return refetching;
  }

  function onStatus(msg) {
    var row = container.querySelector('tr[data-call-id="' + msg.call_id + '"]');
    if (!row) {
      if (terminal.indexOf(msg.status) === -1) refetch();
      return;
    }
    var badge = row.querySelector("[data-status]");
    badge.className = "status status-" + msg.status;
    badge.textContent = window.CC.statusLabel(msg.status);
    var duration = row.querySelector(".duration");
    if (!duration.dataset.since && msg.status !== "initiated" && msg.status !== "ringing") {
      duration.dataset.since = new Date().toISOString();
    }
    if (terminal.indexOf(msg.status) !== -1) {
      duration.dataset.until = new Date().toISOString();
      row.classList.add("ended");
      window.setTimeout(refetch, 3000);
    }
  }

  window.CC.liveSocket(root.dataset.wsPath, function (msg) {
    if (msg.type === "call.status") onStatus(msg);
  }, root.querySelector("[data-socket-state]"));

  // Charts: drawn only when the vendored Chart.js loaded (the figures stay readable).
  var dataEl = document.getElementById("chart-data");
  if (!window.Chart || !dataEl) return;
  var data = JSON.parse(dataEl.textContent);
  var blue = "#1d5fd1";
  var common = {
    responsive: true,
    maintainAspectRatio: false,
    animation: false,
    plugins: { legend: { display: false } },
    scales: { y: { beginAtZero: true, ticks: { precision: 0 } } },
  };
  new window.Chart(document.getElementById("chart-per-hour"), {
    type: "bar",
    data: { labels: data.perHour.labels, datasets: [{ data: data.perHour.counts, backgroundColor: blue }] },
    options: common,
  });
  new window.Chart(document.getElementById("chart-latency"), {
    type: "bar",
    data: { labels: data.latency.labels, datasets: [{ data: data.latency.counts, backgroundColor: "#2e8b57" }] },
    options: common,
  });
  new window.Chart(document.getElementById("chart-outcome"), {
    type: "doughnut",
    data: {
      labels: data.outcome.labels,
      datasets: [{ data: data.outcome.counts, backgroundColor: [blue, "#e08a00", "#9aa3ad", "#2e8b57"] }],
    },
    options: { responsive: true, maintainAspectRatio: false, animation: false,
      plugins: { legend: { position: "bottom" } } },
  });
})();
