import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { expandPath, serverCommand, serverKeys, serverSettings } from "../config";

interface Manifest {
  main: string;
  contributes: {
    commands: { command: string; title: string }[];
    configuration: { properties: Record<string, { type: string; default: unknown; description: string }> };
  };
}

const manifest = JSON.parse(readFileSync(join(__dirname, "..", "..", "package.json"), "utf8")) as Manifest;
const properties = manifest.contributes.configuration.properties;

test("a Python interpreter runs the module, else the executable, both over stdio", () => {
  assert.deepEqual(serverCommand("suggest-ls", "", [], "/home/u"), { command: "suggest-ls", args: ["--stdio"] });
  assert.deepEqual(serverCommand("suggest-ls", "~/.venv/bin/python", ["--log-level", "debug"], "/home/u"), {
    command: "/home/u/.venv/bin/python",
    args: ["-m", "suggest_ls", "--stdio", "--log-level", "debug"],
  });
  assert.deepEqual(serverCommand("", "  ", [], "/h"), { command: "suggest-ls", args: ["--stdio"] });
});

test("paths expand ~, ${userHome} and ${workspaceFolder}", () => {
  assert.equal(expandPath("${workspaceFolder}/.venv/bin/python", "/h", "/ws"), "/ws/.venv/bin/python");
  assert.equal(expandPath("${userHome}/x", "/h", undefined), "/h/x");
  assert.equal(expandPath("~", "/h", undefined), "/h");
  assert.equal(expandPath("a~b", "/h", undefined), "a~b");
  assert.equal(expandPath("${workspaceFolder}/x", "/h", undefined), "${workspaceFolder}/x");
});

test("server keys exclude the extension's own server.* and trace.* settings", () => {
  const keys = serverKeys(properties);
  assert.ok(keys.includes("enabled") && keys.includes("model") && keys.includes("debounceMs"));
  assert.ok(!keys.some((k) => k.startsWith("server.") || k.startsWith("trace.")));
  assert.equal(keys.length, Object.keys(properties).length - 4);
});

test("settings sent to the server are the server keys with their values", () => {
  const values: Record<string, unknown> = { enabled: false, model: "/m.gguf", "server.path": "x" };
  assert.deepEqual(
    serverSettings(["enabled", "model", "threads"], (k) => values[k]),
    { enabled: false, model: "/m.gguf" },
  );
});

test("every contributed setting has a type, a default and a description", () => {
  for (const [key, prop] of Object.entries(properties)) {
    assert.ok(prop.type, `${key} has no type`);
    assert.ok(prop.default !== undefined, `${key} has no default`);
    assert.ok(prop.description.length > 10, `${key} has no description`);
  }
});

test("the commands the extension registers are the ones it contributes", () => {
  const source = readFileSync(join(__dirname, "..", "extension.js"), "utf8");
  const registered = [...source.matchAll(/registerCommand\("([^"]+)"/g)].map((m) => m[1]).sort();
  const contributed = manifest.contributes.commands.map((c) => c.command).sort();
  assert.deepEqual(registered, contributed);
  assert.deepEqual(contributed, [
    "suggestLs.chooseModel",
    "suggestLs.disable",
    "suggestLs.enable",
    "suggestLs.restart",
    "suggestLs.showLog",
    "suggestLs.showStatus",
    "suggestLs.toggle",
  ]);
  assert.equal(manifest.main, "./out/extension.js");
});
