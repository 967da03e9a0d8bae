// Settings → Global Variables: create, list (credentials masked, never in the page), edit a
// value, delete after a confirmation, errors from the API shown in the dialog, names as text.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { adminToken, expectNoProblems, launch, login, newPage, rest, shot, unique } from "./lib.mjs";

const PAGE = "/settings/variables";

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

/** Add New → Name, Type, Value → Save Variable. Leaves the dialog open when the API refuses. */
async function fillCreate(page, { name, type, value }) {
  await page.getByRole("button", { name: "Add New" }).click();
  const form = page.getByRole("dialog", { name: "Add Variable" });
  await form.waitFor();
  await form.getByLabel("Name").fill(name);
  if (type) await form.getByLabel("Type").selectOption(type);
  await form.getByLabel("Value").fill(value);
  await form.getByRole("button", { name: "Save Variable" }).click();
  return form;
}

async function createVariable(page, fields) {
  const form = await fillCreate(page, fields);
  await form.waitFor({ state: "hidden" });
  await rowOf(page, fields.name).waitFor();
}

function rowOf(page, name) {
  return page.locator("#variables-body tr").filter({ has: page.getByRole("button", { name: `Delete ${name}`, exact: true }) });
}

async function apiVariables() {
  const [status, list] = await rest("GET", "/api/v1/variables/", { token: await adminToken() });
  assert.equal(status, 200);
  return list;
}

test("signed out, the page sends you to the login page and back", async () => {
  const page = await newPage(browser);
  await page.goto(PAGE);
  await page.waitForURL((url) => url.pathname === "/login");
  assert.equal(new URL(page.url()).searchParams.get("next"), PAGE);
  await page.getByLabel("Username").fill("langflow");
  await page.getByLabel("Password").fill("langflow");
  await page.getByRole("button", { name: "Log in" }).click();
  await page.waitForURL((url) => url.pathname === PAGE);
  await page.getByRole("heading", { name: "Global Variables" }).waitFor();
  await page.context().close();
});

test("a Credential and a Generic variable: created, listed, the credential never in the page", async () => {
  const page = await newPage(browser);
  await login(page);

  // Settings → Global Variables, from the sidebar.
  const side = page.getByRole("navigation", { name: "Settings" });
  await side.getByRole("link", { name: "Global Variables" }).click();
  await page.waitForURL((url) => url.pathname === PAGE);
  await page.getByRole("heading", { name: "Global Variables" }).waitFor();
  assert.equal(await side.getByRole("link", { name: "Global Variables" }).getAttribute("aria-current"), "page");
  assert.equal(await side.getByRole("link", { name: "Langflow API" }).getAttribute("aria-current"), null);

  const secret = `sk-${unique("secret")}-do-not-show`;
  const credential = unique("OPENAI_API_KEY");
  await page.getByRole("button", { name: "Add New" }).click();
  const form = page.getByRole("dialog", { name: "Add Variable" });
  await form.waitFor();
  assert.equal(await form.getByLabel("Type").inputValue(), "Credential", "Credential is the default");
  assert.equal(await form.getByLabel("Value").getAttribute("type"), "password", "a credential is not shown while typed");
  await form.getByLabel("Name").fill(credential);
  await form.getByLabel("Value").fill(secret);
  await shot(page, "variables-create-dialog");
  await form.getByRole("button", { name: "Save Variable" }).click();
  await form.waitFor({ state: "hidden" });
  assert.equal(await page.locator("#variable-value").inputValue(), "", "the typed value is gone from the page");

  const generic = unique("MODEL_NAME");
  await createVariable(page, { name: generic, type: "Generic", value: "gpt-4o-mini" });

  const credRow = rowOf(page, credential);
  await credRow.waitFor();
  const credCells = credRow.locator("td");
  assert.equal(await credCells.nth(0).innerText(), credential);
  assert.equal(await credCells.nth(1).innerText(), "Credential");
  assert.match(await credCells.nth(2).textContent(), /^••••••hidden$/);
  const genRow = rowOf(page, generic);
  assert.equal(await genRow.locator("td").nth(1).innerText(), "Generic");
  assert.equal(await genRow.locator("td").nth(2).innerText(), "gpt-4o-mini");

  const html = await page.content();
  assert.equal(html.includes(secret), false, "the credential's value is nowhere in the page");
  // Nor in what the page's own API call returns.
  const listed = await page.evaluate(async () => (await fetch("/api/v1/variables/")).text());
  assert.equal(listed.includes(secret), false);
  const fromApi = (await apiVariables()).find((v) => v.name === credential);
  assert.equal(fromApi.type, "Credential");
  assert.equal(fromApi.value, null);

  // Still masked after a reload.
  await page.reload();
  await rowOf(page, credential).waitFor();
  assert.equal((await page.content()).includes(secret), false);
  await shot(page, "variables-list");
  expectNoProblems(page);
  await page.context().close();
});

test("editing a Generic value, and replacing a Credential's", async () => {
  const page = await newPage(browser);
  await login(page, undefined, PAGE);
  const generic = unique("TEMPERATURE");
  const credential = unique("ANTHROPIC_API_KEY");
  await createVariable(page, { name: generic, type: "Generic", value: "0.2" });
  await createVariable(page, { name: credential, value: "first-secret-value" });

  // Generic: the field starts with the current value.
  await page.getByRole("button", { name: `Edit ${generic}`, exact: true }).click();
  const edit = page.getByRole("dialog", { name: "Edit Variable" });
  await edit.waitFor();
  await edit.getByText(generic, { exact: true }).waitFor();
  const value = edit.getByLabel("Value");
  assert.equal(await value.inputValue(), "0.2");
  assert.equal(await page.evaluate(() => document.activeElement.id), "edit-value");
  await value.fill("0.7");
  await edit.getByRole("button", { name: "Save" }).click();
  await edit.waitFor({ state: "hidden" });
  await rowOf(page, generic).locator("td").nth(2).filter({ hasText: "0.7" }).waitFor();
  assert.equal((await apiVariables()).find((v) => v.name === generic).value, "0.7");

  // Credential: the field starts empty and says so; an empty save is refused in the dialog.
  await page.getByRole("button", { name: `Edit ${credential}`, exact: true }).click();
  await edit.waitFor();
  assert.equal(await value.inputValue(), "");
  assert.equal(await value.getAttribute("type"), "password");
  assert.equal(await value.getAttribute("placeholder"), "Enter a new value to replace it");
  await edit.getByText("enter a new value to replace it").waitFor();
  await shot(page, "variables-edit-credential");
  await edit.getByRole("button", { name: "Save" }).click();
  await edit.getByRole("alert").filter({ hasText: "Enter a new value" }).waitFor();
  assert.equal(await value.getAttribute("aria-invalid"), "true");
  await value.fill("second-secret-value");
  await edit.getByRole("button", { name: "Save" }).click();
  await edit.waitFor({ state: "hidden" });
  // Focus goes back to the row's Edit button once the list is reloaded.
  await page.waitForFunction((label) => document.activeElement?.getAttribute("aria-label") === label, `Edit ${credential}`);
  assert.match(await rowOf(page, credential).locator("td").nth(2).textContent(), /^••••••hidden$/);
  const html = await page.content();
  assert.ok(!html.includes("first-secret-value") && !html.includes("second-secret-value"));
  expectNoProblems(page);
  await page.context().close();
});

test("delete asks first; Cancel keeps the variable", async () => {
  const page = await newPage(browser);
  await login(page, undefined, PAGE);
  const name = unique("TO_DELETE");
  await createVariable(page, { name, type: "Generic", value: "bye" });

  await page.getByRole("button", { name: `Delete ${name}`, exact: true }).click();
  const confirm = page.getByRole("alertdialog", { name: "Delete this variable?" });
  await confirm.waitFor();
  await confirm.getByText(name).waitFor();
  assert.equal(await page.evaluate(() => document.activeElement.textContent), "Cancel", "Cancel has the focus");
  await confirm.getByRole("button", { name: "Cancel" }).click();
  await confirm.waitFor({ state: "hidden" });
  assert.ok((await apiVariables()).some((v) => v.name === name));

  await page.getByRole("button", { name: `Delete ${name}`, exact: true }).click();
  await confirm.waitFor();
  await shot(page, "variables-confirm-delete");
  await confirm.getByRole("button", { name: "Delete", exact: true }).click();
  await confirm.waitFor({ state: "hidden" });
  await rowOf(page, name).waitFor({ state: "detached" });
  await page.getByRole("status").filter({ hasText: `Deleted ${name}.` }).waitFor();
  assert.ok(!(await apiVariables()).some((v) => v.name === name));
  expectNoProblems(page);
  await page.context().close();
});

test("the API's errors are shown in the dialog: a name that exists, an empty value", async () => {
  const page = await newPage(browser);
  await login(page, undefined, PAGE);
  const name = unique("DUPLICATE");
  await createVariable(page, { name, type: "Generic", value: "one" });

  const form = await fillCreate(page, { name, value: "two" });
  const error = form.getByRole("alert");
  await error.filter({ hasText: "Variable name already exists" }).waitFor();
  assert.ok(await form.isVisible(), "the dialog stays open");
  assert.equal(await form.getByLabel("Name").getAttribute("aria-invalid"), "true");
  assert.equal(await page.evaluate(() => document.activeElement.id), "variable-name");
  await shot(page, "variables-name-clash");

  // Another name, but no value: the value field is the one marked.
  await form.getByLabel("Name").fill(unique("NO_VALUE"));
  await form.getByLabel("Value").fill("");
  await form.getByRole("button", { name: "Save Variable" }).click();
  await error.filter({ hasText: "Variable value cannot be empty" }).waitFor();
  assert.equal(await form.getByLabel("Value").getAttribute("aria-invalid"), "true");
  assert.equal(await form.getByLabel("Name").getAttribute("aria-invalid"), null);

  // Opening the dialog again starts clean.
  await page.keyboard.press("Escape");
  await form.waitFor({ state: "hidden" });
  await page.getByRole("button", { name: "Add New" }).click();
  assert.equal(await error.isHidden(), true);
  assert.equal(await form.getByLabel("Name").inputValue(), "");
  await page.keyboard.press("Escape");
  assert.equal((await apiVariables()).filter((v) => v.name === name).length, 1);
  expectNoProblems(page);
  await page.context().close();
});

test("names are text, never markup", async () => {
  const page = await newPage(browser);
  await login(page, undefined, PAGE);
  const names = [`<script>window.__pwned=1</script>${unique("x")}`, `<img src=x onerror="window.__pwned=2">${unique("y")}`];
  for (const name of names) {
    await createVariable(page, { name, type: "Generic", value: `<b>${name}</b>` });
    const row = rowOf(page, name);
    assert.equal(await row.locator("td.cell-name").innerText(), name);
    assert.equal(await row.locator("td.cell-value").innerText(), `<b>${name}</b>`);
  }
  // In the dialogs too.
  await page.getByRole("button", { name: `Delete ${names[0]}`, exact: true }).click();
  const confirm = page.getByRole("alertdialog", { name: "Delete this variable?" });
  await confirm.getByText(names[0]).waitFor();
  await confirm.getByRole("button", { name: "Cancel" }).click();
  await page.getByRole("button", { name: `Edit ${names[1]}`, exact: true }).click();
  await page.getByRole("dialog", { name: "Edit Variable" }).getByText(names[1]).waitFor();
  await page.keyboard.press("Escape");

  // Long names are cut with an ellipsis: the table fits its card, nothing scrolls sideways.
  assert.equal(await page.locator(".table-card").evaluate((e) => e.scrollWidth <= e.clientWidth && e.scrollLeft === 0), true);
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
  assert.equal(await page.locator("#variables-body img, #variables-body script, #variables-body b").count(), 0);
  assert.equal(await page.locator("dialog img, dialog script").count(), 0);
  await shot(page, "variables-escaped-names");
  expectNoProblems(page);
  await page.context().close();
});

test("the keyboard alone: add, Tab stays in the dialog, Escape gives focus back", async () => {
  const page = await newPage(browser);
  await login(page, undefined, PAGE);
  const add = page.getByRole("button", { name: "Add New" });
  await add.focus();
  await page.keyboard.press("Enter");
  const form = page.getByRole("dialog", { name: "Add Variable" });
  await form.waitFor();
  assert.equal(await page.evaluate(() => document.activeElement.id), "variable-name");
  for (let i = 0; i < 9; i += 1) {
    await page.keyboard.press(i % 3 === 2 ? "Shift+Tab" : "Tab");
    const inside = await page.evaluate(() => document.getElementById("create-dialog").contains(document.activeElement));
    assert.ok(inside, `focus stays in the dialog after ${i + 1} presses`);
  }
  await page.keyboard.press("Escape");
  await form.waitFor({ state: "hidden" });
  assert.equal(await page.evaluate(() => document.activeElement.id), "add-variable");

  // Name, Tab to Type (choose Generic), Tab to Value, Enter saves.
  await page.keyboard.press("Enter");
  await form.waitFor();
  const name = unique("KEYBOARD");
  await page.keyboard.type(name);
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement.id), "variable-type");
  await page.keyboard.press("ArrowDown");
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement.id), "variable-value");
  await page.keyboard.type("typed");
  await page.keyboard.press("Enter");
  await form.waitFor({ state: "hidden" });
  assert.equal(await page.evaluate(() => document.activeElement.id), "add-variable");
  const row = rowOf(page, name);
  await row.waitFor();
  assert.equal(await row.locator("td").nth(1).innerText(), "Generic");
  assert.equal(await row.locator("td").nth(2).innerText(), "typed");

  // Edit by keyboard: the row's Edit button, Enter, type, Enter.
  await page.getByRole("button", { name: `Edit ${name}`, exact: true }).focus();
  await page.keyboard.press("Enter");
  await page.getByRole("dialog", { name: "Edit Variable" }).waitFor();
  await page.keyboard.type("retyped"); // the current value is selected: typing replaces it
  await page.keyboard.press("Enter");
  await row.locator("td").nth(2).filter({ hasText: /^retyped$/ }).waitFor();
  await page.context().close();
});

test("dark mode, an empty list and a narrow window", async () => {
  const page = await newPage(browser, { colorScheme: "dark" });
  // A user of their own, so the empty state is theirs.
  const token = await adminToken();
  const username = unique("vars-user");
  const password = "Vars-Passw0rd!";
  const [created] = await rest("POST", "/api/v1/users/", { token, body: { username, password, is_active: true } });
  assert.equal(created, 201);
  await login(page, { username, password }, PAGE);
  await page.getByText("No global variables yet").waitFor();
  await shot(page, "variables-empty-dark");

  await createVariable(page, { name: "OPENAI_API_KEY", value: "sk-dark-secret" });
  await createVariable(page, { name: "MODEL", type: "Generic", value: "a-rather-long-generic-value-".repeat(6) });
  const background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.notEqual(background, "rgb(247, 247, 248)", "the dark palette is used");
  await shot(page, "variables-list-dark");
  await page.getByRole("button", { name: "Add New" }).click();
  await shot(page, "variables-create-dialog-dark");
  await page.keyboard.press("Escape");
  await page.getByRole("button", { name: "Edit OPENAI_API_KEY", exact: true }).click();
  await shot(page, "variables-edit-credential-dark");
  await page.keyboard.press("Escape");
  await page.setViewportSize({ width: 390, height: 800 });
  await shot(page, "variables-narrow-dark");
  // On a phone the row's buttons are on screen, and the type moves under the name.
  const del = await page.getByRole("button", { name: "Delete MODEL", exact: true }).boundingBox();
  assert.ok(del.x + del.width <= 390, `Delete is on screen (right edge ${del.x + del.width})`);
  assert.equal(await rowOf(page, "OPENAI_API_KEY").locator("td.cell-name .type-inline").isVisible(), true);
  assert.equal((await page.content()).includes("sk-dark-secret"), false);
  expectNoProblems(page);
  await page.context().close();
});
