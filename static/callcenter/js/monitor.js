/* Call monitor (F-37): live transcript with partial text, status timeline, controls.
 * Messages come from ws/calls/<id>/ exactly as the server broadcasts them:
 *   transcript.partial {speaker, item_id, delta}
 *   transcript.update  {entry_id, speaker, text, item_id, offset_ms, interrupted, final}
 *   call.status        {status, previous, reason}
 *   call.event         {event, payload, at, text}: `text` is the event in words
 *                      (the socket adds it, as the page renders saved events)
 *   call.supervision   {holder, mode, by_name}: handed to the supervisor console
 *                      (supervise.js) as a `cc:supervision` event on #call
 *   call.snapshot      {status, entries: [transcript.update…], supervision}, once per
 *                      (re)connect: what was saved after the newest line shown
 *                      (`?after=`), the status and who holds the call now
 * Any other type (handoff steps…) is shown on the timeline. */
(function () {
  "use strict";

  var root = document.getElementById("call");
  if (!root || root.dataset.live !== "true") return;
  var transcript = document.getElementById("transcript");
  var timeline = document.getElementById("timeline");
  var terminal = (root.dataset.terminal || "").split(/\s+/);
  var result = root.querySelector("[data-control-result]");

  function speakerLabel(speaker) {
    return transcript.dataset["label" + speaker.charAt(0).toUpperCase() + speaker.slice(1)] || speaker;
  }

  function offsetLabel(ms) {
    var s = Math.floor(Math.max(ms || 0, 0) / 1000);
    return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
  }

  function nearBottom(el) {
    return el.scrollHeight - el.scrollTop - el.clientHeight < 80;
  }

  function makeLine(speaker, itemId) {
    var empty = transcript.querySelector("[data-empty]");
    if (empty) empty.remove();
    var li = document.createElement("li");
    li.className = "utterance speaker-" + speaker;
    li.dataset.itemId = itemId || "";
    var who = document.createElement("span");
    who.className = "speaker";
    who.textContent = speakerLabel(speaker);
    var offset = document.createElement("span");
    offset.className = "offset";
    var text = document.createElement("p");
    text.className = "text";
    li.append(who, " ", offset, " ", text);
    return li;
  }

  function append(li) {
    var stick = nearBottom(transcript);
    transcript.appendChild(li);
    if (stick) transcript.scrollTop = transcript.scrollHeight;
  }

  /* A final line goes where the record will show it: in offset order, before the
   * lines still being spoken. (The caller's words are transcribed while the AI
   * already answers them, so they often arrive after the answer's partial text.) */
  function placeFinal(li, offsetMs) {
    var stick = nearBottom(transcript);
    var lines = transcript.querySelectorAll("li.utterance");
    var before = null;
    for (var i = 0; i < lines.length; i++) {
      var other = lines[i];
      if (other === li) continue;
      if (other.classList.contains("partial") || Number(other.dataset.offsetMs) > offsetMs) {
        before = other;
        break;
      }
    }
    // (Re-)inserting also makes assistive tech announce the final text.
    transcript.insertBefore(li, before);
    if (stick) transcript.scrollTop = transcript.scrollHeight;
  }

  function partialLine(itemId) {
    if (!itemId) return null;
    return transcript.querySelector('li.partial[data-item-id="' + CSS.escape(itemId) + '"]');
  }

  function onPartial(msg) {
    var li = partialLine(msg.item_id);
    if (!li) {
      li = makeLine(msg.speaker || "ai", msg.item_id);
      li.classList.add("partial");
      // Screen readers get the line once, when it is final.
      li.setAttribute("aria-hidden", "true");
      append(li);
    }
    li.querySelector(".text").textContent += msg.delta || "";
    if (nearBottom(transcript)) transcript.scrollTop = transcript.scrollHeight;
  }

  function onTranscript(msg) {
    if (msg.entry_id && transcript.querySelector('[data-entry-id="' + msg.entry_id + '"]')) return;
    var li = partialLine(msg.item_id) || makeLine(msg.speaker, msg.item_id);
    li.removeAttribute("aria-hidden");
    li.className = "utterance speaker-" + msg.speaker;
    li.dataset.entryId = msg.entry_id || "";
    li.dataset.offsetMs = msg.offset_ms || 0;
    li.querySelector(".offset").textContent = offsetLabel(msg.offset_ms);
    li.querySelector(".text").textContent = msg.text || "";
    if (msg.interrupted && !li.querySelector(".tag")) {
      var tag = document.createElement("span");
      tag.className = "tag";
      tag.textContent = transcript.dataset.labelInterrupted;
      li.insertBefore(tag, li.querySelector(".text"));
    }
    placeFinal(li, msg.offset_ms || 0);
  }

  function statusText(msg) {
    var text = (msg.previous || "?") + " → " + (msg.status || "?");
    return msg.reason ? text + " (" + msg.reason + ")" : text;
  }

  /* `key: value · …` of a message the server sent no words for. */
  function facts(payload) {
    return Object.keys(payload).filter(function (k) {
      return payload[k] !== "" && payload[k] !== null && payload[k] !== undefined && k !== "at";
    }).map(function (k) {
      var v = payload[k];
      v = typeof v === "object" ? JSON.stringify(v) : String(v);
      return k + ": " + (v.length > 80 ? v.slice(0, 79) + "…" : v);
    }).join(" · ");
  }

  /* The organisation's zone for every time on the page (named once, above the
   * timeline), as the server renders saved events: never the browser's. */
  var clock = new Intl.DateTimeFormat("en-GB", {
    timeZone: root.dataset.timeZone || undefined,
    hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
  });

  function addTimeline(kind, text, at, payload) {
    var li = document.createElement("li");
    li.className = "event event-" + kind;
    var when = at ? new Date(at) : new Date();
    var time = document.createElement("time");
    time.dateTime = when.toISOString();
    time.textContent = clock.format(when);
    var type = document.createElement("span");
    type.className = "event-type";
    type.textContent = kind;
    var body = document.createElement("span");
    body.className = "event-summary";
    body.textContent = text;
    li.append(time, " ", type, " ", body);
    if (payload && typeof payload === "object" && Object.keys(payload).length) {
      // The raw payload, behind a toggle, as on the saved lines.
      var details = document.createElement("details");
      details.className = "event-details";
      var label = document.createElement("summary");
      label.textContent = timeline.dataset.textDetails;
      var raw = document.createElement("pre");
      raw.textContent = JSON.stringify(payload, null, 2);
      details.append(label, raw);
      li.append(" ", details);
    }
    var stick = nearBottom(timeline);
    timeline.appendChild(li);
    if (stick) timeline.scrollTop = timeline.scrollHeight;
  }

  /* Handing off and instructing need the AI on the call; hanging up and
     do-not-call, a live call. */
  function applyControls() {
    var live = root.dataset.live === "true";
    var withAi = root.dataset.callStatus === "ai-responding";
    var anyLive = ["hangup", "do-not-call"];
    root.querySelectorAll("form[data-control]").forEach(function (form) {
      var usable = live && (anyLive.indexOf(form.dataset.control) !== -1 || withAi);
      form.querySelectorAll("button, textarea").forEach(function (el) { el.disabled = !usable; });
    });
  }

  function setStatus(status, label) {
    root.dataset.callStatus = status;
    root.querySelectorAll("[data-status]").forEach(function (el) {
      el.className = "status status-" + status;
      el.textContent = label || status;
    });
    var duration = root.querySelector(".duration");
    if (duration && !duration.dataset.since && status !== "initiated" && status !== "ringing") {
      duration.dataset.since = new Date().toISOString();
    }
    if (terminal.indexOf(status) !== -1) {
      if (duration && duration.dataset.since) duration.dataset.until = new Date().toISOString();
      root.dataset.live = "false";
      var badge = root.querySelector("[data-live-badge]");
      if (badge) badge.hidden = true;
      root.querySelector("[data-ended-notice]").hidden = false;
    }
    window.CC.tickDurations();
    applyControls();
  }

  function onMessage(msg) {
    switch (msg.type) {
      case "transcript.partial":
        onPartial(msg);
        break;
      case "transcript.update":
        onTranscript(msg);
        break;
      case "call.snapshot":
        // The socket's catch-up: lines saved while it was not listening, the status now.
        (msg.entries || []).forEach(onTranscript);
        if (msg.status && msg.status !== root.dataset.callStatus) {
          setStatus(msg.status, window.CC.statusLabel(msg.status));
        }
        // Who holds the call now (it may have changed while the socket was away).
        if (msg.supervision) root.dispatchEvent(new CustomEvent("cc:supervision", { detail: msg.supervision }));
        break;
      case "call.status":
        setStatus(msg.status, window.CC.statusLabel(msg.status));
        addTimeline("status", statusText(msg));
        break;
      case "call.event":
        addTimeline(msg.event, msg.text || msg.event, msg.at, msg.payload);
        break;
      case "call.supervision":
        root.dispatchEvent(new CustomEvent("cc:supervision", { detail: msg }));
        break;
      default: {
        var rest = Object.assign({}, msg);
        delete rest.type;
        delete rest.call_id;
        addTimeline(msg.type, msg.text || facts(rest), msg.at, rest);
      }
    }
  }

  function showResult(ok, text, detail) {
    result.textContent = text;
    result.title = detail || "";
    result.className = "control-result " + (ok ? "ok" : "error");
    result.setAttribute("role", ok ? "status" : "alert");
  }

  /* The page's own words for an API error code (`upstream_error` → data-error-upstream-error). */
  function errorText(code) {
    if (!code) return "";
    var key = "error" + code.split("_").map(function (part) {
      return part.charAt(0).toUpperCase() + part.slice(1);
    }).join("");
    return result.dataset[key] || "";
  }

  root.querySelectorAll("form[data-control]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) return;
      var buttons = form.querySelectorAll("button");
      buttons.forEach(function (b) { b.disabled = true; });
      var request = "json" in form.dataset
        ? window.CC.postJson(form.action, form)
        : window.CC.postForm(form.action, new FormData(form));
      request
        .then(function (reply) {
          var data = reply.data || {};
          var apiError = data.error && typeof data.error === "object" ? data.error : null;
          var error = apiError ? apiError.message : data.error;
          var text = data.message || error || data.detail ||
            (reply.ok ? result.dataset.textSent : result.dataset.textFailed + " (HTTP " + reply.status + ")");
          var detail = "";
          if (reply.ok && data.agent_number) {
            text = result.dataset.textHandoff + " (" + data.agent_number + ")";
          } else if (!reply.ok && form.dataset.control === "handoff") {
            // The API's message is for developers (English, technical): it goes in
            // the tooltip; the operator reads the page's words for its code.
            detail = text;
            text = result.dataset.textHandoffFailed + ": " + (errorText(apiError && apiError.code) || text);
          }
          showResult(reply.ok, text, detail);
          if (reply.ok && form.dataset.control === "instruct") form.reset();
        })
        .catch(function (err) {
          showResult(false, result.dataset.textFailed + ": " + err.message);
        })
        .finally(applyControls);
    });
  });

  // Scrolled to the newest line and event; controls as the status allows.
  transcript.scrollTop = transcript.scrollHeight;
  timeline.scrollTop = timeline.scrollHeight;
  applyControls();

  /* The newest saved line shown: the socket asks for what came after it. */
  function lastEntryId() {
    var last = 0;
    transcript.querySelectorAll("li[data-entry-id]").forEach(function (li) {
      last = Math.max(last, Number(li.dataset.entryId) || 0);
    });
    return last;
  }

  window.CC.liveSocket(function () {
    return root.dataset.wsPath + "?after=" + lastEntryId();
  }, onMessage, root.querySelector("[data-socket-state]"));
})();
