// Settings → Langflow API, clicked through exactly as the documentation describes it.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { expectNoProblems, launch, login, newPage, rest, shot, unique } from "./lib.mjs";

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

/** Add New → Name → (expiry) → Create Secret Key; returns the key the dialog shows. */
async function createKey(page, name, expiry) {
  await page.getByRole("button", { name: "Add New" }).click();
  const form = page.getByRole("dialog", { name: "Create API Key" });
  await form.waitFor();
  await form.getByLabel("Name").fill(name);
  if (expiry) await form.getByLabel("Expires").selectOption({ label: expiry });
  await form.getByRole("button", { name: "Create Secret Key" }).click();
  const shown = page.getByRole("dialog", { name: "Your new API key" });
  await shown.waitFor();
  return { key: await shown.getByLabel("API key").inputValue(), dialog: shown };
}

function rowOf(page, name) {
  return page.locator("#keys-body tr").filter({ has: page.getByRole("checkbox", { name: `Select key ${name}`, exact: true }) });
}

test("the documented walk-through: user icon → Settings → Langflow API → Add New → copy → delete", async () => {
  const page = await newPage(browser);
  await page.context().grantPermissions(["clipboard-read", "clipboard-write"]);
  await login(page, undefined, "/admin/users");

  // 1. Click your user icon and select Settings.
  await page.getByRole("button", { name: "User menu" }).click();
  await page.getByRole("menuitem", { name: "Settings" }).click();
  await page.waitForURL((url) => url.pathname === "/settings/api-keys");
  // 2. Click Langflow API, and then click Add New.
  await page.getByRole("navigation", { name: "Settings" }).getByRole("link", { name: "Langflow API" }).click();
  await page.getByRole("heading", { name: "Langflow API" }).waitFor();
  await page.getByRole("button", { name: "Add New" }).click();
  const form = page.getByRole("dialog", { name: "Create API Key" });
  await form.waitFor();
  // 3. Name your key, and then click Create Secret Key.
  const name = unique("my-app");
  await form.getByLabel("Name").fill(name);
  await shot(page, "api-keys-create-dialog");
  await form.getByRole("button", { name: "Create Secret Key" }).click();
  // 4. Copy the API key and store it in a secure location.
  const shown = page.getByRole("dialog", { name: "Your new API key" });
  await shown.waitFor();
  await shown.getByText("This is the only time the API key will be displayed").waitFor();
  const key = await shown.getByLabel("API key").inputValue();
  assert.match(key, /^fgk_[0-9A-Za-z]{49}$/);
  await shown.getByRole("button", { name: "Copy" }).click();
  await shown.getByText("Copied to the clipboard.").waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), key);
  await shot(page, "api-keys-shown-once");
  await shown.getByRole("button", { name: "Done" }).click();
  await shown.waitFor({ state: "hidden" });
  assert.equal(await page.locator("#new-key").inputValue(), "", "the key is gone from the page");

  // The list shows it masked; the key works.
  const row = rowOf(page, name);
  await row.waitFor();
  const text = await row.innerText();
  assert.ok(text.includes(key.slice(0, 8)), text);
  assert.ok(!text.includes(key.slice(8, 20)), "only the prefix is shown");
  assert.equal(await page.content().then((html) => html.includes(key)), false);
  const [ok] = await rest("GET", "/api/v1/users/whoami", { key });
  assert.equal(ok, 200);

  // A use shows up in the table (usage is written about once a second).
  await page.waitForTimeout(1300);
  await page.reload();
  await rowOf(page, name).waitFor();
  assert.match(await rowOf(page, name).locator("td").nth(5).innerText(), /^1$/);
  await shot(page, "api-keys-list");

  // Revoke: select the key and click the trash can icon, then confirm.
  await page.getByRole("checkbox", { name: `Select key ${name}`, exact: true }).check();
  const trash = page.getByRole("button", { name: "Delete", exact: true });
  assert.ok(await trash.isEnabled());
  await trash.click();
  const confirm = page.getByRole("alertdialog", { name: "Delete this API key?" });
  await confirm.waitFor();
  await confirm.getByText(name).waitFor();
  await shot(page, "api-keys-confirm-delete");
  await confirm.getByRole("button", { name: "Delete", exact: true }).click();
  await confirm.waitFor({ state: "hidden" });
  await rowOf(page, name).waitFor({ state: "detached" });
  await page.getByRole("status").filter({ hasText: "Deleted 1 API key." }).waitFor();
  const [gone] = await rest("GET", "/api/v1/users/whoami", { key });
  assert.equal(gone, 403, "a deleted key stops working at once");
  expectNoProblems(page);
  await page.context().close();
});

test("several keys are deleted together; Cancel deletes nothing", async () => {
  const page = await newPage(browser);
  await login(page);
  const names = [unique("batch-a"), unique("batch-b")];
  const keys = [];
  for (const name of names) {
    const { key, dialog } = await createKey(page, name);
    keys.push(key);
    await dialog.getByRole("button", { name: "Done" }).click();
    await rowOf(page, name).waitFor();
  }
  for (const name of names) await page.getByRole("checkbox", { name: `Select key ${name}`, exact: true }).check();
  await page.getByRole("button", { name: "Delete", exact: true }).click();
  const confirm = page.getByRole("alertdialog", { name: "Delete 2 API keys?" });
  await confirm.getByRole("button", { name: "Cancel" }).click();
  await confirm.waitFor({ state: "hidden" });
  for (const key of keys) assert.equal((await rest("GET", "/api/v1/users/whoami", { key }))[0], 200);

  await page.getByRole("button", { name: "Delete", exact: true }).click();
  await confirm.getByRole("button", { name: "Delete", exact: true }).click();
  await confirm.waitFor({ state: "hidden" });
  for (const name of names) await rowOf(page, name).waitFor({ state: "detached" });
  for (const key of keys) assert.equal((await rest("GET", "/api/v1/users/whoami", { key }))[0], 403);
  assert.ok(await page.getByRole("button", { name: "Delete", exact: true }).isDisabled());
  await page.context().close();
});

test("an expiry preset sets the expiry date", async () => {
  const page = await newPage(browser);
  await login(page);
  const name = unique("expiring");
  const { dialog } = await createKey(page, name, "In 30 days");
  await dialog.getByRole("button", { name: "Done" }).click();
  const expires = rowOf(page, name).locator("td").nth(6).locator("time");
  const when = new Date(await expires.getAttribute("datetime"));
  const days = (when.getTime() - Date.now()) / 86400000;
  assert.ok(days > 29.9 && days < 30.1, `expires in ${days} days`);
  await page.context().close();
});

test("names are text, never markup", async () => {
  const page = await newPage(browser);
  await login(page);
  const names = [`<script>window.__pwned=1</script>${unique("x")}`, `<img src=x onerror="window.__pwned=2">${unique("y")}`];
  for (const name of names) {
    const { dialog } = await createKey(page, name);
    await dialog.getByRole("button", { name: "Done" }).click();
    const row = rowOf(page, name);
    await row.waitFor();
    assert.equal(await row.locator("td.cell-name").innerText(), name);
  }
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
  assert.equal(await page.locator("#keys-body img, #keys-body script").count(), 0);
  await shot(page, "api-keys-escaped-names");
  expectNoProblems(page);
  await page.context().close();
});

test("dialogs keep the keyboard inside and close on Escape", async () => {
  const page = await newPage(browser);
  await login(page);
  const add = page.getByRole("button", { name: "Add New" });
  await add.focus();
  await page.keyboard.press("Enter");
  const form = page.getByRole("dialog", { name: "Create API Key" });
  await form.waitFor();
  assert.equal(await page.evaluate(() => document.activeElement.id), "key-name");
  for (let i = 0; i < 8; i += 1) {
    await page.keyboard.press(i % 3 === 2 ? "Shift+Tab" : "Tab");
    const inside = await page.evaluate(() => document.getElementById("create-dialog").contains(document.activeElement));
    assert.ok(inside, `focus stays in the dialog after ${i + 1} presses`);
  }
  await page.keyboard.press("Escape");
  await form.waitFor({ state: "hidden" });
  assert.equal(await page.evaluate(() => document.activeElement.id), "add-key");

  // The whole flow by keyboard alone.
  await page.keyboard.press("Enter");
  await form.waitFor();
  const name = unique("keyboard");
  await page.keyboard.type(name);
  await page.keyboard.press("Enter");
  const shown = page.getByRole("dialog", { name: "Your new API key" });
  await shown.waitFor();
  assert.equal(await page.evaluate(() => document.activeElement.id), "copy-key");
  await page.keyboard.press("Escape");
  await shown.waitFor({ state: "hidden" });
  await rowOf(page, name).waitFor();
  await page.context().close();
});

test("a change without the CSRF header is refused, even from the page itself", async () => {
  const page = await newPage(browser);
  await login(page);
  const [status, detail] = await page.evaluate(async () => {
    const res = await fetch("/api/v1/api_key/", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name: "forged" }),
    });
    return [res.status, (await res.json()).detail];
  });
  assert.equal(status, 403);
  assert.equal(detail, "CSRF token missing or invalid");
  await page.context().close();
});

test("dark mode and a narrow window", async () => {
  const page = await newPage(browser, { colorScheme: "dark" });
  await login(page);
  const name = unique("dark");
  const { dialog } = await createKey(page, name);
  await shot(page, "api-keys-shown-once-dark");
  await dialog.getByRole("button", { name: "Done" }).click();
  await rowOf(page, name).waitFor();
  const background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.notEqual(background, "rgb(247, 247, 248)", "the dark palette is used");
  await shot(page, "api-keys-list-dark");
  await page.goto("/login");
  await page.setViewportSize({ width: 390, height: 800 });
  await page.goto("/settings/api-keys");
  await shot(page, "api-keys-narrow-dark");
  await page.context().close();
});

test("signed-out login page in dark mode", async () => {
  const page = await newPage(browser, { colorScheme: "dark" });
  await page.goto("/login");
  await page.getByLabel("Username").waitFor();
  await shot(page, "login-dark");
  await page.context().close();
});
