// Signing in and out, redirects, the header's user menu, and sessions that resume.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { ADMIN, BASE, expectNoProblems, launch, login, newPage, shot } from "./lib.mjs";

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

test("a page asked for while signed out goes to /login and comes back after logging in", async () => {
  const page = await newPage(browser);
  await page.goto("/settings/api-keys");
  const url = new URL(page.url());
  assert.equal(url.pathname, "/login");
  assert.equal(url.searchParams.get("next"), "/settings/api-keys");
  await page.getByLabel("Username").waitFor();
  await shot(page, "login-light");

  await page.getByLabel("Username").fill(ADMIN.username);
  await page.getByLabel("Password").fill(ADMIN.password);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.waitForURL(`${BASE}/settings/api-keys`);
  await page.getByRole("heading", { name: "Langflow API" }).waitFor();

  const cookies = await page.context().cookies();
  const access = cookies.find((c) => c.name === "access_token_lf");
  const csrf = cookies.find((c) => c.name === "csrf_token_lf");
  assert.ok(access.httpOnly, "the access cookie is HttpOnly");
  assert.equal(access.sameSite, "Lax");
  assert.ok(!csrf.httpOnly, "the CSRF cookie is readable by the page");
  assert.equal(csrf.sameSite, "Lax");
  assert.match(csrf.value, /^[0-9a-f]{64}$/);
  expectNoProblems(page);
  await page.context().close();
});

test("the root goes to the login page, then to the start page", async () => {
  const page = await newPage(browser);
  await page.goto("/");
  assert.equal(new URL(page.url()).pathname, "/login");
  await login(page);
  await page.goto("/");
  assert.equal(new URL(page.url()).pathname, "/flows");
  await page.context().close();
});

test("wrong or missing credentials are shown inline", async () => {
  const page = await newPage(browser);
  await page.goto("/login");
  await page.getByRole("button", { name: "Log in" }).click();
  const alert = page.getByRole("alert");
  await assert.doesNotReject(alert.filter({ hasText: "Enter your username." }).waitFor());
  assert.equal(await page.getByLabel("Username").getAttribute("aria-invalid"), "true");

  await page.getByLabel("Username").fill(ADMIN.username);
  await page.getByLabel("Password").fill("not-the-password");
  await page.getByRole("button", { name: "Log in" }).click();
  await alert.filter({ hasText: "Incorrect username or password." }).waitFor();
  assert.equal(new URL(page.url()).pathname, "/login");
  await shot(page, "login-error");
  expectNoProblems(page);
  await page.context().close();
});

test("a next parameter pointing elsewhere is ignored", async () => {
  const page = await newPage(browser);
  await page.goto("/login?next=//example.com/x");
  await page.getByLabel("Username").fill(ADMIN.username);
  await page.getByLabel("Password").fill(ADMIN.password);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.waitForURL(`${BASE}/flows`);
  await page.context().close();
});

test("the user menu works with the keyboard and logs out", async () => {
  const page = await newPage(browser);
  await login(page);
  const menuButton = page.getByRole("button", { name: "User menu" });
  await menuButton.focus();
  await page.keyboard.press("Enter");
  const menu = page.getByRole("menu");
  await menu.waitFor();
  assert.equal(await menuButton.getAttribute("aria-expanded"), "true");
  assert.equal(await page.evaluate(() => document.activeElement.textContent.trim()), "Settings");
  await page.keyboard.press("ArrowDown");
  assert.equal(await page.evaluate(() => document.activeElement.textContent.trim()), "Users");
  await shot(page, "user-menu");
  await page.keyboard.press("Escape");
  await menu.waitFor({ state: "hidden" });
  assert.equal(await page.evaluate(() => document.activeElement.id), "user-menu-button");

  await menuButton.click();
  await page.getByRole("menuitem", { name: "Log out" }).click();
  await page.waitForURL((url) => url.pathname === "/login");
  const names = (await page.context().cookies()).map((c) => c.name);
  assert.ok(!names.includes("access_token_lf") && !names.includes("csrf_token_lf"), String(names));
  await page.goto("/settings/api-keys");
  assert.equal(new URL(page.url()).pathname, "/login");
  expectNoProblems(page);
  await page.context().close();
});

test("a session whose access cookie expired resumes without the password", async () => {
  const page = await newPage(browser);
  await login(page);
  // What the browser does when the access cookie's Max-Age runs out.
  await page.context().clearCookies({ name: "access_token_lf" });
  await page.goto("/settings/api-keys");
  await page.waitForURL(`${BASE}/settings/api-keys`);
  await page.getByRole("heading", { name: "Langflow API" }).waitFor();

  // And on the page, a call made without it refreshes the session once and goes on.
  await page.context().clearCookies({ name: "access_token_lf" });
  await page.getByRole("button", { name: "Add New" }).click();
  await page.getByLabel("Name").fill("after-refresh");
  await page.getByRole("button", { name: "Create Secret Key" }).click();
  await page.getByRole("dialog", { name: "Your new API key" }).waitFor();
  expectNoProblems(page);
  await page.context().close();
});

test("a session that cannot be refreshed goes back to the login page", async () => {
  const page = await newPage(browser);
  await login(page);
  await page.context().clearCookies({ name: "access_token_lf" });
  await page.context().clearCookies({ name: "refresh_token_lf" });
  await page.getByRole("button", { name: "Add New" }).click();
  await page.getByLabel("Name").fill("no-session");
  await page.getByRole("button", { name: "Create Secret Key" }).click();
  await page.waitForURL((url) => url.pathname === "/login");
  assert.equal(new URL(page.url()).searchParams.get("next"), "/settings/api-keys");
  await page.context().close();
});
