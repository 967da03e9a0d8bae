// The login page: form fields posted to /api/v1/login, as Langflow's own UI does.
"use strict";

(() => {
  const form = document.getElementById("login-form");
  const username = document.getElementById("username");
  const password = document.getElementById("password");
  const error = document.getElementById("login-error");
  const submit = form.querySelector('button[type="submit"]');

  /** Only paths on this site; the server checked it too. */
  function safeNext(next) {
    if (!next || !next.startsWith("/") || next.startsWith("//") || next.includes("\\")) return "/";
    if (next === "/login" || next.startsWith("/login?")) return "/";
    return next;
  }
  const next = safeNext(form.dataset.next);

  // Only the short-lived access cookie is gone (the CSRF cookie lives as long as the refresh
  // token): try to resume the session once, without asking for the password.
  const TRIED = "flowgate-resume-tried";
  const lastTry = Number(sessionStorage.getItem(TRIED) || 0);
  if (FG.cookie("csrf_token_lf") && Date.now() - lastTry > 30000) {
    sessionStorage.setItem(TRIED, String(Date.now()));
    FG.refreshSession().then((ok) => {
      if (ok) location.replace(next);
    });
  }

  function fail(message, field) {
    FG.showError(error, message);
    for (const input of [username, password]) {
      if (input === field) input.setAttribute("aria-invalid", "true");
      else input.removeAttribute("aria-invalid");
    }
    (field || password).focus();
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!username.value.trim()) return fail("Enter your username.", username);
    if (!password.value) return fail("Enter your password.", password);
    FG.showError(error, "");
    FG.setBusy(submit, true);
    submit.textContent = "Logging in…";
    try {
      const res = await fetch("/api/v1/login", {
        method: "POST",
        credentials: "same-origin",
        headers: { Accept: "application/json" },
        body: new URLSearchParams({ username: username.value, password: password.value }),
      });
      if (res.ok) {
        sessionStorage.removeItem(TRIED);
        location.assign(next);
        return;
      }
      let detail = "";
      try {
        detail = (await res.json()).detail;
      } catch {
        detail = "";
      }
      if (res.status === 401 && detail === "Incorrect username or password") {
        password.select();
        fail("Incorrect username or password.", password);
      } else if (res.status === 401 && detail === "Inactive user") {
        fail("This account is deactivated. Ask a superuser to activate it.", username);
      } else {
        fail(typeof detail === "string" && detail ? detail : `Logging in failed (${res.status}). Try again.`);
      }
    } catch {
      fail("flowgate could not be reached. Check your connection and try again.");
    } finally {
      FG.setBusy(submit, false);
      submit.textContent = "Log in";
    }
  });
})();
