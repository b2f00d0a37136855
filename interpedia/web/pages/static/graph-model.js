// The graph page's model: the graph JSON (Neuronpedia's format) turned into arrays, its URL state, pruning,
// layout, labels, the replacement/completeness scores and the subgraph of pinned nodes. No DOM here: the
// view (graph-view.js) and the panes (graph-panes.js) draw what these functions compute.
(function (root) {
  "use strict";

  var NOT_FEATURES = { "embedding": 1, "logit": 1, "mlp reconstruction error": 1, "lorsa error": 1 };

  function kindOf(node) {
    var t = String(node.feature_type || "");
    if (t === "embedding") return "embedding";
    if (t === "logit") return "logit";
    if (t.indexOf("error") >= 0) return "error";
    return "feature";
  }

  function isDigits(s) { return /^[0-9]+$/.test(s); }

  // The feature a node is on this instance, as "{layer}-{set}/{index}" (store/graph_features.py decodes alike).
  function featureKey(node, sourceSet, lorsaSet) {
    var t = String(node.feature_type || "");
    if (NOT_FEATURES[t] || t.indexOf("error") >= 0) return null;
    var set = t === "lorsa" ? lorsaSet : sourceSet;
    var layer = String(node.layer);
    if (!set || !isDigits(layer)) return null;
    var parts = String(node.node_id || "").split("_");
    if (parts.length === 3 && parts.every(isDigits) && parts[0] === layer) return layer + "-" + set + "/" + parseInt(parts[1], 10);
    var f = node.feature;
    if (typeof f !== "number" || f < 0 || Math.floor(f) !== f) return null;
    var w = Math.floor((Math.sqrt(8 * f + 1) - 1) / 2);
    var idx = f - w * (w + 1) / 2;
    return layer + "-" + set + "/" + (w - idx === parseInt(layer, 10) ? idx : f);
  }

  // nodes with index, kind, row; links as typed arrays; incoming/outgoing link lists per node (CSR).
  function prepare(doc) {
    var meta = doc.metadata || {};
    var details = meta.feature_details || {};
    var nodes = doc.nodes.map(function (n, i) {
      return { i: i, id: String(n.node_id), raw: n, kind: kindOf(n), ctx: n.ctx_idx | 0, layer: n.layer,
               influence: typeof n.influence === "number" ? n.influence : null,
               activation: typeof n.activation === "number" ? n.activation : null,
               key: featureKey(n, details.neuronpedia_source_set, details.neuronpedia_lorsa_source_set) };
    });
    var byId = new Map();
    nodes.forEach(function (n) { byId.set(n.id, n); });
    var layers = [];
    nodes.forEach(function (n) {
      if (n.kind === "feature" || n.kind === "error") {
        var l = parseFloat(n.layer);
        if (!isNaN(l) && layers.indexOf(l) < 0) layers.push(l);
      }
    });
    layers.sort(function (a, b) { return a - b; });
    var nRows = layers.length + 2;
    nodes.forEach(function (n) {
      if (n.kind === "embedding") n.row = 0;
      else if (n.kind === "logit") n.row = nRows - 1;
      else { var r = layers.indexOf(parseFloat(n.layer)); n.row = r < 0 ? 1 : r + 1; }
    });
    var m = doc.links.length;
    var src = new Int32Array(m), tgt = new Int32Array(m), weight = new Float64Array(m);
    var inCount = new Int32Array(nodes.length + 1), outCount = new Int32Array(nodes.length + 1);
    var maxAbs = 0;
    for (var k = 0; k < m; k++) {
      var l = doc.links[k];
      src[k] = byId.get(String(l.source)).i;
      tgt[k] = byId.get(String(l.target)).i;
      weight[k] = +l.weight;
      if (Math.abs(weight[k]) > maxAbs) maxAbs = Math.abs(weight[k]);
      inCount[tgt[k] + 1]++;
      outCount[src[k] + 1]++;
    }
    for (var j = 0; j < nodes.length; j++) { inCount[j + 1] += inCount[j]; outCount[j + 1] += outCount[j]; }
    var inLinks = new Int32Array(m), outLinks = new Int32Array(m);
    var inFill = inCount.slice(0, nodes.length), outFill = outCount.slice(0, nodes.length);
    for (k = 0; k < m; k++) { inLinks[inFill[tgt[k]]++] = k; outLinks[outFill[src[k]]++] = k; }
    var maxAct = 0;
    nodes.forEach(function (n) { if (n.activation !== null && Math.abs(n.activation) > maxAct) maxAct = Math.abs(n.activation); });
    return { doc: doc, meta: meta, tokens: (meta.prompt_tokens || []).map(String), nodes: nodes, byId: byId,
             layers: layers, nRows: nRows, src: src, tgt: tgt, weight: weight, maxAbs: maxAbs || 1, maxAct: maxAct || 1,
             inStart: inCount, inLinks: inLinks, outStart: outCount, outLinks: outLinks,
             nCtx: Math.max((meta.prompt_tokens || []).length, 1 + nodes.reduce(function (a, n) { return Math.max(a, n.ctx); }, 0)) };
  }

  // --- URL state ------------------------------------------------------------------------------------

  function parseJsonList(text) {
    if (!text) return [];
    try {
      var v = JSON.parse(text);
      return Array.isArray(v) ? v : [];
    } catch (e) { return []; }
  }

  function num(text) {
    if (text === null || text === undefined || text === "") return null;
    var v = parseFloat(text);
    return isFinite(v) ? Math.min(1, Math.max(0, v)) : null;
  }

  function strings(list) {
    return list.filter(function (x) { return Array.isArray(x); }).map(function (x) { return x.map(String); });
  }

  // The view state from a query string; a graph's own qParams fill in what the URL leaves out.
  function parseState(search, qParams) {
    var p = new URLSearchParams(search);
    var q = qParams || {};
    var has = function (k) { return p.has(k); };
    return {
      pinnedIds: has("pinnedIds") ? p.get("pinnedIds").split(",").filter(Boolean)
        : (Array.isArray(q.pinnedIds) ? q.pinnedIds.map(String) : []),
      supernodes: strings(has("supernodes") ? parseJsonList(p.get("supernodes")) : (q.supernodes || []))
        .filter(function (g) { return g.length >= 2; }),
      clerps: strings(parseJsonList(p.get("clerps"))).filter(function (c) { return c.length === 2; }),
      pruningThreshold: num(p.get("pruningThreshold")),
      densityThreshold: num(p.get("densityThreshold")),
      clickedId: has("clickedId") ? (p.get("clickedId") || null) : (q.clickedId ? String(q.clickedId) : null)
    };
  }

  // The query string of a state (keeps the other parameters of ``search``, such as slug and embed).
  function stateQuery(search, state) {
    var p = new URLSearchParams(search);
    ["pinnedIds", "supernodes", "clerps", "pruningThreshold", "densityThreshold", "clickedId"].forEach(function (k) { p.delete(k); });
    if (state.pinnedIds.length) p.set("pinnedIds", state.pinnedIds.join(","));
    if (state.supernodes.length) p.set("supernodes", JSON.stringify(state.supernodes));
    if (state.clerps.length) p.set("clerps", JSON.stringify(state.clerps));
    if (state.pruningThreshold !== null) p.set("pruningThreshold", String(state.pruningThreshold));
    if (state.densityThreshold !== null) p.set("densityThreshold", String(state.densityThreshold));
    if (state.clickedId) p.set("clickedId", state.clickedId);
    return p.toString();
  }

  // --- pruning and layout ---------------------------------------------------------------------------

  // Which nodes show: tokens and logits always; others by influence (<= pruning) and density (<= density).
  // Pinned and clicked nodes always show.
  function visibleNodes(g, state, info, defaults) {
    var prune = state.pruningThreshold !== null ? state.pruningThreshold : defaults.pruning;
    var dense = state.densityThreshold !== null ? state.densityThreshold : defaults.density;
    var keep = new Uint8Array(g.nodes.length);
    var always = new Set(state.pinnedIds);
    if (state.clickedId) always.add(state.clickedId);
    g.nodes.forEach(function (n) {
      var ok = true;
      if (n.kind === "feature" || n.kind === "error") {
        if (n.influence !== null && n.influence > prune) ok = false;
        var f = n.key && info[n.key];
        if (f && typeof f.density === "number" && f.density > dense) ok = false;
      }
      keep[n.i] = ok || always.has(n.id) ? 1 : 0;
    });
    return keep;
  }

  var KIND_ORDER = { embedding: 0, feature: 1, error: 2, logit: 1 };

  // x, y of every visible node in a box: rows by layer (embeddings at the bottom, logits at the top),
  // columns by token position, a column's width growing with the most nodes it holds in any row.
  function layout(g, keep, box) {
    var nCtx = g.nCtx, cells = new Map(), need = new Float64Array(nCtx);
    g.nodes.forEach(function (n) {
      if (!keep[n.i]) return;
      var key = n.row * nCtx + n.ctx;
      if (!cells.has(key)) cells.set(key, []);
      cells.get(key).push(n);
    });
    cells.forEach(function (list) { need[list[0].ctx] = Math.max(need[list[0].ctx], list.length); });
    var minCol = 24, spacing = 9, widths = new Float64Array(nCtx), total = 0;
    for (var c = 0; c < nCtx; c++) { widths[c] = Math.max(minCol, need[c] * spacing); total += widths[c]; }
    var scale = box.width / total;
    var colX = new Float64Array(nCtx + 1);
    for (c = 0; c < nCtx; c++) colX[c + 1] = colX[c] + widths[c] * scale;
    var x = new Float64Array(g.nodes.length), y = new Float64Array(g.nodes.length);
    var rowH = g.nRows > 1 ? box.height / (g.nRows - 1) : 0;
    cells.forEach(function (list) {
      list.sort(function (a, b) {
        return (KIND_ORDER[a.kind] - KIND_ORDER[b.kind]) ||
          ((a.influence === null ? 2 : a.influence) - (b.influence === null ? 2 : b.influence)) ||
          (a.i - b.i);
      });
      var c0 = list[0].ctx, w = colX[c0 + 1] - colX[c0];
      var step = Math.min(w / list.length, 18);
      var start = colX[c0] + (w - step * (list.length - 1)) / 2;
      list.forEach(function (n, k) {
        x[n.i] = box.x + start + step * k;
        y[n.i] = box.y + box.height - n.row * rowH;
      });
    });
    return { x: x, y: y, colX: colX, rowH: rowH, box: box };
  }

  // --- labels ---------------------------------------------------------------------------------------

  function clerpMap(state) {
    var m = new Map();
    state.clerps.forEach(function (c) { m.set(c[0], c[1]); });
    return m;
  }

  function tokenAt(g, ctx) { return ctx >= 0 && ctx < g.tokens.length ? g.tokens[ctx] : "?"; }

  // How a raw tokenizer piece reads (the byte-level BPE markers; dashboards store pieces raw).
  var MARKERS = { "\u0120": " ", "\u010a": "\n", "\u0109": "\t", "\u2581": " " };
  function displayToken(token) {
    return String(token).replace(/[\u0120\u010a\u0109\u2581]/g, function (ch) { return MARKERS[ch]; });
  }

  // A node's label: the user's clerp, the graph's clerp, this instance's best explanation, or a name.
  function label(g, n, clerps, info) {
    if (clerps && clerps.has(n.id)) return clerps.get(n.id);
    if (n.kind === "embedding") return "Emb: \"" + tokenAt(g, n.ctx) + "\"";
    if (n.kind === "error") return n.raw.clerp || ("Err: mlp \"" + tokenAt(g, n.ctx) + "\"");
    if (n.raw.clerp) return String(n.raw.clerp);
    var f = n.key && info[n.key];
    if (f && f.explanation) return f.explanation;
    if (n.kind === "logit") return "Output";
    return n.key ? n.key.replace("/", " #") : "L" + n.layer + " " + n.id;
  }

  // --- scores (as circuit-tracer's compute_graph_scores, on the graph as stored) ----------------------

  function logitWeights(g) {
    var w = new Float64Array(g.nodes.length), any = false;
    g.nodes.forEach(function (n) {
      if (n.kind !== "logit") return;
      var p = n.raw.token_prob;
      if (typeof p !== "number") {
        var m = /p=([0-9.eE+-]+)/.exec(String(n.raw.clerp || ""));
        p = m ? parseFloat(m[1]) : NaN;
      }
      if (isFinite(p)) { w[n.i] = p; any = true; }
    });
    if (!any) g.nodes.forEach(function (n) { if (n.kind === "logit") w[n.i] = 1; });
    return w;
  }

  function scores(g) {
    var n = g.nodes.length, rowSum = new Float64Array(n), errIn = new Float64Array(n);
    for (var k = 0; k < g.weight.length; k++) rowSum[g.tgt[k]] += Math.abs(g.weight[k]);
    var isErr = g.nodes.map(function (x) { return x.kind === "error"; });
    for (k = 0; k < g.weight.length; k++) {
      if (isErr[g.src[k]] && rowSum[g.tgt[k]] > 0) errIn[g.tgt[k]] += Math.abs(g.weight[k]) / rowSum[g.tgt[k]];
    }
    var lw = logitWeights(g), influence = new Float64Array(n), cur = Float64Array.from(lw);
    for (var step = 0; step <= n; step++) {
      var next = new Float64Array(n), any = false;
      for (k = 0; k < g.weight.length; k++) {
        var t = g.tgt[k];
        if (cur[t] !== 0 && rowSum[t] > 0) { next[g.src[k]] += cur[t] * Math.abs(g.weight[k]) / rowSum[t]; any = true; }
      }
      if (!any) break;
      for (var i = 0; i < n; i++) influence[i] += next[i];
      cur = next;
    }
    var tok = 0, err = 0, num = 0, den = 0;
    g.nodes.forEach(function (x) {
      if (x.kind === "embedding") tok += influence[x.i];
      if (x.kind === "error") err += influence[x.i];
      var out = influence[x.i] + lw[x.i];
      num += (1 - errIn[x.i]) * out;
      den += out;
    });
    return { replacement: tok + err > 0 ? tok / (tok + err) : null, completeness: den > 0 ? num / den : null };
  }

  // --- the subgraph of pinned nodes -----------------------------------------------------------------

  // Pinned nodes and supernodes (a supernode stands for its members), with links summed between them.
  function subgraph(g, state) {
    var owner = new Map(), items = [];
    state.supernodes.forEach(function (group, s) {
      var members = group.slice(1).filter(function (id) { return g.byId.has(id); });
      if (!members.length) return;
      var item = { id: "supernode:" + s, supernode: s, label: group[0], members: members, row: 0, ctx: 0 };
      members.forEach(function (id) { owner.set(id, item); item.row += g.byId.get(id).row; item.ctx += g.byId.get(id).ctx; });
      item.row /= members.length; item.ctx /= members.length;
      items.push(item);
    });
    state.pinnedIds.forEach(function (id) {
      var n = g.byId.get(id);
      if (!n || owner.has(id)) return;
      var item = { id: id, node: n, row: n.row, ctx: n.ctx };
      owner.set(id, item);
      items.push(item);
    });
    var sums = new Map();
    for (var k = 0; k < g.weight.length; k++) {
      var a = owner.get(g.nodes[g.src[k]].id), b = owner.get(g.nodes[g.tgt[k]].id);
      if (!a || !b || a === b) continue;
      var key = a.id + "\u0000" + b.id;
      var e = sums.get(key);
      if (!e) { e = { source: a, target: b, weight: 0 }; sums.set(key, e); }
      e.weight += g.weight[k];
    }
    return { items: items, links: Array.from(sums.values()) };
  }

  root.InterpediaGraph = {
    prepare: prepare, featureKey: featureKey, parseState: parseState, stateQuery: stateQuery,
    visibleNodes: visibleNodes, layout: layout, label: label, clerpMap: clerpMap, scores: scores,
    subgraph: subgraph, tokenAt: tokenAt, displayToken: displayToken
  };
})(typeof window !== "undefined" ? window : globalThis);
