// The source page's UMAP map: fetches /api/umap, draws one SVG circle per feature (coloured by cluster
// or log sparsity); hover shows index + explanation, click opens the feature, the search box highlights
// features whose explanation contains the text. No inline script (CSP script-src 'self').
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var SIZE = 600, PAD = 10;

  function clusterColour(c) {
    if (c === null || c === undefined || c < 0) return "#9aa3ad";  // HDBSCAN outliers
    return "hsl(" + ((c * 137.508) % 360).toFixed(1) + ", 65%, 48%)";
  }

  function sparsityColour(v, lo, hi) {
    if (v === null || v === undefined) return "#9aa3ad";
    var t = hi > lo ? (v - lo) / (hi - lo) : 0.5;
    return "hsl(" + (240 - 240 * t).toFixed(1) + ", 70%, 45%)";  // blue = rare, red = dense
  }

  function featureUrl(p) {
    return "/" + [p.modelId, p.layer, p.index].map(encodeURIComponent).join("/");
  }

  function draw(root, points) {
    var svg = root.querySelector("svg.umap-svg");
    var tip = root.querySelector(".umap-tip");
    var count = root.querySelector(".umap-count");
    var search = root.querySelector("input[type=search]");
    var colourBy = root.querySelector("select.umap-colour");
    var xs = points.map(function (p) { return p.umap_x; }), ys = points.map(function (p) { return p.umap_y; });
    var x0 = Math.min.apply(null, xs), x1 = Math.max.apply(null, xs);
    var y0 = Math.min.apply(null, ys), y1 = Math.max.apply(null, ys);
    var span = Math.max(x1 - x0, y1 - y0) || 1;
    var sp = points.map(function (p) { return p.umap_log_feature_sparsity; }).filter(function (v) { return v !== null; });
    var sLo = sp.length ? Math.min.apply(null, sp) : 0, sHi = sp.length ? Math.max.apply(null, sp) : 0;
    var r = points.length > 4000 ? 2 : points.length > 1000 ? 3 : 4.5;
    var circles = [];
    points.forEach(function (p) {
      var c = document.createElementNS(SVG, "circle");
      c.setAttribute("cx", (PAD + (p.umap_x - x0) / span * (SIZE - 2 * PAD)).toFixed(2));
      c.setAttribute("cy", (SIZE - PAD - (p.umap_y - y0) / span * (SIZE - 2 * PAD)).toFixed(2));
      c.setAttribute("r", r);
      c.setAttribute("data-index", p.index);
      c.setAttribute("tabindex", "-1");
      circles.push(c);
      svg.appendChild(c);
    });

    function recolour() {
      var bySparsity = colourBy && colourBy.value === "sparsity";
      circles.forEach(function (c, i) {
        var p = points[i];
        c.setAttribute("fill", bySparsity ? sparsityColour(p.umap_log_feature_sparsity, sLo, sHi) : clusterColour(p.umap_cluster));
      });
    }
    recolour();
    if (colourBy) colourBy.addEventListener("change", recolour);

    function pointAt(target) {
      var i = circles.indexOf(target);
      return i < 0 ? null : points[i];
    }
    svg.addEventListener("mouseover", function (e) {
      var p = pointAt(e.target);
      if (!p) { tip.hidden = true; return; }
      tip.textContent = "";
      var idx = document.createElement("span");
      idx.className = "idx";
      idx.textContent = "#" + p.index;
      var desc = document.createElement("span");
      desc.className = "desc";
      desc.textContent = p.description || "(no explanation)";
      tip.appendChild(idx);
      tip.appendChild(desc);
      tip.hidden = false;
      var box = root.querySelector(".umap-wrap").getBoundingClientRect(), cb = e.target.getBoundingClientRect();
      tip.style.left = Math.min(cb.left - box.left + 10, box.width - 200) + "px";
      tip.style.top = (cb.top - box.top + 10) + "px";
    });
    svg.addEventListener("mouseleave", function () { tip.hidden = true; });
    svg.addEventListener("click", function (e) {
      var p = pointAt(e.target);
      if (p) window.location.href = featureUrl(p);
    });

    function highlight() {
      var q = (search.value || "").trim().toLowerCase();
      var n = 0;
      circles.forEach(function (c, i) {
        var hit = q !== "" && (points[i].description || "").toLowerCase().indexOf(q) >= 0;
        c.classList.toggle("match", hit);
        if (hit) { n += 1; svg.appendChild(c); }  // matches drawn on top
      });
      svg.classList.toggle("searching", q !== "");
      count.textContent = q === "" ? points.length + " features" : n + " of " + points.length + " match";
    }
    if (search) search.addEventListener("input", highlight);
    highlight();
  }

  function init() {
    var root = document.getElementById("umap");
    if (!root) return;
    var status = root.querySelector(".umap-count");
    var model = root.getAttribute("data-model"), layer = root.getAttribute("data-layer");
    fetch("/api/umap", {
      method: "POST", headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify({ modelId: model, layers: [layer] }), credentials: "same-origin"
    }).then(function (res) {
      if (!res.ok) throw new Error("HTTP " + res.status);
      return res.json();
    }).then(function (doc) {
      var points = doc[layer] || [];
      if (!points.length) { status.textContent = "No features have map coordinates."; return; }
      draw(root, points);
      root.setAttribute("data-ready", "true");
    }).catch(function (err) {
      status.textContent = "Could not load the map: " + err.message;
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
