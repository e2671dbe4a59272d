/* Dashboard (F-36): live calls over ws/dashboard/, today's charts with Chart.js.
 * Consumes call.status {call_id, status, previous, reason}: a known row changes in
 * place (and leaves when the call ends); an unknown call refetches the table. Any
 * status change also refetches today's figures and chart data (at most once a second). */
(function () {
  "use strict";

  var root = document.getElementById("dashboard");
  if (!root) return;
  var terminal = (root.dataset.terminal || "").split(/\s+/);
  var container = root.querySelector("[data-live-calls-container]");
  var refetching = null;
  // Status messages of calls not in the table yet, replayed in order once it is
  // refetched: a call's next status often arrives while the table is on its way.
  var queued = [];

  function rowOf(callId) {
    return container.querySelector('tr[data-call-id="' + callId + '"]');
  }

  function refetch() {
    if (refetching) return refetching;
    refetching = fetch(root.dataset.liveUrl, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        container.innerHTML = html;
        var pending = queued;
        queued = [];
        pending.forEach(function (msg) { if (rowOf(msg.call_id)) onStatus(msg); });
        window.CC.tickDurations();
      })
      .catch(function () { queued = []; })
      .finally(function () { refetching = null; });
    return refetching;
  }

  function onStatus(msg) {
    var row = rowOf(msg.call_id);
    if (!row) {
      if (refetching || terminal.indexOf(msg.status) === -1) {
        queued.push(msg);
        refetch();
      }
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
    window.CC.tickDurations();
  }

  var today = root.querySelector("[data-today-container]");
  var todayTimer = null;
  var charts = {};

  function refreshToday() {
    if (todayTimer) return;
    todayTimer = window.setTimeout(function () {
      fetch(today.dataset.todayUrl, { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
        .then(function (html) {
          today.innerHTML = html;
          updateCharts();
        })
        .catch(function () {})
        .finally(function () { todayTimer = null; });
    }, 1000);
  }

  // Calls that started or ended while the socket was not listening (between the
  // page's render and the socket joining, or while it reconnected): fetch the table
  // and figures again once it listens, after any fetch already on its way.
  function catchUp() {
    (refetching || Promise.resolve()).then(refetch, refetch);
    refreshToday();
  }

  window.CC.liveSocket(root.dataset.wsPath, function (msg) {
    if (msg.type !== "call.status") return;
    onStatus(msg);
    refreshToday();
  }, root.querySelector("[data-socket-state]"), catchUp);

  function chartData() {
    var el = document.getElementById("chart-data");
    return el ? JSON.parse(el.textContent) : null;
  }

  function updateCharts() {
    var data = chartData();
    if (!data || !charts.perHour) return;
    charts.perHour.data.datasets[0].data = data.perHour.counts;
    charts.latency.data.datasets[0].data = data.latency.counts;
    charts.outcome.data.datasets[0].data = data.outcome.counts;
    Object.keys(charts).forEach(function (name) { charts[name].update(); });
  }

  // Charts: drawn only when the vendored Chart.js loaded (the figures stay readable).
  var data = chartData();
  if (!window.Chart || !data) return;
  var blue = "#1d5fd1";
  var common = {
    responsive: true,
    maintainAspectRatio: false,
    animation: false,
    plugins: { legend: { display: false } },
    scales: { y: { beginAtZero: true, ticks: { precision: 0 } } },
  };
  charts.perHour = new window.Chart(document.getElementById("chart-per-hour"), {
    type: "bar",
    data: { labels: data.perHour.labels, datasets: [{ data: data.perHour.counts, backgroundColor: blue }] },
    options: common,
  });
  charts.latency = new window.Chart(document.getElementById("chart-latency"), {
    type: "bar",
    data: { labels: data.latency.labels, datasets: [{ data: data.latency.counts, backgroundColor: "#2e8b57" }] },
    options: common,
  });
  charts.outcome = new window.Chart(document.getElementById("chart-outcome"), {
    type: "doughnut",
    data: {
      labels: data.outcome.labels,
      datasets: [{ data: data.outcome.counts, backgroundColor: [blue, "#e08a00", "#9aa3ad", "#2e8b57"] }],
    },
    options: { responsive: true, maintainAspectRatio: false, animation: false,
      plugins: { legend: { position: "bottom" } } },
  });
})();
