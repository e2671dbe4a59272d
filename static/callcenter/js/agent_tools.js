/* Agent settings (F-78): the MCPサーバー and HTTPツール sections. Each edits a JSON list
 * in its textarea: "項目を追加" appends an entry to fill in, each entry listed below has
 * a remove button, and "接続テスト" posts the list as typed to the server, which tries
 * every entry (MCP: lists its tools; HTTP: one signed test POST) and answers in words. */
(function () {
  "use strict";

  var TEMPLATES = {
    mcp: {
      name: "booking",
      url: "https://",
      headers: {},
      allowed_tools: [],
      timeout_s: 10,
      transport: "streamable-http"
    },
    http: {
      name: "lookup_order",
      description: "",
      parameters: { type: "object", properties: {}, required: [] },
      url: "https://",
      secret: "",
      timeout_s: 10
    }
  };

  function csrfToken(form) {
    var input = form.querySelector("[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function parse(area) {
    try {
      var value = JSON.parse(area.value.trim() || "[]");
      return Array.isArray(value) ? value : null;
    } catch (e) {
      return null;
    }
  }

  function write(area, list) {
    area.value = JSON.stringify(list, null, 2);
    area.dispatchEvent(new Event("input", { bubbles: true }));
  }

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  document.querySelectorAll("[data-tool-config]").forEach(function (box) {
    var kind = box.dataset.toolConfig;
    var area = document.getElementById(box.dataset.configFor);
    var entries = box.querySelector("[data-tool-entries]");
    var result = box.querySelector("[data-tool-test-result]");
    var form = box.closest("form");

    function listEntries() {
      entries.textContent = "";
      var list = parse(area);
      if (!list) return;
      list.forEach(function (entry, index) {
        var li = el("li", "tool-entry");
        li.appendChild(el("code", "", String((entry && entry.name) || "?")));
        li.appendChild(el("span", "help", " " + String((entry && entry.url) || "")));
        var remove = el("button", "button small", entries.dataset.labelRemove);
        remove.type = "button";
        remove.addEventListener("click", function () {
          var now = parse(area);
          if (!now) return;
          now.splice(index, 1);
          write(area, now);
        });
        li.appendChild(remove);
        entries.appendChild(li);
      });
    }

    area.addEventListener("input", listEntries);
    listEntries();

    box.querySelector("[data-tool-add]").addEventListener("click", function () {
      var list = parse(area) || [];
      list.push(JSON.parse(JSON.stringify(TEMPLATES[kind])));
      write(area, list);
      area.focus();
    });

    box.querySelector("[data-tool-test]").addEventListener("click", function () {
      result.textContent = result.dataset.labelTesting;
      result.className = "tool-test-result";
      var body = new URLSearchParams();
      body.set("kind", kind);
      body.set("config", area.value);
      fetch(box.dataset.testUrl, {
        method: "POST",
        headers: { "X-CSRFToken": csrfToken(form) },
        body: body,
        credentials: "same-origin"
      }).then(function (response) {
        return response.json();
      }).then(function (data) {
        result.textContent = "";
        result.classList.add(data.ok ? "ok" : "failed");
        if (data.error) {
          result.appendChild(el("p", "field-error", data.error));
          return;
        }
        data.results.forEach(function (entry) {
          var section = el("div", "tool-test-entry " + (entry.ok ? "ok" : "failed"));
          section.dataset.toolName = entry.name;
          section.appendChild(el("strong", "", entry.name + ": "));
          section.appendChild(el("span", "", entry.message));
          if (entry.tools.length) {
            var ul = el("ul");
            entry.tools.forEach(function (tool) {
              var li = el("li");
              li.appendChild(el("code", "", tool.name));
              if (tool.description) li.appendChild(el("span", "help", " " + tool.description));
              ul.appendChild(li);
            });
            section.appendChild(ul);
          }
          result.appendChild(section);
        });
      }).catch(function () {
        result.textContent = result.dataset.labelFailed;
        result.classList.add("failed");
      });
    });
  });
})();
