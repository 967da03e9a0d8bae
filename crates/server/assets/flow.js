// One flow: its graph drawn as SVG from the flow JSON, its problems, the Endpoint Name setting
// (PATCH /api/v1/flows/{id}), ready-to-copy API snippets, and a playground that runs the flow
// through POST /api/v1/run/{id}?stream=true with a short-lived key limited to this flow
// (docs/ui.md "The playground").
"use strict";

(() => {
  const { api, el } = FG;
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";

  const flowId = $("flow-page").dataset.flowId;
  let flow = null;

  const plural = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

  // ---- loading ---------------------------------------------------------------------------------
  async function load() {
    try {
      flow = await api("GET", `/api/v1/flows/${encodeURIComponent(flowId)}`);
    } catch (e) {
      FG.showError($("flow-error"), `Could not load this flow: ${e.message}`);
      $("graph").setAttribute("aria-busy", "false");
      return;
    }
    renderHeader();
    renderGraph();
    renderProblems();
    renderEndpoint();
    renderSnippets();
  }

  function problems() {
    return Array.isArray(flow.problems) ? flow.problems : [];
  }

  function nodes() {
    const list = flow.data && Array.isArray(flow.data.nodes) ? flow.data.nodes : [];
    return list.filter((n) => n && n.id && n.type !== "noteNode" && n.data?.type !== "note");
  }

  function edges() {
    return flow.data && Array.isArray(flow.data.edges) ? flow.data.edges.filter((e) => e && e.source && e.target) : [];
  }

  function nodeName(node) {
    return node?.data?.node?.display_name || node?.data?.type || node?.id || "";
  }

  function renderHeader() {
    document.title = `${flow.name} · flowgate`;
    $("page-title").textContent = flow.name;
    const description = $("flow-description");
    description.textContent = flow.description || "";
    description.hidden = !flow.description;
    const meta = $("flow-meta");
    const count = problems().length;
    meta.replaceChildren(
      count
        ? el("span", { class: "badge danger", text: plural(count, "problem") })
        : el("span", { class: "badge ok", text: "Runnable" }),
      el("span", { class: "muted" }, "Updated ", FG.relativeCell(flow.updated_at, "—")),
      el("span", { class: "muted" }, "ID ", el("code", { class: "mono" }, flow.id)),
    );
  }

  // ---- graph -----------------------------------------------------------------------------------
  const BOX_H = 76;

  function svg(tag, attrs = {}, ...children) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) node.setAttribute(k, String(v));
    for (const c of children) if (c) node.append(c);
    return node;
  }

  function text(tag, attrs, content) {
    const node = svg(tag, attrs);
    node.textContent = content;
    return node;
  }

  function clip(s, max) {
    return s.length > max ? `${s.slice(0, max - 1)}…` : s;
  }

  function renderGraph() {
    const box = $("graph");
    box.setAttribute("aria-busy", "false");
    const list = nodes();
    const links = edges();
    $("graph-summary").textContent = `${plural(list.length, "component")}, ${plural(links.length, "connection")}`;
    if (list.length === 0) {
      box.replaceChildren(el("p", { class: "muted graph-empty", text: "This flow has no components." }));
      return;
    }
    const flagged = new Set(problems().map((p) => p.node_id).filter(Boolean));
    // Positions from the flow (Langflow's canvas coordinates); a node without one goes in a row.
    const laid = list.map((n, i) => {
      const x = Number(n.position?.x);
      const y = Number(n.position?.y);
      const width = Math.min(Math.max(Number(n.measured?.width || n.width) || 320, 200), 420);
      return {
        node: n,
        x: Number.isFinite(x) ? x : i * 400,
        y: Number.isFinite(y) ? y : 0,
        w: width,
        h: BOX_H,
      };
    });
    const byId = new Map(laid.map((l) => [l.node.id, l]));
    const pad = 24;
    const minX = Math.min(...laid.map((l) => l.x)) - pad;
    const minY = Math.min(...laid.map((l) => l.y)) - pad;
    const maxX = Math.max(...laid.map((l) => l.x + l.w)) + pad;
    const maxY = Math.max(...laid.map((l) => l.y + l.h)) + pad;
    const width = maxX - minX;
    const height = maxY - minY;

    const root = svg("svg", {
      class: "graph-svg",
      viewBox: `${minX} ${minY} ${width} ${height}`,
      role: "img",
      "aria-labelledby": "graph-title graph-summary",
    });
    root.append(
      svg(
        "defs",
        {},
        svg(
          "marker",
          { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
          svg("path", { d: "M0 0L10 5L0 10z", class: "edge-arrow" }),
        ),
      ),
    );
    const edgeLayer = svg("g", { class: "edges" });
    for (const e of links) {
      const a = byId.get(e.source);
      const b = byId.get(e.target);
      if (!a || !b) continue;
      const x1 = a.x + a.w;
      const y1 = a.y + a.h / 2;
      const x2 = b.x;
      const y2 = b.y + b.h / 2;
      const bend = Math.max(40, Math.abs(x2 - x1) / 2);
      edgeLayer.append(
        svg("path", {
          class: "edge",
          d: `M${x1} ${y1} C${x1 + bend} ${y1} ${x2 - bend} ${y2} ${x2} ${y2}`,
          "marker-end": "url(#arrow)",
        }),
      );
    }
    root.append(edgeLayer);
    const nodeLayer = svg("g", { class: "nodes" });
    for (const l of laid) {
      const name = nodeName(l.node);
      const type = l.node.data?.type || "";
      const bad = flagged.has(l.node.id);
      const chars = Math.floor((l.w - 40) / 9);
      const g = svg(
        "g",
        { class: bad ? "node has-problem" : "node", "data-id": l.node.id, transform: `translate(${l.x} ${l.y})` },
        text("title", {}, bad ? `${name} (${l.node.id}): has problems` : `${name} (${l.node.id})`),
        svg("rect", { class: "node-box", width: l.w, height: l.h, rx: 12 }),
        svg("rect", { class: "node-bar", width: 6, height: l.h - 24, x: 0, y: 12, rx: 3 }),
        text("text", { class: "node-name", x: 22, y: 33, "data-room": l.w - (bad ? 72 : 36) }, clip(name, chars)),
        text("text", { class: "node-type", x: 22, y: 56 }, clip(type === name ? l.node.id : type, Math.floor(chars * 1.25))),
      );
      if (bad) {
        g.append(
          svg("circle", { class: "node-flag", cx: l.w - 22, cy: 22, r: 11 }),
          text("text", { class: "node-flag-text", x: l.w - 22, y: 27, "text-anchor": "middle" }, "!"),
        );
      }
      nodeLayer.append(g);
    }
    root.append(nodeLayer);
    box.replaceChildren(root);
    fitNames(root);
    sizeGraph(width, height);
  }

  /** Shortens names that overflow their box (measured now that the SVG is in the page). */
  function fitNames(root) {
    for (const t of root.querySelectorAll(".node-name")) {
      const room = Number(t.dataset.room);
      const full = t.textContent;
      let keep = full.length;
      while (keep > 1 && t.getComputedTextLength() > room) {
        keep -= 1;
        t.textContent = `${full.slice(0, keep).trimEnd()}…`;
      }
    }
  }

  let graphSize = null;
  /** Natural size when it fits; scaled down to the panel, but never below 60% (then it scrolls). */
  function sizeGraph(width, height) {
    graphSize = [width, height];
    const root = $("graph").querySelector("svg");
    if (!root) return;
    const available = $("graph").clientWidth || width;
    const scale = Math.max(0.6, Math.min(1, available / width));
    root.setAttribute("width", String(Math.round(width * scale)));
    root.setAttribute("height", String(Math.round(height * scale)));
  }
  window.addEventListener("resize", () => graphSize && sizeGraph(...graphSize));

  function renderProblems() {
    const list = problems();
    $("problems-panel").hidden = list.length === 0;
    if (!list.length) return;
    $("problems-count").textContent = String(list.length);
    const byId = new Map(nodes().map((n) => [n.id, n]));
    $("problem-list").replaceChildren(
      ...list.map((p) => {
        const node = byId.get(p.node_id);
        const item = el(
          "li",
          { "data-node": p.node_id || "" },
          el("span", { class: "problem-node" }, node ? nodeName(node) : p.node_id || "Flow"),
          p.node_id ? el("code", { class: "mono" }, p.node_id) : null,
          el("span", { class: "problem-message" }, p.message || p.type || ""),
        );
        if (p.node_id) {
          item.addEventListener("mouseenter", () => highlight(p.node_id, true));
          item.addEventListener("mouseleave", () => highlight(p.node_id, false));
        }
        return item;
      }),
    );
  }

  function highlight(id, on) {
    const g = $("graph").querySelector(`g.node[data-id="${CSS.escape(id)}"]`);
    if (g) g.classList.toggle("focused", on);
  }

  // ---- endpoint name ---------------------------------------------------------------------------
  const endpointForm = $("endpoint-form");
  const endpointInput = $("endpoint-name");
  const endpointError = $("endpoint-error");
  const endpointSave = $("endpoint-save");

  function runPath() {
    return `/api/v1/run/${flow.endpoint_name || flow.id}`;
  }

  function renderEndpoint() {
    endpointInput.value = flow.endpoint_name || "";
    $("endpoint-url").textContent = runPath();
  }

  endpointInput.addEventListener("input", () => {
    FG.showError(endpointError, "");
    endpointInput.removeAttribute("aria-invalid");
  });

  endpointForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!flow) return;
    const value = endpointInput.value.trim();
    FG.setBusy(endpointSave, true);
    try {
      flow = await api("PATCH", `/api/v1/flows/${encodeURIComponent(flow.id)}`, { endpoint_name: value || null });
      FG.showError(endpointError, "");
      endpointInput.removeAttribute("aria-invalid");
      renderEndpoint();
      renderSnippets();
      renderHeader();
      FG.toast(value ? `Endpoint name saved: ${flow.endpoint_name}` : "Endpoint name removed.");
    } catch (e) {
      // pydantic-style 422s start with "Value error, "; the sentence after it is the message.
      FG.showError(endpointError, e.message.replace(/^Value error, /, ""));
      endpointInput.setAttribute("aria-invalid", "true");
      endpointInput.setAttribute("aria-errormessage", "endpoint-error");
      endpointInput.focus();
    } finally {
      FG.setBusy(endpointSave, false);
    }
  });

  // ---- API snippets ----------------------------------------------------------------------------
  function payload() {
    const tweaks = {};
    for (const n of nodes()) tweaks[n.id] = {};
    return { input_value: "hello", output_type: "chat", input_type: "chat", tweaks };
  }

  function snippets() {
    const url = `${location.origin}${runPath()}`;
    const body = payload();
    const shellQuote = (s) => `'${s.replace(/'/g, "'\\''")}'`;
    const curl = [
      "curl -X POST \\",
      `  ${shellQuote(url)} \\`,
      "  -H 'Content-Type: application/json' \\",
      "  -H 'x-api-key: YOUR_API_KEY' \\",
      `  -d ${shellQuote(JSON.stringify(body, null, 2).replace(/\n/g, "\n  "))}`,
    ].join("\n");
    // JSON of strings and objects only: valid Python and JavaScript as it is.
    const python = [
      "import requests",
      "",
      `url = ${JSON.stringify(url)}`,
      'headers = {"x-api-key": "YOUR_API_KEY"}',
      `payload = ${JSON.stringify(body, null, 4)}`,
      "",
      "response = requests.post(url, json=payload, headers=headers)",
      "response.raise_for_status()",
      'print(response.json()["outputs"][0]["outputs"][0]["results"]["message"]["text"])',
    ].join("\n");
    const js = [
      `const response = await fetch(${JSON.stringify(url)}, {`,
      '  method: "POST",',
      '  headers: { "Content-Type": "application/json", "x-api-key": "YOUR_API_KEY" },',
      `  body: JSON.stringify(${JSON.stringify(body, null, 2).replace(/\n/g, "\n  ")}),`,
      "});",
      "const data = await response.json();",
      "console.log(data.outputs[0].outputs[0].results.message.text);",
    ].join("\n");
    return { curl, python, js };
  }

  function renderSnippets() {
    const all = snippets();
    for (const [lang, code] of Object.entries(all)) $(`code-${lang}`).textContent = code;
  }

  const tabs = [...document.querySelectorAll('[role="tab"]')];
  function selectTab(tab) {
    for (const t of tabs) {
      const on = t === tab;
      t.setAttribute("aria-selected", String(on));
      t.tabIndex = on ? 0 : -1;
      $(t.getAttribute("aria-controls")).hidden = !on;
    }
  }
  for (const tab of tabs) {
    tab.addEventListener("click", () => selectTab(tab));
    tab.addEventListener("keydown", (event) => {
      const i = tabs.indexOf(tab);
      const to = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[event.key];
      if (to === undefined) return;
      event.preventDefault();
      const next = tabs[(to + tabs.length) % tabs.length];
      selectTab(next);
      next.focus();
    });
  }

  async function copyText(value) {
    try {
      await navigator.clipboard.writeText(value);
      return true;
    } catch {
      return false;
    }
  }

  for (const button of document.querySelectorAll(".copy-snippet")) {
    button.addEventListener("click", async () => {
      const code = $(button.dataset.copy);
      const label = button.querySelector("span");
      if (await copyText(code.textContent)) {
        label.textContent = "Copied";
        $("snippet-status").textContent = "Copied to the clipboard.";
        setTimeout(() => {
          label.textContent = "Copy";
        }, 2000);
      } else {
        window.getSelection().selectAllChildren(code);
        $("snippet-status").textContent = "Copying is blocked here: the code is selected, press Ctrl+C (⌘C) to copy it.";
        FG.toast("Copying is blocked here: press Ctrl+C (⌘C) to copy the selected code.");
      }
    });
  }

  // ---- playground ------------------------------------------------------------------------------
  // The run routes take API keys only. The page asks for a key that can only run this flow and
  // expires within the hour, keeps it in sessionStorage (this tab) and reuses it while valid.
  const KEY_LIFETIME_MS = 60 * 60 * 1000;
  const KEY_MARGIN_MS = 2 * 60 * 1000;
  const storageKey = `flowgate.playground.${flowId}`;
  const chatLog = $("chat-log");
  const chatForm = $("chat-form");
  const chatInput = $("chat-input");
  const chatSend = $("chat-send");
  const chatError = $("chat-error");
  let sessionId = "";
  let running = false;

  function newSession() {
    sessionId = crypto.randomUUID();
    $("session-id").textContent = sessionId;
    chatLog.replaceChildren($("chat-empty") || el("p", { class: "chat-empty muted", id: "chat-empty" }));
    $("chat-empty").hidden = false;
    FG.showError(chatError, "");
  }

  $("new-session").addEventListener("click", () => {
    newSession();
    chatInput.focus();
  });

  function storedKey() {
    try {
      const saved = JSON.parse(sessionStorage.getItem(storageKey) || "null");
      if (saved && saved.key && saved.expires > Date.now() + KEY_MARGIN_MS) return saved.key;
    } catch {
      // unreadable: make a new one
    }
    return null;
  }

  async function playgroundKey(fresh) {
    if (!fresh) {
      const key = storedKey();
      if (key) return key;
    }
    const expires = Date.now() + KEY_LIFETIME_MS;
    const until = new Intl.DateTimeFormat(undefined, { timeStyle: "short" }).format(new Date(expires));
    const created = await api("POST", "/api/v1/api_key/", {
      name: `Playground (auto, expires ${until}): ${clip(flow?.name || flowId, 80)}`,
      scope: "run",
      flows: [flowId],
      expires_at: new Date(expires).toISOString(),
    });
    try {
      sessionStorage.setItem(storageKey, JSON.stringify({ key: created.api_key, id: created.id, expires }));
    } catch {
      // storage full or disabled: the key still works for this page
    }
    pruneExpiredKeys();
    return created.api_key;
  }

  /** Deletes this user's expired playground keys, so they do not pile up in the key list. */
  async function pruneExpiredKeys() {
    try {
      const data = await api("GET", "/api/v1/api_key/");
      const now = Date.now();
      for (const k of data.api_keys || []) {
        const expired = k.expires_at && new Date(k.expires_at).getTime() <= now;
        if (expired && k.scope === "run" && String(k.name || "").startsWith("Playground (auto")) {
          await api("DELETE", `/api/v1/api_key/${encodeURIComponent(k.id)}`);
        }
      }
    } catch {
      // tidying up is best effort
    }
  }

  function bubble(role, content) {
    $("chat-empty").hidden = true;
    const body = el("div", { class: "bubble-text" }, content);
    const item = el("div", { class: `bubble ${role}` }, el("span", { class: "bubble-who", text: role === "user" ? "You" : "Flow" }), body);
    chatLog.append(item);
    chatLog.scrollTop = chatLog.scrollHeight;
    return body;
  }

  function finalText(result) {
    try {
      const message = result.outputs[0].outputs[0].results.message;
      return typeof message.text === "string" ? message.text : message.data?.text;
    } catch {
      return undefined;
    }
  }

  async function run(message, key) {
    return fetch(`/api/v1/run/${encodeURIComponent(flowId)}?stream=true`, {
      method: "POST",
      credentials: "omit",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream, application/json", "x-api-key": key },
      body: JSON.stringify({ input_value: message, input_type: "chat", output_type: "chat", session_id: sessionId }),
    });
  }

  async function errorOf(res) {
    let detail = "";
    try {
      const data = await res.json();
      detail = typeof data.detail === "string" ? data.detail : Array.isArray(data.detail) ? data.detail.map((d) => d.msg).join(" ") : "";
    } catch {
      // not JSON
    }
    return detail || `The server answered ${res.status}.`;
  }

  /** Reads `{"event": ..., "data": ...}` objects separated by blank lines as they arrive. */
  async function readEvents(res, onEvent) {
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    const flush = (final) => {
      let at;
      while ((at = buffer.search(/\r?\n\r?\n/)) >= 0) {
        const chunk = buffer.slice(0, at).trim();
        buffer = buffer.slice(at).replace(/^\r?\n\r?\n/, "");
        if (chunk) onEvent(JSON.parse(chunk.replace(/^data:\s*/, "")));
      }
      if (final && buffer.trim()) {
        onEvent(JSON.parse(buffer.trim().replace(/^data:\s*/, "")));
        buffer = "";
      }
    };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      flush(false);
    }
    buffer += decoder.decode();
    flush(true);
  }

  async function send(message) {
    running = true;
    FG.setBusy(chatSend, true);
    FG.showError(chatError, "");
    bubble("user", message);
    const reply = bubble("bot", "");
    reply.parentElement.classList.add("pending");
    let streamed = "";
    let done = false;
    try {
      let key = await playgroundKey(false);
      let res = await run(message, key);
      if (res.status === 403 || res.status === 401) {
        // The key was deleted or expired meanwhile: one fresh key, one retry.
        sessionStorage.removeItem(storageKey);
        key = await playgroundKey(true);
        res = await run(message, key);
      }
      if (!res.ok) throw new Error(await errorOf(res));
      await readEvents(res, (event) => {
        const data = event.data || {};
        if (event.event === "token" && typeof data.chunk === "string") {
          streamed += data.chunk;
          reply.textContent = streamed;
        } else if (event.event === "add_message") {
          const sender = data.sender || data.data?.sender;
          if (sender !== "User" && !streamed && typeof data.text === "string") reply.textContent = data.text;
        } else if (event.event === "end") {
          const text = finalText(data.result || {});
          if (typeof text === "string") reply.textContent = text;
          done = true;
        } else if (event.event === "error") {
          throw new Error(data.error || data.text || data.message || "The flow failed.");
        }
        chatLog.scrollTop = chatLog.scrollHeight;
      });
      if (!done && !reply.textContent) reply.textContent = "(no reply)";
    } catch (e) {
      reply.parentElement.classList.add("error");
      reply.textContent = e.message || String(e);
    } finally {
      reply.parentElement.classList.remove("pending");
      FG.setBusy(chatSend, false);
      running = false;
      chatLog.scrollTop = chatLog.scrollHeight;
    }
  }

  chatForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const message = chatInput.value.trim();
    if (!message || running || !flow) return;
    chatInput.value = "";
    send(message).then(() => chatInput.focus());
  });

  chatInput.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      chatForm.requestSubmit();
    }
  });

  newSession();
  load();
})();
