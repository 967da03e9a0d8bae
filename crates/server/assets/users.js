// Users (superusers only): list, create, activate/deactivate and delete over /api/v1/users/.
"use strict";

(() => {
  const { api, el } = FG;
  const $ = (id) => document.getElementById(id);

  const me = $("users-page").dataset.me;
  const table = $("users-table");
  const tbody = $("users-body");
  const listError = $("users-error");
  const pager = $("pager");
  const pagerText = $("pager-text");
  const prev = $("prev-page");
  const next = $("next-page");
  const addButton = $("add-user");

  const userDialog = $("user-dialog");
  const userForm = $("user-form");
  const userError = $("user-error");
  const usernameInput = $("new-username");
  const passwordInput = $("new-password");

  const confirmDialog = $("confirm-dialog");
  const confirmText = $("confirm-text");
  const confirmError = $("confirm-error");
  const confirmButton = $("confirm-delete");

  const PAGE = 50;
  let skip = 0;
  let total = 0;
  let toDelete = null;

  async function load() {
    table.setAttribute("aria-busy", "true");
    let data;
    try {
      data = await api("GET", `/api/v1/users/?skip=${skip}&limit=${PAGE}`);
      FG.showError(listError, "");
    } catch (e) {
      FG.showError(listError, `Could not load the users: ${e.message}`);
      return;
    } finally {
      table.setAttribute("aria-busy", "false");
    }
    total = data.total_count;
    if (data.users.length === 0 && skip > 0) {
      skip = Math.max(0, skip - PAGE);
      return load();
    }
    tbody.replaceChildren(...data.users.map(row));
    pager.hidden = total <= PAGE;
    pagerText.textContent = `${skip + 1}–${skip + data.users.length} of ${total}`;
    prev.disabled = skip === 0;
    next.disabled = skip + PAGE >= total;
  }

  function row(user) {
    const self = user.id === me;
    const toggle = el(
      "button",
      {
        type: "button",
        class: "btn small",
        "aria-label": `${user.is_active ? "Deactivate" : "Activate"} ${user.username}`,
        disabled: self,
        title: self ? "You can't deactivate yourself" : false,
        onclick: () => setActive(user, !user.is_active, toggle),
      },
      user.is_active ? "Deactivate" : "Activate",
    );
    const remove = el(
      "button",
      {
        type: "button",
        class: "btn small danger-ghost",
        "aria-label": `Delete ${user.username}`,
        disabled: self,
        title: self ? "You can't delete yourself" : false,
        onclick: () => askDelete(user, remove),
      },
      "Delete",
    );
    return el(
      "tr",
      { "data-id": user.id },
      el(
        "td",
        { class: "cell-name" },
        el("span", { title: user.username }, user.username),
        self ? el("span", { class: "muted", text: " (you)" }) : null,
      ),
      el(
        "td",
        {},
        user.is_active
          ? el("span", { class: "badge ok", text: "Active" })
          : el("span", { class: "badge", text: "Inactive" }),
      ),
      el("td", {}, user.is_superuser ? el("span", { class: "badge accent", text: "Superuser" }) : "User"),
      el("td", {}, FG.dateCell(user.create_at)),
      el("td", {}, FG.relativeCell(user.last_login_at)),
      el("td", { class: "actions" }, toggle, remove),
    );
  }

  async function setActive(user, active, button) {
    FG.setBusy(button, true);
    try {
      await api("PATCH", `/api/v1/users/${encodeURIComponent(user.id)}`, { is_active: active });
      FG.toast(`${user.username} is now ${active ? "active" : "deactivated"}.`);
      await load();
      // Keep the keyboard where it was: on this user's toggle.
      const again = tbody.querySelector(`tr[data-id="${CSS.escape(user.id)}"] button`);
      if (again) again.focus();
    } catch (e) {
      FG.setBusy(button, false);
      FG.showError(listError, e.message);
    }
  }

  function askDelete(user, button) {
    toDelete = user;
    confirmText.textContent = `${user.username} and everything they own (flows, API keys) will be deleted. This cannot be undone.`;
    $("confirm-title").textContent = `Delete ${user.username}?`;
    FG.showError(confirmError, "");
    FG.openDialog(confirmDialog);
    confirmDialog.fgOpener = button;
  }

  confirmButton.addEventListener("click", async () => {
    if (!toDelete) return;
    FG.setBusy(confirmButton, true);
    try {
      await api("DELETE", `/api/v1/users/${encodeURIComponent(toDelete.id)}`);
      const name = toDelete.username;
      toDelete = null;
      confirmDialog.fgOpener = addButton;
      confirmDialog.close();
      FG.toast(`Deleted ${name}.`);
      await load();
    } catch (e) {
      FG.showError(confirmError, e.message);
    } finally {
      FG.setBusy(confirmButton, false);
    }
  });

  addButton.addEventListener("click", () => {
    userForm.reset();
    FG.showError(userError, "");
    for (const input of [usernameInput, passwordInput]) input.removeAttribute("aria-invalid");
    FG.openDialog(userDialog, usernameInput);
  });

  function invalid(input, message) {
    FG.showError(userError, message);
    input.setAttribute("aria-invalid", "true");
    input.focus();
  }

  userForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    for (const input of [usernameInput, passwordInput]) input.removeAttribute("aria-invalid");
    const username = usernameInput.value.trim();
    if (!username) return invalid(usernameInput, "Enter a username.");
    if (passwordInput.value.length < 8) return invalid(passwordInput, "The password needs at least 8 characters.");
    const submit = userForm.querySelector('button[type="submit"]');
    FG.setBusy(submit, true);
    try {
      await api("POST", "/api/v1/users/", {
        username,
        password: passwordInput.value,
        is_active: $("new-active").checked,
        is_superuser: $("new-superuser").checked,
      });
      userDialog.close();
      FG.toast(`Created ${username}.`);
      await load();
    } catch (e) {
      const field = /password/i.test(e.message) ? passwordInput : usernameInput;
      invalid(field, e.message);
    } finally {
      FG.setBusy(submit, false);
    }
  });

  prev.addEventListener("click", () => {
    skip = Math.max(0, skip - PAGE);
    load();
  });
  next.addEventListener("click", () => {
    skip += PAGE;
    load();
  });

  load();
})();
