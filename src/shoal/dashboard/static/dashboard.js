// shoal dashboard: fills the page from the JSON API every 2 s and draws figures with plotly.js.
// Every value from the storage goes into the page as text (textContent), never as HTML.
"use strict";

const POLL_MS = 2000;
const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);

// The controls' token: from ?token=... (the address `shoal dashboard` printed), kept for the tab.
if (params.get("token")) sessionStorage.setItem("shoal-token", params.get("token"));

function fmt(v) {
  if (v === null || v === undefined) return "-";
  if (typeof v === "number") {
    if (Number.isInteger(v)) return String(v);
    if (v === 0) return "0";
    return Math.abs(v) < 1e-3 || Math.abs(v) >= 1e5 ? v.toExponential(2) : String(Number(v.toPrecision(4)));
  }
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

function link(text, href) {
  const a = el("a", text);
  a.href = href;
  return a;
}

const studyHref = (name) => "/study?study=" + encodeURIComponent(name);
const trialHref = (name, n) => "/trial?study=" + encodeURIComponent(name) + "&trial=" + encodeURIComponent(n);

// Rows of cells: a cell is a string/number (shown as text) or a DOM node.
function fillRows(table, rows) {
  const body = table.tBodies[0];
  body.replaceChildren(...rows.map((cells) => {
    const tr = el("tr");
    for (const c of cells) {
      const td = el("td");
      if (c instanceof Node) { td.appendChild(c); td.className = "text"; }
      else { td.textContent = fmt(c); if (typeof c === "string") td.className = "text"; }
      tr.appendChild(td);
    }
    return tr;
  }));
}

function configText(cfg) {
  if (!cfg) return "-";
  return Object.entries(cfg).map(([k, v]) => k + "=" + fmt(v)).join(", ");
}

// "val_loss, minimized" or "val_acc (maximize), train_seconds (minimize)".
function objectivesText(d) {
  if (!d.objectives || d.objectives.length < 2) return d.metric + ", " + d.direction + "d";
  return d.objectives.map((o, i) => o + " (" + d.directions[i] + ")").join(", ");
}

// A header row of plain text cells.
function setHead(table, names) {
  const head = el("tr");
  for (const h of names) head.appendChild(el("th", h));
  table.tHead.replaceChildren(head);
}

function draw(id, fig) {
  const div = $(id);
  if (!div) return;
  if (!fig) { if (div.data) Plotly.purge(div); div.hidden = true; return false; }
  div.hidden = false;
  Plotly.react(div, fig.data, fig.layout, { displaylogo: false, responsive: true });
  return true;
}

function status(text, isError) {
  const s = $("status");
  s.textContent = text;
  s.className = isError ? "error" : "note";
}

async function api(path, options) {
  const r = await fetch(path, options);
  let data = null;
  try { data = await r.json(); } catch (e) { data = { error: r.status + " " + r.statusText }; }
  if (!r.ok) throw new Error((data && data.error) || (r.status + " " + r.statusText));
  return data;
}

// Poll ``load`` every POLL_MS; a slow answer is never overlapped by the next request.
function poll(load) {
  let busy = false;
  async function tick() {
    if (busy) return;
    busy = true;
    try {
      await load();
      status("live, updated " + new Date().toLocaleTimeString());
    } catch (e) {
      status("error: " + e.message, true);
    } finally {
      busy = false;
    }
  }
  tick();
  setInterval(tick, POLL_MS);
}

// ------------------------------------------------------------------------------------- studies
function indexPage() {
  api("/api/info").then((i) => { $("storage").textContent = "storage: " + i.storage; }).catch(() => {});
  poll(async () => {
    const data = await api("/api/studies");
    $("empty").hidden = data.studies.length > 0;
    fillRows($("studies"), data.studies.map((s) => [
      link(s.name, studyHref(s.name)), s.mode || "tune", s.direction, s.metric, s.trials,
      Object.entries(s.states).map(([k, v]) => v + " " + k).join(", "),
      s.front_size !== null && s.front_size !== undefined ? s.front_size + " on the Pareto front" : s.best_value,
      s.best_trial === null ? "-" : link(String(s.best_trial), trialHref(s.name, s.best_trial)),
      s.started ? s.started.replace("T", " ").slice(0, 19) : "-",
    ]));
  });
}

// --------------------------------------------------------------------------------------- study
function studyPage() {
  const name = params.get("study") || "";
  document.title = "shoal: " + name;
  $("title").textContent = name;
  poll(async () => {
    const [d, p] = await Promise.all([
      api("/api/study?study=" + encodeURIComponent(name)),
      api("/api/population?study=" + encodeURIComponent(name)),
    ]);
    const states = Object.entries(d.states).map(([k, v]) => v + " " + k).join(", ");
    $("summary").textContent = d.trials + " trials (" + (states || "none") + "); " + objectivesText(d) + ".";
    const multi = d.objectives.length > 1;
    const best = $("best");
    if (d.best) {
      best.replaceChildren(
        el("p", null),
        el("p", "config: " + configText(d.best.config), "note"),
      );
      best.firstChild.append("best " + (d.constrained ? "feasible " : "") + d.metric + (multi ? " (the first objective) " : " "),
                             el("strong", fmt(d.best.value)), " in trial ",
                             link(String(d.best.number), trialHref(name, d.best.number)));
      best.firstChild.id = "best-value";
      if (multi) best.append(el("p", d.front.length + " trials on the Pareto front (below).", "note"));
    } else {
      best.replaceChildren(el("p", d.constrained && d.trials ? "No feasible trial has completed yet." : "No trial has completed yet.", "empty"));
    }
    const cons = $("constraints");
    cons.hidden = !d.constrained;
    if (d.constrained) {
      const before = d.infeasible.filter((r) => r.reason).length;
      cons.textContent = d.infeasible.length + " infeasible trials" + (d.constraints.length ? " (limits: " + d.constraints.join(", ") + ")" : "") +
        (before ? ", " + before + " of them stopped before training" : "") + (d.infeasible.length ? ": " +
        d.infeasible.slice(-10).map((r) => r.number + " (" + (Object.entries(r.violations).map(([k, v]) => k + " over by " + fmt(v)).join(", ") || r.reason) + ")").join(", ") : "") + ".";
    }
    $("pareto").hidden = !multi;
    if (multi) {
      $("pareto-note").textContent = d.front.length + " trials on the front: feasible, and no other feasible trial is as good in " +
        "every objective and better in one. " + d.objectives[0] + " against " + d.objectives[1] + "; infeasible trials in grey.";
      draw("fig-pareto", d.figures.pareto);
      draw("fig-pareto-matrix", d.figures.pareto_matrix);
      const fkeys = [];
      for (const f of d.front) for (const k of Object.keys(f.config || {})) if (!fkeys.includes(k)) fkeys.push(k);
      setHead($("front"), ["#", ...d.objectives, ...fkeys]);
      // With k-fold, each objective's spread over folds: "0.91 ± 0.01".
      const withSpread = (f) => f.values.map((v, i) => (f.spread && typeof f.spread[d.objectives[i]] === "number"
        ? fmt(v) + " ± " + fmt(f.spread[d.objectives[i]]) : v));
      fillRows($("front"), d.front.map((f) => [link(String(f.number), trialHref(name, f.number)), ...withSpread(f),
                                               ...fkeys.map((k) => (f.config || {})[k])]));
    }
    $("curves-note").textContent = d.curves_note;
    $("curves-empty").hidden = draw("fig-curves", d.figures.curves) !== false;
    $("history-empty").hidden = draw("fig-history", d.figures.history) !== false;
    draw("fig-lineage", d.figures.lineage);
    $("running-empty").hidden = d.running.length > 0;
    fillRows($("running"), d.running.map((r) => [link(String(r.number), trialHref(name, r.number)), r.epoch, r.last,
                                                 r.babysat ? "yes" : "no", configText(r.config)]));
    const top = $("top");
    const keys = [];
    for (const b of d.top) for (const k of Object.keys(b.config || {})) if (!keys.includes(k)) keys.push(k);
    const objs = multi ? d.objectives : [d.metric];
    const acc = objs.includes("val_acc") ? [] : ["val_acc"];
    setHead(top, ["#", ...objs, ...acc, "wall s", "epochs", ...keys]);
    fillRows(top, d.top.map((b) => [link(String(b.number), trialHref(name, b.number)), ...(multi ? b.values : [b.value]),
                                    ...(acc.length ? [b.val_acc] : []), b.seconds, b.epochs, ...keys.map((k) => (b.config || {})[k])]));
    fillRows($("stages"), d.stages.map((s) => [fmt(s.stage), s.trials, s.complete, s.best_value, s.best_trial]));
    // population
    const kinds = { pbt: "Population-based training: members by slot over epochs; dotted lines are copies.",
      halving: "Successive halving per cohort: slots rebuilt from start and end times.",
      population: "Population engine: slots rebuilt from start and end times.",
      trials: "Trials by slot (rebuilt from start and end times)." };
    let note = kinds[p.kind] + " " + p.running + " training now.";
    if (p.pbt) note += " PBT: population " + p.pbt.population + ", every " + p.pbt.interval + " epochs, quantile " + p.pbt.quantile + ".";
    if (p.population) note += " At most " + p.population.max_members + " members at once.";
    $("pop-note").textContent = note;
    draw("fig-slots", p.figure);
    const shown = p.members.filter((m) => m.state === "running").concat(p.members.filter((m) => m.state !== "running").slice(-30));
    fillRows($("members"), shown.map((m) => [m.slot, link(String(m.number), trialHref(name, m.number)), m.state, m.from_epoch,
                                             m.epoch, m.value, m.parent, m.replaced_by, m.bracket]));
    $("rungs-empty").hidden = p.rungs.length > 0;
    fillRows($("rungs"), p.rungs.slice(-50).map((r) => [r.epoch, link(String(r.number), trialHref(name, r.number)), r.bracket,
                                                        r.value, r.rank + " of " + r.of, r.kept ? "promoted" : "stopped"]));
    $("copies-empty").hidden = p.copies.length > 0;
    fillRows($("copies"), p.copies.slice(-50).map((c) => [c.epoch, c.slot, c.replaced, c.parent, c.child]));
  });
}

// --------------------------------------------------------------------------------------- trial
async function sendControl(name, number, body, out) {
  const headers = { "Content-Type": "application/json" };
  const token = $("token") && $("token").value ? $("token").value : sessionStorage.getItem("shoal-token");
  if (token) headers["X-Shoal-Token"] = token;
  out.className = "note";
  out.textContent = "sending…";
  try {
    const path = body.what === "fork" ? "/api/fork" : "/api/control";
    const r = await api(path, { method: "POST", headers, body: JSON.stringify({ study: name, trial: number, ...body }) });
    if (body.what === "fork") {
      out.replaceChildren("fork started (process " + r.pid + ")", r.trial === null ? "; its trial appears soon." : "; new trial ");
      if (r.trial !== null) out.append(link(String(r.trial), trialHref(name, r.trial)));
    } else if (r.event) {
      out.textContent = body.what + " applied at epoch " + r.event.epoch + ", step " + r.event.step + "; lr now " + fmt(r.event.lr) + ".";
    } else {
      out.textContent = body.what + " sent; " + (r.alive ? "it applies at the trainer's next poll." : "no trainer runs this trial now: it applies when `shoal babysit` resumes it.");
    }
  } catch (e) {
    out.className = "error";
    out.textContent = "not sent: " + e.message;
  }
}

function trialPage() {
  const name = params.get("study") || "";
  const number = Number.parseInt(params.get("trial") || "", 10);
  document.title = "shoal: " + name + " trial " + number;
  $("title").textContent = "trial " + number;
  $("study-link").textContent = name;
  $("study-link").href = studyHref(name);
  api("/api/info").then((i) => {
    $("token-row").hidden = !(i.token_required && !sessionStorage.getItem("shoal-token"));
  }).catch(() => {});
  const out = $("control-result");
  $("set-lr").addEventListener("click", () => {
    const v = Number.parseFloat($("lr").value);
    sendControl(name, number, { what: "set_lr", value: v }, out);
  });
  for (const b of document.querySelectorAll("#controls button[data-what]")) {
    b.addEventListener("click", () => {
      const body = { what: b.dataset.what };
      if (b.dataset.value) body.value = Number.parseFloat(b.dataset.value);
      sendControl(name, number, body, out);
    });
  }
  $("fork-go").addEventListener("click", () => {
    const body = { what: "fork", epoch: Number.parseInt($("fork-epoch").value, 10) };
    const lr = Number.parseFloat($("fork-lr").value);
    if (!Number.isNaN(lr)) body.params = { lr };
    sendControl(name, number, body, $("fork-result"));
  });
  let epochsShown = "";
  poll(async () => {
    const t = await api("/api/trial?study=" + encodeURIComponent(name) + "&trial=" + number);
    const last = t.intermediate.values.length ? t.intermediate.values[t.intermediate.values.length - 1] : null;
    const bits = [t.state];
    if (t.objectives.length > 1 && t.values.length) bits.push(t.objectives.map((o, i) => o + " " + fmt(t.values[i])).join(", "));
    else bits.push(t.metric + " " + fmt(t.value !== null ? t.value : last) + (t.value === null && last !== null ? " (last epoch)" : ""));
    bits.push("epoch " + t.epoch);
    if (t.feasible === false) bits.push("infeasible" + (t.infeasible_before_training ? " (not trained: " + t.infeasible_before_training + ")" : ""));
    if (t.seconds !== null) bits.push(fmt(t.seconds) + " s");
    if (t.device) bits.push(t.device);
    if (t.fail_reason) bits.push("failed: " + t.fail_reason);
    $("summary").textContent = bits.join(" · ");
    $("summary").className = "note state-" + t.state;
    $("controls").hidden = !(t.babysat && t.state === "running");
    $("alive").textContent = t.alive ? "A trainer is working on this trial." : "No trainer is running it now (commands wait for `shoal babysit` to resume it).";
    $("fig-empty").hidden = draw("fig-trial", t.figure) !== false;
    $("events-empty").hidden = t.events.length > 0;
    fillRows($("events"), t.events.map((e) => [e.what, e.value, e.epoch, e.step, e.lr, e.source || (e.id ? "control" : "")]));
    fillRows($("config"), Object.entries(t.config || {}).map(([k, v]) => [k, fmt(v)]));
    const lin = $("lineage");
    lin.replaceChildren();
    if (t.lineage.parent !== null) {
      lin.append("forked from trial ", link(String(t.lineage.parent), trialHref(name, t.lineage.parent)));
      const f = t.lineage.fork || t.lineage.pbt || {};
      const at = f.parent_epoch !== undefined ? f.parent_epoch : f.start_epoch;
      if (at !== undefined) lin.append(" after epoch " + at);
      if (f.changes && Object.keys(f.changes).length) lin.append(" with " + configText(f.changes));
      if (t.lineage.ancestors.length > 1) lin.append("; ancestors " + t.lineage.ancestors.join(" ← "));
      lin.append(". ");
    }
    if (t.lineage.children.length) {
      lin.append("Forks of this trial: ");
      t.lineage.children.forEach((c, i) => { if (i) lin.append(", "); lin.append(link(String(c), trialHref(name, c))); });
      lin.append(". ");
    }
    if (t.lineage.pbt && t.lineage.pbt.replaced_by !== undefined && t.lineage.pbt.replaced_by !== null) {
      lin.append("Replaced at epoch " + t.lineage.pbt.at_epoch + " by trial ", link(String(t.lineage.pbt.replaced_by), trialHref(name, t.lineage.pbt.replaced_by)), ".");
    }
    if (!lin.childNodes.length) lin.textContent = "No parent and no fork.";
    fillRows($("schedule"), (Array.isArray(t.schedule) ? t.schedule : []).map((s) => [s.from_epoch, s.seed, configText(s.config)]));
    fillRows($("trial-rungs"), (Array.isArray(t.rungs) ? t.rungs : []).map((r) => [r.epoch, r.value, r.rank + " of " + r.of, r.kept ? "promoted" : "stopped"]));
    $("ckpt-folder").textContent = t.checkpoint_folder ? "in " + t.checkpoint_folder : "";
    $("ckpt-empty").hidden = t.checkpoints.length > 0;
    fillRows($("checkpoints"), t.checkpoints.map((c) => [c.epoch, c.step, c.name, Math.round(c.bytes / 1024) + " KiB"]));
    const epochs = [...new Set(t.checkpoints.filter((c) => c.step === 0).map((c) => c.epoch))];
    $("fork").hidden = !(t.babysat && epochs.length);
    if (epochs.join(",") !== epochsShown) {  // keep the user's choice while the list is unchanged
      epochsShown = epochs.join(",");
      $("fork-epoch").replaceChildren(...epochs.map((e) => { const o = el("option", String(e)); o.value = e; return o; }));
      if (epochs.length) $("fork-epoch").value = epochs[epochs.length - 1];
    }
  });
}

({ index: indexPage, study: studyPage, trial: trialPage })[document.body.dataset.page]();
