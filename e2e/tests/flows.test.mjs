// Flows: import, list, search, delete; one flow's graph, problems, Endpoint Name, API snippets
// and playground.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { BASE, adminToken, expectNoProblems, launch, login, newPage, rest, shot, unique } from "./lib.mjs";

const FIXTURES = process.env.FLOWGATE_FIXTURES || join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "shared", "fixtures");
const CHAT_ECHO = join(FIXTURES, "chat-echo.json");

let browser;
let token;
let runRoutes = false;
before(async () => {
  browser = await launch();
  token = await adminToken();
  // The run routes are built separately; without a key they answer 403, when missing 404/405.
  const [status] = await rest("POST", "/api/v1/run/00000000-0000-4000-8000-000000000000");
  runRoutes = status !== 404 && status !== 405;
});
after(async () => {
  await browser?.close();
});
const NO_RUN = "POST /api/v1/run/{flow} is not in this build yet (crates/server/src/routes/run.rs)";

async function flowIds() {
  const [status, list] = await rest("GET", "/api/v1/flows/?header_flows=true", { token });
  assert.equal(status, 200);
  return new Set(list.map((f) => f.id));
}

/** A flow made over REST: `nodes` is [[id, type, display_name, x, y]], edges [[from, to]]. */
async function makeFlow(name, { nodes = [], edges = [], endpoint } = {}) {
  const data = {
    nodes: nodes.map(([id, type, display, x, y]) => ({
      id,
      type: "genericNode",
      position: { x, y },
      data: { id, type, node: { display_name: display, template: {}, outputs: [] } },
    })),
    edges: edges.map(([source, target]) => ({ id: `${source}-${target}`, source, target, data: {} })),
  };
  const body = { name, data };
  if (endpoint) body.endpoint_name = endpoint;
  const [status, flow] = await rest("POST", "/api/v1/flows/", { token, body });
  assert.equal(status, 201, JSON.stringify(flow));
  return flow;
}

function flowRow(page, name) {
  return page.locator("#flows-body tr").filter({ has: page.getByRole("link", { name, exact: true }) });
}

/** Imports chat-echo through the Import button's file picker; returns the stored flow. */
async function importChatEcho(page) {
  const before = await flowIds();
  const chooser = page.waitForEvent("filechooser");
  await page.getByRole("button", { name: "Import" }).click();
  await (await chooser).setFiles(CHAT_ECHO);
  await page.getByRole("status").filter({ hasText: "Imported 1 flow." }).waitFor();
  const [, list] = await rest("GET", "/api/v1/flows/?header_flows=true", { token });
  const flow = list.find((f) => !before.has(f.id));
  assert.ok(flow, "a new flow was stored");
  await flowRow(page, flow.name).waitFor();
  return flow;
}

test("import chat-echo with the file picker, open it: graph, Endpoint Name, API snippets", async () => {
  const page = await newPage(browser);
  await page.context().grantPermissions(["clipboard-read", "clipboard-write"]);
  await login(page, undefined, "/flows");
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Flows" }).waitFor();

  const flow = await importChatEcho(page);
  assert.match(flow.name, /^peer-chat-echo/);
  const row = flowRow(page, flow.name);
  const text = await row.innerText();
  assert.ok(text.includes(flow.endpoint_name), text);
  assert.ok(text.includes("Runnable"), text);
  await shot(page, "flows-list");

  // Search filters by name and endpoint name, in the page.
  const search = page.getByRole("searchbox", { name: "Search flows" });
  await search.fill("zz-no-such-flow");
  await page.getByText("No flows match your search").waitFor();
  assert.equal(await row.count(), 0);
  await search.fill(flow.endpoint_name.toUpperCase());
  await row.waitFor();

  // Open it: the graph has the two components and the edge between them.
  await page.getByRole("link", { name: flow.name, exact: true }).click();
  await page.waitForURL((url) => url.pathname === `/flows/${flow.id}`);
  await page.getByRole("heading", { level: 1, name: flow.name }).waitFor();
  const graph = page.locator("#graph svg");
  await graph.waitFor();
  assert.equal(await graph.locator("g.node").count(), 2);
  assert.equal(await graph.locator("path.edge").count(), 1);
  assert.deepEqual(await graph.locator("g.node .node-name").allTextContents(), ["Chat Input", "Chat Output"]);
  assert.equal(await graph.locator("g.node.has-problem").count(), 0);
  assert.ok(await page.locator("#problems-panel").isHidden(), "no problems, no problems panel");
  assert.equal(await page.title(), `${flow.name} · flowgate`);
  await shot(page, "flow-page");

  // Endpoint Name: a good one is saved, a bad one and a taken one are explained inline.
  const field = page.getByLabel("Endpoint Name");
  assert.equal(await field.inputValue(), flow.endpoint_name);
  const endpoint = unique("echo");
  await field.fill(endpoint);
  await page.getByRole("button", { name: "Save", exact: true }).click();
  await page.getByRole("status").filter({ hasText: `Endpoint name saved: ${endpoint}` }).waitFor();
  const [, saved] = await rest("GET", `/api/v1/flows/${flow.id}`, { token });
  assert.equal(saved.endpoint_name, endpoint);
  assert.equal(await page.locator("#endpoint-url").innerText(), `/api/v1/run/${endpoint}`);

  await field.fill("not valid!");
  await page.getByRole("button", { name: "Save", exact: true }).click();
  const alert = page.getByRole("alert").filter({ hasText: "Endpoint name must contain only letters, numbers, hyphens, and underscores" });
  await alert.waitFor();
  assert.equal(await field.getAttribute("aria-invalid"), "true");
  await shot(page, "flow-endpoint-error");

  const other = await makeFlow(unique("other"), { endpoint: unique("taken") });
  await field.fill(other.endpoint_name);
  await page.getByRole("button", { name: "Save", exact: true }).click();
  await page.getByRole("alert").filter({ hasText: "Endpoint name must be unique" }).waitFor();
  assert.equal((await rest("GET", `/api/v1/flows/${flow.id}`, { token }))[1].endpoint_name, endpoint, "nothing changed");

  // API snippets for this flow, each with Copy.
  const curl = await page.locator("#code-curl").innerText();
  assert.ok(curl.includes(`'${BASE}/api/v1/run/${endpoint}'`), curl);
  assert.ok(curl.includes("x-api-key: YOUR_API_KEY"), curl);
  const body = JSON.parse(curl.match(/-d '([\s\S]*)'$/)[1]);
  assert.deepEqual(body, {
    input_value: "hello",
    output_type: "chat",
    input_type: "chat",
    tweaks: { "ChatInput-aaaa1": {}, "ChatOutput-bbbb2": {} },
  });
  const api = page.getByRole("region", { name: "API" });
  await api.getByRole("button", { name: "Copy" }).click();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), curl);
  await api.getByRole("tab", { name: "Python" }).click();
  const python = await page.locator("#code-python").innerText();
  assert.ok(python.includes(`url = "${BASE}/api/v1/run/${endpoint}"`), python);
  assert.ok(python.includes("requests.post(url, json=payload, headers=headers)"), python);
  await api.getByRole("button", { name: "Copy" }).click();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), python);
  await api.getByRole("tab", { name: "JavaScript" }).click();
  const js = await page.locator("#code-js").innerText();
  assert.ok(js.includes(`fetch("${BASE}/api/v1/run/${endpoint}"`), js);
  assert.ok(js.includes('"x-api-key": "YOUR_API_KEY"'), js);
  await shot(page, "flow-api-js");
  expectNoProblems(page);
  await page.context().close();
});

test("an API key from the settings dialog runs the flow by its endpoint name", async (t) => {
  if (!runRoutes) return t.skip(NO_RUN);
  const flow = await makeFlowFromFixture();
  const page = await newPage(browser);
  await login(page);
  await page.getByRole("button", { name: "Add New" }).click();
  const form = page.getByRole("dialog", { name: "Create API Key" });
  await form.getByLabel("Name").fill(unique("runner"));
  await form.getByRole("button", { name: "Create Secret Key" }).click();
  const shown = page.getByRole("dialog", { name: "Your new API key" });
  await shown.waitFor();
  const key = await shown.getByLabel("API key").inputValue();
  await shown.getByRole("button", { name: "Done" }).click();

  const [status, result] = await rest("POST", `/api/v1/run/${flow.endpoint_name}`, {
    key,
    body: { input_value: "hello over http", output_type: "chat", input_type: "chat", tweaks: {} },
  });
  assert.equal(status, 200, JSON.stringify(result));
  assert.equal(result.outputs[0].outputs[0].results.message.text, "hello over http");
  await page.context().close();
});

/** chat-echo stored over REST, with its own endpoint name. */
async function makeFlowFromFixture() {
  const doc = JSON.parse(readFileSync(CHAT_ECHO, "utf8"));
  doc.name = unique("echo-flow");
  doc.endpoint_name = unique("echo-ep");
  delete doc.id;
  const [status, flow] = await rest("POST", "/api/v1/flows/", { token, body: doc });
  assert.equal(status, 201, JSON.stringify(flow));
  return flow;
}

test("the playground chats with chat-echo and keeps the session", async (t) => {
  if (!runRoutes) return t.skip(NO_RUN);
  const flow = await makeFlowFromFixture();
  for (const colorScheme of ["light", "dark"]) {
    const page = await newPage(browser, { colorScheme });
    await login(page, undefined, `/flows/${flow.id}`);
    const playground = page.getByRole("region", { name: "Playground" });
    const session = await page.locator("#session-id").innerText();
    assert.match(session, /^[0-9a-f-]{36}$/);

    await playground.getByLabel("Message").fill("hello playground");
    await playground.getByRole("button", { name: "Send" }).click();
    const replies = page.locator(".bubble.bot .bubble-text");
    await page.waitForFunction(() => document.querySelector(".bubble.bot .bubble-text")?.textContent === "hello playground");
    await playground.getByLabel("Message").fill("second message");
    await playground.getByLabel("Message").press("Enter");
    await page.waitForFunction(() => document.querySelectorAll(".bubble.bot .bubble-text")[1]?.textContent === "second message");
    assert.equal(await replies.count(), 2);
    assert.equal(await page.locator(".bubble.error").count(), 0);
    assert.equal(await page.locator("#session-id").innerText(), session, "one session across messages");
    await shot(page, `flow-playground-${colorScheme}`);

    await playground.getByRole("button", { name: "New session" }).click();
    assert.notEqual(await page.locator("#session-id").innerText(), session);
    assert.equal(await replies.count(), 0);

    // The key it used is in the list, run-only, for this flow, expiring within the hour.
    const [, keys] = await rest("GET", "/api/v1/api_key/", { token });
    const auto = keys.api_keys.filter((k) => k.name?.startsWith("Playground (auto") && k.flows?.includes(flow.id));
    assert.ok(auto.length >= 1, JSON.stringify(keys.api_keys.map((k) => k.name)));
    for (const k of auto) {
      assert.equal(k.scope, "run");
      assert.deepEqual(k.flows, [flow.id]);
      const minutes = (new Date(k.expires_at).getTime() - Date.now()) / 60000;
      assert.ok(minutes > 50 && minutes <= 60, `expires in ${minutes} minutes`);
    }
    expectNoProblems(page);
    await page.context().close();
  }
});

test("names are text, never markup; problems are counted, listed and highlighted", async () => {
  const name = `<script>window.__pwned=1</script>${unique("x")}`;
  const nodeName = '<img src=x onerror="window.__pwned=2">';
  const flow = await makeFlow(name, {
    nodes: [
      ["ChatInput-xss01", "ChatInput", nodeName, 0, 0],
      ["Mystery-xss02", "NoSuchComponent", "Mystery", 420, 120],
    ],
    edges: [["ChatInput-xss01", "Mystery-xss02"]],
  });
  assert.ok(flow.problems.length >= 1, JSON.stringify(flow.problems));
  const count = flow.problems.length;

  const page = await newPage(browser);
  await login(page, undefined, "/flows");
  const row = flowRow(page, name);
  await row.waitFor();
  assert.equal(await row.locator("a").innerText(), name);
  assert.equal(await row.locator("[data-problems]").getAttribute("data-problems"), String(count));
  assert.equal(await row.locator("[data-problems]").innerText(), `${count} problem${count === 1 ? "" : "s"}`);
  assert.equal(await page.locator("#flows-body script, #flows-body img").count(), 0);
  await shot(page, "flows-escaped-names");

  await row.getByRole("link").click();
  await page.getByRole("heading", { level: 1, name }).waitFor();
  const graph = page.locator("#graph svg");
  await graph.waitFor();
  assert.equal(await graph.locator("g.node").count(), 2);
  const titles = await graph.locator("g.node > title").allTextContents();
  assert.ok(titles.some((t) => t.startsWith(`${nodeName} (ChatInput-xss01)`)), JSON.stringify(titles));
  assert.equal(await graph.locator('g.node.has-problem[data-id="Mystery-xss02"]').count(), 1);
  const problems = page.getByRole("region", { name: "Problems" });
  await problems.waitFor();
  for (const p of flow.problems) await problems.getByText(p.message, { exact: true }).first().waitFor();
  assert.equal(await page.locator("main script, main img, main foreignObject").count(), 0);
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
  assert.equal(await page.title(), `${name} · flowgate`);
  await shot(page, "flow-problems");
  expectNoProblems(page);
  await page.context().close();
});

test("drop a file to import it; delete asks first, Cancel keeps the flow", async () => {
  const page = await newPage(browser);
  await login(page, undefined, "/flows");
  await page.locator("#flows-table[aria-busy='false'], #flows-empty:not([hidden])").first().waitFor();
  const name = unique("dropped");
  const doc = JSON.stringify({ name, data: { nodes: [], edges: [] } });
  const dataTransfer = await page.evaluateHandle((text) => {
    const dt = new DataTransfer();
    dt.items.add(new File([text], "dropped.json", { type: "application/json" }));
    return dt;
  }, doc);
  await page.dispatchEvent("#flows-page", "dragenter", { dataTransfer });
  assert.ok(await page.locator("#drop-overlay").isVisible(), "the drop target shows");
  await shot(page, "flows-drop-overlay");
  await page.dispatchEvent("#flows-page", "drop", { dataTransfer });
  const row = flowRow(page, name);
  await row.waitFor();
  assert.ok(await page.locator("#drop-overlay").isHidden());

  const id = await row.getAttribute("data-id");
  await row.getByRole("button", { name: `Delete ${name}` }).click();
  const confirm = page.getByRole("alertdialog", { name: "Delete this flow?" });
  await confirm.getByText(name).waitFor();
  await shot(page, "flows-confirm-delete");
  await confirm.getByRole("button", { name: "Cancel" }).click();
  await confirm.waitFor({ state: "hidden" });
  assert.equal((await rest("GET", `/api/v1/flows/${id}`, { token }))[0], 200);

  await row.getByRole("button", { name: `Delete ${name}` }).click();
  await confirm.getByRole("button", { name: "Delete", exact: true }).click();
  await confirm.waitFor({ state: "hidden" });
  await row.waitFor({ state: "detached" });
  await page.getByRole("status").filter({ hasText: `Deleted ${name}.` }).waitFor();
  assert.equal((await rest("GET", `/api/v1/flows/${id}`, { token }))[0], 404);

  // A file that is not a flow is explained, and nothing is stored.
  const before = await flowIds();
  const bad = await page.evaluateHandle(() => {
    const dt = new DataTransfer();
    dt.items.add(new File(["not json"], "notes.json", { type: "application/json" }));
    return dt;
  });
  await page.dispatchEvent("#flows-page", "drop", { dataTransfer: bad });
  await page.getByRole("alert").filter({ hasText: "notes.json: Invalid JSON file" }).waitFor();
  assert.deepEqual(await flowIds(), before);
  expectNoProblems(page);
  await page.context().close();
});

test("dark mode and a narrow window", async () => {
  const flow = await makeFlowFromFixture();
  const page = await newPage(browser, { colorScheme: "dark" });
  await login(page, undefined, "/flows");
  await flowRow(page, flow.name).waitFor();
  await shot(page, "flows-list-dark");
  await page.goto(`/flows/${flow.id}`);
  await page.locator("#graph svg g.node").first().waitFor();
  await shot(page, "flow-page-dark");
  await page.setViewportSize({ width: 390, height: 800 });
  await page.goto(`/flows/${flow.id}`);
  await page.locator("#graph svg g.node").first().waitFor();
  await shot(page, "flow-page-narrow-dark");
  await page.goto("/flows");
  await flowRow(page, flow.name).waitFor();
  await shot(page, "flows-list-narrow-dark");
  expectNoProblems(page);
  await page.context().close();
});
