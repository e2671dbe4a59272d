/* Job cards live (F-77): a toast on every page that has [data-job-toasts] when a job
 * is created, and on the jobs page the table fetched again on any job change.
 * Messages come from ws/jobs/ (jobs.consumers.JobsConsumer). */
(function () {
  "use strict";
  var toasts = document.querySelector("[data-job-toasts]");
  if (!toasts) return;
  var live = document.querySelector("[data-jobs-live]");
  var stateEl = live ? document.querySelector("[data-socket-state]") : null;
  var TOAST_MS = 10000;

  function toast(msg) {
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
