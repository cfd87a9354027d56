import assert from "node:assert/strict";
import { test } from "node:test";
import { detailLines, formatMs, recentReasons, type ServerStatus, shortModel, statusView } from "../status";

const READY: ServerStatus = {
  state: "ready",
  reason: "gemma-3-270m-q4_k_m.gguf on CPU",
  version: "0.1.0",
  model: "gemma-3-270m-q4_k_m.gguf",
  quantization: "Q4_K - Medium",
  device: "CUDA (NVIDIA H100 80GB HBM3)",
  gpuLayers: 19,
  template: "rules",
  tokensPerSecond: 87.5,
  latency: { p50_ms: 182.4, p90_ms: 240, p99_ms: 1450, count: 12 },
  requests: 30,
  cacheHits: 7,
  recentReasons: [{ reason: "superseded" }, { reason: "inside a word" }, { reason: "superseded" }],
};

test("ready shows model, device without the GPU name, and the median latency", () => {
  const view = statusView("ready", READY);
  assert.equal(view.text, "$(sparkle) gemma-3-270m-q4_k_m · CUDA · 182 ms");
  assert.equal(view.background, undefined);
});

test("ready before any request shows no latency figure", () => {
  const view = statusView("ready", { ...READY, latency: { count: 0 } });
  assert.equal(view.text, "$(sparkle) gemma-3-270m-q4_k_m · CUDA");
});

test("each state has its own icon and text", () => {
  assert.equal(statusView("loading", undefined).text, "$(sync~spin) suggest-ls: loading");
  assert.equal(statusView("disabled", READY).text, "$(circle-slash) suggest-ls: disabled");
  assert.equal(statusView("degraded", READY).text, "$(warning) suggest-ls: degraded");
  assert.equal(statusView("unknown-state", undefined).text, "$(question) suggest-ls: unknown-state");
});

test("error and degraded get a colored background", () => {
  assert.equal(statusView("error", undefined, "model not loaded").background, "error");
  assert.equal(statusView("degraded", READY).background, "warning");
});

test("the tooltip explains the state and the reason", () => {
  const view = statusView("error", undefined, "no such file: /m.gguf");
  assert.equal(view.tooltip, "suggest-ls: error — no such file: /m.gguf");
});

test("details list model, device, latency percentiles, throughput and reasons", () => {
  const lines = detailLines("ready", READY);
  assert.deepEqual(lines, [
    "suggest-ls 0.1.0: ready — gemma-3-270m-q4_k_m.gguf on CPU",
    "Model: gemma-3-270m-q4_k_m.gguf (Q4_K - Medium)",
    "Device: CUDA (NVIDIA H100 80GB HBM3), 19 layers on the GPU",
    "Prompt template: rules",
    "Latency (last 12): p50 182 ms, p90 240 ms, p99 1.4 s",
    "Generation: 87.5 tokens/s",
    "Requests: 30, from the typing-through cache: 7",
    "Recent reasons for no suggestion: superseded ×2, inside a word",
  ]);
});

test("reasons are counted in order of first appearance", () => {
  assert.equal(recentReasons({ recentReasons: [] }), "");
  assert.equal(recentReasons({ recentReasons: [{ reason: "a" }, { reason: "b" }, { reason: "a" }] }), "a ×2, b");
});

test("model names lose their folder and extension and are shortened", () => {
  assert.equal(shortModel("/models/mistral-7b-instruct-v0.2.Q4_K_M.gguf"), "mistral-7b-instruct-v0.…");
  assert.equal(shortModel("C:\\m\\tiny.GGUF"), "tiny");
  assert.equal(shortModel(null), "");
});

test("milliseconds read as ms below a second, else seconds", () => {
  assert.equal(formatMs(12.6), "13 ms");
  assert.equal(formatMs(1450), "1.4 s");
  assert.equal(formatMs(undefined), "–");
});
