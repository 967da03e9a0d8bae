// Settings → Global Variables: list, create, edit the value of and delete the user's variables
// over /api/v1/variables/. A Credential's value never comes back from the API (`value: null`)
// and is never shown: the table masks it and editing starts from an empty field.
"use strict";

(() => {
  const { api, el } = FG;
  const $ = (id) => document.getElementById(id);

  const CREDENTIAL = "Credential";
  const MASK = "••••••";

  const table = $("variables-table");
  const tbody = $("variables-body");
  const empty = $("variables-empty");
  const listError = $("variables-error");
  const addButton = $("add-variable");

  const createDialog = $("create-dialog");
  const createForm = $("create-form");
  const createError = $("create-error");
  const nameInput = $("variable-name");
  const typeInput = $("variable-type");
  const typeHint = $("variable-type-hint");
  const valueInput = $("variable-value");

  const editDialog = $("edit-dialog");
  const editForm = $("edit-form");
  const editWhich = $("edit-which");
  const editValue = $("edit-value");
  const editHint = $("edit-value-hint");
  const editError = $("edit-error");

  const confirmDialog = $("confirm-dialog");
  const confirmText = $("confirm-text");
  const confirmError = $("confirm-error");
  const confirmButton = $("confirm-delete");

  let variables = [];
  let editing = null;
  let pendingDelete = null;

  const isCredential = (v) => v.type === CREDENTIAL;
  const icon = (id) => $(id).content.firstElementChild.cloneNode(true);

  async function load() {
    table.setAttribute("aria-busy", "true");
    try {
      const data = await api("GET", "/api/v1/variables/");
      variables = Array.isArray(data) ? data : [];
      FG.showError(listError, "");
    } catch (e) {
      FG.showError(listError, `Could not load your variables: ${e.message}`);
      return false;
    } finally {
      table.setAttribute("aria-busy", "false");
    }
    render();
    return true;
  }

  function valueCell(v) {
    if (isCredential(v)) {
      // Whatever the API sent, a credential's value is never put in the page.
      if (v.has_value === false) return el("span", { class: "muted", text: "Empty" });
      return el(
        "span",
        { class: "masked", title: "Credential values are never shown" },
        el("span", { "aria-hidden": "true", text: MASK }),
        el("span", { class: "sr-only", text: "hidden" }),
      );
    }
    if (v.value === null || v.value === undefined || v.value === "") {
      return el("span", { class: "muted", text: "Empty" });
    }
    return el("code", { class: "mono cell-value-text", title: v.value }, v.value);
  }

  /** The type badge; narrow screens show it under the name instead of in its own column. */
  function typeBadge(v, extra = "") {
    const credential = isCredential(v);
    return el("span", { class: `badge ${credential ? "accent" : ""} ${extra}`.trim(), text: credential ? CREDENTIAL : "Generic" });
  }

  function row(v) {
    const edit = el("button", {
      type: "button",
      class: "btn small icon-only ghost",
      "aria-label": `Edit ${v.name}`,
      title: "Edit value",
      onclick: () => openEdit(v, edit),
    });
    edit.append(icon("icon-edit"));
    const del = el("button", {
      type: "button",
      class: "btn small icon-only danger-ghost",
      "aria-label": `Delete ${v.name}`,
      title: "Delete",
      onclick: () => askDelete(v, del),
    });
    del.append(icon("icon-trash"));
    return el(
      "tr",
      { "data-id": v.id },
      el("td", { class: "cell-name" }, el("span", { class: "var-name", title: v.name }, v.name), typeBadge(v, "type-inline")),
      el("td", { class: "col-type" }, typeBadge(v)),
      el("td", { class: "cell-value" }, valueCell(v)),
      el("td", { class: "actions" }, edit, del),
    );
  }

  function render() {
    tbody.replaceChildren(...variables.map(row));
    table.hidden = variables.length === 0;
    empty.hidden = variables.length !== 0;
  }

  function markFresh(id) {
    tbody.querySelector(`tr[data-id="${CSS.escape(id)}"]`)?.classList.add("fresh");
  }

  /** Puts the API's message under the form and marks the field it is about. */
  function formError(box, message, fields) {
    FG.showError(box, message);
    const lower = message.toLowerCase();
    let target = fields.name || fields.value;
    if (fields.value && /\bvalue\b/.test(lower) && !/\bname\b/.test(lower)) target = fields.value;
    if (fields.type && /\btype\b/.test(lower)) target = fields.type;
    for (const f of Object.values(fields)) f.removeAttribute("aria-invalid");
    target.setAttribute("aria-invalid", "true");
    target.focus();
  }

  function clearInvalid(...fields) {
    for (const f of fields) f.removeAttribute("aria-invalid");
  }

  // ---- create ------------------------------------------------------------------------------
  function syncType() {
    const credential = typeInput.value === CREDENTIAL;
    valueInput.type = credential ? "password" : "text";
    valueInput.autocomplete = credential ? "new-password" : "off";
    typeHint.textContent = credential
      ? "Encrypted when saved and never shown again."
      : "Stored as is and shown in the list.";
  }

  addButton.addEventListener("click", () => {
    createForm.reset();
    syncType();
    FG.showError(createError, "");
    clearInvalid(nameInput, typeInput, valueInput);
    FG.openDialog(createDialog, nameInput);
  });

  typeInput.addEventListener("change", syncType);

  createForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const submit = createForm.querySelector('button[type="submit"]');
    const body = { name: nameInput.value.trim(), type: typeInput.value, value: valueInput.value, default_fields: [] };
    FG.setBusy(submit, true);
    try {
      const created = await api("POST", "/api/v1/variables/", body);
      valueInput.value = "";
      createDialog.fgOpener = addButton;
      createDialog.close();
      FG.toast(`Saved ${created.name}.`);
      await load();
      markFresh(created.id);
    } catch (e) {
      formError(createError, e.message, { name: nameInput, type: typeInput, value: valueInput });
    } finally {
      FG.setBusy(submit, false);
    }
  });

  // A value typed into the dialog leaves the page with it.
  createDialog.addEventListener("close", () => {
    valueInput.value = "";
  });

  // ---- edit the value ------------------------------------------------------------------------
  function openEdit(v, opener) {
    editing = v;
    const credential = isCredential(v);
    editWhich.replaceChildren(el("strong", {}, v.name), ` · ${credential ? CREDENTIAL : "Generic"}`);
    editValue.type = credential ? "password" : "text";
    editValue.autocomplete = credential ? "new-password" : "off";
    editValue.value = credential ? "" : (v.value ?? "");
    editValue.placeholder = credential ? "Enter a new value to replace it" : "";
    editHint.textContent = credential
      ? "The current value is hidden: enter a new value to replace it."
      : "The new value replaces the current one.";
    FG.showError(editError, "");
    clearInvalid(editValue);
    FG.openDialog(editDialog, editValue);
    editDialog.fgOpener = opener;
    if (!credential) editValue.select();
  }

  editForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const v = editing;
    if (!v) return;
    const submit = editForm.querySelector('button[type="submit"]');
    if (editValue.value === "") {
      formError(editError, isCredential(v) ? "Enter a new value to replace the current one." : "Enter a value.", { value: editValue });
      return;
    }
    FG.setBusy(submit, true);
    try {
      await api("PATCH", `/api/v1/variables/${encodeURIComponent(v.id)}`, { id: v.id, value: editValue.value });
      editing = null;
      editValue.value = "";
      editDialog.close();
      FG.toast(`Saved ${v.name}.`);
      await load();
      markFresh(v.id);
      // The rows were rebuilt: give focus back to this row's Edit button.
      tbody.querySelector(`tr[data-id="${CSS.escape(v.id)}"] button`)?.focus();
    } catch (e) {
      formError(editError, e.message, { value: editValue });
    } finally {
      FG.setBusy(submit, false);
    }
  });

  editDialog.addEventListener("close", () => {
    editValue.value = "";
    editing = null;
  });

  // ---- delete ------------------------------------------------------------------------------
  function askDelete(v, opener) {
    pendingDelete = v;
    confirmText.replaceChildren(
      el("strong", {}, v.name),
      " will be deleted. Flows that use it will no longer find it. This cannot be undone.",
    );
    FG.showError(confirmError, "");
    FG.openDialog(confirmDialog);
    confirmDialog.fgOpener = opener;
  }

  confirmButton.addEventListener("click", async () => {
    const v = pendingDelete;
    if (!v) return;
    FG.setBusy(confirmButton, true);
    try {
      await api("DELETE", `/api/v1/variables/${encodeURIComponent(v.id)}`);
    } catch (e) {
      FG.showError(confirmError, e.message);
      return;
    } finally {
      FG.setBusy(confirmButton, false);
    }
    pendingDelete = null;
    confirmDialog.fgOpener = addButton;
    confirmDialog.close();
    FG.toast(`Deleted ${v.name}.`);
    await load();
  });

  confirmDialog.addEventListener("close", () => {
    pendingDelete = null;
  });

  load();
})();
