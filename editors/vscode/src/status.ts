// What the status bar item and the status details show, from the server's `suggest/status` result.
// Plain functions (no `vscode` import) so that the unit tests run under node.

/** Latency figures over recent requests, as `suggest/status` reports them. */
export interface Latency {
  p50_ms?: number;
  p90_ms?: number;
  p99_ms?: number;
  count?: number;
}

/** The `suggest/status` result (every field optional: older or newer servers may differ). */
export interface ServerStatus {
  state?: string;
  reason?: string;
  version?: string;
  model?: string | null;
  modelWhy?: string;
  quantization?: string | null;
  device?: string | null;
  gpuLayers?: number;
  offload?: string | null;
  template?: string | null;
  tokensPerSecond?: number;
  latency?: Latency;
  requests?: number;
  cacheHits?: number;
  outcomes?: Record<string, number>;
  recentReasons?: { uri?: string; reason?: string; at?: number }[];
}

/** The `suggest/didChangeStatus` notification. */
export interface StatusChange {
  state: string;
  reason?: string;
}

/** What the status bar item shows. */
export interface StatusView {
  text: string;
  tooltip: string;
  /** "error" or "warning" background, or none. */
  background?: "error" | "warning";
}

const ICONS: Record<string, string> = {
  starting: "$(sync~spin)",
  loading: "$(sync~spin)",
  ready: "$(sparkle)",
  degraded: "$(warning)",
  error: "$(error)",
  disabled: "$(circle-slash)",
  stopped: "$(debug-disconnect)",
};

/** The model file name without its extension, shortened to `max` characters. */
export function shortModel(model: string | null | undefined, max = 24): string {
  if (!model) {
    return "";
  }
  const name = model.replace(/^.*[\\/]/, "").replace(/\.gguf$/i, "");
  return name.length > max ? `${name.slice(0, max - 1)}…` : name;
}

/** A latency in milliseconds as people read it: "180 ms" or "1.4 s". */
export function formatMs(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms)) {
    return "–";
  }
  return ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`;
}

/** The status bar text, tooltip and background for a state and the last full status. */
export function statusView(state: string, status: ServerStatus | undefined, reason = ""): StatusView {
  const icon = ICONS[state] ?? "$(question)";
  const parts: string[] = [];
  if (state === "ready" && status) {
    const model = shortModel(status.model);
    if (model) {
      parts.push(model);
    }
    if (status.device) {
      parts.push(status.device.replace(/\s*\(.*\)$/, ""));
    }
    if (status.latency?.count) {
      parts.push(formatMs(status.latency.p50_ms));
    }
  }
  const text = parts.length ? `${icon} ${parts.join(" · ")}` : `${icon} suggest-ls: ${state}`;
  const background = state === "error" ? "error" : state === "degraded" ? "warning" : undefined;
  return { text, tooltip: detailLines(state, status, reason).join("\n"), background };
}

/** Human-readable lines describing the server (tooltip and the status details). */
export function detailLines(state: string, status: ServerStatus | undefined, reason = ""): string[] {
  const why = reason || status?.reason || "";
  const lines = [`suggest-ls${status?.version ? ` ${status.version}` : ""}: ${state}${why ? ` — ${why}` : ""}`];
  if (!status) {
    return lines;
  }
  if (status.model) {
    lines.push(`Model: ${status.model}${status.quantization ? ` (${status.quantization})` : ""}`);
    if (status.modelWhy) {
      lines.push(`Why this model: ${status.modelWhy}`);
    }
  }
  if (status.device) {
    lines.push(`Device: ${status.device}${status.gpuLayers ? `, ${status.gpuLayers} layers on the GPU` : ""}`);
  }
  if (status.offload) {
    lines.push(`Offload: ${status.offload}`);
  }
  if (status.template) {
    lines.push(`Prompt template: ${status.template}`);
  }
  const lat = status.latency;
  if (lat?.count) {
    lines.push(
      `Latency (last ${lat.count}): p50 ${formatMs(lat.p50_ms)}, p90 ${formatMs(lat.p90_ms)}, p99 ${formatMs(lat.p99_ms)}`,
    );
  }
  if (status.tokensPerSecond) {
    lines.push(`Generation: ${status.tokensPerSecond} tokens/s`);
  }
  if (status.requests !== undefined) {
    lines.push(`Requests: ${status.requests}, from the typing-through cache: ${status.cacheHits ?? 0}`);
  }
  const reasons = recentReasons(status);
  if (reasons) {
    lines.push(`Recent reasons for no suggestion: ${reasons}`);
  }
  return lines;
}

/** The recent "no suggestion" reasons, counted: "superseded ×3, inside a word". */
export function recentReasons(status: ServerStatus): string {
  const counts = new Map<string, number>();
  for (const r of status.recentReasons ?? []) {
    if (r.reason) {
      counts.set(r.reason, (counts.get(r.reason) ?? 0) + 1);
    }
  }
  return [...counts].map(([reason, n]) => (n > 1 ? `${reason} ×${n}` : reason)).join(", ");
}
