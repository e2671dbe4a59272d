/* Campaign page (F-48): live progress bar, contact counts and outcomes.
 * Messages come from ws/campaigns/<id>/ as the server sends them:
 *   campaign.snapshot {campaign_id, status, progress, total, counts, outcomes}, once
 *                     per (re)connect: the progress now
 *   campaign.progress {…the same}, whenever `campaign_broadcast` runs
 * The contacts table is fetched again (this page's URL, at most once a second) after
 * each progress message, so contact statuses and outcomes follow too.
 * Buttons (start / pause / resume / cancel) are plain POST forms; they are shown for
 * the statuses in their data-show-when, updated as the status changes. */
(function () {
  "use strict";

  var root = document.getElementById("campaign");
  if (!root) return;
  var bar = document.getElementById("campaign-progress");
  var text = root.querySelector("[data-progress-text]");
  var total = root.querySelector("[data-total]");
  var badge = root.querySelector("[data-campaign-status]");
  var outcomes = document.getElementById("outcomes");
  var labelsEl = document.getElementById("campaign-status-labels");
  var labels = labelsEl ? JSON.parse(labelsEl.textContent) : {};

  function setStatus(status) {
    if (!status || status === root.dataset.status) return;
    root.dataset.status = status;
    badge.className = "status campaign-status-" + status;
    badge.textContent = labels[status] || status;
    root.querySelectorAll("[data-show-when]").forEach(function (form) {
      form.hidden = form.dataset.showWhen.split(/\s+/).indexOf(status) < 0;
    });
  }

  function setCounts(counts) {
    root.querySelectorAll("[data-count]").forEach(function (dd) {
      dd.textContent = String((counts || {})[dd.dataset.count] || 0);
    });
  }

  function setOutcomes(values) {
    var names = Object.keys(values || {}).sort();
    outcomes.textContent = "";
    if (!names.length) {
      var empty = document.createElement("li");
      empty.className = "muted";
      empty.dataset.empty = "";
      empty.textContent = outcomes.dataset.emptyText || "";
      outcomes.appendChild(empty);
      return;
    }
    names.forEach(function (name) {
      var li = document.createElement("li");
      li.dataset.outcome = name;
      var label = document.createElement("span");
      label.className = "outcome-name";
      label.textContent = name;
      var n = document.createElement("strong");
      n.textContent = String(values[name]);
      li.append(label, " ", n);
      outcomes.appendChild(li);
    });
  }

  var refreshTimer = null;
  var refreshing = false;
  function refreshContacts() {
    if (refreshTimer) return;
    refreshTimer = window.setTimeout(function () {
      refreshTimer = null;
      if (refreshing) return refreshContacts();
      refreshing = true;
      fetch(window.location.href, { credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.text() : null; })
        .then(function (html) {
          if (!html) return;
          var fresh = new DOMParser().parseFromString(html, "text/html");
          var body = fresh.querySelector("#contacts tbody");
          var current = document.querySelector("#contacts tbody");
          if (body && current) current.replaceWith(document.importNode(body, true));
        })
        .catch(function () {})
        .then(function () { refreshing = false; });
    }, 1000);
  }

  function onMessage(msg) {
    if (msg.type !== "campaign.progress" && msg.type !== "campaign.snapshot") return;
    if (String(msg.campaign_id) !== root.dataset.campaignId) return;
    bar.value = msg.progress || 0;
    text.textContent = (msg.progress || 0) + "%";
    if (total) total.textContent = String(msg.total || 0);
    setCounts(msg.counts);
    setOutcomes(msg.outcomes);
    setStatus(msg.status);
    if (msg.type === "campaign.progress") refreshContacts();
  }

  root.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });

  window.CC.liveSocket(
    "/ws/campaigns/" + root.dataset.campaignId + "/",
    onMessage,
    root.querySelector("[data-socket-state]")
  );
})();
