// The graph page's side panes: the clicked node (its input and output links ranked, and for a feature its
// dashboard summary from this instance), and the subgraph of pinned nodes with supernodes and labels.
// Everything is built with createElement + textContent: labels, tokens and clerps come from uploads.
(function (root) {
  "use strict";
  var G = root.InterpediaGraph, V = root.InterpediaGraphView;
  var SVG = "http://www.w3.org/2000/svg";
  var EDGES_SHOWN = 25;

  function h(tag, cls, text, parent) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }

  function button(text, cls, onClick, parent) {
    var b = h("button", cls, text, parent);
    b.type = "button";
    b.addEventListener("click", onClick);
    return b;
  }

  function featureUrl(model, key) {
    var parts = key.split("/");
    return "/" + [model, parts[0], parts[1]].map(encodeURIComponent).join("/");
  }

  // --- the clicked node ------------------------------------------------------------------------------

  function edgeTable(app, n, incoming, parent) {
    var g = app.g, list = [];
    var start = incoming ? g.inStart : g.outStart, links = incoming ? g.inLinks : g.outLinks;
    for (var j = start[n.i]; j < start[n.i + 1]; j++) list.push(links[j]);
    list.sort(function (a, b) { return Math.abs(g.weight[b]) - Math.abs(g.weight[a]); });
    var box = h("div", "edges " + (incoming ? "edges-in" : "edges-out"), null, parent);
    h("h3", null, (incoming ? "Input" : "Output") + " links (" + list.length + ")", box);
    if (!list.length) { h("p", "muted", "none", box); return; }
    var table = h("table", "table compact", null, box);
    var shown = 0;
    function addRows(limit) {
      list.slice(shown, limit).forEach(function (k) {
        var other = g.nodes[incoming ? g.src[k] : g.tgt[k]];
        var tr = h("tr", "edge", null, table);
        tr.setAttribute("data-node-id", other.id);
        var w = h("td", "num " + (g.weight[k] < 0 ? "neg" : "pos"), V.fmt(g.weight[k]), tr);
        w.title = "link weight";
        var td = h("td", null, null, tr);
        var a = h("a", "edge-label", app.labelOf(other), td);
        a.href = "#";
        a.addEventListener("click", function (e) { e.preventDefault(); app.select(other.id); });
        h("td", "muted", other.kind === "embedding" ? "Emb" : other.kind === "logit" ? "Logit" : "L" + other.layer + "@" + other.ctx, tr);
      });
      shown = Math.min(limit, list.length);
    }
    addRows(EDGES_SHOWN);
    if (list.length > shown) {
      var more = button("Show all " + list.length, "linkish", function () { addRows(list.length); more.remove(); }, box);
    }
  }

  function dashboardSummary(app, n, parent) {
    var key = n.key;
    var box = h("div", "feature-summary", null, parent);
    var link = h("a", "button", "Open the feature's dashboard", box);
    link.href = featureUrl(app.model, key);
    var body = h("div", null, "Loading the dashboard…", box);
    app.feature(key).then(function (doc) {
      body.textContent = "";
      if (!doc) { h("p", "muted", "This feature has no dashboard on this instance.", body); return; }
      var exp = (doc.explanations || [])[0];
      if (!exp) h("p", "lead", "(no explanation yet)", body);
      else if (exp.description !== app.labelOf(n)) h("p", "lead", exp.description, body);
      h("p", "muted", "density " + V.fmt(doc.frac_nonzero) + " · max activation " + V.fmt(doc.maxActApprox), body);
      var acts = (doc.activations || []).slice(0, 3);
      if (acts.length) {
        h("h3", null, "Top activations", body);
        acts.forEach(function (act) {
          var strip = h("div", "strip summary-strip", null, body);
          var m = act.maxValueTokenIndex | 0, lo = Math.max(0, m - 12), hi = Math.min(act.tokens.length, m + 6);
          for (var i = lo; i < hi; i++) {
            var v = act.values[i] || 0, t = h("span", "t" + (i === m ? " m" : ""), G.displayToken(act.tokens[i]).replace(/\n/g, "\u21b5"), strip);
            if (v > 0) t.style.backgroundColor = "rgba(16,185,129," + Math.min(1, v / (act.maxValue || 1)).toFixed(2) + ")";
          }
        });
      }
      var pos = (doc.pos_str || []).slice(0, 5), neg = (doc.neg_str || []).slice(0, 5);
      if (pos.length || neg.length) {
        h("h3", null, "Top logits", body);
        var row = h("div", "logit-cols", null, body);
        [[pos, doc.pos_values, "pos"], [neg, doc.neg_values, "neg"]].forEach(function (side) {
          var ul = h("ul", "logits " + side[2], null, row);
          side[0].forEach(function (tok, i) {
            var li = h("li", null, null, ul);
            h("span", "tok", G.displayToken(tok), li);
            h("span", "num", V.fmt((side[1] || [])[i]), li);
          });
        });
      }
    }).catch(function (err) { body.textContent = "Could not load the dashboard: " + err.message; });
  }

  function renderDetail(app) {
    var pane = app.el.detail;
    pane.textContent = "";
    var id = app.state.clickedId, n = id ? app.g.byId.get(id) : null;
    if (!n) { h("p", "muted", "Click a node to see its links; Ctrl/Shift-click pins it.", pane); return; }
    pane.setAttribute("data-node-id", n.id);
    h("h2", "node-label", app.labelOf(n), pane);
    var meta = h("p", "meta", (n.kind === "feature" ? (n.key ? n.key.replace("/", " #") : "feature") : n.kind) +
      " · layer " + n.layer + " · position " + n.ctx + " ", pane);
    h("span", "tok", "\u201c" + G.tokenAt(app.g, n.ctx) + "\u201d", meta);
    h("p", "meta", "activation " + V.fmt(n.activation) + " · influence " + V.fmt(n.influence), pane);
    var tools = h("div", "row", null, pane);
    var pinned = app.state.pinnedIds.indexOf(n.id) >= 0;
    button(pinned ? "Unpin" : "Pin", "pin-toggle", function () { app.togglePin(n.id); }, tools);
    var input = h("input", "clerp-input", null, tools);
    input.placeholder = "Your label for this node";
    input.maxLength = 200;
    var clerps = G.clerpMap(app.state);
    input.value = clerps.get(n.id) || "";
    button("Set label", "clerp-save", function () { app.setClerp(n.id, input.value); }, tools);
    if (n.kind === "feature" && n.key) dashboardSummary(app, n, pane);
    edgeTable(app, n, true, pane);
    edgeTable(app, n, false, pane);
  }

  // --- the subgraph ----------------------------------------------------------------------------------

  function drawSubgraph(app, svg, sub) {
    svg.textContent = "";
    if (!sub.items.length) return;  // before reading the pane's width: that would force a layout
    var width = Math.max(300, svg.parentNode.clientWidth || 600), height = 320;
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);
    svg.setAttribute("width", width);
    svg.setAttribute("height", height);
    var nRows = app.g.nRows, nCtx = app.g.nCtx;
    var sx = function (ctx) { return 40 + (ctx + 0.5) / nCtx * (width - 80); };
    var sy = function (row) { return height - 30 - row / Math.max(1, nRows - 1) * (height - 60); };
    var nodes = sub.items.map(function (it) { return { item: it, x: sx(it.ctx), y: sy(it.row), tx: sx(it.ctx), ty: sy(it.row) }; });
    var d3 = root.d3;
    d3.forceSimulation(nodes)
      .force("x", d3.forceX(function (d) { return d.tx; }).strength(0.3))
      .force("y", d3.forceY(function (d) { return d.ty; }).strength(0.9))
      .force("collide", d3.forceCollide(function (d) { return d.item.supernode !== undefined ? 34 : 16; }))
      .stop().tick(200);
    nodes.forEach(function (d) {
      d.x = Math.max(20, Math.min(width - 20, d.x));
      d.y = Math.max(16, Math.min(height - 16, d.y));
    });
    var at = new Map(nodes.map(function (d) { return [d.item, d]; }));
    var maxW = sub.links.reduce(function (m, l) { return Math.max(m, Math.abs(l.weight)); }, 0) || 1;
    var links = document.createElementNS(SVG, "g");
    svg.appendChild(links);
    sub.links.forEach(function (l) {
      var a = at.get(l.source), b = at.get(l.target);
      var p = document.createElementNS(SVG, "path");
      var my = (a.y + b.y) / 2;
      p.setAttribute("d", "M" + a.x + "," + a.y + "C" + a.x + "," + my + " " + b.x + "," + my + " " + b.x + "," + b.y);
      p.setAttribute("class", "sg-link " + (l.weight < 0 ? "neg" : "pos"));
      p.setAttribute("stroke-width", (0.8 + 4 * Math.abs(l.weight) / maxW).toFixed(2));
      links.appendChild(p);
    });
    nodes.forEach(function (d) {
      var gEl = document.createElementNS(SVG, "g");
      gEl.setAttribute("transform", "translate(" + d.x.toFixed(1) + "," + d.y.toFixed(1) + ")");
      var isSuper = d.item.supernode !== undefined;
      gEl.setAttribute("class", isSuper ? "sg-node supernode" : "sg-node");
      gEl.setAttribute("data-node-id", d.item.id);
      var shape = document.createElementNS(SVG, isSuper ? "rect" : "path");
      if (isSuper) {
        [["x", -30], ["y", -10], ["width", 60], ["height", 20], ["rx", 6]].forEach(function (a) { shape.setAttribute(a[0], a[1]); });
      } else {
        shape.setAttribute("d", V.symbolPath(d.item.node.kind, 6));
        shape.setAttribute("fill", V.FILL[d.item.node.kind]);
      }
      gEl.appendChild(shape);
      var text = document.createElementNS(SVG, "text");
      text.setAttribute("y", isSuper ? 4 : -9);
      text.setAttribute("class", "sg-label");
      var name = isSuper ? d.item.label : app.labelOf(d.item.node);
      text.textContent = name.length > 28 ? name.slice(0, 27) + "\u2026" : name;
      gEl.appendChild(text);
      gEl.addEventListener("click", function () { app.select(isSuper ? d.item.members[0] : d.item.id); });
      svg.appendChild(gEl);
    });
  }

  function renderSubgraph(app) {
    var el = app.el, state = app.state;
    var sub = G.subgraph(app.g, state);
    el.sgSvg.style.display = sub.items.length ? "" : "none";
    drawSubgraph(app, el.sgSvg, sub);
    var list = el.sgList;
    list.textContent = "";
    var grouped = new Set();
    state.supernodes.forEach(function (sn, s) {
      sn.slice(1).forEach(function (id) { grouped.add(id); });
      var li = h("li", "supernode-row", null, list);
      li.setAttribute("data-supernode", String(s));
      var name = h("input", "supernode-name", null, li);
      name.value = sn[0];
      name.maxLength = 200;
      name.setAttribute("aria-label", "supernode label");
      name.addEventListener("change", function () { app.renameSupernode(s, name.value); });
      h("span", "muted", " " + (sn.length - 1) + " nodes ", li);
      button("Ungroup", "linkish ungroup", function () { app.ungroup(s); }, li);
    });
    state.pinnedIds.forEach(function (id) {
      var n = app.g.byId.get(id);
      if (!n || grouped.has(id)) return;
      var li = h("li", "pinned-row", null, list);
      li.setAttribute("data-node-id", id);
      var box = h("input", "pick", null, li);
      box.type = "checkbox";
      box.value = id;
      var lab = h("a", "pinned-label", app.labelOf(n), li);
      lab.href = "#";
      lab.addEventListener("click", function (e) { e.preventDefault(); app.select(id); });
      button("Unpin", "linkish unpin", function () { app.togglePin(id); }, li);
    });
    el.sgEmpty.hidden = state.pinnedIds.length > 0 || state.supernodes.length > 0;
    el.sgCount.textContent = state.pinnedIds.length + " pinned, " + state.supernodes.length + " supernodes";
  }

  function renderSaved(app, saved) {
    var list = app.el.savedList;
    list.textContent = "";
    if (!saved.length) { h("li", "muted", "No saved subgraphs yet.", list); return; }
    saved.forEach(function (sg) {
      var li = h("li", "saved-subgraph", null, list);
      li.setAttribute("data-subgraph-id", sg.id);
      h("span", "saved-name", sg.displayName || "(untitled)", li);
      h("span", "muted", " by " + ((sg.user && sg.user.name) || "someone") + " · " + sg.pinnedIds.length + " pinned ", li);
      button("Load", "linkish load", function () { app.loadSubgraph(sg); }, li);
      if (app.userId && sg.userId === app.userId) button("Delete", "linkish delete", function () { app.deleteSubgraph(sg); }, li);
    });
  }

  root.InterpediaGraphPanes = { renderDetail: renderDetail, renderSubgraph: renderSubgraph, renderSaved: renderSaved };
})(window);
