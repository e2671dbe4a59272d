/* Agent settings (F-39): range read-outs, VAD fields per turn-detection type, variable
 * chips, and a debounced live preview rendered by the server (agents.prompts). */
(function () {
  "use strict";

  var form = document.getElementById("agent-form");
  if (!form) return;
  var PROFILE_FIELDS = ["company_name", "service_name", "representative_name",
    "self_introduction", "service_description"];

  // Range sliders show their value.
  form.querySelectorAll("output[data-range-output]").forEach(function (output) {
    var input = document.getElementById(output.dataset.rangeOutput);
    function show() { output.textContent = Number(input.value).toFixed(2); }
    input.addEventListener("input", show);
    show();
  });

  // Turn detection: show only the fields of the chosen type.
  var turnSelect = form.querySelector("[name=turn_detection]");
  function showTurnFields() {
    form.querySelectorAll("[data-turn-types]").forEach(function (input) {
      var types = input.dataset.turnTypes.split(" ");
      var box = input.closest(".field");
      var shown = types.indexOf(turnSelect.value) !== -1;
      box.hidden = !shown;
    });
  }
  if (turnSelect) {
    turnSelect.addEventListener("change", showTurnFields);
    showTurnFields();
  }

  // Variable chips insert {{name}} at the caret of the last template field used.
  var templates = Array.prototype.slice.call(form.querySelectorAll("textarea[data-template]"));
  var target = templates[0];
  templates.forEach(function (area) {
    area.addEventListener("focus", function () { target = area; });
  });
  form.querySelectorAll("[data-insert]").forEach(function (chip) {
    chip.addEventListener("click", function () {
      if (!target) return;
      var token = "{{" + chip.dataset.insert + "}}";
      var start = target.selectionStart != null ? target.selectionStart : target.value.length;
      var end = target.selectionEnd != null ? target.selectionEnd : start;
      target.setRangeText(token, start, end, "end");
      target.focus();
      target.dispatchEvent(new Event("input", { bubbles: true }));
    });
  });

  // Live preview: one request per template, 300 ms after the last keystroke.
  var timers = {};
  var sequence = {};
  function preview(area) {
    var body = new FormData();
    body.append("template", area.value);
    PROFILE_FIELDS.forEach(function (name) {
      var input = form.elements[name];
      if (input) body.append(name, input.value);
    });
    var out = form.querySelector('[data-preview-for="' + area.id + '"]');
    var err = form.querySelector('[data-preview-error-for="' + area.id + '"]');
    var mine = (sequence[area.id] = (sequence[area.id] || 0) + 1);
    window.CC.postForm(form.dataset.previewUrl, body).then(function (reply) {
      if (mine !== sequence[area.id]) return; // a newer request is on its way
      var data = reply.data || {};
      if (data.ok) {
        out.textContent = data.rendered;
        out.classList.remove("stale");
        err.hidden = true;
        err.textContent = "";
        area.removeAttribute("aria-invalid");
        // The server's message about an earlier value no longer applies.
        form.querySelectorAll('[data-field-error="' + area.name + '"]').forEach(function (el) {
          el.hidden = true;
        });
      } else {
        out.classList.add("stale");
        err.textContent = data.error || "HTTP " + reply.status;
        err.hidden = false;
        area.setAttribute("aria-invalid", "true");
      }
    });
  }
  function schedule(area) {
    window.clearTimeout(timers[area.id]);
    timers[area.id] = window.setTimeout(function () { preview(area); }, 300);
  }
  templates.forEach(function (area) {
    area.addEventListener("input", function () { schedule(area); });
    preview(area);
  });
  PROFILE_FIELDS.forEach(function (name) {
    var input = form.elements[name];
    if (input) input.addEventListener("input", function () { templates.forEach(schedule); });
  });
})();
