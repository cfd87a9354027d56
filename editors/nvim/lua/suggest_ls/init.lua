--- suggest-ls for Neovim 0.12+ (0.11: completion-menu fallback): ghost text through the built-in LSP client.
---
---   require("suggest_ls").setup({ settings = { temperature = 0.1 } })
---
--- Uses vim.lsp.config / vim.lsp.enable to start `suggest-ls --stdio` and
--- vim.lsp.inline_completion to show the suggestion; <Tab> accepts it and is a normal <Tab> otherwise.
local M = {}

local NAME = "suggest_ls"
local STATUS_METHOD = "suggest/status"
local STATUS_NOTIFICATION = "suggest/didChangeStatus"
local LINE_READY_NOTIFICATION = "suggest/refresh"
local CURSOR_NOTIFICATION = "suggest/didMoveCursor"

--- Options of `setup()`; every field may be overridden.
M.defaults = {
  -- how to start the server; e.g. { "/path/to/.venv/bin/python", "-m", "suggest_ls", "--stdio" }
  cmd = { "suggest-ls", "--stdio" },
  -- nil attaches to every buffer that has a filetype; or a list such as { "python", "lua" }
  filetypes = nil,
  root_markers = { ".git", "pyproject.toml", "package.json", "Cargo.toml", "go.mod" },
  -- server settings, the `suggestLs` section (camelCase keys, see the README's settings table)
  settings = {},
  -- insert-mode key that accepts the suggestion and falls back to itself; false maps nothing
  accept_key = "<Tab>",
  -- insert-mode keys that cycle through suggestions (false maps nothing)
  next_key = "<M-]>",
  prev_key = "<M-[>",
  -- define :SuggestLsStatus, :SuggestLsEnable, :SuggestLsDisable, :SuggestLsRestart, :SuggestLsLog
  commands = true,
}

M.options = vim.deepcopy(M.defaults)

--- Last `suggest/didChangeStatus` per client id: { state = "ready", reason = "..." }.
M.state = {}

--- The running suggest-ls clients.
---@return vim.lsp.Client[]
function M.clients()
  return vim.lsp.get_clients({ name = NAME })
end

--- Handler for the server's `suggest/didChangeStatus` notification.
local function on_status(_, params, ctx)
  if type(params) == "table" then
    M.state[ctx.client_id] = { state = params.state, reason = params.reason }
    vim.api.nvim_exec_autocmds("User", { pattern = "SuggestLsStatus", modeline = false, data = params })
  end
end

--- Handler for `suggest/refresh`: the first words of a line were shown while the model wrote the
--- rest; in the buffer still at that version, in insert mode, ask again (the server answers from its cache).
local function on_line_ready(_, params, _)
  if type(params) ~= "table" or type(params.uri) ~= "string" or not vim.lsp.inline_completion then
    return
  end
  local bufnr = vim.uri_to_bufnr(params.uri)
  if bufnr ~= vim.api.nvim_get_current_buf() or not vim.api.nvim_get_mode().mode:match("^i") then
    return
  end
  if vim.lsp.util.buf_versions[bufnr] ~= params.version then
    return
  end
  -- inline completion asks on CursorMovedI (after its own 200 ms debounce)
  vim.api.nvim_exec_autocmds("CursorMovedI", { buffer = bufnr, modeline = false })
end

--- Tell the server where the cursor is once it rests (100 ms), so that it can evaluate the prompt
--- there before the first keystroke (the `warm` setting): `suggest/didMoveCursor`.
local function watch_cursor(client, bufnr)
  local timer = vim.uv.new_timer()
  local group = vim.api.nvim_create_augroup("suggest_ls_cursor_" .. bufnr, { clear = true })
  vim.api.nvim_create_autocmd({ "CursorMoved", "CursorMovedI", "BufEnter" }, {
    group = group,
    buffer = bufnr,
    callback = function()
      timer:stop()
      timer:start(100, 0, vim.schedule_wrap(function()
        if client:is_stopped() or not vim.api.nvim_buf_is_valid(bufnr) or vim.api.nvim_get_current_buf() ~= bufnr then
          return
        end
        local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
        client:notify(CURSOR_NOTIFICATION, params)
      end))
    end,
  })
  vim.api.nvim_create_autocmd("BufDelete", {
    group = group,
    buffer = bufnr,
    once = true,
    callback = function()
      timer:stop()
      if not timer:is_closing() then
        timer:close()
      end
    end,
  })
end

--- Attach: turn on inline completion (Neovim 0.12+) or, on 0.11, the completion-menu fallback.
local function on_attach(client, bufnr)
  watch_cursor(client, bufnr)
  if vim.lsp.inline_completion then
    vim.lsp.inline_completion.enable(true, { bufnr = bufnr })
  elseif vim.lsp.completion then
    vim.lsp.completion.enable(true, client.id, bufnr, { autotrigger = true })
  end
end

--- Find the project root of a buffer (or the working directory).
local function root_dir(bufnr, on_dir)
  on_dir(vim.fs.root(bufnr, M.options.root_markers) or vim.fn.getcwd())
end

--- A statusline component: "suggest-ls: ready" (empty when no server runs).
---@return string
function M.statusline()
  for _, client in ipairs(M.clients()) do
    local s = M.state[client.id]
    return "suggest-ls: " .. ((s and s.state) or "starting")
  end
  return ""
end

--- Lines describing a `suggest/status` result.
---@param status table
---@return string[]
function M.format_status(status)
  local lat = type(status.latency) == "table" and status.latency or {}
  local lines = {
    ("suggest-ls %s: %s%s"):format(
      status.version or "?",
      status.state or "?",
      (status.reason and status.reason ~= "") and (" (" .. status.reason .. ")") or ""
    ),
    ("model: %s  %s"):format(status.model or "none", status.quantization or ""),
    ("why this model: %s"):format((status.modelWhy and status.modelWhy ~= "") and status.modelWhy or "configured"),
    ("device: %s  gpu layers: %s  template: %s"):format(
      status.device or "?",
      tostring(status.gpuLayers or 0),
      status.template or "?"
    ),
    ("latency p50 %s ms, p99 %s ms over %s requests; %s tok/s"):format(
      tostring(lat.p50_ms or 0),
      tostring(lat.p99_ms or 0),
      tostring(lat.count or 0),
      tostring(status.tokensPerSecond or 0)
    ),
    ("requests %s, cache hits %s"):format(tostring(status.requests or 0), tostring(status.cacheHits or 0)),
  }
  if type(status.recentReasons) == "table" and #status.recentReasons > 0 then
    local reasons = {}
    for _, r in ipairs(status.recentReasons) do
      table.insert(reasons, tostring(r.reason))
    end
    table.insert(lines, "recent no-suggestion reasons: " .. table.concat(reasons, ", "))
  end
  return lines
end

--- Ask each client for `suggest/status` and call `cb(lines)` (or print them).
---@param cb? fun(lines: string[])
function M.status(cb)
  cb = cb or function(lines)
    vim.notify(table.concat(lines, "\n"), vim.log.levels.INFO)
  end
  local clients = M.clients()
  if #clients == 0 then
    cb({ "suggest-ls: not running (open a file with a filetype, or check :checkhealth vim.lsp)" })
    return
  end
  for _, client in ipairs(clients) do
    client:request(STATUS_METHOD, {}, function(err, result)
      if err then
        cb({ "suggest-ls: status failed: " .. tostring(err.message or err) })
      else
        cb(M.format_status(result or {}))
      end
    end)
  end
end

--- Turn suggestions on or off on the server (the `enabled` setting).
---@param enabled boolean
function M.set_enabled(enabled)
  M.options.settings.enabled = enabled
  for _, client in ipairs(M.clients()) do
    client.settings = vim.tbl_deep_extend("force", client.settings or {}, { suggestLs = { enabled = enabled } })
    client:notify("workspace/didChangeConfiguration", { settings = client.settings })
  end
end

--- Stop the server and start it again for the open buffers.
function M.restart()
  for _, client in ipairs(M.clients()) do
    client:stop(true)
  end
  vim.defer_fn(function()
    vim.lsp.enable(NAME, false)
    vim.lsp.enable(NAME, true)
  end, 500)
end

--- Insert-mode accept: apply the shown suggestion, else behave like the key itself.
---@param key string
local function map_accept(key)
  vim.keymap.set("i", key, function()
    if vim.lsp.inline_completion and vim.lsp.inline_completion.get() then
      return ""
    end
    return key
  end, { expr = true, replace_keycodes = true, desc = "suggest-ls: accept the suggestion" })
end

local function define_commands()
  local cmd = vim.api.nvim_create_user_command
  cmd("SuggestLsStatus", function()
    M.status()
  end, { desc = "suggest-ls: state, model, device, latency" })
  cmd("SuggestLsEnable", function()
    M.set_enabled(true)
  end, { desc = "suggest-ls: turn suggestions on" })
  cmd("SuggestLsDisable", function()
    M.set_enabled(false)
  end, { desc = "suggest-ls: turn suggestions off (no model work)" })
  cmd("SuggestLsRestart", function()
    M.restart()
  end, { desc = "suggest-ls: restart the server" })
  cmd("SuggestLsLog", function()
    vim.cmd.split(vim.lsp.log.get_filename())
  end, { desc = "suggest-ls: open the LSP log (the server's stderr)" })
end

--- Configure and enable suggest-ls.
---@param opts? table see M.defaults
function M.setup(opts)
  M.options = vim.tbl_deep_extend("force", vim.deepcopy(M.defaults), opts or {})
  local o = M.options
  -- an empty Lua table would be sent as a JSON array
  local section = next(o.settings) and o.settings or vim.empty_dict()
  vim.lsp.config(NAME, {
    cmd = o.cmd,
    filetypes = o.filetypes,
    root_dir = root_dir,
    -- one server (one loaded model) for every project
    reuse_client = function(client, config)
      return client.name == config.name
    end,
    init_options = { suggestLs = section },
    settings = { suggestLs = section },
    handlers = { [STATUS_NOTIFICATION] = on_status, [LINE_READY_NOTIFICATION] = on_line_ready },
    -- this client asks again on suggest/refresh, so the server may show a long line's first words first
    capabilities = { experimental = { suggestRefresh = true } },
    on_attach = on_attach,
  })
  vim.lsp.enable(NAME)
  if o.accept_key then
    map_accept(o.accept_key)
  end
  if o.next_key and vim.lsp.inline_completion then
    vim.keymap.set("i", o.next_key, function()
      vim.lsp.inline_completion.select({ count = 1 })
    end, { desc = "suggest-ls: next suggestion" })
  end
  if o.prev_key and vim.lsp.inline_completion then
    vim.keymap.set("i", o.prev_key, function()
      vim.lsp.inline_completion.select({ count = -1 })
    end, { desc = "suggest-ls: previous suggestion" })
  end
  if o.commands then
    define_commands()
  end
end

return M
