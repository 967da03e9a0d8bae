// Settings → Langflow API: list, create (shown once) and delete API keys over /api/v1/api_key/.
"use strict";

(() => {
  const { api, el } = FG;
  const $ = (id) => document.getElementById(id);

  const table = $("keys-table");
  const tbody = $("keys-body");
  const empty = $("keys-empty");
  const listError = $("keys-error");
  const selectAll = $("select-all");
  const deleteButton = $("delete-selected");
  const addButton = $("add-key");

  const createDialog = $("create-dialog");
  const createForm = $("create-form");
  const createError = $("create-error");
  const nameInput = $("key-name");
  const expiryInput = $("key-expiry");

  const keyDialog = $("key-dialog");
  const newKey = $("new-key");
  const copyButton = $("copy-key");
  const copyStatus = $("copy-status");

  const confirmDialog = $("confirm-dialog");
  const confirmText = $("confirm-text");
  const confirmList = $("confirm-list");
  const confirmError = $("confirm-error");
  const confirmButton = $("confirm-delete");

  let keys = [];
  const selected = new Set();

  /** What a screen reader hears for a key: its name, else its visible prefix. */
  const labelOf = (key) => key.name || key.api_key.slice(0, 8);

  async function load() {
    table.setAttribute("aria-busy", "true");
    try {
      const data = await api("GET", "/api/v1/api_key/");
      keys = data.api_keys || [];
      FG.showError(listError, "");
    } catch (e) {
      FG.showError(listError, `Could not load your API keys: ${e.message}`);
      return;
    } finally {
      table.setAttribute("aria-busy", "false");
    }
    const ids = new Set(keys.map((k) => k.id));
    for (const id of [...selected]) if (!ids.has(id)) selected.delete(id);
    render();
  }

  function expiresCell(key) {
    const date = FG.parseDate(key.expires_at);
    if (!date) return el("span", { class: "muted", text: "Never" });
    if (date.getTime() <= Date.now()) return el("span", { class: "badge danger", text: "Expired" });
    return FG.dateCell(key.expires_at);
  }

  function row(key) {
    const checkbox = el("input", {
      type: "checkbox",
      checked: selected.has(key.id),
      "aria-label": `Select key ${labelOf(key)}`,
      onchange: () => {
        if (checkbox.checked) selected.add(key.id);
        else selected.delete(key.id);
        updateSelection();
      },
    });
    const masked = key.api_key.slice(0, 8) + "•".repeat(8);
    const tr = el(
      "tr",
      { "data-id": key.id, class: selected.has(key.id) ? "selected" : "" },
      el("td", { class: "col-check" }, checkbox),
      el(
        "td",
        { class: "cell-name" },
        key.name ? el("span", { title: key.name }, key.name) : el("span", { class: "muted", text: "Untitled" }),
      ),
      el("td", { class: "cell-key" }, el("code", { class: "mono", title: "The full key was shown once, when it was created" }, masked)),
      el("td", {}, FG.dateCell(key.created_at)),
      el("td", {}, FG.relativeCell(key.last_used_at)),
      el("td", { class: "num" }, String(key.total_uses ?? 0)),
      el("td", {}, expiresCell(key)),
    );
    // A click anywhere on the row toggles it, like the checkbox.
    tr.addEventListener("click", (event) => {
      if (event.target !== checkbox) checkbox.click();
    });
    return tr;
  }

  function render() {
    tbody.replaceChildren(...keys.map(row));
    table.hidden = keys.length === 0;
    empty.hidden = keys.length !== 0;
    updateSelection();
  }

  function updateSelection() {
    const count = selected.size;
    deleteButton.disabled = count === 0;
    deleteButton.title = count ? `Delete ${count} selected key${count === 1 ? "" : "s"}` : "Select keys to delete";
    selectAll.disabled = keys.length === 0;
    selectAll.checked = keys.length > 0 && count === keys.length;
    selectAll.indeterminate = count > 0 && count < keys.length;
    for (const tr of tbody.children) tr.classList.toggle("selected", selected.has(tr.dataset.id));
  }

  selectAll.addEventListener("change", () => {
    if (selectAll.checked) for (const k of keys) selected.add(k.id);
    else selected.clear();
    for (const box of tbody.querySelectorAll('input[type="checkbox"]')) box.checked = selectAll.checked;
    updateSelection();
  });

  // ---- create ------------------------------------------------------------------------------
  addButton.addEventListener("click", () => {
    createForm.reset();
    FG.showError(createError, "");
    nameInput.removeAttribute("aria-invalid");
    FG.openDialog(createDialog, nameInput);
  });

  createForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const submit = createForm.querySelector('button[type="submit"]');
    const body = {};
    const name = nameInput.value.trim();
    if (name) body.name = name;
    const days = Number(expiryInput.value);
    if (days > 0) body.expires_at = new Date(Date.now() + days * 86400000).toISOString();
    FG.setBusy(submit, true);
    try {
      const created = await api("POST", "/api/v1/api_key/", body);
      createDialog.fgOpener = null;
      createDialog.close();
      showKey(created.api_key);
      load();
    } catch (e) {
      FG.showError(createError, e.message);
      nameInput.setAttribute("aria-invalid", "true");
      nameInput.focus();
    } finally {
      FG.setBusy(submit, false);
    }
  });

  // ---- the key, shown once -------------------------------------------------------------------
  function showKey(key) {
    newKey.value = key;
    copyStatus.textContent = "";
    copyButton.querySelector("span").textContent = "Copy";
    FG.openDialog(keyDialog, copyButton);
    keyDialog.fgOpener = addButton;
  }

  copyButton.addEventListener("click", async () => {
    let copied = false;
    try {
      await navigator.clipboard.writeText(newKey.value);
      copied = true;
    } catch {
      newKey.select();
      copied = document.execCommand && document.execCommand("copy");
    }
    if (copied) {
      copyStatus.textContent = "Copied to the clipboard.";
      copyButton.querySelector("span").textContent = "Copied";
    } else {
      newKey.select();
      copyStatus.textContent = "Copying is blocked here: the key is selected, press Ctrl+C (⌘C) to copy it.";
    }
  });

  newKey.addEventListener("focus", () => newKey.select());

  // Once closed, the key is gone from the page too. Cleared before the dialog closes (Done,
  // Escape), not only on its later "close" event, so nothing can read it in between.
  const forgetKey = () => {
    newKey.value = "";
  };
  for (const button of keyDialog.querySelectorAll("[data-close]")) {
    button.addEventListener("click", forgetKey, { capture: true });
  }
  keyDialog.addEventListener("cancel", forgetKey);
  keyDialog.addEventListener("close", forgetKey);

  // ---- delete ------------------------------------------------------------------------------
  deleteButton.addEventListener("click", () => {
    const chosen = keys.filter((k) => selected.has(k.id));
    if (chosen.length === 0) return;
    const one = chosen.length === 1;
    $("confirm-title").textContent = one ? "Delete this API key?" : `Delete ${chosen.length} API keys?`;
    confirmText.textContent = `Apps that use ${one ? "it" : "them"} stop working immediately. This cannot be undone.`;
    confirmList.replaceChildren(...chosen.map((k) => el("li", {}, labelOf(k))));
    FG.showError(confirmError, "");
    FG.openDialog(confirmDialog);
  });

  confirmButton.addEventListener("click", async () => {
    FG.setBusy(confirmButton, true);
    const failures = [];
    let deleted = 0;
    for (const id of [...selected]) {
      try {
        await api("DELETE", `/api/v1/api_key/${encodeURIComponent(id)}`);
        selected.delete(id);
        deleted += 1;
      } catch (e) {
        failures.push(e.message);
      }
    }
    FG.setBusy(confirmButton, false);
    await load();
    if (failures.length) {
      FG.showError(confirmError, `${failures.length} could not be deleted: ${failures[0]}`);
      return;
    }
    confirmDialog.fgOpener = addButton;
    confirmDialog.close();
    FG.toast(`Deleted ${deleted} API key${deleted === 1 ? "" : "s"}.`);
  });

  load();
})();
