// The suggest-ls VS Code extension: starts the server, shows its state, offers the commands.
import * as os from "node:os";
import * as vscode from "vscode";
import {
  DidChangeConfigurationNotification,
  LanguageClient,
  type LanguageClientOptions,
  type ServerOptions,
  State,
} from "vscode-languageclient/node";
import { SECTION, serverCommand, serverKeys, serverSettings } from "./config";
import { detailLines, type ServerStatus, type StatusChange, statusView } from "./status";

const STATUS_REQUEST = "suggest/status";
const STATUS_NOTIFICATION = "suggest/didChangeStatus";
const LINE_READY_NOTIFICATION = "suggest/refresh";
const CURSOR_NOTIFICATION = "suggest/didMoveCursor";
const REFRESH_MS = 10_000;

type Action = vscode.QuickPickItem & { run?: () => unknown };

/** One extension instance: the language client, the status bar item, the commands. */
class SuggestExtension implements vscode.Disposable {
  private client: LanguageClient | undefined;
  private state = "starting";
  private reason = "";
  private last: ServerStatus | undefined;
  private stopping = false;
  private refreshPending = false;
  private cursorWatch: vscode.Disposable[] = [];
  private readonly keys: string[];
  private readonly item: vscode.StatusBarItem;
  private readonly output: vscode.LogOutputChannel;
  private readonly timer: NodeJS.Timeout;

  constructor(context: vscode.ExtensionContext) {
    const pkg = context.extension.packageJSON as {
      contributes: { configuration: { properties: Record<string, unknown> } };
    };
    this.keys = serverKeys(pkg.contributes.configuration.properties);
    this.output = vscode.window.createOutputChannel("suggest-ls", { log: true });
    this.item = vscode.window.createStatusBarItem("suggestLs.status", vscode.StatusBarAlignment.Right, 100);
    this.item.name = "suggest-ls";
    this.item.command = "suggestLs.showStatus";
    this.item.show();
    this.timer = setInterval(() => void this.refresh(), REFRESH_MS);
    this.render();
  }

  /** The `suggestLs` settings the server understands, with their current values. */
  private settings(): Record<string, unknown> {
    const config = vscode.workspace.getConfiguration(SECTION);
    return serverSettings(this.keys, (key) => config.get(key));
  }

  /** Start the server process and the language client. */
  async start(): Promise<void> {
    const config = vscode.workspace.getConfiguration(SECTION);
    const folder = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
    const cmd = serverCommand(
      config.get<string>("server.path", "suggest-ls"),
      config.get<string>("server.pythonPath", ""),
      config.get<string[]>("server.args", []),
      os.homedir(),
      folder,
    );
    const serverOptions: ServerOptions = { command: cmd.command, args: cmd.args, options: { cwd: folder } };
    const clientOptions: LanguageClientOptions = {
      documentSelector: [{ scheme: "file" }, { scheme: "untitled" }],
      initializationOptions: { [SECTION]: this.settings() },
      outputChannel: this.output,
      middleware: {
        // VS Code shows the inline suggestion; the completion-list fallback is for other editors.
        provideCompletionItem: () => undefined,
        provideInlineCompletionItems: async (document, position, context, token, next) => {
          const result = await next(document, position, context, token);
          this.scheduleRefresh();
          return result;
        },
      },
    };
    const client = new LanguageClient(SECTION, "suggest-ls", serverOptions, clientOptions);
    // Tell the server this client asks again on suggest/refresh (see below): it may then answer
    // a long line with its first words at once (the `lineBudgetMs` setting).
    client.registerFeature({
      fillClientCapabilities: (capabilities) => {
        const experimental: Record<string, unknown> = { ...(capabilities.experimental as object | undefined) };
        experimental.suggestRefresh = true;
        capabilities.experimental = experimental;
      },
      initialize: () => undefined,
      getState: () => ({ kind: "static" }),
      clear: () => undefined,
    });
    client.onDidChangeState((e) => {
      if (e.newState === State.Starting) {
        this.setState("starting", "");
      } else if (e.newState === State.Stopped && !this.stopping && this.client === client) {
        this.setState("error", "the server stopped; see the log");
      }
    });
    client.onNotification(STATUS_NOTIFICATION, (change: StatusChange) => {
      this.setState(change.state, change.reason ?? "");
      void this.refresh();
    });
    // The first words of a line were shown while the model wrote the rest: ask again for the whole
    // line (the server answers from its cache) if the document is still as it was.
    client.onNotification(LINE_READY_NOTIFICATION, (ready: { uri: string; version: number }) => {
      const editor = vscode.window.activeTextEditor;
      const here = editor?.document.uri.toString() === ready.uri && editor.document.version === ready.version;
      this.output.info(`suggest/refresh for ${ready.uri} v${ready.version}: ${here ? "asking again" : "moved on"}`);
      if (here) {
        // an explicit trigger alone keeps the first words on screen: hide them, then ask again
        void vscode.commands
          .executeCommand("editor.action.inlineSuggest.hide")
          .then(() => vscode.commands.executeCommand("editor.action.inlineSuggest.trigger"));
      }
    });
    this.client = client;
    this.watchCursor(client);
    this.setState("starting", `${cmd.command} ${cmd.args.join(" ")}`);
    try {
      await client.start();
      if (this.state === "starting") {
        this.setState("loading", "loading the model");
      }
      await this.refresh();
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      this.output.error(`could not start ${cmd.command}: ${message}`);
      this.setState("error", `could not start ${cmd.command}: ${message}`);
      const pick = await vscode.window.showErrorMessage(
        `suggest-ls: could not start the server (${cmd.command}). Set suggestLs.server.pythonPath or suggestLs.server.path.`,
        "Open settings",
        "Show log",
      );
      if (pick === "Open settings") {
        await vscode.commands.executeCommand("workbench.action.openSettings", `${SECTION}.server`);
      } else if (pick === "Show log") {
        this.output.show();
      }
    }
  }

  /** Stop the client and the server process. */
  async stop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    if (client) {
      this.stopping = true;
      try {
        if (client.needsStop()) {
          await client.stop(2000);
        }
      } catch (err) {
        this.output.warn(`stop: ${String(err)}`);
      } finally {
        this.stopping = false;
      }
    }
    this.last = undefined;
    this.setState("stopped", "");
  }

  /** Stop, then start again (picks up changed server settings). */
  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  private setState(state: string, reason: string): void {
    this.state = state;
    this.reason = reason;
    this.render();
  }

  /** Ask the server for its full status (latency, model, device). */
  async refresh(): Promise<ServerStatus | undefined> {
    const client = this.client;
    if (!client || client.state !== State.Running) {
      return undefined;
    }
    try {
      const status = await client.sendRequest<ServerStatus>(STATUS_REQUEST, {});
      this.last = status;
      if (status.state) {
        this.state = status.state;
        this.reason = status.reason ?? this.reason;
      }
      this.render();
      return status;
    } catch (err) {
      this.output.warn(`${STATUS_REQUEST} failed: ${String(err)}`);
      return undefined;
    }
  }

  /** Refresh at most once a second after completions, for a live latency figure. */
  private scheduleRefresh(): void {
    if (this.refreshPending) {
      return;
    }
    this.refreshPending = true;
    setTimeout(() => {
      this.refreshPending = false;
      void this.refresh();
    }, 1000);
  }

  private render(): void {
    const view = statusView(this.state, this.last, this.reason);
    this.item.text = view.text;
    this.item.tooltip = `${view.tooltip}\n\nClick for details and actions.`;
    this.item.backgroundColor = view.background
      ? new vscode.ThemeColor(`statusBarItem.${view.background}Background`)
      : undefined;
  }

  /** Status details with actions (restart, enable/disable, model, log). */
  async showStatus(): Promise<void> {
    const status = (await this.refresh()) ?? this.last;
    const enabled = vscode.workspace.getConfiguration(SECTION).get<boolean>("enabled", true);
    const info: Action[] = detailLines(this.state, status, this.reason).map((label) => ({ label }));
    const actions: Action[] = [
      { label: "", kind: vscode.QuickPickItemKind.Separator },
      { label: "$(debug-restart) Restart server", run: () => this.restart() },
      enabled
        ? { label: "$(circle-slash) Disable suggestions", run: () => this.setEnabled(false) }
        : { label: "$(check) Enable suggestions", run: () => this.setEnabled(true) },
      { label: "$(file) Choose model file…", run: () => this.chooseModel() },
      { label: "$(output) Show log", run: () => this.output.show() },
      {
        label: "$(copy) Copy status as JSON",
        run: () => vscode.env.clipboard.writeText(JSON.stringify(status ?? { state: this.state }, null, 2)),
      },
    ];
    const pick = await vscode.window.showQuickPick([...info, ...actions], { title: "suggest-ls" });
    await pick?.run?.();
  }

  /** Turn suggestions on or off (the `enabled` setting, where it is set). */
  async setEnabled(enabled: boolean): Promise<void> {
    const config = vscode.workspace.getConfiguration(SECTION);
    const where = config.inspect("enabled")?.workspaceValue !== undefined;
    await config.update(
      "enabled",
      enabled,
      where ? vscode.ConfigurationTarget.Workspace : vscode.ConfigurationTarget.Global,
    );
  }

  /** Pick a GGUF file and make it the `model` setting (the server reloads). */
  async chooseModel(): Promise<void> {
    const picked = await vscode.window.showOpenDialog({
      canSelectMany: false,
      filters: { "GGUF model": ["gguf"] },
      openLabel: "Use this model",
      title: "suggest-ls: choose a GGUF model",
    });
    if (picked?.[0]) {
      await vscode.workspace
        .getConfiguration(SECTION)
        .update("model", picked[0].fsPath, vscode.ConfigurationTarget.Global);
    }
  }

  /** Settings changed: restart for how the server starts, else send the new settings. */
  async onConfiguration(e: vscode.ConfigurationChangeEvent): Promise<void> {
    if (e.affectsConfiguration(`${SECTION}.server`)) {
      await this.restart();
    } else if (e.affectsConfiguration(SECTION) && this.client?.state === State.Running) {
      await this.client.sendNotification(DidChangeConfigurationNotification.type, {
        settings: { [SECTION]: this.settings() },
      });
    }
  }

  showLog(): void {
    this.output.show();
  }

  /** Tell the server where the cursor is (after it rests 100 ms), so that it can evaluate the
   * prompt there before the first keystroke (the `warm` setting). */
  private watchCursor(client: LanguageClient): void {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const send = (editor: vscode.TextEditor | undefined): void => {
      if (timer) {
        clearTimeout(timer);
      }
      if (!editor) {
        return;
      }
      timer = setTimeout(() => {
        if (this.client !== client || !client.isRunning()) {
          return;
        }
        const position = editor.selection.active;
        void client.sendNotification(CURSOR_NOTIFICATION, {
          textDocument: { uri: editor.document.uri.toString() },
          position: { line: position.line, character: position.character },
        });
      }, 100);
    };
    for (const d of this.cursorWatch) {
      d.dispose();
    }
    this.cursorWatch = [
      vscode.window.onDidChangeTextEditorSelection((e) => send(e.textEditor)),
      vscode.window.onDidChangeActiveTextEditor((editor) => send(editor)),
    ];
    send(vscode.window.activeTextEditor);
  }

  dispose(): void {
    clearInterval(this.timer);
    for (const d of this.cursorWatch) {
      d.dispose();
    }
    this.item.dispose();
    this.output.dispose();
  }
}

let extension: SuggestExtension | undefined;

/** Activate: start the server and register the commands. */
export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const ext = new SuggestExtension(context);
  extension = ext;
  context.subscriptions.push(
    ext,
    vscode.commands.registerCommand("suggestLs.enable", () => ext.setEnabled(true)),
    vscode.commands.registerCommand("suggestLs.disable", () => ext.setEnabled(false)),
    vscode.commands.registerCommand("suggestLs.toggle", () =>
      ext.setEnabled(!vscode.workspace.getConfiguration(SECTION).get<boolean>("enabled", true)),
    ),
    vscode.commands.registerCommand("suggestLs.restart", () => ext.restart()),
    vscode.commands.registerCommand("suggestLs.showStatus", () => ext.showStatus()),
    vscode.commands.registerCommand("suggestLs.showLog", () => ext.showLog()),
    vscode.commands.registerCommand("suggestLs.chooseModel", () => ext.chooseModel()),
    vscode.workspace.onDidChangeConfiguration((e) => ext.onConfiguration(e)),
  );
  await ext.start();
}

/** Deactivate: stop the server. */
export async function deactivate(): Promise<void> {
  await extension?.stop();
  extension = undefined;
}
