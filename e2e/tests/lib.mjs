// Shared helpers: Debian's Chromium driven by playwright-core, against the server run.sh started.
import { mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

export const BASE = process.env.FLOWGATE_URL;
if (!BASE) throw new Error("FLOWGATE_URL is not set: run the tests with e2e/run.sh");

export const ADMIN = { username: "langflow", password: "langflow" };
const SHOTS = join(dirname(fileURLToPath(import.meta.url)), "..", "screenshots");
mkdirSync(SHOTS, { recursive: true });

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
}

/**
 * A fresh browser context (own cookies) and page. Page errors and CSP violations are
 * collected in `page.problems`; `expectNoProblems(page)` fails a test that had any.
 */
export async function newPage(browser, { colorScheme = "light", viewport = { width: 1280, height: 800 } } = {}) {
  const context = await browser.newContext({ baseURL: BASE, colorScheme, viewport, locale: "en-US" });
  const page = await context.newPage();
  page.problems = [];
  page.on("pageerror", (e) => page.problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error" && /Content Security Policy|Refused to/i.test(m.text())) {
      page.problems.push(`console: ${m.text()}`);
    }
  });
  return page;
}

export function expectNoProblems(page) {
  assert.deepEqual(page.problems, [], "no script errors or CSP violations");
}

export async function shot(page, name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

/** Logs in through the form and waits for the page that follows. */
export async function login(page, { username, password } = ADMIN, next = "/settings/api-keys") {
  await page.goto(`/login?next=${encodeURIComponent(next)}`);
  await page.getByLabel("Username").fill(username);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.waitForURL((url) => url.pathname === next.split("?")[0]);
}

/** The REST API, straight from node (no browser): returns [status, body]. */
export async function rest(method, path, { token, key, body, form } = {}) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (key) headers["x-api-key"] = key;
  let payload;
  if (form) payload = new URLSearchParams(form);
  else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const res = await fetch(BASE + path, { method, headers, body: payload });
  const text = await res.text();
  let data = text;
  try {
    data = JSON.parse(text);
  } catch {
    // not JSON
  }
  return [res.status, data];
}

export async function adminToken() {
  const [status, body] = await rest("POST", "/api/v1/login", { form: ADMIN });
  assert.equal(status, 200);
  return body.access_token;
}

/** A unique suffix so tests sharing one server never collide. */
export function unique(prefix) {
  return `${prefix}-${Date.now().toString(36)}${Math.floor(Math.random() * 1e4)}`;
}
