// The list page: run the list's shared test text through the live model for every feature whose SAE
// is loaded for inference (POST /api/activation/new), and show the activations as coloured tokens.
// No inline script anywhere: this file works under `script-src 'self'`.
(function () {
  "use strict";

  var LEVELS = 10;

  function pageData() {
    var node = document.getElementById("page-data");
    if (!node) return null;
    try { return JSON.parse(node.textContent || "null"); } catch (e) { return null; }
  }

  function displayToken(tok) {
    // Byte-level BPE markers for space, newline and tab; anything else is shown as is (as text, never HTML).
    return tok.replace(/\u0120/g, " ").replace(/\u010a/g, "\n").replace(/\u0109/g, "\t");
  }

  function render(target, tokens, values, maxAct) {
    var peak = 0;
    values.forEach(function (v) { if (Math.abs(v) > peak) peak = Math.abs(v); });
    var scale = maxAct > 0 ? maxAct : (peak || 1);
    target.textContent = "";
    tokens.forEach(function (tok, i) {
      var span = document.createElement("span");
      var v = values[i] || 0;
      span.className = "t";
      if (v) {
        var level = Math.min(LEVELS, Math.max(1, Math.ceil(Math.abs(v) / scale * LEVELS - 1e-9)));
        span.className += " " + (v > 0 ? "p" : "n") + level;
      }
      span.setAttribute("data-v", String(v));
      span.textContent = displayToken(tok);
      target.appendChild(span);
    });
    var label = document.createElement("span");
    label.className = "mv";
    label.textContent = " max " + peak.toFixed(2);
    target.appendChild(label);
    target.hidden = false;
  }

  function runOne(item, text) {
    var body = {
      feature: { modelId: item.getAttribute("data-model"), layer: item.getAttribute("data-layer"),
                 index: item.getAttribute("data-index") },
      customText: text
    };
    return fetch("/api/activation/new", {
      method: "POST", headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify(body), credentials: "same-origin"
    }).then(function (resp) {
      return resp.json().then(function (json) {
        if (!resp.ok) throw new Error(json && json.message ? json.message : "HTTP " + resp.status);
        return json;
      });
    }).then(function (json) {
      render(item.querySelector(".live-result"), json.tokens || [], json.values || [],
             parseFloat(item.getAttribute("data-max")) || 0);
      return true;
    });
  }

  function run(data) {
    var status = document.getElementById("live-status");
    if (!data || !data.testText || !status) return;
    var items = Array.prototype.filter.call(document.querySelectorAll(".list-item"), function (item) {
      return item.getAttribute("data-live") === "1";
    });
    var failed = 0;
    // One request at a time: the inference service works on one model at a time anyway.
    items.reduce(function (chain, item) {
      return chain.then(function () {
        return runOne(item, data.testText).catch(function (err) {
          failed += 1;
          var out = item.querySelector(".live-result");
          out.textContent = "Could not run the test text: " + err.message;
          out.hidden = false;
        });
      });
    }, Promise.resolve()).then(function () {
      status.textContent = failed ? "Ran the test text; " + failed + " feature(s) failed."
                                  : "Activations of the test text, from the live model.";
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", function () { run(pageData()); });
  else run(pageData());
})();
