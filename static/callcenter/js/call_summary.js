/* The call page's summary card (F-76): while the summary is pending on an ended
 * call, fetch the card again every second until it is done, failed or skipped.
 * The call's own status comes from #call[data-call-status] (monitor.js keeps it). */
(function () {
  "use strict";
  var root = document.getElementById("call");
  if (!root) return;
  var terminal = (root.getAttribute("data-terminal") || "").split(" ");
  var tries = 0;

  function card() { return document.querySelector("[data-summary]"); }

  function tick() {
    var el = card();
    if (!el || el.getAttribute("data-extraction-status") !== "pending") return;
    var status = root.getAttribute("data-call-status");
    if (terminal.indexOf(status) < 0) { window.setTimeout(tick, 1000); return; }
    if (++tries > 600) return; // ten minutes: the worker is not running
    fetch(el.getAttribute("data-summary-url"), { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (html) {
          var holder = document.createElement("div");
          holder.innerHTML = html;
          var fresh = holder.querySelector("[data-summary]");
          if (fresh) el.replaceWith(fresh);
        }
      })
      .catch(function () {})
      .then(function () { window.setTimeout(tick, 1000); });
  }

  tick();
})();
