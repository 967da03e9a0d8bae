// /admin/users: superusers manage users; everyone else gets a clear 403 page.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { BASE, expectNoProblems, launch, login, newPage, rest, shot, unique } from "./lib.mjs";

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

function rowOf(page, username) {
  return page.locator("#users-body tr").filter({ has: page.getByRole("button", { name: `Delete ${username}`, exact: true }) });
}

test("a superuser creates, deactivates, activates and deletes a user", async () => {
  const page = await newPage(browser);
  await login(page, undefined, "/admin/users");
  await page.getByRole("heading", { name: "Users" }).waitFor();
  const langflowRow = page.locator("#users-body tr").filter({ hasText: "(you)" });
  await langflowRow.waitFor();
  assert.ok(await langflowRow.getByRole("button", { name: "Delete langflow" }).isDisabled(), "no deleting yourself");

  const username = unique("alice");
  const password = "alice-Passw0rd!";
  await page.getByRole("button", { name: "New User" }).click();
  const dialog = page.getByRole("dialog", { name: "New user" });
  await dialog.getByLabel("Username").fill(username);
  await dialog.getByLabel("Password").fill("short");
  await dialog.getByRole("button", { name: "Create user" }).click();
  await dialog.getByRole("alert").filter({ hasText: "at least 8 characters" }).waitFor();
  await shot(page, "users-create-error");
  await dialog.getByLabel("Password").fill(password);
  await dialog.getByRole("button", { name: "Create user" }).click();
  await dialog.waitFor({ state: "hidden" });
  const row = rowOf(page, username);
  await row.waitFor();
  assert.match(await row.innerText(), /Active/);
  assert.equal((await rest("POST", "/api/v1/login", { form: { username, password } }))[0], 200);

  await row.getByRole("button", { name: `Deactivate ${username}` }).click();
  await row.getByText("Inactive").waitFor();
  assert.equal((await rest("POST", "/api/v1/login", { form: { username, password } }))[0], 401);
  await shot(page, "users-list");
  await row.getByRole("button", { name: `Activate ${username}` }).click();
  await row.getByText("Active", { exact: true }).waitFor();

  await row.getByRole("button", { name: `Delete ${username}` }).click();
  const confirm = page.getByRole("alertdialog", { name: `Delete ${username}?` });
  await confirm.waitFor();
  await shot(page, "users-confirm-delete");
  await confirm.getByRole("button", { name: "Delete", exact: true }).click();
  await row.waitFor({ state: "detached" });
  assert.equal((await rest("POST", "/api/v1/login", { form: { username, password } }))[0], 401);
  expectNoProblems(page);
  await page.context().close();
});

test("someone who is not a superuser gets a 403 page and no Users link", async () => {
  const [, tokenBody] = await rest("POST", "/api/v1/login", { form: { username: "langflow", password: "langflow" } });
  const username = `<b>${unique("bob")}</b>`;
  const password = "bob-Passw0rd!";
  const [created] = await rest("POST", "/api/v1/users/", {
    token: tokenBody.access_token,
    body: { username, password },
  });
  assert.equal(created, 201);

  const page = await newPage(browser);
  await login(page, { username, password });
  // The name is shown as text in the header, not as markup.
  await page.getByRole("button", { name: "User menu" }).click();
  assert.equal(await page.locator(".menu-username").innerText(), username);
  assert.equal(await page.locator(".menu b").count(), 0);
  assert.equal(await page.getByRole("menuitem", { name: "Users" }).count(), 0);
  assert.equal(await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Users" }).count(), 0);

  const response = await page.goto("/admin/users");
  assert.equal(response.status(), 403);
  await page.getByRole("heading", { name: "You don't have access to this page" }).waitFor();
  await shot(page, "users-forbidden");
  assert.equal(new URL(page.url()).href, `${BASE}/admin/users`);
  expectNoProblems(page);
  await page.context().close();
});

test("the users page in dark mode", async () => {
  const page = await newPage(browser, { colorScheme: "dark" });
  await login(page, undefined, "/admin/users");
  await page.locator("#users-body tr").first().waitFor();
  await shot(page, "users-list-dark");
  await page.context().close();
});
