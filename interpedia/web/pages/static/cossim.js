// Feature page, "Top features by cosine similarity": fills in the neighbours' explanations, and finds the
// nearest features of another source of the same model through /api/cossim. No inline script (CSP).
(function () {
  "use strict";

  function post(url, body) {
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json" }, body: JSON.stringify(body)
    }).then(function (res) {
      return res.json().then(function (doc) {
        if (!res.ok) throw new Error(doc && doc.message ? doc.message : "HTTP " + res.status);
        return doc;
      });
    });
  }

  function featureUrl(model, layer, index) {
    return "/" + [model, layer, index].map(encodeURIComponent).join("/");
  }

  // Writes each row's best explanation into its .desc cell (as text, never HTML).
  function describe(model, rows) {
    if (!rows.length) return Promise.resolve();
    var refs = rows.map(function (row) {
      return { modelId: model, layer: row.getAttribute("data-layer"), index: row.getAttribute("data-index"), maxActsToReturn: 0 };
    });
    return post("/api/features", refs).then(function (features) {
      var best = {};
      features.forEach(function (feat) {
        var ex = feat.explanations && feat.explanations[0];
        best[feat.layer + "/" + feat.index] = ex ? ex.description : "";
      });
      rows.forEach(function (row) {
        var text = best[row.getAttribute("data-layer") + "/" + row.getAttribute("data-index")];
        var cell = row.querySelector(".desc");
        cell.textContent = text || "–";
        if (text) cell.classList.remove("muted");
      });
    }).catch(function () { /* the links and values are there without the labels */ });
  }

  function init() {
    var pane = document.getElementById("similar");
    if (!pane) return;
    var model = pane.getAttribute("data-model"), layer = pane.getAttribute("data-layer");
    var index = pane.getAttribute("data-index");
    describe(model, Array.prototype.slice.call(pane.querySelectorAll("#similar-same tbody tr")));

    var other = pane.querySelector(".cossim-other");
    var select = document.getElementById("cossim-target");
    var status = pane.querySelector(".cossim-status");
    var table = document.getElementById("similar-other");
    fetch("/" + encodeURIComponent(model) + ".json", { headers: { "Accept": "application/json" }, credentials: "same-origin" })
      .then(function (res) { return res.ok ? res.json() : null; })
      .then(function (doc) {
        if (!doc || !doc.model) return;
        var n = 0;
        (doc.model.sourceSets || []).forEach(function (set) {
          (set.sources || []).forEach(function (src) {
            if (src.id === layer || !src.featureCount) return;
            var opt = document.createElement("option");
            opt.value = src.id;
            opt.textContent = src.id;
            select.appendChild(opt);
            n += 1;
          });
        });
        if (n) other.hidden = false;
      }).catch(function () { /* no other sources to offer */ });

    select.addEventListener("change", function () {
      var target = select.value;
      var body = table.tBodies[0];
      body.textContent = "";
      table.hidden = true;
      if (!target) { status.textContent = ""; return; }
      status.textContent = "Comparing decoder directions…";
      post("/api/cossim", { modelId: model, source: layer, index: index, targetModelId: model,
                            targetSourceId: target, numResults: 10 })
        .then(function (doc) {
          var rows = doc.topk_decoder_cossim_features.map(function (hit) {
            var tr = document.createElement("tr");
            tr.setAttribute("data-layer", hit.feature.source);
            tr.setAttribute("data-index", String(hit.feature.index));
            var a = document.createElement("a");
            a.href = featureUrl(model, hit.feature.source, hit.feature.index);
            a.textContent = hit.feature.source + "/" + hit.feature.index;
            var c1 = document.createElement("td"), c2 = document.createElement("td"), c3 = document.createElement("td");
            c1.appendChild(a);
            c2.className = "desc muted";
            c3.className = "num";
            c3.textContent = hit.cosine_similarity.toFixed(3);
            tr.appendChild(c1); tr.appendChild(c2); tr.appendChild(c3);
            body.appendChild(tr);
            return tr;
          });
          table.hidden = false;
          status.textContent = "";
          return describe(model, rows);
        })
        .catch(function (err) { status.textContent = err.message; });
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
