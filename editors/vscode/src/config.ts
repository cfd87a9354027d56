// How the server is started and which settings it is sent. Plain functions (no `vscode` import).

export const SECTION = "suggestLs";
/** Settings of the extension itself, never sent to the server. */
export const CLIENT_PREFIXES = [`${SECTION}.server.`, `${SECTION}.trace.`];

/** The executable and arguments that start the server. */
export interface ServerCommand {
  command: string;
  args: string[];
}

/** Expand a leading `~` and `${workspaceFolder}` / `${userHome}` in a path setting. */
export function expandPath(value: string, home: string, workspaceFolder: string | undefined): string {
  let out = value.trim();
  if (out === "~" || out.startsWith("~/")) {
    out = home + out.slice(1);
  }
  out = out.replace(/\$\{userHome\}/g, home);
  if (workspaceFolder !== undefined) {
    out = out.replace(/\$\{workspaceFolder\}/g, workspaceFolder);
  }
  return out;
}

/** The server command: `python -m suggest_ls --stdio` when a Python is set, else `suggest-ls --stdio`. */
export function serverCommand(
  path: string,
  pythonPath: string,
  extraArgs: readonly string[],
  home: string,
  workspaceFolder?: string,
): ServerCommand {
  const python = expandPath(pythonPath, home, workspaceFolder);
  if (python) {
    return { command: python, args: ["-m", "suggest_ls", "--stdio", ...extraArgs] };
  }
  const exe = expandPath(path, home, workspaceFolder) || "suggest-ls";
  return { command: exe, args: ["--stdio", ...extraArgs] };
}

/** The server's setting keys (camelCase, without the section) among the contributed properties. */
export function serverKeys(properties: Record<string, unknown>): string[] {
  return Object.keys(properties)
    .filter((k) => k.startsWith(`${SECTION}.`) && !CLIENT_PREFIXES.some((p) => k.startsWith(p)))
    .map((k) => k.slice(SECTION.length + 1));
}

/** The `suggestLs` object sent to the server: each server key with its current value. */
export function serverSettings(keys: readonly string[], get: (key: string) => unknown): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of keys) {
    const value = get(key);
    if (value !== undefined && value !== null) {
      out[key] = value;
    }
  }
  return out;
}
