/* Shared helpers of the operators' pages: CSRF, live sockets, ticking durations.
 * No framework: each page script uses window.CC. */
(function () {
  "use strict";

  var CLOSE_FORBIDDEN = 4403;

  function csrfToken() {
    var input = document.querySelector("input[name=csrfmiddlewaretoken]");
    if (input) return input.value;
    var match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  /* POST a form (or FormData) with fetch; resolves to {ok, status, data}. */
  function postForm(url, body) {
    return fetch(url, {
      method: "POST",
      body: body,
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken(), Accept: "application/json" },
    }).then(function (response) {
      return response
        .json()
        .catch(function () { return {}; })
        .then(function (data) {
          return { ok: response.ok, status: response.status, data: data };
        });
    });
  }

  /* POST a form's fields (CSRF token aside) as JSON, for the REST API. */
  function postJson(url, form) {
    var body = {};
    new FormData(form).forEach(function (value, key) {
      if (key !== "csrfmiddlewaretoken") body[key] = value;
    });
    return fetch(url, {
      method: "POST",
      body: JSON.stringify(body),
      credentials: "same-origin",
      headers: {
        "X-CSRFToken": csrfToken(),
        Accept: "application/json",
        "Content-Type": "application/json",
      },
    }).then(function (response) {
      return response
        .json()
        .catch(function () { return {}; })
        .then(function (data) {
          return { ok: response.ok, status: response.status, data: data };
        });
    });
  }

  /* A WebSocket to `path` that reconnects with backoff, except when refused (4403).
   * `path` may be a function: it is asked again on every (re)connect. `onOpen`, if
   * given, runs on every open: what was broadcast before it is the page's to fetch. */
  function liveSocket(path, onMessage, stateEl, onOpen) {
    var delay = 500;
    var socket = null;
    function setState(name) {
      if (!stateEl) return;
      stateEl.dataset.state = name;
      var text = stateEl.dataset["text" + name.charAt(0).toUpperCase() + name.slice(1)];
      if (text) stateEl.textContent = text;
    }
    function connect() {
      var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
      var target = typeof path === "function" ? path() : path;
      socket = new WebSocket(scheme + window.location.host + target);
      socket.addEventListener("open", function () {
        delay = 500;
        setState("open");
        if (onOpen) onOpen();
      });
      socket.addEventListener("message", function (event) {
        var message;
        try {
          message = JSON.parse(event.data);
        } catch (err) {
          return;
        }
        onMessage(message);
      });
      socket.addEventListener("close", function (event) {
        if (event.code === CLOSE_FORBIDDEN) {
          setState("refused");
          return;
        }
        setState("closed");
        window.setTimeout(connect, delay);
        delay = Math.min(delay * 2, 10000);
      });
    }
    connect();
    return { close: function () { if (socket) socket.close(); } };
  }

  var statusLabels = null;
  /* The translated label of a call status, from the page's #status-labels JSON. */
  function statusLabel(status) {
    if (statusLabels === null) {
      var el = document.getElementById("status-labels");
      statusLabels = el ? JSON.parse(el.textContent) : {};
    }
    return statusLabels[status] || status;
  }

  function formatDuration(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    var h = Math.floor(seconds / 3600);
    var m = Math.floor((seconds % 3600) / 60);
    var s = seconds % 60;
    var mm = (h ? String(m).padStart(2, "0") : String(m)) + ":" + String(s).padStart(2, "0");
    return h ? h + ":" + mm : mm;
  }

  /* Fill every `.duration[data-since]` from its start (and end, once ended). */
  function tickDurations() {
    var now = Date.now();
    document.querySelectorAll(".duration[data-since]").forEach(function (el) {
      if (!el.dataset.since) return;
      var end = el.dataset.until ? Date.parse(el.dataset.until) : now;
      el.textContent = formatDuration((end - Date.parse(el.dataset.since)) / 1000);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    tickDurations();
    window.setInterval(tickDurations, 1000);
    document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      select.addEventListener("change", function () { select.form.submit(); });
    });
  });

  window.CC = {
    csrfToken: csrfToken,
    postForm: postForm,
    postJson: postJson,
    liveSocket: liveSocket,
    formatDuration: formatDuration,
    statusLabel: statusLabel,
    tickDurations: tickDurations,
  };
})();
