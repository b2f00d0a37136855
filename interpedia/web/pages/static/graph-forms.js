// The graph list page's forms: upload a graph JSON (the API's two steps: book an upload, PUT the gzip'd file,
// save it) and generate a new graph with the attribution engine (/graph/generate, the page twin of
// /api/graph/generate), each showing its progress and the server's error (an invalid graph's names its first
// bad field).
(function () {
  "use strict";

  function $(sel) { return document.querySelector(sel); }

  function answer(res) {
    return res.json().catch(function () { return {}; }).then(function (doc) {
      if (!res.ok) {
        var err = new Error(doc.message || doc.error || ("HTTP " + res.status));
        err.status = res.status;
        throw err;
      }
      return doc;
    });
  }

  function postJson(url, body) {
    return fetch(url, {
      method: "POST", credentials: "same-origin", body: JSON.stringify(body),
      headers: { "Content-Type": "application/json", "Accept": "application/json" }
    }).then(answer);
  }

  function gzip(file) {
    if (typeof CompressionStream === "undefined") return file.arrayBuffer();
    return new Response(file.stream().pipeThrough(new CompressionStream("gzip"))).arrayBuffer();
  }

  function say(el, text, kind) {
    el.textContent = text;
    el.className = "form-message" + (kind ? " " + kind : "");
  }

  function initUpload(form) {
    var msg = $("#upload-message"), input = $("#upload-file"), csrf = form.getAttribute("data-csrf");
    var max = parseInt(form.getAttribute("data-max-bytes"), 10) || Infinity;
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var file = input.files && input.files[0];
      if (!file) { say(msg, "Choose a graph JSON file first.", "error"); return; }
      if (!/\.json$/i.test(file.name)) { say(msg, "The file must be a graph JSON (a name ending in .json).", "error"); return; }
      var button = form.querySelector("button[type=submit]");
      button.disabled = true;
      say(msg, "Compressing " + file.name + "…");
      var body;
      gzip(file).then(function (data) {
        body = data;
        if (body.byteLength > max) throw new Error("the file is " + body.byteLength + " bytes gzip'd, over this server's limit of " + max);
        say(msg, "Uploading " + Math.round(body.byteLength / 1024) + " KB…");
        return postJson("/graph/signed-put", { filename: file.name, contentLength: body.byteLength, csrf_token: csrf });
      }).then(function (booked) {
        return fetch(booked.url, { method: "PUT", body: body, credentials: "same-origin", headers: { "Content-Type": "application/json" } })
          .then(answer).then(function () { return booked; });
      }).then(function (booked) {
        say(msg, "Checking and saving the graph…");
        return postJson("/graph/save-to-db", { putRequestId: booked.putRequestId, csrf_token: csrf });
      }).then(function (saved) {
        say(msg, "Saved: opening it…", "ok");
        window.location.href = saved.path || saved.url;
      }).catch(function (err) {
        say(msg, "Upload failed: " + err.message, "error");
        button.disabled = false;
      });
    });
  }

  function slugify(prompt) {
    var base = prompt.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 60) || "graph";
    return base + "-" + Date.now().toString(36);
  }

  function initGenerate(form) {
    var msg = $("#generate-message"), progress = $("#generate-progress"), model = form.getAttribute("data-model");
    var csrf = form.getAttribute("data-csrf");
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var data = new FormData(form);
      var prompt = String(data.get("prompt") || "");
      if (!prompt.trim()) { say(msg, "Write a prompt first.", "error"); return; }
      var slug = String(data.get("slug") || "").trim() || slugify(prompt);
      var body = { modelId: model, prompt: prompt, slug: slug, csrf_token: csrf };
      ["maxNLogits", "maxFeatureNodes"].forEach(function (k) { body[k] = parseInt(data.get(k), 10); });
      ["desiredLogitProb", "nodeThreshold", "edgeThreshold"].forEach(function (k) { body[k] = parseFloat(data.get(k)); });
      if (data.get("sourceSetName")) body.sourceSetName = String(data.get("sourceSetName"));
      var button = form.querySelector("button[type=submit]");
      button.disabled = true;
      progress.hidden = false;
      var started = Date.now();
      say(msg, "Generating the graph of \u201c" + prompt.slice(0, 80) + "\u201d…");
      var tick = setInterval(function () {
        say(msg, "Generating the graph… " + Math.round((Date.now() - started) / 1000) + " s (attribution runs one backward pass per feature; this can take a minute)");
      }, 500);
      postJson("/graph/generate", body).then(function (doc) {
        clearInterval(tick);
        say(msg, "Done: " + doc.numNodes + " nodes, " + doc.numLinks + " links; opening it…", "ok");
        window.location.href = "/" + encodeURIComponent(model) + "/graph?slug=" + encodeURIComponent(doc.slug || slug);
      }).catch(function (err) {
        clearInterval(tick);
        progress.hidden = true;
        button.disabled = false;
        var text = err.status === 503 ? "another graph is being computed on this server; try again in a minute ("
          + err.message + ")" : err.message;
        say(msg, "Generation failed: " + text, "error");
      });
    });
  }

  function init() {
    var upload = $("#upload-form");
    if (upload) initUpload(upload);
    var generate = $("#generate-form");
    if (generate) initGenerate(generate);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
