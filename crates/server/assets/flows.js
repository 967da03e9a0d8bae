// Flows: the user's flows over /api/v1/flows/ — list, search (in the page), import (file picker
// or drag-and-drop → POST /api/v1/flows/upload/) and delete after a confirmation.
"use strict";

(() => {
  const { api, el } = FG;
  const $ = (id) => document.getElementById(id);

  const pageNode = $("flows-page");
  const table = $("flows-table");
  const tbody = $("flows-body");
  const empty = $("flows-empty");
  const noMatch = $("flows-no-match");
  const listError = $("flows-error");
  const search = $("flow-search");
  const importButton = $("import-button");
  const fileInput = $("import-file");
  const importError = $("import-error");

  const confirmDialog = $("confirm-dialog");
  const confirmText = $("confirm-text");
  const confirmError = $("confirm-error");
  const confirmButton = $("confirm-delete");

  let flows = [];
  let loaded = false;
  let pendingDelete = null;

  const plural = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

  async function load() {
    table.setAttribute("aria-busy", "true");
    try {
      flows = (await api("GET", "/api/v1/flows/?header_flows=true")) || [];
      FG.showError(listError, "");
    } catch (e) {
      FG.showError(listError, `Could not load your flows: ${e.message}`);
      return;
    } finally {
      table.setAttribute("aria-busy", "false");
    }
    flows.sort((a, b) => String(b.updated_at || "").localeCompare(String(a.updated_at || "")));
    loaded = true;
    render();
  }

  function problemsCell(flow) {
    const count = Array.isArray(flow.problems) ? flow.problems.length : 0;
    if (count === 0) return el("span", { class: "badge ok", text: "Runnable" });
    const messages = flow.problems.map((p) => p.message).join("\n");
    return el("span", { class: "badge danger", title: messages, "data-problems": String(count) }, plural(count, "problem"));
  }

  function row(flow) {
    const href = `/flows/${encodeURIComponent(flow.id)}`;
    const del = el(
      "button",
      {
        type: "button",
        class: "btn small icon-only danger-ghost",
        "aria-label": `Delete ${flow.name}`,
        title: "Delete",
        onclick: () => askDelete(flow, del),
      },
    );
    del.append(trashIcon());
    return el(
      "tr",
      { "data-id": flow.id },
      el(
        "td",
        { class: "cell-name" },
        el("a", { href, class: "flow-link", title: flow.name }, flow.name),
        flow.is_component ? el("span", { class: "badge accent tag", text: "Component" }) : null,
      ),
      el(
        "td",
        { class: "cell-endpoint" },
        flow.endpoint_name ? el("code", { class: "mono" }, flow.endpoint_name) : el("span", { class: "muted", text: "—" }),
      ),
      el("td", {}, FG.relativeCell(flow.updated_at, "—")),
      el("td", {}, problemsCell(flow)),
      el("td", { class: "actions" }, del),
    );
  }

  function trashIcon() {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("class", "icon");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    for (const d of ["M3 6h18", "M19 6v14a2 2 0 0 1-2 2H7a2 2 0 0 1-2-2V6", "M8 6V4a2 2 0 0 1 2-2h4a2 2 0 0 1 2 2v2"]) {
      const path = document.createElementNS(ns, "path");
      path.setAttribute("d", d);
      svg.append(path);
    }
    return svg;
  }

  function matches(flow, query) {
    if (!query) return true;
    const hay = `${flow.name || ""}\n${flow.endpoint_name || ""}`.toLowerCase();
    return hay.includes(query);
  }

  function render() {
    if (!loaded) return;
    const query = search.value.trim().toLowerCase();
    const shown = flows.filter((f) => matches(f, query));
    tbody.replaceChildren(...shown.map(row));
    empty.hidden = flows.length !== 0;
    noMatch.hidden = flows.length === 0 || shown.length !== 0;
    table.hidden = shown.length === 0;
  }

  search.addEventListener("input", render);
  search.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && search.value) {
      search.value = "";
      render();
    }
  });

  // ---- import ----------------------------------------------------------------------------------
  async function importFiles(files) {
    const list = [...files];
    if (list.length === 0) return;
    FG.showError(importError, "");
    FG.setBusy(importButton, true);
    const imported = [];
    const failures = [];
    for (const file of list) {
      const form = new FormData();
      form.append("file", file, file.name);
      try {
        const saved = await api("POST", "/api/v1/flows/upload/", form);
        imported.push(...(Array.isArray(saved) ? saved : [saved]));
      } catch (e) {
        failures.push(`${file.name}: ${e.message}`);
      }
    }
    FG.setBusy(importButton, false);
    fileInput.value = "";
    if (failures.length) FG.showError(importError, `Could not import ${failures.join(" · ")}`);
    if (imported.length) {
      const withProblems = imported.filter((f) => Array.isArray(f.problems) && f.problems.length).length;
      let message = `Imported ${plural(imported.length, "flow")}.`;
      if (withProblems) message += ` ${withProblems} ${withProblems === 1 ? "has" : "have"} problems.`;
      FG.toast(message);
      await load();
      for (const f of imported) tbody.querySelector(`tr[data-id="${CSS.escape(f.id)}"]`)?.classList.add("fresh");
    }
  }

  importButton.addEventListener("click", () => fileInput.click());
  fileInput.addEventListener("change", () => importFiles(fileInput.files));

  // Drag and drop anywhere on the page.
  let dragDepth = 0;
  const hasFiles = (event) => [...(event.dataTransfer?.types || [])].includes("Files");
  document.addEventListener("dragenter", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    dragDepth += 1;
    pageNode.classList.add("dragging");
  });
  document.addEventListener("dragover", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
  });
  document.addEventListener("dragleave", (event) => {
    if (!hasFiles(event)) return;
    dragDepth = Math.max(0, dragDepth - 1);
    if (dragDepth === 0) pageNode.classList.remove("dragging");
  });
  document.addEventListener("drop", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    dragDepth = 0;
    pageNode.classList.remove("dragging");
    importFiles(event.dataTransfer.files);
  });

  // ---- delete ----------------------------------------------------------------------------------
  function askDelete(flow, opener) {
    pendingDelete = flow;
    $("confirm-title").textContent = "Delete this flow?";
    confirmText.replaceChildren(
      el("strong", {}, flow.name),
      " will be deleted. Apps that run it stop working immediately. This cannot be undone.",
    );
    FG.showError(confirmError, "");
    FG.openDialog(confirmDialog);
    confirmDialog.fgOpener = opener;
  }

  confirmButton.addEventListener("click", async () => {
    const flow = pendingDelete;
    if (!flow) return;
    FG.setBusy(confirmButton, true);
    try {
      await api("DELETE", `/api/v1/flows/${encodeURIComponent(flow.id)}`);
    } catch (e) {
      FG.showError(confirmError, e.message);
      return;
    } finally {
      FG.setBusy(confirmButton, false);
    }
    pendingDelete = null;
    confirmDialog.fgOpener = search;
    confirmDialog.close();
    FG.toast(`Deleted ${flow.name}.`);
    await load();
  });

  load();
})();
