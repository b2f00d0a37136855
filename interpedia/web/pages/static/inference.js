// interpedia live-inference pages: the feature page's test-text box, the model/SAE pickers of the
// search forms, and the steer form's "+ Feature" rows. Loaded as a file (CSP `script-src 'self'`).
// Token text is always set with textContent, never as HTML.
(function () {
  "use strict";

  var LEVELS = 10;
  var MARKERS = { "\u0120": " ", "\u010a": "\n", "\u0109": "\t", "\u2581": " " };  // Ġ Ċ ĉ ▁

  function onReady(fn) {
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", fn);
    else fn();
  }

  // How a raw tokenizer piece reads (the common byte-level BPE markers; the server does the full map).
  function displayToken(token) {
    var out = "";
    for (var i = 0; i < token.length; i++) {
      var ch = token.charAt(i);
      out += Object.prototype.hasOwnProperty.call(MARKERS, ch) ? MARKERS[ch] : ch;
    }
    return out;
  }

  function level(value, invScale) {
    return Math.min(LEVELS, Math.max(1, Math.ceil(Math.abs(value) * invScale * LEVELS - 1e-9)));
  }

  function fmt(value) {
    return (Math.round(value * 1000) / 1000).toString();
  }

  // --- the feature page's test-text box -------------------------------------------------------

  function renderStrip(strip, tokens, values, maxIndex, invScale) {
    while (strip.firstChild) strip.removeChild(strip.firstChild);
    tokens.forEach(function (token, i) {
      var text = displayToken(token);
      var span = document.createElement("span");
      var value = values[i] || 0;
      span.className = "t";
      if (value) {
        span.className += " " + (value > 0 ? "p" : "n") + level(value, invScale);
        span.setAttribute("data-v", String(value));
      }
      if (i === maxIndex) span.className += " m";
      span.textContent = text.replace(/\n/g, "\u21b5");
      strip.appendChild(span);
      if (text.indexOf("\n") >= 0) {
        var br = document.createElement("br");
        br.className = "br";
        strip.appendChild(br);
      }
    });
  }

  function parseList(node, name) {
    try {
      var list = JSON.parse(node.getAttribute(name) || "[]");
      return Array.isArray(list) ? list : [];
    } catch (e) { return []; }
  }

  // A line on the activation histogram at ``value``: the SVG is drawn by the server (charts.py); its
  // plot area is read back from its axis lines, and bars are the finite (x, height) pairs in order.
  function markHistogram(pane, value) {
    var svg = document.querySelector("#act-hist svg.hist");
    if (!svg) return;
    var old = svg.querySelector(".test-marker");
    if (old) svg.removeChild(old);
    var axes = svg.querySelectorAll("line.axis");
    if (axes.length < 2) return;
    var left = parseFloat(axes[0].getAttribute("x1")), right = parseFloat(axes[0].getAttribute("x2"));
    var base = parseFloat(axes[0].getAttribute("y1")), top = parseFloat(axes[1].getAttribute("y1"));
    var xs = parseList(pane, "data-hist-xs"), hs = parseList(pane, "data-hist-heights");
    var bins = [];
    for (var i = 0; i < Math.min(xs.length, hs.length); i++) {
      if (typeof xs[i] === "number" && typeof hs[i] === "number" && isFinite(xs[i]) && isFinite(hs[i])) bins.push(xs[i]);
    }
    if (!bins.length) return;
    var barW = (right - left) / bins.length;
    // Bin positions are centres: place the value between the two nearest centres, clamped to the plot.
    var pos;
    if (bins.length === 1 || value <= bins[0]) pos = 0;
    else if (value >= bins[bins.length - 1]) pos = bins.length - 1;
    else {
      pos = 0;
      while (pos < bins.length - 1 && bins[pos + 1] < value) pos++;
      pos += (value - bins[pos]) / ((bins[pos + 1] - bins[pos]) || 1);
    }
    var x = Math.min(right, Math.max(left, left + (pos + 0.5) * barW));
    var ns = "http://www.w3.org/2000/svg";
    var group = document.createElementNS(ns, "g");
    group.setAttribute("class", "test-marker");
    var line = document.createElementNS(ns, "line");
    line.setAttribute("x1", x.toFixed(2)); line.setAttribute("x2", x.toFixed(2));
    line.setAttribute("y1", String(top)); line.setAttribute("y2", String(base));
    var title = document.createElementNS(ns, "title");
    title.textContent = "test text max: " + fmt(value);
    line.appendChild(title);
    group.appendChild(line);
    svg.appendChild(group);
  }

  function showError(node, message) {
    node.textContent = message;
    node.hidden = false;
  }

  function testText() {
    var pane = document.getElementById("test-text");
    var form = document.getElementById("test-form");
    if (!pane || !form || pane.getAttribute("data-available") !== "true") return;
    var input = document.getElementById("test-input");
    var button = document.getElementById("test-submit");
    var error = document.getElementById("test-error");
    var result = document.getElementById("test-result");
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var text = input.value;
      error.hidden = true;
      if (!text.trim()) { showError(error, "Type some text first."); return; }
      button.disabled = true;
      pane.classList.add("busy");
      var body = { feature: { modelId: pane.getAttribute("data-model"), source: pane.getAttribute("data-source"),
                              index: pane.getAttribute("data-index") }, customText: text };
      fetch("/api/activation/new", { method: "POST", credentials: "same-origin",
                                     headers: { "Content-Type": "application/json", "Accept": "application/json" },
                                     body: JSON.stringify(body) })
        .then(function (response) {
          return response.json().then(function (doc) { return { ok: response.ok, doc: doc }; },
                                      function () { return { ok: false, doc: { message: "HTTP " + response.status } }; });
        })
        .then(function (answer) {
          if (!answer.ok) { showError(error, answer.doc.message || answer.doc.error || "The test failed."); return; }
          var doc = answer.doc;
          var top = Math.max(parseFloat(pane.getAttribute("data-max-act")) || 0,
                             Math.max.apply(null, doc.values.map(function (v) { return Math.abs(v); }).concat([0])));
          renderStrip(document.getElementById("test-strip"), doc.tokens, doc.values, doc.maxValueIndex,
                      top > 0 ? 1 / top : 1);
          document.getElementById("test-max").textContent = fmt(doc.maxValue);
          result.hidden = false;
          markHistogram(pane, doc.maxValue);
        })
        .catch(function (e) { showError(error, "The test could not reach the server: " + e); })
        .then(function () { button.disabled = false; pane.classList.remove("busy"); });
    });
    // An embed's defaulttesttext runs at once (its text field may be hidden).
    if (pane.getAttribute("data-autorun") === "true" && input.value.trim()) {
      if (form.requestSubmit) form.requestSubmit(); else form.dispatchEvent(new Event("submit", { cancelable: true }));
    }
  }

  // --- the search forms: SAE and source-set options follow the chosen model -------------------

  function pickers() {
    var model = document.querySelector(".live-model");
    if (!model) return;
    function follow() {
      Array.prototype.forEach.call(document.querySelectorAll("select.live-dependent"), function (select) {
        var firstVisible = null, selectedVisible = false;
        Array.prototype.forEach.call(select.options, function (option) {
          var mine = option.getAttribute("data-model") === model.value;
          option.hidden = !mine;
          option.disabled = !mine;
          if (mine && !firstVisible) firstVisible = option;
          if (mine && option.selected) selectedVisible = true;
        });
        if (!selectedVisible && firstVisible) firstVisible.selected = true;
      });
    }
    model.addEventListener("change", follow);
    follow();
  }

  // --- the steer form: more feature rows --------------------------------------------------------

  function steerRows() {
    var add = document.getElementById("add-feature");
    var table = document.getElementById("steer-features");
    if (!add || !table) return;
    add.addEventListener("click", function () {
      var rows = table.querySelectorAll("tbody tr.feature-row");
      if (!rows.length) return;
      var row = rows[rows.length - 1].cloneNode(true);
      Array.prototype.forEach.call(row.querySelectorAll("input"), function (input) { input.value = ""; });
      var link = row.querySelector(".feature-link");
      if (link) link.parentNode.removeChild(link);
      table.querySelector("tbody").appendChild(row);
      var index = row.querySelector("input[name=index]");
      if (index) index.focus();
    });
    var form = document.getElementById("steer-form");
    var submit = document.getElementById("steer-submit");
    if (form && submit) {
      form.addEventListener("submit", function (event) {
        // Steering takes seconds: say so, and stop a second submit while it runs.
        window.setTimeout(function () { submit.disabled = true; submit.textContent = "Steering…"; }, 0);
        if (steerStream(form)) event.preventDefault();
      });
    }
  }

  // --- the steer form, streamed: tokens appear as they are generated ------------------------------
  // A completion is sent to /api/steer with stream: true and both columns grow event by event; the last event
  // carries the saved result's id and the page moves to it (/steer/{id}, with logprobs and the share link). Chat,
  // a browser without streams, or any error falls back to the plain form post, which renders the error.

  function steerBody(form) {
    var data = new FormData(form);
    var mode = data.get("mode") || "completion";
    if (mode !== "completion") return null;
    var sources = data.getAll("source"), indexes = data.getAll("index"), strengths = data.getAll("strength");
    var features = [];
    for (var i = 0; i < indexes.length; i++) {
      var index = String(indexes[i]).trim();
      if (!index) continue;
      if (!/^[0-9]+$/.test(index)) return null;
      var strength = String(strengths[i] || "").trim();
      if (strength === "" || !isFinite(Number(strength))) return null;  // the form post says what is wrong
      features.push({ modelId: form.getAttribute("data-model"), layer: String(sources[i]), index: Number(index),
        strength: Number(strength) });
    }
    if (!features.length) return null;
    var body = { modelId: form.getAttribute("data-model"), prompt: String(data.get("prompt") || ""), features: features,
      steer_method: String(data.get("steer_method") || "SIMPLE_ADDITIVE"), stream: true };
    var numbers = { temperature: 1, n_tokens: 1, seed: 1, strength_multiplier: 1, freq_penalty: 1, n_logprobs: 1 };
    for (var name in numbers) {
      var raw = String(data.get(name) || "").trim();
      if (raw === "") continue;
      var value = Number(raw);
      if (!isFinite(value)) return null;
      body[name] = value;
    }
    return body;
  }

  function steerColumns() {
    var pane = document.getElementById("steer-results");
    var prompt = document.getElementById("f-prompt").value;
    pane.textContent = "";
    var grid = document.createElement("div");
    grid.className = "side-by-side";
    grid.id = "steer-live";
    var outs = {};
    [["DEFAULT", "Default"], ["STEERED", "Steered"]].forEach(function (pair) {
      var col = document.createElement("div");
      col.className = "completion-col";
      col.id = "live-" + pair[0].toLowerCase();
      var h = document.createElement("h2");
      h.textContent = pair[1];
      var pre = document.createElement("pre");
      pre.className = "completion";
      var echo = document.createElement("span");
      echo.className = "prompt-echo";
      echo.textContent = prompt;
      var out = document.createElement("span");
      out.className = "output";
      pre.appendChild(echo);
      pre.appendChild(out);
      col.appendChild(h);
      col.appendChild(pre);
      grid.appendChild(col);
      outs[pair[0]] = out;
    });
    pane.appendChild(grid);
    return outs;
  }

  function steerStream(form) {
    if (!window.fetch || !window.TextDecoder || !window.ReadableStream) return false;
    var body = steerBody(form);
    if (!body) return false;
    var outs = null, buffer = "", done = false;
    var decoder = new TextDecoder();
    function fallback() { if (!done) { done = true; form.submit(); } }
    function handle(block) {
      var name = "message", data = [];
      block.split("\n").forEach(function (line) {
        if (line.indexOf("event: ") === 0) name = line.slice(7);
        else if (line.indexOf("data: ") === 0) data.push(line.slice(6));
      });
      if (!data.length) return;
      if (name === "error") { fallback(); return; }
      var doc = JSON.parse(data.join("\n"));
      if (!outs) outs = steerColumns();
      outs.DEFAULT.textContent = doc.DEFAULT || "";
      outs.STEERED.textContent = doc.STEERED || "";
      if (doc.id && doc.settings) { done = true; window.location.assign("/steer/" + encodeURIComponent(doc.id)); }
    }
    fetch("/api/steer", { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "text/event-stream" }, body: JSON.stringify(body) })
      .then(function (response) {
        if (!response.ok || !response.body) { fallback(); return null; }
        var reader = response.body.getReader();
        function pump() {
          return reader.read().then(function (chunk) {
            if (chunk.done) { if (!done) fallback(); return null; }
            buffer += decoder.decode(chunk.value, { stream: true });
            var parts = buffer.split("\n\n");
            buffer = parts.pop();
            parts.forEach(function (part) { if (!done) handle(part); });
            return done ? null : pump();
          });
        }
        return pump();
      })
      .catch(fallback);
    return true;
  }

  onReady(function () {
    testText();
    pickers();
    steerRows();
  });
})();
