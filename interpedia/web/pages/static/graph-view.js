// The link graph: links on a canvas (thousands of them draw in milliseconds), nodes as SVG symbols on top
// (hover and click targets, one per node), the prompt's tokens along the bottom, layers up the side. The
// hovered or clicked node's links are redrawn strongly on a second canvas. Text is always set with
// textContent (labels, tokens and clerps come from uploaded graphs).
(function (root) {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var POS = "#2563eb", NEG = "#dc2626";
  var MARGIN = { left: 46, right: 14, top: 16, bottom: 86 };
  var FILL = { feature: "#e8a33d", error: "#9aa3ad", embedding: "#6b7fd7", logit: "#2fa37a" };
  var BUCKETS = 8;

  function el(name, attrs, parent) {
    var e = document.createElementNS(SVG, name);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(e);
    return e;
  }

  function radius(n, g, sizeBy) {
    if (n.kind === "embedding") return 5;
    if (n.kind === "error") return 3.5;
    if (n.kind === "logit") {
      var p = typeof n.raw.token_prob === "number" ? n.raw.token_prob : 0.1;
      return 3.5 + 6 * Math.sqrt(Math.max(0, Math.min(1, p)));
    }
    if (sizeBy === "influence" && n.influence !== null) return 2.5 + 5.5 * (1 - Math.max(0, Math.min(1, n.influence)));
    if (n.activation === null) return 4;
    return 2.5 + 5.5 * Math.sqrt(Math.abs(n.activation) / g.maxAct);
  }

  var SYMBOL = { feature: "symbolCircle", error: "symbolSquare", embedding: "symbolTriangle", logit: "symbolDiamond" };
  var pathCache = new Map();
  function symbolPath(kind, r) {
    var key = kind + (Math.round(r * 4) / 4);
    if (!pathCache.has(key)) pathCache.set(key, root.d3.symbol(root.d3[SYMBOL[kind]], Math.PI * r * r)());
    return pathCache.get(key);
  }

  function curve(ctx, x1, y1, x2, y2) {
    var my = (y1 + y2) / 2;
    ctx.moveTo(x1, y1);
    ctx.bezierCurveTo(x1, my, x2, my, x2, y2);
  }

  function setupCanvas(canvas, w, h) {
    var dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
    canvas.style.width = w + "px";
    canvas.style.height = h + "px";
    var ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    return ctx;
  }

  function LinkGraph(container, handlers) {
    this.container = container;
    this.handlers = handlers;
    container.textContent = "";
    this.base = document.createElement("canvas");
    this.base.className = "links";
    this.overlay = document.createElement("canvas");
    this.overlay.className = "links-hl";
    this.svg = el("svg", { "class": "nodes", "role": "img", "aria-label": "attribution graph" });
    this.tip = document.createElement("div");
    this.tip.className = "graph-tip";
    this.tip.hidden = true;
    [this.base, this.overlay, this.svg, this.tip].forEach(function (x) { container.appendChild(x); });
    this.nodeEls = new Map();
    this.highlighted = null;
    var self = this;
    this.svg.addEventListener("mouseover", function (e) {
      var n = self.nodeAt(e.target);
      if (n) self.hover(n);
    });
    this.svg.addEventListener("mouseout", function (e) {
      var n = self.nodeAt(e.target);
      if (n && !(e.relatedTarget && self.nodeAt(e.relatedTarget) === n)) self.hover(null);
    });
    this.svg.addEventListener("click", function (e) {
      var n = self.nodeAt(e.target);
      handlers.click(n, e);
    });
  }

  LinkGraph.prototype.nodeAt = function (target) {
    var id = target && target.getAttribute && target.getAttribute("data-node-id");
    return id !== null && id !== undefined && this.g ? this.g.byId.get(id) || null : null;
  };

  // Draw the graph: g (InterpediaGraph.prepare), keep (visible nodes), view {state, info, sizeBy, labelOf}.
  LinkGraph.prototype.draw = function (g, keep, view) {
    var width0 = Math.max(480, this.container.clientWidth || 900);
    if (this.g === g && this.width === width0 && this.view && this.view.sizeBy === view.sizeBy && sameMask(this.keep, keep)) {
      this.view = view;  // the same nodes in the same places: only pins, groups and the selection changed
      this.restyle();
      return;
    }
    this.g = g;
    this.keep = keep;
    this.view = view;
    var width = width0;
    var height = Math.max(320, Math.min(1100, 80 + g.nRows * 38)) + MARGIN.bottom;
    var box = { x: MARGIN.left, y: MARGIN.top, width: width - MARGIN.left - MARGIN.right,
                height: height - MARGIN.top - MARGIN.bottom };
    var pos = root.InterpediaGraph.layout(g, keep, box);
    performance.mark("graph:layout");
    this.pos = pos;
    this.width = width;
    this.height = height;
    this.container.style.height = height + "px";
    this.drawLinks(setupCanvas(this.base, width, height));
    performance.mark("graph:links");
    setupCanvas(this.overlay, width, height);
    this.drawNodes();
    performance.mark("graph:nodes");
    this.highlighted = null;
    this.highlight(view.state.clickedId ? g.byId.get(view.state.clickedId) : null);
  };

  function sameMask(a, b) {
    if (!a || a.length !== b.length) return false;
    for (var i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
  }

  // Classes of the drawn nodes from the state (pinned, grouped, clicked), and the clicked node's links.
  LinkGraph.prototype.restyle = function () {
    var state = this.view.state, pinned = new Set(state.pinnedIds), grouped = new Set();
    state.supernodes.forEach(function (sn) { sn.slice(1).forEach(function (id) { grouped.add(id); }); });
    this.nodeEls.forEach(function (el, id) {
      el.classList.toggle("pinned", pinned.has(id));
      el.classList.toggle("grouped", grouped.has(id));
      el.classList.toggle("clicked", id === state.clickedId);
    });
    this.highlighted = null;
    this.highlight(state.clickedId ? this.g.byId.get(state.clickedId) : null);
  };

  LinkGraph.prototype.drawLinks = function (ctx) {
    var g = this.g, keep = this.keep, x = this.pos.x, y = this.pos.y;
    var paths = [];
    for (var b = 0; b < 2 * BUCKETS; b++) paths.push([]);
    for (var k = 0; k < g.weight.length; k++) {
      var s = g.src[k], t = g.tgt[k];
      if (!keep[s] || !keep[t]) continue;
      var w = g.weight[k];
      var bucket = Math.min(BUCKETS - 1, Math.floor(Math.sqrt(Math.abs(w) / g.maxAbs) * BUCKETS));
      paths[(w < 0 ? BUCKETS : 0) + bucket].push(k);
    }
    // Straight lines of width 1, strength by opacity: the canvas rasterises thousands of these in a few
    // tens of ms, where curves or varying widths cost several times as much. Only the strongest bucket
    // (few links) is drawn wider; the hovered node's links are drawn as curves on the overlay.
    for (var step = 0; step < 2 * BUCKETS; step++) {
      b = (step % 2) * BUCKETS + (step >> 1);  // weakest first, both signs at each strength, strongest on top
      if (!paths[b].length) continue;
      var level = ((b % BUCKETS) + 0.5) / BUCKETS;
      ctx.strokeStyle = b < BUCKETS ? POS : NEG;
      ctx.globalAlpha = 0.05 + 0.55 * level;
      ctx.lineWidth = b % BUCKETS === BUCKETS - 1 ? 2 : 1;
      ctx.beginPath();
      paths[b].forEach(function (k) {
        ctx.moveTo(x[g.src[k]], y[g.src[k]]);
        ctx.lineTo(x[g.tgt[k]], y[g.tgt[k]]);
      });
      ctx.stroke();
    }
    ctx.globalAlpha = 1;
  };

  LinkGraph.prototype.drawNodes = function () {
    var g = this.g, keep = this.keep, pos = this.pos, view = this.view, svg = this.svg;
    svg.textContent = "";
    svg.setAttribute("width", this.width);
    svg.setAttribute("height", this.height);
    svg.setAttribute("viewBox", "0 0 " + this.width + " " + this.height);
    var axis = el("g", { "class": "axis" }, svg);
    for (var r = 0; r < g.nRows; r++) {
      var ry = pos.box.y + pos.box.height - r * pos.rowH;
      el("line", { x1: pos.box.x - 6, x2: pos.box.x + pos.box.width, y1: ry, y2: ry, "class": "row-line" }, axis);
      var name = r === 0 ? "Emb" : r === g.nRows - 1 ? "Logit" : "L" + g.layers[r - 1];
      var lt = el("text", { x: 4, y: ry + 4, "class": "row-label" }, axis);
      lt.textContent = name;
    }
    var baseY = pos.box.y + pos.box.height + 14;
    for (var c = 0; c < g.nCtx; c++) {
      var cx = pos.box.x + (pos.colX[c] + pos.colX[c + 1]) / 2;
      var tok = root.InterpediaGraph.tokenAt(g, c);
      var t = el("text", { x: cx, y: baseY, "class": "tok", "data-ctx": c,
                           transform: "rotate(-40 " + cx.toFixed(1) + " " + baseY + ")" }, axis);
      t.textContent = tok.length > 16 ? tok.slice(0, 15) + "\u2026" : tok;
      var full = el("title", {}, t);
      full.textContent = tok;
    }
    var pinned = new Set(view.state.pinnedIds), grouped = new Set();
    view.state.supernodes.forEach(function (sn) { sn.slice(1).forEach(function (id) { grouped.add(id); }); });
    var layer = el("g", { "class": "node-layer" }, svg);
    var nodeEls = new Map();
    var sizeBy = view.sizeBy;
    g.nodes.forEach(function (n) {
      if (!keep[n.i]) return;
      var cls = "node " + n.kind + (pinned.has(n.id) ? " pinned" : "") + (grouped.has(n.id) ? " grouped" : "");
      var p = el("path", { d: symbolPath(n.kind, radius(n, g, sizeBy)), "class": cls, "data-node-id": n.id,
                           fill: FILL[n.kind], transform: "translate(" + pos.x[n.i].toFixed(1) + "," + pos.y[n.i].toFixed(1) + ")" }, layer);
      nodeEls.set(n.id, p);
    });
    this.nodeEls = nodeEls;
    if (view.state.clickedId && nodeEls.has(view.state.clickedId)) nodeEls.get(view.state.clickedId).classList.add("clicked");
  };

  // The node's links drawn strongly on the overlay (null: none); the base links fade meanwhile.
  LinkGraph.prototype.highlight = function (n) {
    if (this.highlighted === n) return;
    this.highlighted = n;
    var ctx = this.overlay.getContext("2d");
    var dpr = window.devicePixelRatio || 1;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, this.overlay.width, this.overlay.height);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    this.base.classList.toggle("faded", !!n);
    if (!n || !this.keep[n.i]) return;
    var g = this.g, keep = this.keep, x = this.pos.x, y = this.pos.y;
    var ks = [], local = 0, j;
    for (j = g.inStart[n.i]; j < g.inStart[n.i + 1]; j++) ks.push(g.inLinks[j]);
    for (j = g.outStart[n.i]; j < g.outStart[n.i + 1]; j++) ks.push(g.outLinks[j]);
    ks = ks.filter(function (k) { return keep[g.src[k]] && keep[g.tgt[k]]; });
    ks.forEach(function (k) { local = Math.max(local, Math.abs(g.weight[k])); });
    ctx.lineCap = "round";
    ks.forEach(function (k) {
      var rel = Math.abs(g.weight[k]) / (local || 1);
      ctx.strokeStyle = g.weight[k] < 0 ? NEG : POS;
      ctx.globalAlpha = 0.35 + 0.6 * rel;
      ctx.lineWidth = 0.8 + 3.2 * rel;
      ctx.beginPath();
      curve(ctx, x[g.src[k]], y[g.src[k]], x[g.tgt[k]], y[g.tgt[k]]);
      ctx.stroke();
    });
    ctx.globalAlpha = 1;
  };

  function fmt(v) {
    if (v === null || v === undefined) return "–";
    var a = Math.abs(v);
    return a !== 0 && (a < 0.001 || a >= 1e5) ? v.toExponential(2) : String(Math.round(v * 1000) / 1000);
  }

  function line(parent, cls, text) {
    var d = document.createElement("div");
    d.className = cls;
    d.textContent = text;
    parent.appendChild(d);
    return d;
  }

  // Hover: the tooltip (label, layer, position, activation, influence) and the node's links.
  LinkGraph.prototype.hover = function (n) {
    var tip = this.tip;
    if (!n) {
      tip.hidden = true;
      var clicked = this.view.state.clickedId ? this.g.byId.get(this.view.state.clickedId) : null;
      this.highlight(clicked || null);
      if (this.handlers.hover) this.handlers.hover(null);
      return;
    }
    this.highlight(n);
    tip.textContent = "";
    line(tip, "tip-label", this.view.labelOf(n));
    var where = (n.kind === "embedding" ? "embedding" : n.kind === "logit" ? "logit" : "layer " + n.layer) +
      " · position " + n.ctx + " \u201c";
    var pos = line(tip, "tip-meta", where);
    var tok = document.createElement("span");
    tok.className = "tok-text";
    tok.textContent = root.InterpediaGraph.tokenAt(this.g, n.ctx);
    pos.appendChild(tok);
    pos.appendChild(document.createTextNode("\u201d"));
    line(tip, "tip-meta", "activation " + fmt(n.activation) + " · influence " + fmt(n.influence));
    tip.hidden = false;
    var x = this.pos.x[n.i], y = this.pos.y[n.i];
    tip.style.left = Math.max(0, Math.min(x + 12, this.width - 300)) + "px";
    tip.style.top = Math.max(0, y - 70) + "px";
    if (this.handlers.hover) this.handlers.hover(n);
  };

  root.InterpediaGraphView = { LinkGraph: LinkGraph, FILL: FILL, POS: POS, NEG: NEG, symbolPath: symbolPath, fmt: fmt };
})(window);
