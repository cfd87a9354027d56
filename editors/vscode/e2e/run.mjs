// Real VS Code end to end: code-server + the built .vsix + headless Chromium (puppeteer-core).
// Opens a Python file, types, waits for the ghost text that the real suggest-ls server (embedded
// model) produces, screenshots it, accepts it with Tab, saves, and checks the file on disk.
//
// Environment: CODE_SERVER (bin), VSIX, PYTHON (with suggest-ls installed), CHROMIUM,
// SCREENSHOT (PNG to write), RESULT (JSON to write). Run by scripts/editors-e2e.sh.
import { spawn, execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, mkdirSync, readFileSync, writeFileSync, readdirSync, statSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import puppeteer from "puppeteer-core";

const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const CODE_SERVER = env("CODE_SERVER");
const VSIX = env("VSIX");
const PYTHON = env("PYTHON");
const CHROMIUM = env("CHROMIUM", "/usr/bin/chromium");
const SCREENSHOT = env("SCREENSHOT");
const RESULT = env("RESULT");
const TYPED = "return math.";
const SOURCE = 'import math\n\n\ndef circle_area(radius):\n    """Return the area of a circle."""\n    ';

const result = { steps: [] };
const t0 = Date.now();
const step = (name, extra = {}) => {
  result.steps.push({ name, at_ms: Date.now() - t0, ...extra });
  console.log(`[${((Date.now() - t0) / 1000).toFixed(1)} s] ${name}${Object.keys(extra).length ? " " + JSON.stringify(extra) : ""}`);
};

/** A free TCP port on 127.0.0.1. */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on("error", reject);
  });
}

/** Poll `fn` until it returns a truthy value. */
async function until(what, timeoutMs, fn, everyMs = 250) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Every file under `dir` whose name ends with `suffix`. */
function findFiles(dir, suffix, out = []) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) findFiles(p, suffix, out);
    else if (name.endsWith(suffix)) out.push(p);
  }
  return out;
}

const work = mkdtempSync(join(tmpdir(), "suggest-ls-vscode-"));
const userData = join(work, "user-data");
const extensions = join(work, "extensions");
const workspace = join(work, "workspace");
mkdirSync(join(userData, "User"), { recursive: true });
mkdirSync(workspace, { recursive: true });
const file = join(workspace, "circle.py");
const SERVER_LOG = join(work, "server.log");
const serverLog = () => (existsSync(SERVER_LOG) ? readFileSync(SERVER_LOG, "utf8") : "");
writeFileSync(file, SOURCE);
// how to start the server is a machine setting: the remote (code-server) side holds it too
mkdirSync(join(userData, "Machine"), { recursive: true });
const serverArgs = ["--log-file", SERVER_LOG]; // read below: which answer the typed line got
writeFileSync(
  join(userData, "Machine", "settings.json"),
  JSON.stringify({ "suggestLs.server.pythonPath": PYTHON, "suggestLs.server.args": serverArgs }, null, 2),
);
writeFileSync(
  join(userData, "User", "settings.json"),
  JSON.stringify(
    {
      "suggestLs.server.pythonPath": PYTHON,
      "suggestLs.server.args": serverArgs,
      "suggestLs.temperature": 0,
      "suggestLs.debounceMs": 0,
      "suggestLs.lineBudgetMs": 1,
      "suggestLs.lineDeadlineMs": 0,
      "editor.inlineSuggest.enabled": true,
      "editor.quickSuggestions": { other: false, comments: false, strings: false },
      "editor.minimap.enabled": false,
      "files.autoSave": "off",
      "workbench.secondarySideBar.defaultVisibility": "hidden",
      "workbench.layoutControl.enabled": false,
      "editor.fontSize": 15,
      "chat.disableAIFeatures": true,
      "workbench.startupEditor": "none",
      "workbench.tips.enabled": false,
      "workbench.colorTheme": "Dark Modern",
      "security.workspace.trust.enabled": false,
      "telemetry.telemetryLevel": "off",
      "extensions.ignoreRecommendations": true,
      "update.mode": "none",
    },
    null,
    2,
  ),
);

let codeServer;
let browser;
try {
  const common = ["--user-data-dir", userData, "--extensions-dir", extensions];
  const csEnv = { ...process.env, XDG_CONFIG_HOME: join(work, "config") };
  const installed = execFileSync(CODE_SERVER, [...common, "--install-extension", VSIX], { encoding: "utf8", env: csEnv });
  step("extension installed", { output: installed.trim().split("\n").pop() });

  const port = await freePort();
  codeServer = spawn(
    CODE_SERVER,
    [
      ...common,
      "--auth", "none",
      "--bind-addr", `127.0.0.1:${port}`,
      "--disable-telemetry",
      "--disable-update-check",
      "--disable-workspace-trust",
      "--disable-getting-started-override",
      workspace,
    ],
    { stdio: ["ignore", "pipe", "pipe"], detached: true, env: csEnv },
  );
  let codeServerOutput = "";
  codeServer.stdout.on("data", (d) => (codeServerOutput += d));
  codeServer.stderr.on("data", (d) => (codeServerOutput += d));
  const base = `http://127.0.0.1:${port}`;
  await until("code-server /healthz", 60000, async () => {
    try {
      return (await fetch(`${base}/healthz`)).ok;
    } catch {
      return false;
    }
  });
  step("code-server up", { port });

  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-dev-shm-usage",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
    defaultViewport: { width: 980, height: 420 },
  });
  const page = await browser.newPage();
  page.setDefaultTimeout(120000);
  await page.goto(`${base}/?folder=${encodeURIComponent(workspace)}`, { waitUntil: "domcontentloaded" });
  await page.waitForSelector(".monaco-workbench", { timeout: 120000 });
  step("workbench loaded");

  // the status bar item of the extension: ready, with the model and the device
  const statusText = () =>
    page.evaluate(() => {
      const items = [...document.querySelectorAll(".statusbar-item")];
      const mine = items.find((el) => (el.getAttribute("id") ?? "").includes("suggestLs.status"));
      return mine ? (mine.getAttribute("aria-label") ?? mine.textContent ?? "") : null;
    });
  const first = await until("the suggest-ls status bar item", 120000, statusText);
  step("status bar item shown", { text: first });
  result.statusReady = await until("status bar: ready with the model", 180000, async () => {
    const t = await statusText();
    if (t && /suggest-ls: error/.test(t)) throw new Error(`the extension reports an error: ${t}`);
    return t && /qwen|gemma/i.test(t) ? t : null; // the coder model (default) or the small one
  });
  step("status bar ready", { text: result.statusReady });

  // open the file with Quick Open, as a person would
  await page.keyboard.down("Control");
  await page.keyboard.press("KeyP");
  await page.keyboard.up("Control");
  await page.waitForSelector(".quick-input-widget input", { visible: true });
  await page.keyboard.type("circle.py", { delay: 30 });
  await until("circle.py in Quick Open", 20000, () =>
    page.evaluate(() => [...document.querySelectorAll(".quick-input-list .monaco-list-row")].some((r) => r.textContent.includes("circle.py"))),
  );
  await page.keyboard.press("Enter");
  await page.waitForSelector(".monaco-editor .view-lines", { visible: true });
  await until("the editor shows circle.py", 20000, () =>
    page.evaluate(() => document.querySelector(".monaco-editor .view-lines")?.textContent.includes("circle_area")),
  );
  step("file open");

  // type at the end of the file
  await page.click(".monaco-editor .view-lines");
  await page.keyboard.down("Control");
  await page.keyboard.press("End");
  await page.keyboard.up("Control");
  await page.keyboard.type(TYPED, { delay: 60 });
  step("typed", { text: TYPED });

  const ghost = () =>
    page.evaluate(() => {
      const parts = [...document.querySelectorAll(".monaco-editor .ghost-text-decoration, .monaco-editor .ghost-text")];
      const text = parts.map((p) => p.textContent).join("");
      return text.trim() ? text : null;
    });
  result.ghost = await until("ghost text", 180000, ghost, 100);
  step("ghost text shown", { ghost: result.ghost });
  // A line may be answered with its first words (lineBudgetMs 1: as soon as one is written); the
  // server then finishes it and sends suggest/refresh, the extension asks again and the ghost grows.
  // Typing through an earlier suggestion may show the whole line at once instead: the server's log
  // tells which answer the last version of the document got.
  result.firstGhost = result.ghost;
  const answers = [...serverLog().matchAll(/(first words|suggestion) for \S*circle\.py v(\d+)(?:: (\d+) chars)?/g)];
  const last = Math.max(...answers.map((m) => Number(m[2])));
  const early = answers.find((m) => Number(m[2]) === last && m[1] === "first words");
  result.answeredEarly = Boolean(early);
  if (early) {
    const shownChars = Number(early[3] ?? result.firstGhost.length);
    await until(`suggest/refresh for v${last} in the server log`, 30000, () =>
      new RegExp(`suggest/refresh for \\S*circle\\.py v${last}\\b`).test(serverLog()),
    );
    result.ghost = await until(
      `the ghost text to grow past the ${shownChars} characters of its first words`,
      30000,
      async () => {
        const g = await ghost();
        return g && g.replace(/\u00a0/g, " ").trimEnd().length > shownChars ? g : null;
      },
      100,
    );
  }
  step("ghost text after refresh", { first: result.firstGhost, now: result.ghost, answeredEarly: result.answeredEarly });
  await new Promise((r) => setTimeout(r, 300));
  await page.screenshot({ path: SCREENSHOT });
  step("screenshot", { path: SCREENSHOT });

  const lineText = () =>
    page.evaluate(() => {
      const lines = [...document.querySelectorAll(".monaco-editor .view-lines .view-line")];
      const last = lines.sort((a, b) => parseFloat(a.style.top) - parseFloat(b.style.top)).pop();
      if (!last) return "";
      const copy = last.cloneNode(true); // the buffer's text only: without the ghost text
      copy.querySelectorAll(".ghost-text-decoration, .ghost-text").forEach((g) => g.remove());
      return copy.textContent.replace(/\u00a0/g, " ");
    });
  result.lineBeforeTab = await lineText();
  await page.keyboard.press("Tab");
  result.lineAfterTab = await until("the suggestion in the editor line", 10000, async () => {
    const t = await lineText();
    return t !== result.lineBeforeTab ? t : null;
  });
  step("tab", { before: result.lineBeforeTab, after: result.lineAfterTab, ghostLeft: await ghost() });
  await page.keyboard.down("Control");
  await page.keyboard.press("KeyS");
  await page.keyboard.up("Control");
  const expectedPrefix = SOURCE + TYPED;
  result.saved = await until("the file saved with the suggestion", 20000, () => {
    const text = readFileSync(file, "utf8");
    return text.length > expectedPrefix.length && text.startsWith(expectedPrefix) ? text : null;
  });
  result.inserted = result.saved.slice(expectedPrefix.length);
  step("accepted and saved", { inserted: result.inserted });
  // VS Code renders leading spaces of ghost text as non-breaking spaces
  const norm = (s) => s.replace(/\u00a0/g, " ").trimEnd();
  if (norm(result.inserted) !== norm(result.ghost)) {
    throw new Error(`inserted text ${JSON.stringify(result.inserted)} != ghost text ${JSON.stringify(result.ghost)}`);
  }

  // the status bar shows a latency now; clicking it lists the details
  result.statusAfter = await until("status bar with a latency", 30000, async () => {
    const t = await statusText();
    return t && /\d+(\.\d)? (ms|s)\b/.test(t) ? t : null;
  });
  step("status bar latency", { text: result.statusAfter });
  await page.evaluate(() => {
    const el = [...document.querySelectorAll(".statusbar-item")].find((e) => (e.getAttribute("id") ?? "").includes("suggestLs.status"));
    (el.querySelector("a") ?? el).click();
  });
  result.details = await until("status details", 20000, () =>
    page.evaluate(() => {
      const rows = [...document.querySelectorAll(".quick-input-list .monaco-list-row")].map((r) => r.textContent);
      return rows.some((r) => r.startsWith("Model:")) ? rows : null;
    }),
  );
  step("status details", { rows: result.details.length });
  await page.keyboard.press("Escape");

  // the command palette's "Disable suggestions": the server reports disabled, the status bar follows
  await page.keyboard.press("F1");
  await page.waitForSelector(".quick-input-widget input", { visible: true });
  await page.keyboard.type("suggest-ls: Disable suggestions", { delay: 20 });
  await until("the Disable command in the palette", 20000, () =>
    page.evaluate(() => [...document.querySelectorAll(".quick-input-list .monaco-list-row")].some((r) => r.textContent.includes("Disable suggestions"))),
  );
  await page.keyboard.press("Enter");
  result.statusDisabled = await until("status bar: disabled", 30000, async () => {
    const t = await statusText();
    return t && /suggest-ls: disabled/.test(t) ? t : null;
  });
  step("disabled", { text: result.statusDisabled.split(",")[0] });

  result.logs = findFiles(join(userData, "logs"), "suggest-ls.log");
  result.ok = true;
  step("passed");
} catch (err) {
  result.ok = false;
  result.error = String(err?.stack ?? err);
  console.error(result.error);
  try {
    const pages = browser ? await browser.pages() : [];
    if (pages[0]) await pages[0].screenshot({ path: SCREENSHOT.replace(/\.png$/, "-failure.png") });
  } catch {
    /* best effort */
  }
  try {
    for (const log of [...findFiles(join(userData, "logs"), "suggest-ls.log"), ...findFiles(join(userData, "logs"), "exthost.log")]) {
      console.error(`--- ${log}\n${readFileSync(log, "utf8").slice(-4000)}`);
    }
  } catch {
    /* no logs */
  }
} finally {
  result.work = work;
  result.seconds = (Date.now() - t0) / 1000;
  writeFileSync(RESULT, JSON.stringify(result, null, 2));
  if (browser) await browser.close().catch(() => {});
  if (codeServer) {
    try {
      process.kill(-codeServer.pid, "SIGTERM"); // code-server and the extension host it started
    } catch {
      codeServer.kill("SIGTERM");
    }
  }
}
process.exit(result.ok ? 0 : 1);
