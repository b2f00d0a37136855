// The source page's UMAP map: fetches /api/umap and draws every feature as a point on a canvas (d3-zoom for
// pan and zoom, a d3 quadtree to find the point under the mouse), so a 100,000-feature source stays
// interactive. Coloured by cluster or log sparsity; hover shows index + explanation, click opens the
// feature, the search box highlights features whose explanation contains the text. No inline script
// (CSP script-src 'self'); text goes into the tooltip with textContent only.
(function () {
  "use strict";
  var PAD = 10;

  function clusterColour(c) {
    if (c === null || c === undefined || c < 0) return "#9aa3ad";  // HDBSCAN outliers
    return "hsl(" + ((c * 137.508) % 360).toFixed(1) + ", 65%, 48%)";
  }

  var SPARSITY_LEVELS = 32;
  function sparsityColour(v, lo, hi) {
    if (v === null || v === undefined) return "#9aa3ad";
    var t = hi > lo ? (v - lo) / (hi - lo) : 0.5;
    t = Math.round(t * (SPARSITY_LEVELS - 1)) / (SPARSITY_LEVELS - 1);  // few colours: one fill per colour
    return "hsl(" + (240 - 240 * t).toFixed(1) + ", 70%, 45%)";  // blue = rare, red = dense
  }

  function featureUrl(p) {
    return "/" + [p.modelId, p.layer, p.index].map(encodeURIComponent).join("/");
  }

  function sizeCanvas(canvas, size) {
    var dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(size * dpr);
    canvas.height = Math.round(size * dpr);
    canvas.style.width = size + "px";
    canvas.style.height = size + "px";
    var ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    return ctx;
  }

  function UmapMap(root, points) {
    var d3 = window.d3;
    this.root = root;
    this.points = points;
    this.canvas = root.querySelector("canvas.umap-canvas");
    this.overlay = root.querySelector("canvas.umap-hover");
    this.tip = root.querySelector(".umap-tip");
    this.count = root.querySelector(".umap-count");
    this.search = root.querySelector("input[type=search]");
    this.colourBy = root.querySelector("select.umap-colour");
    this.size = Math.max(240, Math.min(900, root.querySelector(".umap-wrap").clientWidth || 600));
    var n = points.length, x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    var sLo = Infinity, sHi = -Infinity, i, p;
    for (i = 0; i < n; i++) {
      p = points[i];
      if (p.umap_x < x0) x0 = p.umap_x;
      if (p.umap_x > x1) x1 = p.umap_x;
      if (p.umap_y < y0) y0 = p.umap_y;
      if (p.umap_y > y1) y1 = p.umap_y;
      var s = p.umap_log_feature_sparsity;
      if (s !== null && s !== undefined) { if (s < sLo) sLo = s; if (s > sHi) sHi = s; }
    }
    this.sLo = sLo; this.sHi = sHi;
    var span = Math.max(x1 - x0, y1 - y0) || 1, inner = this.size - 2 * PAD;
    this.x = new Float32Array(n);
    this.y = new Float32Array(n);
    for (i = 0; i < n; i++) {
      this.x[i] = PAD + (points[i].umap_x - x0) / span * inner;
      this.y[i] = this.size - PAD - (points[i].umap_y - y0) / span * inner;
    }
    this.r = n > 20000 ? 1.2 : n > 4000 ? 2 : n > 1000 ? 3 : 4.5;
    var xs = this.x, ys = this.y;
    this.tree = d3.quadtree().x(function (k) { return xs[k]; }).y(function (k) { return ys[k]; }).addAll(d3.range(n));
    this.matches = new Uint8Array(n);
    this.nMatches = 0;
    this.query = "";
    this.transform = d3.zoomIdentity;
    this.hovered = -1;
    this.ctx = sizeCanvas(this.canvas, this.size);
    sizeCanvas(this.overlay, this.size);
    this.recolour();
    this.bind();
  }

  // Point indices grouped by colour, so each colour is one fill.
  UmapMap.prototype.recolour = function () {
    var bySparsity = this.colourBy && this.colourBy.value === "sparsity", groups = new Map(), self = this;
    this.points.forEach(function (p, k) {
      var c = bySparsity ? sparsityColour(p.umap_log_feature_sparsity, self.sLo, self.sHi) : clusterColour(p.umap_cluster);
      var list = groups.get(c);
      if (!list) { list = []; groups.set(c, list); }
      list.push(k);
    });
    this.groups = groups;
  };

  UmapMap.prototype.draw = function () {
    var ctx = this.ctx, t = this.transform, xs = this.x, ys = this.y, size = this.size;
    var r = this.r * Math.sqrt(t.k), d = 2 * r, round = this.points.length <= 5000;
    var searching = this.query !== "", matches = this.matches;
    ctx.clearRect(0, 0, size, size);
    var pass = function (wanted, alpha) {
      ctx.globalAlpha = alpha;
      this.groups.forEach(function (list, colour) {
        ctx.fillStyle = colour;
        ctx.beginPath();
        for (var j = 0; j < list.length; j++) {
          var k = list[j];
          if (searching && matches[k] !== wanted) continue;
          var px = t.applyX(xs[k]), py = t.applyY(ys[k]);
          if (px < -d || py < -d || px > size + d || py > size + d) continue;
          if (round) { ctx.moveTo(px + r, py); ctx.arc(px, py, r, 0, 2 * Math.PI); } else ctx.rect(px - r, py - r, d, d);
        }
        ctx.fill();
        if (searching && wanted) { ctx.lineWidth = 1; ctx.strokeStyle = "#111"; ctx.stroke(); }
      });
    }.bind(this);
    if (searching) {
      pass(0, 0.12);
      pass(1, 1);
    } else {
      pass(0, 0.85);
    }
    ctx.globalAlpha = 1;
  };

  UmapMap.prototype.highlight = function () {
    var q = (this.search && this.search.value || "").trim().toLowerCase(), n = 0;
    this.query = q;
    for (var k = 0; k < this.points.length; k++) {
      var hit = q !== "" && (this.points[k].description || "").toLowerCase().indexOf(q) >= 0;
      this.matches[k] = hit ? 1 : 0;
      n += hit ? 1 : 0;
    }
    this.nMatches = n;
    this.count.textContent = q === "" ? this.points.length + " features" : n + " of " + this.points.length + " match";
    this.draw();
  };

  // The point under the mouse (within a few pixels), or -1.
  UmapMap.prototype.pointAt = function (mx, my) {
    var t = this.transform, radius = Math.max(5, 2 * this.r * Math.sqrt(t.k)) / t.k;
    var found = this.tree.find(t.invertX(mx), t.invertY(my), radius);
    return found === undefined ? -1 : found;
  };

  UmapMap.prototype.hover = function (k) {
    if (k === this.hovered) return;
    this.hovered = k;
    var ctx = this.overlay.getContext("2d"), tip = this.tip, size = this.size;
    ctx.clearRect(0, 0, size, size);
    if (k < 0) { tip.hidden = true; this.canvas.style.cursor = ""; return; }
    var t = this.transform, px = t.applyX(this.x[k]), py = t.applyY(this.y[k]);
    ctx.beginPath();
    ctx.arc(px, py, Math.max(4, this.r * Math.sqrt(t.k) + 2), 0, 2 * Math.PI);
    ctx.lineWidth = 2;
    ctx.strokeStyle = "#111";
    ctx.stroke();
    var p = this.points[k];
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
    tip.style.left = Math.min(px + 10, size - 200) + "px";
    tip.style.top = (py + 10) + "px";
    this.canvas.style.cursor = "pointer";
  };

  UmapMap.prototype.bind = function () {
    var self = this, d3 = window.d3, pending = false;
    var redraw = function () {
      if (pending) return;
      pending = true;
      requestAnimationFrame(function () { pending = false; self.draw(); self.hover(-1); });
    };
    d3.select(this.canvas).call(d3.zoom().scaleExtent([1, 64]).on("zoom", function (e) {
      self.transform = e.transform;
      redraw();
    }));
    this.canvas.addEventListener("mousemove", function (e) {
      var box = self.canvas.getBoundingClientRect();
      self.hover(self.pointAt(e.clientX - box.left, e.clientY - box.top));
    });
    this.canvas.addEventListener("mouseleave", function () { self.hover(-1); });
    this.canvas.addEventListener("click", function (e) {
      var box = self.canvas.getBoundingClientRect(), k = self.pointAt(e.clientX - box.left, e.clientY - box.top);
      if (k >= 0) window.location.href = featureUrl(self.points[k]);
    });
    if (this.colourBy) this.colourBy.addEventListener("change", function () { self.recolour(); self.draw(); });
    if (this.search) this.search.addEventListener("input", function () { self.highlight(); });
  };

  // For the browser tests and the console: where a feature's point is on the canvas, which points match.
  UmapMap.prototype.api = function () {
    var self = this;
    return {
      count: function () { return self.points.length; },
      position: function (index) {
        var k = self.points.findIndex(function (p) { return String(p.index) === String(index); });
        return k < 0 ? null : { x: self.transform.applyX(self.x[k]), y: self.transform.applyY(self.y[k]) };
      },
      matches: function () {
        var out = [];
        self.matches.forEach(function (m, k) { if (m) out.push(self.points[k].index); });
        return out;
      }
    };
  };

  function init() {
    var root = document.getElementById("umap");
    if (!root) return;
    var status = root.querySelector(".umap-count");
    if (!window.d3) { status.textContent = "The page's d3 library is missing: run make install."; return; }
    var model = root.getAttribute("data-model"), layer = root.getAttribute("data-layer");
    performance.mark("umap:fetch");
    fetch("/api/umap", {
      method: "POST", headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify({ modelId: model, layers: [layer] }), credentials: "same-origin"
    }).then(function (res) {
      if (!res.ok) throw new Error("HTTP " + res.status);
      return res.json();
    }).then(function (doc) {
      performance.mark("umap:json");
      var points = doc[layer] || [];
      if (!points.length) { status.textContent = "No features have map coordinates."; return; }
      var map = new UmapMap(root, points);
      map.highlight();
      performance.mark("umap:drawn");
      window.interpediaUmap = map.api();
      requestAnimationFrame(function () {
        performance.mark("umap:painted");
        root.setAttribute("data-ready", "true");
      });
    }).catch(function (err) {
      status.textContent = "Could not load the map: " + err.message;
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
