// The source page's UMAP map: fetches /api/umap and draws every feature as a point on a canvas (d3-zoom for
// pan and zoom, a d3 quadtree to find the point under the mouse), so a 100,000-feature source stays
// interactive. Coloured by cluster or log sparsity; hover shows index + explanation, click opens the
// feature, the search box highlights features whose explanation contains the text. No inline script
// (CSP script-src 'self'); text goes into the tooltip with textContent only.
(function () {
  "use strict";
  var PAD = 10;
  var PIXEL_POINTS = 5000;  // above this many points the map is drawn as pixels

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
    this.tree = null;  // built on the first hover: the first draw does not need it
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

  var BACKGROUND = [251, 252, 253];  // the canvas's CSS background, for faded points drawn as pixels

  function packed(rgb, fade) {  // RGBA as one little-endian Uint32 (ImageData's byte order)
    var c = [rgb.r, rgb.g, rgb.b].map(function (v, i) { return Math.round(fade * v + (1 - fade) * BACKGROUND[i]); });
    return ((255 << 24) | (c[2] << 16) | (c[1] << 8) | c[0]) >>> 0;
  }

  // Each point's colour as an index into a small palette (one fill per colour; pixels by lookup).
  UmapMap.prototype.recolour = function () {
    var bySparsity = this.colourBy && this.colourBy.value === "sparsity", lookup = new Map(), palette = [];
    var idx = new Uint16Array(this.points.length), self = this;
    this.points.forEach(function (p, k) {
      var key = bySparsity ? p.umap_log_feature_sparsity : p.umap_cluster;
      var at = lookup.get(key);
      if (at === undefined) {
        var css = bySparsity ? sparsityColour(key, self.sLo, self.sHi) : clusterColour(key);
        var rgb = window.d3.rgb(css);
        at = palette.findIndex(function (e) { return e.css === css; });
        if (at < 0) { at = palette.length; palette.push({ css: css, solid: packed(rgb, 0.85), faded: packed(rgb, 0.12) }); }
        lookup.set(key, at);
      }
      idx[k] = at;
    });
    this.palette = palette;
    this.colourIdx = idx;
  };

  UmapMap.prototype.draw = function () {
    if (this.points.length > PIXEL_POINTS) this.drawPixels();
    else this.drawPaths();
  };

  // Up to a few thousand points: anti-aliased circles, one path per colour.
  UmapMap.prototype.drawPaths = function () {
    var ctx = this.ctx, t = this.transform, xs = this.x, ys = this.y, size = this.size, idx = this.colourIdx;
    var r = this.r * Math.sqrt(t.k), searching = this.query !== "", matches = this.matches;
    ctx.clearRect(0, 0, size, size);
    var pass = function (wanted, alpha) {
      ctx.globalAlpha = alpha;
      this.palette.forEach(function (colour, c) {
        ctx.fillStyle = colour.css;
        ctx.beginPath();
        for (var k = 0; k < xs.length; k++) {
          if (idx[k] !== c || (searching && matches[k] !== wanted)) continue;
          var px = t.applyX(xs[k]), py = t.applyY(ys[k]);
          if (px < -r || py < -r || px > size + r || py > size + r) continue;
          ctx.moveTo(px + r, py);
          ctx.arc(px, py, r, 0, 2 * Math.PI);
        }
        ctx.fill();
        if (searching && wanted) { ctx.lineWidth = 1; ctx.strokeStyle = "#111"; ctx.stroke(); }
      });
    }.bind(this);
    if (searching) { pass(0, 0.12); pass(1, 1); } else pass(0, 0.85);
    ctx.globalAlpha = 1;
  };

  // Many points: small squares written straight into the canvas's pixels (a 100,000-point map in a few
  // milliseconds, where as many path operations take hundreds); search matches then get a ring on top.
  UmapMap.prototype.drawPixels = function () {
    var dpr = window.devicePixelRatio || 1, w = this.canvas.width, h = this.canvas.height;
    var img = this.ctx.createImageData(w, h), buf = new Uint32Array(img.data.buffer);
    var t = this.transform, xs = this.x, ys = this.y, idx = this.colourIdx, pal = this.palette;
    var half = Math.max(1, Math.round(this.r * Math.sqrt(t.k) * dpr)), searching = this.query !== "";
    var matches = this.matches, order = searching ? [0, 1] : [0];
    order.forEach(function (wanted) {
      for (var k = 0; k < xs.length; k++) {
        if (searching && matches[k] !== wanted) continue;
        var colour = searching && !wanted ? pal[idx[k]].faded : pal[idx[k]].solid;
        var cx = Math.round(t.applyX(xs[k]) * dpr), cy = Math.round(t.applyY(ys[k]) * dpr);
        var x0 = Math.max(0, cx - half), x1 = Math.min(w, cx + half), y0 = Math.max(0, cy - half), y1 = Math.min(h, cy + half);
        for (var y = y0; y < y1; y++) buf.fill(colour, y * w + x0, y * w + x1);
      }
    });
    this.ctx.putImageData(img, 0, 0);
    if (searching && this.nMatches <= 20000) {
      var ctx = this.ctx, r = half / dpr + 1;
      ctx.beginPath();
      for (var k = 0; k < xs.length; k++) {
        if (!matches[k]) continue;
        var px = t.applyX(xs[k]), py = t.applyY(ys[k]);
        ctx.moveTo(px + r, py);
        ctx.arc(px, py, r, 0, 2 * Math.PI);
      }
      ctx.lineWidth = 1;
      ctx.strokeStyle = "#111";
      ctx.stroke();
    }
  };

  UmapMap.prototype.highlight = function () {
    var q = (this.search && this.search.value || "").trim().toLowerCase(), n = 0;
    this.query = q;
    if (q !== "" && !this.lower) {
      this.lower = this.points.map(function (p) { return (p.description || "").toLowerCase(); });
    }
    for (var k = 0; k < this.points.length; k++) {
      var hit = q !== "" && this.lower[k].indexOf(q) >= 0;
      this.matches[k] = hit ? 1 : 0;
      n += hit ? 1 : 0;
    }
    this.nMatches = n;
    var total = this.points.length.toLocaleString("en");
    this.count.textContent = q === "" ? total + " features" : n.toLocaleString("en") + " of " + total + " match";
    this.draw();
  };

  // The point under the mouse (within a few pixels), or -1.
  // The quadtree behind hover and click; built after the first paint (or on the first hover, if sooner).
  UmapMap.prototype.index = function () {
    if (this.tree) return;
    var xs = this.x, ys = this.y;
    this.tree = window.d3.quadtree().x(function (k) { return xs[k]; }).y(function (k) { return ys[k]; })
      .addAll(window.d3.range(this.points.length));
  };

  UmapMap.prototype.pointAt = function (mx, my) {
    this.index();
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
      requestAnimationFrame(function () {  // the frame after the drawn one: the points are painted
        setTimeout(function () {
          performance.mark("umap:painted");
          map.index();
          root.setAttribute("data-ready", "true");
        }, 0);
      });
    }).catch(function (err) {
      status.textContent = "Could not load the map: " + err.message;
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
