// The graph page (/{model}/graph?slug=...): loads the graph JSON and the page's JSON twin (this instance's
// explanations of the graph's features, saved subgraphs), keeps the view state in the URL (slug, pinnedIds,
// supernodes, clerps, pruningThreshold, densityThreshold, clickedId) and redraws from it.
(function (root) {
  "use strict";
  var G = root.InterpediaGraph, View = root.InterpediaGraphView, Panes = root.InterpediaGraphPanes;

  function $(sel, scope) { return (scope || document).querySelector(sel); }

  function postJson(url, body) {
    return fetch(url, {
      method: "POST", credentials: "same-origin", body: JSON.stringify(body),
      headers: { "Content-Type": "application/json", "Accept": "application/json" }
    }).then(function (res) {
      return res.json().catch(function () { return {}; }).then(function (doc) {
        if (!res.ok) throw new Error(doc.message || doc.error || ("HTTP " + res.status));
        return doc;
      });
    });
  }

  function getJson(url) {
    return fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } }).then(function (res) {
      if (!res.ok) {
        return res.json().catch(function () { return {}; }).then(function (doc) {
          throw new Error(doc.message || ("HTTP " + res.status));
        });
      }
      return res.json();
    });
  }

  function App(rootEl) {
    this.root = rootEl;
    this.model = rootEl.getAttribute("data-model");
    this.slug = rootEl.getAttribute("data-slug");
    this.csrf = rootEl.getAttribute("data-csrf") || "";
    this.userId = rootEl.getAttribute("data-user-id") || null;
    this.embed = rootEl.getAttribute("data-embed") === "true";
    this.features = new Map();
    this.sizeBy = "activation";
    this.el = {
      graph: $("#link-graph", rootEl), status: $("#graph-status", rootEl), detail: $("#node-detail"),
      sgSvg: $("#subgraph svg"), sgList: $("#subgraph-list"), sgEmpty: $("#subgraph-empty"),
      sgCount: $("#subgraph-count"), savedList: $("#saved-subgraphs"), share: $("#share-url"),
      pruning: $("#pruning-threshold"), density: $("#density-threshold"), scores: $("#graph-scores")
    };
  }

  App.prototype.labelOf = function (n) {
    return G.label(this.g, n, this.clerps, this.info);
  };

  App.prototype.defaults = function () {
    var meta = this.g.meta, t = meta.node_threshold;
    if (meta.pruning_settings && typeof meta.pruning_settings.node_threshold === "number") t = meta.pruning_settings.node_threshold;
    return { pruning: typeof t === "number" ? t : 0.8, density: 0.99 };
  };

  App.prototype.start = function () {
    var self = this;
    if (!root.d3) {
      this.el.status.textContent = "The page's d3 library is missing: run make install (it copies it from npm).";
      return Promise.resolve();
    }
    performance.mark("graph:fetch");
    var twin = getJson(this.root.getAttribute("data-twin-url"));
    var graph = getJson(this.root.getAttribute("data-json-url"));
    return Promise.all([graph, twin]).then(function (both) {
      performance.mark("graph:json");
      self.doc = both[0];
      self.info = both[1].features || {};
      self.saved = both[1].subgraphs || [];
      self.g = G.prepare(self.doc);
      performance.mark("graph:prepared");
      self.state = G.parseState(location.search, self.doc.qParams);
      self.view = new View.LinkGraph(self.el.graph, {
        click: function (n, e) { self.onClick(n, e); }
      });
      self.render(true);
      performance.mark("graph:drawn");
      // The first frame after this one starts once the drawing is painted; the scores come after it.
      requestAnimationFrame(function () {
        setTimeout(function () {
          performance.mark("graph:painted");
          self.showScores();
          self.root.setAttribute("data-ready", "true");
        }, 0);
      });
      self.bindControls();
      if (self.el.savedList) Panes.renderSaved(self, self.saved);
    }).catch(function (err) {
      if (self.el.status) self.el.status.textContent = "Could not load the graph: " + err.message;
      self.root.setAttribute("data-ready", "error");
    });
  };

  App.prototype.showScores = function () {
    if (!this.el.scores) return;
    var s = G.scores(this.g);
    this.el.scores.textContent = "Replacement score " + View.fmt(s.replacement) + " · completeness score " + View.fmt(s.completeness);
    this.el.scores.setAttribute("data-replacement", String(s.replacement));
    this.el.scores.setAttribute("data-completeness", String(s.completeness));
  };

  // Draw everything from the state and write it into the URL (not on the first draw or a resize: the URL
  // already is the state).
  App.prototype.render = function (first) {
    this.clerps = G.clerpMap(this.state);
    var keep = G.visibleNodes(this.g, this.state, this.info, this.defaults());
    this.view.draw(this.g, keep, { state: this.state, sizeBy: this.sizeBy, labelOf: this.labelOf.bind(this) });
    if (this.el.detail) Panes.renderDetail(this);
    if (this.el.sgList) Panes.renderSubgraph(this);
    var d = this.defaults();
    if (this.el.pruning) {
      this.el.pruning.value = this.state.pruningThreshold !== null ? this.state.pruningThreshold : d.pruning;
      $("#pruning-value").textContent = View.fmt(+this.el.pruning.value);
    }
    if (this.el.density) {
      this.el.density.value = this.state.densityThreshold !== null ? this.state.densityThreshold : d.density;
      $("#density-value").textContent = View.fmt(+this.el.density.value);
    }
    if (!first) history.replaceState(null, "", location.pathname + "?" + G.stateQuery(location.search, this.state));
    if (this.el.share) this.el.share.value = location.href;
    var embed = $("#embed-link");
    if (embed) {
      var q = new URLSearchParams(location.search);
      q.set("embed", "true");
      embed.href = location.pathname + "?" + q.toString();
    }
    var full = $("#open-full");
    if (full) {
      var fq = new URLSearchParams(location.search);
      fq.delete("embed");
      full.href = location.pathname + "?" + fq.toString();
    }
    var shown = 0;
    for (var i = 0; i < keep.length; i++) shown += keep[i];
    if (this.el.status) this.el.status.textContent = shown + " of " + this.g.nodes.length + " nodes shown, " + this.g.weight.length + " links";
  };

  App.prototype.onClick = function (n, e) {
    if (n && (e.ctrlKey || e.metaKey || e.shiftKey)) { this.togglePin(n.id); return; }
    this.state.clickedId = n ? (this.state.clickedId === n.id ? null : n.id) : null;
    this.render();
  };

  App.prototype.select = function (id) { this.state.clickedId = id; this.render(); };

  App.prototype.togglePin = function (id) {
    var at = this.state.pinnedIds.indexOf(id);
    if (at >= 0) {
      this.state.pinnedIds.splice(at, 1);
      // An unpinned node leaves its supernode; a supernode left with no node goes.
      this.state.supernodes = this.state.supernodes.map(function (sn) {
        return sn.filter(function (x, i) { return i === 0 || x !== id; });
      }).filter(function (sn) { return sn.length >= 2; });
    } else {
      this.state.pinnedIds.push(id);
    }
    this.render();
  };

  App.prototype.setClerp = function (id, text) {
    text = String(text || "").trim().slice(0, 200);
    this.state.clerps = this.state.clerps.filter(function (c) { return c[0] !== id; });
    if (text) this.state.clerps.push([id, text]);
    this.render();
  };

  App.prototype.group = function (ids, label) {
    label = String(label || "").trim().slice(0, 200);
    if (ids.length < 2 || !label) return false;
    var taken = new Set(ids);
    this.state.supernodes = this.state.supernodes.map(function (sn) {
      return sn.filter(function (x, i) { return i === 0 || !taken.has(x); });
    }).filter(function (sn) { return sn.length >= 2; });
    this.state.supernodes.push([label].concat(ids));
    this.render();
    return true;
  };

  App.prototype.ungroup = function (s) { this.state.supernodes.splice(s, 1); this.render(); };

  App.prototype.renameSupernode = function (s, label) {
    label = String(label || "").trim().slice(0, 200);
    if (label) { this.state.supernodes[s][0] = label; this.render(); }
  };

  App.prototype.loadSubgraph = function (sg) {
    this.state.pinnedIds = (sg.pinnedIds || []).map(String);
    this.state.supernodes = (sg.supernodes || []).filter(function (x) { return Array.isArray(x) && x.length >= 2; });
    this.state.clerps = (sg.clerps || []).filter(function (x) { return Array.isArray(x) && x.length === 2; });
    this.state.pruningThreshold = typeof sg.pruningThreshold === "number" ? sg.pruningThreshold : null;
    this.state.densityThreshold = typeof sg.densityThreshold === "number" ? sg.densityThreshold : null;
    this.render();
  };

  App.prototype.refreshSaved = function () {
    var self = this;
    return postJson("/api/graph/subgraph/list", { modelId: this.model, slug: this.slug }).then(function (list) {
      self.saved = list;
      Panes.renderSaved(self, list);
    });
  };

  App.prototype.saveSubgraph = function (name) {
    var s = this.state, self = this;
    return postJson("/graph/subgraph/save", {
      modelId: this.model, slug: this.slug, displayName: name, pinnedIds: s.pinnedIds, supernodes: s.supernodes,
      clerps: s.clerps, pruningThreshold: s.pruningThreshold, densityThreshold: s.densityThreshold, csrf_token: this.csrf
    }).then(function () { return self.refreshSaved(); });
  };

  App.prototype.deleteSubgraph = function (sg) {
    var self = this;
    return postJson("/graph/subgraph/delete", { subgraphId: sg.id, csrf_token: this.csrf })
      .then(function () { return self.refreshSaved(); })
      .catch(function (err) { $("#subgraph-message").textContent = err.message; });
  };

  // The feature's dashboard from this instance (null when it has none), fetched once.
  App.prototype.feature = function (key) {
    if (!this.features.has(key)) {
      var parts = key.split("/");
      var url = "/api/feature/" + [this.model, parts[0], parts[1]].map(encodeURIComponent).join("/");
      this.features.set(key, fetch(url, { credentials: "same-origin" }).then(function (res) {
        if (res.status === 404) return null;
        if (!res.ok) throw new Error("HTTP " + res.status);
        return res.json();
      }));
    }
    return this.features.get(key);
  };

  // The graph JSON with the current view in qParams and the user's labels in clerp (for download).
  App.prototype.download = function () {
    var doc = JSON.parse(JSON.stringify(this.doc)), s = this.state, clerps = this.clerps;
    doc.qParams = Object.assign({}, doc.qParams, { pinnedIds: s.pinnedIds, supernodes: s.supernodes, clickedId: s.clickedId || "" });
    doc.nodes.forEach(function (n) { if (clerps.has(String(n.node_id))) n.clerp = clerps.get(String(n.node_id)); });
    return new Blob([JSON.stringify(doc)], { type: "application/json" });
  };

  App.prototype.bindControls = function () {
    var self = this, pending = false;
    function slider(input, key) {
      if (!input) return;
      input.addEventListener("input", function () {
        self.state[key] = +input.value;
        if (pending) return;
        pending = true;
        requestAnimationFrame(function () { pending = false; self.render(); });
      });
    }
    slider(this.el.pruning, "pruningThreshold");
    slider(this.el.density, "densityThreshold");
    var size = $("#size-by");
    if (size) size.addEventListener("change", function () { self.sizeBy = size.value; self.render(); });
    var group = $("#group-button");
    if (group) group.addEventListener("click", function () {
      var ids = Array.prototype.map.call(document.querySelectorAll("#subgraph-list input.pick:checked"), function (b) { return b.value; });
      var label = $("#supernode-label");
      var msg = $("#subgraph-message");
      if (ids.length < 2) { msg.textContent = "Tick two or more pinned nodes to group them."; return; }
      if (!label.value.trim()) { msg.textContent = "Give the supernode a label."; return; }
      self.group(ids, label.value);
      label.value = "";
      msg.textContent = "";
    });
    var clear = $("#clear-pins");
    if (clear) clear.addEventListener("click", function () {
      self.state.pinnedIds = [];
      self.state.supernodes = [];
      self.render();
    });
    var copy = $("#copy-link");
    if (copy) copy.addEventListener("click", function () {
      var input = self.el.share;
      input.select();
      var done = function () { copy.textContent = "Copied"; setTimeout(function () { copy.textContent = "Copy link"; }, 1500); };
      if (navigator.clipboard && navigator.clipboard.writeText) navigator.clipboard.writeText(input.value).then(done, done);
      else done();
    });
    var dl = $("#download-view");
    if (dl) dl.addEventListener("click", function () {
      var url = URL.createObjectURL(self.download());
      var a = document.createElement("a");
      a.href = url;
      a.download = self.slug + ".json";
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(function () { URL.revokeObjectURL(url); }, 1000);
    });
    var save = $("#save-subgraph");
    if (save) save.addEventListener("submit", function (e) {
      e.preventDefault();
      var msg = $("#subgraph-message");
      var name = $("#subgraph-name").value.trim();
      if (!self.state.pinnedIds.length) { msg.textContent = "Pin some nodes first."; return; }
      msg.textContent = "Saving…";
      self.saveSubgraph(name).then(function () { msg.textContent = "Saved."; }, function (err) { msg.textContent = err.message; });
    });
    window.addEventListener("resize", function () {
      if (pending) return;
      pending = true;
      requestAnimationFrame(function () { pending = false; self.render(true); });
    });
  };

  function init() {
    var el = document.getElementById("graph-app");
    if (!el) return;
    var app = new App(el);
    root.interpediaGraphApp = app;  // for the browser tests and the console
    app.start();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})(window);
