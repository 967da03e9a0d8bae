// flowgate UI: what every page shares. Talks to the REST API exactly as any other client does,
// with the session cookie plus the CSRF header on changes (docs/ui.md). No framework, no build.
"use strict";

window.FG = (() => {
  const CSRF_COOKIE = "csrf_token_lf";
  const SESSION_403 = ["No authentication credentials provided", "CSRF token missing or invalid"];

  function cookie(name) {
    for (const part of document.cookie.split(";")) {
      const i = part.indexOf("=");
      if (i > 0 && part.slice(0, i).trim() === name) {
        return decodeURIComponent(part.slice(i + 1).trim());
      }
    }
    return "";
  }

  class ApiError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status;
    }
  }

  /** The `detail` of an error body as one readable sentence. */
  function detailText(data, status) {
    const detail = data && data.detail;
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) {
      return detail.map((e) => (e && e.msg ? e.msg : String(e))).join(" ");
    }
    return `The server answered ${status}. Try again.`;
  }

  let refreshing = null;
  /** One refresh at a time, shared by every request that needs it. */
  function refreshSession() {
    if (!refreshing) {
      refreshing = fetch("/api/v1/refresh", {
        method: "POST",
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      }).then(
        (res) => res.ok,
        () => false,
      );
      refreshing.then(() => {
        refreshing = null;
      });
    }
    return refreshing;
  }

  function toLogin() {
    const next = location.pathname + location.search;
    location.assign(`/login?next=${encodeURIComponent(next)}`);
  }

  /**
   * Calls the REST API. On a 401 (or a missing CSRF token) it refreshes the session once and
   * retries; if that fails too, it goes to the login page. Errors throw ApiError. `body` is
   * sent as JSON, or as multipart when it is a FormData.
   */
  async function api(method, path, body, retried = false) {
    const headers = { Accept: "application/json" };
    const init = { method, headers, credentials: "same-origin" };
    if (body instanceof FormData) {
      init.body = body; // multipart: the browser sets Content-Type with its boundary
    } else if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    if (method !== "GET" && method !== "HEAD") {
      const token = cookie(CSRF_COOKIE);
      if (token) headers["X-CSRF-Token"] = token;
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch {
      throw new ApiError("flowgate could not be reached. Check your connection and try again.", 0);
    }
    const text = await res.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    // 401: the access token expired or was revoked. 403 without credentials: the browser
    // already dropped the expired cookie. 403 CSRF: a session from before the CSRF cookie.
    const sessionEnded =
      res.status === 401 ||
      (res.status === 403 && data && SESSION_403.includes(data.detail));
    if (sessionEnded) {
      if (!retried && (await refreshSession())) return api(method, path, body, true);
      toLogin();
      throw new ApiError("Your session has ended. Log in again.", res.status);
    }
    if (!res.ok) throw new ApiError(detailText(data, res.status), res.status);
    return data;
  }

  /** Builds an element; strings become text nodes, so nothing is ever parsed as HTML. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === false || value === null || value === undefined) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else if (name in node && typeof value !== "string") node[name] = value;
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  // ---- dates -------------------------------------------------------------------------------
  const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium" });
  const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  const relativeFormat = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });

  function parseDate(iso) {
    const date = iso ? new Date(iso) : null;
    return date && !Number.isNaN(date.getTime()) ? date : null;
  }

  /** A <time> showing the date, with the full date and time on hover. */
  function dateCell(iso, fallback = "—") {
    const date = parseDate(iso);
    if (!date) return el("span", { class: "muted", text: fallback });
    return el("time", { datetime: date.toISOString(), title: fullFormat.format(date) }, dateFormat.format(date));
  }

  /** "3 minutes ago", "yesterday", … */
  function relativeCell(iso, fallback = "Never") {
    const date = parseDate(iso);
    if (!date) return el("span", { class: "muted", text: fallback });
    const seconds = (date.getTime() - Date.now()) / 1000;
    const units = [
      ["year", 31536000],
      ["month", 2592000],
      ["week", 604800],
      ["day", 86400],
      ["hour", 3600],
      ["minute", 60],
    ];
    let text = "just now";
    for (const [unit, size] of units) {
      if (Math.abs(seconds) >= size) {
        text = relativeFormat.format(Math.round(seconds / size), unit);
        break;
      }
    }
    return el("time", { datetime: date.toISOString(), title: fullFormat.format(date) }, text);
  }

  // ---- toast -------------------------------------------------------------------------------
  let toastTimer = null;
  function toast(message) {
    const box = document.getElementById("toast");
    if (!box) return;
    box.textContent = message;
    box.classList.add("show");
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => {
      box.classList.remove("show");
      setTimeout(() => {
        if (!box.classList.contains("show")) box.textContent = "";
      }, 200);
    }, 4000);
  }

  // ---- dialogs -----------------------------------------------------------------------------
  const FOCUSABLE =
    'a[href], button:not([disabled]), input:not([disabled]):not([type="hidden"]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex="-1"])';

  function focusables(root) {
    return [...root.querySelectorAll(FOCUSABLE)].filter((e) => e.getClientRects().length > 0);
  }

  /** Opens a native modal dialog; focus goes to `focus` (or [autofocus], or the first field). */
  function openDialog(dialog, focus) {
    dialog.fgOpener = document.activeElement;
    dialog.showModal();
    const target = focus || dialog.querySelector("[autofocus]") || focusables(dialog)[0];
    if (target) target.focus();
  }

  function setupDialog(dialog) {
    // Tab and Shift+Tab wrap around inside the dialog.
    dialog.addEventListener("keydown", (event) => {
      if (event.key !== "Tab") return;
      const items = focusables(dialog);
      if (items.length === 0) return;
      const first = items[0];
      const last = items[items.length - 1];
      if (event.shiftKey && document.activeElement === first) {
        event.preventDefault();
        last.focus();
      } else if (!event.shiftKey && document.activeElement === last) {
        event.preventDefault();
        first.focus();
      }
    });
    for (const button of dialog.querySelectorAll("[data-close]")) {
      button.addEventListener("click", () => dialog.close());
    }
    // A click on the backdrop closes it, as Escape does.
    dialog.addEventListener("mousedown", (event) => {
      if (event.target !== dialog) return;
      const r = dialog.getBoundingClientRect();
      const inside = event.clientX >= r.left && event.clientX <= r.right && event.clientY >= r.top && event.clientY <= r.bottom;
      if (!inside) dialog.close();
    });
    dialog.addEventListener("close", () => {
      const opener = dialog.fgOpener;
      dialog.fgOpener = null;
      if (opener && opener.isConnected && !opener.disabled && typeof opener.focus === "function") {
        opener.focus();
      }
    });
  }

  function setBusy(button, busy) {
    button.disabled = busy;
    if (busy) button.setAttribute("aria-busy", "true");
    else button.removeAttribute("aria-busy");
  }

  function showError(node, message) {
    node.textContent = message || "";
    node.hidden = !message;
  }

  // ---- user menu ---------------------------------------------------------------------------
  function setupUserMenu() {
    const button = document.getElementById("user-menu-button");
    const menu = document.getElementById("user-menu");
    if (!button || !menu) return;
    const items = () => [...menu.querySelectorAll('[role="menuitem"]')];
    const isOpen = () => !menu.hidden;

    function open(index = 0) {
      menu.hidden = false;
      button.setAttribute("aria-expanded", "true");
      const list = items();
      list[(index + list.length) % list.length].focus();
    }
    function close(returnFocus) {
      if (!isOpen()) return;
      menu.hidden = true;
      button.setAttribute("aria-expanded", "false");
      if (returnFocus) button.focus();
    }

    button.addEventListener("click", () => (isOpen() ? close(true) : open(0)));
    button.addEventListener("keydown", (event) => {
      if (event.key === "ArrowDown") {
        event.preventDefault();
        open(0);
      } else if (event.key === "ArrowUp") {
        event.preventDefault();
        open(-1);
      }
    });
    menu.addEventListener("keydown", (event) => {
      const list = items();
      const at = list.indexOf(document.activeElement);
      const move = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: list.length - 1 }[event.key];
      if (move !== undefined) {
        event.preventDefault();
        list[(move + list.length) % list.length].focus();
      } else if (event.key === "Escape") {
        event.preventDefault();
        close(true);
      } else if (event.key === "Tab") {
        close(false);
      }
    });
    document.addEventListener("mousedown", (event) => {
      if (isOpen() && !menu.contains(event.target) && !button.contains(event.target)) close(false);
    });

    const logout = menu.querySelector('[data-action="logout"]');
    logout.addEventListener("click", async () => {
      logout.disabled = true;
      try {
        await fetch("/api/v1/logout", { method: "POST", credentials: "same-origin" });
      } finally {
        location.assign("/login");
      }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    setupUserMenu();
    for (const dialog of document.querySelectorAll("dialog")) setupDialog(dialog);
  });

  return {
    api,
    ApiError,
    cookie,
    refreshSession,
    el,
    dateCell,
    relativeCell,
    parseDate,
    toast,
    openDialog,
    setBusy,
    showError,
  };
})();
