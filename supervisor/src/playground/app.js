// The Omni playground: edits a policy and a context, sends them to
// POST /api/validate (with options.trace) and shows the diagnostics on their
// lines, the fired actions, each rule's outcome and the trace. No
// dependencies; talks only to this origin.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const policy = $("policy");
  const context = $("context");
  const gutter = $("gutter");
  const backdrop = $("backdrop");
  const exampleSelect = $("example");
  const strict = $("strict");
  const nowInput = $("now");
  const token = $("token");
  const summary = $("summary");
  const contextError = $("context-error");
  const diagnosticsList = $("diagnostics");
  const actionsList = $("actions");
  const rulesBody = document.querySelector("#rules tbody");
  const defaultsLine = $("defaults");
  const traceBox = $("trace");
  const meta = $("meta");
  const cursor = $("cursor");

  // Layout constants shared with style.css (.editor line-height, paddings).
  const LINE = 20;
  const PAD_TOP = 6;
  const PAD_LEFT = 10;
  const DEBOUNCE_MS = 350;

  let examples = [];
  let marks = new Map(); // line -> {severity, messages}
  let squiggles = []; // {line, column, endLine, endColumn, severity}
  let currentLine = 0;
  let seq = 0;
  let inflight = null;
  let timer = null;

  // ---- small DOM helpers (no HTML strings anywhere) -------------------

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function emptyItem(text) {
    return el("li", "empty", text);
  }

  function plural(n, word) {
    return n + " " + word + (n === 1 ? "" : "s");
  }

  const RANK = { info: 1, warning: 2, error: 3 };

  // ---- the policy editor: line numbers, markers, highlights ------------

  function lines() {
    return policy.value.split("\n");
  }

  function renderGutter() {
    const n = lines().length;
    const inner = el("div", "gutter-inner");
    for (let i = 1; i <= n; i++) {
      const d = el("div", "ln", i);
      d.dataset.line = String(i);
      const m = marks.get(i);
      if (m) {
        d.classList.add(m.severity);
        d.title = m.messages.join("\n");
      }
      inner.appendChild(d);
    }
    gutter.replaceChildren(inner);
    renderBackdrop();
    syncScroll();
  }

  function renderBackdrop() {
    const text = lines();
    const inner = el("div", "backdrop-inner");
    const add = (line, cls) => {
      const h = el("div", "hl " + cls);
      h.dataset.line = String(line);
      h.style.top = PAD_TOP + (line - 1) * LINE + "px";
      inner.appendChild(h);
    };
    for (const [line, m] of marks) {
      if (m.severity !== "info") add(line, m.severity);
    }
    if (currentLine) add(currentLine, "current");
    for (const s of squiggles) {
      if (!s.line || !s.column || s.line > text.length) continue;
      const lineText = text[s.line - 1];
      let end = s.endLine === s.line && s.endColumn ? s.endColumn : lineText.length + 1;
      const width = Math.max(1, end - s.column);
      const q = el("div", "squiggle " + s.severity);
      q.style.top = PAD_TOP + s.line * LINE + "px";
      q.style.left = "calc(" + PAD_LEFT + "px + " + (s.column - 1) + "ch)";
      q.style.width = width + "ch";
      inner.appendChild(q);
    }
    backdrop.replaceChildren(inner);
  }

  function syncScroll() {
    const g = gutter.firstChild;
    if (g) g.style.transform = "translateY(" + -policy.scrollTop + "px)";
    const b = backdrop.firstChild;
    if (b) {
      b.style.transform = "translate(" + -policy.scrollLeft + "px, " + -policy.scrollTop + "px)";
    }
  }

  function updateCursor() {
    const before = policy.value.slice(0, policy.selectionStart);
    const ls = before.split("\n");
    cursor.textContent = ls.length + ":" + (ls[ls.length - 1].length + 1);
  }

  function offsetOf(line, column) {
    const ls = lines();
    let off = 0;
    for (let i = 0; i < Math.min(line - 1, ls.length); i++) off += ls[i].length + 1;
    const lineLen = ls[Math.min(line, ls.length) - 1] ? ls[Math.min(line, ls.length) - 1].length : 0;
    return off + Math.min(Math.max((column || 1) - 1, 0), lineLen);
  }

  function jumpTo(line, column, endLine, endColumn) {
    if (!line) return;
    const start = offsetOf(line, column || 1);
    const end = endLine && endColumn ? offsetOf(endLine, endColumn) : start;
    policy.focus();
    policy.setSelectionRange(start, Math.max(start, end));
    policy.scrollTop = Math.max(0, (line - 1) * LINE - policy.clientHeight / 3);
    currentLine = line;
    renderBackdrop();
    syncScroll();
    updateCursor();
  }

  function lineButton(line, label) {
    const b = el("button", "linkish", label || "line " + line);
    b.type = "button";
    b.addEventListener("click", () => jumpTo(line, 1));
    return b;
  }

  // ---- values ------------------------------------------------------------

  function fmt(v) {
    if (v && typeof v === "object" && !Array.isArray(v)) {
      const keys = Object.keys(v);
      if (keys.length === 2 && "value" in v && "unit" in v) return v.value + v.unit;
    }
    let s = JSON.stringify(v);
    if (s === undefined) s = String(v);
    return s.length > 160 ? s.slice(0, 157) + "…" : s;
  }

  // ---- result rendering --------------------------------------------------

  function setSummary(state, text) {
    summary.dataset.state = state;
    summary.textContent = text;
  }

  function clearResults() {
    marks = new Map();
    squiggles = [];
    diagnosticsList.replaceChildren();
    actionsList.replaceChildren();
    rulesBody.replaceChildren();
    defaultsLine.textContent = "";
    traceBox.replaceChildren();
    meta.textContent = "";
    policy.removeAttribute("aria-invalid");
  }

  function showFailure(text) {
    clearResults();
    setSummary("failed", text);
    diagnosticsList.appendChild(emptyItem("No result."));
    renderGutter();
  }

  function diagnosticItem(d) {
    const li = el("li");
    const b = el("button", "diag " + d.severity);
    b.type = "button";
    const add = (node) => {
      if (b.firstChild) b.appendChild(document.createTextNode(" "));
      b.appendChild(node);
    };
    if (d.line) {
      b.dataset.line = String(d.line);
      add(el("span", "pos", d.column ? d.line + ":" + d.column : "line " + d.line));
    }
    add(el("span", "sev", d.severity));
    if (d.code) add(el("span", "dcode", d.code));
    add(el("span", "msg", d.message));
    if (d.hint) b.appendChild(el("span", "dhint", "hint: " + d.hint));
    if (d.rule === "SCHEMA") b.appendChild(el("span", "dhint", "the context against its SCHEMA declaration"));
    else if (d.rule) b.appendChild(el("span", "dhint", "while evaluating " + d.rule));
    b.addEventListener("click", () => jumpTo(d.line, d.column, d.endLine, d.endColumn));
    li.appendChild(b);
    return li;
  }

  function render(data, contextNote) {
    clearResults();
    const decision = data.decision || null;
    const diags = []
      .concat(data.errors || [], data.warnings || [])
      .concat(
        ((decision && decision.warnings) || []).map((w) => ({
          severity: "warning",
          code: w.code,
          message: w.message,
          line: w.line,
          rule: w.rule,
        }))
      );
    diags.sort((a, b) => (a.line || 0) - (b.line || 0) || (a.column || 0) - (b.column || 0));

    for (const d of diags) {
      if (!d.line) continue;
      const m = marks.get(d.line);
      const text = (d.column ? d.line + ":" + d.column + " " : "") + d.severity + ": " + d.message;
      if (!m) {
        marks.set(d.line, { severity: d.severity, messages: [text] });
      } else {
        m.messages.push(text);
        if ((RANK[d.severity] || 0) > (RANK[m.severity] || 0)) m.severity = d.severity;
      }
      if (d.column && d.severity !== "info") squiggles.push(d);
    }
    for (const d of diags) diagnosticsList.appendChild(diagnosticItem(d));
    if (!diags.length) diagnosticsList.appendChild(emptyItem("No problems."));

    const nErr = (data.errors || []).length;
    const nWarn = diags.length - nErr;
    const warnText = nWarn ? ", " + plural(nWarn, "warning") : "";
    if (!data.ok) {
      policy.setAttribute("aria-invalid", "true");
      setSummary("errors", plural(nErr, "error") + warnText + " — not evaluated.");
    } else if (decision) {
      setSummary("ok", "OK — " + plural(decision.actions.length, "action") + " fired" + warnText + ".");
    } else {
      setSummary(
        "ok",
        "OK — checked" + warnText + "; " + (contextNote ? "fix the context" : "add a context") + " to evaluate."
      );
    }

    // Actions.
    if (!decision) {
      actionsList.appendChild(emptyItem("Not evaluated."));
    } else if (!decision.actions.length) {
      actionsList.appendChild(emptyItem("No action fired."));
    } else {
      for (const a of decision.actions) {
        const li = el("li");
        li.dataset.name = a.name;
        const args = (a.args || []).map(fmt).join(", ");
        li.appendChild(el("span", "aname", a.name + (a.args && a.args.length ? "(" + args + ")" : "")));
        if (a.count > 1) li.appendChild(el("span", "count", "×" + a.count));
        const from = el("span", "from", "rule " + a.rule + ", ");
        from.appendChild(lineButton(a.line));
        const b = Object.entries(a.bindings || {});
        if (b.length) from.appendChild(document.createTextNode(", " + b.map(([k, v]) => k + " = " + v).join(", ")));
        li.appendChild(from);
        actionsList.appendChild(li);
      }
    }

    // Rules: the static list with the decision's outcomes.
    const outcomes = new Map(((decision && decision.rules) || []).map((r) => [r.id, r]));
    for (const r of data.rules || []) {
      const o = outcomes.get(r.id);
      const tr = el("tr");
      tr.dataset.rule = r.id;
      tr.appendChild(el("th", "rid", r.id)).scope = "row";
      const tdLine = el("td");
      tdLine.appendChild(lineButton(r.line, String(r.line)));
      tdLine.firstChild.setAttribute("aria-label", "go to line " + r.line);
      tr.appendChild(tdLine);
      tr.appendChild(el("td", "cond", r.condition));
      const tdOut = el("td");
      if (o) {
        tdOut.appendChild(el("span", "outcome " + o.outcome, o.outcome.replace("_", " ")));
      } else {
        tdOut.appendChild(el("span", "muted", "—"));
      }
      tr.appendChild(tdOut);
      const evals = o ? (o.kind === "for" ? plural(o.iterations || 0, "iteration") : o.evaluations) : "";
      tr.appendChild(el("td", "num", evals === undefined ? "" : evals));
      tr.appendChild(el("td", "num", o && o.fired !== undefined ? o.fired : ""));
      rulesBody.appendChild(tr);
    }
    if (!(data.rules || []).length) {
      const tr = el("tr");
      const td = el("td", "empty", "No rules.");
      td.colSpan = 6;
      tr.appendChild(td);
      rulesBody.appendChild(tr);
    }

    if (decision && decision.defaults && decision.defaults.length) {
      defaultsLine.textContent = "Policy defaults used (not in the context): " + decision.defaults.join(", ");
    }

    renderTrace(decision);

    const t = data.timings || {};
    meta.textContent =
      (data.policyId ? data.policyId.slice(0, 19) + "…" : "") +
      (data.engine ? " · " + data.engine : "") +
      (t.totalUs !== undefined ? " · " + (t.totalUs / 1000).toFixed(1) + " ms" : "") +
      (data.requestId ? " · request " + data.requestId : "");
    renderGutter();
  }

  function traceNode(n) {
    const li = el("li");
    li.appendChild(el("span", "expr", n.expr));
    li.appendChild(document.createTextNode(" = "));
    const cls = n.value === true ? "val true" : n.value === false ? "val false" : "val";
    li.appendChild(el("span", cls, fmt(n.value)));
    if (n.error) li.appendChild(el("span", "error-text", " (" + fmt(n.error) + ")"));
    if (n.children && n.children.length) {
      const ul = el("ul");
      for (const c of n.children) ul.appendChild(traceNode(c));
      li.appendChild(ul);
    }
    return li;
  }

  function renderTrace(decision) {
    const entries = (decision && decision.trace) || [];
    if (!entries.length) {
      traceBox.appendChild(el("p", "empty", decision ? "No conditions were evaluated." : "Not evaluated."));
      return;
    }
    const ul = el("ul");
    for (const e of entries) {
      const li = el("li", "entry");
      li.appendChild(el("span", "rule", e.rule));
      li.appendChild(document.createTextNode(" "));
      li.appendChild(lineButton(e.line));
      const b = Object.entries(e.bindings || {});
      if (b.length) li.appendChild(document.createTextNode(" · " + b.map(([k, v]) => k + " = " + v).join(", ")));
      if (e.condition) {
        const inner = el("ul");
        inner.appendChild(traceNode(e.condition));
        li.appendChild(inner);
      }
      ul.appendChild(li);
    }
    traceBox.appendChild(ul);
  }

  // ---- talking to the service -------------------------------------------

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(validate, DEBOUNCE_MS);
  }

  async function validate() {
    clearTimeout(timer);
    const my = ++seq;
    if (inflight) inflight.abort();
    inflight = new AbortController();

    if (!policy.value.trim()) {
      clearResults();
      contextError.textContent = "";
      setSummary("idle", "Type a policy or choose an example.");
      renderGutter();
      return;
    }
    const body = { code: policy.value, options: { trace: true, strict: strict.checked } };
    let contextNote = "";
    const ctxText = context.value.trim();
    if (ctxText) {
      try {
        const v = JSON.parse(ctxText);
        if (v === null || typeof v !== "object" || Array.isArray(v)) {
          throw new Error("it must be a JSON object");
        }
        // Sent as the text itself, so numbers keep every digit.
        body.context = ctxText;
      } catch (e) {
        contextNote = "Invalid context (" + e.message + "); the policy is checked without it.";
      }
    }
    contextError.textContent = contextNote;
    if (contextNote) context.setAttribute("aria-invalid", "true");
    else context.removeAttribute("aria-invalid");
    const now = nowInput.value.trim();
    if (now) body.now = now;
    const headers = { "Content-Type": "application/json" };
    if (token.value.trim()) headers.Authorization = "Bearer " + token.value.trim();

    summary.dataset.state = "busy";
    let resp;
    let data = null;
    try {
      resp = await fetch("/api/validate", {
        method: "POST",
        headers,
        body: JSON.stringify(body),
        signal: inflight.signal,
        cache: "no-store",
        credentials: "omit",
        referrerPolicy: "no-referrer",
      });
      data = await resp.json().catch(() => null);
    } catch (e) {
      if (my !== seq || (e && e.name === "AbortError")) return;
      showFailure("The service did not answer (" + e.message + ").");
      return;
    }
    if (my !== seq) return;
    if (!resp.ok || !data || data.error) {
      const err = (data && data.error) || {};
      showFailure(
        "Request failed: " + resp.status + (err.code ? " " + err.code : "") + (err.message ? " — " + err.message : "")
      );
      return;
    }
    render(data, contextNote);
  }

  // ---- examples ------------------------------------------------------------

  function loadExample(name) {
    const ex = examples.find((e) => e.name === name);
    if (!ex) return;
    policy.value = ex.code;
    context.value = ex.context;
    strict.checked = ex.strict;
    nowInput.value = ex.now || "";
    policy.scrollTop = 0;
    policy.setSelectionRange(0, 0);
    currentLine = 0;
    clearResults();
    renderGutter();
    updateCursor();
    validate();
  }

  async function loadExamples() {
    try {
      const r = await fetch("/playground/examples.json", { cache: "no-store", credentials: "omit" });
      examples = await r.json();
    } catch (e) {
      examples = [];
    }
    for (const ex of examples) {
      const o = el("option", null, ex.title);
      o.value = ex.name;
      exampleSelect.appendChild(o);
    }
    exampleSelect.dataset.loaded = "true";
    if (examples.length && !policy.value.trim()) {
      exampleSelect.value = examples[0].name;
      loadExample(examples[0].name);
    }
  }

  // ---- wiring --------------------------------------------------------------

  policy.addEventListener("input", () => {
    currentLine = 0;
    renderGutter();
    updateCursor();
    schedule();
  });
  policy.addEventListener("scroll", syncScroll);
  for (const ev of ["keyup", "click", "select", "focus"]) policy.addEventListener(ev, updateCursor);
  context.addEventListener("input", schedule);
  nowInput.addEventListener("input", schedule);
  strict.addEventListener("change", validate);
  token.addEventListener("change", validate);
  exampleSelect.addEventListener("change", () => loadExample(exampleSelect.value));
  $("run").addEventListener("click", validate);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      validate();
    }
  });

  renderGutter();
  loadExamples();
})();
