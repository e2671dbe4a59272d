/* Job cards live (F-77): a toast on every page that has [data-job-toasts] when a job
 * is created, and on the jobs page the table fetched again on any job change.
 * Messages come from ws/jobs/ (jobs.consumers.JobsConsumer); the page also asks
 * jobs:since every few seconds, so a job a worker made still toasts where the
 * worker cannot reach this server's sockets (no Redis). Each job toasts once. */
(function () {
  "use strict";
  var toasts = document.querySelector("[data-job-toasts]");
  if (!toasts) return;
  var live = document.querySelector("[data-jobs-live]");
  var stateEl = live ? document.querySelector("[data-socket-state]") : null;
  var TOAST_MS = 10000;
  var POLL_MS = 3000;
  var toasted = {};
  var lastId = null;

  function toast(msg) {
    if (toasted[msg.job_id]) return;
    toasted[msg.job_id] = true;
    if (lastId !== null && msg.job_id > lastId) lastId = msg.job_id;
    var item = document.createElement("div");
    item.className = "toast";
    item.setAttribute("data-testid", "job-toast");
    item.setAttribute("data-job-id", String(msg.job_id));
    var head = document.createElement("strong");
    head.textContent = toasts.dataset.textCreated + ": ";
    var link = document.createElement("a");
    link.href = msg.url;
    link.textContent = msg.title;
    var close = document.createElement("button");
    close.type = "button";
    close.className = "toast-close";
    close.setAttribute("aria-label", "×");
    close.textContent = "×";
    close.addEventListener("click", function () { item.remove(); });
    item.appendChild(head);
    item.appendChild(link);
    item.appendChild(close);
    toasts.appendChild(item);
    window.setTimeout(function () { item.remove(); }, TOAST_MS);
  }

  var refreshing = false;
  function refresh() {
    if (!live || refreshing) return;
    refreshing = true;
    fetch(live.dataset.refreshUrl, { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) { if (html) live.innerHTML = html; })
      .catch(function () {})
      .then(function () { refreshing = false; });
  }

  function poll() {
    var url = toasts.dataset.sinceUrl + (lastId === null ? "" : "?after=" + lastId);
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) {
        if (!data) return;
        var fresh = lastId !== null && data.jobs.length > 0;
        data.jobs.forEach(toast);
        if (lastId === null || data.last_id > lastId) lastId = data.last_id;
        if (fresh) refresh();
      })
      .catch(function () {})
      .then(function () { window.setTimeout(poll, POLL_MS); });
  }
  poll();

  window.CC.liveSocket(
    toasts.dataset.wsPath,
    function (msg) {
      if (msg.type === "job.created") {
        toast(msg);
        refresh();
      } else if (msg.type === "job.updated") {
        refresh();
      }
    },
    stateEl,
    function () {
      toasts.dataset.socket = "open";
      refresh(); // whatever changed while the socket was away
    }
  );
})();
