// interpedia pages: token hover values, context size, line breaks, dead-feature reveal.
// No inline script anywhere: this file works under `script-src 'self'`.
(function () {
  "use strict";

  function onReady(fn) {
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", fn);
    else fn();
  }

  function pageData() {
    var node = document.getElementById("page-data");
    if (!node) return null;
    try { return JSON.parse(node.textContent || "null"); } catch (e) { return null; }
  }

  function tooltip() {
    var tip = document.createElement("div");
    tip.id = "tip";
    tip.setAttribute("role", "tooltip");
    tip.hidden = true;
    var tok = document.createElement("span");
    tok.className = "tip-tok";
    var val = document.createElement("span");
    val.className = "tip-val";
    tip.appendChild(tok);
    tip.appendChild(val);
    document.body.appendChild(tip);

    document.addEventListener("mouseover", function (event) {
      var target = event.target;
      var token = target && target.closest ? target.closest(".strip .t") : null;
      if (!token) { tip.hidden = true; return; }
      tok.textContent = token.textContent;  // text, never HTML
      var dfa = token.getAttribute("data-d");
      val.textContent = (token.getAttribute("data-v") || "0") + (dfa ? "  DFA " + dfa : "") +
        (token.classList.contains("dt") ? "  (DFA target)" : "");
      tip.hidden = false;
      var box = token.getBoundingClientRect();
      var left = Math.min(box.left, window.innerWidth - tip.offsetWidth - 8);
      tip.style.left = Math.max(4, left) + "px";
      tip.style.top = (box.bottom + 6 + tip.offsetHeight > window.innerHeight ? box.top - tip.offsetHeight - 6 : box.bottom + 6) + "px";
    });
    window.addEventListener("scroll", function () { tip.hidden = true; }, { passive: true });
  }

  function contextSwitch() {
    var acts = document.getElementById("acts");
    if (!acts) return;
    var buttons = document.querySelectorAll("[data-ctx]");
    Array.prototype.forEach.call(buttons, function (button) {
      button.addEventListener("click", function () {
        var size = button.getAttribute("data-ctx");
        acts.classList.remove("ctx-5", "ctx-16", "ctx-full");
        acts.classList.add("ctx-" + size);
        Array.prototype.forEach.call(buttons, function (other) {
          other.setAttribute("aria-pressed", other === button ? "true" : "false");
        });
      });
    });
    var breaks = document.getElementById("toggle-breaks");
    if (breaks) {
      breaks.addEventListener("change", function () { acts.classList.toggle("nobr", !breaks.checked); });
    }
  }

  function deadFeature() {
    var button = document.getElementById("show-anyway");
    if (!button) return;
    button.addEventListener("click", function () {
      document.getElementById("dashboard").hidden = false;
      document.getElementById("dead-notice").hidden = true;
    });
  }

  function testText(data) {
    // The test-text box is wired by the inference server; it stays hidden until a model is loaded.
    var pane = document.getElementById("test-text");
    if (pane && data && data.inferenceEnabled) pane.hidden = false;
  }

  onReady(function () {
    tooltip();
    contextSwitch();
    deadFeature();
    testText(pageData());
  });
})();
